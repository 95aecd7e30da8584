"""The interactive shell, driven through a pseudo-terminal the way a person types at it.

Each test starts `tcpsh` with no options (so it builds its own lab: the stack at 198.18.0.1, Linux's TCP
at 198.18.0.2 with its services), waits for the banner and the prompt, types, and reads the answers.
The `shell` fixture checks afterwards that nothing of the lab is left on the machine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import KERNEL, PROMPT, Shell, assert_lab_gone, lab_namespaces, screen_lines

pytestmark = pytest.mark.root

EOL = r"[^\r\n]*\r\n"  # the rest of the line


def open_conn(shell: Shell, cid: str, port: int) -> None:
    """`open`, its answer, and the news of the handshake, which the stack reports from its own thread,
    before or after the answer."""
    before, answer = shell.ask(f"open {KERNEL}:{port}", rf"{cid} ESTABLISHED " + EOL)
    expected = rf"{cid} ESTABLISHED 198\.18\.0\.1:\d+ -> {re.escape(KERNEL)}:{port}\r\n"
    assert re.fullmatch(expected, answer), answer
    if f"* {cid}: established" not in before:
        shell.wait_for(rf"\* {cid}: established" + EOL)


def test_open_send_receive_status(shell: Shell) -> None:
    assert len(lab_namespaces(shell.pid)) == 2, "the running shell's lab has its two namespaces"
    open_conn(shell, "c1", 7)

    _, answer = shell.ask(r'send c1 "hello\n"', r"c1: queued \d+ bytes" + EOL)
    assert answer == "c1: queued 6 bytes\r\n"

    # The echo comes back; printable() shows the newline as \n.
    _, answer = shell.ask("receive c1 --timeout 5", r"c1: \d+ bytes: " + EOL)
    assert answer == "c1: 6 bytes: hello\\n\r\n"

    shell.ask("status", r"connections")
    row = shell.wait_for(r"│ c1 +│" + EOL).group(0)
    cells = [c.strip() for c in row.strip().strip("│").split("│")]
    assert cells[0] == "c1" and cells[1] == "ESTABLISHED", row
    assert re.fullmatch(r"198\.18\.0\.1:\d+", cells[2]), row
    assert cells[3] == f"{KERNEL}:7", row

    shell.ask("status c1", r"c1 ESTABLISHED" + EOL)
    shell.wait_for(r"SND\.UNA")
    shell.wait_for(r"RCV\.NXT")
    shell.prompt()
    assert "Traceback" not in shell.text()


BAD_LINES = [
    ("frobnicate now", "unknown command 'frobnicate'; type 'help' for the list"),
    ("send c9 x", "c9: no such connection"),
    (f"open {KERNEL}:99999", "port 99999 is out of range 1-65535"),
    ("wait c1 NOSUCHSTATE", "unknown state 'NOSUCHSTATE'; states are CLOSED, LISTEN, "),
    ('send c1 "unclosed', 'unclosed " quote'),
    ("receive c1 --bogus", "receive: unknown option --bogus"),
    ("open", "open: missing HOST:PORT"),
]


def test_bad_lines_answer_in_one_line_and_the_shell_carries_on(shell: Shell) -> None:
    open_conn(shell, "c1", 7)
    for n, (line, message) in enumerate(BAD_LINES, 1):
        before, _ = shell.ask(line, re.escape(message) + EOL)
        assert screen_lines(before, typed=(line,)) == [], f"{line!r}: printed more than one line: {before!r}"

        # The next command still works, and nothing was printed between the two.
        alive = f"alive {n}"
        before, _ = shell.ask(f'echo "{alive}"', re.escape(alive) + r"\r\n")
        assert screen_lines(before, typed=(f'echo "{alive}"',)) == [], f"after {line!r}: {before!r}"

    # No bad line lost the connection.
    shell.ask("status c1", r"c1 ESTABLISHED" + EOL)
    shell.ask(r'send c1 "still here\n"', r"c1: queued 11 bytes" + EOL)
    shell.ask("expect c1 here --timeout 5", r"c1: got here" + EOL)
    assert "Traceback" not in shell.text()
    assert "internal error" not in shell.text()


def test_help_lists_the_commands_and_explains_one(shell: Shell) -> None:
    listing, _ = shell.ask("help", r"help COMMAND shows its arguments and an example\." + EOL)
    names = [ln.split()[0] for ln in screen_lines(listing, typed=("help",))]
    calls = ("open", "send", "receive", "close", "abort", "flush", "status")  # RFC 9293 3.9.1
    for name in (*calls, "wait", "expect", "help", "quit"):
        assert name in names, f"help does not list {name}: {listing}"

    shell.ask("help send", r"send ID \[TEXT\]" + EOL)
    example = shell.wait_for(r"example +" + EOL).group(0).strip()
    assert re.fullmatch(r'example +send c1 "[^"]+"', example), example


def test_ctrl_c_clears_the_line_and_the_shell_stays(shell: Shell) -> None:
    shell.child.send(f"open {KERNEL}")  # typed, not entered
    shell.wait_for(re.escape(f"open {KERNEL}"))
    shell.child.sendintr()  # Ctrl-C
    shell.prompt()

    # Had the half-typed line survived, this would run "open 198.18.0.2status" and fail.
    before, _ = shell.ask("status", r"no connections yet")
    assert "not an IPv4 address" not in before and "HOST:PORT" not in before, before
    shell.ask('echo "still alive"', r"still alive\r\n")
    assert shell.child.isalive()
    assert "interrupted" not in shell.text()


def test_ctrl_c_interrupts_a_waiting_command_and_the_connection_stays(shell: Shell) -> None:
    # chargen sends without end. Once our receive window is full, nothing more arrives until someone
    # reads, so news of arriving data proves that the command below has begun to read.
    open_conn(shell, "c1", 19)
    for _ in range(50):
        shell.type("status c1")
        window = shell.wait_for(r"RCV\.WND +│ +(\d+)").group(1)
        shell.prompt()
        if window == "0":
            break
    else:
        pytest.fail(f"the receive window never filled:\n{shell.text()}")

    shell.type("expect c1 NEVER --timeout 60")
    shell.wait_for(r"expect c1 NEVER --timeout 60\r*\n")
    shell.wait_for(r"data arrived on c1")  # the expect is reading
    shell.child.sendintr()
    shell.wait_for(r"interrupted\r\n", timeout=5)

    shell.ask('echo "back at the prompt"', r"back at the prompt\r\n")
    shell.ask("status c1", r"c1 ESTABLISHED" + EOL)
    shell.ask(r'send c1 "more\n"', r"c1: queued 5 bytes" + EOL)
    assert "Traceback" not in shell.text()
    assert "internal error" not in shell.text()


def test_ctrl_c_right_after_enter_gives_the_prompt_back(shell: Shell) -> None:
    open_conn(shell, "c1", 9)  # discard: nothing comes back, so a receive would wait its whole timeout
    shell.prompt()
    for n in range(1, 9):
        shell.type("receive c1 --timeout 30")
        shell.wait_for(r"receive c1 --timeout 30\r*\n")
        shell.child.sendintr()  # once, as soon as the line is on screen
        # Interrupted, or not run at all: either way the prompt is back at once.
        shell.type(f'echo "try {n} done"')
        if not shell.poll_for(rf"try {n} done\r\n", timeout=2):
            pytest.fail(f"try {n}: the Ctrl-C was lost, the receive still waits:\n{shell.text()}")
        shell.prompt()
    assert "Traceback" not in shell.text(), shell.text()


@pytest.mark.parametrize("leave", ["ctrl-d", "quit"])
def test_leaving_reports_connections_and_removes_the_lab(shell: Shell, leave: str) -> None:
    assert len(lab_namespaces(shell.pid)) == 2
    open_conn(shell, "c1", 7)
    # 50 MB asked for and never read: the server's FIN waits behind data that our full receive window
    # keeps out, so c2 cannot finish closing in the grace time and is aborted. c1 closes cleanly.
    open_conn(shell, "c2", 80)
    before, _ = shell.ask(r'send c2 "GET /bytes/50000000 HTTP/1.0\r\n\r\n"', r"c2: queued \d+ bytes" + EOL)
    if "data arrived on c2" not in before:  # the news comes from the stack's thread, in either order
        shell.wait_for(r"data arrived on c2")
    shell.prompt()
    if leave == "ctrl-d":
        shell.child.sendeof()
    else:
        shell.type("quit")
    shell.wait_for(r"c1 closed\r\n")
    shell.wait_for(r"c2 aborted\r\n")
    assert shell.wait_exit() == 0, shell.text()
    assert_lab_gone(shell.pid)

    history = Path(shell.child.env["XDG_STATE_HOME"]) / "tcpsh" / "history"
    assert f"open {KERNEL}:7" in history.read_text(), "the history goes to the private XDG_STATE_HOME"
    assert PROMPT in shell.text()
    assert "Traceback" not in shell.text()
