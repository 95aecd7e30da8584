"""`capture`: the pcap written during a lab session holds exactly what the stack sent and received,
read back with dpkt (a library the project does not write) and with tcpdump -r."""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import dpkt
import pytest
from rich.console import Console

from stack.lab import Lab
from stack.runtime import Stack
from stack.wire.tcp import TcpSegment
from tcpsh.session import Session

pytestmark = pytest.mark.root


def test_capture_matches_what_the_stack_sent_and_received(
    lab_stack: Stack, stack_lab: Lab, tmp_path: Path
) -> None:
    seen: list[tuple[str, TcpSegment]] = []
    lab_stack.tap(lambda d, s, t, seg, dg: seen.append((d, seg)))
    out = Console(file=open(tmp_path / "out.txt", "w"), width=120)  # noqa: SIM115
    session = Session(lab_stack, out)
    pcap = tmp_path / "run.pcap"
    for line in (
        f"capture start {pcap}",
        f"open {stack_lab.kernel_addr}:7",
        'send c1 "captured\\n"',
        "expect c1 captured --timeout 5",
        "close c1",
        "wait c1 TIME-WAIT --timeout 5",
        "capture stop",
    ):
        session.execute(line)
    out.file.close()
    assert "capture stopped:" in (tmp_path / "out.txt").read_text()

    with open(pcap, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == dpkt.pcap.DLT_RAW or reader.datalink() == 101
        packets = [dpkt.ip.IP(buf) for _, buf in reader]
    from_pcap = [
        (
            "out" if IPv4Address(ip.src) == stack_lab.stack_addr else "in",
            ip.data.seq,
            ip.data.ack,
            ip.data.flags,
            bytes(ip.data.data),
        )
        for ip in packets
    ]
    from_stack = [(d, s.seq, s.ack, int(s.flags), s.payload) for d, s in seen]
    assert from_pcap == from_stack
    assert any(p[4] == b"captured\n" and p[0] == "out" for p in from_pcap)
    assert any(p[4] == b"captured\n" and p[0] == "in" for p in from_pcap)

    if shutil.which("tcpdump"):
        text = subprocess.run(
            ["tcpdump", "-nr", str(pcap)], capture_output=True, text=True, check=True
        ).stdout
        assert text.count("\n") == len(packets)
        assert f"{stack_lab.stack_addr}." in text and "Flags [S]" in text and "Flags [F.]" in text
