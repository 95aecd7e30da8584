"""`tcpsh daemon` and `tcpsh attach`: the stack in a process of its own, driven by shells that come and go.

Each test starts a daemon in a lab of its own (`tcpsh daemon --lab`, its socket in a private directory)
and waits for it to say it is ready the way systemd hears it (sd_notify READY=1 on NOTIFY_SOCKET). Its
log (stderr) is read line by line as it comes. Attached shells are driven through a pseudo-terminal
like the in-process shell (tests/e2e/conftest.py's Shell); scripts run with pipes; the protocol is
also spoken directly, through a plain socket, to send what no shell would.

Traffic goes only to the lab each daemon builds for itself (198.18.0.0/15).
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from tcpsh import protocol
from tests.e2e import conftest
from tests.e2e.conftest import (
    KERNEL,
    PROMPT,
    START_TIMEOUT,
    Run,
    Shell,
    assert_lab_gone,
    run_tcpsh,
    tcpsh_argv,
)
from tests.e2e.test_lab import UNPRIVILEGED, need_setpriv
from tests.e2e.test_scripts import FAILING, failure_lines, write
from tests.e2e.test_shell_views import Screen, at_prompt, find_line, skip_seen, wait_screen

pytestmark = pytest.mark.root

STOP_TIMEOUT = 30.0


class Daemon:
    """A running `tcpsh daemon --lab`: its process, its socket, and its log as it comes."""

    def __init__(self, env: dict[str, str], *extra: str, ready: bool = True) -> None:
        """Start it; with `ready`, wait until it says READY=1 (its socket up, the stack running)."""
        self.dir = Path(tempfile.mkdtemp(prefix="tcpsh-daemon-"))
        os.chmod(self.dir, 0o755)  # the socket's own mode is what keeps other users out
        self.socket = self.dir / "tcpsh.sock"
        self.lines: list[str] = []
        self._changed = threading.Condition()
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(self.dir / "notify"))
        notify.settimeout(START_TIMEOUT)
        argv = [*tcpsh_argv(), "daemon", "--lab", "--socket", str(self.socket), *extra]
        self.proc = subprocess.Popen(
            argv,
            env=dict(env, NOTIFY_SOCKET=str(self.dir / "notify")),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not ready:
            notify.close()
            return
        try:
            said = notify.recv(256)
        except TimeoutError:
            self.close()
            pytest.fail(f"the daemon did not say READY=1 within {START_TIMEOUT} s; its log:\n{self.log}")
        finally:
            notify.close()
        assert said == b"READY=1", said

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<end of log>")
            self._changed.notify_all()

    def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until a line of the log matches `pattern` (a regular expression)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if m := regex.search(line):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.lines and self.lines[-1] == "<end of log>"):
                    pytest.fail(f"the daemon's log has no {pattern!r}; it says:\n{self.log}", pytrace=False)
                self._changed.wait(left)

    def terminate(self) -> int:
        """SIGTERM, and the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(timeout=STOP_TIMEOUT)
        self._reader.join(timeout=5)
        return status

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def attach(self, env: dict[str, str]) -> Attached:
        sh = Attached(env, self.socket)
        sh.wait_attached()
        return sh

    def script(self, args: list[str], env: dict[str, str], cwd: Path | None = None) -> Run:
        return run_tcpsh(["attach", "--socket", str(self.socket), *args], env, cwd=cwd)


class Attached(Shell):
    """`tcpsh attach` in a pseudo-terminal."""

    def __init__(self, env: dict[str, str], sock: Path) -> None:
        argv = [*tcpsh_argv(), "attach", "--socket", str(sock)]
        with mock.patch.object(conftest, "tcpsh_argv", lambda: argv):
            super().__init__(env)

    def wait_attached(self) -> None:
        self.wait_for(
            r"attached to the tcpsh daemon at \S+ \(pid \d+\), as client \d+", timeout=START_TIMEOUT
        )
        self.wait_for(rf"lab: the stack is 198\.18\.0\.1; Linux's TCP is {re.escape(KERNEL)} with echo 7")
        self.wait_for(r"type 'help' for the commands, Ctrl-D detaches \(the connections stay open\)")
        self.prompt()


