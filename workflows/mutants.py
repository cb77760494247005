"""`zcfuzz mutants`: the mutation score of the suite, as a kill matrix.

Each mutant (a patch seeding one bug on top of a revision) is built in one slot shared by all
mutants, so a build recompiles only what this mutant and the previous one touched. A mutant is
killed by the first clause whose verdict regresses from the revision's own (the gate's rule),
trying the clauses its `Killed-by:` line names first and stopping at the first kill; if no clause
kills it, by a finding of a fixed-seed campaign. Either kills only if it replays (the gate's rule
too, `workflows.gate.Replays`): on each of REPLAYS fresh guests of the mutant the clause regresses or
the finding's program fails the same way, and on none of the revision's; a candidate that does
not is passed over for the next. The matrix says which check killed each mutant, whether the
patch named it, how often the kill replayed, and how long it took.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from zcfuzz.conformance.spec import CLAUSE_BY_ID, CLAUSES
from zcfuzz.vm.errors import UserError, check_outputs, write_output
from zcfuzz.vm.target import KernelCrash
from zcfuzz.workflows.gate import (
    REGRESSED,
    REPLAYS,
    Replays,
    change,
    finding_fails,
    read_findings,
    replay_both,
    run_folder,
)

KILLED_BY = re.compile(r"^Killed-by:\s*(.+?)\s*$", re.MULTILINE)
CONFORMANCE, FUZZ, BOOT = "conformance", "fuzz", "boot"


@dataclass(frozen=True)
class Mutant:
    patch: Path
    expected: tuple[str, ...]  # the clauses its Killed-by line names

    @property
    def name(self) -> str:
        return self.patch.stem


def read_mutant(patch: Path) -> Mutant:
    found = KILLED_BY.search(patch.read_text(errors="replace"))
    expected = tuple(i.strip() for i in found.group(1).split(",") if i.strip()) if found else ()
    unknown = [i for i in expected if i not in CLAUSE_BY_ID]
    if unknown:
        raise UserError(f"{patch.name}: Killed-by names {unknown[0]!r}, which is no clause of conformance/spec.py")
    return Mutant(patch, expected)


def load_mutants(folder: Path, only: str | None = None) -> list[Mutant]:
    """Every *.patch in the folder in name order; `only` picks one by file name, stem or number."""
    patches = sorted(folder.glob("*.patch"))
    if only:
        patches = [p for p in patches if only in (p.name, p.stem) or p.stem.split("-", 1)[0] == only]
        if not patches:
            raise UserError(f"no mutant {only!r} in {folder}: give a patch name, its stem or its number")
    if not patches:
        raise UserError(f"no *.patch in {folder}")
    return [read_mutant(p) for p in patches]


def clause_order(expected: tuple[str, ...]) -> list[str]:
    """The clauses the mutant names first, then the rest in table order."""
    return list(expected) + [c.id for c in CLAUSES if c.id not in expected]


@dataclass
class Kill:
    """One row of the kill matrix; `check` empty: the mutant survived."""

    mutant: Mutant
    check: str
    killer: str  # clause id, finding key or crash title
    detail: str
    build_s: float
    kill_s: float  # from booting the mutant to the kill (or to giving up)
    replayed: str = ""  # how often the kill replayed on the mutant and on the revision
    passed_over: tuple[str, ...] = ()  # candidates that did not replay: "killer (how often)"

    @property
    def killed(self) -> bool:
        return bool(self.check)

    @property
    def as_named(self) -> str:
        """Whether the killer is one of the clauses the patch names."""
        if not self.killed:
            return "-"
        return "yes" if self.killer in self.mutant.expected else "no"


def regressions(reference: dict[str, str], verdicts):
    """Each (clause id, detail) whose verdict regresses from the reference's; `verdicts` yields
    (clause id, verdict, reason) lazily, so clauses run only until the caller stops asking."""
    for clause_id, verdict, reason in verdicts:
        if change(reference[clause_id], verdict) == REGRESSED:
            yield clause_id, f"{verdict}: {reason}"


def first_kill(candidates, replay, passed_over: list[str]):
    """The first (killer, detail, Replays) of `candidates`, (killer, detail) pairs, that replays
    (`replay(killer) -> Replays`); None if none does. Each one passed over goes to `passed_over`
    and stderr, and the next is asked for only then."""
    for killer, detail in candidates:
        replayed = replay(killer)
        if replayed.reproduces:
            return killer, detail, replayed
        passed_over.append(f"{killer} ({replayed})")
        print(f"# not reproducible, passed over: {killer}: failed {replayed}", file=sys.stderr)
    return None


HEADER = ("mutant", "killed by", "clause/finding", "as named", "replayed", "build s", "kill s")


def matrix_rows(kills: list[Kill]) -> list[tuple[str, ...]]:
    return [(k.mutant.name, k.check or "SURVIVED", k.killer or "-", k.as_named, k.replayed or "-",
             f"{k.build_s:.0f}", f"{k.kill_s:.0f}") for k in kills]


def matrix_text(kills: list[Kill]) -> str:
    rows = [HEADER, *matrix_rows(kills)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows) + "\n"


def matrix_markdown(kills: list[Kill], rev: str) -> str:
    lines = [f"# Kill matrix: mutants of {rev}", "", "| " + " | ".join(HEADER) + " |",
             "|---" * len(HEADER) + "|"]
    lines += ["| " + " | ".join(f"`{c}`" if i in (0, 2) and c != "-" else c for i, c in enumerate(row)) + " |"
              for row in matrix_rows(kills)]
    details = [k for k in kills if k.killed]
    if details:
        lines += ["", "## How each was killed", ""]
        lines += [f"- `{k.mutant.name}`: {k.detail}" for k in details]
    passed_over = [k for k in kills if k.passed_over]
    if passed_over:
        lines += ["", "## Candidates that did not replay (passed over)", ""]
        lines += [f"- `{k.mutant.name}`: {'; '.join(k.passed_over)}" for k in passed_over]
    return "\n".join(lines) + "\n" + score_line(kills) + "\n"


def score_line(kills: list[Kill]) -> str:
    survivors = [k.mutant.name for k in kills if not k.killed]
    killed = len(kills) - len(survivors)
    line = f"mutants: {killed}/{len(kills)} killed ({killed / len(kills):.0%})" if kills else "mutants: none"
    return line + (f"; survived: {', '.join(survivors)}" if survivors else "")


# --- running --------------------------------------------------------------------------------------


def materialise(revision, mutant: Mutant, folder: Path) -> Path:
    """The revision plus the mutant as a revision folder. Its series has the same patch names and
    contents as the shared-slot build, so `vm:FOLDER` (what campaign workers open) is a cache
    hit on that build."""
    patches = (*revision.patches, mutant.patch)
    names = [p.name for p in patches]
    if len(set(names)) != len(names):
        raise UserError(f"{mutant.patch.name} has the name of a patch of {revision.name}: rename the mutant")
    folder.mkdir(parents=True, exist_ok=True)
    for patch in patches:
        shutil.copyfile(patch, folder / patch.name)
    (folder / "series").write_text("".join(f"{name}\n" for name in names))
    return folder


def probed(target):
    """kernel_info and the features probed on the target's guest (the suite's first program)."""
    from zcfuzz.conformance.suite import probe_features

    info = target.kernel_info()
    return info, probe_features(target, info)


def crashes_probing(title: str):
    """An attempt for `replays`: the guest crashes with `title` before any clause runs."""
    def attempt(target) -> bool:
        try:
            probed(target)
        except KernelCrash as crash:
            return crash.title == title
        return False

    return attempt


def clause_regresses(clause_id: str, reference: str):
    """An attempt for `replays`: the clause's verdict there regresses from `reference`."""
    from zcfuzz.conformance.suite import run_clause

    def attempt(target) -> bool:
        info, features = probed(target)
        return change(reference, run_clause(target, CLAUSE_BY_ID[clause_id], info, features).verdict) == REGRESSED

    return attempt


