"""Campaigns: a finding is shrunk, recorded once, and a new campaign resumes from the database."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from zcfuzz.conformance.abi import Abi
from zcfuzz.conformance.cases import rows_of, spec_programs
from zcfuzz.conformance.oracles import Violation
from zcfuzz.conformance.spec import CLAUSES
from zcfuzz.fuzz.campaign import (
    EXIT_GRACE_S,
    PROFILE_PARTS,
    STOP_GRACE_S,
    CampaignConfig,
    Fuzzer,
    Profile,
    parse_budget,
    parse_shard,
    round_seed,
    run_campaign,
    share_of,
)
from zcfuzz.fuzz.findings import FindingStore, finding_files
from zcfuzz.fuzz.shared import example_database
from zcfuzz.vm.program import Program, ProgramResult
from zcfuzz.vm.target import KernelCrash, Target

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
    examples = example_database(tmp_path / "findings" / "examples", None)
    return Fuzzer(target, store, examples, time.monotonic() + budget_s)


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


def test_a_long_finding_shrinks_in_runs_near_the_log_of_its_length(tmp_path):
    """A row with a thousand ops of which one fails: halves and quarters go first."""
    sends = [{"op": "sendmsg", "fd": "s", "len": 1, "flags": 0}] * 1000
    splice = {"op": "splice", "in": "p.r", "off_in": None, "out": "s", "off_out": None, "len": 1, "flags": 0}
    program = Program.from_json({"fds": [{"name": "p", "kind": "pipe"}, {"name": "s", "kind": "tcp4"}],
                                 "ops": sends[:700] + [splice] + sends[700:]})
    kernel = SpliceWarns()
    fuzzer(tmp_path, kernel).run_spec_programs([program])
    (folder,) = [p.parent for p in (tmp_path / "findings").glob("*/finding.json")]
    finding = json.loads((folder / "finding.json").read_text())
    assert [op["op"] for op in finding["program"]["ops"]] == ["splice"]
    assert len(kernel.runs) < 200  # one op at a time: a thousand runs and more


@pytest.mark.parametrize("text, seconds", [("90", 90), ("30s", 30), ("10m", 600), ("2h", 7200), ("1.5m", 90)])
def test_budgets(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "0", "-5m", "5x"])
def test_bad_budgets_are_one_line_errors(text):
    from zcfuzz.vm.errors import UserError

    with pytest.raises(UserError, match="bad budget"):
        parse_budget(text)


@pytest.mark.parametrize("text, shard", [("0/1", (0, 1)), ("1/2", (1, 2)), (" 3/4 ", (3, 4))])
def test_shards(text, shard):
    assert parse_shard(text) == shard


@pytest.mark.parametrize("text", ["", "2/2", "1", "-1/2", "a/b", "1/0"])
def test_bad_shards_are_one_line_errors(text):
    from zcfuzz.vm.errors import UserError

    with pytest.raises(UserError, match="bad shard"):
        parse_shard(text)


def test_shards_split_spec_programs_and_seeds_with_nothing_twice():
    """Two machines, one with two workers and one with three: every spec program runs once, no
    two workers draw the same seeds, and one machine alone seeds as it always did."""
    info = SpliceWarns().kernel_info()
    programs = spec_programs(Abi.from_kernel_info(info), info)
    shares = [share_of(programs, (shard, 2), w, workers) for shard, workers in ((0, 2), (1, 3)) for w in range(workers)]
    assert sorted(p.dumps() for share in shares for p in share) == sorted(p.dumps() for p in programs)
    seeds = {round_seed(7, (shard, 2), w, r) for shard, workers in ((0, 2), (1, 3)) for w in range(workers)
             for r in range(10)}
    assert len(seeds) == 50
    assert round_seed(7, (0, 1), 1, 3) == hash((7, 1, 3)) & 0xFFFFFFFF


@pytest.mark.host
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


# --- a campaign process ends with everything it started ------------------------------------

ROOT = Path(__file__).resolve().parent.parent
SEEDED = Violation("parity", "SF2-ZC-TRANSFER", 0, "seeded: no host kernel has sendfile2, so it stays")


def host_campaign(findings: Path, budget: str, log: Path) -> subprocess.Popen:
    """`zcfuzz fuzz --target host` with two workers, as a user starts it."""
    return subprocess.Popen([sys.executable, "-m", "zcfuzz.cli", "fuzz", "--target", "host", "--budget", budget,
                             "--workers", "2", "--findings", str(findings)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT)


def running_descendants(campaign: subprocess.Popen, timeout_s: float = 60.0) -> list[psutil.Process]:
    """The campaign's workers and their executors, once both workers run programs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert campaign.poll() is None, "the campaign ended before its workers ran"
        family = psutil.Process(campaign.pid).children(recursive=True)
        if sum(p.name() == "zcexec" for p in family) >= 2:
            return family
        time.sleep(0.2)
    raise AssertionError("the workers did not start their executors")