@pytest.fixture
def daemon(tcpsh_env: dict[str, str]) -> Iterator[Daemon]:
    d = Daemon(tcpsh_env)
    try:
        yield d
        assert d.proc.poll() is None, f"the daemon ended during the test:\n{d.log}"
        assert "internal error" not in d.log, d.log
        assert d.terminate() == 0, d.log
        assert not d.socket.exists(), "the socket file was left behind"
    finally:
        d.close()
        assert_lab_gone(d.pid)


@pytest.fixture
def pair(daemon: Daemon, tcpsh_env: dict[str, str]) -> Iterator[tuple[Attached, Attached]]:
    """Two shells attached to the daemon, one after the other (clients 1 and 2)."""
    a = daemon.attach(tcpsh_env)
    b = None
    try:
        b = daemon.attach(tcpsh_env)
        yield a, b
    finally:
        a.close()
        if b is not None:
            b.close()


class Raw:
    """A program speaking the protocol through a plain socket."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.sock.settimeout(20)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def say(self, msg_type: str, **fields: Any) -> None:
        self.send(protocol.encode(msg_type, **fields))

    def hear(self) -> dict[str, Any]:
        """The next message that is not news."""
        while True:
            line = self.file.readline()
            assert line.endswith(b"\n"), f"the daemon closed the connection (got {line!r})"
            msg = json.loads(line)
            assert msg["v"] == protocol.VERSION
            if msg["type"] != protocol.EVENT:
                return msg

    def hello(self) -> dict[str, Any]:
        self.say(protocol.HELLO, width=100)
        welcome = self.hear()
        assert welcome["type"] == protocol.WELCOME, welcome
        return welcome

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def states(raw: Raw) -> dict[str, str]:
    raw.say(protocol.SUMMARY, id="s")
    summary = raw.hear()
    assert summary["type"] == protocol.SUMMARY and summary["id"] == "s", summary
    return {c["id"]: c["state"] for c in summary["connections"]}


# ---------------------------------------------------------------------- shells that share a stack


def test_two_shells_share_connections_and_one_detaching_leaves_them(
    daemon: Daemon, pair: tuple[Attached, Attached]
) -> None:
    a, b = pair
    daemon.wait_log(rf"client \d+: connected: pid {a.pid} uid 0 gid 0")
    daemon.wait_log(rf"client \d+: connected: pid {b.pid} uid 0 gid 0")

    a.ask(f"open {KERNEL}:7", r"c1 ESTABLISHED 198\.18\.0\.1:\d+ -> 198\.18\.0\.2:7")
    b.wait_for(r"\* c1: established")
    b.ask("status", r"c1\s*│\s*ESTABLISHED\s*│\s*198\.18\.0\.1:\d+\s*│\s*198\.18\.0\.2:7")

    before, _ = a.ask(r'send c1 "hello\r\n"', r"c1: queued 7 bytes")
    b.wait_for(r"\* data arrived on c1 \(7 bytes\)")
    if "* data arrived on c1 (7 bytes)" not in before:  # the echo's news, before or after the answer
        a.wait_for(r"\* data arrived on c1 \(7 bytes\)")

    # The first shell detaches with Ctrl-D: it ends, and the connection stays.
    a.prompt()
    a.child.sendeof()
    assert a.wait_exit() == 0, a.text()
    assert "detached: the connections stay open in the daemon" in a.text()
    daemon.wait_log(r"client 1: detached")

    b.ask("status c1", r"c1 ESTABLISHED")
    b.ask("receive c1", r"c1: 7 bytes: hello\\r\\n")
    b.ask(r'send c1 "still here\n"', r"c1: queued 11 bytes")
    b.ask("expect c1 here --timeout 5", r"c1: got here")


def test_shutdown_from_a_shell_stops_the_daemon_and_tells_the_others(tcpsh_env: dict[str, str]) -> None:
    d = Daemon(tcpsh_env)
    a = b = None
    try:
        a, b = d.attach(tcpsh_env), d.attach(tcpsh_env)
        a.ask(f"open {KERNEL}:7", r"c1 ESTABLISHED")
        a.ask("shutdown", r"the daemon is stopping: open connections are closed, then aborted")
        assert a.wait_exit() == 0, a.text()
        b.wait_for(r"the daemon is stopping \(shutdown by client 1 \(pid \d+ uid 0 gid 0\)\)")
        b.wait_for(r"c1 closed")
        assert b.wait_exit() == 0, b.text()
        assert d.proc.wait(timeout=STOP_TIMEOUT) == 0, d.log
        d.wait_log(r"^c1 closed$")
        assert not d.socket.exists()
    finally:
        for sh in (a, b):
            if sh is not None:
                sh.close()
        d.close()
    assert_lab_gone(d.pid)


def test_ctrl_c_interrupts_a_command_in_the_daemon(daemon: Daemon, tcpsh_env: dict[str, str]) -> None:
    a = daemon.attach(tcpsh_env)
    try:
        a.ask(f"open {KERNEL}:7", r"c1 ESTABLISHED")
        a.prompt()
        a.type("receive c1 --timeout 60")
        a.wait_for(r"receive c1 --timeout 60")
        a.child.sendintr()
        a.wait_for(r"interrupted")
        a.ask("status c1", r"c1 ESTABLISHED")
        # The interrupted receive took nothing: what comes next is read whole.
        a.ask(r'send c1 "after\n"', r"c1: queued 6 bytes")
        a.ask("expect c1 after --timeout 5", r"c1: got after")
        # A sleep (a script's pause) is interrupted as well, long before its end.
        a.prompt()
        a.type("sleep 600")
        a.wait_for(r"sleep 600")
        a.child.sendintr()
        a.wait_for(r"interrupted")
        a.ask("status c1", r"c1 ESTABLISHED")
    finally:
        a.close()


# ---------------------------------------------------------------------- scripts


def test_a_script_through_attach_passes(daemon: Daemon, tmp_path: Path, tcpsh_env: dict[str, str]) -> None:
    write(
        tmp_path,
        "talk.tcpsh",
        f"""# against a running daemon
