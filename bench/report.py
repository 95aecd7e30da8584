"""The benchmark's one table: each figure of the stack beside Linux's and beside issue 8's target.

The same rows are printed (rich), written as JSON, and written as Markdown for docs/benchmarks.md,
between the markers RESULTS_BEGIN and RESULTS_END, with the machine the run was made on.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

RESULTS_BEGIN = "<!-- bench:results:begin (written by `make bench`; edit around it, not inside) -->"
RESULTS_END = "<!-- bench:results:end -->"


@dataclass
class Target:
    """Issue 8's target for one figure: at least (`higher`) or at most `value`, in the row's unit, or
    `of_linux` times Linux's figure."""

    value: float
    higher: bool = True
    of_linux: bool = False

    def text(self, unit: str) -> str:
        sign = "≥" if self.higher else "≤"
        if self.of_linux:
            return f"{sign} {self.value:g}× Linux"
        return f"{sign} {self.value:,g} {unit}" if unit != "%" else f"{sign} {self.value:g}%"

    def judge(self, stack: float, linux: float | None) -> tuple[bool | None, str]:
        """(met, how far): None when there is nothing to judge (no Linux figure for a relative one)."""
        goal = self.value * linux if self.of_linux and linux else self.value
        if self.of_linux and not linux:
            return None, ""
        if self.higher:
            met = stack >= goal
            return met, "" if met or stack <= 0 else f"{goal / stack:.3g}× short"
        met = stack <= goal
        return met, "" if met or goal <= 0 else f"{stack / goal:.3g}× over"


@dataclass
class Row:
    section: str
    measure: str
    unit: str
    stack: float | None
    linux: float | None = None
    target: Target | None = None
    note: str = ""
    met: bool | None = None
    shortfall: str = ""

    def __post_init__(self) -> None:
        if self.target is not None and self.stack is not None:
            self.met, self.shortfall = self.target.judge(self.stack, self.linux)

    @property
    def ratio(self) -> str:
        if self.stack is None or not self.linux:
            return ""
        r = self.stack / self.linux
        if self.unit in ("MB/s", "conn/s"):
            return f"{100 * r:.3g}% of Linux"
        return f"{r:.3g}× Linux"

    @property
    def verdict(self) -> str:
        if self.met is None:
            return ""
        return "met" if self.met else f"not met ({self.shortfall})" if self.shortfall else "not met"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["target"] = self.target.text(self.unit) if self.target else None
        out["ratio"] = self.ratio
        return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("conn/s", "µs", "round trips/s"):
        return f"{value:,.0f}"
    if unit == "%":
        return f"{value:.2f}"
    if unit == "s":
        return f"{value:.1f}"
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"


def _others(section: dict[str, Any]) -> str:
    """What the rest of the machine was doing meanwhile (measure.OtherLoad), for the section's title."""
    cores = section.get("others_cores")
    return "" if cores is None else f" (other processes kept {cores:.2f} cores busy)"


