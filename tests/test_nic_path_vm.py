"""The NIC path on real guests (vm/PROGRAM.md, "The NIC path"): two virtio-net NICs QEMU joins,
the peer's in a namespace of its own. Across it the stack keeps sent pages until the peer has
acknowledged them, so a held-back peer shows whether a notification waits for that."""

from __future__ import annotations

import pytest
from zcfuzz.conformance.abi import MSG_ZEROCOPY
from zcfuzz.vm.backends import open_target
from zcfuzz.vm.program import NIC_KINDS, Program, digest, pattern

pytestmark = pytest.mark.vm

HOLD_MS, ACK_MS = 500, 5000


def run(rev: str, fds: list[dict], ops: list[dict]):
    with open_target(f"vm:{rev}") as target:
        sysno = target.kernel_info().get("nr_sendfile2")
        return target.run(Program.from_json({**({"sysno": {"sendfile2": sysno}} if sysno else {}),
                                             "timeout_ms": 3000, "settle_ms": 1000, "fds": fds, "ops": ops}))


UDP_RUNS = 3


def test_every_nic_kind_carries_bytes_to_its_peer_across_the_nic():
    """TCP delivers every time. A datagram that leaves by a device is dropped while the peer's
    address still resolves (a loaded guest may take longer than the program's settle), so a UDP
    peer may get nothing in a run, but never other bytes, and gets them in one of UDP_RUNS."""
    fds = [{"name": "src", "kind": "file", "size": 65536, "seed": 5}] + [{"name": k, "kind": k} for k in NIC_KINDS]
    ops = [{"op": "sendfile64", "out": k, "in": "src", "offset": 0, "count": 1024} for k in NIC_KINDS]
    sent = (1024, digest(pattern(5, 0, 1024)))
    delivered = set()
    for _ in range(UDP_RUNS):
        result = run("base", fds, ops)
        assert result.fixture_errors == []
        for kind in NIC_KINDS:
            got = (result.peer_bytes(kind), result.peer_digest(kind))
            assert got == sent or (kind.startswith("udp") and got[0] == 0), (kind, got)
            delivered |= {kind} if got == sent else set()
        if delivered == set(NIC_KINDS):
            break
    assert delivered == set(NIC_KINDS)


@pytest.mark.parametrize("kind", ["tcp4_nic", "tcp6_nic"])
def test_msg_zerocopy_waits_for_a_held_peer_on_base(kind):
    """The harness, not the kernel: unpatched MSG_ZEROCOPY keeps its notification while the
    peer is held back and gives it once the peer is let go. Its COPIED bit is not checked: under
    TCG it comes set or clear from one run to the next (`copied_shown`)."""
    send = {"op": "sendmsg", "fd": "s", "len": 16384, "flags": MSG_ZEROCOPY}
    result = run("base", [{"name": "s", "kind": kind, "zerocopy": True}],
                 [send, {"op": "drain", "fd": "s", "wait_ms": ACK_MS},
                  {"op": "peer_hold", "fd": "s"}, send, {"op": "drain", "fd": "s", "wait_ms": HOLD_MS},
                  {"op": "peer_release", "fd": "s"}, {"op": "drain", "fd": "s", "wait_ms": ACK_MS}])
    first, held, released = result.ops[1], result.ops[4], result.ops[6]
    assert (result.ops[2]["ret"], result.ops[5]["ret"]) == (0, 0)  # the hold and the release
    assert [n["lo"] for n in first["notifications"]] == [0]
    assert (held["notifications"], held["outq"]) == ([], 16384)
    assert [n["lo"] for n in released["notifications"]] == [1] and released["outq"] == 0


def test_sendfile2_pages_go_by_reference_across_the_nic():
    """Rewritten before its notification, a held-back call's bytes reach the peer rewritten:
    the file's pages themselves were in flight (evidence of zerocopy, no failure)."""
    result = run("v2", [{"name": "src", "kind": "file", "size": 16384, "seed": 1}, {"name": "s", "kind": "tcp4_nic"}],
                 [{"op": "peer_hold", "fd": "s"},
                  {"op": "sendfile2", "out": "s", "in": "src", "offset": 0, "count": 16384, "flags": 2},
                  {"op": "drain", "fd": "s", "wait_ms": HOLD_MS},
                  {"op": "pwrite", "fd": "src", "offset": 0, "len": 16384, "seed": 7},
                  {"op": "peer_release", "fd": "s"}, {"op": "drain", "fd": "s", "wait_ms": ACK_MS}])
    assert (result.ops[0]["ret"], result.ops[4]["ret"]) == (0, 0)  # the hold and the release
    assert result.ops[2]["notifications"] == [] and result.ops[2]["outq"] == 16384
    assert [n["lo"] for n in result.ops[5]["notifications"]] == [0]
    assert result.peer_digest("s") in (digest(pattern(1, 0, 16384)), digest(pattern(7, 0, 16384)))


def test_the_final_read_waits_for_what_can_still_move_and_no_longer():
    """Nothing that cannot move is waited for (the NIC's 5 s settle): the outq of a connection
    the peer reset, a datagram corked for good (UDP over IPv6 has no splice_eof, so a sendfile
    short of its count holds its datagram for more). A zerocopy datagram in flight still gets
    its record before the final drain."""
    reset = run("v2", [{"name": "s", "kind": "tcp4_nic", "nonblock": True}],
                [{"op": "peer_hold", "fd": "s"}, {"op": "sendmsg", "fd": "s", "len": 65536, "flags": 0},
                 {"op": "peer_close", "fd": "s"}, {"op": "peer_release", "fd": "s"},
                 {"op": "drain", "fd": "s"}])
    assert reset.ops[1]["ret"] > 0 and reset.ops[4]["outq"] > 0 and reset.phases_ns["final"] < 2e9
    corked = run("v2", [{"name": "src", "kind": "file", "size": 4096}, {"name": "u", "kind": "udp6_nic"}],
                 [{"op": "sendfile64", "out": "u", "in": "src", "offset": 0, "count": 8192}])
    assert corked.ops[0]["ret"] == 4096 and corked.phases_ns["final"] < 2e9
    sent = run("v2", [{"name": "u", "kind": "udp4_nic", "zerocopy": True}],
               [{"op": "sendmsg", "fd": "u", "len": 1000, "flags": MSG_ZEROCOPY}])
    assert sent.ops[0]["ret"] == 1000 and [n["lo"] for n in sent.final["notifications"]["u"]] == [0]