open {KERNEL}:7
send c1 "one\\r\\n"
expect c1 "one\\r\\n" --timeout 5
status
echo DONE
""",
    )
    run = daemon.script(["talk.tcpsh"], tcpsh_env, cwd=tmp_path)
    assert run.returncode == 0, run
    assert "c1: got one\\r\\n" in run.lines, run
    assert "* c1: established" in run.lines, run
    assert "DONE" in run.lines, run
    assert failure_lines(run, "talk.tcpsh") == [], run
    # The script detached; its connection is still there for the next one.
    again = daemon.script(["-c", 'send c1 "two\\n"; expect c1 two --timeout 5; status c1'], tcpsh_env)
    assert again.returncode == 0, again
    assert "c1: got two" in again.lines and "c1 ESTABLISHED" in again.lines, again


@pytest.mark.parametrize("case", sorted(FAILING))
def test_a_failing_script_through_attach_stops_at_its_line(
    case: str, tmp_path: Path, tcpsh_env: dict[str, str]
) -> None:
    """The cases of test_scripts.py, each against a daemon of its own (their connection ids start at c1)."""
    text, line, message = FAILING[case]
    write(tmp_path, "f.tcpsh", text)
    d = Daemon(tcpsh_env)
    try:
        run = d.script(["f.tcpsh"], tcpsh_env, cwd=tmp_path)
        assert run.returncode == 1, run
        (failure,) = failure_lines(run, "f.tcpsh")
        assert re.fullmatch(rf"f\.tcpsh:{line}: {message}", failure), run
        assert "MARKER-AFTER-THE-FAILURE" not in run.output, f"a line after the failing one ran:\n{run}"
        assert "Traceback" not in run.output
        assert d.proc.poll() is None, d.log
        assert d.terminate() == 0, d.log
    finally:
        d.close()
    assert_lab_gone(d.pid)


def test_commands_with_c_through_attach(daemon: Daemon, tcpsh_env: dict[str, str]) -> None:
    run = daemon.script(["-c", f"open {KERNEL}:7; frobnicate; echo NEVER"], tcpsh_env)
    assert run.returncode == 1, run
    assert failure_lines(run, "-c") == ["-c:2: unknown command 'frobnicate'; type 'help' for the list"], run
    assert "NEVER" not in run.output
    missing = daemon.script(["nowhere.tcpsh"], tcpsh_env)
    assert missing.returncode == 1, missing
    assert missing.lines == ["tcpsh: cannot read nowhere.tcpsh: No such file or directory"], missing


def test_attach_without_a_daemon_is_one_line(tmp_path: Path, tcpsh_env: dict[str, str]) -> None:
    run = run_tcpsh(["attach", "--socket", str(tmp_path / "none.sock"), "-c", "status"], tcpsh_env)
    assert run.returncode == 1, run
    assert run.lines == [
        f"tcpsh: cannot attach to {tmp_path / 'none.sock'}: no daemon there (start one with 'tcpsh daemon')"
    ], run


# ---------------------------------------------------------------------- bad clients


def test_garbage_half_messages_and_a_100_mb_line_leave_the_daemon_and_connections_alone(
    daemon: Daemon, tcpsh_env: dict[str, str]
) -> None:
    opened = daemon.script(["-c", f"open {KERNEL}:7"], tcpsh_env)
    assert opened.returncode == 0, opened

    # A client that leaves half a message and says nothing more: nobody waits for it.
    idle = Raw(daemon.socket)
    idle.hello()
    idle.send(b'{"v":1,"type":"run","id":1,"line":"sta')

    raw = Raw(daemon.socket)
    raw.send(b"\x00\xffgarbage\n")
    assert raw.hear() == {"v": 1, "type": "error", "id": None, "error": "not UTF-8 (byte 1)"}
    raw.send(b"GET / HTTP/1.0\n")
    assert raw.hear()["error"].startswith("not JSON: ")
    raw.send(b'{"v":2,"type":"hello"}\n')
    assert raw.hear()["error"] == "protocol version 2 is not spoken here; this side speaks version 1"
    raw.say(protocol.RUN, id=1, line="status")
    assert raw.hear() == {
        "v": 1,
        "type": "error",
        "id": 1,
        "error": 'the first message is "hello" (protocol version 1)',
    }
    raw.hello()
    raw.say(protocol.RUN, id=2)
    assert raw.hear()["error"] == '"run" needs "line", the command to run'
    raw.say(protocol.RUN, id=3, line=17)
    assert raw.hear()["error"] == "'line' must be str, not int"

    raw.send(b"x" * (100 << 20) + b"\n")
    assert raw.hear() == {
        "v": 1,
        "type": "error",
        "id": None,
        "error": "a message over 1048576 bytes was dropped",
    }
    # The same client carries on, and so does the connection.
    assert states(raw) == {"c1": "ESTABLISHED"}
    raw.say(protocol.RUN, id=4, line='send c1 "ping\\n"')
    result = raw.hear()
    assert (result["type"], result["id"], result["ok"], result["output"]) == (
        "result",
        4,
        True,
        "c1: queued 5 bytes\n",
    )
    raw.say(protocol.RUN, id=5, line="expect c1 ping --timeout 5")
    result = raw.hear()
    assert (result["ok"], result["output"], result["command"]) == (True, "c1: got ping\n", "expect"), result
    raw.say(protocol.RUN, id=6, line="frobnicate")
    result = raw.hear()
    assert (result["ok"], result["error"]) == (
        False,
        "unknown command 'frobnicate'; type 'help' for the list",
    )

    # A half message, then the client stops sending: told, then the stream ends.
    half = Raw(daemon.socket)
    half.hello()
    half.send(b'{"v":1,"type":"run","id":9,"line":"status')
    half.sock.shutdown(socket.SHUT_WR)
    assert half.hear()["error"] == "the stream ended inside a message (no newline): it was dropped"
    assert half.file.readline() == b""
    half.close()

    # Other clients saw nothing of it.
    after = daemon.script(["-c", 'send c1 "pong\\n"; expect c1 pong --timeout 5'], tcpsh_env)
    assert after.returncode == 0, after
    idle.close()
    raw.close()
    assert daemon.proc.poll() is None


def test_killing_a_shell_mid_command_leaves_the_daemon_and_the_connection(
    daemon: Daemon, pair: tuple[Attached, Attached]
) -> None:
    a, b = pair
    a.ask(f"open {KERNEL}:7", r"c1 ESTABLISHED")
    a.prompt()
    a.type("receive c1 --timeout 60")
    a.wait_for(r"receive c1 --timeout 60")
    daemon.wait_log(r"client 1: receive$")  # the daemon is running it
    a.child.kill(signal.SIGKILL)
    daemon.wait_log(r"client 1: detached")
    # The killed shell's receive was interrupted in the daemon: it takes nothing from here on.
    b.ask("status c1", r"c1 ESTABLISHED")
    b.ask(r'send c1 "after\n"', r"c1: queued 6 bytes")
    b.ask("expect c1 after --timeout 5", r"c1: got after")
    assert daemon.proc.poll() is None


def test_an_interrupt_ends_every_command_sent_before_it(daemon: Daemon) -> None:
    """The one running and the ones queued behind it (an interrupt that overtakes its command on the
    way in must still end it); the next command runs as usual."""
    raw = Raw(daemon.socket)
    try:
        raw.hello()
        raw.say(protocol.RUN, id=1, line="sleep 600")
        raw.say(protocol.RUN, id=2, line="echo queued")
        raw.say(protocol.INTERRUPT)
        for n in (1, 2):
            result = raw.hear()
            assert (result["type"], result["id"], result["ok"], result["error"]) == (
                protocol.RESULT, n, False, "interrupted"), result
        raw.say(protocol.RUN, id=3, line="echo after")
        result = raw.hear()
        assert (result["id"], result["ok"], result["output"]) == (3, True, "after\n"), result
    finally:
        raw.close()


def test_a_long_output_comes_in_pieces_ahead_of_its_result(daemon: Daemon) -> None:
    """Output past one message's share (256 KiB of characters) comes as `output` messages, then the
    `result` with the rest: all of it, in order."""
    raw = Raw(daemon.socket)
    try:
        raw.hello()
        text = "".join(f"{i:07d}" for i in range(90_000))  # 630,000 characters, every piece different
        raw.say(protocol.RUN, id=1, line=f"echo {text}")
        pieces = []
        while (msg := raw.hear())["type"] == protocol.OUTPUT:
            assert msg["id"] == 1, msg
            pieces.append(msg["text"])
        assert (msg["type"], msg["id"], msg["ok"]) == (protocol.RESULT, 1, True), msg["type"]
        assert len(pieces) == 2
        assert "".join(pieces) + msg["output"] == text + "\n"
    finally:
        raw.close()


def test_a_client_that_never_reads_is_disconnected_and_the_others_carry_on(
    daemon: Daemon, tcpsh_env: dict[str, str]
) -> None:
    """Its results pile up in the daemon, not in the stack: past 64 MiB waiting for it, it is
    disconnected; another client's connection and commands are untouched."""
    run = daemon.script(["-c", f"open {KERNEL}:7"], tcpsh_env)
    assert run.returncode == 0, run
    raw = Raw(daemon.socket)
    try:
        raw.hello()
        line = protocol.encode(protocol.RUN, id=0, line="echo " + "y" * 900_000)
        with contextlib.suppress(OSError):  # the daemon hangs up on it part of the way
            for _ in range(80):  # 72 MB of output asked for, none of it read
                raw.send(line)
        # Each echo's 900 KB goes through rich's rendering: a few a second on this machine.
        daemon.wait_log(r"client \d+: disconnected: more than 67108864 bytes waiting that it does not read$",
                        timeout=60)
    finally:
        raw.close()
    run = daemon.script(["-c", 'status c1; send c1 "x\n"; expect c1 x --timeout 5'], tcpsh_env)
    assert run.returncode == 0, run
    assert "c1 ESTABLISHED" in run.lines, run


