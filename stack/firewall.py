"""The firewall rule that keeps the kernel's TCP quiet on the stack's own address.

Implements DESIGN.md "The wire, on a real host": the stack receives through an AF_PACKET socket, which
sees each frame before netfilter, so a rule that drops TCP addressed to the stack's address in the
INPUT hook silences the kernel (no RST for connections it knows nothing of) while the stack still sees
every segment. ICMP and ARP for the address are left alone.

nftables is preferred: each rule lives in a table of its own named `tcpsh_<pid>_<n>`, so removing the
table removes everything and a table left by a dead process is recognisable by its name:

    table ip tcpsh_<pid>_<n> {
        chain input {
            type filter hook input priority filter; policy accept;
            ip daddr ADDR ip protocol tcp counter drop
        }
    }

Where only iptables exists, one rule in the INPUT chain carries the same name as its comment:

    iptables -w -I INPUT -d ADDR/32 -p tcp -m comment --comment tcpsh_<pid>_<n> -j DROP

When neither `nft` nor `iptables` is installed, FirewallError names what to install. There is no
maintained Python binding for either, so the commands are run directly (never through a shell, rulesets
on stdin), in the current network namespace or inside a named one (stack.netns.run).
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import threading
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Literal

from stack import netns as _netns

Backend = Literal["nft", "iptables"]

# tcpsh_<pid>_<n> for a run's rule; tcpsh_host_<a>_<b>_<c>_<d> for the lasting rule of `tcpsh setup`.
NAME_RE = re.compile(r"^tcpsh_(?:(\d+)_(\d+)|host_\d+_\d+_\d+_\d+)$")
INSTALL_HINT = "install nftables (apt-get install nftables) or iptables (apt-get install iptables)"

_counter = itertools.count()
_counter_lock = threading.Lock()


class FirewallError(RuntimeError):
    """A firewall command is missing or failed; the message names the command and what to do."""


def find_backend() -> Backend:
    """nftables when `nft` is installed, else iptables; FirewallError naming what to install otherwise."""
    if shutil.which("nft"):
        return "nft"
    if shutil.which("iptables"):
        return "iptables"
    raise FirewallError(f"neither nft nor iptables was found on PATH: {INSTALL_HINT}")


def new_name(pid: int | None = None) -> str:
    """A fresh rule name for this process: `tcpsh_<pid>_<n>`, n counting up from 0."""
    with _counter_lock:
        index = next(_counter)
    return f"tcpsh_{os.getpid() if pid is None else pid}_{index}"


def owner_pid(name: str) -> int | None:
    """The pid a rule or table name carries, or None when the name is not one of ours."""
    match = NAME_RE.match(name)
    return int(match.group(1)) if match and match.group(1) else None


def host_rule_name(address: IPv4Address) -> str:
    """The name of the lasting rule `tcpsh setup` installs for `address` (no pid: it outlives runs)."""
    return "tcpsh_host_" + str(address).replace(".", "_")


def _run(netns: str | None, argv: list[str], stdin: str | None = None) -> str:
    try:
        done = _netns.run(netns, argv, input=stdin.encode() if stdin is not None else None)
    except FileNotFoundError as exc:
        raise FirewallError(f"{argv[0]} is not installed: {INSTALL_HINT}") from exc
    if done.returncode != 0:
        where = f" in network namespace {netns}" if netns else ""
        message = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise FirewallError(f"`{shlex.join(argv)}`{where} failed: {message}")
    return done.stdout.decode(errors="replace")


def nft_ruleset(name: str, address: IPv4Address) -> str:
    """The nft script that (re)creates table `name` with the drop rule, atomically.

    `add table` + `delete table` first makes the script replace a table of the same name rather than
    append a second rule to it; nft applies the whole script as one transaction.
    """
    return (
        f"add table ip {name}\n"
        f"delete table ip {name}\n"
        f"table ip {name} {{\n"
        f"    chain input {{\n"
        f"        type filter hook input priority filter; policy accept;\n"
        f"        ip daddr {address} ip protocol tcp counter drop\n"
        f"    }}\n"
        f"}}\n"
    )


def iptables_rule(name: str, address: IPv4Address) -> list[str]:
    """The iptables rule specification (after the chain name) for rule `name`."""
    return ["-d", f"{address}/32", "-p", "tcp", "-m", "comment", "--comment", name, "-j", "DROP"]


def _iptables_lines(netns: str | None) -> list[str]:
    return _run(netns, ["iptables", "-w", "-S", "INPUT"]).splitlines()


def _iptables_delete(netns: str | None, name: str) -> bool:
    """Delete every INPUT rule whose comment is `name`; True if there was one."""
    removed = False
    for line in _iptables_lines(netns):
        words = shlex.split(line)
        if words[:2] == ["-A", "INPUT"] and name in words and "--comment" in words:
            if words[words.index("--comment") + 1] != name:
                continue
            _run(netns, ["iptables", "-w", "-D", *words[1:]])
            removed = True
    return removed


def _nft_tables(netns: str | None) -> list[str]:
    """Names of the `ip` family tables (`nft list tables` prints `table ip NAME` lines)."""
    tables: list[str] = []
    for line in _run(netns, ["nft", "list", "tables"]).splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "table" and words[1] == "ip":
            tables.append(words[2])
    return tables


def _nft_delete(netns: str | None, name: str) -> bool:
    present = name in _nft_tables(netns)
    # add + delete in one transaction: succeeds whether or not the table exists.
    _run(netns, ["nft", "-f", "-"], f"add table ip {name}\ndelete table ip {name}\n")
    return present


@dataclass
class FirewallRule:
    """The drop rule for one address (DESIGN.md "The wire, on a real host").

    Create it with `install_rule()`. `remove()` is idempotent. `netns` None means the current namespace.
    """

    address: IPv4Address
    name: str
    netns: str | None = None
    backend: Backend = field(default_factory=find_backend)
    installed: bool = False

    def __post_init__(self) -> None:
        self.address = IPv4Address(self.address)
        if not NAME_RE.match(self.name):
            raise ValueError(
                f"a firewall rule name is tcpsh_<pid>_<n> or tcpsh_host_<address>, not {self.name!r}"
            )

    def install(self) -> None:
        """Install (or replace) the rule."""
        if self.backend == "nft":
            _run(self.netns, ["nft", "-f", "-"], nft_ruleset(self.name, self.address))
        else:
            _iptables_delete(self.netns, self.name)
            _run(self.netns, ["iptables", "-w", "-I", "INPUT", "1", *iptables_rule(self.name, self.address)])
        self.installed = True

    def remove(self) -> bool:
        """Remove the rule; True if it was there. Removing twice is harmless."""
        if self.netns is not None and not _netns.exists(self.netns):
            self.installed = False
            return False  # the namespace, and every rule in it, is already gone
        if self.backend == "nft":
            removed = _nft_delete(self.netns, self.name)
        else:
            removed = _iptables_delete(self.netns, self.name)
        self.installed = False
        return removed

    def is_present(self) -> bool:
        """True when the rule is in the kernel's ruleset now."""
        if self.netns is not None and not _netns.exists(self.netns):
            return False
        if self.backend == "nft":
            return self.name in _nft_tables(self.netns)
        return any(f"--comment {self.name} " in f"{line} " for line in _iptables_lines(self.netns))

    def dropped_packets(self) -> int:
        """How many packets the rule has dropped (its nft counter, or the iptables rule's counter)."""
        if self.backend == "nft":
            text = _run(self.netns, ["nft", "list", "table", "ip", self.name])
            match = re.search(r"counter packets (\d+)", text)
        else:
            text = _run(self.netns, ["iptables", "-w", "-L", "INPUT", "-v", "-x", "-n"])
            match = next(
                (re.match(r"\s*(\d+)", line) for line in text.splitlines() if f"/* {self.name} */" in line),
                None,
            )
        return int(match.group(1)) if match else 0

    def describe(self) -> str:
        """The commands a person would type to install this rule by hand."""
        if self.backend == "nft":
            return f"nft -f - <<'EOF'\n{nft_ruleset(self.name, self.address)}EOF"
        return shlex.join(["iptables", "-w", "-I", "INPUT", "1", *iptables_rule(self.name, self.address)])


