"""The `impair` command: its line in the command table, its values, its handler over a stack whose link is
an ImpairedLink (the stack is not started: nothing is sent), its completion, and `status` showing it."""

from __future__ import annotations

import io

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from rich.console import Console

from stack.link.impair import ImpairedLink, Impairment
from stack.runtime import Stack
from tcpsh.commands import (
    BY_NAME,
    CommandError,
    parse_duration,
    parse_line,
    parse_percent,
    parse_rate,
)
from tcpsh.prompt import TableCompleter
from tcpsh.session import Session
from tests.unit.test_impair import FakeLink


class Shell:
    """A Session over an unstarted Stack on an ImpairedLink; `run` returns what a line printed."""

    def __init__(self) -> None:
        self.link = ImpairedLink(FakeLink(), seed=42)
        self.stack = Stack(self.link)
        self.output = io.StringIO()
        self.session = Session(self.stack, Console(file=self.output, width=160, no_color=True))

    def run(self, line: str) -> list[str]:
        start = self.output.tell()
        self.session.execute(line)
        return [line.rstrip() for line in self.output.getvalue()[start:].splitlines()]

    def close(self) -> None:
        self.stack.stop()


# ---------------------------------------------------------------------- parsing


def test_impair_is_in_the_one_command_table_with_its_words() -> None:
    cmd = BY_NAME["impair"]
    words = ("loss", "delay", "reorder", "duplicate", "corrupt", "rate", "limit", "seed", "off")
    assert cmd.args[0].choices == words
    assert [o.flag for o in cmd.opts] == ["--burst", "--out", "--in"]
    assert cmd.usage() == "impair [WHAT] [VALUE] [VALUE2] [--burst COUNT] [--out] [--in]"


def test_a_line_parses_into_its_words_and_options() -> None:
    p = parse_line("impair loss 5% --burst 3 --out")
    assert p is not None and p.command.name == "impair"
    assert p.values == {"WHAT": "loss", "VALUE": "5%", "burst": 3, "out": True}
    p = parse_line("impair delay 50ms 10ms --in")
    assert p is not None and p.values == {"WHAT": "delay", "VALUE": "50ms", "VALUE2": "10ms", "in": True}
    p = parse_line("impair")
    assert p is not None and p.values == {}


@pytest.mark.parametrize(
    ("text", "value"),
    [("5%", 0.05), ("0.5%", 0.005), ("5", 0.05), ("100%", 1.0), ("off", 0.0), ("-1%", -0.01)],
)
def test_percentages(text: str, value: float) -> None:
    assert parse_percent(text) == pytest.approx(value)