def test_a_raw_client_killed_mid_command(daemon: Daemon, tcpsh_env: dict[str, str]) -> None:
    raw = Raw(daemon.socket)
    raw.hello()
    raw.say(protocol.RUN, id=1, line=f"open {KERNEL}:7")
    assert raw.hear()["ok"] is True
    raw.say(protocol.RUN, id=2, line="receive c1 --timeout 60")
    daemon.wait_log(r"client 1: receive$")
    raw.sock.shutdown(socket.SHUT_RDWR)
    raw.close()
    daemon.wait_log(r"client 1: detached")
    run = daemon.script(["-c", 'status c1; send c1 "x\\n"; expect c1 x --timeout 5'], tcpsh_env)
    assert run.returncode == 0, run
    assert "c1 ESTABLISHED" in run.lines, run


# ---------------------------------------------------------------------- stopping


def test_sigterm_closes_the_connections_and_removes_everything(tcpsh_env: dict[str, str]) -> None:
    d = Daemon(tcpsh_env)
    a = None
    try:
        a = d.attach(tcpsh_env)
        a.ask(f"open {KERNEL}:7", r"c1 ESTABLISHED")
        a.ask(f"open {KERNEL}:9", r"c2 ESTABLISHED")
        assert d.terminate() == 0, d.log
        d.wait_log(r"^SIGTERM: stopping; open connections get 5 s to close, then are aborted$")
        d.wait_log(r"^c1 closed$")
        d.wait_log(r"^c2 closed$")
        a.wait_for(r"the daemon is stopping \(SIGTERM\)")
        assert a.wait_exit() == 0, a.text()
        assert not d.socket.exists()
    finally:
        if a is not None:
            a.close()
        d.close()
    assert_lab_gone(d.pid)


