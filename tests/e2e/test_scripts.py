"""Scripts: `tcpsh FILE.tcpsh` and `tcpsh -c "CMD; CMD"`, run with pipes as a CI job or a Makefile would.

The contract (DESIGN.md): a script stops at the first line that fails and prints `FILE:LINE: message`;
exit status 1; 0 when every line held. Each run builds its own lab and must leave nothing behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import EXAMPLES, KERNEL, Run, assert_lab_gone, run_tcpsh

pytestmark = pytest.mark.root

CLOSED_PORT = 5999  # nothing listens there in the lab: the kernel answers the SYN with RST


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def failure_lines(run: Run, source: str) -> list[str]:
    return [ln for ln in run.lines if re.match(rf"{re.escape(source)}:\d+: ", ln)]


@pytest.mark.parametrize("example", ["echo.tcpsh", "http-get.tcpsh"])
def test_the_examples_pass(example: str, tcpsh_env: dict[str, str]) -> None:
    path = EXAMPLES / example
    run = run_tcpsh([str(path)], tcpsh_env)
    assert run.returncode == 0, run
    last_echo = [ln for ln in path.read_text().splitlines() if ln.startswith("echo ")][-1]
    assert last_echo.split(" ", 1)[1].strip('"') in run.lines, run
    assert failure_lines(run, str(path)) == [], run
    assert "Traceback" not in run.output
    assert_lab_gone(run.pid)


def test_a_passing_script_exits_0(tmp_path: Path, tcpsh_env: dict[str, str]) -> None:
    write(
        tmp_path,
        "talk.tcpsh",
        f"""# comments and blank lines are fine

open {KERNEL}:7
send c1 "one\\r\\n"
expect c1 "one\\r\\n" --timeout 5
open {KERNEL}:80
send c2 "GET / HTTP/1.0\\r\\n\\r\\n"
expect c2 "200 OK" --timeout 5
wait c2 CLOSE-WAIT --timeout 5
close c2
close c1
echo DONE
""",
    )
    run = run_tcpsh(["talk.tcpsh"], tcpsh_env, cwd=tmp_path)
    assert run.returncode == 0, run
    assert "c1: got one\\r\\n" in run.lines, run
    assert "c2: got 200 OK" in run.lines, run
    assert "DONE" in run.lines, run
    assert failure_lines(run, "talk.tcpsh") == [], run
    assert_lab_gone(run.pid)


FAILING = {
    "expect-timeout": (
        f"""# expects text that never comes
open {KERNEL}:7
send c1 "ping\\n"
expect c1 NEVER --timeout 0.5
echo MARKER-AFTER-THE-FAILURE
""",
        4,
        r"c1: .*NEVER.*",
    ),
    "closed-port": (
        f"""echo BEFORE-THE-FAILURE
open {KERNEL}:{CLOSED_PORT} --timeout 3
echo MARKER-AFTER-THE-FAILURE
""",
        2,
        r"c1: .*refused",
    ),
    "bad-command": (
        f"""open {KERNEL}:9