def seeded_findings(folder: Path) -> dict[str, str]:
    """A findings folder holding one finding no host campaign finds: its finding.json by key."""
    store = FindingStore(folder, {"nr_sendfile2": 467})
    store.record(SEEDED, Program.from_json({"sysno": {"sendfile2": 467}, "fds": [
        {"name": "src", "kind": "file"}, {"name": "sock", "kind": "tcp4"}], "ops": [
        {"op": "sendfile2", "out": "sock", "in": "src", "offset": 0, "count": 512, "flags": 2}]}))
    return finding_documents(folder)


def finding_documents(folder: Path) -> dict[str, str]:
    """finding.json by key, each folder's program.json agreeing with it."""
    docs = {}
    for path in finding_files(folder):
        doc = json.loads(path.read_text())
        assert json.loads((path.parent / "program.json").read_text()) == doc["program"], path.parent
        docs[doc["key"]] = path.read_text()
    return docs


@pytest.fixture
def executor():
    from zcfuzz.vm.errors import UserError
    from zcfuzz.vm.executor import executor_binary

    try:
        executor_binary()
    except UserError as err:
        pytest.skip(str(err))


@pytest.mark.host
def test_a_killed_campaign_leaves_nothing_running_and_resumes(tmp_path, executor):
    """kill -9 of `zcfuzz fuzz`: its workers and their executors go within seconds (the parent-
    death signal), and a rerun on the same folder keeps every finding as it was."""
    seeded = seeded_findings(tmp_path / "findings")
    campaign = host_campaign(tmp_path / "findings", "120s", tmp_path / "first.log")
    family = running_descendants(campaign)
    campaign.kill()
    campaign.wait()
    gone, alive = psutil.wait_procs(family, timeout=5)
    assert not alive, f"still running after kill -9 of the campaign: {[p.pid for p in alive]}"

    found = finding_documents(tmp_path / "findings")
    rerun = host_campaign(tmp_path / "findings", "3s", tmp_path / "rerun.log")
    assert rerun.wait(timeout=120) == 0, (tmp_path / "rerun.log").read_text()
    after = finding_documents(tmp_path / "findings")
    assert after[SEEDED.key] == seeded[SEEDED.key]
    assert set(found) <= set(after)
    assert SEEDED.clause_id in (tmp_path / "rerun.log").read_text()


@pytest.mark.host
@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 130)])
def test_a_stopped_campaign_stops_its_workers_first(tmp_path, executor, sig, status):
    """SIGTERM or Ctrl-C: the workers end their programs and close their targets within the
    grace given them, then the campaign ends as the signal says."""
    seeded = seeded_findings(tmp_path / "findings")
    campaign = host_campaign(tmp_path / "findings", "120s", tmp_path / "campaign.log")
    family = running_descendants(campaign)
    asked = time.monotonic()
    campaign.send_signal(sig)
    assert campaign.wait(timeout=STOP_GRACE_S + EXIT_GRACE_S + 5) == status
    assert time.monotonic() - asked < STOP_GRACE_S, "a worker did not stop when asked"
    gone, alive = psutil.wait_procs(family, timeout=1)
    assert not alive, [p.pid for p in alive]
    assert finding_documents(tmp_path / "findings")[SEEDED.key] == seeded[SEEDED.key]


