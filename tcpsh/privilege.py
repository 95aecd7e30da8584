"""Privilege: what the shell keeps of root's powers once it is set up, and the files it writes for the
user who ran it through sudo.

What needs privilege, and when
------------------------------
Set-up, before the first prompt: the raw sockets (CAP_NET_RAW), the firewall rule and the lab's
namespaces, veth pair and services (CAP_NET_ADMIN, CAP_SYS_ADMIN). After set-up the stack's threads only
use sockets that are already open; no thread enters a namespace or starts a process again until the
shell leaves. The way out still needs privilege: stack.lab.Lab.close() (on exit, atexit, SIGTERM or
SIGHUP, always from the main thread) stops the processes found in the lab's namespaces, removes the
firewall rule by running nft (or iptables) inside the stack's namespace, and unmounts and unlinks the
namespaces under /run/netns; with --firewall on a real host the rule is removed the same way.

The decision
------------
- The shell stays uid 0. setuid() to the invoking user cannot be undone, so the teardown above could
  not run any more (a root helper process doing it instead would mean moving the lab out of the process
  that uses it). seteuid() can be undone, but glibc applies it to every thread of the process at once,
  so the stack's threads would lose their privileges in the middle of their work.
- Capabilities: after set-up, before the stack's threads start (capabilities belong to each thread; a
  new thread inherits its creator's), `drop_capabilities()` keeps only these in the bounding,
  permitted and effective sets, clears the inheritable and ambient sets, and so no command run later
  (nft, iptables) gets more either:

    CAP_NET_ADMIN, CAP_NET_RAW  removing the firewall rule (nft; iptables needs both)
    CAP_SYS_ADMIN               setns() into the stack's namespace for that, and unmounting the
                                namespaces (umount2); it is a broad capability, so what remains is
                                narrower, not a sandbox
    CAP_DAC_READ_SEARCH         reading the shell's own modules and pyroute2's, imported lazily as
                                late as the teardown, from a checkout in a home directory of mode 0700
                                or 0750 (`sudo make lab` there), and namespace files of mode 0
    CAP_SYS_PTRACE              seeing which processes are in the lab's namespaces (/proc/PID/ns/net of
                                a process with more capabilities than this one, such as a tcpdump
                                started with `ip netns exec`), so that close() stops them
    CAP_KILL                    stopping such a process when it runs as another user
    CAP_SETUID, CAP_SETGID      only under sudo: acting as the invoking user for files (below)

  Everything else goes, among them CAP_DAC_OVERRIDE (root no longer writes through other users'
  permissions), CAP_CHOWN, CAP_FOWNER, CAP_SETPCAP, CAP_SETFCAP, CAP_SYS_MODULE, CAP_SYS_RAWIO,
  CAP_MKNOD and CAP_SYS_BOOT. Teardown was measured with the capabilities dropped: the lab's
  namespaces, and a tcpdump started in the lab with `ip netns exec` before it, are gone after exit
  (without CAP_SYS_PTRACE that tcpdump is not seen and outlives the lab); on a real host (tried inside
  a lab's namespace) the --firewall rule is removed with nft and with iptables.
- Files under sudo (SUDO_UID and SUDO_GID; the user's groups and home from the password database):
  the shell opens every file a command names (`receive --to`, `capture start`, `send --file`) and its
  history file from a thread that has, for the length of the open, the invoking user's filesystem
  ids: setfsuid(2), setfsgid(2) and the user's supplementary groups (setgroups(2) called directly).
  The kernel keeps these per thread and glibc does not spread them to the other threads, so the
  stack's threads carry on as root meanwhile; the switch also takes the file capabilities away from
  that thread, so the kernel checks permissions exactly as for the user and creates the file owned by
  them: no access() emulation, no chown afterwards, no window between a check and the open. After
  the open only the descriptor is used (the stack's threads write the capture through it). `~` is the
  invoking user's home.
- Without sudo (no SUDO_UID, or sudo to the user who is already running it) there is no one else to
  act as: files belong to whoever runs the shell, with its own permissions.
- Paths: a file to be written is refused when it is a symbolic link (O_NOFOLLOW), a directory or not a
  regular file; a missing directory, a path through a file, no permission and the like are each one
  line, `capture: cannot write /x/y.pcap: no such directory`. The file is opened before anything is
  received, so a bad path costs no data; it is created only by a successful open, and removed again
  if the command then fails. An existing file is replaced (as `>` does in a shell), and only once the
  command has its data: a failed command leaves it as it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import pwd
import stat
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import NoReturn, TypeVar

from tcpsh.commands import CommandError

# ---------------------------------------------------------------------- capabilities (linux/capability.h)

CAP_DAC_READ_SEARCH = 2
CAP_KILL = 5
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21

KEPT = {
    CAP_NET_ADMIN: "CAP_NET_ADMIN",
    CAP_NET_RAW: "CAP_NET_RAW",
    CAP_SYS_ADMIN: "CAP_SYS_ADMIN",
    CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH",
    CAP_SYS_PTRACE: "CAP_SYS_PTRACE",
    CAP_KILL: "CAP_KILL",
}
"""What the shell keeps after set-up, for the teardown (see the module docstring)."""
SWITCHING = {CAP_SETUID: "CAP_SETUID", CAP_SETGID: "CAP_SETGID"}
"""Kept as well under sudo: taking the invoking user's filesystem ids for files."""

