"""Per-connection and default settings from the shell: `open --cc`, `set ID NAME VALUE`, `set default`,
byte sizes, and `tcpsh --cc/--set`; every bad value is one clear line and changes nothing."""

from __future__ import annotations

import argparse
from ipaddress import IPv4Address

import pytest

from stack.runtime import StackError
from stack.tcp import TcbConfig
from stack.tcp.config import parse_size
from tcpsh.cli import build_parser, tcp_defaults
from tcpsh.commands import CommandError, parse_line
from tests.unit.test_impair_command import Shell


def test_open_takes_a_congestion_control_by_name():
    p = parse_line("open 198.18.0.2:7 --cc cubic")
    assert p is not None and p.values["cc"] == "cubic"
    with pytest.raises(CommandError, match="unknown congestion control 'bbr'; known: reno, cubic"):
        parse_line("open 198.18.0.2:7 --cc bbr")


SIZES = [("65536", 65536), ("64k", 1 << 16), ("4M", 4 << 20), ("1.5k", 1536)]


@pytest.mark.parametrize(("text", "size"), SIZES)
def test_sizes(text, size):
    assert parse_size(text) == size


def test_buffers_are_settable_with_sizes_and_bounded():
    cfg = TcbConfig()
    cfg.set("rcv-buf", "4M")
    cfg.set("snd-buf", "256k")
    assert (cfg.rcv_buf, cfg.snd_buf) == (4 << 20, 256 << 10)
    assert cfg.describe()["rcv-buf"] == str(4 << 20)
    with pytest.raises(ValueError, match="rcv-buf takes a number of bytes"):
        cfg.set("rcv-buf", "lots")
    with pytest.raises(ValueError, match="from 536 bytes to 1024M"):
        cfg.set("rcv-buf", "2G")
    assert cfg.rcv_buf == 4 << 20


def test_what_the_syn_negotiates_changes_only_as_a_default():
    cfg = TcbConfig()
    with pytest.raises(ValueError, match="sack is negotiated at OPEN: change it with 'set default sack on'"):
        cfg.set("sack", "on")
    cfg.set("sack", "on", at_open=True)
    assert cfg.sack and cfg.describe(at_open=True)["sack"] == "on"


def test_set_default_changes_what_new_connections_start_with(sh: Shell):
    assert sh.run("set default cc cubic") == ["default cc cubic"]
    assert sh.stack.config.cc == "cubic"
    assert "default sack on" in sh.run("set default")
    with pytest.raises(StackError, match=r"^default: sack is on or off, not 'maybe'$"):
        sh.run("set default sack maybe")
    names = ", ".join(TcbConfig().describe(at_open=True))
    with pytest.raises(CommandError, match=rf"^set: NAME is one of {names}, not 'window-size'$"):
        sh.run("set default window-size 3")
    assert sh.stack.config.sack and sh.stack.config.cc == "cubic"


def test_open_config_carries_nodelay_and_cc_over_the_defaults(sh: Shell):
    p = parse_line("open 198.18.0.2:7 --cc cubic --nodelay")
    assert p is not None
    cfg = sh.session._open_config(p.values)
    assert cfg is not None and (cfg.cc, cfg.nagle, cfg.sack) == ("cubic", False, True)
    assert sh.session._open_config({}) is None  # the stack's defaults as they are


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_command_line_defaults_are_checked_before_anything_starts():
    assert tcp_defaults(args("--cc", "cubic", "--set", "rcv-buf=4M")) == [("cc", "cubic"), ("rcv-buf", "4M")]
    assert tcp_defaults(args("--set", "rcv-buf")) == "--set takes NAME=VALUE, not 'rcv-buf'"
    assert tcp_defaults(args("--cc", "vegas")) == "unknown congestion control 'vegas'; known: reno, cubic"


def test_open_takes_a_local_address_and_a_source_route():
    p = parse_line("open 198.18.0.2:7 --local 198.18.0.1 --source-route 198.18.9.1,198.18.8.1")
    assert p is not None
    assert p.values["local"] == IPv4Address("198.18.0.1")
    assert p.values["source_route"] == (IPv4Address("198.18.9.1"), IPv4Address("198.18.8.1"))
    with pytest.raises(CommandError, match=r"'198\.18\.9' is not an IPv4 address"):
        parse_line("open 198.18.0.2:7 --source-route 198.18.9")
    with pytest.raises(CommandError, match="a source route is 1 to 8 addresses"):
        parse_line("open 198.18.0.2:7 --source-route " + ",".join(f"198.18.9.{k}" for k in range(9)))
