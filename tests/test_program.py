"""vm.program: JSON round trips, validation messages, the wire line, pattern and digest."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from zcfuzz.vm.errors import UserError
from zcfuzz.vm.program import (
    FAULTABLE_OPS,
    FD_KINDS,
    OPS,
    ExecutorError,
    Fixture,
    Op,
    Program,
    ProgramResult,
    decode_reply,
    digest,
    pattern,
    pattern_byte,
)

EXECUTOR_SOURCE = Path(__file__).resolve().parent.parent / "vm" / "executor" / "zcexec.c"

ROUND_TRIPS = [
    {"fds": [], "ops": []},
    {
        "sysno": {"sendfile2": 467},
        "fds": [
            {"name": "src", "kind": "file", "size": 65536, "seed": 1},
            {"name": "sock", "kind": "tcp4", "zerocopy": True, "nonblock": True, "sndbuf": 8192},
            {"name": "p", "kind": "pipe"},
        ],
        "ops": [
            {"op": "sendfile2", "out": "sock", "in": "src", "offset": 0, "count": 512, "flags": 2},
            {"op": "splice", "in": "p.r", "off_in": None, "out": "sock", "off_out": None, "len": -1,
             "flags": 0x10},
            {"op": "sendfile64", "out": "sock", "in": "src", "offset": "protnone", "count": 2**64 - 1},
            {"op": "peer_read", "fd": "sock", "max": 65536},
            {"op": "drain", "fd": "sock", "wait_ms": 50},
        ],
    },
    {
        "fds": [{"name": "s", "kind": "tcp4", "zerocopy": True}, {"name": "f", "kind": "file"}],
        "ops": [
            {"op": "sendfile64", "out": "s", "in": "f", "offset": 0, "count": 1, "fail_nth": 3},
            {"op": "sendmsg", "fd": "s", "len": 1, "flags": 0x4000000, "thread": 1},
            {"op": "close", "fd": "s", "fail_nth": 1, "thread": 1},
        ],
    },
    {
        "timeout_ms": 100, "settle_ms": 0, "memlock": 0,
        "fds": [{"name": "x", "kind": kind} for kind in ["invalid"]],
        "ops": [{"op": "lkdtm", "crash": "WARNING"}, {"op": "close", "fd": "x"}],
    },
]


@pytest.mark.parametrize("obj", ROUND_TRIPS)
def test_json_round_trip(obj):
    program = Program.from_json(obj)
    again = Program.from_json(program.to_json())
    assert again == program
    assert hash(again) == hash(program)
    assert again.to_json() == program.to_json()


def test_defaults_are_filled_and_omitted():
    program = Program.from_json({"fds": [{"name": "s", "kind": "tcp4"}],
                                 "ops": [{"op": "drain", "fd": "s"}]})
    assert program.ops[0]["wait_ms"] == 0
    assert program.fds[0].size == 4096
    assert program.to_json()["fds"] == [{"name": "s", "kind": "tcp4"}]


BAD_PROGRAMS = [
    ([], "top level: expected an object"),
    ({"fds": []}, "missing field 'ops'"),
    ({"fds": [], "ops": [], "extra": 1}, "unknown field 'extra'"),
    ({"fds": [{"name": "a", "kind": "socket"}], "ops": []}, "unknown kind 'socket'"),
    ({"fds": [{"name": "a", "kind": "file", "colour": 1}], "ops": []}, "unknown field 'colour'"),
    ({"fds": [{"name": "a", "kind": "file", "size": "big"}], "ops": []}, "size: expected an integer"),
    ({"fds": [{"name": "a", "kind": "file", "seed": 256}], "ops": []}, "seed: 256 is outside [0, 255]"),
    ({"fds": [{"name": "a", "kind": "tcp4", "zerocopy": 1}], "ops": []}, "zerocopy: expected true or false"),
    ({"fds": [{"name": "a b", "kind": "file"}], "ops": []}, "name must be"),
    ({"fds": [{"name": "a", "kind": "file"}, {"name": "a", "kind": "pipe"}], "ops": []}, "duplicate name 'a'"),
    ({"fds": [], "ops": [{"op": "sendfile3"}]}, "unknown op 'sendfile3'"),
    ({"fds": [], "ops": [{"op": "close"}]}, "missing field 'fd'"),
    ({"fds": [], "ops": [{"op": "close", "fd": "nope"}]}, "no fd named 'nope'"),
    ({"fds": [{"name": "p", "kind": "pipe"}], "ops": [{"op": "close", "fd": "p"}]}, "use 'p.r' or 'p.w'"),
    ({"fds": [{"name": "s", "kind": "tcp4"}], "ops": [{"op": "close", "fd": "s", "len": 1}]},
     "unknown field 'len'"),
    ({"fds": [{"name": "s", "kind": "tcp4"}], "ops": [{"op": "write", "fd": "s", "len": True}]},
     "write.len: expected an integer"),
    ({"fds": [{"name": "s", "kind": "tcp4"}], "ops": [{"op": "write", "fd": "s", "len": 2**64}]},
     "is outside"),
    ({"fds": [{"name": "f", "kind": "file"}, {"name": "s", "kind": "tcp4"}],
      "ops": [{"op": "sendfile64", "out": "s", "in": "f", "offset": "somewhere", "count": 1}]},
     "expected null, an integer or one of unmapped"),
    ({"fds": [], "ops": [{"op": "lkdtm", "crash": "warning; reboot"}]}, "LKDTM crash type"),
    ({"sysno": {"sendfile3": 1}, "fds": [], "ops": []}, "unknown syscall 'sendfile3'"),
    ({"timeout_ms": 0, "fds": [], "ops": []}, "timeout_ms: 0 is outside"),
    *[({"fds": [{"name": "s", "kind": "tcp4"}], "ops": [{"op": "write", "fd": "s", "len": 1, **how}]}, message)
      for how, message in [
          ({"fail_nth": 0}, "ops[0] write.fail_nth: expected a positive integer"),
          ({"fail_nth": -2}, "write.fail_nth: expected a positive integer"),
          ({"fail_nth": True}, "write.fail_nth: expected a positive integer"),
          ({"fail_nth": "3"}, "write.fail_nth: expected a positive integer"),
          ({"fail_nth": 2**31}, "write.fail_nth: expected a positive integer"),
          ({"thread": 2}, "ops[0] write.thread: expected 0 or 1, got 2"),
          ({"thread": True}, "write.thread: expected 0 or 1, got true"),
          ({"thread": None}, "write.thread: expected 0 or 1, got null"),
      ]],
    ({"fds": [{"name": "s", "kind": "tcp4"}], "ops": [{"op": "drain", "fd": "s", "fail_nth": 1}]},
     "drain.fail_nth: drain is not one system call; fail_nth applies to sendfile2"),
    ({"fds": [], "ops": [{"op": "lkdtm", "crash": "WARNING", "fail_nth": 1}]}, "lkdtm is not one system call"),
]


@pytest.mark.parametrize("obj, message", BAD_PROGRAMS)
def test_validation_errors_are_one_line(obj, message):
    with pytest.raises(UserError) as caught:
        Program.from_json(obj)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_wire_line():
    program = Program.from_json(ROUND_TRIPS[1])
    assert program.encode() == (
        "program 467 2000 200 8388608"
        " ; fd src file 0 0 0 65536 1 ; fd sock tcp4 1 1 8192 4096 0 ; fd p pipe 0 0 0 4096 0"
        " ; op sendfile2 2 0 0 512 2 ; op splice 4 null 2 null -1 16"
        " ; op sendfile64 2 0 protnone 18446744073709551615 ; op peer_read 2 65536 ; op drain 2 50\n"
    )
    assert Program.from_json({"fds": [], "ops": []}).encode().startswith("program -1 ")


def test_fail_nth_and_thread_are_words_after_the_arguments_and_only_when_set():
    program = Program.from_json(ROUND_TRIPS[2])
    assert program.encode().split(" ; ")[3:] == [
        "op sendfile64 0 2 0 1 fail_nth=3", "op sendmsg 0 1 67108864 thread=1", "op close 0 fail_nth=1 thread=1\n"]
    assert program.to_json()["ops"][1] == {"op": "sendmsg", "fd": "s", "len": 1, "flags": 0x4000000, "thread": 1}


def test_ops_made_in_python_are_checked_as_program_files_are():
    with pytest.raises(UserError, match="peer_read.fail_nth: peer_read is not one system call"):
        Op("peer_read", (("fd", "s"), ("max", 1)), fail_nth=1)
    with pytest.raises(UserError, match="write.thread: expected 0 or 1"):
        Op("write", (("fd", "s"), ("len", 1)), thread=-1)
    assert Op.make("write", fd="s", len=1, thread=1, fail_nth=2) == Op("write", (("fd", "s"), ("len", 1)), 2, 1)


def c_table(name: str) -> str:
    """The body of a static array in the executor's source."""
    source = EXECUTOR_SOURCE.read_text()
    return re.search(name + r"\[[^]]*\] = \{(.*?)\n\};", source, re.S).group(1)


