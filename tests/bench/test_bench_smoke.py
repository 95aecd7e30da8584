"""`make bench` cannot silently break: the whole benchmark at tiny sizes (`python -m bench --quick`),
in labs of its own, in seconds; and its pure parts (targets, verdicts, the recorded block) without a lab.

The figures themselves are never asserted: they are benchmark results, not properties of the stack.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report
from bench.run import options_from, parser, size

REPO_ROOT = Path(__file__).resolve().parents[2]
NETNS_DIR = Path("/var/run/netns")

SECTIONS = ("scale", "latency", "bulk", "loss", "rate", "profile")


@pytest.mark.root
@pytest.mark.timeout(240)
def test_quick_run_prints_the_table_and_writes_every_file(tmp_path: Path) -> None:
    record = tmp_path / "benchmarks.md"
    record.write_text("# Benchmarks\n\nHand-written text stays.\n")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path), "--record", str(record)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "tcpsh benchmark" in proc.stdout
    for measure in (
        "stack → Linux",
        "Linux → stack",
        "passive OPENs",
        "round trip, median",
        "per connection",
    ):
        assert measure in proc.stdout, f"{measure!r} missing from the table:\n{proc.stdout}"

    document = json.loads((tmp_path / "bench.json").read_text())
    assert set(SECTIONS) <= set(document["results"])
    assert document["machine"]["cpu"] and document["machine"]["kernel"] and document["machine"]["python"]
    assert len(document["load"]["before"]) == 3 and len(document["load"]["after"]) == 3
    rows = document["rows"]
    assert len(rows) >= 12
    for row in rows:
        # Idle CPU may truly be zero: two seconds of 200 idle connections can stay under the process
        # clock's tick. Every other figure is a rate, a size or a time, never zero.
        may_be_zero = row["measure"].startswith("CPU while idle")
        assert row["stack"] is not None and (row["stack"] > 0 or may_be_zero), row
        if row["target"] is not None:
            assert row["met"] in (True, False), row
    results = document["results"]
    for key in ("receive_mtu", "linux_receive_mtu"):
        assert results["bulk"][key]["octets"] == 4_000_000
    for key in ("send", "receive", "linux_send", "linux_receive"):
        assert results["bulk"][key]["octets"] == 4_000_000
        assert results["loss"][key]["octets"] == 2_000_000
        seen, dropped = results["loss"][key]["dropped"]["forward"]
        assert seen > 0 and 0 <= dropped < seen
    assert results["scale"]["connections"] == 200

    for key in ("send", "receive", "receive_mtu"):
        for name in (f"bench-profile-{key}.prof", f"bench-profile-{key}.txt"):
            assert (tmp_path / name).stat().st_size > 0
        assert results["profile"][key]["top_tottime"], "the profile names no function"
    text = record.read_text()
    assert text.startswith("# Benchmarks\n\nHand-written text stays.\n")
    assert report.RESULTS_BEGIN in text and report.RESULTS_END in text and "| stack → Linux |" in text

    if NETNS_DIR.exists():
        left = [ns.name for ns in NETNS_DIR.iterdir() if ns.name.startswith("tcpsh-")]
        assert not [ns for ns in left if not _owner_alive(ns)], f"namespaces left behind: {left}"


def _owner_alive(ns: str) -> bool:
    pid = int(ns.split("-")[1])
    return pid != 0 and Path(f"/proc/{pid}").exists()


def test_targets_are_judged_both_ways() -> None:
    at_least = report.Target(250)
    assert at_least.judge(300, None) == (True, "")
    assert at_least.judge(25, None) == (False, "10× short")
    at_most = report.Target(10, higher=False)
    assert at_most.judge(8.2, None) == (True, "")
    assert at_most.judge(20, None) == (False, "2× over")
    relative = report.Target(5, higher=False, of_linux=True)
    assert relative.judge(100, 25) == (True, "")
    assert relative.judge(500, 25) == (False, "4× over")
    assert relative.judge(500, None) == (None, "")
    assert at_least.text("MB/s") == "≥ 250 MB/s" and relative.text("µs") == "≤ 5× Linux"


def test_rows_carry_the_targets_of_issue_8() -> None:
    results = {
        "bulk": {
            "send": {"octets": 10**6, "seconds": 1.0, "mb_s": 1.0, "capped": False, "retransmissions": 0},
            "receive": {
                "octets": 10**6,
                "seconds": 0.1,
                "mb_s": 300.0,
                "capped": False,
                "retransmissions": 0,
            },
            "send_plain": {
                "octets": 10**6,
                "seconds": 0.1,
                "mb_s": 10.0,
                "capped": False,
                "retransmissions": 0,
            },
            "linux_send": {"mb_s": 900.0},
            "linux_receive": {"mb_s": 800.0},
        },
        "link": "fast",
        "latency": {
            "stack": {"round_trips": 10, "median_us": 100.0, "p99_us": 300.0},
            "linux": {"median_us": 25.0, "p99_us": 60.0},
        },
    }
    options = options_from(parser().parse_args(["--quick"]))
    rows = {row.measure: row for row in report.rows(results, options)}
    assert rows["stack → Linux (fast link)"].met is False
    assert rows["stack → Linux (fast link)"].shortfall == "250× short"
    assert rows["stack → Linux (plain link)"].ratio == "1.11% of Linux"
    assert rows["Linux → stack (TSO frames of up to 64 KB; fast link)"].met is True
    assert rows["round trip, median"].met is True and rows["round trip, median"].ratio == "4× Linux"
    assert rows["round trip, 99th percentile"].met is None
    assert "| stack → Linux (fast link) | 1 | 900.0 | MB/s |" in report.markdown(
        list(rows.values()), report.machine(), {"before": [0.1, 0.2, 0.3], "after": [0.1, 0.2, 0.3]}
    )


def test_record_replaces_only_the_block_between_its_markers(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    doc.write_text("intro\n")
    report.record(doc, "first")
    report.record(doc, "second")
    text = doc.read_text()
    assert text.startswith("intro\n") and "second" in text and "first" not in text
    doc.write_text(text + "\nafter the block\n")
    report.record(doc, "third")
    assert doc.read_text().endswith("after the block\n") and "third" in doc.read_text()


def test_sizes_and_options() -> None:
    assert size("200M") == 200_000_000 and size("64k") == 64_000 and size("1000") == 1000
    options = options_from(parser().parse_args(["--size", "10M", "--only", "bulk,latency"]))
    assert options["size"] == options["loss_size"] == 10_000_000
    assert options["only"] == ["bulk", "latency"]
    assert options["connections"] == 10_000 and options["idle_seconds"] == 60
    with pytest.raises(SystemExit):
        parser().parse_args(["--only", "bulk,nonsense"])


def test_the_peer_programs_run_without_the_stack() -> None:
    """bench.peer runs in Linux's namespaces with only the standard library and bench.pattern."""
    code = "import sys, bench.peer; sys.exit(0 if 'stack' not in sys.modules else 1)"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    assert subprocess.run([sys.executable, "-P", "-c", code], env=env, cwd="/").returncode == 0