def test_sigterm_aborts_what_does_not_close_in_time(tcpsh_env: dict[str, str]) -> None:
    d = Daemon(tcpsh_env, "--grace", "0.5")
    try:
        run = d.script(["-c", f"open {KERNEL}:7; impair loss 100% --out"], tcpsh_env)
        assert run.returncode == 0, run
        assert d.terminate() == 0, d.log
        d.wait_log(r"^c1 aborted$")
        assert not d.socket.exists()
    finally:
        d.close()
    assert_lab_gone(d.pid)


def test_sigterm_during_set_up_removes_what_was_set_up(tcpsh_env: dict[str, str]) -> None:
    """The signal comes once the lab's namespaces exist, while its services start: before the daemon
    serves. What was made goes (lab, socket), and the exit is a clean one."""
    d = Daemon(tcpsh_env, ready=False)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not conftest.lab_namespaces(d.pid):
            assert d.proc.poll() is None and time.monotonic() < deadline, f"no lab was being built:\n{d.log}"
            time.sleep(0.002)  # polling the namespace directory
        assert d.terminate() == 0, d.log
        d.wait_log(r"^SIGTERM: stopped during set-up; what was set up is removed$")
        assert "listening on" not in d.log and not d.socket.exists()
    finally:
        d.close()
    assert_lab_gone(d.pid)


