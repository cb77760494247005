"""The oracles on hand-written results: each defect gives exactly its violation, clean gives none."""

from __future__ import annotations

from dataclasses import replace
from errno import EAGAIN, EBADF, ECONNRESET, EFAULT, EINTR, EINVAL, ENOBUFS, ENOMEM, EPIPE

import pytest
from zcfuzz.conformance import oracles
from zcfuzz.conformance.abi import MSG_DONTWAIT, MSG_MORE, MSG_ZEROCOPY, Abi
from zcfuzz.vm.program import Program, ProgramResult, digest, pattern
from zcfuzz.vm.target import Target

ABI = Abi(nr_sendfile2=467, sendfile_default=1, sendfile_zc=2, splice_zc=0x10, revision="v2")
KERNEL_INFO = {"nr_sendfile2": 467, "sendfile_flags": {"SENDFILE_DEFAULT": 1, "SENDFILE_ZC": 2},
               "splice_flags": {"SPLICE_F_MOVE": 1, "SPLICE_F_NONBLOCK": 2, "SPLICE_F_MORE": 4,
                                "SPLICE_F_GIFT": 8, "SPLICE_F_ZC": 0x10}}
ZC = ABI.sendfile_zc


def program(*ops: dict, sock: str = "tcp4", nonblock: bool = False) -> Program:
    return Program.from_json({
        "sysno": {"sendfile2": 467},
        "fds": [{"name": "src", "kind": "file", "size": 65536, "seed": 3},
                {"name": "sock", "kind": sock, "zerocopy": True, "nonblock": nonblock},
                {"name": "p", "kind": "pipe"}],
        "ops": list(ops),
    })


def sendfile2(flags: int = ZC, count: int = 512, offset: int | None = 0) -> dict:
    return {"op": "sendfile2", "out": "sock", "in": "src", "offset": offset, "count": count, "flags": flags}


def sendfile64(count: int = 512) -> dict:
    return {"op": "sendfile64", "out": "sock", "in": "src", "offset": 0, "count": count}


def splice_zc(length: int = 100) -> dict:
    return {"op": "splice", "in": "p.r", "off_in": None, "out": "sock", "off_out": None, "len": length,
            "flags": 0x10}


def sendmsg_zc(length: int = 100) -> dict:
    return {"op": "sendmsg", "fd": "sock", "len": length, "flags": MSG_ZEROCOPY}


def done(ret: int, errno: int = 0, timed_out: bool = False, offset: int | None = 0,
         in_size: int | None = None) -> dict:
    after = None if offset is None else offset + max(ret, 0)
    return {"ret": ret, "errno": errno, "timed_out": timed_out, "offset_before": offset, "offset_after": after,
            "in_pos_before": 0, "in_pos_after": 0, "out_pos_before": None, "out_pos_after": None,
            "in_size_after": in_size}


def note(lo: int, hi: int, copied: bool = True) -> dict:
    return {"errno": 0, "origin": 5, "type": 0, "code": int(copied), "lo": lo, "hi": hi}


def result(*ops: dict, notes: list[dict] = (), peer: bytes | None = None) -> ProgramResult:
    peers = {} if peer is None else {"sock": {"bytes": len(peer), "digest": digest(peer)}}
    return ProgramResult.from_json({"ops": list(ops), "final": {"peers": peers, "notifications": {"sock": list(notes)}}})


ACCOUNTING_CASES = {
    "clean sendfile2": (program(sendfile2()), result(done(512), notes=[note(0, 0)]), []),
    "clean mixed, coalesced": (
        program(sendmsg_zc(), sendfile2(), splice_zc()),
        result(done(100), done(512), done(100), notes=[note(0, 2)]), []),
    "lost id": (program(sendfile2()), result(done(512)), [("ZC-NOTIFY-ONCE", 0)]),
    "duplicate": (program(sendfile2()), result(done(512), notes=[note(0, 0), note(0, 0)]),
                  [("ZC-NOTIFY-ONCE", None)]),
    "gap after failure": (
        program(sendfile2(), sendfile2()),
        result(done(-1, EAGAIN), done(512), notes=[note(1, 1)]), [("ZC-ID-NOT-ON-FAILURE", 0)]),
    "gap after zero bytes": (
        program(sendfile2(count=0), sendfile2()),
        result(done(0), done(512), notes=[note(1, 1)]), [("ZC-ID-NOT-ON-FAILURE", 0)]),
    "splice gives no notification": (
        program(splice_zc(), sendfile2()), result(done(100), done(512), notes=[note(0, 0)]),
        [("SPLICE-ZC-PIPE-TO-SOCKET", 0)]),
    "invented id": (program(sendfile2(flags=0)), result(done(512), notes=[note(0, 0)]),
                    [("ZC-ID-ONCE", None)]),
    "copied clear on loopback": (program(sendfile2()), result(done(512), notes=[note(0, 0, copied=False)]),
                                 [("ZC-COPIED-LOOPBACK", None)]),
    "one loopback range without COPIED": (program(sendmsg_zc(65536), sendmsg_zc(1)),
                                          result(done(65536), done(1), notes=[note(0, 0), note(1, 1, copied=False)]),
                                          []),
    "copied set through dummy0": (program(sendfile2(), sock="udp_dummy"),
                                  result(done(512), notes=[note(0, 0, copied=True)]),
                                  [("ZC-TRUE-ZEROCOPY-DUMMY", None)]),
    "clean through dummy0": (program(sendfile2(), sock="udp_dummy"),
                             result(done(512), notes=[note(0, 0, copied=False)]), []),
    "corked datagram, then a splice at EOF that sends nothing": (
        program(dict(sendmsg_zc(), flags=MSG_ZEROCOPY | MSG_MORE), splice_zc(), sock="udp_dummy"),
        result(done(100), done(0)), []),
    "corked datagram, then an empty datagram that pushes it": (
        program(dict(sendmsg_zc(), flags=MSG_ZEROCOPY | MSG_MORE), sendmsg_zc(0), sock="udp_dummy"),
        result(done(100), done(0)), [("MSGZC-OPT-IN", 0)]),
    "an empty append to a corked datagram takes no id": (
        program(dict(sendmsg_zc(0), flags=MSG_ZEROCOPY | MSG_MORE), sendmsg_zc(0), splice_zc(4095), sock="udp4"),
        result(done(0), done(0), done(4095), notes=[note(0, 1)]), []),
    "a sendfile the timer cut short corks its datagram; an empty append takes no id": (
        program(sendfile2(count=4095), sendmsg_zc(0), sock="udp4"),
        result(done(1, timed_out=True, in_size=65536), done(0), notes=[note(0, 0)]), []),
    "a sendfile stopped short by a failed send discards its datagram; an empty datagram takes an id": (
        program(sendfile2(count=65536, offset=29), sendmsg_zc(0), sock="udp4"),
        result(done(65507, offset=29, in_size=65553), done(0), notes=[note(0, 1)]), []),
    "after a sendfile stopped short by a failed send, one id for the two calls": (
        program(sendfile2(count=65536, offset=29), sendmsg_zc(0), sock="udp4"),
        result(done(65507, offset=29, in_size=65553), done(0), notes=[note(0, 0)]), [("ZC-NOTIFY-ONCE", 0)]),
    "a sendfile stopped short with a fault injected may keep its datagram: either id set holds": (
        program(dict(sendfile2(count=4095), fail_nth=2), sendmsg_zc(0), sock="udp4"),
        result(done(1, in_size=65536), done(0), notes=[note(0, 0)]), []),
    "a sendfile stopped short with a fault injected may have discarded its datagram": (
        program(dict(sendfile2(count=4095), fail_nth=2), sendmsg_zc(0), sock="udp4"),
        result(done(1, in_size=65536), done(0), notes=[note(0, 1)]), []),
    "a send that failed while a datagram waited may have discarded it: either id set holds": (
        program(dict(sendmsg_zc(8), flags=MSG_ZEROCOPY | MSG_MORE), sendmsg_zc(70000), sendmsg_zc(0),
                sock="udp4"),
        result(done(8), done(-1, errno=EINVAL), done(0), notes=[note(0, 1)]), []),
    "a sendfile that ran out of file pushes its IPv4 datagram; an empty datagram takes an id": (
        program(sendfile2(count=4095, offset=65535), sendmsg_zc(0), sock="udp4"),
        result(done(1, offset=65535, in_size=65536), done(0), notes=[note(0, 1)]), []),
    "one id for a sendfile that ran out of file and the empty IPv4 datagram after it": (
        program(sendfile2(count=4095, offset=65535), sendmsg_zc(0), sock="udp4"),
        result(done(1, offset=65535, in_size=65536), done(0), notes=[note(0, 0)]), [("ZC-NOTIFY-ONCE", 0)]),
    "a sendfile that ran out of file leaves its IPv6 datagram corked (no splice_eof)": (
        program(sendfile2(count=4095, offset=65535), sendmsg_zc(0), sock="udp6"),
        result(done(1, offset=65535, in_size=65536), done(0), notes=[note(0, 0)]), []),
    "copied set through dummy0 on a datagram a sendfile that ran out of file sent with MSG_MORE": (
        program(sendfile2(count=5, offset=65535), sock="udp_dummy"),
        result(done(1, offset=65535, in_size=65536), notes=[note(0, 0, copied=True)]), []),
    "copied clear on loopback when the peer closed before reading": (
        program(sendfile2(), {"op": "peer_close", "fd": "sock"}),
        result(done(512), done(0), notes=[note(0, 0, copied=False)]), []),
    "malformed range": (program(sendfile2()), result(done(512), notes=[note(0, 0), note(3, 1)]),
                        [("ZC-RANGE-COALESCE", None)]),
}


