"""The lab itself (stack.lab, stack.netns, stack.firewall, stack.services), proven with the kernel's TCP.

What DESIGN.md "The lab" promises, checked one by one: the namespaces and the veth with their
addresses and MTU; every service answering as its RFC says; the firewall rule silencing the kernel's
TCP on the stack's address while ICMP still passes; nothing left after close(), after an exception,
after SIGTERM or Ctrl-C; a lab of a SIGKILLed process removed by clean_stale(); no two labs colliding.

Network rule: traffic only to addresses in the namespaces these tests build (198.18.0.0/15) or to
loopback inside them.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from ipaddress import IPv4Address
from pathlib import Path

import pytest

import stack
from stack import firewall, netns, services
from stack.firewall import FirewallError
from stack.lab import IFNAMSIZ, Lab, LabError, LabNames
from tests.interop.conftest import make_lab, wait_for

pytestmark = pytest.mark.root

PACKAGE_ROOT = str(Path(stack.__file__).resolve().parent.parent)
CHARGEN_FIRST = b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n"
CHARGEN_SECOND = b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n"
# The services process: main thread, one per listener (5), the stdin watcher.
SERVICES_IDLE_THREADS = 7


# -- helpers ---------------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    return env


def connect_in(ns: str, addr: IPv4Address | str, port: int, timeout: float = 5.0) -> socket.socket:
    """A kernel TCP socket created inside namespace `ns`, connected to addr:port."""
    with netns.entered(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect((str(addr), port))
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        piece = sock.recv(min(65536, n - len(data)))
        if not piece:
            break
        data += piece
    return bytes(data)


def recv_all(sock: socket.socket) -> bytes:
    data = bytearray()
    while piece := sock.recv(65536):
        data += piece
    return bytes(data)


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def link_info(ns: str, ifname: str) -> dict[str, object]:
    with netns.iproute(ns) as ipr:
        indexes = ipr.link_lookup(ifname=ifname)
        assert indexes, f"no interface {ifname} in {ns}"
        link = ipr.get_links(indexes[0])[0]
        addrs = [
            (a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=indexes[0], family=socket.AF_INET)
        ]
        linkinfo = link.get("linkinfo")
        return {
            "mtu": link.get("mtu"),
            "state": link.get("state"),
            "kind": linkinfo.get("kind") if linkinfo is not None else None,
            "addrs": addrs,
            "mac": link.get("address"),
        }


def own_namespaces() -> set[str]:
    """This process's lab namespaces (other test sessions may be building theirs meanwhile)."""
    return {name for name in netns.names() if name.startswith(f"tcpsh-{os.getpid()}-")}


def host_links() -> set[str]:
    with netns.iproute(None) as ipr:
        return {link.get("ifname") for link in ipr.get_links()}


def lab_gone(names: LabNames) -> bool:
    present = set(netns.names())
    return (
        names.stack_ns not in present
        and names.kernel_ns not in present
        and not ({names.stack_if, names.kernel_if} & host_links())
        and names.firewall not in firewall.list_rules(None)
    )


def icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ping_from(ns: str, addr: IPv4Address, timeout: float = 3.0) -> bool:
    """One ICMP echo request (RFC 792) from a raw socket in `ns`; True when the reply comes back."""
    ident, seq, payload = os.getpid() & 0xFFFF, 1, b"tcpsh lab ping"
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", 8, 0, icmp_checksum(header + payload), ident, seq) + payload
    with netns.entered(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    with sock:
        sock.sendto(packet, (str(addr), 0))
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([sock], [], [], remaining)
            if not readable:
                break
            reply = sock.recv(2048)
            ihl = (reply[0] & 0x0F) * 4
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", reply[ihl : ihl + 8])
            if kind == 0 and rid == ident and rseq == seq and reply[ihl + 8 :] == payload:
                return True
    return False


class Child:
    """A Python process running a small lab script; it prints one JSON line once its lab is ready."""

    def __init__(self, script: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
        )
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], 30.0)
        line = self.proc.stdout.readline() if readable else b""
        if not line:
            self.proc.kill()
            _, err = self.proc.communicate()
            pytest.fail(f"lab child did not start: {err.decode(errors='replace')}")
        self.info: dict[str, object] = json.loads(line)
        self.names = LabNames(int(self.info["pid"]), int(self.info["index"]))  # type: ignore[call-overload]

    def stop(self, signum: int) -> tuple[int, str]:
        self.proc.send_signal(signum)
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err.decode(errors="replace")


