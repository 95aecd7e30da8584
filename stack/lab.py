"""The lab: a private network of two namespaces for `tcpsh --lab` and for the interop tests.

Implements DESIGN.md "The lab" and its network rule:

    namespace tcpsh-<pid>-<n>-s (the stack's side)        namespace tcpsh-<pid>-<n>-k (the kernel's side)
      ts<pid>-<n>s  198.18.0.1/24  <---- veth ---->  ts<pid>-<n>k  198.18.0.2/24
      nft table ip tcpsh_<pid>_<n>: TCP to 198.18.0.1      python -m stack.services: echo 7, discard 9,
      dropped in INPUT, so the kernel's TCP stays quiet    daytime 13, chargen 19, HTTP 80

- The user-space stack takes the stack side's address as its own. It opens its sockets inside that
  namespace (`enter_stack_ns()`) while its threads keep running where they are; the firewall rule
  (stack.firewall) keeps the namespace's own kernel TCP from answering segments meant for the stack.
- The far side is the Linux kernel's TCP, with the services of stack.services running as a process of
  their own, started with the same interpreter.
- Names carry the process id and a counter, so two labs in one process or in two processes never
  collide, and a lab left by a killed process is recognisable: `Lab.clean_stale()` removes it.
- The veth pair is created inside the stack's namespace with its peer placed directly in the kernel's,
  so nothing ever appears in, or changes on, the host's own network.
- Everything is removed by `close()`: on leaving the `with` block (also by an exception or Ctrl-C), at
  interpreter exit (atexit), and on SIGTERM or SIGHUP (the handler cleans up, then lets the signal
  have its usual effect). SIGINT is left to Python, whose KeyboardInterrupt unwinds the `with` block
  and reaches atexit.

Namespaces, links, addresses and routes are made with pyroute2; no `ip` command is run. Processes are
started inside a namespace by forking from a thread that has entered it (see stack.netns).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import itertools
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from types import FrameType, MappingProxyType, TracebackType
from typing import IO, Any

import stack
from stack import firewall as _firewall
from stack import netns as _netns
from stack.firewall import FirewallError, FirewallRule

LAB_NETWORK = IPv4Network("198.18.0.0/15")
"""RFC 2544's range for benchmarking network devices; every lab address comes from it."""
DEFAULT_STACK_ADDR = IPv4Address("198.18.0.1")
DEFAULT_KERNEL_ADDR = IPv4Address("198.18.0.2")
DEFAULT_PREFIXLEN = 24
DEFAULT_MTU = 1500

IFNAMSIZ = 16
"""Linux's interface name buffer, terminating NUL included: names have at most 15 characters."""
MAX_INDEX = 9999
"""ts<pid>-<n>s with a 7-digit pid (pid_max is at most 2^22) and n up to 4 digits fits in 15."""

NETNS_RE = re.compile(r"^tcpsh-(\d+)-(\d+)-([sk])$")
IFNAME_RE = re.compile(r"^ts(\d+)-(\d+)([sk])$")


class LabError(RuntimeError):
    """The lab could not be built or removed; the message says what and why."""


class LabUnavailable(LabError):
    """This machine cannot build a lab at all: not root, or network namespaces are not permitted."""


@dataclass(frozen=True)
class LabNames:
    """Every name one lab uses, derived from its owner's pid and a per-process counter."""

    pid: int
    index: int

    def __post_init__(self) -> None:
        for ifname in (self.stack_if, self.kernel_if):
            if len(ifname) >= IFNAMSIZ:
                raise LabError(f"interface name {ifname} is longer than {IFNAMSIZ - 1} characters")

    @property
    def tag(self) -> str:
        """`tcpsh-<pid>-<n>`: the prefix of both namespace names, and the services' --tag."""
        return f"tcpsh-{self.pid}-{self.index}"

    @property
    def stack_ns(self) -> str:
        return f"{self.tag}-s"

    @property
    def kernel_ns(self) -> str:
        return f"{self.tag}-k"

    @property
    def stack_if(self) -> str:
        return f"ts{self.pid}-{self.index}s"

    @property
    def kernel_if(self) -> str:
        return f"ts{self.pid}-{self.index}k"

    @property
    def firewall(self) -> str:
        """The nft table (or iptables comment): `tcpsh_<pid>_<n>` (nft names take no hyphens)."""
        return f"tcpsh_{self.pid}_{self.index}"

    @classmethod
    def from_netns(cls, name: str) -> LabNames | None:
        """The lab a namespace name belongs to, or None when it is not a lab's name."""
        match = NETNS_RE.match(name)
        return cls(int(match.group(1)), int(match.group(2))) if match else None

    @classmethod
    def from_ifname(cls, name: str) -> LabNames | None:
        """The lab an interface name belongs to, or None when it is not a lab's name."""
        match = IFNAME_RE.match(name)
        return cls(int(match.group(1)), int(match.group(2))) if match else None


