"""The shell's views, as a person at the terminal sees them: Tab completion, news printed above the
prompt, `status ID`, the full-screen `watch`, `trace`, `exchange`, `capture`, the hint for a mistyped
command, and Ctrl-C during a blocking command.

Each test starts `tcpsh` in a pseudo-terminal with its own lab (the `shell` fixture of conftest.py).
Where the layout of the screen matters (the line being typed, a completion menu, the redrawn prompt,
the full-screen watch, which prompt_toolkit updates by rewriting only the cells that changed), the
output is replayed into `Screen`, a small terminal of the same size, and the test reads its rows.
Every wait is on real output, with a timeout. Traffic goes only to the run's own lab (198.18.0.0/15).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pexpect
import pytest
from prompt_toolkit.utils import get_cwidth

from tests.e2e.conftest import (
    ANSWER_TIMEOUT,
    COLS,
    KERNEL,
    PROMPT,
    ROWS,
    STACK,
    Shell,
    lab_namespaces,
    screen_lines,
)

pytestmark = pytest.mark.root

EOL = r"[^\r\n]*\r\n"  # the rest of the line
T = TypeVar("T")


# ---------------------------------------------------------------------- a terminal to read the screen


CSI = re.compile(r"\x1b\[([?>=]?)([0-9;]*)[ -/]*([@-~])")
CSI_UNFINISHED = re.compile(r"\x1b\[[?>=]?[0-9;]*[ -/]*$")
OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


class Screen:
    """What the terminal shows: the program's output replayed into a grid of ROWS x COLS cells.

    Enough of a VT100/xterm for prompt_toolkit and rich: printing with or without autowrap, CR, LF
    with scrolling, relative and absolute cursor moves, erasing in line and display, and the
    alternate screen of full-screen applications. Colours and modes that do not move text are ignored.
    """

    def __init__(self, rows: int = ROWS, cols: int = COLS) -> None:
        self.rows, self.cols = rows, cols
        self.grid = self._blank()
        self.row = self.col = 0
        self.wrap_pending = False
        self.autowrap = True
        self.main: tuple[list[list[str]], int, int] | None = None  # saved while the alternate screen is up
        self.saved_cursor = (0, 0)
        self._tail = ""  # an escape sequence cut by the end of the output read so far
        self._fed = 0  # chunks of Shell.raw replayed

    def _blank(self) -> list[list[str]]:
        return [[" "] * self.cols for _ in range(self.rows)]

    @property
    def alternate(self) -> bool:
        return self.main is not None

    def lines(self) -> list[str]:
        return ["".join(r).rstrip() for r in self.grid]

    def text(self) -> str:
        return "\n".join(self.lines())

    def cursor_line(self) -> str:
        return self.lines()[self.row]

    def catch_up(self, sh: Shell) -> None:
        chunks = sh.raw[self._fed :]
        self._fed += len(chunks)
        self.feed("".join(chunks))

    def feed(self, data: str) -> None:
        data, self._tail = self._tail + data, ""
        i, n = 0, len(data)
        while i < n:
            ch = data[i]
            if ch == "\x1b":
                m = CSI.match(data, i)
                if m:
                    self._csi(m.group(1), m.group(2), m.group(3))
                    i = m.end()
                    continue
                m = OSC.match(data, i)
                if m:
                    i = m.end()
                    continue
                rest = data[i:]
                if (
                    len(rest) < 2
                    or CSI_UNFINISHED.match(rest)
                    or rest[1] == "]"
                    or (rest[1] in "()" and len(rest) < 3)
                ):
                    self._tail = rest  # the rest of the sequence has not arrived yet
                    return
                if rest[1] in "()":
                    i += 3
                    continue
                if rest[1] == "7":
                    self.saved_cursor = (self.row, self.col)
                elif rest[1] == "8":
                    self.row, self.col = self.saved_cursor
                i += 2
                continue
            if ch == "\r":
                self.col, self.wrap_pending = 0, False
            elif ch == "\n":
                self._linefeed()
            elif ch == "\b":
                self.col, self.wrap_pending = max(0, self.col - 1), False
            elif ch == "\t":
                self.col = min(self.cols - 1, (self.col // 8 + 1) * 8)
            elif ch >= " ":
                self._put(ch)
            i += 1

    def _linefeed(self) -> None:
        self.wrap_pending = False
        if self.row == self.rows - 1:
            self.grid.pop(0)
            self.grid.append([" "] * self.cols)
        else:
            self.row += 1

    def _put(self, ch: str) -> None:
        width = get_cwidth(ch)
        if width == 0:
            return
        if self.wrap_pending and self.autowrap:
            self.col = 0
            self._linefeed()
        self.wrap_pending = False
        if self.col + width > self.cols:
            self.col = self.cols - width
        self.grid[self.row][self.col] = ch
        if width == 2:
            self.grid[self.row][self.col + 1] = ""
        if self.col + width >= self.cols:
            self.col, self.wrap_pending = self.cols - 1, True
        else:
            self.col += width

    def _csi(self, private: str, params: str, final: str) -> None:
        args = [int(p) if p else 0 for p in params.split(";")] if params else []
        n = max(1, args[0]) if args else 1
        self.wrap_pending = False
        if private == "?":
            if final in "hl":
                for mode in args:
                    if mode in (47, 1047, 1049):
                        self._alternate(final == "h")
                    elif mode == 7:
                        self.autowrap = final == "h"
            return
        if private:
            return
        if final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            self.row = min(self.rows - 1, self.row + n)
        elif final == "C":
            self.col = min(self.cols - 1, self.col + n)
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final in "Hf":
            row = args[0] if args else 1
            col = args[1] if len(args) > 1 else 1
            self.row = min(self.rows, max(1, row)) - 1
            self.col = min(self.cols, max(1, col)) - 1
        elif final == "G":
            self.col = min(self.cols, n) - 1
        elif final == "J":
            how = args[0] if args else 0
            if how == 0:
                self._erase_line(self.col, self.cols)
                for r in range(self.row + 1, self.rows):
                    self.grid[r] = [" "] * self.cols
            elif how == 1:
                self._erase_line(0, self.col + 1)
                for r in range(self.row):
                    self.grid[r] = [" "] * self.cols
            else:
                self.grid = self._blank()
        elif final == "K":
            how = args[0] if args else 0
            start, end = {0: (self.col, self.cols), 1: (0, self.col + 1)}.get(how, (0, self.cols))
            self._erase_line(start, end)

    def _erase_line(self, start: int, end: int) -> None:
        for c in range(start, end):
            self.grid[self.row][c] = " "

    def _alternate(self, on: bool) -> None:
        if on and self.main is None:
            self.main = (self.grid, self.row, self.col)
            self.grid = self._blank()
        elif not on and self.main is not None:
            self.grid, self.row, self.col = self.main
            self.main = None


def wait_screen(
    sh: Shell, scr: Screen, check: Callable[[Screen], T], what: str, timeout: float = ANSWER_TIMEOUT
) -> T:
    """Replay output into `scr` until `check(scr)` is true (returns it); fail with the screen if it
    does not become true within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        scr.catch_up(sh)
        result = check(scr)
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0 or sh.eof:
            kind = "the program ended" if sh.eof else f"timed out after {timeout:g} s"
            pytest.fail(f"waiting for {what}: {kind}; the terminal shows:\n{scr.text()}", pytrace=False)
        try:
            sh.child.read_nonblocking(size=65536, timeout=left)  # select(): returns when output comes
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            sh.eof = True