# --- where a campaign's time goes (`zcfuzz fuzz --profile`) -------------------------------------


@pytest.mark.host
def test_the_profile_accounts_for_the_campaigns_wall_time(tmp_path):
    config = CampaignConfig(target="host", budget_s=6, workers=1, seed=1, findings=tmp_path, profile=True,
                            spec_programs=False)
    out = io.StringIO()
    totals = run_campaign(config, out=out)
    profile = totals["profile"]
    assert set(profile["seconds"]) == set(PROFILE_PARTS)
    assert sum(profile["share"].values()) == pytest.approx(1, abs=0.01)
    assert profile["seconds"]["execute"] > 0 and profile["seconds"]["send"] > 0 and profile["seconds"]["generate"] > 0
    assert profile["programs"] > 0 and set(profile["execute_phases_s"]) == {"build", "ops", "final", "teardown"}
    assert sum(profile["execute_phases_s"].values()) == pytest.approx(profile["seconds"]["execute"], rel=0.05, abs=0.01)
    printed = [line for line in out.getvalue().splitlines() if line.startswith("profile:")]
    assert all(part in printed[0] for part in PROFILE_PARTS) and "build" in printed[1]


def test_profiles_of_workers_add_up():
    one, two = Profile(), Profile()
    one.add("execute", 2.0)
    two.add("generate", 1.0)
    one.settle(4.0)
    two.settle(2.0)
    total = Profile.combine([one, two])
    assert total.wall_s == 6.0 and total.seconds["other"] == 3.0
    assert Profile.from_json(total.to_json()).shares() == total.shares()
    assert total.shares()["execute"] == pytest.approx(2 / 6, abs=0.001)


@pytest.mark.host
def test_zcfuzz_fuzz_profile_prints_where_the_time_went(tmp_path, executor):
    done = subprocess.run([sys.executable, "-m", "zcfuzz.cli", "fuzz", "--target", "host", "--budget", "4s",
                           "--findings", str(tmp_path), "--profile"], capture_output=True, text=True, cwd=ROOT, check=False,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stderr.splitlines() if line.startswith("profile: generate"))
    assert "execute" in line and "twin" in line and "restart" in line


@pytest.mark.parametrize("target, message", [("vm:no-such-revision", "zcfuzz: error: no revision 'no-such-revision'"),
                                             ("bogus", "zcfuzz: error: unknown target 'bogus'")])
def test_a_bad_target_is_one_line_error_before_any_worker_starts(tmp_path, target, message):
    done = subprocess.run([sys.executable, "-m", "zcfuzz.cli", "fuzz", "--target", target, "--budget", "4s",
                           "--workers", "2", "--findings", str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                          check=False, timeout=60)
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(message), done.stderr


def test_a_worker_told_to_leave_inside_hypothesis_exits_without_a_traceback():
    """Hypothesis hands a SystemExit raised while it ran a program back in an exception group;
    the worker's status is still the signal's."""
    from zcfuzz.fuzz.campaign import leaving_status

    assert leaving_status(SystemExit(143)) == 143
    assert leaving_status(BaseExceptionGroup("flaky", [SystemExit(143)])) == 143
    assert leaving_status(BaseExceptionGroup("outer", [ValueError(), BaseExceptionGroup("inner", [SystemExit(130)])])) == 130
    try:
        try:
            raise SystemExit(143)
        except SystemExit as exit_:
            raise RuntimeError("wrapped") from exit_
    except RuntimeError as wrapped:
        assert leaving_status(BaseExceptionGroup("flaky", [wrapped])) == 143
    assert leaving_status(ValueError("a bug")) is None
