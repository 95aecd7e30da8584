"""The tcpsh command line: where the stack runs (the lab, or a real interface), and what drives it
(the interactive prompt, -c "COMMANDS", or .tcpsh files)."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from ipaddress import IPv4Address, IPv4Interface

from rich.console import Console

from stack.link.impair import ImpairedLink
from stack.runtime import Stack, heap_frozen
from stack.tcp import TcbConfig
from tcpsh import privilege
from tcpsh.commands import COMMANDS, split_commands
from tcpsh.session import Driver


def add_stack_options(p: argparse.ArgumentParser) -> None:
    """Where the stack runs and the TCP defaults: the same for the shell and the daemon."""
    where = p.add_argument_group("where the stack runs")
    where.add_argument("--lab", action="store_true", help="the private lab (the default)")
    where.add_argument("--interface", metavar="IF", help="a real interface (with --address)")
    where.add_argument("--address", metavar="ADDR", help="the stack's own address on IF")
    where.add_argument(
        "--firewall",
        action="store_true",
        help="install the rule that keeps the kernel's TCP off ADDR, removed on exit",
    )
    where.add_argument(
        "--link",
        choices=("fast", "plain"),
        default="fast",
        help="fast (the default): the kernel cuts the stack's 64 KB segments (AF_PACKET with a virtio_net "
        "header) and, in the lab, joins what arrives (GRO); plain: one datagram per segment through a raw "
        "IP socket",
    )
    tcp = p.add_argument_group("TCP defaults for every connection ('set default' in the shell changes them)")
    tcp.add_argument(
        "--cc", metavar="NAME", help="congestion control: reno (RFC 5681; the default) or cubic (RFC 9438)"
    )
    tcp.add_argument(
        "--set",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="any setting 'set default' takes, e.g. --set rcv-buf=4M --set sack=off (repeatable)",
    )


def build_parser(*, files: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tcpsh",
        description="Drive TCP by hand: a user-space TCP/IP stack and a shell of RFC 9293's user calls. "
        "With no network options it builds a private lab (two network namespaces, Linux's TCP "
        "with services on the far side) and removes it on exit.",
        epilog="commands: "
        + ", ".join(c.name for c in COMMANDS)
        + " (type 'help' in the shell). Host set-up: 'tcpsh setup --help'; the stack as a daemon: "
        "'tcpsh daemon --help' and 'tcpsh attach --help'.",
    )
    add_script_options(p, files=files)
    add_stack_options(p)
    p.add_argument("--lab-clean", action="store_true", help="remove what a killed run's lab left, then exit")
    add_color_option(p)
    return p


def add_script_options(p: argparse.ArgumentParser, *, files: bool = True) -> None:
    """FILE.tcpsh and -c: the same for the shell and for a shell attached to a daemon (run_given).
    Without `files` (for completion, where the subcommands take the first word's place)."""
    if files:
        p.add_argument("files", nargs="*", metavar="FILE.tcpsh", help="run these scripts, then exit")
    p.add_argument("-c", dest="commands", metavar="COMMANDS", help="run these commands (separated by ;)")


def add_color_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-color", action="store_true", help="no colour (NO_COLOR in the environment does the same)"
    )


def make_console(*, no_color: bool = False) -> Console:
    """One-line messages are never wrapped (scripts and tests read them whole); when the output is not
    a terminal, tables get room instead of being squeezed into 80 columns."""
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))
    return Console(highlight=False, soft_wrap=True, width=width, no_color=no_color or None)


def need_privileges(console: Console) -> bool:
    """CAP_NET_RAW and CAP_NET_ADMIN: root, or a process granted both."""
    if os.geteuid() == 0:
        return True
    if privilege.has_capability(privilege.CAP_NET_ADMIN) and privilege.has_capability(privilege.CAP_NET_RAW):
        return True
    console.print(
        "tcpsh: needs root (CAP_NET_RAW and CAP_NET_ADMIN) for raw sockets: run it with sudo",
        style="red",
        highlight=False,
    )
    return False