# ---------------------------------------------------------------------- who may attach


def throwaway_user(suffix: str, group_options: list[str]) -> Iterator[tuple[int, int]]:
    """A user made for one test and removed afterwards: (uid, gid)."""
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not installed")
    name = f"tcpsh-{suffix}{os.getpid() % 100000}"
    subprocess.run(["useradd", "--system", "--no-create-home", *group_options, name], check=True)
    try:
        entry = pwd.getpwnam(name)
        yield entry.pw_uid, entry.pw_gid
    finally:
        subprocess.run(["userdel", name], check=False)
        subprocess.run(["groupdel", name], check=False, stderr=subprocess.DEVNULL)


@pytest.fixture
def outsider() -> Iterator[tuple[int, int]]:
    """A throwaway user in a group of its own, none of tcpsh's."""
    yield from throwaway_user("t", ["--user-group"])


@pytest.fixture
def insider() -> Iterator[tuple[int, int]]:
    """A throwaway user whose group is the socket's: tcpsh if that group exists, else root's."""
    yield from throwaway_user("i", ["--gid", "tcpsh" if socket_group() else "0"])


def socket_group() -> grp.struct_group | None:
    try:
        return grp.getgrnam("tcpsh")
    except KeyError:
        return None


def as_user(uid: int, gid: int) -> list[str]:
    """setpriv to that user, with no capability but CAP_DAC_READ_SEARCH (to reach the interpreter)."""
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *UNPRIVILEGED[4:]]


