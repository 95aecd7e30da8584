"""A pcap writer for what the stack sends and receives (`capture start FILE.pcap`).

The classic libpcap format (the one tcpdump -w writes): a 24-byte global header, then per packet a
16-byte record header and the packet. Link type 101 (LINKTYPE_RAW): each packet is a bare IPv4
datagram, exactly as the stack built it or received it. tcpdump and Wireshark read it as is.
"""

from __future__ import annotations

import struct
import threading
import time
from pathlib import Path
from typing import BinaryIO

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_RAW = 101
SNAPLEN = 262144

_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")


class PcapWriter:
    """Appends datagrams to a pcap file; safe to call from the stack's threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        self._lock = threading.Lock()
        self.packets = 0
        self._file.write(_GLOBAL.pack(PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_RAW))
        self._file.flush()

    def write(self, datagram: bytes, when: float | None = None) -> None:
        when = time.time() if when is None else when
        sec = int(when)
        usec = int((when - sec) * 1_000_000)
        data = datagram[:SNAPLEN]
        with self._lock:
            if self._file.closed:
                return
            self._file.write(_RECORD.pack(sec, usec, len(data), len(datagram)))
            self._file.write(data)
            self.packets += 1

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()