def install_rule(
    address: IPv4Address | str,
    *,
    netns: str | None = None,
    name: str | None = None,
    backend: Backend | None = None,
) -> FirewallRule:
    """Install the drop rule for TCP to `address` in the INPUT hook of `netns` (None: the current one).

    `name` defaults to a fresh `tcpsh_<pid>_<n>`; `backend` to `find_backend()`.
    """
    rule = FirewallRule(
        IPv4Address(address),
        name or new_name(),
        netns,
        backend or find_backend(),
    )
    rule.install()
    return rule


def list_rules(netns: str | None = None, backend: Backend | None = None) -> list[str]:
    """Names of every tcpsh table (nft) or rule comment (iptables) in `netns` (None: current one)."""
    backend = backend or find_backend()
    if backend == "nft":
        return sorted(t for t in _nft_tables(netns) if NAME_RE.match(t))
    found: set[str] = set()
    for line in _iptables_lines(netns):
        words = shlex.split(line)
        if "--comment" in words:
            comment = words[words.index("--comment") + 1]
            if NAME_RE.match(comment):
                found.add(comment)
    return sorted(found)


def remove_rule(name: str, netns: str | None = None, backend: Backend | None = None) -> bool:
    """Remove the tcpsh table or rule called `name`; True if it was there."""
    if (backend or find_backend()) == "nft":
        return _nft_delete(netns, name)
    return _iptables_delete(netns, name)


def remove_stale(netns: str | None = None, *, force: bool = False) -> list[str]:
    """Remove the tcpsh rules in `netns` whose owning process is gone (all but this process's when
    `force`); returns the names removed. Does nothing, and returns [], when neither tool is installed.
    """
    try:
        backend = find_backend()
    except FirewallError:
        return []
    removed: list[str] = []
    for name in list_rules(netns, backend):
        pid = owner_pid(name)
        if pid is None or pid == os.getpid():
            continue
        if force or not _netns.pid_alive(pid):
            remove_rule(name, netns, backend)
            removed.append(name)
    return removed
