"""The TCP state machine without I/O and without a clock of its own (RFC 9293 section 3.10)."""

from stack.tcp.config import TcbConfig
from stack.tcp.tcb import Tcb, TcbStatus, reset_for
from stack.tcp.types import Event, EventKind, Result, State, TcpError

__all__ = ["Event", "EventKind", "Result", "State", "Tcb", "TcbConfig", "TcbStatus", "TcpError", "reset_for"]