@dataclass(frozen=True)
class Sides:
    """The two kernels a kill is replayed on: the mutant's (`vm:FOLDER`) and the revision's."""

    mutant_spec: str
    rev: str
    reference_spec: str

    def replay(self, attempt, mutant_target=None) -> Replays:
        """`attempt` on fresh guests of the mutant (of `mutant_target` if given, a target open on
        it) and of the revision; both are built, so neither is built again here."""
        return replay_both(attempt, ("mutant", mutant_target or self.mutant_spec), (self.rev, self.reference_spec),
                           build=False)


def conformance_kill(sides: Sides, reference: dict[str, str], mutant: Mutant,
                     passed_over: list[str]) -> tuple[str, str, str, Replays] | None:
    """(check, killer, detail, replays) of the first clause that kills the mutant, or of its
    boot crash: each regression found is replayed before it kills."""
    from zcfuzz.conformance.suite import run_clause
    from zcfuzz.vm.backends import open_target

    with open_target(sides.mutant_spec, build=False) as target:
        try:
            info, features = probed(target)
        except KernelCrash as crash:
            found = first_kill([(crash.title, f"crash before any clause ran: {crash.title}")],
                               lambda title: sides.replay(crashes_probing(title), target), passed_over)
            return (BOOT, *found) if found else None

        def verdicts():
            for clause_id in clause_order(mutant.expected):
                result = run_clause(target, CLAUSE_BY_ID[clause_id], info, features)
                print(f"# {mutant.name}: {clause_id}: {result.verdict}", file=sys.stderr)
                yield clause_id, result.verdict, result.reason

        found = first_kill(regressions(reference, verdicts()),
                           lambda clause_id: sides.replay(clause_regresses(clause_id, reference[clause_id]), target),
                           passed_over)
    return (CONFORMANCE, *found) if found else None


