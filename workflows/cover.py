"""`zcfuzz cover`: which lines of the series the checks reach, and which check reached each first.

Conformance first (each program labelled with its clause), then fault injection on the programs
that reached new lines (each one-call op of theirs run again with `fail_nth` 1, 2, ... until the
call passes no more fault sites), then a campaign with coverage on for what is left of the
budget. Every program runs with `"cover": true`; `vm.coverage` maps its PCs to the series' lines.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from zcfuzz.fuzz.cover import CoverTarget, coverage_for
from zcfuzz.vm.coverage import SeriesCoverage
from zcfuzz.vm.errors import UserError, cannot_write, check_outputs, write_output
from zcfuzz.vm.program import FAULTABLE_OPS, ExecutorError, Program
from zcfuzz.vm.target import KernelCrash, Target

SERIES_CALLS = ("sendfile2", "sendfile64", "splice")
MAX_FAIL_NTH = 24  # a call passes fewer fault sites than this on the series' paths
FAULT_SHARE = 0.3  # of the budget left after conformance, at most this much on fault injection


# --- the stages ------------------------------------------------------------------------------


def run_conformance(target: CoverTarget, log=print) -> None:
    from zcfuzz.conformance.spec import CLAUSES
    from zcfuzz.conformance.suite import probe_features, run_clause

    info = target.kernel_info()
    target.label = "probe"
    features = probe_features(target, info)
    for clause in CLAUSES:
        target.label = f"clause {clause.id}"
        outcome = run_clause(target, clause, info, features)
        log(f"# conformance {clause.id}: {outcome.verdict}; {target.coverage.progress()}")
    target.label = ""


def faulted(program: Program, i: int, nth: int) -> Program:
    ops = list(program.ops)
    ops[i] = replace(ops[i], fail_nth=nth)
    return replace(program, ops=tuple(ops))


def run_fault_injection(target: CoverTarget, programs: list[tuple[Program, str]], deadline: float,
                        log=print) -> None:
    """Each one-call op of each program, failed at its 1st, 2nd, ... fault site in turn until the
    call passes no more (syzkaller's fault injection), for the allocation error paths. The
    series' calls first (sendfile2, sendfile64, splice), then the program's other one-call ops."""
    steps = [(program, label, i) for program, label in programs for i, op in enumerate(program.ops)
             if op.op in SERIES_CALLS and not op.fail_nth]
    steps += [(program, label, i) for program, label in programs for i, op in enumerate(program.ops)
              if op.op in FAULTABLE_OPS and op.op not in SERIES_CALLS and not op.fail_nth]
    for program, label, i in steps:
        op = program.ops[i]
        for nth in range(1, MAX_FAIL_NTH + 1):
            if time.monotonic() > deadline:
                log(f"# fault injection: out of time; {target.coverage.progress()}")
                target.label = ""
                return
            target.label = f"fault injection: {label}, op {i} {op.op} fail_nth={nth}"
            try:
                result = target.run(faulted(program, i, nth))
            except (KernelCrash, ExecutorError) as err:
                log(f"# fault injection: {target.label}: {err}")
                if target.tainted:
                    target.restart()
                continue
            if not result.fault_injected(i):
                break
    target.label = ""
    log(f"# fault injection done; {target.coverage.progress()}")


def fault_candidates(finders: list[tuple[Program, str]]) -> list[tuple[Program, str]]:
    """The programs worth failing: those that reached new lines, smallest first, one per label."""
    seen: dict[str, tuple[Program, str]] = {}
    for program, label in sorted(finders, key=lambda f: len(f[0].ops)):
        seen.setdefault(label, (program, label))
    return list(seen.values())


def cover_revision(rev: str, budget_s: float, seed: int = 0, findings: Path | None = None,
                   source: str | None = None, log=print, extra: tuple[str, ...] = ()) -> SeriesCoverage:
    """Conformance, fault injection and a campaign on REV, all with coverage: the series' lines
    reached and what reached each first. `extra`: C files built with KCOV beyond the series'
    own (`--cover FILE`), a build of its own."""
    from zcfuzz.fuzz.campaign import CampaignConfig, run_campaign
    from zcfuzz.vm.backends import open_target

    started = time.monotonic()
    options: dict = {"source": source} if source else {}
    if extra:
        options["cover"] = list(extra)
    findings = findings or default_cover_dir(rev)
    with open_target(f"vm:{rev}", **options) as inner:
        coverage = coverage_for(rev, inner.kernel_info(), source)
        log(f"# {rev}: {len(coverage.lines)} lines added, {coverage.total} reachable")
        target = CoverTarget(inner, coverage, findings / "cover-corpus")
        run_conformance(target, log)
        left = budget_s - (time.monotonic() - started)
        run_fault_injection(target, fault_candidates(target.finders),
                            time.monotonic() + max(0.0, left) * FAULT_SHARE, log)
    left = budget_s - (time.monotonic() - started)
    if left > 5:
        log(f"# {rev}: campaign {left:.0f}s, seed {seed}")
        totals = run_campaign(CampaignConfig(target=f"vm:{rev}", budget_s=left, seed=seed, findings=findings,
                                             spec_programs=False, target_options=options, cover=True,
                                             cover_reached=dict(coverage.reached)))
        for key, by in totals.get("series_reached_by", {}).items():
            file, line = key.rsplit(":", 1)
            coverage.reached.setdefault((file, int(line)), by)
    return coverage


def default_cover_dir(rev: str) -> Path:
    import re

    from zcfuzz.vm.kbuild import cache_dir

    return cache_dir() / "cover" / re.sub(r"[^A-Za-z0-9._-]+", "_", rev)


def time_to_cover(rev: str, budget_s: float, fraction: float = 0.9, seed: int = 0,
                  findings: Path | None = None) -> dict:
    """For `zcfuzz bench`: a campaign as campaigns run (spec programs first, then generation)
    from an empty database, with coverage on; how long until it reached `fraction` of the
    series' reachable lines (None if it did not within `budget_s`)."""
    import tempfile

    from zcfuzz.fuzz.campaign import CampaignConfig, run_campaign

    folder = findings or Path(tempfile.mkdtemp(prefix="zcfuzz-cover-"))
    totals = run_campaign(CampaignConfig(target=f"vm:{rev}", budget_s=budget_s, seed=seed, findings=folder,
                                         cover=True, cover_fraction=fraction))
    return {"revision": rev, "fraction": fraction, "seconds": totals.get("series_fraction_s"),
            "lines_reached": totals.get("series_lines", 0), "lines_total": totals.get("series_total", 0),
            "budget_s": budget_s}


# --- the report ------------------------------------------------------------------------------


def text_report(coverage: SeriesCoverage) -> str:
    out = []
    data = coverage.to_json()
    for patch, counts in data["by_patch"].items():
        if counts["lines_total"]:
            out.append(f"{patch}: {counts['lines_reached']}/{counts['lines_total']}")
    out.append("")
    for (file, function), lines in sorted(coverage.by_function().items()):
        reached = [s for s in lines if s.key in coverage.reached]
        firsts = sorted({coverage.reached[s.key] for s in reached})
        first = f"  first: {firsts[0]}" + (f" (+{len(firsts) - 1} more)" if len(firsts) > 1 else "") if firsts else ""
        out.append(f"{file} {function}: {len(reached)}/{len(lines)}{first}")
        for s in sorted(lines, key=lambda s: s.line):
            if s.key not in coverage.reached:
                out.append(f"    not reached: {s.file}:{s.line}  {s.text.strip()}  ({coverage.why_not_reached(s)})")
    why: dict[str, int] = {}
    for reason in coverage.unreachable.values():
        why[reason] = why.get(reason, 0) + 1
    out.append("")
    out.append(f"{len(coverage.lines)} lines added; {len(coverage.unreachable)} not reachable in this build:")
    for reason, count in sorted(why.items(), key=lambda kv: -kv[1]):
        out.append(f"  {count:4}  {reason}")
    out.append("KCOV sees task context only: what runs only in softirq (TX completion, ACK processing) "
               "stays unseen; 6.12 has no remote coverage for the network stack.")
    out.append(f"series lines reached: {len(coverage.reached)}/{coverage.total} "
               f"({100 * len(coverage.reached) / max(coverage.total, 1):.1f}%)")
    return "\n".join(out) + "\n"


def write_outputs(coverage: SeriesCoverage, rev: str, lcov: str | None, html_dir: str | None,
                  json_file: str | None) -> None:
    # Each report is made only when asked for: the HTML and the lcov trace walk every line.
    if lcov:
        write_output(lcov, coverage.lcov(rev))
    if html_dir:
        write_output(html_index(html_dir), coverage.html(f"zcfuzz cover: {rev}"))
    if json_file:
        write_output(json_file, json.dumps({"revision": rev, **coverage.to_json()}, indent=2) + "\n")


def html_index(html_dir: str | None) -> Path | None:
    """The page `--html DIR` writes, DIR made: before the run, so that a DIR that cannot be fails then."""
    if not html_dir:
        return None
    try:
        Path(html_dir).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise cannot_write(html_dir, err) from None
    return Path(html_dir) / "index.html"


def cmd_cover(args) -> int:
    from zcfuzz.fuzz.campaign import parse_budget
    from zcfuzz.vm import kbuild

    budget_s = parse_budget(args.budget)
    kbuild.resolve_revision(args.rev, args.source)
    extra = kbuild.cover_files(args.cover)
    check_outputs(args.lcov, args.json, html_index(args.html))
    started = time.monotonic()
    coverage = cover_revision(args.rev, budget_s, args.seed, Path(args.findings) if args.findings else None,
                              args.source, log=lambda line: print(line, file=sys.stderr, flush=True), extra=extra)
    write_outputs(coverage, args.rev, args.lcov, args.html, args.json)
    print(text_report(coverage), end="")
    print(f"# {time.monotonic() - started:.0f}s", file=sys.stderr)
    return 0


def register(sub) -> None:
    cover = sub.add_parser("cover", help="conformance and a campaign with KCOV: the series' lines reached and by what")
    cover.add_argument("--rev", default="v2", help="a revision name or folder (default v2)")
    cover.add_argument("--source", metavar="TREE", help="your kernel tree as the base (default: Debian's 6.12)")
    cover.add_argument("--budget", default="5m", help="time for all of it: 30s, 5m (default 5m)")
    cover.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    cover.add_argument("--findings", help="folder for the campaign's findings and the coverage corpus")
    cover.add_argument("--lcov", metavar="FILE", help="write an lcov tracefile of the series' lines")
    cover.add_argument("--html", metavar="DIR", help="write DIR/index.html: the patches' lines coloured")
    cover.add_argument("--json", metavar="FILE", help="write the coverage as JSON")
    cover.add_argument("--cover", nargs="+", action="extend", metavar="FILE",
                       help="C files of the kernel tree built with KCOV too, beyond the series' own (a build of "
                       "its own, as `zcfuzz kernel build --cover`)")
    cover.set_defaults(func=cmd_cover)


# --- the gate and the verdict -----------------------------------------------------------------


def covered(target: Target, rev: str, source: str | None = None) -> Target:
    """`target` with coverage on, or as it is where the kernel has no vmlinux or KCOV sites."""
    try:
        coverage = coverage_for(rev, target.kernel_info(), source)
    except UserError:
        return target
    return CoverTarget(target, coverage) if coverage.total else target


def campaign_cover(target: Target) -> dict:
    """CampaignConfig options for a campaign that goes on from what `target` reached."""
    if not isinstance(target, CoverTarget):
        return {}
    return {"cover": True, "cover_reached": dict(target.coverage.reached)}


def merge_campaign(target: Target, totals: dict) -> SeriesCoverage | None:
    """The conformance run's coverage plus the campaign's (`run_campaign`'s totals)."""
    if not isinstance(target, CoverTarget):
        return None
    for key, by in totals.get("series_reached_by", {}).items():
        file, line = key.rsplit(":", 1)
        target.coverage.reached.setdefault((file, int(line)), by)
    return target.coverage


def summary(coverage: SeriesCoverage | None) -> str:
    if coverage is None:
        return "series coverage: none (no KCOV sites in this kernel)"
    return (f"series coverage: {len(coverage.reached)}/{coverage.total} reachable lines reached "
            f"({100 * len(coverage.reached) / max(coverage.total, 1):.1f}%)")


def gate_lines(baseline: SeriesCoverage | None, candidate: SeriesCoverage | None) -> str:
    """The candidate's series coverage, and each line (same file, function and text) the
    baseline's checks reached that the candidate's did not."""
    out = [f"candidate {summary(candidate)}", f"baseline {summary(baseline)}"]
    if baseline is not None and candidate is not None:
        def same(s):
            return (s.file, s.function, s.text.strip())

        reached_here = {same(candidate.reachable[k]) for k in candidate.reached if k in candidate.reachable}
        theirs = {same(s): s for s in candidate.reachable.values()}
        lost = [(baseline.reached[k], theirs[same(s)]) for k, s in sorted(baseline.reachable.items())
                if k in baseline.reached and same(s) in theirs and same(s) not in reached_here]
        out.append(f"lines the baseline reached that the candidate did not: {len(lost)}")
        out += [f"  {s.file}:{s.line} {s.function}: {s.text.strip()}  (baseline: {by})" for by, s in lost]
    return "\n".join(out) + "\n"
