"""Fault injection (fail_nth) and a second thread of ops on a guest of the v2 revision, whose
config has CONFIG_FAULT_INJECTION, FAILSLAB, FAIL_PAGE_ALLOC and FAULT_INJECTION_DEBUG_FS and whose
QEMU has ZCFUZZ_VCPUS vCPUs (vm/PROGRAM.md, "Fault injection" and "Concurrent calls").

Like the other vm tests these build the kernel when it is not cached yet.
"""

from __future__ import annotations

import pytest
from hypothesis import Phase, given, settings
from zcfuzz.conformance.abi import MSG_ZEROCOPY, Abi
from zcfuzz.fuzz.profiles import profile
from zcfuzz.fuzz.strategies import programs
from zcfuzz.vm.backends import open_target
from zcfuzz.vm.program import Program
from zcfuzz.vm.qemu import guest_vcpus

# One xdist_group: one worker boots the module's guest for all its tests.
pytestmark = [pytest.mark.vm, pytest.mark.xdist_group("guest-v2-faults")]

ZC_SOCKET = [{"name": "src", "kind": "file", "size": 65536, "seed": 2}, {"name": "sock", "kind": "tcp4",
                                                                          "zerocopy": True}]
MOST_SITES_WALKED = 64  # a ZC send passes fewer fault sites than this


@pytest.fixture(scope="module")
def v2():
    with open_target("vm:v2") as target:
        abi = Abi.from_kernel_info(target.kernel_info())
        yield target, abi.nr_sendfile2, abi.sendfile_zc


def program(nr: int, ops: list[dict], **options) -> Program:
    return Program.from_json({"sysno": {"sendfile2": nr}, "fds": ZC_SOCKET, "ops": ops, **options})


def test_vm_fail_nth_fails_the_first_site_of_a_send_and_nothing_after(v2):
    target, nr, _ = v2
    result = target.run(program(nr, [
        {"op": "sendmsg", "fd": "sock", "len": 4096, "flags": MSG_ZEROCOPY, "fail_nth": 1},
        {"op": "sendmsg", "fd": "sock", "len": 4096, "flags": MSG_ZEROCOPY, "fail_nth": 1_000_000},
        {"op": "sendmsg", "fd": "sock", "len": 4096, "flags": MSG_ZEROCOPY},
    ]))
    first, unmet, plain = result.ops
    assert first["fault_injected"] is True and "skipped_fault" not in first
    assert (unmet["fault_injected"], unmet["ret"]) == (False, 4096)  # fewer sites than a million
    assert "fault_injected" not in plain and plain["ret"] == 4096  # the count left over was cleared


def test_vm_fail_nth_walks_every_fault_site_of_a_zerocopy_sendfile2(v2):
    """Each site of the ZC path fails in turn, as syzkaller's fault walk does: the kernel must
    survive every one (a crash or WARNING raises KernelCrash) and the walk must reach the end."""
    target, nr, sendfile_zc = v2
    injected = []
    for nth in range(1, MOST_SITES_WALKED + 1):
        result = target.run(program(nr, [
            {"op": "sendfile2", "out": "sock", "in": "src", "offset": 0, "count": 16384, "flags": sendfile_zc,
             "fail_nth": nth},
            {"op": "drain", "fd": "sock", "wait_ms": 50},
        ]))
        if not result.fault_injected(0):
            assert result.ret(0) == 16384  # past the last site the call runs unfaulted
            break
        injected.append((nth, result.ret(0), result.errno_name(0)))
    else:
        pytest.fail(f"a ZC sendfile2 passed more than {MOST_SITES_WALKED} fault sites: {injected[-3:]}")
    assert injected, "a ZC sendfile2 passed no fault site at all"


