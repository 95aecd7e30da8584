"""Fixtures for the interop tests: a lab (stack.lab.Lab) shared by the session, and helpers.

Every test here is marked `root`. Without root, or where network namespaces cannot be built, the
tests skip with the reason outside CI and FAIL in CI (CI=true): a skipped interop test there would
be a hidden failure (the suite-wide rule in tests/conftest.py says the same for every skip).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest

from stack.firewall import FirewallError
from stack.lab import Lab, LabUnavailable

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def cannot_run(reason: str) -> None:
    """Fail in CI, skip elsewhere, saying why."""
    if IN_CI:
        pytest.fail(f"interop test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_root() -> None:
    if os.geteuid() != 0:
        cannot_run("the interop tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN) to build network namespaces")


def make_lab(**kwargs: object) -> Lab:
    """A Lab, or the test is failed (CI) or skipped (elsewhere) when this machine cannot build one."""
    require_root()
    try:
        return Lab(**kwargs)  # type: ignore[arg-type]
    except LabUnavailable as exc:
        cannot_run(str(exc))
    except FirewallError as exc:
        if "not found" in str(exc) or "not installed" in str(exc):
            cannot_run(str(exc))
        raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """One lab for the whole session; tests must leave it as they found it."""
    the_lab = make_lab()
    try:
        yield the_lab
    finally:
        the_lab.close()


@pytest.fixture
def fresh_lab() -> Iterator[Lab]:
    """A lab of the test's own, for tests that change or remove it."""
    the_lab = make_lab()
    try:
        yield the_lab
    finally:
        the_lab.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll a real condition until it holds, failing after `timeout` seconds (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)