def tcp_defaults(args: argparse.Namespace) -> list[tuple[str, str]] | str:
    """--cc and --set as (name, value) pairs, each checked now; or the one line saying what is wrong."""
    pairs = [("cc", args.cc)] if args.cc else []
    for item in args.set:
        name, eq, value = item.partition("=")
        if not eq or not name or not value:
            return f"--set takes NAME=VALUE, not {item!r}"
        pairs.append((name, value))
    probe = TcbConfig.full()
    for name, value in pairs:
        try:
            probe.set(name, value, at_open=True)
        except ValueError as e:
            return str(e)
    return pairs


def set_up(console: Console, switching: bool) -> None:
    """The sockets, the lab and the firewall rule are in place: keep only the capabilities the way out
    needs (tcpsh.privilege), and those for acting as another user when `switching`. Called before the
    stack's threads start, so that they inherit no more."""
    try:
        privilege.drop_capabilities(switching=switching)
    except OSError as e:
        console.print(f"tcpsh: keeping every capability: {e}", style="yellow", highlight=False, markup=False)


def open_link(
    console: Console,
    kind: str,
    interface: str,
    addr: IPv4Address,
    namespace: Callable[[], AbstractContextManager[object]] | None = None,
    *,
    lab: bool = False,
) -> ImpairedLink:
    """The stack's link: PacketLink (`fast`; with GRO on the lab's own veth) or RawLink (`plain`), opened
    inside `namespace()` when given, in the impairment layer (a pass-through until `impair` sets
    something). Where the fast link cannot be opened, the plain one, with one line saying why."""
    from stack.link.impair import ImpairedLink
    from stack.link.packet import PacketLink
    from stack.link.raw import RawLink

    def where() -> AbstractContextManager[object] | None:
        return namespace() if namespace else None

    inner: RawLink | None = None
    if kind == "fast":
        try:
            inner = PacketLink(interface, addr, namespace=where(), gro=lab)
        except OSError as e:
            console.print(
                f"tcpsh: the fast link is not available ({e.strerror or e}); the plain one is used",
                style="yellow",
                highlight=False,
                markup=False,
            )
    if inner is None:
        inner = RawLink(interface, addr, namespace=where())
    return ImpairedLink(inner)


@contextlib.contextmanager
def real_host(
    console: Console,
    interface: str,
    address: str,
    firewall: bool,
    switching: bool = False,
    link: str = "fast",
) -> Iterator[tuple[Stack, list[tuple[str, str]]]]:
    addr = IPv4Interface(address).ip if "/" in address else IPv4Address(address)
    rule = None
    if firewall:
        from stack import firewall as fw

        rule = fw.install_rule(addr)
        console.print(f"firewall: TCP to {addr} is dropped before the kernel's TCP sees it", highlight=False)
    try:
        impaired = open_link(console, link, interface, addr)
        set_up(console, switching)
        with Stack(impaired) as stack:
            console.print(f"stack on {interface} as {addr}", highlight=False)
            yield stack, []
    finally:
        if rule is not None:
            rule.remove()


@contextlib.contextmanager
def lab_host(
    console: Console, switching: bool = False, link: str = "fast"
) -> Iterator[tuple[Stack, list[tuple[str, str]]]]:
    from stack.lab import Lab

    with Lab() as lab:
        impaired = open_link(console, link, lab.stack_if, lab.stack_addr, lab.enter_stack_ns, lab=True)
        lab.kernel_answers_echo(False)  # the stack answers pings of its address
        set_up(console, switching)
        with Stack(impaired) as stack:
            services = ", ".join(f"{name} {port}" for name, port in lab.services.items())
            console.print(
                f"lab: the stack is {lab.stack_addr}; Linux's TCP is {lab.kernel_addr} with {services}",
                highlight=False,
            )
            console.print(f"try: open {lab.kernel_addr}:7", highlight=False)
            yield stack, [(f"{lab.kernel_addr}:{port}", name) for name, port in lab.services.items()]