@pytest.mark.parametrize("case", ACCOUNTING_CASES)
def test_accounting(case):
    prog, res, expected = ACCOUNTING_CASES[case]
    found = oracles.accounting(prog, res, ABI)
    assert [(v.clause_id, v.op_index) for v in found] == expected, found
    assert all(v.oracle == "accounting" for v in found)


def test_sendmsg_without_so_zerocopy_takes_no_id():
    prog = program({"op": "setsockopt_zerocopy", "fd": "sock", "value": 0}, sendmsg_zc(), sendfile2())
    assert oracles.accounting(prog, result(done(0), done(100), done(512), notes=[note(0, 0)]), ABI) == []


PARITY_CASES = {
    "flags 0 matches": (sendfile2(flags=0), done(512), done(512), []),
    "SENDFILE_DEFAULT matches": (sendfile2(flags=1), done(512), done(512), []),
    "flags 0 differs": (sendfile2(flags=0), done(-1, EINVAL), done(512), [("SF2-PARITY-ERRNO", 0)]),
    "ZC moves fewer bytes": (sendfile2(), done(256), done(512), [("SF2-ZC-TRANSFER", 0)]),
    "ZC blocks where sendfile64 gives EAGAIN": (
        sendfile2(), done(-1, EINTR, timed_out=True), done(-1, EAGAIN), [("SF2-ZC-ERRNO", 0)]),
}


@pytest.mark.parametrize("case", PARITY_CASES)
def test_parity(case):
    op, ours, theirs, expected = PARITY_CASES[case]
    prog = program(op)
    twin, replaced = oracles.parity_twin(prog, ABI)
    assert twin.ops[0].op == "sendfile64" and twin.ops[0]["count"] == prog.ops[0]["count"]
    found = oracles.parity(prog, result(ours), result(theirs), replaced)
    assert [(v.clause_id, v.op_index) for v in found] == expected


def test_parity_leaves_out_a_datagram_whose_amount_is_unknown():
    """A call whose offset is on a read-only page moves data and fails with EFAULT, so how much
    it moved is unknown. On UDP, whether its datagram left (v2's ZC path pushes it) or waits for
    more (6.12's sendfile64) is not fixed by any ABI, so what the peers got does not compare; on
    TCP the same bytes reach the peer either way, unless the socket is non-blocking: then how
    much it took was the room it had (seen on v2 across the NIC: 117096 bytes against 139944)."""
    for sock, nonblock, expected in (("udp4", False, []), ("tcp4", False, ["SF2-ZC-TRANSFER"]), ("tcp4", True, [])):
        prog = program(sendfile2(count=4096, offset="readonly"), sock=sock, nonblock=nonblock)
        twin, replaced = oracles.parity_twin(prog, ABI)
        ours, theirs = done(-1, EFAULT, offset=None), done(-1, EFAULT, offset=None)
        found = oracles.parity(prog, result(ours, peer=pattern(3, 0, 4095)), result(theirs, peer=b""), replaced)
        assert [v.clause_id for v in found] == expected, sock


def test_parity_leaves_out_runs_that_parted_ways_before_the_first_replaced_call():
    """Seen on v2 across the NIC: the peer closed with bytes unread, then a plain sendmsg met
    its RST in one run and not yet in the other. The programs are the same up to the replaced
    call, so that is timing, and nothing after it compares; after the call it is a verdict."""
    send = {"op": "sendmsg", "fd": "sock", "len": 100, "flags": 0}
    prog = program(send, sendfile2())
    twin, replaced = oracles.parity_twin(prog, ABI)
    reset, sent = done(-1, ECONNRESET), done(100)
    assert oracles.parity(prog, result(sent, done(-1, EPIPE)), result(reset, done(-1, EPIPE)), replaced) == []
    after = program(sendfile2(), send)
    twin, replaced = oracles.parity_twin(after, ABI)
    found = oracles.parity(after, result(done(512), sent), result(done(512), reset), replaced)
    assert [(v.clause_id, v.op_index) for v in found] == [("SF2-ZC-ERRNO", 1)]


