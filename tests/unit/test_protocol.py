"""The daemon's protocol codec (tcpsh.protocol): messages as lines of JSON, checked on the way in, and
a stream cut into lines of bounded length whatever arrives."""

from __future__ import annotations

import json

import pytest

from tcpsh import protocol
from tcpsh.protocol import MAX_LINE, VERSION, LineReader, ProtocolError, TooLong, decode, encode, field


def test_a_message_is_one_line_of_json_with_the_version_first() -> None:
    data = encode("run", id=1, line='send c1 "a\\nb"', width=80)
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert data.startswith(b'{"v":1,"type":"run",')
    assert decode(data[:-1]) == {"v": VERSION, "type": "run", "id": 1, "line": 'send c1 "a\\nb"', "width": 80}


def test_a_field_named_kind_or_type_of_its_own_is_fine() -> None:
    msg = decode(encode("event", kind="established", conn="c1", text="c1: established")[:-1])
    assert (msg["type"], msg["kind"]) == ("event", "established")


def test_text_that_is_not_ascii_goes_as_utf8() -> None:
    data = encode("result", output="état ✓")
    assert "état ✓".encode() in data
    assert decode(data.rstrip(b"\n"))["output"] == "état ✓"


def test_a_message_over_the_limit_is_refused_when_encoded() -> None:
    with pytest.raises(ProtocolError, match="over the limit"):
        encode("result", output="x" * MAX_LINE)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"\xff\xfe garbage", "not UTF-8"),
        (b"hello daemon", "not JSON"),
        (b'{"v":1,"type":"run"', "not JSON"),
        (b"[1, 2]", "a message is a JSON object, not list"),
        (b'"run"', "a message is a JSON object, not str"),
        (b'{"type":"run"}', 'no protocol version: every message carries "v": 1'),
        (b'{"v":2,"type":"hello"}', "protocol version 2 is not spoken here; this side speaks version 1"),
        (b'{"v":"1","type":"hello"}', "protocol version '1' is not spoken here"),
        (b'{"v":1}', 'no "type"'),
        (b'{"v":1,"type":"launch"}', "unknown message type 'launch' (known: hello, run"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ],
    ids=[
        "binary",
        "text",
        "half",
        "list",
        "string",
        "no-version",
        "version-2",
        "version-as-text",
        "no-type",
        "unknown-type",
        "deep",
    ],
)
def test_a_bad_message_is_one_line_saying_what_is_wrong(line: bytes, error: str) -> None:
    with pytest.raises(ProtocolError) as e:
        decode(line, types=protocol.CLIENT_TYPES)
    assert error in str(e.value)
    assert "\n" not in str(e.value)


def test_the_version_is_checked_before_the_type() -> None:
    with pytest.raises(ProtocolError, match="version 7"):
        decode(json.dumps({"v": 7, "type": "something new"}).encode(), types=protocol.CLIENT_TYPES)


def test_fields_are_checked_by_type() -> None:
    msg = {"v": 1, "type": "run", "line": "status", "width": 80, "terminal": True, "id": True}
    assert field(msg, "line", str) == "status"
    assert field(msg, "width", int) == 80
    assert field(msg, "missing", int, 42) == 42
    assert field(msg, "terminal", bool) is True
    with pytest.raises(ProtocolError, match="'width' must be str, not int"):
        field(msg, "width", str)
    with pytest.raises(ProtocolError, match="'id' must be int or str, not bool"):
        field(msg, "id", (int, str))


def test_lines_come_whole_however_the_stream_is_cut() -> None:
    stream = b"".join(encode("run", id=n, line=f"echo {n}") for n in range(50))
    for size in (1, 2, 7, 64, len(stream)):
        reader = LineReader()
        got: list[bytes | TooLong] = []
        for i in range(0, len(stream), size):
            got += reader.feed(stream[i : i + size])
        assert [decode(line)["id"] for line in got if isinstance(line, bytes)] == list(range(50))
        assert reader.pending == 0


def test_a_half_message_is_held_and_counted_until_its_newline() -> None:
    reader = LineReader()
    assert reader.feed(b'{"v":1,"type":') == []
    assert reader.pending == len(b'{"v":1,"type":')
    assert reader.feed(b'"summary"}\n') == [b'{"v":1,"type":"summary"}']
    assert reader.pending == 0


def test_a_line_over_the_limit_is_dropped_once_and_the_next_lines_come() -> None:
    reader = LineReader(limit=16)
    assert reader.feed(b"0123456789abcde\n") == [b"0123456789abcde"]  # 16 bytes with its newline
    got = reader.feed(b"x" * 10)
    assert got == []
    got = reader.feed(b"y" * 10)
    assert got == [TooLong(20)]
    assert reader.pending == 0
    assert reader.feed(b"z" * 1000) == []  # still the long line: skipped, not held
    assert reader.pending == 0
    assert reader.feed(b"zz\nnext\n") == [b"next"]


def test_a_long_line_ending_in_the_same_piece_is_dropped_and_what_follows_comes() -> None:
    reader = LineReader(limit=8)
    assert reader.feed(b"a" * 20 + b"\nok\n") == [TooLong(20), b"ok"]


def test_a_hundred_megabytes_without_a_newline_is_never_held() -> None:
    reader = LineReader()
    piece = b"x" * (1 << 20)
    reports = []
    for _ in range(100):
        reports += reader.feed(piece)
        assert reader.pending <= MAX_LINE
    assert reports == [TooLong(MAX_LINE)]
    assert reader.feed(b"\n" + encode("summary")) == [encode("summary")[:-1]]
