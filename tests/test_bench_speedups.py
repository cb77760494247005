"""The campaign speed-ups of `zcfuzz bench`'s switches: batches of programs (`Target.run_many`,
a program and its sendfile64 twin in one request) and the executor's spare pairs. Each must
leave every program as it was: run alone, on fixtures of its own, judged the same."""

from __future__ import annotations

import json
import time

import pytest
from zcfuzz.conformance.abi import MSG_ZEROCOPY, Abi
from zcfuzz.conformance.cases import spec_programs
from zcfuzz.conformance.oracles import judge, parity_twin
from zcfuzz.fuzz.campaign import Profile, ProfiledTarget
from zcfuzz.vm.backends import executor_request, open_target
from zcfuzz.vm.program import Program, ProgramResult
from zcfuzz.vm.target import KernelCrash
from zcfuzz.workflows.bench import CRASH_PROGRAM, WARNING_PROGRAM, switch_figures

ZEROCOPY_SEND = Program.from_json({"fds": [{"name": "s", "kind": "tcp4", "zerocopy": True}], "ops": [
    {"op": "sendmsg", "fd": "s", "len": 512, "flags": MSG_ZEROCOPY}, {"op": "peer_read", "fd": "s", "max": 65536},
    {"op": "drain", "fd": "s", "wait_ms": 200}]})
PLAIN_SEND = Program.from_json({"fds": [{"name": "f", "kind": "file", "size": 512}, {"name": "s", "kind": "tcp4"}],
                                "ops": [{"op": "sendfile64", "out": "s", "in": "f", "offset": 0, "count": 512},
                                        {"op": "peer_read", "fd": "s", "max": 65536}]})


def first_id_notified(result: ProgramResult) -> list[tuple[int, int]]:
    return [(n["lo"], n["hi"]) for n in result.notifications("s")]


# --- spare pairs, on the host's executor ---------------------------------------------------------


@pytest.mark.host
def test_a_spare_pair_is_as_new_as_one_connected_for_the_program(host):
    executor_request(host, "spares 2")
    try:
        results = []
        for _ in range(3):
            results.append(host.run(ZEROCOPY_SEND))
            time.sleep(0.3)  # the executor idles: it connects spares
    finally:
        executor_request(host, "spares 0")
    assert [r.spared for r in results] == [[], ["s"], ["s"]]
    # Each zerocopy socket starts its ids at 0: a spare's counter was never moved.
    assert all(first_id_notified(r) == [(0, 0)] for r in results)
    assert all(r.peer_bytes("s") == 512 and r.reused == [] for r in results)


@pytest.mark.host
def test_no_spares_when_told_none(host):
    executor_request(host, "spares 0")
    host.run(ZEROCOPY_SEND)
    time.sleep(0.3)
    assert host.run(ZEROCOPY_SEND).spared == []


@pytest.mark.host
@pytest.mark.parametrize("line", ["spares 5", "spares -1", "spares x"])
def test_a_bad_spares_request_is_refused_and_the_executor_serves_on(host, line):
    assert "spares N: N from 0 to 4" in json.loads(host.request(line))["error"]
    assert json.loads(host.request("ping")) == {"pong": True}


@pytest.mark.host
def test_switches_are_measured_on_and_off_on_the_host(host):
    figures = switch_figures(host, 0.8)["switches"]
    assert set(figures) == {"batch", "spares"}
    assert all(figures[name][state] > 0 for name in figures for state in ("on", "off"))
    host.run(ZEROCOPY_SEND)
    time.sleep(0.3)
    assert host.run(ZEROCOPY_SEND).spared == []  # the host's executor is back to none


@pytest.mark.host
def test_a_batch_on_the_host_runs_in_order(host):
    outcomes = host.run_many([PLAIN_SEND, ZEROCOPY_SEND, PLAIN_SEND])
    assert all(isinstance(o, ProgramResult) for o in outcomes)
    assert [len(o.ops) for o in outcomes] == [2, 3, 2] and first_id_notified(outcomes[1]) == [(0, 0)]


