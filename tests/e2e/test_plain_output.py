"""Output to a pipe is plain text: no escape codes, no live views, whatever the command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parents[2]


def run(commands: str, *flags: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcpsh", *flags, "-c", commands],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )


def test_views_through_a_pipe_have_no_escape_codes() -> None:
    done = run(
        "open 198.18.0.2:7; trace on; send c1 hi; expect c1 hi; trace off; "
        "status; status c1; watch; exchange c1"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\x1b" not in done.stdout
    assert "c1 ESTABLISHED" in done.stdout  # the watch snapshot
    assert "[P.], seq 1:3" in done.stdout  # the trace
    assert "<CTL=SYN>" in done.stdout  # the exchange


def test_no_color_and_the_flag_turn_colour_off_where_it_would_be_on() -> None:
    """FORCE_COLOR makes rich colour even a pipe (the control); NO_COLOR or --no-color takes it away."""
    commands = "open 198.18.0.2:7; status c1"
    coloured = run(commands, FORCE_COLOR="1")
    assert coloured.returncode == 0 and "\x1b[" in coloured.stdout
    for done in (run(commands, FORCE_COLOR="1", NO_COLOR="1"), run(commands, "--no-color", FORCE_COLOR="1")):
        assert done.returncode == 0, done.stdout + done.stderr
        assert "\x1b[3" not in done.stdout and "\x1b[9" not in done.stdout  # no foreground colours
