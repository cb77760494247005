"""Running clauses on a target: rows batched into few programs, one verdict per clause.

A row is a small self-contained program (its own fixtures) plus a check of its result. Rows of
one clause are concatenated into one program, fixture names prefixed so they cannot collide;
a row that may crash the kernel runs alone so a crash names its row. The minimal failing
program reported for a clause is its first failing row on its own.
"""

from __future__ import annotations

import errno as errno_module
from dataclasses import dataclass, field
from typing import Callable

from zcfuzz.conformance.abi import Abi
from zcfuzz.conformance.cases import Row, rows_of
from zcfuzz.conformance.oracles import parity_twin
from zcfuzz.conformance.spec import CLAUSES, Clause
from zcfuzz.vm.program import MAX_FIXTURES, ExecutorError, Program, ProgramResult
from zcfuzz.vm.target import KernelCrash, Target

PASS, FAIL, CRASH, UNSUPPORTED, ERROR = "pass", "fail", "crash", "unsupported", "error"
# error: the executor could not run a program, so the kernel got no verdict.
VERDICTS = (PASS, FAIL, CRASH, UNSUPPORTED, ERROR)
@dataclass
class ClauseResult:
    clause: Clause
    verdict: str
    reason: str
    program: dict | None = None  # the minimal failing (or crashing) program
    rows: int = 0

    def to_json(self) -> dict:
        return {"id": self.clause.id, "verdict": self.verdict, "reason": self.reason,
                "program": self.program}


@dataclass
class Features:
    """What the kernel under test implements of the proposal, found by probing it."""

    sendfile2: bool
    splice_zc: bool
    why_not: dict[str, str] = field(default_factory=dict)

    def has(self, feature: str) -> bool:
        return feature == "" or getattr(self, feature)


def probe_features(target: Target, kernel_info: dict) -> Features:
    """sendfile2: the kernel has a number for it. SPLICE_F_ZC: splice with len > 0 takes it."""
    abi = Abi.from_kernel_info(kernel_info)
    why: dict[str, str] = {}
    if not abi.has_sendfile2:
        why["sendfile2"] = "the kernel has no sendfile2 syscall number"
    if not abi.splice_zc:
        why["splice_zc"] = "the kernel defines no SPLICE_F_ZC"
    else:
        probe = Program.from_json({
            "fds": [{"name": "src", "kind": "file", "size": 4096}, {"name": "p", "kind": "pipe"}],
            "ops": [{"op": "splice", "in": "src", "off_in": 0, "out": "p.w", "off_out": None,
                     "len": 1, "flags": abi.splice_zc}],
        })
        result = target.run(probe)
        if result.errno(0) == errno_module.EINVAL:
            why["splice_zc"] = f"splice rejects SPLICE_F_ZC ({abi.splice_zc:#x}) with EINVAL"
    return Features("sendfile2" not in why, "splice_zc" not in why, why)


def row_view(program: Program, result: ProgramResult, row: Row, prefix: str, first_op: int) -> tuple[Program, ProgramResult]:
    """The part of a batch's program and result that belongs to one row, names unprefixed."""
    row_program = Program.from_json(row.program(Abi(program.sysno_of("sendfile2"))))
    ops = result.ops[first_op:first_op + len(row.ops)]

    def mine(mapping: dict) -> dict:
        return {k[len(prefix):]: v for k, v in mapping.items() if k.startswith(prefix)}

    final = {key: mine(value) if isinstance(value, dict) else value for key, value in result.final.items()}
    errors = [{**e, "name": e["name"][len(prefix):]} for e in result.fixture_errors if e["name"].startswith(prefix)]
    return row_program, ProgramResult(ops=[dict(o) for o in ops], final=final, fixture_errors=errors)


def _batches(rows: list[Row], abi: Abi) -> list[list[int]]:
    """Row indexes per program: every isolated row alone, the rest together in as few programs
    as the executor's fixture table allows, order kept."""
    isolated = [[i] for i, row in enumerate(rows) if row.alone]
    shared: list[list[int]] = []
    fixtures = MAX_FIXTURES
    for i, row in enumerate(rows):
        if row.alone:
            continue
        needed = len(row.program(abi)["fds"])
        if fixtures + needed > MAX_FIXTURES:
            shared.append([])
            fixtures = 0
        shared[-1].append(i)
        fixtures += needed
    return shared + isolated


def _merged(rows: list[Row], batch: list[int], abi: Abi) -> tuple[dict, list[tuple[int, str, int]]]:
    """One program running the batch's rows one after the other, fd names prefixed per row."""
    merged: dict = {"fds": [], "ops": []}
    layout = []
    for i in batch:
        prefix = f"r{i}_" if len(batch) > 1 else ""
        part = rows[i].program(abi, prefix)
        layout.append((i, prefix, len(merged["ops"])))
        merged = {**part, "fds": merged["fds"] + part["fds"], "ops": merged["ops"] + part["ops"]}
    return merged, layout