def test_executor_tables_match_the_python_ones():
    letters = {"fd": "f", "offset": "o", "int": "i", "crash": "c"}
    rows = re.findall(r'\{"(\w+)", "(\w+)",.*, (\d)\},', c_table("op_specs"))
    assert {name: letters for name, letters, _ in rows} == {
        name: "".join(letters[f.type] for f in spec.fields) for name, spec in OPS.items()}
    assert {name for name, _, one_call in rows if one_call == "1"} == set(FAULTABLE_OPS)
    assert re.findall(r'"(\w+)"', c_table("kind_names")) == list(FD_KINDS)


PATTERN_BYTES = [
    # (index, seed, byte) from the formula in vm/PROGRAM.md, worked by hand
    (0, 0, 0),
    (1, 0, 31),
    (1, 1, 32),
    (255, 0, 225),  # 255 * 31 = 7905
    (256, 0, 31),  # (256 ^ 1) * 31 = 7967
    (65536, 7, 38),  # (65536 ^ 256 ^ 1) * 31 + 7 = 2039590
]


@pytest.mark.parametrize("index, seed, expected", PATTERN_BYTES)
def test_pattern_byte(index, seed, expected):
    assert pattern_byte(index, seed) == expected
    assert pattern(seed, index, 1) == bytes([expected])


