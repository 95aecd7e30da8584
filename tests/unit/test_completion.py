"""The committed completion scripts are those the argument parser generates now."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpsh.completion import FILES, script

COMPLETIONS = Path(__file__).resolve().parents[2] / "completions"


@pytest.mark.parametrize("shell", sorted(FILES))
def test_committed_completion_is_up_to_date(shell: str) -> None:
    committed = (COMPLETIONS / FILES[shell]).read_text()
    assert committed == script(shell) + "\n", f"completions/{FILES[shell]} is stale: run 'make completions'"


def test_completion_knows_the_options() -> None:
    bash = script("bash")
    for flag in ("--lab", "--interface", "--address", "--firewall", "--lab-clean", "--no-color"):
        assert flag in bash
