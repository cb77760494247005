"""`zcfuzz mutants`: the mutation score of the suite, as a kill matrix.

Each mutant (a patch seeding one bug on top of a revision) is built in one slot shared by all
mutants, so a build recompiles only what this mutant and the previous one touched. A mutant is
killed by the first clause whose verdict regresses from the revision's own (the gate's rule),
trying the clauses its `Killed-by:` line names first and stopping at the first kill; if no clause
kills it, by a finding of a fixed-seed campaign whose program does not fail on the revision. The
matrix says which check killed each mutant, whether the patch named it, and how long it took.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from conformance.spec import CLAUSE_BY_ID, CLAUSES
from fuzz.gate import REGRESSED, change, fails_on, read_findings, run_folder, write_report
from vm.errors import UserError
from vm.target import KernelCrash

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

    @property
    def killed(self) -> bool:
        return bool(self.check)

    @property
    def as_named(self) -> str:
        """Whether the killer is one of the clauses the patch names."""
        if not self.killed:
            return "-"
        return "yes" if self.killer in self.mutant.expected else "no"


def first_regression(reference: dict[str, str], verdicts) -> tuple[str, str] | None:
    """The first (clause id, detail) whose verdict regresses from the reference's; `verdicts`
    yields (clause id, verdict, reason) lazily so the caller stops running clauses there."""
    for clause_id, verdict, reason in verdicts:
        if change(reference[clause_id], verdict) == REGRESSED:
            return clause_id, f"{verdict}: {reason}"
    return None


HEADER = ("mutant", "killed by", "clause/finding", "as named", "build s", "kill s")


def matrix_rows(kills: list[Kill]) -> list[tuple[str, ...]]:
    return [(k.mutant.name, k.check or "SURVIVED", k.killer or "-", k.as_named, f"{k.build_s:.0f}", f"{k.kill_s:.0f}")
            for k in kills]


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


def conformance_kill(target_spec: str, reference: dict[str, str], mutant: Mutant) -> tuple[str, str, str] | None:
    """(check, killer, detail) of the first clause that kills the mutant, or of its boot crash."""
    from conformance.suite import probe_features, run_clause
    from vm.target import open_target

    with open_target(target_spec, build=False) as target:
        try:
            info = target.kernel_info()
            features = probe_features(target, info)
        except KernelCrash as crash:
            return BOOT, crash.title, f"crash before any clause ran: {crash.title}"

        def verdicts():
            for clause_id in clause_order(mutant.expected):
                result = run_clause(target, CLAUSE_BY_ID[clause_id], info, features)
                print(f"# {mutant.name}: {clause_id}: {result.verdict}", file=sys.stderr)
                yield clause_id, result.verdict, result.reason

        found = first_regression(reference, verdicts())
    return (CONFORMANCE, *found) if found else None


def fuzz_kill(target_spec: str, reference_spec: str, budget_s: float, seed: int,
              findings_dir: Path) -> tuple[str, str, str] | None:
    """(check, finding key, message) of the first finding whose program passes on the revision."""
    from fuzz.campaign import CampaignConfig, run_campaign

    run_campaign(CampaignConfig(target=target_spec, budget_s=budget_s, seed=seed, findings=findings_dir,
                                target_options={"build": False}))
    for key, finding in read_findings(findings_dir).items():
        if not fails_on(finding, reference_spec, {}):
            return FUZZ, key, f"{finding['title']}: {finding['message']} [{finding['folder']}]"
    return None


def run_mutant(revision, mutant: Mutant, reference: dict[str, str], reference_spec: str, budget_s: float,
               seed: int, workdir: Path) -> Kill:
    from vm import kbuild

    started = time.monotonic()
    kbuild.build_kernel(revision.with_patch(mutant.patch, slot=f"{revision.name}-mutants"),
                        progress=lambda line: print(line, file=sys.stderr))
    build_s = time.monotonic() - started
    target_spec = f"vm:{materialise(revision, mutant, workdir / mutant.name / 'revision')}"
    started = time.monotonic()
    found = (conformance_kill(target_spec, reference, mutant)
             or fuzz_kill(target_spec, reference_spec, budget_s, seed, workdir / mutant.name / "findings"))
    check, killer, detail = found or ("", "", "")
    return Kill(mutant, check, killer, detail, build_s, time.monotonic() - started)


def cmd_mutants(args) -> int:
    from conformance.suite import run_suite
    from fuzz.campaign import parse_budget
    from vm import kbuild
    from vm.target import open_target

    budget_s = parse_budget(args.budget)
    revision = kbuild.resolve_revision(args.rev)
    mutants = load_mutants(args.mutants, args.only)
    write_report(args.md, "")  # an unwritable report fails now, not after the run
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
              f"(build {kill.build_s:.0f}s, kill {kill.kill_s:.0f}s)", file=sys.stderr)
        kills.append(kill)
    print(matrix_text(kills), end="")
    write_report(args.md, matrix_markdown(kills, args.rev))
    print(score_line(kills))
    return 0 if all(k.killed for k in kills) else 1


def register(subparsers) -> None:
    from vm.kbuild import PATCHES_DIR

    parser = subparsers.add_parser(
        "mutants", help="build each seeded bug on top of a revision and check the suite kills it",
        description="For each *.patch of the mutants folder, in name order: build REV plus that patch "
                    "(incrementally, in one shared slot), run the clauses its Killed-by line names, then "
                    "the rest, stopping at the first clause whose verdict regresses from REV's; if none "
                    "does, a fixed-seed campaign whose findings must not fail on REV. Prints the kill "
                    "matrix; exit 1 if any mutant survives.")
    parser.add_argument("--rev", default="v2", help="the revision the mutants apply to (default v2)")
    parser.add_argument("--mutants", default=PATCHES_DIR / "mutants", type=Path, metavar="DIR",
                        help="folder of mutant patches (default kernel-patches/mutants)")
    parser.add_argument("--only", metavar="NAME", help="one mutant: its file name, stem or number (0005)")
    parser.add_argument("--budget", default="1m", help="fuzz budget for a mutant no clause kills (default 1m)")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    parser.add_argument("--md", metavar="FILE", help="write the kill matrix as Markdown")
    parser.set_defaults(func=cmd_mutants)