def find_line(pattern: str) -> Callable[[Screen], re.Match[str] | None]:
    """A check for wait_screen: the first row of the screen that `pattern` matches in."""
    regex = re.compile(pattern)

    def check(scr: Screen) -> re.Match[str] | None:
        for line in scr.lines():
            m = regex.search(line)
            if m:
                return m
        return None

    return check


def at_prompt(scr: Screen) -> bool:
    """The cursor stands on an empty prompt, at the main screen: the shell waits for a line."""
    return not scr.alternate and scr.cursor_line() == PROMPT


# ---------------------------------------------------------------------- helpers on the stream


def skip_seen(sh: Shell) -> None:
    """Move the shell's reading mark past everything shown so far."""
    sh.cursor = len(sh.text())


def open_conn(sh: Shell, cid: str, port: int) -> None:
    """`open`, its answer, and the news of the handshake (before or after the answer)."""
    start = len(sh.text())
    sh.ask(
        f"open {KERNEL}:{port}",
        rf"{cid} ESTABLISHED {re.escape(STACK)}:\d+ -> {re.escape(KERNEL)}:{port}\r\n",
    )
    if not re.search(rf"\* {cid}: established\r\n", sh.text()[start:]):
        sh.wait_for(rf"\* {cid}: established\r\n")
    sh.prompt()


