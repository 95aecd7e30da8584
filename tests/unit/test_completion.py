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
    for flag in ("--lab", "--interface", "--address", "--firewall", "--link", "--lab-clean", "--no-color"):
        assert flag in bash


def completions(words: list[str], tmp_path: Path) -> list[str]:
    """What bash completes for the command line `words` (the last one being typed), from the script."""
    import subprocess

    path = tmp_path / "tcpsh.bash"
    path.write_text(script("bash"))
    line = " ".join(f"'{w}'" for w in words)
    out = subprocess.run(
        ["bash", "-c", f"source {path}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _shtab_tcpsh; "
         'printf "%s\\n" "${COMPREPLY[@]}"'],
        capture_output=True, text=True, check=True,
    ).stdout
    return out.split()


def test_the_subcommands_and_their_options_complete(tmp_path: Path) -> None:
    assert completions(["tcpsh", "da"], tmp_path) == ["daemon"]
    assert completions(["tcpsh", "attach", "--so"], tmp_path) == ["--socket"]
    assert "--grace" in completions(["tcpsh", "daemon", "--"], tmp_path)
    assert completions(["tcpsh", "--link", ""], tmp_path) == ["fast", "plain"]
