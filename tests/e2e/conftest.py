"""Helpers for the end-to-end tests: they run the real `tcpsh` program, as a person or a script would.

- `tcpsh_argv`: how to start the program (the `tcpsh` next to this interpreter, or `python -m tcpsh`).
- `tcpsh_env`: an environment with a private HOME and XDG_STATE_HOME, so history never touches the
  user's, and prompt_toolkit settings for a pseudo-terminal (no cursor-position requests).
- `Shell`: the interactive program in a pseudo-terminal of a fixed size (pexpect), with helpers to
  type a line and wait for what it answers. Every wait is on real output, with a timeout.
- `run_tcpsh`: the program with pipes, for scripts and -c; returns the exit status, output and pid.
- `lab_namespaces(pid)`, `lab_processes(pid)`: what a run's lab left on the machine.

Traffic goes only to the lab that each run of the program builds for itself (198.18.0.0/15).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
NETNS_DIR = Path("/var/run/netns")

KERNEL = "198.18.0.2"  # Linux's TCP in the lab, with echo 7, discard 9, daytime 13, chargen 19, http 80
STACK = "198.18.0.1"

ROWS, COLS = 40, 160
PROMPT = "tcpsh>"  # prompt_toolkit draws "tcpsh>" and moves the cursor instead of printing the space
START_TIMEOUT = 20.0  # building the lab: namespaces, veth, firewall rule, the services process
ANSWER_TIMEOUT = 10.0

ANSI = re.compile(
    r"\x1b\[[0-9;?]*[ -/]*[@-~]"  # CSI: colours, cursor movement, modes
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, links
    r"|\x1b[()][0-9A-Za-z]|\x1b[=>78]"
)


INCOMPLETE_ESCAPE = re.compile(r"\x1b(?:[\[\]()][0-9;?]*)?$")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def screen_lines(text: str, typed: tuple[str, ...] = ()) -> list[str]:
    """What a person reads in a stretch of terminal output, less the prompt: escape sequences removed,
    the prompt and the echo of the lines in `typed` taken out, blank lines dropped."""
    out = []
    for line in re.split(r"\r\n|\r|\n", strip_ansi(text)):
        for t in typed:
            line = line.replace(f"{PROMPT} {t}", "")
        line = line.replace(PROMPT, "").strip()
        if line and line not in typed:
            out.append(line)
    return out


def tcpsh_argv() -> list[str]:
    beside = Path(sys.executable).parent / "tcpsh"
    if beside.exists():
        return [str(beside)]
    venv = REPO_ROOT / ".venv" / "bin" / "tcpsh"
    if venv.exists():
        return [str(venv)]
    return [sys.executable, "-m", "tcpsh"]


def make_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("SUDO_USER", "SUDO_UID", "SUDO_GID", "COLUMNS", "LINES", "TCPSH_DEBUG", "NO_COLOR"):
        env.pop(name, None)
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_STATE_HOME=str(home / "state"),
        PROMPT_TOOLKIT_NO_CPR="1",
        TERM="xterm",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def tcpsh_env(tmp_path: Path) -> dict[str, str]:
    return make_env(tmp_path / "home")


# ---------------------------------------------------------------------- what a run leaves behind


def lab_namespaces(pid: int) -> list[str]:
    """Named network namespaces of the labs of process `pid` (tcpsh-<pid>-<n>-s/-k)."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if re.fullmatch(rf"tcpsh-{pid}-\d+-[sk]", n))