_PR_CAPBSET_READ = 23
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_VERSION_3 = 0x20080522

# setgroups(2) by number, for the calling thread alone (glibc's setgroups() changes every thread).
_SETGROUPS = {
    "x86_64": 116,
    "aarch64": 159,
    "riscv64": 159,
    "ppc64le": 81,
    "ppc64": 81,
    "s390x": 206,
    "i686": 206,  # setgroups32
    "i386": 206,
    "armv7l": 206,
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.setfsuid.argtypes = [ctypes.c_int]
_libc.setfsgid.argtypes = [ctypes.c_int]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _check(result: int, what: str) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def effective_capabilities() -> int:
    """The calling thread's effective capabilities, as a bit mask (CapEff in /proc)."""
    try:
        with open("/proc/thread-self/status") as f:
            return next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        return 0


def has_capability(cap: int) -> bool:
    return bool(effective_capabilities() >> cap & 1)


def drop_capabilities(*, switching: bool = False) -> list[str]:
    """Keep only KEPT (and SWITCHING under sudo, or when `switching`: a daemon acts as each user who
    drives it) in this thread's bounding, permitted and effective sets; clear its inheritable and ambient
    sets. Call it from the main thread before the stack's threads start, so that every later thread
    inherits the smaller sets. Returns the names of what is kept; OSError when the kernel refused."""
    keep = dict(KEPT)
    if switching or invoker() is not None:
        keep |= SWITCHING
    prctl = _libc.prctl
    if has_capability(CAP_SETPCAP):  # dropping from the bounding set needs it; do that first
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
        for cap in range(last + 1):
            if cap not in keep and prctl(_PR_CAPBSET_READ, cap, 0, 0, 0) == 1:
                _check(prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"dropping capability {cap}")
    with contextlib.suppress(OSError):  # kernels before 4.3 have no ambient set
        _check(prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clearing ambient capabilities")
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    mask = sum(1 << cap for cap in keep)
    for i in range(2):
        part = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].permitted &= part
        data[i].effective = data[i].permitted
        data[i].inheritable = 0
    _check(_libc.capset(ctypes.byref(header), data), "capset")
    return [name for cap, name in sorted(keep.items()) if has_capability(cap)]


# ---------------------------------------------------------------------- the invoking user


@dataclass(frozen=True)
class Invoker:
    """The user who ran the shell through sudo."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str
    home: Path | None


def invoker(environ: Mapping[str, str] | None = None) -> Invoker | None:
    """The user who ran the shell through sudo, when files are to be theirs and the shell can act as
    them; None without sudo, under sudo to the user already running it, or without the capabilities to
    switch (files then belong to whoever runs the shell). In a thread acting for a daemon's client
    (`acting_for`), that client."""
    if environ is None and hasattr(_thread, "client"):
        return _thread.client[0]
    env = os.environ if environ is None else environ
    try:
        uid, gid = int(env["SUDO_UID"]), int(env["SUDO_GID"])
    except (KeyError, ValueError):
        return None
    if (uid, gid) == (os.geteuid(), os.getegid()) or uid < 0 or gid < 0:
        return None
    caps = effective_capabilities()
    if not (caps >> CAP_SETUID & 1 and caps >> CAP_SETGID & 1):
        return None
    return user(uid, gid, env.get("SUDO_USER"))


def user(uid: int, gid: int, name: str | None = None) -> Invoker:
    """The user `uid` with primary group `gid`: name, groups and home from the password database."""
    try:
        entry: pwd.struct_passwd | None = pwd.getpwuid(uid)
    except KeyError:
        entry = None
    name = entry.pw_name if entry else name or str(uid)
    groups = tuple(os.getgrouplist(entry.pw_name, gid)) if entry else (gid,)
    home = Path(entry.pw_dir) if entry and entry.pw_dir else None
    return Invoker(uid, gid, groups, name, home)


def home() -> Path:
    """The home directory of the invoking user under sudo, else of whoever runs the shell."""
    who = invoker()
    if who is not None and who.home is not None:
        return who.home
    user = os.environ.get("SUDO_USER")
    return Path(os.path.expanduser(f"~{user}")) if user else Path.home()


def user_path(text: str) -> Path:
    """A path as typed: `~` and `~/...` are the invoking user's home (not root's, under sudo); for a
    daemon's client, a relative path starts from the client's working directory."""
    if text == "~" or text.startswith("~/"):
        return home() / text[2:]
    path = Path(text).expanduser()
    cwd = getattr(_thread, "client", (None, None))[1]
    return cwd / path if cwd is not None else path


_thread = threading.local()


@contextlib.contextmanager
def acting_for(who: Invoker | None, cwd: Path | None) -> Iterator[None]:
    """For the body, files named by commands in this thread are the user `who`'s (None: the daemon's
    own user, root) and relative paths start from `cwd`: a daemon running a command for a client."""
    _thread.client = (who, cwd)
    try:
        yield
    finally:
        del _thread.client


def _set_thread_groups(groups: tuple[int, ...] | list[int]) -> None:
    number = _SETGROUPS.get(platform.machine())
    if number is None:
        return  # an architecture not listed: the thread keeps its supplementary groups
    array = (ctypes.c_uint32 * max(1, len(groups)))(*groups)
    _check(_libc.syscall(ctypes.c_long(number), ctypes.c_size_t(len(groups)), array), "setgroups")


def _set_fs_id(setter: Callable[[int], int], value: int, what: str) -> int:
    """setfsuid/setfsgid: returns the previous id; checks the change took (they report no errors)."""
    previous = setter(value)
    if setter(-1) != value:  # -1 is never valid: the call only returns the current id
        raise PermissionError(errno.EPERM, f"{what}({value}) refused")
    return previous


@contextlib.contextmanager
def as_invoker() -> Iterator[Invoker | None]:
    """For the body, the calling thread has the invoking user's filesystem uid, gid and groups (a no-op
    without sudo); the other threads are not affected. Nested use is the same as one."""
    who = invoker()
    if who is None or getattr(_thread, "inside", False):
        yield who
        return
    setfsuid, setfsgid = _libc.setfsuid, _libc.setfsgid
    groups = os.getgroups()  # the calling thread's
    _set_thread_groups(who.groups)
    gid = uid = None
    try:
        gid = _set_fs_id(setfsgid, who.gid, "setfsgid")
        uid = _set_fs_id(setfsuid, who.uid, "setfsuid")
        _thread.inside = True
        yield who
    finally:
        _thread.inside = False
        if uid is not None:
            setfsuid(uid)
        if gid is not None:
            setfsgid(gid)
        _set_thread_groups(groups)


# ---------------------------------------------------------------------- paths given to commands


def _reason(err: OSError, *, reading: bool = False) -> str:
    """One short phrase for what went wrong with a path."""
    code = err.errno
    if code == errno.ENOENT:
        return "no such file" if reading else "no such directory"
    if code in (errno.EACCES, errno.EPERM):
        who = invoker()
        return f"permission denied for {who.name}" if who else "permission denied"
    phrases = {
        errno.ENOTDIR: "a part of the path is not a directory",
        errno.EISDIR: "it is a directory",
        errno.ELOOP: "it is a symbolic link; give the file itself"
        if not reading
        else "too many symbolic links",
        errno.ENXIO: "it is not a regular file",
        errno.EROFS: "read-only file system",
        errno.ENAMETOOLONG: "the name is too long",
    }
    if code in phrases:
        return phrases[code]
    text = err.strerror or str(err)
    return text[:1].lower() + text[1:]


def _refuse(command: str, verb: str, path: Path | str, reason: str) -> NoReturn:
    raise CommandError(f"{command}: cannot {verb} {path}: {reason}")


def _kind_refused(mode: int, *, reading: bool) -> str | None:
    if stat.S_ISLNK(mode) and not reading:
        return "it is a symbolic link; give the file itself"
    if stat.S_ISDIR(mode):
        return "it is a directory"
    if not stat.S_ISREG(mode) and not stat.S_ISLNK(mode):
        return "it is not a regular file"
    return None


def read_bytes(text: str, command: str) -> bytes:
    """The contents of a regular file, read as the invoking user; CommandError with one line otherwise."""
    if not text:
        _refuse(command, "read", "''", "no file name given")
    path = user_path(text)
    with as_invoker():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as e:
            _refuse(command, "read", path, _reason(e, reading=True))
        try:
            refused = _kind_refused(os.fstat(fd).st_mode, reading=True)
            if refused:
                _refuse(command, "read", path, refused)
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read()
        except OSError as e:
            _refuse(command, "read", path, _reason(e, reading=True))
        finally:
            os.close(fd)


def make_dirs(path: Path) -> None:
    """mkdir -p as the invoking user (so the folders are theirs); OSError when it cannot be done."""
    with as_invoker():
        path.mkdir(parents=True, exist_ok=True)


T = TypeVar("T")


class Output:
    """A file a command writes, the invoking user's: opened (created if missing) at once, so that a bad
    path is told before anything is received; `replace(data)` writes it. Leaving the `with` block by an
    exception removes a file this created and leaves a file that was there as it was.

        with Output("~/got.bin", "receive") as out:
            data = ...          # may fail: nothing is left behind
            out.replace(data)
    """

    def __init__(self, text: str, command: str) -> None:
        self.command = command
        if not text:
            _refuse(command, "write", "''", "no file name given")
        self.path = user_path(text)
        if text.endswith("/"):
            _refuse(command, "write", self.path, "that names a directory; give a file name")
        self.created = False
        self._fd: int | None = self._open()

    def _open(self) -> int:
        flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        with as_invoker():
            try:
                refused = _kind_refused(os.lstat(self.path).st_mode, reading=False)
            except FileNotFoundError:
                refused, exists = None, False
            except OSError as e:
                self._fail(e)
            else:
                exists = True
            if refused:
                self._fail(refused)
            try:
                if exists:
                    fd = os.open(self.path, flags)
                else:
                    fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o666)
                    self.created = True
            except FileExistsError:
                self._fail("it appeared while it was being created; try again")
            except OSError as e:
                self._fail(e)
        refused = _kind_refused(os.fstat(fd).st_mode, reading=False)
        if refused:  # a FIFO or device that replaced the file between the two calls
            os.close(fd)
            self._fail(refused)
        os.set_blocking(fd, True)
        return fd

    def _fail(self, why: OSError | str) -> NoReturn:
        _refuse(self.command, "write", self.path, why if isinstance(why, str) else _reason(why))

    def replace(self, data: bytes) -> None:
        """The file's contents become `data`."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, 0)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as e:
            self._fail(e)

    def hand_over(self, opener: Callable[[Path], T]) -> T:
        """Let `opener(path)` open the file again (a writer that takes a path), as the invoking user."""
        try:
            with as_invoker():
                return opener(self.path)
        except OSError as e:
            self._fail(e)

    def close(self, *, keep: bool = True) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not keep and self.created:
            with as_invoker(), contextlib.suppress(OSError):
                os.unlink(self.path)
            self.created = False

    def __enter__(self) -> Output:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(keep=exc is None)
