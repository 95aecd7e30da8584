"""`tcpsh setup`: prepare a real host for the stack, as DESIGN.md "The wire, on a real host" describes.

The stack needs an address of its own on an existing interface (so that the kernel answers ARP for it
and routes replies to it) and the firewall rule that keeps the kernel's TCP off that address. `setup`
makes both, `--persist` also writes a systemd unit that makes them again at boot, and `--undo` removes
all of it. Every change is printed as it is made; what is already in place is left as it is.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path

from stack import firewall, netns

UNIT_DIR = Path("/etc/systemd/system")


class SetupError(Exception):
    """One line saying what could not be done."""


@dataclass
class HostSetup:
    interface: str
    address: IPv4Interface
    netns: str | None = None  # None: this namespace (tests use one of their own)
    unit_dir: Path = UNIT_DIR
    say: Callable[[str], None] = print

    @property
    def unit_name(self) -> str:
        return f"tcpsh-{self.interface}-{str(self.address.ip).replace('.', '-')}.service"

    @property
    def rule_name(self) -> str:
        return firewall.host_rule_name(self.address.ip)

    def _index(self) -> int:
        with netns.iproute(self.netns) as ipr:
            found = ipr.link_lookup(ifname=self.interface)
        if not found:
            raise SetupError(f"no interface named {self.interface}")
        return int(found[0])

    def _has_address(self, index: int) -> bool:
        with netns.iproute(self.netns) as ipr:
            for msg in ipr.get_addr(index=index, family=2):
                if msg.get_attr("IFA_ADDRESS") == str(self.address.ip):
                    return True
        return False

    def apply(self, *, persist: bool = False) -> None:
        index = self._index()
        if self._has_address(index):
            self.say(f"address {self.address} is already on {self.interface}")
        else:
            with netns.iproute(self.netns) as ipr:
                ipr.addr(
                    "add", index=index, address=str(self.address.ip), prefixlen=self.address.network.prefixlen
                )
            self.say(f"added address {self.address} to {self.interface}")
        rule = firewall.install_rule(self.address.ip, netns=self.netns, name=self.rule_name)
        self.say(
            f"firewall ({rule.backend}): TCP to {self.address.ip} is dropped before the kernel's TCP "
            f"({rule.name})"
        )
        if persist:
            self._write_unit()

    def undo(self) -> None:
        self._remove_unit()
        if firewall.remove_rule(self.rule_name, self.netns):
            self.say(f"removed firewall rule {self.rule_name}")
        else:
            self.say(f"no firewall rule {self.rule_name} to remove")
        index = self._index()
        if self._has_address(index):
            with netns.iproute(self.netns) as ipr:
                ipr.addr(
                    "del", index=index, address=str(self.address.ip), prefixlen=self.address.network.prefixlen
                )
            self.say(f"removed address {self.address} from {self.interface}")
        else:
            self.say(f"address {self.address} is not on {self.interface}")

    def unit_text(self) -> str:
        exe = shutil.which("tcpsh") or f"{sys.executable} -m tcpsh"
        args = f"setup --interface {self.interface} --address {self.address}"
        return (
            "[Unit]\n"
            f"Description=tcpsh: address {self.address} on {self.interface}, the kernel's TCP kept off it\n"
            "After=network-online.target\n"
            "Wants=network-online.target\n\n"
            "[Service]\n"
            "Type=oneshot\n"
            "RemainAfterExit=yes\n"
            f"ExecStart={exe} {args}\n"
            f"ExecStop={exe} {args} --undo\n\n"
            "[Install]\n"
            "WantedBy=multi-user.target\n"
        )

    def _systemd_running(self) -> bool:
        return (
            self.unit_dir == UNIT_DIR
            and Path("/run/systemd/system").is_dir()
            and bool(shutil.which("systemctl"))
        )

    def _write_unit(self) -> None:
        path = self.unit_dir / self.unit_name
        try:
            path.write_text(self.unit_text())
        except OSError as e:
            raise SetupError(f"cannot write {path}: {e.strerror}") from None
        self.say(f"wrote {path}")
        if self._systemd_running():
            subprocess.run(["systemctl", "daemon-reload"], check=False)
            subprocess.run(["systemctl", "enable", self.unit_name], check=False, capture_output=True)
            self.say(f"enabled {self.unit_name}: the address and the rule come back at boot")
        else:
            self.say(f"systemd is not running here: enable it later with 'systemctl enable {self.unit_name}'")

    def _remove_unit(self) -> None:
        path = self.unit_dir / self.unit_name
        if not path.exists():
            return
        if self._systemd_running():
            subprocess.run(["systemctl", "disable", self.unit_name], check=False, capture_output=True)
        path.unlink()
        self.say(f"removed {path}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tcpsh setup",
        description="Give the stack a dedicated address on a real interface; keep the kernel's TCP off it.",
    )
    p.add_argument("--interface", required=True, metavar="IF", help="an existing interface")
    p.add_argument("--address", required=True, metavar="ADDR/PREFIX", help="the stack's own address")
    p.add_argument(
        "--persist", action="store_true", help="also write a systemd unit that restores both at boot"
    )
    p.add_argument("--undo", action="store_true", help="remove the address, the rule and the unit")
    p.add_argument(
        "--unit-dir", type=Path, default=UNIT_DIR, help=f"where the unit goes (default {UNIT_DIR})"
    )
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if "/" not in args.address:
            raise SetupError(f"--address needs a prefix length, for example {args.address}/24")
        try:
            address = IPv4Interface(args.address)
        except ValueError:
            raise SetupError(f"{args.address!r} is not an IPv4 address with a prefix length") from None
        host = HostSetup(args.interface, address, unit_dir=args.unit_dir)
        if args.undo:
            host.undo()
        else:
            host.apply(persist=args.persist)
    except (SetupError, firewall.FirewallError, netns.NetnsError) as e:
        print(f"tcpsh setup: {e}", file=sys.stderr)
        return 1
    return 0
