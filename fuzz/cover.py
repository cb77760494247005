"""Coverage in a campaign: a target that runs every program with KCOV on and credits the series
lines each reaches, for steering and for the corpus. `zcfuzz cover` is workflows/cover.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from zcfuzz.vm.coverage import SeriesCoverage
from zcfuzz.vm.errors import UserError
from zcfuzz.vm.program import Program, ProgramResult
from zcfuzz.vm.target import KernelCrash, Target, WrappedTarget


def program_id(program: Program) -> str:
    import hashlib

    return hashlib.sha256(program.dumps().encode()).hexdigest()[:12]


class CoverTarget(WrappedTarget):
    """A target that runs every program with coverage on and credits the series lines each
    reaches to `label` (a clause id, a fault-injection step) or, without one, to the program,
    which is kept in `corpus` when it reached lines no program before it reached."""

    def __init__(self, inner: Target, coverage: SeriesCoverage, corpus: Path | None = None):
        super().__init__(inner)
        self.coverage, self.corpus = coverage, corpus
        self.label = ""
        self.last_new: set[tuple[str, int]] = set()
        self.last_lines: set[tuple[str, int]] = set()
        self.finders: list[tuple[Program, str]] = []  # programs that reached new lines, and their label
        # what the runs since the last take_new() reached: a judged program runs with its twin
        # and reruns, and last_new/last_lines hold only the last of those runs
        self.new_since: set[tuple[str, int]] = set()
        self.lines_since: set[tuple[str, int]] = set()

    def run(self, program: Program) -> ProgramResult:
        try:
            result = self.inner.run(replace(program, cover=True))
        except KernelCrash as crash:
            if crash.result is not None:
                self.record(program, crash.result)
            raise
        self.record(program, result)
        return result

    def record(self, program: Program, result: ProgramResult) -> None:
        label = self.label or f"program {program_id(program)}"
        self.last_lines = self.coverage.lines_of(result.cover)
        self.last_new = self.coverage.add(result.cover, label)
        self.new_since |= self.last_new
        self.lines_since |= self.last_lines
        if not self.last_new:
            return
        self.finders.append((program, label))
        if self.corpus is not None:
            self.corpus.mkdir(parents=True, exist_ok=True)
            (self.corpus / f"{program_id(program)}.json").write_text(program.dumps() + "\n")


    def take_new(self) -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
        """(lines reached first, all lines reached) by the runs since the last call: for a
        campaign's steering, which judges a program by several runs (its sendfile64 twin last)."""
        taken = (self.new_since, self.lines_since)
        self.new_since, self.lines_since = set(), set()
        return taken


def coverage_for(rev: str, kernel_info: dict, source: str | None = None) -> SeriesCoverage:
    """The series of REV against the kernel a target booted (its vmlinux)."""
    from zcfuzz.vm import kbuild

    revision = kbuild.resolve_revision(rev, source)
    vmlinux = kernel_info.get("vmlinux")
    if not vmlinux:
        raise UserError(f"coverage needs a guest target: {kernel_info.get('target', rev)} has no vmlinux")
    return SeriesCoverage(revision.patches, Path(vmlinux))


def load_corpus(folder: Path) -> list[Program]:
    return [Program.load(str(p)) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
