"""Bytes <-> headers: IPv4, ICMP, TCP and its options, checksums. Pure functions on immutable values."""

from stack.wire.errors import ParseError
from stack.wire.tcp import Flags, TcpOptions, TcpSegment, build_tcp, parse_tcp

__all__ = ["Flags", "ParseError", "TcpOptions", "TcpSegment", "build_tcp", "parse_tcp"]