def _crashing_row(target: Target, rows: list[Row], batch: list[int], abi: Abi) -> tuple[int, KernelCrash] | None:
    """Which row of a crashed batch crashes on its own: the reviewer gets that row as the
    reproducer, not the whole batch (None: only the rows together crash)."""
    for i in batch:
        try:
            target.run(Program.from_json(rows[i].program(abi)))
        except KernelCrash as own:
            return i, own
        except ExecutorError:
            continue
    return None


def run_clause(target: Target, clause: Clause, kernel_info: dict, features: Features) -> ClauseResult:
    """The clause's verdict on this target."""
    if not features.has(clause.requires):
        return ClauseResult(clause, UNSUPPORTED, features.why_not[clause.requires])
    abi = Abi.from_kernel_info(kernel_info)
    rows = rows_of(clause.id, abi, kernel_info)
    failures: list[tuple[int, str]] = []
    missing: list[str] = []
    evidence: list[str] = []  # what passing rows showed besides (Row.evidence)
    crashes: list[tuple[int, KernelCrash]] = []
    for batch in _batches(rows, abi):
        # A row that crashes the kernel is taken out and the rest run again, so one crashing
        # row neither hides the verdicts of the others nor stands for them.
        while batch:
            merged, layout = _merged(rows, batch, abi)
            program = Program.from_json(merged)
            try:
                result = target.run(program)
                twin_result = None
                if any(rows[i].twin for i in batch):
                    twin_program, _ = parity_twin(program, abi)
                    twin_result = target.run(twin_program)
                break
            except ExecutorError as err:
                return ClauseResult(clause, ERROR, str(err).split(" while running")[0], merged, len(rows))
            except KernelCrash as crash:
                alone = _crashing_row(target, rows, batch, abi) if len(batch) > 1 else (batch[0], crash)
                if alone is None:
                    return ClauseResult(clause, CRASH, f"{crash.title} (rows together)", merged, len(rows))
                crashes.append(alone)
                batch = [i for i in batch if i != alone[0]]
        if not batch:
            continue
        for i, prefix, first_op in layout:
            row_program, row_result = row_view(program, result, rows[i], prefix, first_op)
            row_twin = row_view(program, twin_result, rows[i], prefix, first_op)[1] if rows[i].twin else None
            broken = row_result.fixture_errors
            if broken:
                names = ", ".join(f"{e['name']} ({errno_module.errorcode.get(e['errno'], e['errno'])})" for e in broken)
                missing.append(f"{rows[i].condition}: fixture {names} could not be built")
                continue
            problem = rows[i].check(row_program, row_result, abi, row_twin)
            if problem:
                failures.append((i, problem))
            elif rows[i].evidence:
                shown = rows[i].evidence(row_program, row_result, abi, row_twin)
                evidence += [f"{rows[i].condition}: {shown}"] if shown else []
    crash_note = f"; the kernel also crashed: {crashes[0][1].title}" if crashes else ""
    if failures:
        i, problem = failures[0]
        more = f" (+{len(failures) - 1} more rows)" if len(failures) > 1 else ""
        reason = f"{rows[i].condition}: expected {rows[i].expected}, {problem}{more}{crash_note}"
        return ClauseResult(clause, FAIL, reason, rows[i].program(abi), len(rows))
    if crashes:
        i, crash = crashes[0]
        more = f" (+{len(crashes) - 1} more rows)" if len(crashes) > 1 else ""
        return ClauseResult(clause, CRASH, f"{crash.title} (row: {rows[i].condition}){more}",
                            rows[i].program(abi), len(rows))
    if missing and len(missing) == len(rows):
        return ClauseResult(clause, UNSUPPORTED, missing[0], None, len(rows))
    if missing:
        return ClauseResult(clause, FAIL, f"not every row ran: {missing[0]}", None, len(rows))
    shown = f"; {'; '.join(evidence)}" if evidence else ""
    return ClauseResult(clause, PASS, f"{len(rows)} row(s) hold{shown}", None, len(rows))


def run_suite(target: Target, clause_ids: list[str] | None = None,
              progress: Callable[[ClauseResult], None] | None = None) -> tuple[dict, list[ClauseResult]]:
    """kernel_info and one verdict per clause, in table order."""
    kernel_info = target.kernel_info()
    features = probe_features(target, kernel_info)
    results = []
    for clause in CLAUSES:
        if clause_ids and clause.id not in clause_ids:
            continue
        outcome = run_clause(target, clause, kernel_info, features)
        results.append(outcome)
        if progress:
            progress(outcome)
    return kernel_info, results



