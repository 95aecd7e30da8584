"""Fixtures the unit tests share: a started Stack over a fake link, and a shell over an unstarted one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stack.runtime import Stack
from stack.tcp import TcbConfig
from tests.unit.test_impair_command import Shell
from tests.unit.test_ip_input import FakeLink


@pytest.fixture
def link() -> FakeLink:
    return FakeLink()


def started(link: FakeLink, config: TcbConfig) -> Iterator[Stack]:
    """A started Stack over `link`, stopped afterwards; no thread may report an error."""
    s = Stack(link, config=config).start()
    try:
        yield s
    finally:
        s.stop()
    assert not s.errors, s.errors


@pytest.fixture
def stack(link: FakeLink) -> Iterator[Stack]:
    """A started Stack with the RFC 9293 baseline over `link`."""
    yield from started(link, TcbConfig())


@pytest.fixture
def sh() -> Iterator[Shell]:
    shell = Shell()
    yield shell
    shell.close()
