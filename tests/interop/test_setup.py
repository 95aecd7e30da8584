"""`tcpsh setup`: the dedicated address, the firewall rule and the boot unit, made and undone inside a
network namespace the test creates (never on the machine's real interfaces)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from stack import firewall, netns
from tcpsh.setup import HostSetup

pytestmark = pytest.mark.root

ADDR = IPv4Interface("198.18.7.10/24")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"tcpsh-{os.getpid()}-setup"
    netns.create(name)
    try:
        with netns.iproute(name) as ipr:
            # A veth pair stands in for a real interface (this kernel may lack the dummy driver).
            ipr.link("add", ifname="tsdummy0", kind="veth", peer="tsdummy1")
            idx = ipr.link_lookup(ifname="tsdummy0")[0]
            ipr.link("set", index=idx, state="up")
        yield name
    finally:
        netns.remove(name)


def addresses(ns: str) -> list[str]:
    with netns.iproute(ns) as ipr:
        idx = ipr.link_lookup(ifname="tsdummy0")[0]
        return [f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}" for m in ipr.get_addr(index=idx, family=2)]


def test_setup_adds_address_and_rule_and_undo_removes_them(ns: str, tmp_path: Path) -> None:
    said: list[str] = []
    host = HostSetup("tsdummy0", ADDR, netns=ns, unit_dir=tmp_path, say=said.append)
    host.apply(persist=True)
    assert addresses(ns) == [str(ADDR)]
    assert firewall.host_rule_name(ADDR.ip) in firewall.list_rules(ns)
    unit = (tmp_path / host.unit_name).read_text()
    assert "ExecStart=" in unit and f"setup --interface tsdummy0 --address {ADDR}" in unit
    assert "--undo" in unit.split("ExecStop=")[1]
    assert any("added address" in line for line in said)
    assert any("firewall" in line for line in said)
    assert any("wrote" in line for line in said)

    # A second run changes nothing and says so.
    said.clear()
    host.apply()
    assert addresses(ns) == [str(ADDR)]
    assert any("already on" in line for line in said)

    # The rule is not taken for a dead run's leftover.
    assert firewall.remove_stale(ns) == []

    said.clear()
    host.undo()
    assert addresses(ns) == []
    assert firewall.host_rule_name(ADDR.ip) not in firewall.list_rules(ns)
    assert not (tmp_path / host.unit_name).exists()
    assert len(said) == 3


def test_setup_command_line(ns: str, tmp_path: Path) -> None:
    def tcpsh(*args: str) -> subprocess.CompletedProcess[bytes]:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = netns.popen(
            ns,
            [sys.executable, "-m", "tcpsh", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    done = tcpsh(
        "setup", "--interface", "tsdummy0", "--address", str(ADDR), "--persist", "--unit-dir", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    assert b"added address 198.18.7.10/24 to tsdummy0" in done.stdout
    assert addresses(ns) == [str(ADDR)]
    undone = tcpsh(
        "setup", "--interface", "tsdummy0", "--address", str(ADDR), "--undo", "--unit-dir", str(tmp_path)
    )
    assert undone.returncode == 0, undone.stderr
    assert addresses(ns) == []
    assert list(tmp_path.iterdir()) == []

    missing = tcpsh("setup", "--interface", "nosuchif0", "--address", str(ADDR))
    assert missing.returncode == 1
    assert missing.stderr.strip() == b"tcpsh setup: no interface named nosuchif0"
    no_prefix = tcpsh("setup", "--interface", "tsdummy0", "--address", "198.18.7.10")
    assert no_prefix.returncode == 1 and b"needs a prefix length" in no_prefix.stderr