def lab_processes(pid: int) -> list[str]:
    """Live processes that belong to the labs of process `pid`: the services carry `--tag tcpsh-<pid>-<n>`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            words = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for i, word in enumerate(words[:-1]):
            if word == b"--tag" and re.fullmatch(rf"tcpsh-{pid}-\d+", words[i + 1].decode(errors="replace")):
                found.append(f"{entry}: {b' '.join(words).decode(errors='replace')}")
    return found


def assert_lab_gone(pid: int) -> None:
    assert lab_namespaces(pid) == [], f"namespaces of tcpsh pid {pid} left behind"
    assert lab_processes(pid) == [], f"services of tcpsh pid {pid} left running"


# ---------------------------------------------------------------------- scripts and -c


@dataclass
class Run:
    argv: list[str]
    returncode: int
    output: str  # stdout and stderr together, as a person running it in a terminal would read them
    pid: int

    @property
    def lines(self) -> list[str]:
        return strip_ansi(self.output).splitlines()

    def __str__(self) -> str:
        return f"$ {' '.join(self.argv)}\n{self.output}[exit status {self.returncode}]"


def run_tcpsh(
    args: list[str],
    env: dict[str, str],
    cwd: Path | None = None,
    timeout: float = 30.0,
    prefix: list[str] | None = None,
) -> Run:
    argv = [*(prefix or []), *tcpsh_argv(), *args]
    proc = subprocess.Popen(
        argv,
        cwd=cwd or REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the lab cleans up on SIGTERM
        out, _ = proc.communicate(timeout=10)
        pytest.fail(f"tcpsh did not finish within {timeout} s:\n$ {' '.join(argv)}\n{out}")
    return Run(argv, proc.returncode, out, proc.pid)


# ---------------------------------------------------------------------- the interactive shell


class Shell:
    """The interactive tcpsh in a pseudo-terminal, typed at like a person would.

    Answers are matched against what a person reads: the output with escape sequences (colour, cursor
    movement) removed. `cursor` marks how far the test has read; each wait looks only past it.
    """

    def __init__(self, env: dict[str, str]) -> None:
        argv = tcpsh_argv()
        self.raw: list[str] = []
        self.cursor = 0
        self.last_before = ""
        self.eof = False
        self.child = pexpect.spawn(
            argv[0],
            argv[1:],
            cwd=str(REPO_ROOT),
            env=env,
            dimensions=(ROWS, COLS),
            encoding="utf-8",
            codec_errors="replace",
            timeout=ANSWER_TIMEOUT,
        )
        self.child.logfile_read = _Collector(self.raw)

    @property
    def pid(self) -> int:
        return self.child.pid

    def text(self) -> str:
        """Everything the program has shown so far, escape sequences removed (an escape sequence still
        arriving at the very end is left out until it is complete)."""
        return INCOMPLETE_ESCAPE.sub("", strip_ansi("".join(self.raw)))

    def _read_more(self, deadline: float) -> bool:
        """Wait for more output until `deadline`: True when some came, False at the end of the output."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise pexpect.TIMEOUT("no more output")
        try:
            self.child.read_nonblocking(size=65536, timeout=left)  # select(): wakes as soon as output comes
        except pexpect.EOF:
            self.eof = True
            return False
        return True

    def wait_for(self, pattern: str, timeout: float = ANSWER_TIMEOUT) -> re.Match[str]:
        """Wait until `pattern` (a regular expression) appears on screen past the cursor; move the
        cursor past it. `self.last_before` is what came between the old cursor and the match."""
        m = self.poll_for(pattern, timeout)
        if m is None:
            kind = "the program ended" if self.eof else "timed out"
            if not self.eof:
                # Where each of its threads is (tcpsh prints its stacks on SIGUSR1): why it did not answer.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGUSR1)
                    if self.poll_for(r"hread 0x[0-9a-f]+ \(most recent call first\)", 5):
                        self._drain(1.0)  # the rest of the threads' stacks
            text = self.text()
            seen, unread = text[: self.cursor], text[self.cursor :]
            pytest.fail(
                f"waiting for {pattern!r}: {kind}; the screen so far "
                f"(read up to the mark <<<HERE>>>):\n{seen}<<<HERE>>>{unread}",
                pytrace=False,
            )
        return m

    def poll_for(self, pattern: str, timeout: float) -> re.Match[str] | None:
        """Like wait_for, but None when `pattern` has not appeared within `timeout`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            m = regex.search(text, self.cursor)
            if m:
                self.last_before = text[self.cursor : m.start()]
                self.cursor = m.end()
                return m
            try:
                if self.eof or not self._read_more(deadline):
                    return None
            except pexpect.TIMEOUT:
                return None

    def _drain(self, seconds: float) -> None:
        """Read what the program still writes within `seconds`."""
        deadline = time.monotonic() + seconds
        with contextlib.suppress(pexpect.TIMEOUT):
            while not self.eof and self._read_more(deadline):
                pass

    def wait_exit(self, timeout: float = ANSWER_TIMEOUT) -> int:
        """Wait for the end of the output and of the process; its exit status."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            try:
                self._read_more(deadline)
            except pexpect.TIMEOUT:
                pytest.fail(f"tcpsh did not end within {timeout} s; the screen:\n{self.text()}",
                            pytrace=False)
        self.child.close()
        assert self.child.exitstatus is not None, f"tcpsh ended by signal {self.child.signalstatus}"
        return self.child.exitstatus

    def wait_started(self) -> None:
        """The lab banner, the hint, then the first prompt."""
        self.wait_for(
            rf"lab: the stack is {re.escape(STACK)}; Linux's TCP is {re.escape(KERNEL)} with echo 7",
            timeout=START_TIMEOUT,
        )
        self.wait_for(r"type 'help' for the commands")
        self.prompt()

    def prompt(self) -> None:
        """Wait until a prompt is drawn past the cursor (prompt_toolkit then reads keys in raw mode)."""
        self.wait_for(re.escape(PROMPT))

    def type(self, line: str) -> None:
        self.child.sendline(line)

    def ask(self, line: str, answer: str, timeout: float = ANSWER_TIMEOUT) -> tuple[str, str]:
        """Type `line`, wait for `answer` (a regular expression, matched on the screen text). Returns
        (what came between the typed line and the answer, the answer)."""
        self.type(line)
        m = self.wait_for(answer, timeout=timeout)
        return self.last_before, m.group(0)

    def close(self) -> None:
        if self.child.isalive():
            self.child.kill(signal.SIGTERM)  # the lab removes itself on SIGTERM
            try:
                self.child.expect(pexpect.EOF, timeout=10)
            except pexpect.TIMEOUT:
                self.child.kill(signal.SIGKILL)
        self.child.close(force=True)


class _Collector:
    """A pexpect log file that keeps everything read."""

    def __init__(self, sink: list[str]) -> None:
        self.sink = sink

    def write(self, data: str) -> None:
        self.sink.append(data)

    def flush(self) -> None:
        pass


@pytest.fixture
def shell(tcpsh_env: dict[str, str]) -> Iterator[Shell]:
    """A started interactive tcpsh with its lab up; afterwards, nothing of its lab may remain."""
    sh = Shell(tcpsh_env)
    try:
        sh.wait_started()
        yield sh
    finally:
        sh.close()
    # Even when the test left the shell running (closed here by SIGTERM), nothing may stay behind.
    assert_lab_gone(sh.pid)