def check_stack_options(args: argparse.Namespace, console: Console) -> list[tuple[str, str]] | int:
    """The TCP defaults to set, once the options agree and the privileges are there; else the exit
    status, the reason told."""
    if (args.interface is None) != (args.address is None):
        console.print("tcpsh: --interface and --address go together", style="red")
        return 2
    if args.lab and args.interface:
        console.print("tcpsh: --lab or --interface, not both", style="red")
        return 2
    defaults = tcp_defaults(args)
    if isinstance(defaults, str):
        console.print(f"tcpsh: {defaults}", style="red", highlight=False, markup=False)
        return 2
    if not need_privileges(console):
        return 1
    return defaults


@contextlib.contextmanager
def running_stack(
    args: argparse.Namespace, console: Console, defaults: list[tuple[str, str]], *, switching: bool = False
) -> Iterator[tuple[Stack, list[tuple[str, str]]]]:
    """The stack on a real interface or in the lab, with the TCP defaults set; on the way out its open
    connections are closed (then aborted), and the lab or firewall rule removed."""
    host = (
        real_host(console, args.interface, args.address, args.firewall, switching, args.link)
        if args.interface
        else lab_host(console, switching, args.link)
    )
    with host as (stack, hosts), heap_frozen():
        for name, value in defaults:
            stack.configure_default(name, value)
        yield stack, hosts


def run_given(driver: Driver, args: argparse.Namespace, console: Console) -> int:
    """-c COMMANDS, then each FILE.tcpsh, stopping at the first that fails: the exit status."""
    status = 0
    if args.commands is not None:
        status = driver.run_lines(split_commands(args.commands), "-c")
    for path in args.files:
        if status:
            break
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError as e:
            console.print(f"tcpsh: cannot read {path}: {e.strerror}", style="red")
            return 1
        status = driver.run_lines(lines, path)
    return status


def one_line_failure(console: Console, e: Exception) -> int:
    """A set-up failure: one line, not a traceback (unless TCPSH_DEBUG asks for it)."""
    if os.environ.get("TCPSH_DEBUG"):
        raise e
    console.print(f"tcpsh: {e}", style="red", highlight=False, markup=False)
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `kill -USR1 PID` prints where every thread is (to stderr), for a tcpsh that seems stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if argv[:1] == ["setup"]:
        from tcpsh.setup import main as setup_main

        if not need_privileges(make_console()):
            return 1
        return setup_main(argv[1:])
    if argv[:1] == ["daemon"]:
        from tcpsh.daemon import main as daemon_main

        return daemon_main(argv[1:])
    if argv[:1] == ["attach"]:
        from tcpsh.attach import main as attach_main

        return attach_main(argv[1:])
    args = build_parser().parse_args(argv)
    console = make_console(no_color=args.no_color)
    if args.lab_clean:
        from stack.lab import Lab

        if not need_privileges(console):
            return 1
        removed = Lab.clean_stale()
        for item in removed:
            console.print(f"removed {item}")
        console.print(f"{len(removed)} leftovers removed" if removed else "nothing to clean")
        return 0
    defaults = check_stack_options(args, console)
    if isinstance(defaults, int):
        return defaults
    from tcpsh.session import Session

    try:
        with running_stack(args, console, defaults) as (stack, hosts):
            session = Session(stack, console, hosts=hosts)
            status = run_given(session, args, console)
            if args.commands is None and not args.files:
                from tcpsh.prompt import interact

                interact(session)
            session.close()
            for cid, how in stack.shutdown():
                console.print(f"{cid} {how}", style="dim")
            return status
    except KeyboardInterrupt:
        console.print("interrupted", style="red")
        return 130
    except Exception as e:
        return one_line_failure(console, e)


if __name__ == "__main__":
    sys.exit(main())