class SlowZerocopy(Target):
    """A kernel whose ZC sendfile2 needs `zc_ms` before it sends anything and sendfile64 250 ms."""

    name = "fake"

    def __init__(self, zc_ms: int):
        self.zc_ms, self.timeouts = zc_ms, []

    def kernel_info(self) -> dict:
        return KERNEL_INFO

    def run(self, prog):
        self.timeouts.append(prog.timeout_ms)
        need_ms = self.zc_ms if prog.ops[0].op == "sendfile2" else 250
        if need_ms > prog.timeout_ms:
            return result(done(-1, EINTR, timed_out=True, offset=None))
        return result(done(262144, offset=None))


def test_parity_leaves_out_where_a_blocking_send_met_a_peer_that_does_not_read():
    prog = program(sendfile2(count=1 << 20, offset=None))
    twin, replaced = oracles.parity_twin(prog, ABI)
    blocked, completed = done(255232, timed_out=True, offset=None), done(262144, offset=None)
    assert oracles.parity(prog, result(blocked), result(completed), replaced) == []
    blocked_before_sending = done(-1, EINTR, timed_out=True, offset=None)
    assert [v.clause_id for v in oracles.parity(prog, result(blocked_before_sending), result(completed),
                                                 replaced)] == ["SF2-ZC-TRANSFER"]


@pytest.mark.parametrize("zc_ms, expected", [(310, []), (10_000, [("SF2-ZC-TRANSFER", 0)])])
def test_parity_gives_calls_the_timer_cut_short_time_to_finish(zc_ms, expected):
    target, prog = SlowZerocopy(zc_ms), program(sendfile2(count=1 << 20, offset=None))
    verdict = oracles.judge(target, replace(prog, timeout_ms=300), ABI, KERNEL_INFO)
    assert [(v.clause_id, v.op_index) for v in verdict.violations] == expected
    assert target.timeouts == [300, 300, 3000, 3000]


def test_a_non_blocking_call_that_ran_into_the_timer_gets_no_rerun():
    """It is wrong however long it is given (the errno oracle's never-blocks), so no 3 s rerun."""
    prog = program(sendfile2(count=1 << 20, offset=None))
    prog = Program.from_json({**prog.to_json(), "timeout_ms": 300,
                              "fds": [{"name": "src", "kind": "file"}, {"name": "sock", "kind": "tcp4", "nonblock": True}]})
    target = SlowZerocopy(10_000)
    verdict = oracles.judge(target, prog, ABI, KERNEL_INFO)
    assert target.timeouts == [300, 300]
    assert ("SF2-NONBLOCK-EAGAIN", 0) in [(v.clause_id, v.op_index) for v in verdict.violations]


@pytest.mark.parametrize("flags, sock", [(0x80, "tcp4"), (ZC, "unix_stream"), (-1, "tcp4")])
def test_parity_leaves_calls_with_their_own_rules_alone(flags, sock):
    prog = Program.from_json({**program(sendfile2(flags=flags)).to_json(),
                              "fds": [{"name": "src", "kind": "file"}, {"name": "sock", "kind": sock}]})
    assert oracles.parity_twin(prog, ABI) is None


def test_parity_leaves_out_how_much_a_full_socket_took():
    fill = {"op": "sendmsg", "fd": "sock", "len": 4 << 20, "flags": MSG_DONTWAIT}
    read = {"op": "peer_read", "fd": "sock", "max": 1 << 24}
    prog = program(fill, fill, sendfile2(flags=0), read, nonblock=True)
    twin, replaced = oracles.parity_twin(prog, ABI)
    ours = result(done(2672640), done(-1, EAGAIN), done(-1, EAGAIN), done(2673864))
    theirs = result(done(2673024), done(-1, EAGAIN), done(-1, EAGAIN), done(2697309))
    assert oracles.parity(prog, ours, theirs, replaced) == []
    blocked = result(done(2672640), done(-1, EAGAIN), done(-1, EINTR, timed_out=True), done(2673864))
    assert [v.clause_id for v in oracles.parity(prog, blocked, theirs, replaced)] == ["SF2-NONBLOCK-EAGAIN"]


def test_parity_leaves_out_what_is_appended_to_a_corked_datagram():
    prog = program(sendfile2(count=65536), sendmsg_zc(100), sock="udp6")
    twin, replaced = oracles.parity_twin(prog, ABI)
    ours, theirs = result(done(65200), done(100)), result(done(65200), done(-1, 90))
    assert oracles.parity(prog, ours, theirs, replaced) == []
    assert [v.op_index for v in oracles.parity(prog, result(done(65000), done(100)), theirs, replaced)] == [0]


def test_parity_leaves_out_how_much_a_full_socket_took_from_a_compared_call():
    prog = program(sendfile2(count=65536), nonblock=True)
    twin, replaced = oracles.parity_twin(prog, ABI)
    assert oracles.parity(prog, result(done(40000)), result(done(40192)), replaced) == []
    assert [v.op_index for v in oracles.parity(prog, result(done(-1, EINTR, timed_out=True)),
                                               result(done(40192)), replaced)] == [0]


def test_parity_leaves_out_how_much_a_full_socket_took_from_a_sendfile64_before():
    """Seen on v2: a 1 MiB sendfile64 into a non-blocking TCP socket with SO_SNDBUF 4096 took
    47424 bytes, its twin 80165; whether the SENDFILE_DEFAULT call after it finds room, and how
    much, is the room left at that instant. That it does not block is fixed."""
    before = {"op": "sendfile64", "out": "sock", "in": "src", "offset": 0, "count": 1 << 20}
    prog = Program.from_json({"sysno": {"sendfile2": 467}, "fds": [
        {"name": "src", "kind": "file", "size": 1 << 20},
        {"name": "sock", "kind": "tcp4", "nonblock": True, "sndbuf": 4096}],
        "ops": [before, sendfile2(flags=1, count=1 << 20)]})
    twin, replaced = oracles.parity_twin(prog, ABI)
    ours, theirs = result(done(47424), done(-1, EAGAIN)), result(done(80165), done(-1, EAGAIN))
    assert oracles.parity(prog, ours, theirs, replaced) == []
    assert oracles.parity(prog, ours, result(done(80165), done(512)), replaced) == []
    blocked = result(done(47424), done(-1, EINTR, timed_out=True))
    assert [v.op_index for v in oracles.parity(prog, blocked, theirs, replaced)] == [1]


MIB = 1 << 20