# --- batches on a guest -------------------------------------------------------------------------


@pytest.fixture(scope="module")  # its tests are one xdist_group: one worker boots it
def guest():
    with open_target("vm:v2") as target:
        yield target


@pytest.mark.vm
@pytest.mark.xdist_group("guest-v2-batches")
def test_a_batch_runs_each_program_alone_in_order(guest):
    outcomes = guest.run_many([ZEROCOPY_SEND, ZEROCOPY_SEND, PLAIN_SEND, ZEROCOPY_SEND])
    assert all(isinstance(o, ProgramResult) for o in outcomes), outcomes
    assert [len(o.ops) for o in outcomes] == [3, 3, 2, 3]
    zerocopy = [outcomes[i] for i in (0, 1, 3)]
    assert all(first_id_notified(r) == [(0, 0)] and r.peer_bytes("s") == 512 for r in zerocopy)
    assert outcomes[2].peer_bytes("s") == 512


@pytest.mark.vm
@pytest.mark.xdist_group("guest-v2-batches")
def test_a_warning_in_a_batch_is_its_programs_and_the_next_still_runs(guest):
    first, warned, after = guest.run_many([PLAIN_SEND, WARNING_PROGRAM, PLAIN_SEND])
    assert isinstance(first, ProgramResult) and isinstance(after, ProgramResult)
    assert isinstance(warned, KernelCrash) and warned.title.startswith("WARNING") and warned.result is not None
    assert warned.program == WARNING_PROGRAM and guest.tainted
    guest.restart()


@pytest.mark.vm
@pytest.mark.xdist_group("guest-v2-batches")
def test_a_crash_in_a_batch_ends_it_and_the_next_batch_gets_a_fresh_guest(guest):
    first, crashed, after = guest.run_many([PLAIN_SEND, CRASH_PROGRAM, PLAIN_SEND])
    assert isinstance(first, ProgramResult)
    assert isinstance(crashed, KernelCrash) and crashed.result is None and "BUG" in crashed.title
    assert after is None  # never run: the kernel died under the program before it
    assert all(isinstance(o, ProgramResult) for o in guest.run_many([PLAIN_SEND, PLAIN_SEND]))


@pytest.mark.vm
@pytest.mark.xdist_group("guest-v2-batches")
def test_a_failing_call_in_a_batch_does_not_shift_the_replies(guest):
    bad = Program.from_json({"fds": [], "ops": [{"op": "lkdtm", "crash": "NO_SUCH_CRASH_TYPE"}]})
    outcomes = guest.run_many([PLAIN_SEND, bad, ZEROCOPY_SEND])
    assert all(isinstance(o, ProgramResult) for o in outcomes), outcomes
    assert [o.ops[0]["op"] for o in outcomes] == ["sendfile64", "lkdtm", "sendmsg"]
    assert outcomes[1].errno(0) != 0 and first_id_notified(outcomes[2]) == [(0, 0)]


@pytest.mark.vm
@pytest.mark.xdist_group("guest-v2-batches")
def test_twins_sent_with_their_program_are_judged_as_twins_run_apart(guest):
    info = guest.kernel_info()
    abi = Abi.from_kernel_info(info)
    programs = [p for p in spec_programs(abi, info) if parity_twin(p, abi)][:10]
    assert programs
    verdicts = {}
    for batched in (True, False):
        target = ProfiledTarget(guest, Profile(), abi, batch_twins=batched)
        verdicts[batched] = []
        for program in programs:
            target.runs_in_judge = 0
            verdict = judge(target, program, abi, info)
            assert verdict.twin_result is not None
            verdicts[batched].append(sorted(v.key for v in verdict.violations))
        assert target.profile.seconds["twin"] > 0
    assert verdicts[True] == verdicts[False]
