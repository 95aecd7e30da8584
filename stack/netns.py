"""Named network namespaces: create, remove, enter from one thread, start processes inside.

Implements the namespace half of DESIGN.md "The lab": namespaces are created with pyroute2 and
bind-mounted under /var/run/netns, so `ip netns list` and `ip netns exec NAME ...` see them too.

Entering a namespace is per thread. setns(2) with CLONE_NEWNET changes only the calling thread, so
`entered(name)` switches the current thread in and back out while the process's other threads (the
stack's receive and timer threads) stay where they are. A socket keeps the namespace it was created in
after the thread switches back, and a child process forked by a thread is born in that thread's
namespace. `popen()` relies on the latter: it forks from inside `entered()`, which needs neither
`ip netns exec` nor a `preexec_fn` (which is unsafe when the process has threads).

pyroute2's own pushns()/popns() save /proc/self/ns/net, which is the namespace of the process's main
thread; this module saves /proc/thread-self/ns/net so that it is correct from any thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2 import netns as _pyroute2_netns

NETNS_RUN_DIR = Path(_pyroute2_netns.NETNS_RUN_DIR)


class NetnsError(RuntimeError):
    """A namespace could not be created, entered or removed."""


def path_of(name: str) -> Path:
    """The bind mount that names namespace `name` (the file `ip netns` uses)."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"bad network namespace name: {name!r}")
    return NETNS_RUN_DIR / name


def names() -> list[str]:
    """Every named network namespace, as `ip netns list` shows them."""
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def exists(name: str) -> bool:
    """True when namespace `name` is mounted under /var/run/netns."""
    return path_of(name).exists()


def create(name: str) -> None:
    """Create network namespace `name` (pyroute2.netns.create; the same mount `ip netns add` makes).

    Raises NetnsError when the name is taken or the kernel refuses (not root, no CAP_SYS_ADMIN).
    """
    if exists(name):
        raise NetnsError(f"network namespace {name} already exists")
    try:
        _pyroute2_netns.create(name)
    except OSError as exc:
        raise NetnsError(f"cannot create network namespace {name}: {exc}") from exc
    except Exception as exc:  # pyroute2 reports its child process's errors as generic exceptions
        raise NetnsError(f"cannot create network namespace {name}: {exc!r}") from exc
    if not exists(name):
        raise NetnsError(f"cannot create network namespace {name}: it did not appear under {NETNS_RUN_DIR}")


def remove(name: str) -> bool:
    """Unmount and unlink namespace `name`; True if it existed. Idempotent.

    The namespace itself (and a veth end inside it) goes away when the last process or socket in it
    is gone; kill the processes first (see `pids_in`).
    """
    path = path_of(name)
    if not path.exists():
        return False
    try:
        _pyroute2_netns.remove(name)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise NetnsError(f"cannot remove network namespace {name}: {exc}") from exc
    return True


def _setns(fd: int) -> None:
    """setns(fd, CLONE_NEWNET) for the calling thread only (pyroute2.netns.setns with an open fd)."""
    try:
        _pyroute2_netns.setns(fd)
    except OSError as exc:
        raise NetnsError(f"setns failed: {exc}") from exc


@contextlib.contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Run the body with the calling thread inside namespace `name`, then switch back.

    `None` means the current namespace (the body runs where it is). Sockets created in the body stay in
    `name`; processes started in the body are born in `name`. Other threads are not affected.
    """
    if name is None:
        yield
        return
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            target = os.open(path_of(name), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise NetnsError(f"no network namespace named {name}") from exc
        try:
            _setns(target)
            yield
        finally:
            # Always restore, also when the body raised or was interrupted (KeyboardInterrupt).
            _setns(original)
            os.close(target)
    finally:
        os.close(original)


def popen(name: str | None, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
    """Start `argv` inside namespace `name` (None: the current one); returns the Popen.

    The child is forked by this thread while it is inside the namespace (see the module docstring).
    """
    with entered(name):
        return subprocess.Popen(list(argv), **popen_kwargs)


def iproute(name: str | None) -> IPRoute:
    """A pyroute2 IPRoute (rtnetlink) whose socket lives in namespace `name` (None: the current one).

    Made from a thread inside the namespace rather than with IPRoute(netns=...), which forks a helper
    process for each socket; use it as a context manager to close it.
    """
    with entered(name):
        return IPRoute()


def run(
    name: str | None,
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` to completion inside namespace `name`, capturing stdout and stderr (no shell)."""
    with entered(name):
        return subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
        )


def _ns_key(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_in(name: str) -> list[int]:
    """Processes whose network namespace is `name` (compared by the namespace's inode)."""
    key = _ns_key(path_of(name))
    if key is None:
        return []
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _ns_key(f"/proc/{entry}/ns/net") == key:
            found.append(int(entry))
    return sorted(found)


def pid_alive(pid: int) -> bool:
    """True when process `pid` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError as exc:
        if exc.errno in (errno.ESRCH, errno.ENOENT):
            return False
        raise
    # Field 3, after the command name in parentheses: R, S, D, T, t, Z (zombie), X (dead), ...
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def terminate_pids(pids: Sequence[int], *, grace: float = 3.0) -> list[int]:
    """SIGTERM each pid, wait up to `grace` seconds for them to go, SIGKILL the rest.

    Returns the pids that were signalled. Never signals this process itself.
    """
    own = os.getpid()
    signalled: list[int] = []
    for pid in pids:
        if pid == own:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            signalled.append(pid)
    deadline = time.monotonic() + grace
    waiting = list(signalled)
    while waiting and time.monotonic() < deadline:
        waiting = [pid for pid in waiting if pid_alive(pid)]
        if waiting:
            time.sleep(0.02)  # polling /proc for the exit of processes that are not our children
    for pid in waiting:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return signalled