# Labs of this process that are not yet closed (strong references: a lab dropped without close()
# is still removed at exit).
_live: dict[int, Lab] = {}
_registry_lock = threading.RLock()
_counter = itertools.count()
_hooks_installed = False
_previous_handlers: dict[int, Any] = {}
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _close_live_labs(reason: str) -> None:
    with _registry_lock:
        labs = [lab for lab in _live.values() if lab.owner_pid == os.getpid()]
    for lab in labs:
        try:
            lab.close()
        except Exception as exc:
            print(f"tcpsh: removing lab {lab.tag} ({reason}): {exc}", file=sys.stderr)


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP: remove the labs, then give the signal the effect it had before us."""
    _close_live_labs(signal.Signals(signum).name)
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install_hooks() -> None:
    """atexit always; the SIGTERM and SIGHUP handlers only from the main thread, and never over a
    handler that ignores the signal or that was installed outside Python."""
    global _hooks_installed
    with _registry_lock:
        if _hooks_installed:
            return
        _hooks_installed = True
        atexit.register(_close_live_labs, "exit")
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in _STOP_SIGNALS:
            previous = signal.getsignal(signum)
            if previous is None or previous == signal.SIG_IGN or previous is _on_stop_signal:
                continue
            _previous_handlers[signum] = previous
            signal.signal(signum, _on_stop_signal)


def _after_fork_in_child() -> None:
    # A forked child owns none of its parent's labs; close() checks the owner pid as well.
    global _registry_lock
    _registry_lock = threading.RLock()
    _live.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back from this thread while the body runs, so that a signal
    arriving in the middle of close() is acted on once everything is removed, not half-way through."""
    mask = {signal.SIGINT, *_STOP_SIGNALS}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, mask)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _package_root() -> str:
    """The directory holding the `stack` package, so the services process imports this same copy."""
    return str(Path(stack.__file__).resolve().parent.parent)


def _stop_process(proc: subprocess.Popen[Any], deadline: float) -> None:
    """SIGTERM the process (and its process group when it leads one), SIGKILL it after `deadline`."""
    if proc.poll() is not None:
        return
    try:
        group = os.getpgid(proc.pid) == proc.pid and proc.pid != os.getpgid(0)
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        proc.wait()