def peer_read_after_zerocopy() -> Program:
    """The first false finding of issue 15, as the campaign recorded it."""
    return Program.from_json({
        "sysno": {"sendfile2": 467},
        "fds": [{"name": "src", "kind": "file", "size": 262144},
                {"name": "sock", "kind": "tcp4"},
                {"name": "odd", "kind": "file"}],
        "ops": [{"op": "sendfile2", "out": "sock", "in": "src", "offset": 28, "count": 2147479551, "flags": ZC},
                {"op": "drain", "fd": "sock", "wait_ms": 0},
                {"op": "sendmsg", "fd": "sock", "len": 1, "flags": MSG_ZEROCOPY},
                {"op": "peer_read", "fd": "sock", "max": 16 * MIB},
                {"op": "drain", "fd": "sock", "wait_ms": 0}],
    })


def peer_read_result(sent: int, read_at_once: int, received: bytes) -> ProgramResult:
    return result(done(sent, offset=28, in_size=262144), done(0), done(1), done(read_at_once), done(0),
                  peer=received)


def test_parity_leaves_out_how_much_a_non_blocking_peer_read_found():
    """v2, 3 replays of 3: the peer had 186468 bytes at that instant on the zerocopy path and
    262117 on the sendfile64 twin's; everything the ABI fixes is equal (calls, final peer bytes)."""
    prog = peer_read_after_zerocopy()
    twin, replaced = oracles.parity_twin(prog, ABI)
    received = pattern(0, 28, 262116) + pattern(0, 0, 1)
    ours, theirs = peer_read_result(262116, 186468, received), peer_read_result(262116, 262117, received)
    assert oracles.parity(prog, ours, theirs, replaced) == []
    # What the ABI fixes is still compared: the calls' results, and what the peer finally got.
    fewer = peer_read_result(262115, 186468, received[:-1])
    assert [(v.clause_id, v.op_index) for v in oracles.parity(prog, fewer, theirs, replaced)] == \
        [("SF2-ZC-TRANSFER", 0)]
    lost = peer_read_result(262116, 186468, received[:-1])
    assert [(v.clause_id, v.op_index) for v in oracles.parity(prog, lost, theirs, replaced)] == \
        [("SF2-ZC-TRANSFER", None)]


def test_blocking_sends_after_a_peer_read_still_compare():
    """A peer_read leaves the room timing, which a blocking call waits out: its count is fixed."""
    read = {"op": "peer_read", "fd": "sock", "max": 100}
    prog = program(read, sendfile2(), sendfile2(flags=0))
    twin, replaced = oracles.parity_twin(prog, ABI)
    theirs = result(done(0), done(512), done(512))
    assert oracles.parity(prog, result(done(0), done(512), done(512)), theirs, replaced) == []
    assert [v.op_index for v in oracles.parity(prog, result(done(0), done(500), done(512)), theirs, replaced)] == [1]


def test_errno_end_of_file_of_a_pipe_with_no_writer():
    """The second false finding of issue 15 (v2, 2 replays of 2): no writer left, so 0."""
    prog = Program.from_json({
        "sysno": {"sendfile2": 467},
        "fds": [{"name": "sock", "kind": "tcp4"}, {"name": "p", "kind": "pipe", "nonblock": True}],
        "ops": [{"op": "close", "fd": "p.w"},
                {"op": "splice", "in": "p.r", "off_in": None, "out": "sock", "off_out": None, "len": 1,
                 "flags": 0x10}],
    })
    assert oracles.errno_violations(prog, result(done(0, offset=None), done(0, offset=None)), KERNEL_INFO) == []
    eagain = result(done(0, offset=None), done(-1, EAGAIN, offset=None))
    assert [v.clause_id for v in oracles.errno_violations(prog, eagain, KERNEL_INFO)] == ["SPLICE-ZC-ERRNO"]


def test_parity_needs_sendfile2():
    assert oracles.parity_twin(program(sendfile2(flags=0)), Abi()) is None


DATA_CASES = {
    "exact bytes": (program(sendfile64(512)), result(done(512), peer=pattern(3, 0, 512)), 0),
    "from an offset": (program({**sendfile64(100), "offset": 1000}), result(done(100, offset=1000),
                                                                            peer=pattern(3, 1000, 100)), 0),
    "through a pipe": (
        program({"op": "splice", "in": "src", "off_in": 7, "out": "p.w", "off_out": None, "len": 50, "flags": 0},
                {"op": "sendmsg", "fd": "sock", "len": 10, "flags": 0},
                {"op": "splice", "in": "p.r", "off_in": None, "out": "sock", "off_out": None, "len": 50,
                 "flags": 0}),
        result(done(50, offset=7), done(10), done(50), peer=pattern(0, 0, 10) + pattern(3, 7, 50)), 0),
    "wrong offset": (program(sendfile64(512)), result(done(512), peer=pattern(3, 1, 512)), 1),
    "bytes missing": (program(sendfile64(512)), result(done(512), peer=pattern(3, 0, 511)), 1),
}


@pytest.mark.parametrize("case", DATA_CASES)
def test_data(case):
    prog, res, count = DATA_CASES[case]
    found = oracles.data(prog, res)
    assert len(found) == count and all((v.clause_id, v.detail) == ("SF64-COUNT", oracles.PEER_DATA) for v in found)


ERRNO_CASES = {
    "unknown flag accepted": (program(sendfile2(flags=0x80)), done(512), ["SF2-FLAGS-UNKNOWN"]),
    "unknown flag rejected": (program(sendfile2(flags=0x80)), done(-1, EINVAL), []),
    "ZC to a pipe accepted": (program({**sendfile2(), "out": "p.w"}), done(512), ["SF2-ZC-NON-SOCKET"]),
    "O_NONBLOCK ZC blocks": (program(sendfile2(), nonblock=True), done(-1, EINTR, timed_out=True),
                             ["SF2-NONBLOCK-EAGAIN"]),
    "blocking call interrupted": (program(sendfile2()), done(-1, EINTR, timed_out=True), []),
    # A v2 soak: MSG_DONTWAIT sends of 4 MiB through loopback ran past a 300 ms timer and
    # returned what they sent; the timer fired, but nothing slept.
    "non-blocking call slower than the timer": (
        program({"op": "sendmsg", "fd": "sock", "len": 4 << 20, "flags": MSG_DONTWAIT}),
        done(2_621_440, timed_out=True, offset=None), []),
}


@pytest.mark.parametrize("case", ERRNO_CASES)
def test_errno(case):
    prog, op_result, expected = ERRNO_CASES[case]
    found = oracles.errno_violations(prog, result(op_result), KERNEL_INFO)
    assert [v.clause_id for v in found] == expected
    assert all(v.op_index == 0 for v in found)


def test_health_names_the_crash():
    from zcfuzz.vm.target import KernelCrash

    crash = KernelCrash("BUG: kernel NULL pointer dereference in splice_to_socket", "\nBUG: kernel NULL ...\n")
    (violation,) = oracles.health(crash, KERNEL_INFO)
    assert violation.key == "health:BUG: kernel NULL pointer dereference in splice_to_socket"
    assert violation.title == "BUG: kernel NULL pointer dereference in splice_to_socket"
    assert violation.message == "BUG: kernel NULL ..."
    assert violation.clause_id == ""  # no program: no call it came under


