"""Campaigns: a finding is shrunk, recorded once, and a new campaign resumes from the database."""

from __future__ import annotations

import io
import json
import time

import pytest

from conformance.cases import rows_of, spec_programs
from conformance.spec import CLAUSES
from fuzz.abi import Abi
from fuzz.campaign import CampaignConfig, Fuzzer, parse_budget, run_campaign
from fuzz.findings import FindingStore
from vm.program import Program, ProgramResult
from vm.target import KernelCrash, Target

SPLICE_WARNING = "WARNING: refcount bug in splice_to_socket"


class SpliceWarns(Target):
    """A kernel that prints a WARNING whenever a program splices; every other call is skipped."""

    name = "fake"

    def __init__(self):
        self.runs = []

    def kernel_info(self) -> dict:
        return {"revision": "fake", "base_version": "6.12.0", "nr_sendfile2": 467,
                "sendfile_flags": {"SENDFILE_DEFAULT": 1, "SENDFILE_ZC": 2}, "splice_flags": {"SPLICE_F_ZC": 16}}

    def run(self, program):
        self.runs.append(program)
        if any(op.op == "splice" for op in program.ops):
            raise KernelCrash(SPLICE_WARNING, f"{SPLICE_WARNING}\nCall Trace:\n", program, console="[ 1.0] boot\n")
        skipped = {"ret": -1, "errno": 38, "timed_out": False, "skipped": "fake"}
        return ProgramResult.from_json({"ops": [skipped] * len(program.ops), "final": {"peers": {}, "notifications": {}}})


def fuzzer(tmp_path, target, budget_s=120.0):
    store = FindingStore(tmp_path / "findings", target.kernel_info())
    return Fuzzer(target, store, tmp_path / "findings" / "examples", time.monotonic() + budget_s)


def test_a_finding_is_shrunk_recorded_once_and_resumed(tmp_path):
    first = SpliceWarns()
    fuzzer(tmp_path, first).run_round(1)
    (folder,) = [p.parent for p in (tmp_path / "findings").glob("*/finding.json")]
    finding = json.loads((folder / "finding.json").read_text())
    assert finding["title"] == SPLICE_WARNING and finding["oracle"] == "health"
    assert [op["op"] for op in finding["program"]["ops"]] == ["splice"]  # shrunk to the one call
    assert (folder / "console.log").read_text() == "[ 1.0] boot\n"

    second = SpliceWarns()
    fuzzer(tmp_path, second).run_round(2)  # the recorded key no longer fails: generation goes on
    assert any(op.op == "splice" for op in second.runs[0].ops)  # replayed from the database first
    assert len(second.runs) > 50
    assert len(list((tmp_path / "findings").glob("*/finding.json"))) == 1


class LeakyKernel(SpliceWarns):
    """Splicing WARNs and leaks: on a kernel that has WARNed, a lone splice WARNs again; on a
    freshly booted one it takes a splice and a sendmsg, as a leak-free reproducer would."""

    def __init__(self):
        super().__init__()
        self.warned = False
        self.restarts = 0

    @property
    def tainted(self) -> bool:
        return self.warned

    def restart(self) -> None:
        self.warned, self.restarts = False, self.restarts + 1

    def run(self, program):
        ops = {op.op for op in program.ops}
        if "splice" in ops and ("sendmsg" in ops or self.warned):
            self.warned = True
            return super().run(program)
        self.runs.append(program)
        skipped = {"ret": -1, "errno": 38, "timed_out": False, "skipped": "fake"}
        return ProgramResult.from_json({"ops": [skipped] * len(program.ops), "final": {"peers": {}, "notifications": {}}})


def test_a_reproducer_that_fails_only_on_a_tainted_kernel_is_not_kept(tmp_path):
    kernel = LeakyKernel()
    fuzzer(tmp_path, kernel).run_round(1)
    (folder,) = [p.parent for p in (tmp_path / "findings").glob("*/finding.json")]
    ops = {op["op"] for op in json.loads((folder / "finding.json").read_text())["program"]["ops"]}
    assert {"splice", "sendmsg"} <= ops  # the lone splice failed only after a WARNING
    assert kernel.restarts > 0


def test_spec_programs_take_every_clause_in_turn():
    info = SpliceWarns().kernel_info()
    abi = Abi.from_kernel_info(info)
    programs = spec_programs(abi, info)
    rows = {c.id: rows_of(c.id, abi, info) for c in CLAUSES}
    assert len(programs) == len({Program.from_json(r.program(abi)).dumps() for rs in rows.values() for r in rs})
    firsts = list(dict.fromkeys(Program.from_json(rs[0].program(abi)).dumps() for rs in rows.values()))
    assert [p.dumps() for p in programs[:len(firsts)]] == firsts
    unpatched = {"revision": "base", "nr_sendfile2": None, "sendfile_flags": {}, "splice_flags": {}}
    assert not any(op.op == "sendfile2" for p in spec_programs(Abi.from_kernel_info(unpatched), unpatched)
                   for op in p.ops)


def test_spec_programs_are_judged_and_their_findings_minimised(tmp_path):
    kernel = SpliceWarns()
    info = kernel.kernel_info()
    programs = spec_programs(Abi.from_kernel_info(info), info)
    fuzzer(tmp_path, kernel).run_spec_programs(programs)
    assert [p.dumps() for p in kernel.runs[:3]] == [p.dumps() for p in programs[:3]]
    (folder,) = [p.parent for p in (tmp_path / "findings").glob("*/finding.json")]
    finding = json.loads((folder / "finding.json").read_text())
    assert finding["title"] == SPLICE_WARNING and [op["op"] for op in finding["program"]["ops"]] == ["splice"]
    assert len(kernel.runs) > len(programs)  # every one ran, and confirmations besides


@pytest.mark.parametrize("text, seconds", [("90", 90), ("30s", 30), ("10m", 600), ("2h", 7200), ("1.5m", 90)])
def test_budgets(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "0", "-5m", "5x"])
def test_bad_budgets_are_one_line_errors(text):
    from vm.errors import UserError

    with pytest.raises(UserError, match="bad budget"):
        parse_budget(text)


def test_short_campaign_on_the_host_kernel(tmp_path):
    """The host kernel has no sendfile2: only baseline oracles apply, and they must stay quiet."""
    config = CampaignConfig(target="host", budget_s=8, workers=1, seed=1, findings=tmp_path)
    out = io.StringIO()
    totals = run_campaign(config, out=out)
    assert totals["programs"] > 20 and "programs," in out.getvalue()
    oracles = {json.loads(p.read_text())["oracle"] for p in tmp_path.glob("*/finding.json")}
    assert not oracles - {"errno"}, oracles  # errno findings on 6.18 are the model's to answer
    assert any((tmp_path / "examples").rglob("*")), "the example database was not written"

    again = run_campaign(config, out=io.StringIO())  # resumes on the same database
    assert again["programs"] > 20
