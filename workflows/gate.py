"""`zcfuzz gate` and `zcfuzz verdict`: a revision judged on its own, or against another one.

A revision is judged by the conformance suite and by a fixed-seed fuzz campaign on a guest booted
on it. The gate compares two such judgements clause by clause and finding by finding. Every
change of verdict is an ABI change between the two revisions, so the gate reports both
directions: a change for the worse (regressed, a new finding) always fails it; a change for the
better (fixed, implemented, a finding gone) fails it too unless `--allow-fixes` accepts it, as
pytest's strict xfail fails on an unexpected pass: the reviewer acknowledges the ABI change and
the CI job moves its baseline forward.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from zcfuzz.conformance.spec import CLAUSE_BY_ID, Clause
from zcfuzz.conformance.suite import CRASH, ERROR, FAIL, PASS, UNSUPPORTED, ClauseResult
from zcfuzz.vm.errors import check_outputs, write_output
from zcfuzz.workflows import cover

BAD = (FAIL, CRASH, ERROR)
# How bad a verdict is; a change between revisions is judged by the rank, not the word.
SEVERITY = {PASS: 0, UNSUPPORTED: 1, FAIL: 2, ERROR: 2, CRASH: 3}
REGRESSED, FIXED, IMPLEMENTED, SAME = "regressed", "fixed", "implemented", ""
GATE_SUITE_NAME = "zcfuzz_gate"


def change(baseline: str, candidate: str) -> str:
    """What happened to a clause from the baseline's verdict to the candidate's."""
    if SEVERITY[candidate] > SEVERITY[baseline]:
        return REGRESSED
    if SEVERITY[candidate] < SEVERITY[baseline]:
        return IMPLEMENTED if baseline == UNSUPPORTED else FIXED
    return SAME


def defects(clause_id: str) -> str:
    """The RFC defects a clause (or a finding's clause) is about, `-` for none."""
    clause = CLAUSE_BY_ID.get(clause_id)
    return ", ".join(clause.catches) if clause and clause.catches else "-"


def finding_line(finding: dict) -> str:
    """Title, the RFC defects its clause is about (if it names a clause that has some), message."""
    known = defects(finding["clause_id"])
    return f"{finding['title']}{f' (defects {known})' if known != '-' else ''}: {finding['message']}"


# --- one revision, judged ----------------------------------------------------------------------


@dataclass
class RevisionRun:
    """What the suite and a campaign said of one revision."""

    rev: str
    results: list[ClauseResult]
    findings: dict[str, dict]  # finding key -> finding.json, plus its "folder"
    findings_dir: Path
    seconds: float
    coverage: object = None  # fuzz.cover: the series' lines the checks reached (a SeriesCoverage)

    @property
    def failed_clauses(self) -> list[ClauseResult]:
        return [r for r in self.results if r.verdict in BAD]


def target_options(source: str | None) -> dict:
    return {"source": source} if source else {}


def read_findings(folder: Path) -> dict[str, dict]:
    from zcfuzz.fuzz.findings import FindingStore

    return {doc["key"]: {**doc, "folder": str(folder / doc["folder"])} for doc in FindingStore(folder, {}).findings()}


def fails_on(finding: dict, target_spec: str, options: dict) -> bool:
    """The finding's program still fails the same way on another kernel."""
    from zcfuzz.fuzz.campaign import replay

    return replay(Path(finding["folder"]), target_spec, **options)[0]


# --- whether a finding replays -------------------------------------------------------------------

# How many fresh guests of each kernel a finding (or a clause's regression) is replayed on before
# it kills a mutant or changes a gate's decision. It must fail on each of the bad kernel's and on
# none of the good one's, so a program whose outcome is a coin toss on both passes 1 time in 64;
# one replay on a warm guest let timing artefacts count. A replay is a restore (about a second)
# and a program, so three per side cost seconds, not minutes.
REPLAYS = 3


def replays(attempt, target, times: int = REPLAYS, **options) -> tuple[int, int]:
    """(failed, total): `attempt(target) -> bool` (it failed there) run `times` times, each on a
    fresh guest of the target: the running guest, which a campaign or an earlier attempt may
    have left in any state, is dropped first and the guest restored anew from its just-booted
    state. `target` is a target or its spec (opened with `options`, and closed after)."""
    from zcfuzz.vm.backends import open_target
    from zcfuzz.vm.target import Target

    if not isinstance(target, Target):
        with open_target(target, **options) as opened:
            return replays(attempt, opened, times)
    failed = 0
    for _ in range(times):
        target.restart()
        failed += bool(attempt(target))
    return failed, times


def finding_fails(finding: dict):
    """An attempt for `replays`: the finding's program fails the same way (same key) there."""
    from zcfuzz.fuzz.campaign import replay_on
    from zcfuzz.vm.program import Program

    def attempt(target) -> bool:
        loaded = (finding["key"], finding, Program.from_json(finding["program"]))
        return next(replay_on(target, [loaded]))[1]

    return attempt


@dataclass(frozen=True)
class Replays:
    """How often a check failed on fresh guests of the kernel it is said to fail on (`bad`) and
    of the kernel it is said to pass on (`good`): (failed, total) each, and their names."""

    bad: str
    on_bad: tuple[int, int]
    good: str
    on_good: tuple[int, int]

    @property
    def reproduces(self) -> bool:
        """The rule: it failed on every fresh guest of the bad kernel and on none of the good's."""
        (bad_failed, bad_total), (good_failed, good_total) = self.on_bad, self.on_good
        return bad_total > 0 and bad_failed == bad_total and good_total > 0 and good_failed == 0

    @property
    def fails_on_both(self) -> bool:
        return all(total > 0 and failed == total for failed, total in (self.on_bad, self.on_good))

    def __str__(self) -> str:
        return f"{self.on_bad[0]}/{self.on_bad[1]} {self.bad}, {self.on_good[0]}/{self.on_good[1]} {self.good}"


def replay_both(attempt, bad: tuple[str, object], good: tuple[str, object], times: int = REPLAYS,
                **options) -> Replays:
    """`attempt` replayed on fresh guests of the bad kernel and of the good one, each given as
    (name, target or spec)."""
    return Replays(bad[0], replays(attempt, bad[1], times, **options), good[0],
                   replays(attempt, good[1], times, **options))


def judge_revision(rev: str, source: str | None, budget_s: float, seed: int, findings_dir: Path) -> RevisionRun:
    """Conformance, then a campaign of `budget_s` seconds with `seed`, on a guest booted on REV."""
    from zcfuzz.conformance.suite import run_suite
    from zcfuzz.fuzz.campaign import CampaignConfig, run_campaign
    from zcfuzz.vm.backends import open_target

    started = time.monotonic()
    spec = f"vm:{rev}"
    print(f"# {rev}: conformance", file=sys.stderr)
    with cover.covered(open_target(spec, **target_options(source)), rev, source) as target:
        _, results = run_suite(target, progress=lambda r: print(f"# {rev}: {r.clause.id}: {r.verdict}",
                                                                  file=sys.stderr))
    print(f"# {rev}: fuzzing {budget_s:.0f}s, seed {seed}", file=sys.stderr)
    totals = run_campaign(CampaignConfig(target=spec, budget_s=budget_s, seed=seed, findings=findings_dir,
                                         target_options=target_options(source), **cover.campaign_cover(target)))
    return RevisionRun(rev, results, read_findings(findings_dir), findings_dir, time.monotonic() - started,
                       cover.merge_campaign(target, totals))


def run_folder(command: str) -> Path:
    """A fresh folder for one command's findings: a fixed seed only repeats on an empty example
    database, and findings from earlier runs must not count."""
    from zcfuzz.vm.kbuild import cache_dir

    folder = cache_dir() / command / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    folder.mkdir(parents=True)
    return folder


# --- two revisions, compared -------------------------------------------------------------------


@dataclass
class ClauseChange:
    baseline: ClauseResult
    candidate: ClauseResult

    @property
    def clause(self) -> Clause:
        return self.candidate.clause

    @property
    def kind(self) -> str:
        return change(self.baseline.verdict, self.candidate.verdict)


@dataclass
class Comparison:
    baseline: RevisionRun
    candidate: RevisionRun
    clauses: list[ClauseChange]
    new_findings: list[dict]  # in the candidate; replays on it and not on the baseline
    gone_findings: list[dict]  # in the baseline; replays on it and not on the candidate
    # A finding one side lacks that did not replay so (listed, not counted): with how often it
    # failed on each side, and whether it was the candidate's or the baseline's.
    unreproducible: list[tuple[dict, Replays]] = field(default_factory=list)

    @property
    def regressed(self) -> list[ClauseChange]:
        return [c for c in self.clauses if c.kind == REGRESSED]

    @property
    def improved(self) -> list[ClauseChange]:
        return [c for c in self.clauses if c.kind in (FIXED, IMPLEMENTED)]

    def fails(self, allow_fixes: bool) -> bool:
        worse = bool(self.regressed or self.new_findings)
        better = bool(self.improved or self.gone_findings)
        return worse or (better and not allow_fixes)


def compare(baseline: RevisionRun, candidate: RevisionRun, replay) -> Comparison:
    """Clause verdicts side by side; findings by key. A finding one side lacks is replayed on
    fresh guests of both kernels (`replay(finding, its rev, the other rev) -> Replays`) before it
    counts as new or gone: it must fail every time on its own side and never on the other (a
    campaign of a fixed budget does not always reach the same programs twice, and a program that
    failed once may have failed by timing). One failing every time on both is no change; any
    other is not reproducible, listed and not counted."""
    by_id = {r.clause.id: r for r in baseline.results}
    missing = [r.clause.id for r in candidate.results if r.clause.id not in by_id]
    if missing:
        raise ValueError(f"the baseline has no verdict for {missing[0]}")
    clauses = [ClauseChange(by_id[r.clause.id], r) for r in candidate.results]
    decided: dict[str, list[dict]] = {"new": [], "gone": []}
    unreproducible = []
    for kind, side, other in (("new", candidate, baseline), ("gone", baseline, candidate)):
        for key, f in sorted(side.findings.items()):
            if key in other.findings:
                continue
            replayed = replay(f, side.rev, other.rev)
            print(f"# {side.rev}: {f['title']}: replayed {replayed}", file=sys.stderr)
            if replayed.reproduces:
                decided[kind].append(f)
            elif not replayed.fails_on_both:
                unreproducible.append((f, replayed))
    return Comparison(baseline, candidate, clauses, decided["new"], decided["gone"], unreproducible)


def comparison_table(comparison: Comparison) -> str:
    """Clause, both verdicts, the change, the RFC defects of any clause that fails on a side, and
    the reason of the failing side (the candidate's when both fail)."""
    base, cand = comparison.baseline.rev, comparison.candidate.rev
    width = max((len(c.clause.id) for c in comparison.clauses), default=6)
    vwidth = max(11, len(base), len(cand))
    lines = [f"{'clause':<{width}}  {base:<{vwidth}}  {cand:<{vwidth}}  {'change':<11}  {'defects':<7}  reason"]
    for c in comparison.clauses:
        failing = c.candidate if c.candidate.verdict in BAD else c.baseline if c.baseline.verdict in BAD else None
        reason = "" if failing is None else (f"{base}: " if failing is c.baseline else "") + failing.reason
        shown = defects(c.clause.id) if failing is not None else ""
        lines.append(f"{c.clause.id:<{width}}  {c.baseline.verdict:<{vwidth}}  {c.candidate.verdict:<{vwidth}}  "
                     f"{c.kind:<11}  {shown:<7}  {reason}".rstrip())
    return "\n".join(lines) + "\n"


def findings_lines(comparison: Comparison) -> str:
    base, cand = comparison.baseline, comparison.candidate
    lines = [f"findings: {len(base.findings)} on {base.rev}, {len(cand.findings)} on {cand.rev}"]
    for label, findings in ((f"new on {cand.rev}", comparison.new_findings),
                            (f"gone on {cand.rev}", comparison.gone_findings)):
        for f in findings:
            lines.append(f"  {label}: {finding_line(f)}  [{f['folder']}]")
    for f, replayed in comparison.unreproducible:
        lines.append(f"  not reproducible (failed {replayed}): {finding_line(f)}  [{f['folder']}]")
    return "\n".join(lines) + "\n"


def summary_line(comparison: Comparison, allow_fixes: bool) -> str:
    base, cand = comparison.baseline.rev, comparison.candidate.rev
    fixed_defects = sorted({d for c in comparison.improved for d in c.clause.catches})
    parts = [f"{len(comparison.regressed)} regressed",
             f"{len(comparison.improved)} fixed" + (f" ({', '.join(fixed_defects)})" if fixed_defects else ""),
             f"{len(comparison.new_findings)} new findings", f"{len(comparison.gone_findings)} findings gone"]
    line = f"gate: {'FAIL' if comparison.fails(allow_fixes) else 'pass'}: {cand} against {base}: {', '.join(parts)}"
    if not allow_fixes and not comparison.regressed and not comparison.new_findings and comparison.fails(False):
        line += "; verdicts changed for the better: pass --allow-fixes to accept"
    return line


def finding_clause(finding: dict, expected: str) -> Clause:
    """A finding as a test case of the KTAP and JUnit reports."""
    clause = CLAUSE_BY_ID.get(finding["clause_id"])
    return Clause(f"finding:{finding['key']}", expected, finding["message"], "fuzz campaign",
                  catches=clause.catches if clause else ())


def gate_results(comparison: Comparison, allow_fixes: bool) -> list[ClauseResult]:
    """The gate's own decision per clause and per changed finding, for the KTAP/JUnit writers:
    `fail` where the change fails the gate, the candidate's verdict where it does not (a clause
    failing on both revisions is no change: `pass`, its reason says it fails on both). A finding
    that did not replay is `unsupported` (a KTAP SKIP, a JUnit skipped case): nothing rests on it."""
    base, cand = comparison.baseline.rev, comparison.candidate.rev
    out = []
    for c in comparison.clauses:
        b, k = c.baseline, c.candidate
        if c.kind == REGRESSED:
            out.append(ClauseResult(c.clause, FAIL, f"regressed: {b.verdict} on {base}, {k.verdict} on {cand}: "
                                                   f"{k.reason}", k.program))
        elif c.kind in (FIXED, IMPLEMENTED):
            verdict = PASS if allow_fixes else FAIL
            out.append(ClauseResult(c.clause, verdict, f"{c.kind}: {b.verdict} on {base}, {k.verdict} on {cand}"
                                                       f" (defects {defects(c.clause.id)}): {b.reason}", b.program))
        elif k.verdict in BAD:
            out.append(ClauseResult(c.clause, PASS, f"{k.verdict} on both revisions: {k.reason}"))
        else:
            out.append(ClauseResult(c.clause, k.verdict, k.reason))
    for f in comparison.new_findings:
        out.append(ClauseResult(finding_clause(f, f"absent, as on {base}"), FAIL, f"new on {cand}: {f['message']}",
                                f["program"]))
    for f in comparison.gone_findings:
        out.append(ClauseResult(finding_clause(f, f"present, as on {base}"), PASS if allow_fixes else FAIL,
                                f"gone on {cand}: {f['message']}", f["program"]))
    for f, replayed in comparison.unreproducible:  # skipped: no decision rests on them
        out.append(ClauseResult(finding_clause(f, "replays on one revision only"), UNSUPPORTED,
                                f"not reproducible (failed {replayed}): {f['message']}", f["program"]))
    return out


# --- commands ----------------------------------------------------------------------------------


def build_all(revs: list[str], source: str | None) -> None:
    """Build every revision first: one that does not apply stops the command before any guest boots,
    and one that does not exist stops it before anything is built."""
    from zcfuzz.vm import kbuild

    for rev in revs:
        kbuild.resolve_revision(rev)
    for rev in dict.fromkeys(revs):
        kbuild.build_kernel(rev, source, progress=lambda line: print(line, file=sys.stderr))


def cmd_gate(args) -> int:
    from zcfuzz.conformance import report
    from zcfuzz.fuzz.campaign import parse_budget

    budget_s = parse_budget(args.budget)
    check_outputs(args.ktap, args.junitxml)
    started = time.monotonic()
    build_all([args.baseline, args.candidate], args.source)
    folder = run_folder("gate")
    baseline = judge_revision(args.baseline, args.source, budget_s, args.seed, folder / "baseline")
    candidate = judge_revision(args.candidate, args.source, budget_s, args.seed, folder / "candidate")
    options = target_options(args.source)
    comparison = compare(baseline, candidate, lambda f, rev, other: replay_both(
        finding_fails(f), (rev, f"vm:{rev}"), (other, f"vm:{other}"), **options))
    print(comparison_table(comparison), end="")
    print(findings_lines(comparison), end="")
    print(cover.gate_lines(baseline.coverage, candidate.coverage), end="")
    results = gate_results(comparison, args.allow_fixes)
    write_output(args.ktap, report.ktap(results, GATE_SUITE_NAME))
    write_output(args.junitxml, report.junit(results, GATE_SUITE_NAME))
    print(f"findings in {folder}; {time.monotonic() - started:.0f}s", file=sys.stderr)
    print(summary_line(comparison, args.allow_fixes))
    return 1 if comparison.fails(args.allow_fixes) else 0


def verdict_line(run: RevisionRun) -> str:
    passed = sum(r.verdict == PASS for r in run.results)
    return (f"verdict: {run.rev} passes {passed} clauses, fails {len(run.failed_clauses)}, "
            f"{len(run.findings)} findings")


def cmd_verdict(args) -> int:
    from zcfuzz.conformance import report
    from zcfuzz.fuzz.campaign import parse_budget

    budget_s = parse_budget(args.budget)
    check_outputs(args.ktap, args.junitxml)
    build_all([args.rev], args.source)
    run = judge_revision(args.rev, args.source, budget_s, args.seed, run_folder("verdict"))
    print(report.table(run.results), end="")
    print(f"findings: {len(run.findings)}" + (f" in {run.findings_dir}" if run.findings else ""))
    for f in run.findings.values():
        print(f"  {finding_line(f)}")
    write_output(args.ktap, report.ktap(run.results, report.SUITE_NAME))
    write_output(args.junitxml, report.junit(run.results, report.SUITE_NAME))
    print(cover.summary(run.coverage))
    print(verdict_line(run))
    return 1 if run.failed_clauses or run.findings else 0


GATE_HELP = f"""\
Builds both revisions, runs the conformance suite and a fixed-seed fuzz campaign on a guest booted
on each, and prints the clause verdicts side by side and the findings one side has and the other
lacks. Such a finding counts only if its program, replayed on {REPLAYS} fresh guests of each kernel,
fails every time on its own side and never on the other; any other is listed as not
reproducible and counts for nothing.

Every verdict change is an ABI change between the revisions, and the gate fails on it:
  regressed    the candidate fails, crashes or errs where the baseline did not, or a clause the
               baseline passed is unsupported; or the candidate has a new finding. Always exit 1.
  fixed        the baseline failed and the candidate does not; implemented: unsupported -> pass;
               or a baseline finding is gone. Exit 1 unless --allow-fixes, like a strict xfail:
               acknowledge the change and move the baseline forward.
So `--baseline rfc-v1 --candidate v2` exits 1 naming the fixed clauses and the RFC defects
(D1-D7) they are about, `--allow-fixes` makes it exit 0, and `--baseline v2 --candidate v2`
exits 0. Exit 2 for unusable input (a revision that does not apply, a bad budget)."""


def register(subparsers) -> None:
    """gate and verdict: one revision judged, two compared."""
    gate = subparsers.add_parser(
        "gate", help="compare a candidate revision with a baseline: exit 1 on any verdict change",
        description=GATE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    gate.add_argument("--baseline", required=True, metavar="REV", help="a revision name or folder")
    gate.add_argument("--candidate", required=True, metavar="REV", help="a revision name or folder")
    gate.add_argument("--source", metavar="TREE", help="your kernel tree as the base of both (default: Debian's 6.12)")
    gate.add_argument("--budget", default="5m", help="fuzz budget per revision: 30s, 5m (default 5m)")
    gate.add_argument("--seed", type=int, default=0, help="campaign seed, the same for both (default 0)")
    gate.add_argument("--allow-fixes", action="store_true", help="changes for the better do not fail the gate")
    gate.add_argument("--ktap", metavar="FILE", help="write the gate's decision per clause as KTAP v1")
    gate.add_argument("--junitxml", metavar="FILE", help="write the gate's decision per clause as JUnit XML")
    gate.set_defaults(func=cmd_gate)

    verdict = subparsers.add_parser(
        "verdict", help="build a revision, boot it, run conformance and a short campaign: exit 1 if anything failed",
        description="The clause table, the findings, and one last line: "
                    "`verdict: REV passes N clauses, fails M, K findings`.")
    verdict.add_argument("--rev", default="v2", help="a revision name or folder (default v2)")
    verdict.add_argument("--source", metavar="TREE", help="your kernel tree as the base (default: Debian's 6.12)")
    verdict.add_argument("--budget", default="1m", help="fuzz budget: 30s, 2m (default 1m)")
    verdict.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    verdict.add_argument("--ktap", metavar="FILE", help="write the clause verdicts as KTAP v1")
    verdict.add_argument("--junitxml", metavar="FILE", help="write the clause verdicts as JUnit XML")
    verdict.set_defaults(func=cmd_verdict)

