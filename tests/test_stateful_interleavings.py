"""Long interleavings on one or two sockets as a Hypothesis RuleBasedStateMachine.

State carries across steps by replay: the machine accumulates ops and, at each step, runs the
whole growing program on fresh fixtures (programs stay short: `stateful_step_count`). After
each step the invariants hold on what has run so far: no id notified twice, none that the
counter model did not hand out; at teardown, the full accounting oracle (none lost either).

It lives with its test: it checks that the oracles hold on a real kernel's long interleavings
(the host's), where a false finding would show first.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from zcfuzz.conformance.abi import MSG_ZEROCOPY, Abi
from zcfuzz.conformance.oracles import (
    CounterModel,
    Violation,
    accounting,
    notification_records,
    zerocopy_calls,
)
from zcfuzz.fuzz.campaign import confirmation_program
from zcfuzz.fuzz.profiles import profile
from zcfuzz.fuzz.strategies import (
    SOURCE,
    counts,
    file_sizes,
    offsets,
    read_sizes,
    zerocopy_sockets,
)
from zcfuzz.vm.backends import open_target
from zcfuzz.vm.program import Fixture, Op, Program
from zcfuzz.vm.target import Target

SOCKETS = ("sock", "sock2")


class ViolationFound(AssertionError):
    """An oracle spoke: the message lists the violations."""


def machine_for(target: Target) -> type[RuleBasedStateMachine]:
    """A state machine class bound to `target` (Hypothesis builds instances itself)."""
    info = target.kernel_info()
    abi = Abi.from_kernel_info(info)

    class ZerocopyInterleavings(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.fixtures: tuple[Fixture, ...] = ()
            self.ops: list[Op] = []
            self.program: Program | None = None
            self.result = None

        @precondition(lambda self: not self.fixtures)
        @rule(size=file_sizes(), first=zerocopy_sockets("sock"), second=st.none() | zerocopy_sockets("sock2"),
              pipe=st.booleans())
        def build(self, size, first, second, pipe):
            fixtures = [Fixture(SOURCE, "file", size=size, seed=7), first]
            if second is not None:
                fixtures.append(second)
            if pipe:
                fixtures.append(Fixture("p", "pipe"))
            self.fixtures = tuple(fixtures)

        def sockets(self) -> tuple[str, ...]:
            return tuple(f.name for f in self.fixtures if f.name in SOCKETS)

        def step(self, op: Op) -> None:
            self.ops.append(op)
            sysno = (("sendfile2", abi.nr_sendfile2),) if abi.has_sendfile2 else ()
            self.program = Program(fds=self.fixtures, ops=tuple(self.ops), sysno=sysno, timeout_ms=300,
                                   settle_ms=20)
            self.result = target.run(self.program)

        @precondition(lambda self: self.fixtures and abi.has_sendfile2)
        @rule(which=st.integers(0, 1), offset=offsets(65536), count=counts(), zc=st.booleans())
        def sendfile2(self, which, offset, count, zc):
            flags = abi.sendfile_zc if zc and abi.sendfile_zc else 0
            self.step(Op.make("sendfile2", out=self.pick(which), **{"in": SOURCE}, offset=offset, count=count,
                              flags=flags))

        @precondition(lambda self: self.fixtures)
        @rule(which=st.integers(0, 1), offset=offsets(65536), count=counts())
        def sendfile64(self, which, offset, count):
            self.step(Op.make("sendfile64", out=self.pick(which), **{"in": SOURCE}, offset=offset, count=count))

        @precondition(lambda self: any(f.kind == "pipe" for f in self.fixtures))
        @rule(which=st.integers(0, 1), length=st.sampled_from([1, 100, 4096, 65536]))
        def splice_zc(self, which, length):
            self.ops.append(Op.make("splice", **{"in": SOURCE}, off_in=0, out="p.w", off_out=None, len=length,
                                    flags=0))
            self.step(Op.make("splice", **{"in": "p.r"}, off_in=None, out=self.pick(which), off_out=None,
                              len=length, flags=abi.splice_zc or 0))

        @precondition(lambda self: self.fixtures)
        @rule(which=st.integers(0, 1), length=st.sampled_from([0, 1, 100, 4096, 65536]))
        def sendmsg_zc(self, which, length):
            self.step(Op.make("sendmsg", fd=self.pick(which), len=length, flags=MSG_ZEROCOPY))

        @precondition(lambda self: self.fixtures)
        @rule(which=st.integers(0, 1), size=read_sizes())
        def peer_read(self, which, size):
            sock = self.pick(which)
            if self.fixture(sock).kind != "udp_dummy":
                self.step(Op.make("peer_read", fd=sock, max=size))

        @precondition(lambda self: self.fixtures)
        @rule(which=st.integers(0, 1))
        def drain(self, which):
            self.step(Op.make("drain", fd=self.pick(which)))

        @precondition(lambda self: self.fixtures)
        @rule(which=st.integers(0, 1), value=st.sampled_from([0, 1]))
        def toggle_zerocopy(self, which, value):
            self.step(Op.make("setsockopt_zerocopy", fd=self.pick(which), value=value))

        def pick(self, which: int) -> str:
            names = self.sockets()
            return names[which % len(names)]

        def fixture(self, name: str) -> Fixture:
            return next(f for f in self.fixtures if f.name == name)

        @invariant()
        def ids_are_notified_once_and_only_when_handed_out(self):
            if self.result is None:
                return
            for sock in self.sockets():
                handed_out = set(CounterModel().notified_ids(zerocopy_calls(self.program, self.result, abi, sock)))
                seen: list[int] = []
                for record in notification_records(self.program, self.result, sock):
                    seen += range(record["lo"], record["hi"] + 1)
                assert len(seen) == len(set(seen)), f"{sock}: an id was notified twice: {sorted(seen)}"
                assert set(seen) <= handed_out, f"{sock}: ids {sorted(set(seen) - handed_out)} never handed out"

        def teardown(self):
            if self.result is not None and accounting(self.program, self.result, abi):
                # As a campaign confirms: a completion later than this program waited is not lost.
                again = confirmation_program(self.program)
                found: list[Violation] = accounting(again, target.run(again), abi)
                if found:
                    raise ViolationFound("; ".join(v.message for v in found))

    return ZerocopyInterleavings




@pytest.mark.host
def test_interleavings_on_the_host_kernel():
    with open_target("host") as target:
        machine = machine_for(target)
        runs = []
        original = target.run

        def counting_run(program):
            runs.append(program)
            return original(program)

        target.run = counting_run
        machine.TestCase.settings = settings(profile("ci"), max_examples=8, stateful_step_count=6)
        machine.TestCase().runTest()
    assert runs, "no step ran a program"
    assert max(len(p.ops) for p in runs) > 1  # steps accumulate into one growing program