@pytest.mark.parametrize(("text", "value"), [("50ms", 0.05), ("0.2s", 0.2), ("500us", 0.0005), ("off", 0.0)])
def test_durations(text: str, value: float) -> None:
    assert parse_duration(text) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "value"),
    [("10mbit", 10e6), ("10Mbit", 10e6), ("500kbit", 500e3), ("1gbit", 1e9), ("64000", 64e3), ("off", None)],
)
def test_rates(text: str, value: float | None) -> None:
    assert parse_rate(text) == value


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (parse_percent, "lots", "'lots' is not a percentage (for example 5% or 0.5%)"),
        (parse_duration, "50", "'50' is not a time with its unit (for example 50ms, 0.2s, 500us)"),
        (parse_duration, "fast", "'fast' is not a time with its unit"),
        (parse_rate, "quick", "'quick' is not a rate (for example 10mbit, 500kbit, 1gbit)"),
    ],
)
def test_values_that_are_not_values(parse: object, text: str, message: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse(text)  # type: ignore[operator]
    assert str(caught.value).startswith(message)


# ---------------------------------------------------------------------- the handler


def test_impair_alone_shows_settings_counters_and_seed(sh: Shell) -> None:
    assert sh.run("impair") == [
        "impairment out: off",
        "  passed 0  dropped 0  duplicated 0  reordered 0  corrupted 0  delayed 0",
        "impairment in: off",
        "  passed 0  dropped 0  duplicated 0  reordered 0  corrupted 0  delayed 0",
        "seed 42 ('impair seed 42' replays the same random choices)",
    ]


def test_each_setting_reaches_the_link(sh: Shell) -> None:
    assert sh.run("impair loss 5% --burst 3 --out") == ["impairment out: loss 5% in bursts of 3"]
    assert sh.link.settings("in") == Impairment()
    assert sh.run("impair delay 50ms 10ms") == [
        "impairment out: loss 5% in bursts of 3, delay 50ms ±10ms",
        "impairment in: delay 50ms ±10ms",
    ]
    sh.run("impair reorder 10% 20ms --in")
    sh.run("impair duplicate 1%")
    sh.run("impair corrupt 0.5% --in")
    sh.run("impair rate 10mbit --out")
    sh.run("impair limit 500")
    assert sh.link.settings("out") == Impairment(
        loss=0.05, burst=3, delay=0.05, jitter=0.01, duplicate=0.01, rate=10e6, limit=500
    )
    assert sh.link.settings("in") == Impairment(
        delay=0.05, jitter=0.01, reorder=0.1, hold=0.02, duplicate=0.01, corrupt=0.005, limit=500
    )
    # a loss without --burst is independent again; `off` as a value turns one impairment off
    sh.run("impair loss 2% --out")
    assert sh.link.settings("out").burst == 0
    sh.run("impair rate off")
    assert sh.link.settings("out").rate is None
    assert sh.run("impair seed 7") == ["seed 7"]
    assert sh.link.seed == 7


def test_off_turns_one_direction_or_both_off(sh: Shell) -> None:
    sh.run("impair loss 5%")
    assert sh.run("impair off --in") == ["impairment in: off"]
    assert sh.link.settings("out").loss == 0.05
    assert sh.run("impair off") == ["impairment out: off", "impairment in: off"]
    assert not sh.link.active


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("impair loss 150%", "impair: loss 150% is out of range 0-100%"),
        ("impair loss -5%", "impair: loss -5% is out of range 0-100%"),
        ("impair delay -5ms", "impair: delay -5ms must be zero or more"),
        ("impair delay 5", "impair delay: '5' is not a time with its unit"),
        ("impair rate 0", "impair: rate 0 must be more than 0 bits per second (off: no limit)"),
        ("impair rate fast", "impair rate: 'fast' is not a rate"),
        ("impair loss", "impair loss: missing VALUE; usage: impair [WHAT]"),
        ("impair loss 90% --burst 3", "impair: loss 90% cannot come in bursts of 3"),
        ("impair delay 5ms --burst 3", "impair delay: --burst goes with loss"),
        ("impair duplicate 1% 2%", "impair duplicate: takes one value, not 1% 2%"),
        ("impair off now", "impair off: takes no value"),
        ("impair seed x", "impair seed: 'x' is not a whole number"),
        ("impair seed 4 --out", "impair seed: one seed serves both directions"),
        ("impair limit 0", "impair limit: '0' must be more than zero"),
        ("impair wobble 5%", "impair: WHAT is one of loss, delay, reorder, duplicate, corrupt, rate"),
        ("impair loss 5% --bust 3", "impair: unknown option --bust (did you mean --burst?"),
    ],
)
def test_bad_lines_are_one_clear_line_and_change_nothing(sh: Shell, line: str, message: str) -> None:
    sh.run("impair delay 1ms")
    before = (sh.link.settings("out"), sh.link.settings("in"), sh.link.seed)
    with pytest.raises(CommandError) as caught:
        sh.run(line)
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text, text
    assert (sh.link.settings("out"), sh.link.settings("in"), sh.link.seed) == before


def test_a_stack_without_the_layer_says_so() -> None:
    stack = Stack(FakeLink())
    try:
        session = Session(stack, Console(file=io.StringIO()))
        with pytest.raises(CommandError, match="impair: this stack's link has no impairment layer"):
            session.execute("impair loss 5%")
        session.execute("status")  # and status still works without it
    finally:
        stack.stop()


# ---------------------------------------------------------------------- status and completion


def test_status_shows_the_impairment_in_force(sh: Shell) -> None:
    assert not any("impairment" in line for line in sh.run("status"))
    sh.run("impair loss 5% --out")
    lines = sh.run("status")
    assert "impairment out: loss 5%" in lines
    assert not any(line.startswith("impairment in") for line in lines)


def completions(sh: Shell, text: str) -> list[str]:
    completer = TableCompleter(sh.session)
    return [c.text for c in completer.get_completions(Document(text, len(text)), CompleteEvent())]


def test_completion_knows_the_command_its_words_and_options(sh: Shell) -> None:
    assert "impair" in completions(sh, "imp")
    assert completions(sh, "impair ") == list(BY_NAME["impair"].args[0].choices)
    assert completions(sh, "impair d") == ["delay", "duplicate"]
    assert completions(sh, "impair loss 5% --") == ["--burst", "--out", "--in"]