CHILD_PRELUDE = """
import json, os, signal, sys
from stack.lab import Lab
def announce(lab, **extra):
    print(json.dumps({"pid": lab.names.pid, "index": lab.names.index, **extra}), flush=True)
"""


@pytest.fixture
def spare_labs() -> Iterator[list[Child]]:
    children: list[Child] = []
    yield children
    for child in children:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait()
    Lab.clean_stale()


# -- the network ----------------------------------------------------------------------------------


def test_names_carry_the_pid_and_fit_ifnamsiz(lab: Lab) -> None:
    pid = os.getpid()
    assert lab.stack_ns == f"tcpsh-{pid}-{lab.names.index}-s"
    assert lab.kernel_ns == f"tcpsh-{pid}-{lab.names.index}-k"
    assert lab.stack_if == f"ts{pid}-{lab.names.index}s"
    worst = LabNames(4194304, 9999)  # the largest pid_max, the last index
    assert len(worst.stack_if) == IFNAMSIZ - 1
    assert LabNames.from_netns(lab.stack_ns) == lab.names
    assert LabNames.from_ifname(lab.kernel_if) == lab.names
    assert LabNames.from_netns("tsdev-s") is None


def test_namespaces_and_veth_with_addresses_and_mtu(lab: Lab) -> None:
    assert {lab.stack_ns, lab.kernel_ns} <= set(netns.names())
    stack_side = link_info(lab.stack_ns, lab.stack_if)
    kernel_side = link_info(lab.kernel_ns, lab.kernel_if)
    assert stack_side["kind"] == kernel_side["kind"] == "veth"
    assert stack_side["mtu"] == kernel_side["mtu"] == lab.mtu == 1500
    assert stack_side["state"] == kernel_side["state"] == "up"
    assert stack_side["addrs"] == [("198.18.0.1", 24)]
    assert kernel_side["addrs"] == [("198.18.0.2", 24)]
    assert lab.stack_addr == IPv4Address("198.18.0.1") and lab.kernel_addr == IPv4Address("198.18.0.2")
    assert stack_side["mac"] == lab.stack_mac and kernel_side["mac"] == lab.kernel_mac
    assert link_info(lab.stack_ns, "lo")["state"] == link_info(lab.kernel_ns, "lo")["state"] == "up"
    with lab.enter_stack_ns():
        assert socket.if_nametoindex(lab.stack_if) == lab.stack_ifindex
    # Nothing on the host's own network: neither veth end is in this namespace.
    assert not ({lab.stack_if, lab.kernel_if} & host_links())


def test_configured_addresses_and_mtu() -> None:
    with make_lab(stack_addr="198.19.7.17", kernel_addr="198.19.7.18", prefixlen=28, mtu=9000) as lab:
        assert link_info(lab.stack_ns, lab.stack_if)["addrs"] == [("198.19.7.17", 28)]
        assert link_info(lab.kernel_ns, lab.kernel_if)["addrs"] == [("198.19.7.18", 28)]
        assert link_info(lab.stack_ns, lab.stack_if)["mtu"] == 9000
        with connect_in(lab.kernel_ns, lab.kernel_addr, lab.services["echo"]) as sock:
            sock.sendall(b"x" * 20000)
            assert recv_exactly(sock, 20000) == b"x" * 20000


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stack_addr": "10.0.0.1", "kernel_addr": "10.0.0.2"},  # outside 198.18.0.0/15
        {"stack_addr": "198.18.0.1", "kernel_addr": "198.18.1.2"},  # not on one /24
        {"stack_addr": "198.18.0.1", "kernel_addr": "198.18.0.1"},
        {"stack_addr": "198.18.0.0", "kernel_addr": "198.18.0.2"},  # the network address
        {"prefixlen": 8},
        {"mtu": 40},
    ],
)
def test_bad_configuration_is_refused_before_anything_is_built(kwargs: dict[str, object]) -> None:
    before = own_namespaces()
    with pytest.raises(LabError):
        Lab(**kwargs)  # type: ignore[arg-type]
    assert own_namespaces() == before