def send_echoed(sh: Shell, cid: str, text: str) -> None:
    """`send` to the echo service: its answer, and the news of the echo, which the stack reports from
    its own thread, before or after the answer."""
    size = len(text.encode().decode("unicode_escape"))
    start = len(sh.text())
    sh.ask(f'send {cid} "{text}"', rf"{cid}: queued {size} bytes\r\n")
    news = rf"\* data arrived on {cid} \({size} bytes\)\r\n"
    if not re.search(news, sh.text()[start:]):
        sh.wait_for(news)
    sh.prompt()


def status_numbers(sh: Shell, cid: str) -> dict[str, int]:
    """`status ID`: the TCB's variables that are plain numbers, by name."""
    start = len(sh.text())
    sh.ask(f"status {cid}", rf"{cid} ESTABLISHED\r\n")
    sh.wait_for(r"bad segments" + EOL)
    table = sh.text()[start : sh.cursor]
    rows = re.findall(r"│ ([A-Za-z. ]+?) +│ +(\d+) │", table)
    return {name: int(value) for name, value in rows}


def kernel_namespace(sh: Shell) -> str:
    names = [n for n in lab_namespaces(sh.pid) if n.endswith("-k")]
    assert len(names) == 1, f"the lab of tcpsh pid {sh.pid} has one kernel-side namespace: {names}"
    return names[0]


# ---------------------------------------------------------------------- Tab completion


def test_tab_completes_commands_services_ids_and_states(shell: Shell) -> None:
    scr = Screen()

    # A command name: `sta` becomes `status`, and Enter runs it.
    shell.child.send("sta\t")
    wait_screen(shell, scr, lambda s: s.cursor_line() == f"{PROMPT} status", "'sta' completed to 'status'")
    shell.ask("", r"no connections yet")
    shell.prompt()

    # After `open `: the lab's services, HOST:PORT beside the service's name.
    shell.child.send("open \t")
    menu = {
        port: wait_screen(
            shell, scr, find_line(rf"\b{re.escape(KERNEL)}:{port}\s+{name}\b"), f"{port} {name}"
        )
        for port, name in ((7, "echo"), (9, "discard"), (13, "daytime"), (19, "chargen"), (80, "http"))
    }
    assert menu[7].group(0).split() == [f"{KERNEL}:7", "echo"]
    # Tab put their common part on the line; the port typed after it opens the echo service.
    assert scr.cursor_line().startswith(f"{PROMPT} open {KERNEL}:"), scr.text()
    shell.child.send("7")
    wait_screen(
        shell, scr, lambda s: s.cursor_line() == f"{PROMPT} open {KERNEL}:7", "the line 'open HOST:7'"
    )
    shell.type("")
    shell.wait_for(rf"c1 ESTABLISHED {re.escape(STACK)}:\d+ -> {re.escape(KERNEL)}:7\r\n")
    shell.prompt()

    # After `send `: the live connection id, the only one, put on the line.
    shell.child.send("send \t")
    wait_screen(
        shell, scr, lambda s: s.cursor_line() == f"{PROMPT} send c1", "'send ' completed to 'send c1'"
    )
    shell.ask(' "tab\\n"', r"c1: queued 4 bytes\r\n")
    shell.prompt()

    # After `wait c1 `: the state names, in a menu.
    shell.child.send("wait c1 \t")
    for state in ("CLOSED", "LISTEN", "SYN-SENT", "ESTABLISHED", "FIN-WAIT-1"):
        wait_screen(shell, scr, find_line(rf"^\s+{state}\s*$"), f"{state} in the completion menu")
    assert scr.cursor_line() == f"{PROMPT} wait c1", scr.text()
    # Narrowed by what is typed: ES and Tab give ESTABLISHED, and the line runs.
    shell.child.send("ES\t")
    wait_screen(
        shell,
        scr,
        lambda s: s.cursor_line() == f"{PROMPT} wait c1 ESTABLISHED",
        "'ES' completed to ESTABLISHED",
    )
    shell.ask("", r"c1 ESTABLISHED\r\n")
    shell.prompt()
    assert "Traceback" not in shell.text()