def test_vm_threads_run_on_two_vcpus_at_once(v2):
    target, nr, _ = v2
    result = target.run(Program.from_json({
        "fds": [{"name": "p", "kind": "pipe"}, {"name": "q", "kind": "pipe"}, {"name": "n", "kind": "devnull"}],
        "ops": [{"op": "splice", "in": "p.r", "off_in": None, "out": "n", "off_out": None, "len": 10, "flags": 0},
                {"op": "write", "fd": "q.w", "len": 1 << 20, "thread": 1}],
        "timeout_ms": 300,
    }))
    assert result.thread_cpus == ([0, 1] if guest_vcpus() >= 2 else [-1, -1])
    assert result.timed_out(0) and result.timed_out(1) and result.overlapped(0, 1)


RACES = 16


def test_vm_the_id_give_back_race_keeps_the_id_sequence_contiguous(v2):
    """The v2 cover letter: a ZC sendfile2 that sends nothing gives its id back, unless a
    concurrent sendmsg(MSG_ZEROCOPY) took the next one meanwhile; then the id is notified as
    COPIED. Either way every id from 0 is notified exactly once."""
    target, nr, sendfile_zc = v2
    sends_nothing = {"op": "sendfile2", "out": "sock", "in": "src", "offset": 65536, "count": 4096,
                     "flags": sendfile_zc}
    takes_an_id = {"op": "sendmsg", "fd": "sock", "len": 100, "flags": MSG_ZEROCOPY, "thread": 1}
    result = target.run(program(nr, [sends_nothing, takes_an_id] * RACES, settle_ms=500))
    assert all(result.ret(i) == 0 for i in range(0, 2 * RACES, 2))
    assert all(result.ret(i) == 100 for i in range(1, 2 * RACES, 2))
    ids = sorted(i for n in result.notifications("sock") for i in range(n["lo"], n["hi"] + 1))
    assert ids == list(range(len(ids))) and RACES <= len(ids) <= 2 * RACES


def test_vm_a_store_through_a_mapping_survives_a_truncate_on_the_other_thread(v2):
    """v2, `zcfuzz fuzz --faults-and-threads` (3 runs of 3): a truncate on one thread cut the
    file below the page an mmap_write on the other thread was storing to, between its size check
    and the store; the SIGBUS ended the executor ("no output from test machine"). The store now
    stops where the file ends, as when the truncate came first: 0 or 1 bytes stored here (the
    file had 4097). Before, the executor died within 2 of 12 runs."""
    target, nr, _ = v2
    race = Program.from_json({"sysno": {"sendfile2": nr}, "fds": [
        {"name": "src", "kind": "file", "size": 4097, "seed": 22}, {"name": "sock", "kind": "tcp4"}], "ops": [
        {"op": "truncate", "fd": "src", "length": 1, "fail_nth": 5},
        {"op": "mmap_write", "fd": "src", "offset": 4096, "len": 4096, "seed": 65, "thread": 1},
        {"op": "drain", "fd": "sock", "wait_ms": 1000}]})
    stored = [target.run(race).ret(1) for _ in range(12)]
    assert set(stored) <= {0, 1}, stored


def test_vm_generated_programs_with_faults_and_threads_run(v2):
    """What the generator makes with faults_and_threads on runs on the guest: each faulted op
    says whether its fault was met, each threaded program ran on two vCPUs, and the kernel
    survives (a crash or WARNING raises KernelCrash)."""
    target, _, _ = v2
    abi = Abi.from_kernel_info(target.kernel_info())
    met = set()

    @settings(profile("ci"), max_examples=50, phases=[Phase.generate], deadline=None)
    @given(programs(abi, faults_and_threads=True))
    def check(program):
        result = target.run(program)
        assert [op["thread"] for op in result.ops] == [op.thread for op in program.ops]
        for op, op_result in zip(program.ops, result.ops):
            if op.fail_nth:
                assert "skipped_fault" not in op_result
                met.add(op_result["fault_injected"])
        if any(op.thread for op in program.ops):
            assert result.thread_cpus == ([0, 1] if guest_vcpus() >= 2 else [-1, -1])

    check()
    assert met == {True, False}