def test_ping_crosses_the_veth_both_ways(lab: Lab) -> None:
    assert ping_from(lab.stack_ns, lab.kernel_addr)
    assert ping_from(lab.kernel_ns, lab.stack_addr)


# -- namespaces from one thread ---------------------------------------------------------------------


def ns_inode(path: str = "/proc/thread-self/ns/net") -> int:
    return os.stat(path).st_ino


def test_enter_stack_ns_is_per_thread_and_always_returns(lab: Lab) -> None:
    home = ns_inode()
    stack_inode = os.stat(netns.path_of(lab.stack_ns)).st_ino
    other_ready, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def other() -> None:
        other_ready.set()
        release.wait(10)
        seen.append(ns_inode())

    thread = threading.Thread(target=other)
    thread.start()
    other_ready.wait(10)
    with lab.enter_stack_ns():
        assert ns_inode() == stack_inode
        release.set()
        thread.join(10)
    assert seen == [home]  # the other thread never left home
    assert ns_inode() == home

    with pytest.raises(KeyError), lab.enter_stack_ns():
        raise KeyError("inside")
    assert ns_inode() == home


def test_a_socket_keeps_its_namespace_after_the_thread_leaves(lab: Lab) -> None:
    with lab.enter_kernel_ns():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(5)
        sock.connect((str(lab.kernel_addr), lab.services["echo"]))  # connected from the host's namespace
        sock.sendall(b"still in the lab")
        assert recv_exactly(sock, 16) == b"still in the lab"


# -- the services, from the kernel's side -----------------------------------------------------------


def test_services_mapping(lab: Lab) -> None:
    assert dict(lab.services) == {"echo": 7, "discard": 9, "daytime": 13, "chargen": 19, "http": 80}
    assert lab.services_process is not None and lab.services_process.poll() is None


def test_echo_round_trip(lab: Lab) -> None:
    data = os.urandom(300_000)
    with connect_in(lab.kernel_ns, lab.kernel_addr, 7) as sock:
        sender = threading.Thread(target=sock.sendall, args=(data,))
        sender.start()
        echoed = recv_exactly(sock, len(data))
        sender.join()
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b""  # the server closes after our FIN
    assert echoed == data


def test_discard_accepts_and_says_nothing(lab: Lab) -> None:
    with connect_in(lab.kernel_ns, lab.kernel_addr, 9) as sock:
        sock.sendall(os.urandom(1_000_000))
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b""


def test_daytime_returns_one_line(lab: Lab) -> None:
    with connect_in(lab.kernel_ns, lab.kernel_addr, 13) as sock:
        reply = recv_all(sock)
    assert reply.endswith(b"\r\n") and reply.count(b"\n") == 1
    assert str(datetime.now().year).encode() in reply


def test_chargen_first_lines_are_the_classic_pattern(lab: Lab) -> None:
    with connect_in(lab.kernel_ns, lab.kernel_addr, 19) as sock:
        data = recv_exactly(sock, 95 * 74 + 74)
    assert data[:74] == CHARGEN_FIRST
    assert data[74:148] == CHARGEN_SECOND
    assert all(len(line) == 72 for line in data.split(b"\r\n")[:95])
    assert data[95 * 74 :] == CHARGEN_FIRST  # the period is 95 lines
    assert services.chargen_line(0) == CHARGEN_FIRST


@pytest.mark.parametrize("ending", ["close", "reset", "fin-without-reading"])
def test_chargen_stops_when_the_client_goes(lab: Lab, ending: str) -> None:
    proc = lab.services_process
    assert proc is not None
    wait_for(lambda: thread_count(proc.pid) == SERVICES_IDLE_THREADS, what="the services to be idle")
    sock = connect_in(lab.kernel_ns, lab.kernel_addr, 19)
    assert recv_exactly(sock, 74) == CHARGEN_FIRST
    wait_for(lambda: thread_count(proc.pid) == SERVICES_IDLE_THREADS + 1, what="the chargen thread")
    if ending == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    elif ending == "close":
        sock.close()
    else:
        # Stop reading (the windows fill up), then send FIN only: chargen must notice the FIN although
        # its sends would block.
        sock.shutdown(socket.SHUT_WR)
    wait_for(lambda: thread_count(proc.pid) == SERVICES_IDLE_THREADS, what="chargen to stop")
    if ending == "fin-without-reading":
        with sock:
            recv_all(sock)  # the server has closed: the stream ends
    assert proc.poll() is None