@given(st.integers(0, 255), st.integers(0, 1 << 25), st.integers(0, 3000))
def test_pattern_is_the_formula_byte_by_byte_across_block_boundaries(seed, start, length):
    assert pattern(seed, start, length) == bytes(pattern_byte(i, seed) for i in range(start, start + length))


DIGESTS = [
    # CRC-32 check values (the "123456789" one is the catalogue's)
    (b"", "00000000"),
    (b"a", "e8b7be43"),
    (b"123456789", "cbf43926"),
]


@pytest.mark.parametrize("data, expected", DIGESTS)
def test_digest(data, expected):
    assert digest(data) == expected


def test_op_make_and_fixture_names():
    op = Op.make("write", fd="p.w", len=10)
    assert op["len"] == 10 and op.to_json() == {"op": "write", "fd": "p.w", "len": 10}
    assert Fixture("p", "pipe").fd_names == ("p.r", "p.w")
    assert Fixture("s", "tcp6").fd_names == ("s",)


RESULT = {
    "fixture_errors": [{"name": "d", "errno": 19, "reason": "SO_BINDTODEVICE dummy0: No such device"}],
    "reused": ["s"],
    "ops": [
        {"op": "sendfile64", "ret": -1, "errno": 9, "timed_out": False, "ns": 10},
        {"op": "drain", "fd": "s", "ret": 1, "errno": 0, "timed_out": False, "ns": 10,
         "notifications": [{"errno": 0, "origin": 5, "type": 0, "code": 1, "lo": 0, "hi": 0}]},
    ],
    "final": {"peers": {"s": {"bytes": 3, "digest": "000000ff"}},
              "notifications": {"s": [{"errno": 0, "origin": 5, "type": 0, "code": 1, "lo": 1, "hi": 1}]}},
}


THREADED_RESULT = dict(RESULT, thread_cpus=[0, 1], ops=[
    {"op": "sendfile2", "ret": -1, "errno": 12, "timed_out": False, "ns": 30, "thread": 0, "start_ns": 100,
     "end_ns": 130, "fault_injected": True},
    {"op": "sendmsg", "ret": 10, "errno": 0, "timed_out": False, "ns": 20, "thread": 1, "start_ns": 120,
     "end_ns": 140},
    {"op": "drain", "fd": "s", "ret": 0, "errno": 0, "timed_out": False, "ns": 5, "thread": 0, "start_ns": 130,
     "end_ns": 135, "notifications": []},
    {"op": "write", "ret": 1, "errno": 0, "timed_out": False, "ns": 5, "thread": 1, "start_ns": 150,
     "end_ns": 155, "fault_injected": False, "skipped_fault": "no fail-nth"},
])


def test_result_says_which_faults_were_injected_and_which_calls_overlapped():
    result = decode_reply(json.dumps(THREADED_RESULT))
    assert [result.fault_injected(i) for i in range(4)] == [True, False, False, False]
    assert result.overlapped(0, 1) and result.overlapped(1, 2) and result.overlapped(2, 1)
    assert not result.overlapped(0, 2)  # one ended when the other started
    assert not result.overlapped(1, 3)
    assert ProgramResult.from_json(result.to_json()) == result and result.thread_cpus == [0, 1]


def test_result_accessors():
    result = decode_reply(json.dumps(RESULT))
    assert (result.ret(0), result.errno(0), result.errno_name(0), result.errno_name(1)) == (-1, 9, "EBADF", "OK")
    assert result.peer_bytes("s") == 3 and result.peer_digest("s") == "000000ff"
    assert [n["lo"] for n in result.notifications("s")] == [0, 1]
    assert [n["lo"] for n in result.final_notifications("s")] == [1]
    assert result.fixture_error("d") == 19 and result.fixture_error("s") is None
    assert ProgramResult.from_json(result.to_json()) == result


@pytest.mark.parametrize("line, message", [
    ('{"error": "unknown op x"}', "executor: unknown op x"),
    ("Kernel panic", "not JSON"),
    ("[1]", "executor sent"),
    ('{"ops": [' + '{"ret": 1}, ' * 100 + '{"ret": 2 "broken": 3}]}', 'column 1219.*"ret": 2 "broken"'),
])
def test_error_replies_raise(line, message):
    with pytest.raises(ExecutorError, match=message):
        decode_reply(line)
