"""The clause table is well formed, every clause has rows, and SPEC.md is what the table renders."""

from __future__ import annotations

import re

import pytest
from zcfuzz.conformance.abi import MSG_ZEROCOPY, SO_EE_ORIGIN_ZEROCOPY, Abi
from zcfuzz.conformance.cases import accounting_holds, rows_of
from zcfuzz.conformance.spec import CLAUSES, SPEC_PATH, render_markdown
from zcfuzz.vm.program import Program, ProgramResult

BASE_SPLICE = {"SPLICE_F_MOVE": 1, "SPLICE_F_NONBLOCK": 2, "SPLICE_F_MORE": 4, "SPLICE_F_GIFT": 8}
KERNELS = {
    "unpatched": {"nr_sendfile2": None, "sendfile_flags": {}, "splice_flags": BASE_SPLICE},
    "patched": {"nr_sendfile2": 467, "sendfile_flags": {"SENDFILE_DEFAULT": 1, "SENDFILE_ZC": 2},
                "splice_flags": {**BASE_SPLICE, "SPLICE_F_ZC": 16}},
}


def applicable(kernel: str):
    return [c for c in CLAUSES if kernel == "patched" or not c.requires]


def test_ids_are_unique_and_well_formed():
    ids = [c.id for c in CLAUSES]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[A-Z0-9]+(-[A-Z0-9]+)+", i) for i in ids)


@pytest.mark.parametrize("clause", CLAUSES, ids=lambda c: c.id)
def test_clause_fields(clause):
    assert clause.expected and clause.reason and clause.source
    assert clause.requires in ("", "sendfile2", "splice_zc")
    assert all(re.fullmatch(r"D[1-7]", d) for d in clause.catches)
    assert not clause.catches or clause.requires, "baseline clauses cannot catch defects of the proposal"


def test_every_defect_has_a_clause():
    assert {d for c in CLAUSES for d in c.catches} == {f"D{n}" for n in range(1, 8)}


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_clause_has_valid_rows(kernel):
    info = KERNELS[kernel]
    abi = Abi.from_kernel_info(info)
    for clause in applicable(kernel):
        rows = rows_of(clause.id, abi, info)
        assert rows, clause.id
        conditions = [r.condition for r in rows]
        assert len(conditions) == len(set(conditions)), f"{clause.id}: rows must name distinct conditions"
        for row in rows:
            Program.from_json(row.program(abi))  # raises on a malformed row


def test_flag_rows_follow_the_kernel():
    """The invalid-bit rows come from kernel_info: 0x10 is invalid only where SPLICE_F_ZC is absent."""
    for kernel, has_zc in (("unpatched", False), ("patched", True)):
        info = KERNELS[kernel]
        rows = rows_of("SPLICE-FLAGS-UNKNOWN", Abi.from_kernel_info(info), info)
        assert len(rows) == 32 - 4 - has_zc
        assert any(r.condition == "flag 0x10" for r in rows) is not has_zc


def test_spec_md_is_up_to_date():
    assert SPEC_PATH.read_text(encoding="utf-8") == render_markdown(), "run: zcfuzz conform --spec"


def test_a_missing_notification_says_what_its_drain_saw():
    """A promise row's reason gives the drain's own wait, outq and resends, not the row's bound:
    a reviewer sees whether the peer had the bytes when the drain ended."""
    info = KERNELS["patched"]
    abi = Abi.from_kernel_info(info)
    row = next(r for r in rows_of("ZC-OVERWRITE-SAFE", abi, info) if r.condition.startswith("tcp6_nic: ")
               and r.condition.endswith("pwrite of new bytes"))
    program = Program.from_json(row.program(abi))
    drain = {"op": "drain", "ret": 0, "errno": 0, "ns": 74_105_958, "outq": 0, "retrans": 1, "notifications": []}
    ops = [{"op": "sendfile2", "ret": 16384, "errno": 0, "ns": 1}, drain,
           {"op": "pwrite", "ret": 16384, "errno": 0, "ns": 1}]
    result = ProgramResult(ops=ops, final={"peers": {"sock": {"bytes": 16384, "digest": "0"}}}, fixture_errors=[])
    assert row.check(program, result, abi, None) == \
        "id 0 not notified by ops[1] (the drain waited 74 ms, 0 bytes unacknowledged, 1 segment resent)"



@pytest.mark.parametrize(("ranges", "reason"), [
    ([(0, 1)], ""),
    ([(0, 2)], ""),  # a sendfile2 that sent nothing kept its id: a sendmsg had taken the next
    ([(0, 1), (1, 2)], "sock: ids 1 notified more than once"),
    ([(0, 0), (2, 2)], "sock: ids 1 never notified, though id 2 was"),
    ([(0, 0)], "sock: 1 ids notified, but 2 call(s) sent data"),
    ([(0, 5)], "sock: 6 ids notified, but only 5 zerocopy call(s) were made"),
])
def test_two_threads_ids_are_judged_whatever_the_interleaving(ranges, reason):
    """ZC-ID-CONCURRENT: no order between the threads is assumed, only that the ids notified are
    0..n-1, each once, n between the calls that sent and all the zerocopy calls."""
    abi = Abi.from_kernel_info(KERNELS["patched"])
    at_eof = {"op": "sendfile2", "out": "sock", "in": "src", "offset": 4096, "count": 4096, "flags": abi.sendfile_zc}
    sendmsg = {"op": "sendmsg", "fd": "sock", "len": 100, "flags": MSG_ZEROCOPY, "thread": 1}
    program = Program.from_json({"sysno": {"sendfile2": 467},
                                 "fds": [{"name": "src", "kind": "file", "size": 4096},
                                         {"name": "sock", "kind": "tcp4", "zerocopy": True}],
                                 "ops": [at_eof] * 3 + [sendmsg] * 2 + [{"op": "drain", "fd": "sock", "wait_ms": 0}]})
    records = [{"origin": SO_EE_ORIGIN_ZEROCOPY, "errno": 0, "lo": lo, "hi": hi, "code": 1} for lo, hi in ranges]
    ops = [{"op": "sendfile2", "ret": 0, "errno": 0}] * 3 + [{"op": "sendmsg", "ret": 100, "errno": 0}] * 2 + \
        [{"op": "drain", "ret": 0, "errno": 0, "notifications": records}]
    result = ProgramResult(ops=ops, final={}, fixture_errors=[])
    assert accounting_holds("sock")(program, result, abi, None) == reason