frobnicate c1
echo MARKER-AFTER-THE-FAILURE
""",
        2,
        r"unknown command 'frobnicate'.*",
    ),
}


@pytest.mark.parametrize("case", sorted(FAILING))
def test_a_failing_script_stops_at_its_line(case: str, tmp_path: Path, tcpsh_env: dict[str, str]) -> None:
    text, line, message = FAILING[case]
    write(tmp_path, "f.tcpsh", text)  # a short relative name keeps the message on one line
    run = run_tcpsh(["f.tcpsh"], tcpsh_env, cwd=tmp_path)
    assert run.returncode == 1, run
    (failure,) = failure_lines(run, "f.tcpsh")
    assert re.fullmatch(rf"f\.tcpsh:{line}: {message}", failure), run
    assert "MARKER-AFTER-THE-FAILURE" not in run.output, f"a line after the failing one ran:\n{run}"
    if "BEFORE-THE-FAILURE" in text:
        assert "BEFORE-THE-FAILURE" in run.lines, run
    assert "Traceback" not in run.output
    assert_lab_gone(run.pid)


def test_a_script_that_cannot_be_read(tmp_path: Path, tcpsh_env: dict[str, str]) -> None:
    run = run_tcpsh(["no-such-file.tcpsh"], tcpsh_env, cwd=tmp_path)
    assert run.returncode == 1, run
    assert any("no-such-file.tcpsh" in ln for ln in run.lines), run
    assert "Traceback" not in run.output
    assert_lab_gone(run.pid)


def test_commands_with_c_pass(tcpsh_env: dict[str, str]) -> None:
    # A ';' inside quotes is part of the text, not the end of the command.
    commands = f'open {KERNEL}:7; send c1 "hi;there\\n"; expect c1 "hi;there"; status'
    run = run_tcpsh(["-c", commands], tcpsh_env)
    assert run.returncode == 0, run
    assert "c1: got hi;there" in run.lines, run
    assert any(ln.startswith("connections") for ln in run.lines), run
    assert_lab_gone(run.pid)


def test_commands_with_c_stop_at_the_failing_one(tcpsh_env: dict[str, str]) -> None:
    run = run_tcpsh(
        ["-c", f"echo BEFORE-THE-FAILURE; open {KERNEL}:9; expect c1 x --timeout 0.3; echo MARKER-AFTER"],
        tcpsh_env,
    )
    assert run.returncode == 1, run
    assert "BEFORE-THE-FAILURE" in run.lines, run
    (failure,) = failure_lines(run, "-c")
    assert re.fullmatch(r"-c:3: c1: .*'x'.*", failure), run
    assert "MARKER-AFTER" not in run.output, run
    assert_lab_gone(run.pid)


def test_the_failure_line_is_one_line_however_long(tmp_path: Path, tcpsh_env: dict[str, str]) -> None:
    deep = tmp_path / "a-directory-with-a-rather-long-name" / "and-another-one-below-it"
    deep.mkdir(parents=True)
    script = write(deep, "fails.tcpsh", f"open {KERNEL}:{CLOSED_PORT} --timeout 3\n")
    run = run_tcpsh([str(script)], tcpsh_env)
    assert run.returncode == 1, run
    whole = rf"{re.escape(str(script))}:1: c1: .*refused"
    assert any(re.fullmatch(whole, ln) for ln in run.lines), run


def test_an_expect_timeout_names_the_timeout_given(tcpsh_env: dict[str, str]) -> None:
    run = run_tcpsh(["-c", f'open {KERNEL}:7; send c1 "abc\\n"; expect c1 NEVER --timeout 0.5'], tcpsh_env)
    assert run.returncode == 1, run
    (failure,) = failure_lines(run, "-c")
    assert re.fullmatch(r"-c:3: c1: 'NEVER' not received within 0\.5 s; got 4 bytes: abc\\n", failure), run


def test_status_in_a_script_shows_the_id_and_the_state(tcpsh_env: dict[str, str]) -> None:
    run = run_tcpsh(["-c", f"open {KERNEL}:7; status"], tcpsh_env)
    assert run.returncode == 0, run
    rows = [ln for ln in run.lines if ln.startswith("│")]
    assert any(re.match(r"│ c1 +│ ESTABLISHED +│", ln) for ln in rows), run


def test_congestion_control_and_buffers_chosen_from_the_command_line_and_the_shell(
    tcpsh_env: dict[str, str],
) -> None:
    """`tcpsh --cc cubic` sets the default; `open --cc` and `set` choose per connection; status shows it."""
    run = run_tcpsh(
        [
            "--cc", "cubic", "--set", "rcv-buf=256k", "-c",
            f"open {KERNEL}:7; status c1; open {KERNEL}:7 --cc reno; status c2; set c2 cc cubic; "
            f"set c2 snd-buf 64k; set default cc reno; open {KERNEL}:7; status c3",
        ],
        tcpsh_env,
    )
    assert run.returncode == 0, run
    rows = [[w for w in ln.split() if w != "│"] for ln in run.lines]  # the status table's cells
    ccs = [r[2] for r in rows if r[:1] == ["cwnd"]]
    assert ccs == ["cubic", "reno", "reno"], run
    assert ["rcv-buf", str(256 << 10), "set", "ID", "NAME", "VALUE"] in rows, run
    assert "c2 cc cubic" in run.lines and f"c2 snd-buf {64 << 10}" in run.lines, run
    assert "default cc reno" in run.lines, run
    assert_lab_gone(run.pid)


def test_a_bad_default_on_the_command_line_is_one_line_before_any_lab(tcpsh_env: dict[str, str]) -> None:
    run = run_tcpsh(["--set", "sack=maybe", "-c", "echo never"], tcpsh_env)
    assert run.returncode == 2
    assert run.lines == ["tcpsh: sack is on or off, not 'maybe'"], run


@pytest.mark.parametrize("link", ["fast", "plain"])
def test_either_link_carries_a_download_intact(link: str, tcpsh_env: dict[str, str], tmp_path: Path) -> None:
    """`--link fast` (the default: the kernel cuts and joins segments) and `--link plain` move the same
    bytes: 2 MB from the lab's HTTP service, read to the end into a file, compared by SHA-256."""
    import hashlib

    from stack.services import pattern_sha256

    size = 2_000_000
    out = tmp_path / "body"
    request = f'send c1 "GET /bytes/{size} HTTP/1.0\\r\\n\\r\\n"'
    run = run_tcpsh(["--link", link, "-c", f"open {KERNEL}:80; {request}; receive c1 --all --to {out}"],
                    tcpsh_env, timeout=60)
    assert run.returncode == 0, run.output
    assert "link is not available" not in run.output
    head, _, body = out.read_bytes().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]
    assert (len(body), hashlib.sha256(body).hexdigest()) == (size, pattern_sha256(size))
