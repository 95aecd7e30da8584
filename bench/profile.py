"""A CPU profile of the stack's bulk transfers, every thread of it.

cProfile is the standard library's, so the benchmark needs no extra dependency (pyinstrument, a
sampling profiler, would disturb the stack less, but it samples only the thread that starts it).
cProfile too follows only the thread that enables it, and the stack's work is spread over three:
the caller's (SEND queues data and sends what the window allows at once), the receive thread
(parsing, ACKs, delivery; in a bulk send most segments go out from here, as ACKs open the window)
and the timer thread. So each thread started while `ThreadProfiles` is active enables a profiler of
its own on its first event (threading.setprofile), the calling thread gets one for the transfer
itself (`caller()`), and the results are merged.

Two clocks (`--profile-clock`):
- "cpu" (the default): time.thread_time, each thread's own CPU time, so a function is charged only
  for the processor it used. Waiting for the GIL, for the pool lock or in select() costs nothing,
  which is what "where the CPU goes" asks. The price: every call reads the clock by a system call,
  so the stack runs four to five times slower under it (sending 10 MB: 1.2 MB/s, against 5.4
  unprofiled), and functions called very often carry more of the profiler's own cost.
- "wall": cProfile's own clock, read cheaply (3.6 MB/s in the same transfer). Time a thread spends
  blocked shows up where it blocks: in select(), in lock and condition waits (WAITS, left out of
  `top`), but also in the calls that release the GIL (recvmsg, sendto), whose time includes getting
  the GIL back, and in the functions that take a lock with `with` (the acquisition is not a call
  cProfile sees), such as the receive and timer loops waiting for the pool lock. This is the view of
  the contention between the threads.
The CPU time each thread used is read from /proc beside either.

The profiler slows the stack down (every Python call is counted), so the profiled transfers are run
apart from the timed ones and their speed is not reported as the stack's.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import pstats
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CLOCKS = ("cpu", "wall")


class ThreadProfiles:
    """Profile every thread started while active (the Stack's threads), and the calling thread
    within `caller()`."""

    def __init__(self, clock: str = "cpu") -> None:
        if clock not in CLOCKS:
            raise ValueError(f"the profile's clock is one of {', '.join(CLOCKS)}, not {clock!r}")
        self.clock = clock
        self._lock = threading.Lock()
        self.profiles: dict[str, cProfile.Profile] = {}

    def _new(self, name: str) -> cProfile.Profile:
        profile = cProfile.Profile(time.thread_time) if self.clock == "cpu" else cProfile.Profile()
        with self._lock:
            self.profiles[f"{name} ({len(self.profiles)})" if name in self.profiles else name] = profile
        return profile

    def _first_event(self, frame: Any, event: str, arg: Any) -> None:
        # Runs once in each new thread: the thread's own profiler replaces this hook.
        self._new(threading.current_thread().name).enable()

    def __enter__(self) -> ThreadProfiles:
        threading.setprofile(self._first_event)
        return self

    def __exit__(self, *exc: object) -> None:
        threading.setprofile(None)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def caller(self) -> Iterator[None]:
        """Profile the calling thread too, for the body only (the measured transfer, without the
        stack's start and stop around it)."""
        profile = self._new(threading.current_thread().name)
        profile.enable()
        try:
            yield
        finally:
            profile.disable()

    def stats(self) -> pstats.Stats:
        """Every thread's profile merged (call once the profiled threads have ended)."""
        merged: pstats.Stats | None = None
        for profile in self.profiles.values():
            profile.create_stats()
            if not profile.stats:  # type: ignore[attr-defined]
                continue
            if merged is None:
                merged = pstats.Stats(profile)
            else:
                merged.add(profile)
        if merged is None:
            raise RuntimeError("nothing was profiled")
        return merged


# Where a thread waits rather than works: select() on the link and the peers' pipes, lock and
# condition waits (the pool lock's contention among them), sleeps.
WAITS = (
    "<built-in method select.select>",
    "<method 'acquire' of '_thread.lock' objects>",
    "<method 'acquire' of '_thread.RLock' objects>",
    "<built-in method time.sleep>",
    "<method 'poll' of 'select.epoll' objects>",
)


def _where(func: tuple[str, int, str], root: str) -> str:
    filename, line, name = func
    if filename == "~":
        return name  # a built-in: "<method 'recvmsg' of '_socket.socket' objects>"
    filename = filename[len(root) :].lstrip("/") if filename.startswith(root) else Path(filename).name
    return f"{filename}:{line}({name})"


def waits(stats: pstats.Stats) -> float:
    """Seconds the profiled threads spent in WAITS."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    return sum(v[2] for func, v in raw.items() if func[0] == "~" and func[2] in WAITS)


def top(stats: pstats.Stats, root: str, n: int = 15, key: str = "tottime") -> list[dict[str, Any]]:
    """The `n` functions with the most own time (`tottime`) or time including callees (`cumtime`),
    waits left out; `percent` is of the threads' busy time (all own time less the waits)."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    busy = (sum(v[2] for v in raw.values()) - waits(stats)) or 1.0
    index = 2 if key == "tottime" else 3
    working = [(f, v) for f, v in raw.items() if not (f[0] == "~" and f[2] in WAITS)]
    ordered = sorted(working, key=lambda item: item[1][index], reverse=True)[:n]
    return [
        {
            "function": _where(func, root),
            "calls": nc,
            "tottime": round(tt, 3),
            "cumtime": round(ct, 3),
            "percent": round(100 * (tt if key == "tottime" else ct) / busy, 1),
        }
        for func, (_cc, nc, tt, ct, _callers) in ordered
    ]


def write(stats: pstats.Stats, prof_path: Path, text_path: Path, header: str, lines: int = 40) -> None:
    """The profile as pstats data (`python -m pstats FILE`, snakeviz) and as text, both orders."""
    stats.dump_stats(str(prof_path))
    out = io.StringIO()
    out.write(header.rstrip() + "\n\n")
    for order in ("tottime", "cumulative"):
        what = "own" if order == "tottime" else "cumulative"
        out.write(f"==== the {lines} functions with the most {what} time (waits included)\n")
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats(order).print_stats(lines)
    text_path.write_text(out.getvalue())