def test_health_is_under_the_clause_of_the_call_it_came_under():
    """A crash under a ZC sendfile2 to a pipe is about SF2-ZC-NON-SOCKET, whose RFC defect (D2)
    the gate can then show; the key stays the title, so one crash is one finding."""
    from zcfuzz.vm.target import KernelCrash

    prog = program({**sendfile2(), "out": "p.w"})
    crash = KernelCrash("KASAN: null-ptr-deref Read in do_sendfile", "BUG: KASAN: null-ptr-deref", program=prog)
    (violation,) = oracles.health(crash, KERNEL_INFO)
    assert (violation.clause_id, violation.key) == ("SF2-ZC-NON-SOCKET", "health:KASAN: null-ptr-deref Read in do_sendfile")


def test_parity_takes_what_a_pipe_read_left_as_timing():
    """A 1-minute v2 campaign stopped on this: a peer_read of pipe `p` named the fixture `p`,
    and parity looked it up as an fd name (`p.r`, `p.w`)."""
    prog = Program.from_json({
        "sysno": {"sendfile2": 467},
        "fds": [{"name": "src", "kind": "file", "size": 4096}, {"name": "sock", "kind": "tcp4"},
                {"name": "p", "kind": "pipe"}],
        "ops": [{"op": "write", "fd": "p.w", "len": 10}, {"op": "peer_read", "fd": "p.w", "max": 10},
                {"op": "sendfile2", "out": "sock", "in": "src", "offset": 0, "count": 512, "flags": 2}],
    })
    twin, replaced = oracles.parity_twin(prog, ABI)
    same = result(done(10, offset=None), done(10, offset=None), done(512))
    assert oracles.parity(prog, same, same, replaced) == []


def test_data_leaves_out_bytes_sent_by_reference_from_a_file_rewritten_later():
    """A host campaign's finding, confirmed twice: sendfile64 moves the file's pages to the
    socket by reference, a sendfile64 of the file onto itself then rewrites them before the peer
    read them, and the peer got the new bytes. Which ones it gets is not determined."""
    onto_itself = {"op": "sendfile64", "out": "src", "in": "src", "offset": 1, "count": 512}
    prog = program(sendfile64(), onto_itself)
    sent = pattern(3, 0, 512)
    rewritten = sent[:1] + sent[:511]  # the file after copying its bytes 0-511 to 1-512
    for peer in (sent, rewritten):
        assert oracles.data(prog, result(done(512), done(512, offset=1), peer=peer)) == []
    # Without the rewrite the bytes are fixed, and a difference is a finding.
    assert [v.clause_id for v in oracles.data(program(sendfile64()), result(done(512), peer=rewritten))] == \
        ["SF64-COUNT"]


def drained(outq: int, *notes: dict) -> dict:
    return {"ret": len(notes), "errno": 0, "timed_out": False, "outq": outq, "notifications": list(notes)}


def test_a_notification_read_while_its_bytes_are_unacknowledged_came_early():
    """The cover letter: one notification "once the call has returned and the last skb
    referencing its data is freed"; TCP frees an skb only once it is acknowledged."""
    prog = program(sendfile2(count=4096), {"op": "drain", "fd": "sock"}, sendfile2(count=4096, offset=4096),
                   {"op": "drain", "fd": "sock"})
    # Call 0's last byte unacknowledged (outq 100 of its 4096) when id 0 is read: early.
    early = result(done(4096), drained(100, note(0, 0, copied=False)), done(4096, offset=4096), drained(0))
    found = oracles.early_notifications(prog, early, ABI)
    assert [(v.clause_id, v.op_index) for v in found] == [("ZC-NO-EARLY-NOTIFY", 0)]
    # Only the second call's bytes outstanding when id 0 is read: in time.
    in_time = result(done(4096), drained(0), done(4096, offset=4096), drained(4096, note(0, 0, copied=False)))
    assert oracles.early_notifications(prog, in_time, ABI) == []


def test_a_rewrite_after_every_notification_must_not_reach_the_peer():
    """After the notification of the call that sent them, the file's bytes are the
    application's again: the peer must receive the old ones (ZC-OVERWRITE-SAFE). Before it, a
    rewrite may show through (the data oracle leaves such a stream out)."""
    rewrite = {"op": "pwrite", "fd": "src", "offset": 0, "len": 512, "seed": 9}
    drain = {"op": "drain", "fd": "sock", "wait_ms": 100}
    sent, new = pattern(3, 0, 512), pattern(9, 0, 512)
    after = program(sendfile2(), drain, rewrite)
    ops = (done(512), drained(0, note(0, 0, copied=False)), {"ret": 512, "errno": 0})
    assert oracles.data(after, result(*ops, peer=sent), ABI) == []
    assert [v.clause_id for v in oracles.data(after, result(*ops, peer=new), ABI)] == ["ZC-OVERWRITE-SAFE"]
    before = program(sendfile2(), rewrite, drain)
    ops = (done(512), {"ret": 512, "errno": 0}, drained(0, note(0, 0, copied=False)))
    assert oracles.data(before, result(*ops, peer=new), ABI) == []


def test_parity_leaves_out_what_a_udp_peer_across_the_nic_received():
    """A datagram that leaves by a device may be dropped on the way (a campaign on v2 saw a
    corked datagram arrive in one run and not in its twin), so only the calls compare."""
    prog = Program.from_json({
        "sysno": {"sendfile2": 467},
        "fds": [{"name": "src", "kind": "file", "size": 4096}, {"name": "sock", "kind": "udp4_nic"}],
        "ops": [{"op": "sendfile2", "out": "sock", "in": "src", "offset": 0, "count": 512, "flags": 0}],
    })
    _, replaced = oracles.parity_twin(prog, ABI)
    arrived = ProgramResult.from_json({"ops": [done(512)], "final": {"peers": {"sock": {"bytes": 512, "digest": "x"}}}})
    lost = ProgramResult.from_json({"ops": [done(512)], "final": {"peers": {"sock": {"bytes": 0, "digest": "y"}}}})
    assert oracles.parity(prog, arrived, lost, replaced) == []


def test_a_readonly_offset_leaves_the_stream_uncounted():
    """A v2 soak: the EFAULT call sent its byte (ZC-EFAULT-AFTER-SEND), so outq 1 was that
    byte, not the first call's; a stream with such a call is not judged."""
    prog = program(sendfile2(count=65536, offset=None), sendfile2(count=1, offset="readonly"),
                   {"op": "peer_read", "fd": "sock", "max": 1}, {"op": "drain", "fd": "sock"})
    res = result(done(65536, offset=None), done(-1, EFAULT, offset=None), {"ret": 1, "errno": 0},
                 drained(1, note(0, 1)))
    assert oracles.early_notifications(prog, res, ABI) == []
    clean = program(sendfile2(count=65536, offset=None), {"op": "peer_read", "fd": "sock", "max": 1},
                    {"op": "drain", "fd": "sock"})
    early = result(done(65536, offset=None), {"ret": 1, "errno": 0}, drained(1, note(0, 0)))
    assert [v.clause_id for v in oracles.early_notifications(clean, early, ABI)] == ["ZC-NO-EARLY-NOTIFY"]


