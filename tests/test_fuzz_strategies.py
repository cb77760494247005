"""Strategies make programs that vm.program accepts, and lean toward the zerocopy paths."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import Phase, given, settings
from zcfuzz.conformance.abi import MSG_ZEROCOPY, ZEROCOPY_KINDS, Abi
from zcfuzz.fuzz.profiles import profile
from zcfuzz.fuzz.strategies import programs
from zcfuzz.vm.program import NIC_KINDS, Program

RFC = Abi(nr_sendfile2=467, sendfile_default=1, sendfile_zc=2, splice_zc=0x10, revision="rfc-v1")
HOST = Abi()  # a kernel without the proposal: no sendfile2, no SPLICE_F_ZC


@pytest.mark.parametrize("abi", [RFC, HOST], ids=["rfc", "host"])
def test_programs_are_valid_and_round_trip(abi):
    @settings(profile("ci"), max_examples=40)
    @given(programs(abi))
    def check(program):
        assert Program.from_json(program.to_json()) == program
        assert program.encode().startswith("program ")
        assert (program.sysno_of("sendfile2") is not None) == abi.has_sendfile2
        if not abi.has_sendfile2:
            assert all(op.op != "sendfile2" for op in program.ops)

    check()


def zc_on_socket(program: Program) -> bool:
    return any(op.op == "sendfile2" and op["flags"] == RFC.sendfile_zc
               and program.fixture(op["out"]).kind in ZEROCOPY_KINDS for op in program.ops)


INTERESTING = {
    "sendfile2 ZC on a TCP/UDP socket": zc_on_socket,
    "sendfile2 flags 0 (parity with sendfile64)": lambda p: any(
        op.op == "sendfile2" and op["flags"] == 0 for op in p.ops),
    "splice ZC from a pipe to a socket": lambda p: any(
        op.op == "splice" and op["flags"] == 0x10 and op["in"].endswith(".r") for op in p.ops),
    "sendmsg(MSG_ZEROCOPY) then a drain": lambda p: any(
        a.op == "sendmsg" and a["flags"] & MSG_ZEROCOPY and b.op == "drain" for a, b in zip(p.ops, p.ops[1:])),
    "an unknown sendfile2 flag bit": lambda p: any(op.op == "sendfile2" and op["flags"] & ~3 for op in p.ops),
    "O_NONBLOCK socket with a small SO_SNDBUF": lambda p: any(f.nonblock and f.sndbuf for f in p.fds),
    "a non-socket out fd for ZC": lambda p: any(
        op.op == "sendfile2" and op["flags"] & 2 and not p.fixture(op["out"]).spec.socket for op in p.ops),
    "sendfile2 ZC across the NIC": lambda p: any(
        op.op == "sendfile2" and op["flags"] == 2 and p.fixture(op["out"]).kind in NIC_KINDS for op in p.ops),
    "a peer held back, then let go": lambda p: any(
        a.op == "peer_hold" and b.op == "peer_release" for a, b in itertools.combinations(p.ops, 2)),
    **{f"the source rewritten by {name} after a drain": (lambda name: lambda p: any(
        a.op == "drain" and b.op == name for a, b in zip(p.ops, p.ops[1:])))(name)
       for name in ("pwrite", "truncate", "mmap_write")},
}


def test_by_default_no_op_is_faulted_or_threaded():
    """Today's oracles judge neither (see programs' docstring): they stay off unless asked for."""
    @settings(profile("ci"), max_examples=100, phases=[Phase.generate])
    @given(programs(RFC))
    def check(program):
        assert all(op.fail_nth == 0 and op.thread == 0 for op in program.ops)

    check()


def id_give_back_race(program: Program) -> bool:
    """A ZC sendfile2 that sends nothing on thread 0 and a thread-1 sendmsg(MSG_ZEROCOPY) on its socket."""
    sends_nothing = {op["out"] for op in program.ops if op.op == "sendfile2" and op.thread == 0
                     and op["flags"] == RFC.sendfile_zc and op["offset"] == program.fixture("src").size}
    return any(op.op == "sendmsg" and op.thread == 1 and op["flags"] == MSG_ZEROCOPY and op["fd"] in sends_nothing
               for op in program.ops)


FAULTS_AND_THREADS = {
    "a faulted sendfile2 ZC": lambda p: any(op.op == "sendfile2" and op.fail_nth and op["flags"] == 2 for op in p.ops),
    "a faulted sendmsg(MSG_ZEROCOPY)": lambda p: any(
        op.op == "sendmsg" and op.fail_nth and op["flags"] & MSG_ZEROCOPY for op in p.ops),
    "a fault deep in a call": lambda p: any(op.fail_nth > 8 for op in p.ops),
    "ops on both threads": lambda p: {op.thread for op in p.ops} == {0, 1},
    "the id give-back race": id_give_back_race,
}


def test_faults_and_threads_when_asked_for():
    reached = set()

    @settings(profile("ci"), max_examples=200, phases=[Phase.generate])
    @given(programs(RFC, faults_and_threads=True))
    def collect(program):
        assert Program.from_json(program.to_json()) == program
        assert all(op.spec.one_call for op in program.ops if op.fail_nth)
        reached.update(name for name, predicate in FAULTS_AND_THREADS.items() if predicate(program))

    collect()
    assert reached == set(FAULTS_AND_THREADS)


def test_generation_reaches_the_interesting_cases():
    reached = set()

    @settings(profile("ci"), max_examples=400, phases=[Phase.generate])
    @given(programs(RFC))
    def collect(program):
        reached.update(name for name, predicate in INTERESTING.items() if predicate(program))

    collect()
    assert reached == set(INTERESTING)