def test_a_user_outside_root_and_the_group_cannot_attach(
    daemon: Daemon, outsider: tuple[int, int], tcpsh_env: dict[str, str]
) -> None:
    need_setpriv()
    uid, gid = outsider
    st = os.stat(daemon.socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_uid == 0
    group = socket_group()
    assert st.st_gid == (group.gr_gid if group is not None else 0)
    as_outsider = as_user(uid, gid)  # CAP_DAC_READ_SEARCH gives no write on the socket
    env = dict(tcpsh_env, HOME="/nonexistent", XDG_STATE_HOME="/nonexistent")
    argv = ["attach", "--socket", str(daemon.socket), "-c", "status"]
    group_name = "tcpsh" if group is not None else "root"

    run = run_tcpsh(argv, env, prefix=as_outsider)
    assert run.returncode == 1, run
    assert run.lines == [
        f"tcpsh: cannot attach to {daemon.socket}: permission denied: only root and group tcpsh may attach"
    ], run

    # Were the file's mode opened up by mistake, the daemon itself still says no (SO_PEERCRED).
    os.chmod(daemon.socket, 0o666)
    try:
        run = run_tcpsh(argv, env, prefix=as_outsider)
    finally:
        os.chmod(daemon.socket, 0o660)
    assert run.returncode == 1, run
    assert run.lines == [f"tcpsh: the daemon refused: uid {uid} is not root and not in group {group_name}"], (
        run
    )
    daemon.wait_log(rf"client \d+: refused pid {run.pid} uid {uid} gid {gid}: uid {uid} is not root")

    # Root still can.
    ok = daemon.script(["-c", "status"], tcpsh_env)
    assert ok.returncode == 0, ok


# ---------------------------------------------------------------------- the shell's views, attached


def test_completion_watch_and_held_news_in_an_attached_shell(
    daemon: Daemon, pair: tuple[Attached, Attached]
) -> None:
    a, b = pair
    scr = Screen()
    # Tab: the lab's services after `open` (from the daemon's welcome), connection ids after `send`.
    a.child.send("open \t")
    wait_screen(a, scr, find_line(rf"\b{re.escape(KERNEL)}:7\s+echo\b"), "7 echo in the menu")
    a.child.send("7")
    a.type("")
    a.wait_for(r"c1 ESTABLISHED ")
    a.prompt()
    a.child.send("send \t")
    wait_screen(a, scr, lambda s: s.cursor_line() == f"{PROMPT} send c1", "'send ' completed to 'send c1'")
    before, _ = a.ask(r' "hello\n"', r"c1: queued 6 bytes")
    if "* data arrived on c1 (6 bytes)" not in before:
        a.wait_for(r"\* data arrived on c1 \(6 bytes\)")
    a.prompt()
    skip_seen(a)

    # watch: the full-screen view, rendered by the daemon, refreshed; `a` switches the numbers.
    a.type("watch c1")
    for text in ("c1 ESTABLISHED", "arrived, not read 6", "sequence numbers relative to ISS/IRS"):
        wait_screen(a, scr, lambda s, t=text: s.alternate and t in s.text(), repr(text))
    a.child.send("a")
    wait_screen(a, scr, lambda s: "sequence numbers absolute" in s.text(), "'absolute' in the footer")

    # News that comes meanwhile is held, and shown once the view is left.
    b.ask(f"open {KERNEL}:9", r"c2 ESTABLISHED")
    a.child.send("a")  # a redraw after the news went out: the view is whole, the news not on it
    wait_screen(a, scr, lambda s: "sequence numbers relative" in s.text(), "'relative' again")
    assert scr.alternate and "c2: established" not in scr.text(), scr.text()
    a.child.send("q")
    wait_screen(a, scr, at_prompt, "the prompt after q")
    a.wait_for(r"\* c2: established")
    a.ask("status c2", r"c2 ESTABLISHED")


def test_a_member_of_the_group_attaches_and_files_are_theirs(
    daemon: Daemon, insider: tuple[int, int], tcpsh_env: dict[str, str]
) -> None:
    need_setpriv()
    uid, gid = insider
    home = daemon.dir / "home"
    home.mkdir()
    os.chown(home, uid, gid)
    env = dict(tcpsh_env, HOME=str(home), XDG_STATE_HOME=str(home / "state"))
    argv = ["attach", "--socket", str(daemon.socket)]
    commands = f'open {KERNEL}:7; send c1 "data\\n"; receive c1 --to got.txt --timeout 5'
    run = run_tcpsh([*argv, "-c", commands], env, cwd=home, prefix=as_user(uid, gid))
    assert run.returncode == 0, run
    daemon.wait_log(rf"client \d+: connected: pid {run.pid} uid {uid} gid {gid}$")
    got = home / "got.txt"  # relative to the shell's directory, not the daemon's
    assert run.lines[-1] == f"c1: 5 bytes written to {got}", run
    assert got.read_bytes() == b"data\n"
    assert (got.stat().st_uid, got.stat().st_gid) == (uid, gid)

    # Where the user may not write, the daemon (root) does not write for them either.
    private = daemon.dir / "private"
    private.mkdir(mode=0o700)
    run = run_tcpsh(
        [*argv, "-c", f'send c1 "more\\n"; receive c1 --to {private}/x --timeout 5'],
        env,
        cwd=home,
        prefix=as_user(uid, gid),
    )
    assert run.returncode == 1, run
    name = pwd.getpwuid(uid).pw_name
    assert run.lines[-1] == f"-c:2: receive: cannot write {private}/x: permission denied for {name}", run
    assert not (private / "x").exists()