def fuzz_kill(sides: Sides, budget_s: float, seed: int, findings_dir: Path,
              passed_over: list[str]) -> tuple[str, str, str, Replays] | None:
    """(check, finding key, message, replays) of the first finding of a campaign on the mutant
    that replays: fails on each fresh guest of the mutant and on none of the revision's."""
    from zcfuzz.fuzz.campaign import CampaignConfig, run_campaign

    run_campaign(CampaignConfig(target=sides.mutant_spec, budget_s=budget_s, seed=seed, findings=findings_dir,
                                target_options={"build": False}))
    findings = read_findings(findings_dir)
    candidates = ((key, f"{f['title']}: {f['message']} [{f['folder']}]") for key, f in findings.items())
    found = first_kill(candidates, lambda key: sides.replay(finding_fails(findings[key])), passed_over)
    return (FUZZ, *found) if found else None


def run_mutant(revision, mutant: Mutant, reference: dict[str, str], reference_spec: str, budget_s: float,
               seed: int, workdir: Path) -> Kill:
    from zcfuzz.vm import kbuild

    started = time.monotonic()
    kbuild.build_kernel(revision.with_patch(mutant.patch, slot=f"{revision.name}-mutants"),
                        progress=lambda line: print(line, file=sys.stderr))
    build_s = time.monotonic() - started
    sides = Sides(f"vm:{materialise(revision, mutant, workdir / mutant.name / 'revision')}", revision.name,
                  reference_spec)
    started = time.monotonic()
    passed_over: list[str] = []
    found = (conformance_kill(sides, reference, mutant, passed_over)
             or fuzz_kill(sides, budget_s, seed, workdir / mutant.name / "findings", passed_over))
    check, killer, detail, replayed = found or ("", "", "", "")
    return Kill(mutant, check, killer, detail, build_s, time.monotonic() - started, str(replayed),
                tuple(passed_over))


def cmd_mutants(args) -> int:
    from zcfuzz.conformance.suite import run_suite
    from zcfuzz.fuzz.campaign import parse_budget
    from zcfuzz.vm import kbuild
    from zcfuzz.vm.backends import open_target

    budget_s = parse_budget(args.budget)
    revision = kbuild.resolve_revision(args.rev)
    mutants = load_mutants(args.mutants, args.only)
    check_outputs(args.md)
    kbuild.build_kernel(revision, progress=lambda line: print(line, file=sys.stderr))
    reference_spec = f"vm:{args.rev}"
    print(f"# {args.rev}: conformance, the reference verdicts", file=sys.stderr)
    with open_target(reference_spec) as target:
        reference = {r.clause.id: r.verdict for r in run_suite(target)[1]}
    workdir = run_folder("mutants")
    kills = []
    for mutant in mutants:
        kill = run_mutant(revision, mutant, reference, reference_spec, budget_s, args.seed, workdir)
        print(f"# {mutant.name}: {kill.check or 'SURVIVED'} {kill.killer} "
              f"{f'(replayed {kill.replayed}) ' if kill.killed else ''}"
              f"(build {kill.build_s:.0f}s, kill {kill.kill_s:.0f}s)", file=sys.stderr)
        kills.append(kill)
    print(matrix_text(kills), end="")
    write_output(args.md, matrix_markdown(kills, args.rev))
    print(score_line(kills))
    return 0 if all(k.killed for k in kills) else 1


def register(subparsers) -> None:
    from zcfuzz.vm.kbuild import PATCHES_DIR

    parser = subparsers.add_parser(
        "mutants", help="build each seeded bug on top of a revision and check the suite kills it",
        description="For each *.patch of the mutants folder, in name order: build REV plus that patch "
                    "(incrementally, in one shared slot), run the clauses its Killed-by line names, then "
                    "the rest, stopping at the first clause whose verdict regresses from REV's; if none "
                    "does, a fixed-seed campaign, whose first finding that replays kills it. A clause or "
                    f"finding replays if it fails on each of {REPLAYS} "
                    "fresh guests of the mutant and on none of REV's. Prints the kill matrix, with how "
                    "often each kill replayed; exit 1 if any mutant survives.")
    parser.add_argument("--rev", default="v2", help="the revision the mutants apply to (default v2)")
    parser.add_argument("--mutants", default=PATCHES_DIR / "mutants", type=Path, metavar="DIR",
                        help="folder of mutant patches (default kernel-patches/mutants)")
    parser.add_argument("--only", metavar="NAME", help="one mutant: its file name, stem or number (0005)")
    parser.add_argument("--budget", default="1m", help="fuzz budget for a mutant no clause kills (default 1m)")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    parser.add_argument("--md", metavar="FILE", help="write the kill matrix as Markdown")
    parser.set_defaults(func=cmd_mutants)
