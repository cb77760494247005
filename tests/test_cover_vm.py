"""KCOV coverage on a guest of the v2 revision, mapped to the series' lines (vm/PROGRAM.md,
"Coverage"; README, "Coverage"). Like the other vm tests these build the kernel when it is not
cached yet."""

from __future__ import annotations

import json

import pytest

from fuzz.abi import Abi
from fuzz.campaign import CampaignConfig, run_campaign
from fuzz.cover import CoverTarget, coverage_for
from vm.program import Program
from vm.target import open_target

pytestmark = pytest.mark.vm

FDS = [{"name": "src", "kind": "file", "size": 65536, "seed": 1}, {"name": "sock", "kind": "tcp4", "zerocopy": True}]


@pytest.fixture(scope="module")
def v2():
    with open_target("vm:v2") as target:
        info = target.kernel_info()
        yield target, Abi.from_kernel_info(info), coverage_for("v2", info)


def sendfile_program(abi: Abi, op: str, cover: bool = True) -> Program:
    call = {"op": op, "out": "sock", "in": "src", "offset": 0, "count": 8192}
    if op == "sendfile2":
        call["flags"] = abi.sendfile_zc
    return Program.from_json({"sysno": {"sendfile2": abi.nr_sendfile2}, "cover": cover, "fds": FDS, "ops": [
        call, {"op": "peer_read", "fd": "sock", "max": 65536}, {"op": "drain", "fd": "sock", "wait_ms": 100}]})


def functions_reached(coverage, pcs) -> set[str]:
    return {coverage.reachable[key].function for key in coverage.lines_of(pcs)}


def test_vm_zc_sendfile2_reaches_the_series_helpers(v2):
    target, abi, coverage = v2
    result = target.run(sendfile_program(abi, "sendfile2"))
    assert result.ret(0) == 8192 and result.cover and not result.cover_error
    assert {pc for pc in result.cover if pc in coverage.kernel.sites}, "PCs that are no KCOV site of vmlinux"
    reached = functions_reached(coverage, result.cover)
    assert {"sys_sendfile2", "do_sendfile", "msg_zerocopy_splice_alloc", "msg_zerocopy_splice_finish"} <= reached


def test_vm_without_cover_a_program_gets_no_pcs(v2):
    target, abi, _ = v2
    result = target.run(sendfile_program(abi, "sendfile2", cover=False))
    assert result.ret(0) == 8192 and result.cover == frozenset()
    assert "cover" not in result.to_json()


def test_vm_a_line_no_program_reaches_is_reported_unreached(v2, tmp_path):
    """Only sendfile64 runs: sendfile2's own lines are reachable, not reached, and every report
    says so (JSON `unreached`, lcov `DA:line,0`)."""
    target, abi, coverage = v2
    covering = CoverTarget(target, coverage_for("v2", target.kernel_info()), tmp_path / "corpus")
    covering.run(sendfile_program(abi, "sendfile64", cover=False))  # CoverTarget turns coverage on
    report = covering.coverage.to_json()
    assert report["lines_reached"] > 0  # sendfile64 goes through the series' do_sendfile
    unreached = [u for u in report["unreached"] if u["function"] == "sys_sendfile2"]
    assert unreached and all(u["why"] == "no program reached it" for u in unreached)
    assert report["lines_total"] == report["lines_reached"] + len(report["unreached"])
    sf_lines = {f"DA:{u['line']},0" for u in unreached}
    record = covering.coverage.lcov("t").split("SF:fs/read_write.c\n")[1].split("end_of_record")[0]
    assert sf_lines <= set(record.splitlines())
    assert list((tmp_path / "corpus").glob("*.json")), "the program that reached new lines was not kept"


def test_vm_campaign_with_coverage_shows_series_lines(tmp_path):
    """A short campaign with coverage: the progress line counts the series' lines, the totals say
    what reached each, and the programs that reached new lines are in the corpus."""
    import io

    out = io.StringIO()
    totals = run_campaign(CampaignConfig(target="vm:v2", budget_s=40, findings=tmp_path, spec_programs=False,
                                         cover=True), out=out)
    assert totals["series_total"] > 0 and 0 < totals["series_lines"] <= totals["series_total"]
    assert f"series lines {totals['series_lines']}/{totals['series_total']}" in out.getvalue()
    assert all(by.startswith("program ") for by in totals["series_reached_by"].values())
    corpus = list((tmp_path / "cover-corpus").glob("*.json"))
    assert corpus and all(Program.from_json(json.loads(p.read_text())) for p in corpus)