# ---------------------------------------------------------------------- news above the prompt


def test_news_is_printed_above_the_prompt_while_it_waits(shell: Shell) -> None:
    scr = Screen()
    open_conn(shell, "c1", 7)

    # The echo comes back on its own: its news is printed and the prompt drawn again below it.
    shell.type(r'send c1 "ping\n"')
    shell.wait_for(re.escape(r'send c1 "ping\n"'))
    start = shell.cursor
    shell.wait_for(r"\* data arrived on c1 \(5 bytes\)\r\n")
    shell.prompt()
    if not re.search(r"c1: queued 5 bytes\r\n", shell.text()[start:]):
        # The echo's news can come first, with a prompt drawn again below it, and the answer after.
        shell.wait_for(r"c1: queued 5 bytes\r\n")
        shell.prompt()

    def news_above_prompt(s: Screen) -> bool:
        lines = s.lines()
        return at_prompt(s) and "* data arrived on c1 (5 bytes)" in lines[s.row - 2 : s.row]

    wait_screen(shell, scr, news_above_prompt, "the news on the line above the prompt (or one above)")

    # Data from the far side, sent only once the shell sits idle at its prompt: a kernel-side client
    # of a passive OPEN. Nothing is typed; the news appears, and the prompt is drawn again below it.
    shell.ask("open --passive 4000", r"c2 LISTEN on port 4000\r\n")
    shell.prompt()
    wait_screen(shell, scr, at_prompt, "the prompt after 'open --passive'")
    client = subprocess.Popen(
        ["ip", "netns", "exec", kernel_namespace(shell), sys.executable, "-c", FAR_CLIENT, STACK, "4000"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None and client.stdin is not None
        assert client.stdout.readline() == "connected\n"
        shell.wait_for(r"\* c2: established\r\n")
        shell.prompt()
        wait_screen(
            shell,
            scr,
            lambda s: at_prompt(s) and s.lines()[s.row - 1] == "* c2: established",
            "'* c2: established' just above the prompt",
        )
        prompt_before = shell.cursor  # the prompt stands idle here; nothing is typed from now on

        client.stdin.write("go\n")
        client.stdin.flush()
        shell.wait_for(r"\* data arrived on c2 \(11 bytes\)\r\n")
        shell.prompt()
        assert shell.text()[prompt_before : shell.cursor].count("data arrived") == 1
        wait_screen(
            shell,
            scr,
            lambda s: at_prompt(s) and s.lines()[s.row - 1] == "* data arrived on c2 (11 bytes)",
            "the news just above the prompt, drawn again below it",
        )
        shell.ask("receive c2", r"c2: 11 bytes: " + EOL)
        assert shell.text()[shell.cursor - 40 : shell.cursor].endswith("c2: 11 bytes: from afar\\n\\n\r\n")
    finally:
        if client.stdin is not None:
            client.stdin.close()
        try:
            client.wait(timeout=10)
        except subprocess.TimeoutExpired:
            client.kill()
            client.wait()


# The far side's client: connect, say so, send when told, close at end of input.
FAR_CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print("connected", flush=True)
sys.stdin.readline()
s.sendall(b"from afar\\n\\n")
sys.stdin.read()
s.close()
"""


# ---------------------------------------------------------------------- status ID


def test_status_of_one_connection_shows_its_sequence_variables(shell: Shell) -> None:
    open_conn(shell, "c1", 7)
    shell.ask(r'send c1 "hello\n"', r"c1: queued 6 bytes\r\n")
    shell.ask("receive c1 --timeout 5", r"c1: 6 bytes: hello\\n\r\n")

    shell.ask("status c1", r"c1 ESTABLISHED\r\n")
    found = {}
    for name in ("ISS", "SND.UNA", "SND.NXT", "IRS", "RCV.NXT"):
        m = shell.wait_for(rf"│ {re.escape(name)} +│ +(\d+) │ *([^│]*?) *│\r\n")
        found[name] = (int(m.group(1)), m.group(2))
    shell.prompt()
    iss, irs = found["ISS"][0], found["IRS"][0]
    # SYN and 6 bytes sent and acknowledged; SYN and 6 bytes received.
    assert found["SND.UNA"] == ((iss + 7) % 2**32, "ISS+7"), found
    assert found["SND.NXT"] == ((iss + 7) % 2**32, "ISS+7"), found
    assert found["RCV.NXT"] == ((irs + 7) % 2**32, "IRS+7"), found


# ---------------------------------------------------------------------- watch


def test_watch_is_a_live_full_screen_view(shell: Shell) -> None:
    scr = Screen()
    open_conn(shell, "c1", 7)
    send_echoed(shell, "c1", r"hello\n")  # the echo is left unread
    # c2 closes at once and sits in TIME-WAIT: a timer that runs down while we watch.
    open_conn(shell, "c2", 7)
    shell.ask("close c2", r"c2 (FIN-WAIT-1|FIN-WAIT-2|TIME-WAIT)\r\n")
    shell.ask("wait c2 TIME-WAIT --timeout 5", r"c2 TIME-WAIT\r\n")
    snd_una = status_numbers(shell, "c1")["SND.UNA"]
    shell.prompt()
    skip_seen(shell)

    shell.type("watch")
    wait_screen(shell, scr, lambda s: s.alternate, "the alternate screen")
    for text in (
        "c1 ESTABLISHED",
        "usable window",
        "arrived, not read 6",
        "c2 TIME-WAIT",
        "sequence numbers relative to ISS/IRS",
        "q, Esc or Ctrl-C",
    ):
        wait_screen(shell, scr, lambda s, t=text: t in s.text(), repr(text))
    assert "SND.UNA=7  SND.NXT=7" in scr.text(), scr.text()  # SYN and 6 bytes, relative to ISS
    assert "tcpsh>" not in scr.text(), "the prompt is not on the full screen"

    # Nothing is typed, and the screen changes: the TIME-WAIT timer runs down.
    timer = re.compile(r"time-wait +(\d+\.\d\d) s")
    first = float(wait_screen(shell, scr, find_line(timer.pattern), "the TIME-WAIT timer").group(1))

    def later(s: Screen) -> float | None:
        m = timer.search(s.text())
        return float(m.group(1)) if m and float(m.group(1)) < first else None

    second = wait_screen(shell, scr, later, f"the TIME-WAIT timer below {first}", timeout=3)
    assert 0 < first - second < 3, (first, second)

    # `a`: absolute sequence numbers, and the footer says so; `a` again: relative.
    shell.child.send("a")
    wait_screen(shell, scr, lambda s: "sequence numbers absolute" in s.text(), "'absolute' in the footer")
    wait_screen(
        shell, scr, lambda s: f"SND.UNA={snd_una} " in s.text(), f"SND.UNA={snd_una} (as status said)"
    )
    shell.child.send("a")
    wait_screen(shell, scr, lambda s: "sequence numbers relative to ISS/IRS" in s.text(), "'relative' again")

    # q: back to the prompt, where the next command works.
    shell.child.send("q")
    wait_screen(shell, scr, at_prompt, "the prompt after q")
    skip_seen(shell)
    shell.ask("status c1", r"c1 ESTABLISHED\r\n")
    shell.prompt()

    # Esc and Ctrl-C leave it too, and the shell carries on.
    for key, name in (("\x1b", "Esc"), ("\x03", "Ctrl-C")):
        skip_seen(shell)
        shell.type("watch c1")
        wait_screen(
            shell, scr, lambda s: s.alternate and "q, Esc or Ctrl-C" in s.text(), f"watch before {name}"
        )
        assert "c2 " not in scr.text(), "watch c1 shows c1 only"
        shell.child.send(key)
        wait_screen(shell, scr, at_prompt, f"the prompt after {name}")
        skip_seen(shell)
        shell.ask(f'echo "after {name}"', rf"after {name}\r\n")
        shell.prompt()
    assert shell.child.isalive()
    assert "Traceback" not in shell.text()


# ---------------------------------------------------------------------- trace


def test_trace_shows_the_handshake_in_tcpdump_style_until_turned_off(shell: Shell) -> None:
    shell.ask("trace on", r"trace on: " + EOL)
    shell.prompt()

    start = shell.cursor
    shell.type(f"open {KERNEL}:7")
    k = re.escape(KERNEL)
    syn = shell.wait_for(rf"> {re.escape(STACK)}\.(\d+) > {k}\.7: \[S\], seq (\d+), " + EOL)
    port, iss = syn.group(1), int(syn.group(2))
    synack = shell.wait_for(rf"< {k}\.7 > {re.escape(STACK)}\.{port}: \[S\.\], seq \d+, ack (\d+), " + EOL)
    assert int(synack.group(1)) == (iss + 1) % 2**32, synack.group(0)
    ack = shell.wait_for(rf"> {re.escape(STACK)}\.{port} > {k}\.7: \[\.\], ack 1, " + EOL)
    assert ", length 0" in ack.group(0)
    if "c1 ESTABLISHED" not in shell.text()[start:]:
        shell.wait_for(r"c1 ESTABLISHED" + EOL)
    shell.prompt()
    handshake = [ln for ln in screen_lines(shell.text()[start:]) if re.search(r"\[(S|S\.|\.)\]", ln)]
    assert len(handshake) == 3, handshake

    shell.ask("trace off", r"trace off\r\n")
    shell.prompt()
    after_off = shell.cursor
    open_conn(shell, "c2", 7)
    send_echoed(shell, "c2", r"quiet\n")
    shell.ask('echo "end of test"', r"end of test\r\n")
    quiet = shell.text()[after_off : shell.cursor]
    assert not re.search(r"\[S\]|\[S\.\]|\[\.\]|\[P\.\]", quiet), (
        f"trace off, yet segments are printed:\n{quiet}"
    )


# ---------------------------------------------------------------------- exchange


def test_exchange_draws_the_segments_in_the_rfc_notation(shell: Shell) -> None:
    open_conn(shell, "c1", 7)
    send_echoed(shell, "c1", r"hello\n")
    numbers = status_numbers(shell, "c1")
    iss, irs = numbers["ISS"], numbers["IRS"]
    shell.prompt()

    shell.ask("exchange c1", r"c1, as in RFC 9293 section 3\.5: " + EOL)
    steps = [shell.wait_for(rf" +{n}\.  " + EOL).group(0).rstrip() for n in (1, 2, 3)]
    shell.prompt()
    assert re.fullmatch(rf" +1\.  SYN-SENT     --> <SEQ={iss}><CTL=SYN> +-->", steps[0]), steps[0]
    assert re.fullmatch(
        rf" +2\.  ESTABLISHED  <-- <SEQ={irs}><ACK={(iss + 1) % 2**32}><CTL=SYN,ACK> +<--", steps[1]
    ), steps[1]
    assert re.fullmatch(
        rf" +3\.  ESTABLISHED  --> <SEQ={(iss + 1) % 2**32}><ACK={(irs + 1) % 2**32}><CTL=ACK> +-->", steps[2]
    ), steps[2]
    # The data both ways, after the handshake.
    text = shell.text()
    assert re.search(
        rf"ESTABLISHED  --> <SEQ={(iss + 1) % 2**32}><ACK=\d+><CTL=[A-Z,]*ACK><DATA=6> +-->", text
    )
    assert re.search(
        rf"ESTABLISHED  <-- <SEQ={(irs + 1) % 2**32}><ACK=\d+><CTL=[A-Z,]*ACK><DATA=6> +<--", text
    )


# ---------------------------------------------------------------------- capture


def test_capture_writes_a_pcap_that_tcpdump_reads(shell: Shell, tmp_path: Path) -> None:
    pcap = tmp_path / "views.pcap"
    shell.ask(f"capture start {pcap}", rf"capturing to {re.escape(str(pcap))}\r\n")
    open_conn(shell, "c1", 7)
    shell.ask(r'send c1 "hello\n"', r"c1: queued 6 bytes\r\n")
    shell.ask('expect c1 "hello" --timeout 5', r"c1: got hello\r\n")
    shell.ask("close c1", r"c1 (FIN-WAIT-1|FIN-WAIT-2|TIME-WAIT)\r\n")
    shell.ask("wait c1 TIME-WAIT --timeout 5", r"c1 TIME-WAIT\r\n")
    _, answer = shell.ask("capture stop", r"capture stopped: \d+ packets in " + EOL)
    m = re.fullmatch(rf"capture stopped: (\d+) packets in {re.escape(str(pcap))}\r\n", answer)
    assert m, answer
    packets = int(m.group(1))
    shell.prompt()

    tcpdump = shutil.which("tcpdump")
    assert tcpdump, "tcpdump is installed by scripts/setup.sh"
    read = subprocess.run([tcpdump, "-nr", str(pcap)], capture_output=True, text=True, timeout=20, check=True)
    lines = read.stdout.splitlines()
    assert len(lines) == packets, read.stdout
    # handshake, data each way, FIN each way: at least 3 + 2 + 2 segments, and the SYN first
    assert packets >= 7, read.stdout
    assert re.search(rf"IP {re.escape(STACK)}\.\d+ > {re.escape(KERNEL)}\.7: Flags \[S\]", lines[0]), lines[0]
    assert sum("length 6" in ln for ln in lines) == 2, read.stdout
    assert sum("Flags [F" in ln for ln in lines) == 2, read.stdout


# ---------------------------------------------------------------------- a mistyped command


def test_a_mistyped_command_gets_one_line_naming_the_nearest(shell: Shell) -> None:
    before, answer = shell.ask("stauts", r"unknown command " + EOL)
    assert answer == "unknown command 'stauts'; did you mean 'status'?\r\n"
    assert screen_lines(before, typed=("stauts",)) == [], before
    before, _ = shell.ask("status", r"no connections yet" + EOL)
    assert screen_lines(before, typed=("status",))[0] == "connections", before


# ---------------------------------------------------------------------- Ctrl-C in a blocking command


def wait_cooked(sh: Shell, timeout: float = ANSWER_TIMEOUT) -> None:
    """Wait until the terminal is back in cooked mode (echo on): prompt_toolkit has handed it back and
    a command runs, so Ctrl-C is a signal, not a key for the line editor. The mode is a property of
    the pseudo-terminal, read through its master; there is no output to wait on."""
    deadline = time.monotonic() + timeout
    while not sh.child.getecho():
        if time.monotonic() > deadline:
            pytest.fail("the terminal never left raw mode: no command seems to run", pytrace=False)
        time.sleep(0.01)


def test_ctrl_c_cancels_only_the_blocking_command(shell: Shell) -> None:
    open_conn(shell, "c1", 7)
    shell.type("receive c1 --timeout 30")
    shell.wait_for(re.escape("receive c1 --timeout 30") + r"\r\r\n")  # the line was taken
    wait_cooked(shell)

    pressed = time.monotonic()
    shell.child.sendintr()
    shell.wait_for(r"interrupted\r\n", timeout=5)
    took = time.monotonic() - pressed
    shell.prompt()
    assert took < 3, f"'interrupted' came {took:.1f} s after Ctrl-C"
    assert "c1:" not in shell.last_before, shell.last_before

    # Only the command was cancelled: the connection is still there and still carries data.
    shell.ask("status c1", r"c1 ESTABLISHED\r\n")
    shell.prompt()
    shell.ask(r'send c1 "after\n"', r"c1: queued 6 bytes\r\n")
    shell.ask("receive c1 --timeout 5", r"c1: 6 bytes: after\\n\r\n")
    shell.prompt()
    assert shell.child.isalive()
    assert "Traceback" not in shell.text()
