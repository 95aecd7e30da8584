"""The fuzzers' fixtures (the lab's, from tests/interop) and a line in pytest's summary with the
number of segments they fed."""

from __future__ import annotations

import sys

import pytest

from tests.interop.conftest import kernel_process, kernel_python, lab_stack, stack_lab, wire

__all__ = ["kernel_process", "kernel_python", "lab_stack", "stack_lab", "wire"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = []
    tcb = sys.modules.get("tests.fuzz.test_tcb_fuzz")
    if tcb is not None and tcb.FED:
        seeded = sum(n for k, n in tcb.FED.items() if not k.startswith("drawn"))
        drawn = sum(n for k, n in tcb.FED.items() if k.startswith("drawn"))
        lines.append(f"in memory: {seeded:,} segments from seeded runs, {drawn:,} drawn by hypothesis")
    lab = sys.modules.get("tests.fuzz.test_lab_fuzz")
    if lab is not None and lab.SENT:
        lines.append(f"over the lab link: {sum(lab.SENT.values()):,} packets")
    if lines:
        terminalreporter.write_sep("-", "fuzzing")
        for line in lines:
            terminalreporter.write_line(line)
