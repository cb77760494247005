"""KCOV coverage on a guest of the v2 revision, mapped to the series' lines (vm/PROGRAM.md,
"Coverage"; README, "Coverage"). Like the other vm tests these build the kernel when it is not
cached yet."""

from __future__ import annotations

import json

import pytest
from zcfuzz.conformance.abi import Abi
from zcfuzz.fuzz.campaign import CampaignConfig, run_campaign
from zcfuzz.fuzz.cover import CoverTarget, coverage_for
from zcfuzz.vm.backends import open_target
from zcfuzz.vm.program import Program

pytestmark = pytest.mark.vm

FDS = [{"name": "src", "kind": "file", "size": 65536, "seed": 1}, {"name": "sock", "kind": "tcp4", "zerocopy": True}]


@pytest.fixture(scope="module")  # its tests are one xdist_group: one worker boots it
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


@pytest.mark.xdist_group("guest-v2-cover")
def test_vm_zc_sendfile2_reaches_the_series_helpers(v2):
    target, abi, coverage = v2
    result = target.run(sendfile_program(abi, "sendfile2"))
    assert result.ret(0) == 8192 and result.cover and not result.cover_error
    assert {pc for pc in result.cover if pc in coverage.kernel.sites}, "PCs that are no KCOV site of vmlinux"
    reached = functions_reached(coverage, result.cover)
    assert {"sys_sendfile2", "do_sendfile", "msg_zerocopy_splice_alloc", "msg_zerocopy_splice_finish"} <= reached


@pytest.mark.xdist_group("guest-v2-cover")
def test_vm_without_cover_a_program_gets_no_pcs(v2):
    target, abi, _ = v2
    result = target.run(sendfile_program(abi, "sendfile2", cover=False))
    assert result.ret(0) == 8192 and result.cover == frozenset()
    assert "cover" not in result.to_json()


@pytest.mark.xdist_group("guest-v2-cover")
def test_vm_a_line_no_program_reaches_is_reported_unreached(v2, tmp_path):
    """Only sendfile64 runs: sendfile2's own lines are reachable, not reached, and every report
    says so (JSON `unreached`, lcov `DA:line,0`)."""
    target, abi, _ = v2
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


@pytest.mark.xdist_group("guest-v2-cover")
def test_vm_the_msgzc_after_zc_rows_reach_msg_zerocopy_realloc(v2):
    """v2's change in msg_zerocopy_realloc (TCP starts a new skb rather than extend a call's
    notification) is reached by the rows of ZC-MSGZC-AFTER-ZC, which also pass."""
    from zcfuzz.conformance.spec import CLAUSE_BY_ID
    from zcfuzz.conformance.suite import probe_features, run_clause

    target, _, _ = v2
    info = target.kernel_info()
    covering = CoverTarget(target, coverage_for("v2", info))
    features = probe_features(target, info)
    covering.label = "clause ZC-MSGZC-AFTER-ZC"
    outcome = run_clause(covering, CLAUSE_BY_ID["ZC-MSGZC-AFTER-ZC"], info, features)
    assert outcome.verdict == "pass", outcome.reason
    realloc = {k for k, s in covering.coverage.reachable.items() if s.function == "msg_zerocopy_realloc"}
    assert realloc, "msg_zerocopy_realloc has no reachable series line in this build"
    assert {covering.coverage.reached.get(k) for k in realloc} == {"clause ZC-MSGZC-AFTER-ZC"}


@pytest.mark.xdist_group("guest-v2-cover")
def test_vm_lcov_tracefile_opens_in_genhtml(v2, tmp_path):
    """The tracefile `zcfuzz cover --lcov` writes, read by genhtml: from the top of a tree with
    the series applied (the source shown), and without the source anywhere (--no-source)."""
    import re
    import shutil
    import subprocess

    from zcfuzz.workflows.cover import write_outputs
    from zcfuzz.vm import kbuild

    if shutil.which("genhtml") is None:
        pytest.skip("genhtml is not installed (Debian package lcov)")
    target, abi, _ = v2
    covering = CoverTarget(target, coverage_for("v2", target.kernel_info()))
    covering.run(sendfile_program(abi, "sendfile2"))
    coverage = covering.coverage
    assert 0 < len(coverage.reached) < coverage.total
    tracefile = tmp_path / "v2.info"
    write_outputs(coverage, "v2", str(tracefile), None, None)
    tree = tmp_path / "linux"
    kbuild.link_tree(kbuild.debian_source().tree, tree)
    kbuild.apply_series(tree, kbuild.resolve_revision("v2").patches)
    for where, extra in ((tree, []), (tmp_path, ["--no-source"])):
        out = tmp_path / f"html{len(extra)}"
        done = subprocess.run(["genhtml", *extra, "-o", str(out), str(tracefile)], cwd=where, check=False,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert (out / "index.html").is_file()
        lines = re.search(r"lines\.+: [\d.]+% \((\d+) of (\d+) lines\)", done.stdout)
        assert lines and (int(lines[1]), int(lines[2])) == (len(coverage.reached), coverage.total), done.stdout
    page = next((tmp_path / "html0").rglob("read_write.c.gcov.html")).read_text()
    assert "sendfile2" in page  # the source itself, as the series left it


def test_vm_fuzz_cover_prints_series_lines(tmp_path):
    """`zcfuzz fuzz --cover`: a campaign with coverage and steering, its series lines at the end."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "zcfuzz.cli", "fuzz", "--target", "vm:v2", "--cover",
                           "--budget", "40s", "--no-spec-programs", "--findings", str(tmp_path)],
                          check=False, capture_output=True, text=True, cwd=root, timeout=600)
    assert done.returncode == 0, done.stderr
    last = re.findall(r"^series lines (\d+)/(\d+)$", done.stderr, re.MULTILINE)
    assert last, done.stderr
    reached, total = map(int, last[-1])
    assert 0 < reached <= total
    assert list((tmp_path / "cover-corpus").glob("*.json")), "no program that reached new lines was kept"


@pytest.mark.xdist_group("guest-v2-cover")
def test_vm_take_new_has_what_every_run_of_a_judged_program_reached(v2):
    """A ZC sendfile2 program is judged with its sendfile64 twin run after it: last_new holds the
    twin's new lines only, take_new() those of both runs."""
    from zcfuzz.conformance.oracles import judge

    target, abi, _ = v2
    info = target.kernel_info()
    covering = CoverTarget(target, coverage_for("v2", info))
    judge(covering, sendfile_program(abi, "sendfile2", cover=False), abi, info)
    new, lines = covering.take_new()
    assert new == set(covering.coverage.reached) and len(new) > len(covering.last_new)
    assert {covering.coverage.reachable[k].function for k in new} >= {"sys_sendfile2", "msg_zerocopy_splice_alloc"}
    assert lines >= new and covering.take_new() == (set(), set())