def test_parity_leaves_out_a_datagram_a_sendfile_left_waiting_for_more():
    """A v2 soak: SENDFILE_ZC of a 4095-byte file with count 4096 on udp4 delivered the datagram,
    sendfile64 kept it corked (the peer had 0 bytes); where it goes is not the ABI's."""
    prog = Program.from_json({
        "sysno": {"sendfile2": 467},
        "fds": [{"name": "src", "kind": "file", "size": 4095, "seed": 1}, {"name": "sock", "kind": "udp4"}],
        "ops": [{"op": "sendfile2", "out": "sock", "in": "src", "offset": None, "count": 4096, "flags": ZC},
                {"op": "pwrite", "fd": "src", "offset": 0, "len": 1, "seed": 0}],
    })
    _, replaced = oracles.parity_twin(prog, ABI)
    sent = pattern(1, 0, 4095)
    ran = {**done(4095, offset=None), "in_pos_after": 4095, "in_size_after": 4095}

    def run(peer: bytes) -> ProgramResult:
        return ProgramResult.from_json({"ops": [ran, {"ret": 1, "errno": 0}],
                                        "final": {"peers": {"sock": {"bytes": len(peer), "digest": digest(peer)}}}})

    assert oracles.parity(prog, run(sent), run(b""), replaced) == []
    short = {**ran, "ret": 4000, "offset_after": None}
    assert [v.op_index for v in oracles.parity(prog, ProgramResult.from_json(
        {"ops": [short, {"ret": 1, "errno": 0}], "final": {"peers": {}}}), run(b""), replaced)] == [0]


def test_parity_leaves_out_a_zc_call_its_own_limits_refused():
    """A v2 soak ran the ZC-MEMLOCK-PARTIAL row: ENOBUFS is SENDFILE_ZC's own (RLIMIT_MEMLOCK,
    option memory), so the call and its socket after it do not compare with sendfile64."""
    prog = Program.from_json({
        "sysno": {"sendfile2": 467}, "memlock": 155648,
        "fds": [{"name": "src", "kind": "file", "size": 1 << 20, "seed": 1},
                {"name": "sock", "kind": "tcp4_nic", "nonblock": True}],
        "ops": [{"op": "peer_hold", "fd": "sock"}, sendfile2(count=65536), sendfile2(count=65536, offset=65536),
                sendfile2(count=512, offset=0, flags=0)],
    })
    _, replaced = oracles.parity_twin(prog, ABI)
    hold = {"ret": 0, "errno": 0}
    ours = result(hold, done(46336), done(-1, ENOBUFS, offset=65536), done(-1, EAGAIN))
    theirs = result(hold, done(46336), done(-1, EAGAIN, offset=65536), done(-1, EAGAIN))
    assert oracles.parity(prog, ours, theirs, replaced) == []
    refused_first = result(hold, done(-1, ENOBUFS), done(-1, ENOBUFS, offset=65536), done(-1, EAGAIN))
    assert oracles.parity(prog, refused_first, theirs, replaced) == []
    # Any other failure still compares.
    assert [v.op_index for v in oracles.parity(prog, result(hold, done(-1, EINVAL), done(-1, ENOBUFS, offset=65536),
                                                          done(-1, EAGAIN)), theirs, replaced)] == [1]


def test_errno_after_a_file_grew_is_not_predicted():
    """A v2 soak: a file of 0 bytes grew by a pwrite, then a 64 KiB ZC datagram got EMSGSIZE;
    the model had read the fixture's size."""
    prog = Program.from_json({
        "sysno": {"sendfile2": 467},
        "fds": [{"name": "src", "kind": "file", "size": 0}, {"name": "sock", "kind": "udp4_nic"}],
        "ops": [{"op": "pwrite", "fd": "src", "offset": 0, "len": 65536, "seed": 0},
                {"op": "sendfile2", "out": "sock", "in": "src", "offset": None, "count": 65536, "flags": ZC}],
    })
    found = oracles.errno_violations(prog, result({"ret": 65536, "errno": 0}, done(-1, 90, offset=None)),
                                     KERNEL_INFO)
    assert found == []
    grown_not = Program.from_json({**prog.to_json(), "ops": prog.to_json()["ops"][1:]})
    assert [v.clause_id for v in oracles.errno_violations(grown_not, result(done(-1, 90, offset=None)),
                                                          KERNEL_INFO)] == ["SF2-ZC-ERRNO"]


def test_parity_leaves_out_enobufs_of_any_call_the_twins_notifications_differ_for():
    """A v2 soak ran the ZC-ENOBUFS-OPTMEM spec program: the ZC sendfile2 calls held option
    memory, so a later splice(SPLICE_F_ZC) got ENOBUFS, where the twin's sendfile64 held none."""
    prog = Program.from_json({
        "sysno": {"sendfile2": 467}, "optmem_max": 2048,
        "fds": [{"name": "src", "kind": "file", "size": 65536, "seed": 1}, {"name": "p", "kind": "pipe"},
                {"name": "sock", "kind": "tcp4_nic", "nonblock": True}],
        "ops": [sendfile2(count=1, offset=2), sendfile2(count=1, offset=3), {"op": "write", "fd": "p.w", "len": 10},
                {"op": "splice", "in": "p.r", "off_in": None, "out": "sock", "off_out": None, "len": 10,
                 "flags": 0x10}],
    })
    _, replaced = oracles.parity_twin(prog, ABI)
    wrote = {"ret": 10, "errno": 0}
    ours = result(done(1, offset=2), done(1, offset=3), wrote, done(-1, ENOBUFS, offset=None))
    theirs = result(done(1, offset=2), done(1, offset=3), wrote, done(10, offset=None))
    assert oracles.parity(prog, ours, theirs, replaced) == []


def test_parity_leaves_out_a_position_an_earlier_amount_set():
    """A v2 soak: a non-blocking ZC sendfile2 without offset took what the socket had room
    for, so the file position a later splice (with its own offset) reports is timing."""
    prog = Program.from_json({
        "sysno": {"sendfile2": 467},
        "fds": [{"name": "src", "kind": "file", "size": 262144, "seed": 180},
                {"name": "sock", "kind": "tcp4", "nonblock": True, "zerocopy": True, "sndbuf": 65536},
                {"name": "p", "kind": "pipe"}],
        "ops": [sendfile2(count=1 << 31, offset=None),
                {"op": "splice", "in": "src", "off_in": 0, "out": "p.w", "off_out": None, "len": 65536, "flags": 0}],
    })
    _, replaced = oracles.parity_twin(prog, ABI)

    def run(sent: int) -> ProgramResult:
        return result({**done(sent, offset=None), "in_pos_after": sent},
                      {**done(65536, offset=None), "in_pos_after": sent, "off_in_after": 65536})

    assert oracles.parity(prog, run(160384), run(207808), replaced) == []