def test_http_index_with_curl(lab: Lab) -> None:
    curl = lab.run_in_kernel_ns(
        ["curl", "-sS", "--max-time", "10", "-D", "-", f"http://{lab.kernel_addr}/"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = curl.communicate(timeout=20)
    assert curl.returncode == 0, err
    text = out.decode()
    assert text.startswith("HTTP/1.1 200")
    assert lab.tag in text and "<html>" in text


def test_http_bytes_hash_on_one_persistent_connection(lab: Lab) -> None:
    with lab.enter_kernel_ns():
        conn = http.client.HTTPConnection(str(lab.kernel_addr), 80, timeout=20)
        conn.connect()
    try:
        for n in (0, 1, 65535, 65536, 65537, 3_000_001):
            conn.request("GET", f"/bytes/{n}")
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200
            assert int(response.headers["Content-Length"]) == len(body) == n
            assert hashlib.sha256(body).hexdigest() == services.pattern_sha256(n)
        conn.request("GET", f"/bytes/{services.BYTES_LIMIT + 1}")
        response = conn.getresponse()
        response.read()
        assert response.status == 400
    finally:
        conn.close()


def test_bytes_pattern_is_the_documented_shake128_stream() -> None:
    expected = b"".join(hashlib.shake_128(f"tcpsh/bytes/{i}".encode()).digest(65536) for i in range(3))
    assert services.pattern_bytes(3 * 65536) == expected
    assert services.pattern_bytes(100_000) == expected[:100_000]


def test_http_echo_post(lab: Lab) -> None:
    body = os.urandom(500_000)
    with lab.enter_kernel_ns():
        conn = http.client.HTTPConnection(str(lab.kernel_addr), 80, timeout=20)
        conn.connect()
    try:
        conn.request("POST", "/echo", body=body, headers={"Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == body
        conn.request("GET", "/nowhere")
        response = conn.getresponse()
        response.read()
        assert response.status == 404
    finally:
        conn.close()


def test_services_program_on_its_own(lab: Lab) -> None:
    """python -m stack.services: READY after binding (stdout or --ready-fd), clean exit on SIGTERM
    and on end of stdin with --exit-on-eof."""
    zero_ports = [arg for name in services.SERVICES for arg in ("--port", f"{name}=0")]
    argv = [sys.executable, "-m", "stack.services", "--address", "127.0.0.1", *zero_ports]
    proc = lab.run_in_kernel_ns(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("READY ")
    ports = dict(word.split("=") for word in line.split()[1:])
    assert set(ports) == set(services.SERVICES)
    with connect_in(lab.kernel_ns, "127.0.0.1", int(ports["echo"])) as sock:
        sock.sendall(b"loopback")
        assert recv_exactly(sock, 8) == b"loopback"
    proc.terminate()
    out, err = proc.communicate(timeout=10)
    assert (proc.returncode, out, err) == (0, b"", b"")

    read_fd, write_fd = os.pipe()
    proc = lab.run_in_kernel_ns(
        [*argv, "--ready-fd", str(write_fd), "--exit-on-eof", "--only", "echo,http"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(write_fd,),
        env=child_env(),
    )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as ready:
        words = ready.readline().decode().split()
    assert words[0] == "READY" and sorted(w.split("=")[0] for w in words[1:]) == ["echo", "http"]
    assert proc.stdin is not None
    proc.stdin.close()  # end of stdin: the program stops by itself
    assert proc.wait(timeout=10) == 0


# -- the firewall rule --------------------------------------------------------------------------------


def test_firewall_rule_is_present_while_the_lab_lives(lab: Lab) -> None:
    rule = lab.firewall
    assert rule is not None and rule.installed and rule.is_present()
    assert rule.netns == lab.stack_ns and rule.name == lab.names.firewall
    assert firewall.list_rules(lab.stack_ns) == [lab.names.firewall]
    assert lab.names.firewall not in firewall.list_rules(None)  # not on the host
    if rule.backend == "nft":
        text = netns.run(lab.stack_ns, ["nft", "list", "table", "ip", rule.name]).stdout.decode()
        assert "hook input" in text and "ip daddr 198.18.0.1 ip protocol tcp" in text and "drop" in text


def kernel_connect_times_out(lab: Lab) -> bool:
    with netns.entered(lab.stack_ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(1.5)
        try:
            sock.connect((str(lab.kernel_addr), 7))
        except TimeoutError:
            return True
        sock.sendall(b"ok")
        assert recv_exactly(sock, 2) == b"ok"
        return False


@pytest.mark.parametrize("backend", ["nft", "iptables"])
def test_the_rule_silences_kernel_tcp_but_not_icmp(backend: str) -> None:
    if backend == "iptables" and not shutil.which("iptables"):
        pytest.skip("iptables is not installed (nft is preferred anyway)")
    with make_lab(firewall=False) as lab:
        assert not kernel_connect_times_out(lab)  # without the rule the kernel's TCP answers
        rule = firewall.install_rule(lab.stack_addr, netns=lab.stack_ns, backend=backend)  # type: ignore[arg-type]
        assert rule.is_present() and rule.backend == backend
        assert firewall.owner_pid(rule.name) == os.getpid()
        # The SYN goes out; the SYN,ACK is dropped in INPUT, so the kernel's connect never completes.
        assert kernel_connect_times_out(lab)
        assert rule.dropped_packets() >= 1
        assert ping_from(lab.stack_ns, lab.kernel_addr)
        rule.install()  # installing again replaces, it does not add a second rule
        assert firewall.list_rules(lab.stack_ns, backend) == [rule.name]  # type: ignore[arg-type]
        assert rule.remove() is True
        assert rule.remove() is False  # idempotent
        assert not rule.is_present()
        assert not kernel_connect_times_out(lab)


def test_no_firewall_tool_names_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FirewallError, match=r"install nftables \(apt-get install nftables\) or iptables"):
        firewall.find_backend()
    with pytest.raises(FirewallError, match="install nftables"):
        firewall.install_rule("198.18.0.1", netns=None)
    assert firewall.remove_stale() == []


# -- removal -----------------------------------------------------------------------------------------


def test_close_leaves_nothing_behind() -> None:
    lab = make_lab()
    names = lab.names
    assert lab.services_process is not None
    services_proc = lab.services_process
    sleeper = lab.run_in_kernel_ns(["sleep", "600"])
    stray = lab.run_in_stack_ns(["sleep", "600"], start_new_session=False)
    assert not lab_gone(names)
    lab.close()
    assert lab.closed and lab_gone(names)
    assert services_proc.returncode == 0  # it stopped cleanly on SIGTERM
    assert sleeper.poll() is not None and stray.poll() is not None
    assert not netns.pids_in(names.kernel_ns)
    lab.close()  # idempotent
    with pytest.raises(LabError, match="closed"):
        lab.run_in_kernel_ns(["true"])
    with pytest.raises(LabError, match="closed"):
        lab.enter_stack_ns()


def test_an_exception_inside_with_removes_the_lab() -> None:
    with pytest.raises(ZeroDivisionError), make_lab() as lab:
        names = lab.names
        _ = 1 / 0
    assert lab_gone(names)


def test_a_failing_services_start_removes_the_half_built_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    before = own_namespaces()
    # A "python" that cannot run the services: the error carries its status and its stderr.
    monkeypatch.setattr(sys, "executable", "/bin/sh")
    with pytest.raises(LabError, match=r"exited before READY \(status [1-9]\d*\); stderr: \S"):
        Lab()
    assert own_namespaces() == before


@pytest.mark.parametrize(
    ("signum", "body", "status"),
    [
        (signal.SIGTERM, "lab = Lab()\nannounce(lab)\nsignal.pause()", -signal.SIGTERM),
        (signal.SIGHUP, "lab = Lab()\nannounce(lab)\nsignal.pause()", -signal.SIGHUP),
        (signal.SIGINT, "with Lab() as lab:\n    announce(lab)\n    signal.pause()", -signal.SIGINT),
        (signal.SIGINT, "lab = Lab()\nannounce(lab)\nsignal.pause()", -signal.SIGINT),
    ],
    ids=["sigterm", "sighup", "ctrl-c-inside-with", "ctrl-c-at-exit"],
)
def test_signals_remove_the_lab_and_keep_their_effect(
    spare_labs: list[Child], signum: int, body: str, status: int
) -> None:
    child = Child(CHILD_PRELUDE + body)
    spare_labs.append(child)
    assert not lab_gone(child.names)
    returncode, err = child.stop(signum)
    assert returncode == status, err
    if signum == signal.SIGINT:
        assert "KeyboardInterrupt" in err  # Python's own Ctrl-C behaviour is untouched
    assert lab_gone(child.names)


STALE_CHILD = (
    CHILD_PRELUDE
    + "lab = Lab()\n"
    + "sleeper = lab.run_in_kernel_ns(['sleep', '600'])\n"
    + "announce(lab, sleeper=sleeper.pid, services=lab.services_process.pid)\n"
    + "signal.pause()\n"
)


def test_clean_stale_removes_the_lab_of_a_killed_process(lab: Lab, spare_labs: list[Child]) -> None:
    # Another test session on this machine may clean the stale lab first; try again if it did.
    for _attempt in range(3):
        child = Child(STALE_CHILD)
        spare_labs.append(child)
        names = child.names
        sleeper = int(child.info["sleeper"])  # type: ignore[call-overload]
        services_pid = int(child.info["services"])  # type: ignore[call-overload]

        removed = Lab.clean_stale()
        assert not [item for item in removed if names.tag in item or names.firewall in item]
        assert not lab_gone(names)  # the lab of a live process is not stale
        child.proc.kill()
        child.proc.wait()
        assert netns.pid_alive(sleeper)  # what SIGKILL left: the namespaces and their processes

        removed = Lab.clean_stale()
        ours = [item for item in removed if names.tag in item or names.firewall in item]
        if ours:
            break
    assert f"netns {names.stack_ns}" in ours and f"netns {names.kernel_ns}" in ours
    assert f"veth {names.stack_if} (in {names.stack_ns})" in ours
    assert f"veth {names.kernel_if} (in {names.kernel_ns})" in ours
    assert f"firewall {names.firewall} (in {names.stack_ns})" in ours
    assert any(item.startswith(f"process {sleeper} ") for item in removed)
    wait_for(lambda: not netns.pid_alive(sleeper), what="the stale sleeper to die")
    wait_for(lambda: not netns.pid_alive(services_pid), what="the stale services to die")
    assert lab_gone(names)
    # This process's own live lab is never stale.
    assert not lab.closed and lab.stack_ns in netns.names()
    assert not [item for item in Lab.clean_stale() if lab.tag in item or lab.names.firewall in item]
    assert echo_works(lab.kernel_ns, lab.kernel_addr)


# -- no collisions --------------------------------------------------------------------------------------


def echo_works(ns: str, addr: IPv4Address) -> bool:
    with connect_in(ns, addr, 7) as sock:
        sock.sendall(ns.encode())
        return recv_exactly(sock, len(ns)) == ns.encode()


def test_two_labs_in_one_process(lab: Lab) -> None:
    with make_lab() as second:
        assert second.names.pid == lab.names.pid and second.names.index != lab.names.index
        assert {second.stack_ns, second.kernel_ns}.isdisjoint({lab.stack_ns, lab.kernel_ns})
        assert second.firewall is not None and lab.firewall is not None
        assert second.firewall.name != lab.firewall.name
        assert echo_works(second.kernel_ns, second.kernel_addr)
        assert echo_works(lab.kernel_ns, lab.kernel_addr)
    assert echo_works(lab.kernel_ns, lab.kernel_addr)
    assert lab.firewall.is_present()


def test_two_processes(lab: Lab, spare_labs: list[Child]) -> None:
    child = Child(CHILD_PRELUDE + "lab = Lab()\nannounce(lab)\nsignal.pause()")
    spare_labs.append(child)
    assert child.names.pid != os.getpid()
    assert {child.names.stack_ns, child.names.kernel_ns}.isdisjoint({lab.stack_ns, lab.kernel_ns})
    assert echo_works(child.names.kernel_ns, lab.kernel_addr)  # same addresses, separate networks
    assert echo_works(lab.kernel_ns, lab.kernel_addr)
    returncode, err = child.stop(signal.SIGTERM)
    assert returncode == -signal.SIGTERM, err
    assert lab_gone(child.names)
    assert echo_works(lab.kernel_ns, lab.kernel_addr)
