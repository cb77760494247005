"""conformance.model agrees with every errno the clause tables state, and with hand-picked calls."""

from __future__ import annotations

from errno import EAGAIN, EBADF, ECONNRESET, EINVAL, ENOSYS, EOPNOTSUPP, EPIPE, ESPIPE

import pytest
from zcfuzz.conformance.abi import MSG_DONTWAIT, MSG_MORE, MSG_ZEROCOPY, Abi
from zcfuzz.conformance.cases import rows_of
from zcfuzz.conformance.model import expected_errno
from zcfuzz.vm.program import Program

from tests.test_conformance_spec import KERNELS, applicable


@pytest.mark.parametrize("kernel", KERNELS)
def test_model_accepts_every_tabled_errno(kernel):
    info = KERNELS[kernel]
    abi = Abi.from_kernel_info(info)
    predicted = 0
    for clause in applicable(kernel):
        for row in rows_of(clause.id, abi, info):
            program = Program.from_json(row.program(abi))
            for i, allowed in row.errnos:
                prediction = expected_errno(program, i, info)
                if prediction is not None:
                    predicted += 1
                    assert allowed <= prediction, f"{clause.id} / {row.condition}"
    assert predicted > 200  # the model answers for most rows, not only a few


SRC = {"name": "src", "kind": "file", "size": 4096}
CASES = (  # condition, fds, op, kernel, expected errnos
    ("sendfile2 without a syscall number", [SRC, {"name": "o", "kind": "tcp4"}],
     {"op": "sendfile2", "out": "o", "in": "src", "offset": 0, "count": 1, "flags": 0}, "unpatched", {ENOSYS}),
    ("sendfile2 unknown bit before a bad fd", [SRC, {"name": "o", "kind": "invalid"}],
     {"op": "sendfile2", "out": "o", "in": "src", "offset": 0, "count": 1, "flags": 4}, "patched", {EINVAL}),
    ("sendfile2 ZC to a pipe", [SRC, {"name": "p", "kind": "pipe"}],
     {"op": "sendfile2", "out": "p.w", "in": "src", "offset": 0, "count": 1, "flags": 2}, "patched", {EOPNOTSUPP}),
    ("splice SPLICE_F_ZC where unknown", [SRC, {"name": "p", "kind": "pipe"}],
     {"op": "splice", "in": "src", "off_in": None, "out": "p.w", "off_out": None, "len": 1, "flags": 16},
     "unpatched", {EINVAL}),
    ("tee SPLICE_F_ZC where known", [{"name": "a", "kind": "pipe"}, {"name": "b", "kind": "pipe"}],
     {"op": "tee", "in": "a.r", "out": "b.w", "len": 1, "flags": 16}, "patched", {EINVAL}),
    ("sendfile64 from a pipe with an offset", [{"name": "p", "kind": "pipe"}, {"name": "o", "kind": "devnull"}],
     {"op": "sendfile64", "out": "o", "in": "p.r", "offset": 0, "count": 1}, "unpatched", {ESPIPE}),
    ("sendfile64 to a closed fd", [SRC, {"name": "o", "kind": "closed"}],
     {"op": "sendfile64", "out": "o", "in": "src", "offset": None, "count": 1}, "unpatched", {EBADF}),
    ("sendfile64 file to devnull", [SRC, {"name": "o", "kind": "devnull"}],
     {"op": "sendfile64", "out": "o", "in": "src", "offset": None, "count": 1}, "unpatched", {0}),
)


HUGE = (1 << 63) - 1
SPLICE_HUGE = {"op": "splice", "in": "src", "off_in": None, "out": "p.w", "off_out": None, "len": HUGE, "flags": 0}
MOVE_POSITION = {"op": "sendfile64", "out": "p.w", "in": "src", "offset": None, "count": 1}


@pytest.mark.parametrize("ops, expected", [
    ([SPLICE_HUGE], frozenset({0})),  # position 0: 0 + LOFF_MAX does not wrap
    ([MOVE_POSITION, SPLICE_HUGE], None),  # an unknown position: it may wrap (EINVAL) or not
    ([MOVE_POSITION, dict(SPLICE_HUGE, len=4096)], frozenset({0})),  # too small a count to wrap
], ids=["unmoved", "moved", "moved-small"])
def test_a_call_without_offset_checks_the_file_position_with_its_count(ops, expected):
    program = {"fds": [SRC, {"name": "p", "kind": "pipe"}], "ops": ops}
    assert expected_errno(program, len(ops) - 1, KERNELS["unpatched"]) == expected


@pytest.mark.parametrize("kind, expected", [("udp4", None), ("tcp4", frozenset({0}))])
def test_a_zerocopy_call_after_a_corking_send_on_udp_is_not_predicted(kind, expected):
    cork = {"op": "sendmsg", "fd": "o", "len": 0, "flags": MSG_ZEROCOPY | MSG_MORE}
    send = {"op": "sendfile2", "out": "o", "in": "src", "offset": 0, "count": 1, "flags": 2}
    program = {"sysno": {"sendfile2": 467}, "fds": [SRC, {"name": "o", "kind": kind, "zerocopy": True}],
               "ops": [cork, send]}
    assert expected_errno(program, 1, KERNELS["patched"]) == expected


@pytest.mark.parametrize("sndbuf, expected", [(0, frozenset({0})), (4096, frozenset({0, EAGAIN}))])
def test_a_small_send_buffer_may_be_full_after_a_few_sends(sndbuf, expected):
    """Seen on v2: a non-blocking unix_dgram socket with SO_SNDBUF 4096 took four 1024-byte
    sendfile64 calls; the fifth gave EAGAIN."""
    send = {"op": "sendfile64", "out": "o", "in": "src", "offset": 0, "count": 1024}
    program = {"fds": [SRC, {"name": "o", "kind": "unix_dgram", "nonblock": True, "sndbuf": sndbuf}],
               "ops": [send] * 5}
    assert expected_errno(program, 4, KERNELS["unpatched"]) == expected


@pytest.mark.parametrize("condition, fds, op, kernel, expected", CASES, ids=[c[0] for c in CASES])
def test_model_on_single_calls(condition, fds, op, kernel, expected):
    info = KERNELS[kernel]
    program = {"fds": fds, "ops": [op]}
    if info["nr_sendfile2"] is not None:
        program["sysno"] = {"sendfile2": info["nr_sendfile2"]}
    assert expected_errno(program, 0, info) == frozenset(expected)


@pytest.mark.parametrize("kind, expected", [("tcp4", frozenset({0, EPIPE, ECONNRESET})),
                                            ("tcp4_nic", frozenset({0, EPIPE, ECONNRESET, EAGAIN}))])
def test_a_full_socket_whose_peer_closed_may_not_have_its_rst_yet_across_the_nic(kind, expected):
    """Seen on v2: two 4 MiB non-blocking sends filled a tcp4_nic socket, the peer closed with
    the bytes unread, and a sendfile2 gave EAGAIN: the RST had not crossed the NIC yet. On
    loopback it comes with the close."""
    fill = {"op": "sendmsg", "fd": "o", "len": 4 << 20, "flags": MSG_DONTWAIT}
    send = {"op": "sendfile2", "out": "o", "in": "src", "offset": None, "count": 4095, "flags": 2}
    program = {"sysno": {"sendfile2": 467}, "fds": [SRC, {"name": "o", "kind": kind, "nonblock": True}],
               "ops": [fill, fill, {"op": "peer_close", "fd": "o"}, send]}
    assert expected_errno(program, 3, KERNELS["patched"]) == expected