def test_parity_leaves_out_the_room_a_zerocopy_call_left_on_a_stream():
    """Seen on v2, 3 replays of 3 (a campaign of a mutant that does not touch this path): after a
    ZC sendfile2 of 4097 bytes into a non-blocking TCP socket with SO_SNDBUF 4608, a splice with
    SPLICE_F_ZC found no room (EAGAIN), but after the sendfile64 twin it moved its bytes. The ZC
    call's skbs carry its notification, so the splice cannot join them and needs a segment of its
    own. That it does not block, and that it fails no other way, still compare."""
    prog = Program.from_json({"sysno": {"sendfile2": 467}, "fds": [
        {"name": "src", "kind": "file", "size": 4097},
        {"name": "sock", "kind": "tcp4_nic", "nonblock": True, "sndbuf": 4608},
        {"name": "p", "kind": "pipe", "nonblock": True}],
        "ops": [sendfile2(count=50625), {"op": "splice", "in": "src", "off_in": 0, "out": "p.w", "off_out": None,
                                         "len": 4096, "flags": 0}, splice_zc(4096)]})
    twin, replaced = oracles.parity_twin(prog, ABI)
    theirs = result(done(4097), done(4096), done(4096))
    assert oracles.parity(prog, result(done(4097), done(4096), done(-1, EAGAIN)), theirs, replaced) == []
    blocked = result(done(4097), done(4096), done(-1, EINTR, timed_out=True))
    assert [v.clause_id for v in oracles.parity(prog, blocked, theirs, replaced)] == ["SF2-NONBLOCK-EAGAIN"]
    other = result(done(4097), done(4096), done(-1, EBADF))
    assert [v.op_index for v in oracles.parity(prog, other, theirs, replaced)] == [2]


def faulted(op: dict, nth: int = 3) -> dict:
    return {**op, "fail_nth": nth}


def test_a_call_whose_fault_was_met_answers_to_no_errno_rule():
    """The fault chose the errno (ENOMEM, ENOBUFS, ...), not the arguments."""
    prog = program(faulted(sendfile2()))
    met = result({**done(-1, ENOMEM), "fault_injected": True})
    assert oracles.errno_violations(prog, met, KERNEL_INFO) == []
    unmet = result({**done(-1, ENOMEM), "fault_injected": False})  # past the call's last site: judged
    assert [v.op_index for v in oracles.errno_violations(prog, unmet, KERNEL_INFO)] == [0]


def test_after_a_fault_was_met_a_missing_notification_is_not_a_finding():
    """The fault may have failed the clone of a transmit (the data waits for the retransmission
    timer) rather than the call: what came is judged, what did not come yet is not."""
    prog = program(faulted(sendmsg_zc()), sendfile2())
    assert oracles.accounting(prog, result({**done(100), "fault_injected": True}, done(512)), ABI) == []
    duplicate = result({**done(100), "fault_injected": True}, done(512), notes=[note(0, 0), note(0, 0)])
    assert [v.detail for v in oracles.accounting(prog, duplicate, ABI)] == [oracles.ZC_ID_ONCE]
    assert oracles.accounting(prog, result({**done(100), "fault_injected": False}, done(512)), ABI) != []


def test_a_program_with_faults_or_two_threads_has_no_sendfile64_twin():
    assert oracles.parity_twin(program(faulted(sendfile2(flags=0))), ABI) is None
    assert oracles.parity_twin(program(sendfile2(flags=0), {**sendmsg_zc(), "thread": 1}), ABI) is None
    assert oracles.parity_twin(program(sendfile2(flags=0), sendmsg_zc()), ABI) is not None


def test_a_sendmsg_racing_so_zerocopy_on_the_other_thread_need_not_take_an_id():
    """v2, `zcfuzz fuzz --faults-and-threads` (3 runs of 3): SO_ZEROCOPY turned on by thread 0
    while thread 1 made a sendmsg(MSG_ZEROCOPY) of 1 byte; the sendmsg came first, so MSG_ZEROCOPY
    was ignored and no id was notified. Either order is allowed; an id notified twice is not."""
    prog = Program.from_json({"sysno": {"sendfile2": 467}, "timeout_ms": 300, "settle_ms": 20, "fds": [
        {"name": "src", "kind": "file", "size": 0}, {"name": "sock", "kind": "tcp4"}], "ops": [
        {"op": "close", "fd": "src"}, {"op": "setsockopt_zerocopy", "fd": "sock", "value": 1},
        {"op": "sendfile2", "out": "sock", "in": "src", "offset": 0, "count": 4096, "flags": 2},
        {**sendmsg_zc(1), "thread": 1}]})
    ops = (done(0), done(0), done(-1, EBADF), done(1))
    assert oracles.accounting(prog, result(*ops), ABI) == []
    assert oracles.accounting(prog, result(*ops, notes=[note(0, 0)]), ABI) == []
    twice = oracles.accounting(prog, result(*ops, notes=[note(0, 0), note(0, 0)]), ABI)
    assert [v.detail for v in twice] == [oracles.ZC_CONCURRENT]
    same_thread = Program.from_json({**prog.to_json(), "ops": [*prog.to_json()["ops"][:3], sendmsg_zc(1)]})
    assert [v.detail for v in oracles.accounting(same_thread, result(*ops), ABI)] != []


def test_a_failed_udp_sendmsg_on_two_threads_leaves_the_ids_unfixed():
    """v2, `zcfuzz fuzz --faults-and-threads` (3 runs of 3): a sendmsg(MSG_ZEROCOPY) on the
    second thread failed (ENOBUFS, its fault met) while the first thread's sendmsg took the next
    id; 6.12's msg_zerocopy_put_abort gave the failed call's id back by decrementing the counter,
    so the third sendmsg was given id 1 again and id 0 never came. The base kernel does the same
    with the sendfile2 left out (5 of 10 runs), so it is no finding against the series. On TCP the
    send path holds the socket lock, and without a failed sendmsg nothing gives an id back: both
    are still judged."""
    ops = [sendfile2(count=4096), {**faulted(sendmsg_zc(1)), "thread": 1}, sendmsg_zc(1),
           {"op": "drain", "fd": "sock", "wait_ms": 0}, {**sendmsg_zc(1), "thread": 1},
           {"op": "drain", "fd": "sock", "wait_ms": 0}]
    outcomes = (done(0), {**done(-1, ENOBUFS), "fault_injected": True}, done(1), done(0), done(1), done(0))
    twice = result(*outcomes, notes=[note(1, 1), note(1, 1)])
    assert oracles.accounting(program(*ops, sock="udp4"), twice, ABI) == []
    judged = [v.detail for v in oracles.accounting(program(*ops, sock="tcp4"), twice, ABI)]
    assert judged and set(judged) == {oracles.ZC_CONCURRENT}
    sent = result(*outcomes[:1], done(1), *outcomes[2:], notes=[note(1, 1), note(1, 1)])
    assert [v.detail for v in oracles.accounting(program(*ops, sock="udp4"), sent, ABI)] != []