class Lab:
    """Two namespaces joined by a veth pair, a firewall rule on the stack's side, the services on
    the kernel's side (DESIGN.md "The lab"). Built by the constructor; removed by `close()`.

        with Lab() as lab:
            with lab.enter_stack_ns():
                sock = socket.socket(...)          # lives in lab.stack_ns
            lab.run_in_kernel_ns(["curl", f"http://{lab.kernel_addr}/"])
    """

    def __init__(
        self,
        *,
        stack_addr: IPv4Address | str = DEFAULT_STACK_ADDR,
        kernel_addr: IPv4Address | str = DEFAULT_KERNEL_ADDR,
        prefixlen: int = DEFAULT_PREFIXLEN,
        mtu: int = DEFAULT_MTU,
        services: bool = True,
        firewall: bool = True,
        disable_ipv6: bool = True,
        ready_timeout: float = 15.0,
    ) -> None:
        """Build the lab now.

        `stack_addr` and `kernel_addr` must be distinct host addresses of one /`prefixlen` network
        inside 198.18.0.0/15. `services=False` leaves the kernel's side without services;
        `firewall=False` leaves the kernel's TCP on the stack's side free to answer (for tests of the
        rule itself). `disable_ipv6` keeps IPv6 neighbour discovery and its multicast off the wire.
        Raises LabUnavailable when this machine cannot build namespaces, FirewallError when no
        firewall tool is installed, LabError for anything else; a half-built lab is removed first.
        """
        self.owner_pid = os.getpid()
        self._lock = threading.RLock()
        self._closed = False
        self.stack_addr = IPv4Address(stack_addr)
        self.kernel_addr = IPv4Address(kernel_addr)
        self.prefixlen = prefixlen
        self.mtu = mtu
        self._check_config()
        self.network = IPv4Network(f"{self.stack_addr}/{prefixlen}", strict=False)

        self._children: list[subprocess.Popen[Any]] = []
        self.services_process: subprocess.Popen[bytes] | None = None
        self._services_stderr: IO[bytes] | None = None
        self.services: Mapping[str, int] = MappingProxyType({})
        self.firewall: FirewallRule | None = None
        self.stack_ifindex = 0
        self.stack_mac = ""
        self.kernel_mac = ""

        if os.geteuid() != 0:
            raise LabUnavailable("the lab needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run with sudo")
        with _registry_lock:
            self.names = self._allocate_names()
            _live[id(self)] = self
        _install_hooks()
        try:
            self._build(
                services=services, firewall=firewall, disable_ipv6=disable_ipv6, timeout=ready_timeout
            )
        except BaseException as exc:
            try:
                self.close()
            except Exception as cleanup_exc:
                exc.add_note(f"and removing the half-built lab failed too: {cleanup_exc}")
            raise

    # -- names and attributes ----------------------------------------------------------------

    @property
    def tag(self) -> str:
        return self.names.tag

    @property
    def stack_ns(self) -> str:
        """The stack's namespace: holds the stack's address and the firewall rule."""
        return self.names.stack_ns

    @property
    def kernel_ns(self) -> str:
        """The kernel's namespace: the Linux TCP peer and its services."""
        return self.names.kernel_ns

    @property
    def stack_if(self) -> str:
        """The veth end in the stack's namespace."""
        return self.names.stack_if

    @property
    def kernel_if(self) -> str:
        """The veth end in the kernel's namespace."""
        return self.names.kernel_if

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "live"
        return (
            f"<Lab {self.tag} {state}: {self.stack_ns}/{self.stack_if} {self.stack_addr} <-> "
            f"{self.kernel_ns}/{self.kernel_if} {self.kernel_addr}, mtu {self.mtu}>"
        )

    def summary(self) -> str:
        """A few lines for a person: the addresses, the services and how to look inside."""
        services = ", ".join(f"{name} {port}" for name, port in self.services.items()) or "none"
        rule = f"firewall table {self.firewall.name} ({self.firewall.backend})" if self.firewall else "none"
        return (
            f"lab {self.tag}: stack {self.stack_addr} on {self.stack_if} (netns {self.stack_ns}), "
            f"kernel {self.kernel_addr} on {self.kernel_if} (netns {self.kernel_ns}), mtu {self.mtu}\n"
            f"  services on {self.kernel_addr}: {services}\n"
            f"  firewall rule on the stack's side: {rule}\n"
            f"  look inside: ip netns exec {self.kernel_ns} ss -tn; "
            f"ip netns exec {self.stack_ns} tcpdump -ni {self.stack_if}"
        )

    def _check_config(self) -> None:
        if not 15 <= self.prefixlen <= 30:
            raise LabError(f"prefix length must be between 15 and 30, not {self.prefixlen}")
        network = IPv4Network(f"{self.stack_addr}/{self.prefixlen}", strict=False)
        if not network.subnet_of(LAB_NETWORK):
            raise LabError(f"lab addresses must lie in {LAB_NETWORK}, and {network} does not")
        for addr in (self.stack_addr, self.kernel_addr):
            if addr not in network or addr in (network.network_address, network.broadcast_address):
                raise LabError(f"{addr} is not a host address of {network}")
        if self.stack_addr == self.kernel_addr:
            raise LabError("the stack's and the kernel's addresses must differ")
        if not 68 <= self.mtu <= 65535:
            raise LabError(f"MTU must be between 68 (the IPv4 minimum) and 65535, not {self.mtu}")

    def _allocate_names(self) -> LabNames:
        """The next free names for this process (skipping any left by an earlier process whose pid
        this one reuses)."""
        taken = set(_netns.names())
        for index in _counter:
            if index > MAX_INDEX:
                break
            names = LabNames(self.owner_pid, index)
            if names.stack_ns not in taken and names.kernel_ns not in taken:
                return names
        raise LabError(f"this process has used up its {MAX_INDEX + 1} lab names")

    # -- building ------------------------------------------------------------------------------

    def _build(self, *, services: bool, firewall: bool, disable_ipv6: bool, timeout: float) -> None:
        try:
            _netns.create(self.stack_ns)
        except _netns.NetnsError as exc:
            raise LabUnavailable(f"{exc} (network namespaces are not available here)") from exc
        _netns.create(self.kernel_ns)
        if disable_ipv6:
            for ns in (self.stack_ns, self.kernel_ns):
                self._disable_ipv6(ns)
        self._make_links()
        if firewall:
            # Before the link is up, so the kernel's TCP never sees a segment meant for the stack.
            self.firewall = _firewall.install_rule(
                self.stack_addr, netns=self.stack_ns, name=self.names.firewall
            )
        self._links_up()
        if services:
            self._start_services(timeout)

    def kernel_answers_echo(self, on: bool) -> None:
        """Whether the stack namespace's own kernel answers pings of the stack's address. While a
        stack runs there, it answers them itself (else every echo would be answered twice)."""
        with _netns.entered(self.stack_ns):
            Path("/proc/sys/net/ipv4/icmp_echo_ignore_all").write_text("0" if on else "1")

    @staticmethod
    def _disable_ipv6(ns: str) -> None:
        # /proc/sys/net shows the namespace of the thread that opens it.
        with _netns.entered(ns):
            for scope in ("all", "default", "lo"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"/proc/sys/net/ipv6/conf/{scope}/disable_ipv6").write_text("1")

    def _make_links(self) -> None:
        """The veth pair, made in the stack's namespace with its peer put straight into the kernel's."""
        with _netns.iproute(self.stack_ns) as ipr:
            ipr.link(
                "add",
                ifname=self.stack_if,
                kind="veth",
                peer={"ifname": self.kernel_if, "net_ns_fd": self.kernel_ns},
            )
        for ns, ifname, addr in (
            (self.stack_ns, self.stack_if, self.stack_addr),
            (self.kernel_ns, self.kernel_if, self.kernel_addr),
        ):
            with _netns.iproute(ns) as ipr:
                index = ipr.link_lookup(ifname=ifname)[0]
                ipr.link("set", index=index, mtu=self.mtu)
                ipr.addr("add", index=index, address=str(addr), prefixlen=self.prefixlen)
                mac = ipr.get_links(index)[0].get("address")
                if ns == self.stack_ns:
                    self.stack_ifindex, self.stack_mac = index, mac
                else:
                    self.kernel_mac = mac

    def _links_up(self) -> None:
        for ns, ifname in ((self.stack_ns, self.stack_if), (self.kernel_ns, self.kernel_if)):
            with _netns.iproute(ns) as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], state="up")

    def _start_services(self, timeout: float) -> None:
        """Start stack.services in the kernel's namespace and wait for its READY line."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
        argv = [
            sys.executable,
            "-P",  # do not put the current directory first on sys.path; PYTHONPATH names the package
            "-m",
            "stack.services",
            "--address",
            str(self.kernel_addr),
            "--exit-on-eof",  # its stdin is a pipe from this process: EOF means this process is gone
            "--tag",
            self.tag,
        ]
        # Anonymous (already unlinked) file: read back for error messages, never left on disk.
        self._services_stderr = tempfile.TemporaryFile(prefix=f"{self.tag}-services-")  # noqa: SIM115
        proc = _netns.popen(
            self.kernel_ns,
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._services_stderr,
            env=env,
            start_new_session=True,  # a Ctrl-C at the terminal is for the shell, not for the services
        )
        self.services_process = proc
        assert proc.stdout is not None
        line = self._read_ready_line(proc, timeout)
        proc.stdout.close()
        ports: dict[str, int] = {}
        for word in line.split()[1:]:
            name, _, port = word.partition("=")
            ports[name] = int(port)
        self.services = MappingProxyType(ports)

    def _read_ready_line(self, proc: subprocess.Popen[bytes], timeout: float) -> str:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buffer = b""
        deadline = time.monotonic() + timeout
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LabError(
                    f"the services did not report READY within {timeout:g} s; "
                    f"stderr: {self.services_stderr() or '(empty)'}"
                )
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            piece = os.read(fd, 4096)
            if not piece:
                try:
                    status = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    status = None
                raise LabError(
                    f"the services process exited before READY (status {status}); "
                    f"stderr: {self.services_stderr() or '(empty)'}"
                )
            buffer += piece
        line = buffer.split(b"\n", 1)[0].decode(errors="replace")
        if not line.startswith("READY"):
            raise LabError(f"the services process said {line!r} instead of READY")
        return line

    def services_stderr(self) -> str:
        """What the services process has written to stderr so far."""
        if self._services_stderr is None or self._services_stderr.closed:
            return ""
        self._services_stderr.seek(0)
        return self._services_stderr.read().decode(errors="replace").strip()

    # -- using -------------------------------------------------------------------------------

    def _check_live(self) -> None:
        if self._closed:
            raise LabError(f"lab {self.tag} is closed")

    def enter_stack_ns(self) -> contextlib.AbstractContextManager[None]:
        """Context manager: the calling thread is in the stack's namespace for the body, then returns.

        Sockets created in the body live in the stack's namespace (the user-space stack's raw and
        AF_PACKET sockets are made this way); the process's other threads are not affected.
        """
        self._check_live()
        return _netns.entered(self.stack_ns)

    def enter_kernel_ns(self) -> contextlib.AbstractContextManager[None]:
        """Context manager: as `enter_stack_ns`, for the kernel's namespace (ordinary kernel sockets)."""
        self._check_live()
        return _netns.entered(self.kernel_ns)

    def run_in_kernel_ns(self, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` in the kernel's namespace; `popen_kwargs` go to subprocess.Popen.

        The process is stopped by `close()` if it is still running. It starts in a session of its
        own unless `start_new_session=False` is given, so a Ctrl-C meant for the shell does not reach it.
        """
        return self._spawn(self.kernel_ns, argv, popen_kwargs)

    def run_in_stack_ns(self, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` in the stack's namespace (tcpdump on `stack_if`, for example); as run_in_kernel_ns."""
        return self._spawn(self.stack_ns, argv, popen_kwargs)

    def _spawn(self, ns: str, argv: Sequence[str], popen_kwargs: dict[str, Any]) -> subprocess.Popen[Any]:
        with self._lock:
            self._check_live()
            popen_kwargs.setdefault("start_new_session", True)
            proc = _netns.popen(ns, argv, **popen_kwargs)
            self._children = [p for p in self._children if p.poll() is None]
            self._children.append(proc)
            return proc

    # -- removing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process in the lab, remove the firewall rule and both namespaces (the veth goes
        with them). Idempotent; safe from atexit and signal handlers. Raises LabError naming what could
        not be removed, after trying everything."""
        if os.getpid() != self.owner_pid:
            return  # a forked child: the lab belongs to the parent
        errors: list[str] = []
        with _signals_deferred(), self._lock:
            if self._closed:
                return
            deadline = time.monotonic() + 5.0
            processes = [p for p in (self.services_process, *self._children) if p is not None]
            for proc in processes:
                if proc.stdin is not None:
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
                try:
                    _stop_process(proc, deadline)
                except Exception as exc:
                    errors.append(f"stopping process {proc.pid}: {exc}")
            for ns in (self.kernel_ns, self.stack_ns):
                try:
                    # Anything else still in the lab's namespaces belongs to the lab.
                    _netns.terminate_pids(_netns.pids_in(ns), grace=2.0)
                except Exception as exc:
                    errors.append(f"stopping the processes in {ns}: {exc}")
            if self.firewall is not None:
                try:
                    self.firewall.remove()
                except Exception as exc:
                    errors.append(f"removing firewall rule {self.firewall.name}: {exc}")
            for ns in (self.stack_ns, self.kernel_ns):
                try:
                    _netns.remove(ns)
                except Exception as exc:
                    errors.append(f"removing network namespace {ns}: {exc}")
            if self._services_stderr is not None:
                self._services_stderr.close()
            if not errors:
                self._closed = True
                with _registry_lock:
                    _live.pop(id(self), None)
        if errors:
            raise LabError(f"lab {self.tag} was not removed completely: " + "; ".join(errors))

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except LabError as cleanup_exc:
            exc.add_note(str(cleanup_exc))  # keep the caller's exception the one that propagates

    # -- stale labs ----------------------------------------------------------------------------

    @classmethod
    def clean_stale(cls, *, force: bool = False) -> list[str]:
        """Remove what labs of dead processes left behind (`tcpsh --lab-clean`); returns what went.

        Finds namespaces named tcpsh-<pid>-<n>-s/-k, interfaces named ts<pid>-<n>s/k in the current
        namespace, tcpsh_<pid>_<n> firewall tables or rules in the current namespace, and processes
        inside those namespaces or carrying `--tag tcpsh-<pid>-<n>`, whose <pid> is no longer running.
        With `force`, the labs of running processes go too, except this process's own live labs.
        Two cleaners (two `tcpsh --lab-clean` at once) take turns, so one lab is removed by one of them.
        """
        with _cleaning_turn():
            return cls._clean_stale(force)

    @classmethod
    def _clean_stale(cls, force: bool) -> list[str]:
        with _registry_lock:
            live_tags = {lab.tag for lab in _live.values() if not lab.closed}

        def stale(names: LabNames) -> bool:
            if names.tag in live_tags:
                return False
            return force or names.pid == os.getpid() or not _netns.pid_alive(names.pid)

        removed: list[str] = []
        labs: dict[str, LabNames] = {}
        for ns in _netns.names():
            names = LabNames.from_netns(ns)
            if names is not None and stale(names):
                labs[names.tag] = names

        tagged = _tagged_processes()
        for tag in tagged:
            names = LabNames.from_netns(f"{tag}-s")
            if names is not None and stale(names):
                labs.setdefault(tag, names)

        for tag, names in sorted(labs.items()):
            pids = set(tagged.get(tag, ()))
            for ns in (names.kernel_ns, names.stack_ns):
                pids.update(_netns.pids_in(ns))
            pids.discard(os.getpid())
            descriptions = {pid: _describe_process(pid) for pid in sorted(pids)}
            for pid in _netns.terminate_pids(sorted(pids)):
                removed.append(f"process {pid} ({descriptions[pid]})")
            if _netns.exists(names.stack_ns):
                with contextlib.suppress(FirewallError, _netns.NetnsError):
                    for rule in _firewall.list_rules(names.stack_ns):
                        _firewall.remove_rule(rule, names.stack_ns)
                        removed.append(f"firewall {rule} (in {names.stack_ns})")
            # Both ends are listed first: the pair goes as soon as either namespace is gone.
            links = {ns: _lab_links(ns) for ns in (names.stack_ns, names.kernel_ns)}
            for ns, ifnames in links.items():
                removed.extend(f"veth {ifname} (in {ns})" for ifname in ifnames)
                if _netns.remove(ns):
                    removed.append(f"netns {ns}")

        with _netns.iproute(None) as ipr:
            for link in ipr.get_links():
                ifname = link.get("ifname")
                names = LabNames.from_ifname(ifname or "")
                if names is not None and stale(names):
                    with contextlib.suppress(Exception):
                        ipr.link("del", index=link["index"])
                        removed.append(f"veth {ifname}")
        with contextlib.suppress(FirewallError):
            removed.extend(f"firewall {name}" for name in _firewall.remove_stale(None, force=force))
        return removed


@contextlib.contextmanager
def _cleaning_turn() -> Iterator[None]:
    """An exclusive flock(2) on the /var/run/netns directory itself: no lock file is left behind."""
    try:
        fd = os.open(_netns.NETNS_RUN_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield  # no named namespaces at all: nothing to take turns over
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _lab_links(ns: str) -> list[str]:
    """The lab's veth names inside namespace `ns` ([] when it cannot be read)."""
    try:
        with _netns.iproute(ns) as ipr:
            return [
                name
                for link in ipr.get_links()
                if (name := link.get("ifname")) and LabNames.from_ifname(name) is not None
            ]
    except Exception:
        return []


def _tagged_processes() -> dict[str, list[int]]:
    """Processes whose command line carries `--tag tcpsh-<pid>-<n>` (the lab's services), by tag."""
    found: dict[str, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            words = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for i, word in enumerate(words[:-1]):
            if word == b"--tag":
                tag = words[i + 1].decode(errors="replace")
                if re.fullmatch(r"tcpsh-\d+-\d+", tag):
                    found.setdefault(tag, []).append(int(entry))
    return found


def _describe_process(pid: int) -> str:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError as exc:
        return "gone" if exc.errno in (errno.ENOENT, errno.ESRCH) else str(exc)
    text = " ".join(w.decode(errors="replace") for w in words)
    return text if len(text) <= 80 else text[:77] + "..."
