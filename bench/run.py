"""`python -m bench`: build the labs, measure, print the table, write the files.

The order is chosen for the measurements' sake: scale first, while the process's heap is fresh (the
memory a connection adds is read from the resident set, which memory freed by earlier phases would
hide), then latency, clean bulk transfers, bulk transfers through loss, connection rates (whose
passive side leaves thousands of connections in TIME-WAIT for a minute), and last the profile, on
a stack of its own started under the profiler.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import labs as labs_mod
from bench import measure, report
from bench.profile import CLOCKS, ThreadProfiles, top, waits, write
from stack.lab import LabError, LabUnavailable
from stack.link.impair import ImpairedLink
from stack.link.packet import PacketLink
from stack.link.raw import RawLink
from stack.runtime import Stack, heap_frozen
from stack.tcp import State, TcbConfig

SECTIONS = ("scale", "latency", "bulk", "loss", "rate", "profile")

FULL = {
    "size": 200_000_000,
    "loss_size": 200_000_000,
    "loss": 2.0,
    "max_seconds": 60.0,
    "rate_seconds": 10.0,
    "round_trips": 2000,
    "connections": 10_000,
    "idle_seconds": 60.0,
    "active": 1000,
    "rounds": 10,
    "batch": 500,
    "profile_size": 20_000_000,
    "profile_clock": "cpu",
    "link": "fast",
}
QUICK = {
    "size": 4_000_000,
    "loss_size": 2_000_000,
    "loss": 2.0,
    "max_seconds": 20.0,
    "rate_seconds": 1.0,
    "round_trips": 200,
    "connections": 200,
    "idle_seconds": 2.0,
    "active": 50,
    "rounds": 3,
    "batch": 100,
    "profile_size": 1_000_000,
    "profile_clock": "cpu",
    "link": "fast",
}
LINKS = ("fast", "plain")

ROOT = Path(__file__).resolve().parent.parent


def size(text: str) -> int:
    """200M, 1.5G, 64k, 1000000: octets (k, M, G are powers of 1000, as MB/s is)."""
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(text[-1:].lower(), 1)
    try:
        value = float(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size such as 200M or 64k, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("a size must be more than zero")
    return int(value)


def sections(text: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown section {', '.join(unknown)}; sections: {', '.join(SECTIONS)}"
        )
    return chosen


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="tcpsh's benchmark: the user-space stack beside Linux's TCP, in labs of its own (root).",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes and durations: a smoke run of seconds")
    p.add_argument(
        "--only",
        type=sections,
        default=list(SECTIONS),
        metavar="LIST",
        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})",
    )
    p.add_argument("--size", type=size, help="octets of each clean bulk transfer (default 200M)")
    p.add_argument("--loss-size", type=size, help="octets of each transfer through loss (default 200M)")
    p.add_argument("--loss", type=float, help="percent of packets dropped each way (default 2)")
    p.add_argument("--max-seconds", type=float, help="a sender stops after this long (default 60)")
    p.add_argument("--rate-seconds", type=float, help="length of each connection-rate run (default 10)")
    p.add_argument("--round-trips", type=int, help="echo round trips timed (default 2000)")
    p.add_argument("--connections", type=int, help="connections of the scale test (default 10000)")
    p.add_argument("--idle-seconds", type=float, help="how long they are held idle (default 60)")
    p.add_argument("--active", type=int, help="how many are then active at once (default 1000)")
    p.add_argument("--rounds", type=int, help="echo rounds of the active ones (default 10)")
    p.add_argument("--batch", type=int, help="connections opened before waiting for them (default 500)")
    p.add_argument("--profile-size", type=size, help="octets of each profiled transfer (default 20M)")
    p.add_argument(
        "--profile-clock",
        choices=CLOCKS,
        help="cpu: each thread's CPU time (default); wall: also where threads wait (bench/profile.py)",
    )
    p.add_argument(
        "--link",
        choices=LINKS,
        help="the stack's link, as tcpsh --link: fast (PacketLink, the kernel cuts the stack's 64 KB "
        "segments; default) or plain (RawLink, one datagram a segment); the bulk section also moves "
        "its two transfers on the other one",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a stack default, as tcpsh --set (rcv-buf=4M, cc=cubic, rto-min=0.2); repeatable",
    )
    p.add_argument(
        "--out", type=Path, default=ROOT / "build", help="directory for the files (default build/)"
    )
    p.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="also write the table into FILE between its markers (make bench: docs/benchmarks.md)",
    )
    return p


def options_from(args: argparse.Namespace) -> dict[str, Any]:
    options = dict(QUICK if args.quick else FULL)
    for name in options:
        value = getattr(args, name, None)
        if value is not None:
            options[name] = value
    if args.size is not None and args.loss_size is None:
        options["loss_size"] = args.size
    options["only"] = args.only
    options["set"] = args.set
    options["quick"] = args.quick
    return options


def stack_config(mtu: int, settings: Sequence[str]) -> TcbConfig:
    config = TcbConfig.full(mtu=mtu)
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"bench: --set takes NAME=VALUE, not {item!r}")
        try:
            config.set(name, value, at_open=True)
        except ValueError as e:
            raise SystemExit(f"bench: --set {item}: {e}") from None
    return config


def start_stack(lab: Any, settings: Sequence[str], link: str = "fast") -> Stack:
    """The stack on the lab as `tcpsh --lab --link LINK` builds it: PacketLink with GRO on the stack's
    veth (fast) or RawLink (plain) in the stack's namespace, wrapped in the (pass-through) impairment
    layer, the defaults of TcbConfig.full() and any --set."""
    ns = lab.enter_stack_ns()
    if link == "fast":
        inner: RawLink = PacketLink(lab.stack_if, lab.stack_addr, namespace=ns, gro=True)
    else:
        inner = RawLink(lab.stack_if, lab.stack_addr, namespace=ns)
    wrapped = ImpairedLink(inner)
    return Stack(wrapped, config=stack_config(wrapped.mtu, settings)).start()


def stop_stack(stack: Stack) -> None:
    """Abort what is still open (the peers are going), then stop the threads and close the link."""
    try:
        for cid, st in stack.connections():
            if st.state not in (State.CLOSED, State.TIME_WAIT):
                with contextlib.suppress(Exception):
                    stack.abort(cid)
    finally:
        stack.stop()


def run(options: dict[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
    only = options["only"]
    results: dict[str, Any] = {}
    out: Path = options["out"]
    with labs_mod.build() as labs:
        say(
            f"labs: {labs.stack.tag} (stack {labs.stack.stack_addr}, Linux {labs.stack.kernel_addr}), "
            f"{labs.linux.tag} (Linux {labs.linux.stack_addr} and {labs.linux.kernel_addr})"
        )
        stack = start_stack(labs.stack, options["set"], options["link"])
        results["stack_config"] = stack.defaults()
        results["link"] = options["link"]
        try:
            if "scale" in only:
                say(
                    f"scale: {options['connections']:,} connections, idle {options['idle_seconds']:g} s, "
                    f"then {options['active']:,} active"
                )
                others = measure.OtherLoad()
                results["scale"] = measure.stack_scale(
                    stack,
                    labs.stack,
                    options["connections"],
                    options["idle_seconds"],
                    options["active"],
                    options["rounds"],
                    options["batch"],
                )
                s = results["scale"]
                s["others_cores"] = others.cores()
                say(f"  {s['bytes_per_conn'] / 1e3:.1f} KB each, idle CPU {s['idle_cpu_percent']:.2f}%")
            if "latency" in only:
                say(f"latency: {options['round_trips']:,} one-octet round trips")
                others = measure.OtherLoad()
                results["latency"] = measure.latency(stack, labs, options["round_trips"])
                results["latency"]["others_cores"] = others.cores()
                say(
                    f"  median {results['latency']['stack']['median_us']:.0f} µs, "
                    f"Linux {results['latency']['linux']['median_us']:.0f} µs"
                )
            if "bulk" in only:
                say(f"bulk, {options['size'] / 1e6:g} MB each:")
                others = measure.OtherLoad()
                results["bulk"] = bulk(stack, labs, options["size"], options["max_seconds"], say)
                # The stack's two transfers on the other link, on a stack of its own (two stacks on one
                # address would answer each other's segments with resets).
                other = next(kind for kind in LINKS if kind != options["link"])
                stop_stack(stack)
                alt = start_stack(labs.stack, options["set"], other)
                try:
                    for key, what, fn in (("send", "stack → Linux", measure.stack_send),
                                          ("receive", "Linux → stack", measure.stack_receive)):
                        r = results["bulk"][f"{key}_{other}"] = fn(alt, labs.stack, options["size"],
                                                                   options["max_seconds"])
                        say(f"  {what}, {other} link: {r['octets'] / 1e6:g} MB, {r['mb_s']:.1f} MB/s")
                finally:
                    stop_stack(alt)
                stack = start_stack(labs.stack, options["set"], options["link"])
                results["bulk"]["others_cores"] = others.cores()
            if "loss" in only:
                say(
                    f"bulk through {options['loss']:g}% loss each way, "
                    f"{options['loss_size'] / 1e6:g} MB each:"
                )
                others = measure.OtherLoad()
                results["loss"] = bulk(
                    stack, labs, options["loss_size"], options["max_seconds"], say, loss=options["loss"]
                )
                results["loss"]["others_cores"] = others.cores()
            if "rate" in only:
                seconds = options["rate_seconds"]
                say(f"connection rate: {seconds:g} s each way, and Linux ↔ Linux")
                others = measure.OtherLoad()
                results["rate"] = {
                    "connect": measure.stack_connect_rate(stack, labs.stack, seconds),
                    "accept": measure.stack_accept_rate(stack, labs.stack, seconds),
                    "linux": measure.linux_connect_rate(labs, seconds),
                    "others_cores": others.cores(),
                }
                r = results["rate"]
                say(
                    f"  {r['connect']['per_s']:.0f}/s and {r['accept']['per_s']:.0f}/s, "
                    f"Linux {r['linux']['per_s']:.0f}/s"
                )
        finally:
            stop_stack(stack)
        if "profile" in only:
            results["profile"] = profile(labs, options, out, say)
    return results


def bulk(
    stack: Stack,
    labs: labs_mod.Labs,
    n: int,
    max_seconds: float,
    say: Callable[[str], None],
    loss: float | None = None,
) -> dict[str, Any]:
    """The four transfers: the stack each way, and Linux alone each way in the reference lab; with
    `loss`, each through its own random-loss rules, whose counters are kept with it."""
    out = {}
    transfers: list[tuple[str, str, Any, Callable[[], dict[str, Any]]]] = [
        ("send", "stack → Linux", labs.stack, lambda: measure.stack_send(stack, labs.stack, n, max_seconds)),
        ("linux_send", "Linux → Linux", labs.linux, lambda: measure.linux_bulk(labs, n, max_seconds)),
        (
            "receive",
            "Linux → stack",
            labs.stack,
            lambda: measure.stack_receive(stack, labs.stack, n, max_seconds),
        ),
        (
            "linux_receive",
            "Linux → Linux, read by the client",
            labs.linux,
            lambda: measure.linux_bulk_download(labs, n, max_seconds),
        ),
    ]
    if loss is None:
        # Linux → stack again with every frame one segment of at most 1500 octets (TSO off): the
        # transfer above gets Linux's TSO frames of up to 64 KB whole, as veth passes them.
        transfers += [
            (f"{key}_mtu", f"{what}, TSO off", lab, fn)
            for key, what, lab, fn in transfers
            if "receive" in key
        ]
    for key, what, lab, fn in transfers:
        if loss is not None:
            with labs_mod.random_loss(lab, loss) as dropped:
                out[key] = fn()
            out[key]["dropped"] = dropped
        elif key.endswith("_mtu"):
            # Frames of one segment on the wire, joined by the receiving end as a NIC's GRO joins them,
            # in both labs alike.
            with labs_mod.segments_of_mtu(lab), labs_mod.receive_offload(lab, True):
                out[key] = fn()
        else:
            out[key] = fn()
        r = out[key]
        say(
            f"  {what}: {r['octets'] / 1e6:g} MB, {r['mb_s']:.1f} MB/s"
            + (" (time cap)" if r["capped"] else "")
        )
    return out


PROFILED = (
    ("send", "stack → Linux"),
    ("receive", "Linux → stack, Linux's TSO frames"),
    ("receive_mtu", "Linux → stack, TSO off (frames of 1500 octets)"),
)


def profile(
    labs: labs_mod.Labs, options: dict[str, Any], out: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """Each bulk direction again (the receiving one with and without TSO frames), each on a stack of
    its own started under the profiler (bench.profile)."""
    n = options["profile_size"]
    clock = options["profile_clock"]
    result: dict[str, Any] = {"octets": n, "clock": clock, "files": {}}
    for key, what in PROFILED:
        say(f"profile: {what}, {n / 1e6:g} MB under cProfile ({clock} clock)")
        fn = measure.stack_send if key == "send" else measure.stack_receive
        mtu = key.endswith("_mtu")
        frames = labs_mod.segments_of_mtu(labs.stack) if mtu else contextlib.nullcontext()
        joined = labs_mod.receive_offload(labs.stack, True) if mtu else contextlib.nullcontext()
        with frames, joined, ThreadProfiles(clock) as profiles:
            stack = start_stack(labs.stack, options["set"], options["link"])
            try:
                with profiles.caller():
                    moved = fn(stack, labs.stack, n, options["max_seconds"])
            finally:
                stop_stack(stack)
        cpu = {name: sec for name, sec in moved["cpu_seconds_by_thread"].items() if sec >= 0.01}
        stats = profiles.stats()
        prof_path, text_path = out / f"bench-profile-{key}.prof", out / f"bench-profile-{key}.txt"
        header = (
            f"Profile (cProfile, {clock} clock, every thread of the stack merged) of a {what} transfer "
            f"of {moved['octets'] / 1e6:g} MB, {moved['mb_s']:.1f} MB/s under the profiler.\n"
            f"CPU seconds per thread (from /proc): {', '.join(f'{k} {v:.2f}' for k, v in cpu.items())}\n"
            f"Seconds in waits (select, locks, sleeps): {waits(stats):.2f}."
        )
        write(stats, prof_path, text_path, header)
        result["files"][key] = [str(prof_path), str(text_path)]
        result[key] = {
            "what": what,
            "mb_s_under_profiler": moved["mb_s"],
            "cpu_seconds_by_thread": cpu,
            "wait_seconds": round(waits(stats), 3),
            "top_tottime": top(stats, str(ROOT), 25, "tottime"),
            "top_cumtime": top(stats, str(ROOT), 25, "cumtime"),
        }
    return result


def profile_markdown(p: dict[str, Any], lines_each: int = 12) -> str:
    lines = []
    for key, _ in PROFILED:
        if key not in p:
            continue
        d = p[key]
        threads = ", ".join(f"{name} {sec:.2f} s" for name, sec in d["cpu_seconds_by_thread"].items())
        lines += [
            f"Profile of {d['what']} ({p['clock']} clock): {p['octets'] / 1e6:g} MB at "
            f"{d['mb_s_under_profiler']:.1f} MB/s under the profiler; CPU used: {threads}. "
            f"The {lines_each} functions with the most own time, waits left out:",
            "",
            "| function | calls | own s | with callees s | % of the own time |",
            "|---|--:|--:|--:|--:|",
        ]
        for e in d["top_tottime"][:lines_each]:
            name = e["function"].replace("|", "\\|")
            lines.append(
                f"| `{name}` | {e['calls']:,} | {e['tottime']:.2f} | {e['cumtime']:.2f} "
                f"| {e['percent']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    options = options_from(args)
    options["out"] = args.out
    # A table of this width reads well; a pipe or a file gets it whole rather than folded to 80.
    console = Console() if sys.stdout.isatty() else Console(width=150)
    err = Console(stderr=True, highlight=False)

    def say(text: str) -> None:
        err.print(f"[dim]bench:[/dim] {text}")

    if os.geteuid() != 0:
        err.print("bench: needs root to build its labs (network namespaces, raw sockets): sudo make bench")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    machine = report.machine()
    load = {"before": list(os.getloadavg())}
    say(f"{report.describe_machine(machine)}; load {report._load(load['before'])}")
    started = time.monotonic()
    try:
        with heap_frozen():  # as tcpsh runs its stack
            results = run(options, say)
    except (LabUnavailable, LabError, labs_mod.BenchError) as e:
        err.print(f"bench: {e}")
        return 1
    except KeyboardInterrupt:
        err.print("bench: interrupted; the labs are removed")
        return 130
    load["after"] = list(os.getloadavg())
    elapsed = time.monotonic() - started

    all_rows = report.rows(results, options)
    title = f"tcpsh benchmark, {machine['date']}: {report.describe_machine(machine)}"
    report.print_table(console, all_rows, title)

    json_path = args.out / "bench.json"
    md_path = args.out / "bench.md"
    document = {
        "machine": machine,
        "load": load,
        "seconds": round(elapsed, 1),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()},
        "rows": [row.to_json() for row in all_rows],
        "results": results,
    }
    json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    extra = profile_markdown(results["profile"]) if "profile" in results else ""
    text = report.markdown(all_rows, machine, load, extra)
    md_path.write_text(text)
    files = [json_path, md_path]
    if "profile" in results:
        files += [Path(f) for pair in results["profile"]["files"].values() for f in pair]
    say(f"{elapsed:.0f} s; written: " + ", ".join(_rel(f) for f in files))
    if args.record:
        report.record(args.record, text)
        say(f"recorded in {_rel(args.record)}")
    return 0


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
