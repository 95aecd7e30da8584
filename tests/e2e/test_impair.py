"""`impair` in the lab, typed at the shell: with everything the stack sends lost, an OPEN retransmits its
SYN and times out; `impair off` and the next OPEN is established; bad values get one clear line and the
shell carries on. Traffic goes only to the run's own lab (198.18.0.0/15).
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import KERNEL, Shell, run_tcpsh, screen_lines

pytestmark = pytest.mark.root

EOL = r"[^\r\n]*"


def test_total_loss_out_times_out_an_open_and_impair_off_recovers(shell: Shell) -> None:
    shell.ask("impair loss 100% --out", r"impairment out: loss 100%")
    shell.prompt()
    _, status = shell.ask("status", r"impairment out: loss 100%" + EOL)
    assert "impairment in" not in status
    shell.prompt()

    # The SYN and its retransmission (the initial RTO is 1 s) are lost: no answer within 3 s.
    no_answer = rf"c1: no answer from {re.escape(KERNEL)}:7 within 3 s"
    shell.ask(f"open {KERNEL}:7 --timeout 3", no_answer, timeout=10)
    shell.prompt()
    shell.type("impair")
    # (A prompt redrawn by news from the stack's thread may come between the two lines.)
    out = shell.wait_for(r"impairment out: loss 100%\s+(?:tcpsh>\s*)?passed (\d+)\s+dropped (\d+)")
    assert out.group(1) == "0" and int(out.group(2)) >= 2, out.group(0)  # the SYN, then again
    shell.wait_for(r"impairment in: off")
    shell.wait_for(r"seed \d+")
    shell.prompt()

    shell.ask("impair off", r"impairment out: off")
    shell.wait_for(r"impairment in: off")
    shell.prompt()
    shell.ask(f"open {KERNEL}:7", r"c\d+ ESTABLISHED ")
    shell.prompt()


def test_a_bad_value_gets_one_clear_line_and_the_shell_carries_on(shell: Shell) -> None:
    for line, answer in (
        ("impair loss 150%", r"impair: loss 150% is out of range 0-100%"),
        ("impair delay 5", r"impair delay: '5' is not a time with its unit \(for example 50ms"),
        ("impair wobble 5%", r"impair: WHAT is one of loss, delay, reorder"),
    ):
        before, _ = shell.ask(line, answer + EOL)
        assert screen_lines(before, (line,)) == [], before  # nothing before the one line
        shell.prompt()
        assert screen_lines(shell.last_before) == [], shell.last_before  # and nothing after it
    # Nothing was set by the refused lines, and the shell still answers.
    shell.ask("impair", r"impairment out: off")
    shell.wait_for(r"impairment in: off")
    shell.prompt()
    shell.ask(f"open {KERNEL}:7", r"c1 ESTABLISHED ")


def test_a_bad_value_in_a_script_stops_it_at_its_line(tcpsh_env: dict[str, str]) -> None:
    run = run_tcpsh(["-c", "impair delay 50ms 10ms; impair rate 0"], tcpsh_env)
    assert run.returncode == 1, run
    assert run.lines[-1] == "-c:2: impair: rate 0 must be more than 0 bits per second (off: no limit)", run
    assert "impairment out: delay 50ms ±10ms" in run.lines, run