def rows(results: dict[str, Any], options: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    size = options["size"] / 1e6
    bulk = results.get("bulk")
    if bulk:
        section = f"Bulk, {size:g} MB each, MTU 1500" + _others(bulk)
        link = results.get("link", "fast")
        other = "plain" if link == "fast" else "fast"
        for key, measure, ref in (
            ("send", f"stack → Linux ({link} link)", "linux_send"),
            (f"send_{other}", f"stack → Linux ({other} link)", "linux_send"),
            ("receive", f"Linux → stack (TSO frames of up to 64 KB; {link} link)", "linux_receive"),
            (f"receive_{other}", f"Linux → stack (TSO frames; {other} link)", "linux_receive"),
            ("receive_mtu", "Linux → stack, TSO off (frames of 1500 octets)", "linux_receive_mtu"),
        ):
            if key not in bulk:
                continue
            r = bulk[key]
            out.append(
                Row(section, measure, "MB/s", r["mb_s"], bulk[ref]["mb_s"], Target(250), _bulk_note(r))
            )
    loss = results.get("loss")
    if loss:
        section = (
            f"Bulk through {options['loss']:g}% loss each way, {options['loss_size'] / 1e6:g} MB"
            + _others(loss)
        )
        for key, measure, ref in (
            ("send", "stack → Linux", "linux_send"),
            ("receive", "Linux → stack", "linux_receive"),
        ):
            r = loss[key]
            note = _bulk_note(r) + f"; dropped {_dropped(r.get('dropped', {}))}"
            out.append(Row(section, measure, "MB/s", r["mb_s"], loss[ref]["mb_s"], Target(50), note))
    rate = results.get("rate")
    if rate:
        section = (
            f"Connections: open, 100 octets each way, close, for {options['rate_seconds']:g} s"
            + _others(rate)
        )
        linux = rate["linux"]["per_s"]
        r = rate["connect"]
        out.append(
            Row(
                section,
                "stack's clients → Linux's server",
                "conn/s",
                r["per_s"],
                linux,
                Target(2000),
                f"{r['connections']:,} connections, {r['errors']} failed",
            )
        )
        r = rate["accept"]
        out.append(
            Row(
                section,
                "Linux's clients → stack's passive OPENs",
                "conn/s",
                r["per_s"],
                linux,
                Target(2000),
                f"{r['connections']:,} connections, {r['errors']} failed; {r['listeners']} passive OPENs "
                "kept listening",
            )
        )
    latency = results.get("latency")
    if latency:
        section = (
            f"Latency: one-octet echo, {latency['stack']['round_trips']:,} round trips each, in turns"
            + _others(latency)
        )
        s, lx = latency["stack"], latency["linux"]
        out.append(
            Row(section, "round trip, median", "µs", s["median_us"], lx["median_us"], Target(5, False, True))
        )
        out.append(Row(section, "round trip, 99th percentile", "µs", s["p99_us"], lx["p99_us"]))
    scale = results.get("scale")
    if scale:
        n = scale["connections"]
        section = f"Scale: {n:,} established connections to Linux's echo server" + _others(scale)
        out.append(
            Row(
                section,
                f"opening them, {options['batch']} at a time",
                "conn/s",
                scale["opened_per_s"],
                note=f"{scale['open_seconds']:.1f} s for {n:,}",
            )
        )
        out.append(
            Row(
                section,
                "resident memory per connection",
                "KB",
                scale["bytes_per_conn"] / 1e3,
                target=Target(10, False),
                note=f"RSS {scale['rss_before'] / 1e6:.0f} → {scale['rss_after'] / 1e6:.0f} MB",
            )
        )
        out.append(
            Row(
                section,
                f"CPU while idle ({scale['idle_seconds']:.0f} s)",
                "%",
                scale["idle_cpu_percent"],
                target=Target(2, False),
                note="of one core, the whole process",
            )
        )
        out.append(
            Row(
                section,
                f"{scale['active']:,} of them active at once",
                "round trips/s",
                scale["active_round_trips_per_s"],
                note=f"100 octets echoed; a round of all {scale['active']:,}: median "
                f"{scale['round_seconds_median'] * 1e3:.0f} ms, "
                f"max {scale['round_seconds_max'] * 1e3:.0f} ms",
            )
        )
    return out


def _bulk_note(r: dict[str, Any]) -> str:
    moved = f"{r['octets'] / 1e6:g} MB in {r['seconds']:.3g} s"
    if r.get("capped"):
        moved += " (stopped at the time cap)"
    rtx = r.get("retransmissions")
    if rtx is not None:
        moved += f"; {rtx:,} retransmitted"
    if "cpu_cores" in r:
        moved += f"; the process kept {r['cpu_cores']:.2f} cores busy"
    return moved


def _dropped(d: dict[str, Any]) -> str:
    names = {"forward": "→ Linux", "back": "→ stack"}
    parts = [f"{dropped:,} of {seen:,} {names.get(name, name)}" for name, (seen, dropped) in d.items()]
    return ", ".join(parts) or "?"


# -- output --------------------------------------------------------------------------------------------


def _with_unit(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    return f"{_fmt(value, unit)} {unit}" if unit != "%" else f"{_fmt(value, unit)}%"


def table(all_rows: list[Row], title: str) -> Table:
    """The terminal's table: a row per figure, its notes in a dim line under the measure."""
    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", padding=(0, 1))
    t.add_column("measure", max_width=52, overflow="fold")
    t.add_column("tcpsh", justify="right", no_wrap=True)
    t.add_column("Linux", justify="right", no_wrap=True)
    t.add_column("tcpsh/Linux", justify="right", no_wrap=True)
    t.add_column("target (issue 8)", no_wrap=True)
    t.add_column("verdict", no_wrap=True)
    section = None
    for row in all_rows:
        if row.section != section:
            section = row.section
            t.add_row(f"[bold]{escape(section)}[/bold]")
        style = "green" if row.met else "red" if row.met is False else ""
        measure = f"  {escape(row.measure)}"
        if row.note:
            measure += f"\n    [dim]{escape(row.note)}[/dim]"
        t.add_row(
            measure,
            _with_unit(row.stack, row.unit),
            _with_unit(row.linux, row.unit),
            row.ratio,
            row.target.text(row.unit) if row.target else "",
            f"[{style}]{row.verdict}[/{style}]" if style else row.verdict,
        )
    return t


def print_table(console: Console, all_rows: list[Row], title: str) -> None:
    console.print(table(all_rows, title))


def markdown(all_rows: list[Row], machine_info: dict[str, Any], load: dict[str, Any], extra: str = "") -> str:
    lines = [
        f"Run of {machine_info['date']} on {describe_machine(machine_info)}.",
        f"Load average (1, 5, 15 min) before: {_load(load.get('before'))}; "
        f"after: {_load(load.get('after'))}.",
        "",
        "| Measure | tcpsh | Linux | unit | tcpsh/Linux | target (issue 8) | verdict | notes |",
        "|---|--:|--:|---|--:|---|---|---|",
    ]
    section = None
    for row in all_rows:
        if row.section != section:
            section = row.section
            lines.append(f"| **{section}** | | | | | | | |")
        lines.append(
            f"| {row.measure} | {_fmt(row.stack, row.unit)} | "
            f"{_fmt(row.linux, row.unit) if row.linux is not None else ''} | {row.unit} | {row.ratio} | "
            f"{row.target.text(row.unit) if row.target else ''} | {row.verdict} | {row.note} |"
        )
    if extra:
        lines += ["", extra.rstrip()]
    return "\n".join(lines) + "\n"


def _load(values: Any) -> str:
    return ", ".join(f"{v:.2f}" for v in values) if values else "?"


def record(path: Path, text: str) -> None:
    """Replace what lies between the markers in `path` with `text` (the markers are added at the end
    of the file when it has none)."""
    block = f"{RESULTS_BEGIN}\n\n{text.rstrip()}\n\n{RESULTS_END}"
    old = path.read_text() if path.exists() else ""
    if RESULTS_BEGIN in old and RESULTS_END in old:
        head, _, rest = old.partition(RESULTS_BEGIN)
        _, _, tail = rest.partition(RESULTS_END)
        new = head + block + tail
    else:
        new = old.rstrip() + ("\n\n" if old else "") + block + "\n"
    path.write_text(new)


# -- the machine ---------------------------------------------------------------------------------------


def _first(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
        return out.stdout.strip() if out.returncode == 0 else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine() -> dict[str, Any]:
    mem_kb = _first("/proc/meminfo", "MemTotal").split()[0]
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "stack", "bench")
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(int(mem_kb) / 1e6, 1) if mem_kb.isdigit() else None,
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit + (" (with local changes to stack/ or bench/)" if dirty not in ("", "?") else ""),
    }


def describe_machine(m: dict[str, Any]) -> str:
    return (
        f"{m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), {m['memory_gb']} GB, "
        f"Linux {m['kernel']}, {m['python']}, tcpsh {m['commit']}"
    )