def test_a_call_sharing_a_fixture_with_the_other_thread_answers_to_no_errno_rule():
    """Whether the peer's close on the other thread came first is not fixed."""
    close = {"op": "peer_close", "fd": "sock", "thread": 1}
    prog = program(close, sendfile2(flags=0))
    assert oracles.errno_violations(prog, result(done(0), done(512)), KERNEL_INFO) == []


def test_parity_leaves_out_whether_a_closed_peers_reset_had_come_back():
    """v2, a campaign (3 runs of 3): after the peer of a tcp6_nic socket closed, a ZC sendfile2
    sent to it and a sendmsg after it got EPIPE, while after the sendfile64 twin the sendmsg
    still succeeded: the RST had not crossed the NIC yet. Any other errno still compares."""
    zc = {"op": "sendmsg", "fd": "sock", "len": 1, "flags": MSG_ZEROCOPY}
    prog = Program.from_json({"sysno": {"sendfile2": 467}, "fds": [
        {"name": "src", "kind": "file", "size": 4096}, {"name": "sock", "kind": "tcp6_nic", "zerocopy": True}],
        "ops": [sendfile2(count=1264), {"op": "peer_close", "fd": "sock"}, sendfile2(count=1264), zc]})
    twin, replaced = oracles.parity_twin(prog, ABI)
    theirs = result(done(1264), done(0), done(1264), done(1))
    assert oracles.parity(prog, result(done(1264), done(0), done(1264), done(-1, EPIPE)), theirs, replaced) == []
    other = result(done(1264), done(0), done(1264), done(-1, EINVAL))
    assert [v.op_index for v in oracles.parity(prog, other, theirs, replaced)] == [3]


def test_parity_leaves_out_what_a_peer_had_when_it_closed():
    """v2, a campaign (3 runs of 3): a peer across the NIC read what had arrived, then closed; it
    had 64260 bytes on the zerocopy path and 45696 on the sendfile64 twin's."""
    prog = Program.from_json({"sysno": {"sendfile2": 467}, "fds": [
        {"name": "src", "kind": "file", "size": 262144}, {"name": "sock", "kind": "tcp6_nic", "zerocopy": True}],
        "ops": [sendfile2(count=103), {"op": "peer_read", "fd": "sock", "max": 1 << 24},
                {"op": "peer_close", "fd": "sock"}]})
    twin, replaced = oracles.parity_twin(prog, ABI)
    ours = result(done(103), done(64260), done(0), peer=bytes(64260))
    theirs = result(done(103), done(45696), done(0), peer=bytes(45696))
    assert oracles.parity(prog, ours, theirs, replaced) == []
    still_open = Program.from_json({**prog.to_json(), "ops": prog.to_json()["ops"][:2]})
    assert oracles.parity(still_open, result(done(103), done(64260), peer=bytes(64260)),
                          result(done(103), done(45696), peer=bytes(45696)), replaced) != []


def test_parity_leaves_out_how_much_a_non_blocking_socket_took_from_a_blocking_pipe():
    """v2, a campaign (seed 101, confirmed and shrunk to 7 ops): a SPLICE_F_ZC splice of 65536
    bytes from a blocking pipe into a non-blocking tcp6_nic socket took 42840, its run beside the
    sendfile64 twin 45696. The pipe may make the call wait, the socket does not: it sends with
    MSG_DONTWAIT and takes the room it finds. Whether it moved anything still compares."""
    fill = {"op": "splice", "in": "src", "off_in": 0, "out": "p.w", "off_out": None, "len": 65536, "flags": 0}
    into_sock = {"op": "splice", "in": "p.r", "off_in": None, "out": "sock", "off_out": None, "len": 65536,
                 "flags": 0x10}
    to_datagram = {**sendfile2(count=99, offset=None), "out": "sock2"}
    prog = Program.from_json({"sysno": {"sendfile2": 467}, "fds": [
        {"name": "src", "kind": "file", "size": 262144, "seed": 120},
        {"name": "sock", "kind": "tcp6_nic", "nonblock": True, "zerocopy": True}, {"name": "p", "kind": "pipe"},
        {"name": "sock2", "kind": "udp6_nic", "nonblock": True}],
        "ops": [to_datagram, fill, into_sock]})
    twin, replaced = oracles.parity_twin(prog, ABI)
    ours = result(done(99, offset=None), done(65536), done(42840))
    theirs = result(done(99, offset=None), done(65536), done(45696))
    assert oracles.parity(prog, ours, theirs, replaced) == []
    refused = result(done(99, offset=None), done(65536), done(-1, EINVAL))
    assert [v.op_index for v in oracles.parity(prog, refused, theirs, replaced)] == [2]
    blocking = Program.from_json({**prog.to_json(), "fds": [{**f, "nonblock": False} for f in prog.to_json()["fds"]]})
    assert [v.op_index for v in oracles.parity(blocking, ours, theirs, replaced)] == [2]


def test_parity_leaves_out_what_the_peer_of_a_closed_tcp_socket_got():
    """v2, a campaign (seed 101, confirmed and shrunk to 3 ops): two sendfile2 calls of 62220 and
    65343 bytes into a tcp4_nic socket, then close(sock); its peer had 11584 bytes at the end, the
    sendfile64 twin's 8688. After close(2) the socket sends what it had queued on its own, and
    the final read does not wait for a socket the program no longer has."""
    prog = Program.from_json({"sysno": {"sendfile2": 467}, "fds": [
        {"name": "src", "kind": "file", "size": 65536, "seed": 163}, {"name": "sock", "kind": "tcp4_nic", "zerocopy": True}],
        "ops": [sendfile2(offset=None, count=62220, flags=2), sendfile2(offset=193, count=1 << 62, flags=1),
                {"op": "close", "fd": "sock"}]})
    twin, replaced = oracles.parity_twin(prog, ABI)
    ours = result(done(62220, offset=None), done(65343, offset=193), done(0), peer=bytes(11584))
    theirs = result(done(62220, offset=None), done(65343, offset=193), done(0), peer=bytes(8688))
    assert oracles.parity(prog, ours, theirs, replaced) == []
    still_open = Program.from_json({**prog.to_json(), "ops": prog.to_json()["ops"][:2]})
    assert oracles.parity(still_open, result(done(62220, offset=None), done(65343, offset=193), peer=bytes(11584)),
                          result(done(62220, offset=None), done(65343, offset=193), peer=bytes(8688)), replaced) != []
