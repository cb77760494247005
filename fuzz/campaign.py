"""Fuzzing campaigns: N workers, each with its own target, sharing findings and examples.

A worker first runs the spec's own programs (one per conformance row, its share of them), then
Hypothesis in rounds over `programs(abi)`, and judges each program with every oracle. A
violation with a new key (crash title, or oracle and clause) is confirmed by more runs, written
at once, then raised so that Hypothesis shrinks it; each smaller program that fails again on
confirmation replaces the recorded one, so the folder always holds the smallest reproducer
seen. Keys recorded before a round do not fail it: the campaign keeps generating after a
finding. The example database keeps failing examples and target scores, so a campaign stopped
mid-shrink resumes there.

With `--database redis://...` campaigns on several machines share one Redis (fuzz.shared): the
example database, and the findings, which a worker syncs at the start of each round (it offers
its own smaller programs and replays, on a fresh kernel, the shared ones it lacks, so a finding
made anywhere is replayed, not searched for again) and at its end (it offers what the round
confirmed). `--shard I/N` gives each machine its own part of the spec programs and seeds.

Nothing of a campaign outlives it: SIGINT or SIGTERM stops the workers (each ends its program,
then closes its target), and a worker takes its parent's death, even by SIGKILL, as a SIGTERM
(vm.lifetime), as its guest takes the worker's.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import os
import random
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from hypothesis import core as hypothesis_core
from hypothesis import event, given, settings
from hypothesis import target as hypothesis_target
from hypothesis.control import currently_in_test_context
from hypothesis.database import ExampleDatabase
from zcfuzz.conformance.abi import Abi
from zcfuzz.conformance.cases import spec_programs
from zcfuzz.conformance.oracles import Verdict, Violation, judge, parity_twin
from zcfuzz.fuzz.findings import (
    FindingStore,
    finding_files,
    revision_of,
    smaller_than_recorded,
)
from zcfuzz.fuzz.profiles import profile as hypothesis_profile
from zcfuzz.fuzz.shared import Shared, example_database, machine_name
from zcfuzz.fuzz.strategies import programs
from zcfuzz.vm.backends import check_target, executor_request, open_target
from zcfuzz.vm.errors import UserError
from zcfuzz.vm.lifetime import MemoryPeaks, descendants, die_with_parent, end_processes
from zcfuzz.vm.program import ExecutorError, Program, ProgramResult
from zcfuzz.vm.target import (
    KernelCrash,
    Target,
    WrappedTarget,
    outcome_result,
)

BATCH_TWINS = True  # send a program and its sendfile64 twin in one request (`zcfuzz bench` measures it off too)
CONFIRM_SETTLE_MS = 1000  # a confirmation waits this long for late completions
CONFIRM_RUNS = 2
PROGRESS_INTERVAL_S = 1.0
BUDGET_END_GRACE_S = 30.0  # at the budget's end a worker may still check a shrunk finding
STOP_GRACE_S = 10.0  # after SIGINT/SIGTERM a worker ends its program, else it is sent SIGTERM
EXIT_GRACE_S = 5  # a worker sent SIGTERM closes its target in this long, or SIGALRM ends it
_BUDGET = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)\Z")
_SHARD = re.compile(r"(\d+)/(\d+)\Z")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_budget(text: str) -> float:
    """`90`, `30s`, `10m`, `2h` -> seconds."""
    match = _BUDGET.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"bad budget {text!r}: give a duration such as 30s, 10m or 2h")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` -> (I, N): this machine takes the I-th of N parts (0 <= I < N)."""
    match = _SHARD.match(text.strip())
    if not match or not int(match.group(1)) < int(match.group(2)):
        raise UserError(f"bad shard {text!r}: give I/N with 0 <= I < N, such as 0/2 and 1/2 on two machines")
    return int(match.group(1)), int(match.group(2))


def default_findings_dir(target_spec: str) -> Path:
    from zcfuzz.vm.kbuild import cache_dir

    return cache_dir() / "findings" / re.sub(r"[^A-Za-z0-9._-]+", "_", target_spec)


def confirmation_program(program: Program) -> Program:
    """The same program, waiting longer for completions: a slow kernel is not a lossy one."""
    return replace(program, settle_ms=max(program.settle_ms, CONFIRM_SETTLE_MS))


def with_target_sysno(program: Program, kernel_info: dict) -> Program:
    """The program with the sendfile2 number of the kernel it is about to run on."""
    nr = kernel_info.get("nr_sendfile2")
    return replace(program, sysno=(("sendfile2", nr),) if nr is not None else ())


def seed_generation(value: int) -> None:
    """Seed Hypothesis's generation for the next run.

    `@seed` would do it but also turns the example database off, and the database is what
    lets a stopped campaign resume; so this sets the generator `@seed` would have replaced.
    """
    hypothesis_core.threadlocal._hypothesis_global_random = random.Random(value)


class BudgetSpent(BaseException):
    """Stops a Hypothesis run from inside the test without counting as a failure."""


class FindingError(Exception):
    """Raised for a finding so that Hypothesis shrinks it; one subclass per key."""


@functools.lru_cache(maxsize=None)
def finding_error(key: str) -> type[FindingError]:
    """Hypothesis tells bugs apart by exception type: one type per finding key."""
    return type(f"Finding_{abs(hash(key)) & 0xFFFFFFFF:08x}", (FindingError,), {"key": key})


# Where a campaign's wall time goes (`zcfuzz fuzz --profile`), each second in exactly one part:
# Hypothesis drawing programs, the host and transport side of a program's run, the executor's
# own time for it (its `phases_ns`), the oracles, the sendfile64 twin, parity's patient reruns of
# both after the op timer cut a call short, confirming a violation, shrinking (Hypothesis's shrink phase and zcfuzz's op dropping,
# with their runs), guest boots and restarts, and the rest (syncing, recording findings).
PROFILE_PARTS = ("generate", "send", "execute", "judge", "twin", "rerun", "confirm", "shrink", "restart", "other")


@dataclass
class Profile:
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PROFILE_PARTS, 0.0))
    wall_s: float = 0.0
    # `execute` by the executor's phases (vm/PROGRAM.md `phases_ns`): build, ops, final, teardown
    phases: dict[str, float] = field(default_factory=dict)
    ops: dict[str, float] = field(default_factory=dict)  # the `ops` phase's calls, by op
    programs: int = 0  # programs of which `execute` was measured

    def add(self, part: str, seconds: float) -> None:
        self.seconds[part] += max(seconds, 0.0)

    def settle(self, wall_s: float) -> None:
        """The campaign's wall time so far: what no part claimed is `other`."""
        self.wall_s = wall_s
        claimed = sum(v for k, v in self.seconds.items() if k != "other")
        self.seconds["other"] = max(wall_s - claimed, 0.0)

    def executed(self, result: ProgramResult) -> None:
        self.programs += 1
        for phase, ns in result.phases_ns.items():
            self.phases[phase] = self.phases.get(phase, 0.0) + ns / 1e9
        for op in result.ops:
            name = op.get("op", "?")
            self.ops[name] = self.ops.get(name, 0.0) + op.get("ns", 0) / 1e9

    @staticmethod
    def from_json(doc: dict) -> Profile:
        return Profile(seconds=dict(doc["seconds"]), wall_s=doc["wall_s"], phases=dict(doc.get("execute_phases_s", {})),
                       ops=dict(doc.get("execute_ops_s", {})), programs=doc.get("programs", 0))

    @staticmethod
    def combine(profiles: list[Profile]) -> Profile:
        total = Profile()
        for one in profiles:
            for part, seconds in one.seconds.items():
                total.seconds[part] += seconds
            for phase, seconds in one.phases.items():
                total.phases[phase] = total.phases.get(phase, 0.0) + seconds
            for op, seconds in one.ops.items():
                total.ops[op] = total.ops.get(op, 0.0) + seconds
            total.wall_s += one.wall_s
            total.programs += one.programs
        return total

    def shares(self) -> dict[str, float]:
        return {part: round(seconds / self.wall_s, 3) if self.wall_s else 0.0
                for part, seconds in self.seconds.items()}

    def to_json(self) -> dict:
        return {"wall_s": round(self.wall_s, 3), "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "share": self.shares(), "programs": self.programs,
                "execute_phases_s": {k: round(v, 3) for k, v in self.phases.items()},
                "execute_ops_s": {k: round(v, 3) for k, v in sorted(self.ops.items(), key=lambda kv: -kv[1])}}

    def format(self) -> str:
        share = self.shares()
        line = "profile: " + ", ".join(f"{part} {share[part] * 100:.1f}% ({self.seconds[part]:.1f} s)"
                                       for part in PROFILE_PARTS)
        if self.programs:
            line += ("\nprofile: execute per program " + ", ".join(
                f"{phase} {seconds / self.programs * 1000:.1f} ms" for phase, seconds in self.phases.items()))
            slowest = sorted(self.ops.items(), key=lambda kv: -kv[1])[:6]
            line += "; the calls, slowest first: " + ", ".join(
                f"{op} {seconds / self.programs * 1000:.1f} ms" for op, seconds in slowest)
        return line


class ProfiledTarget(WrappedTarget):
    """The worker's target: it charges the wall time of each run to the profile part the worker
    is in (a program's own run splits into `execute`, what the executor says it spent, and
    `send`, the rest: encoding, virtio-serial, decoding; a guest boot inside a run is
    `restart`), and with `batch_twins` it sends a program and its sendfile64 twin in one request
    (`Target.run_many`) and answers judge()'s run of the twin with the result it already has."""

    def __init__(self, inner: Target, profile: Profile, abi: Abi | None = None, batch_twins: bool = False,
                 spares: int | None = None):
        super().__init__(inner)
        self.profile, self.abi, self.batch_twins = profile, abi, batch_twins
        self.spares = spares  # spare pairs per kind the executor keeps (`spares N`), None: its default
        self.spares_told: object = None  # the guest last told
        self.activity = "main"  # main, confirm or shrink: set by the worker
        self.runs_in_judge = 0  # the first run of a judge() is the program's, later ones its twin's
        self.run_s = 0.0  # wall time of every run so far, for judge() to count its own runs out
        self.pending: tuple[Program, object] | None = None  # a twin run ahead, and its outcome

    def __getattr__(self, name):  # what a wrapped target has beyond Target's (coverage, take_new)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def restart(self) -> None:
        self.pending = None
        started = time.perf_counter()
        try:
            super().restart()
        finally:
            self.profile.add("restart", time.perf_counter() - started)

    def run(self, program: Program):
        pending, self.pending = self.pending, None
        part = ("main", "twin")[self.runs_in_judge] if self.runs_in_judge < 2 else "rerun"
        twin_run = part != "main"
        self.runs_in_judge += 1
        if pending is not None and pending[1] is not None and pending[0] == program:
            return outcome_result(pending[1])  # its time was charged with its program's
        twin = parity_twin(program, self.abi) if self.batch_twins and not twin_run and self.abi else None
        boots = getattr(self.inner, "boots", None)
        booted_before = len(boots) if boots is not None else 0
        started, outcomes = time.perf_counter(), [None, None]
        try:
            self.tell_spares()
            if twin is None:
                try:
                    outcomes[0] = self.inner.run(program)
                except (KernelCrash, ExecutorError) as err:
                    outcomes[0] = err
            else:
                outcomes = self.inner.run_many([program, twin[0]])
                self.pending = (twin[0], outcomes[1])
        finally:
            elapsed = time.perf_counter() - started
            boot_s = min(sum(boots[booted_before:]) if boots is not None else 0.0, elapsed)
            self.run_s += elapsed
            self.profile.add("restart", boot_s)
            self.charge(elapsed - boot_s, part, *outcomes)
        return outcome_result(outcomes[0])

    def tell_spares(self) -> None:
        """Give each new guest the campaign's number of spare pairs (a restart's comes up with the
        executor's default)."""
        if self.spares is None or not hasattr(self.inner, "boot"):
            return
        guest = self.inner.boot()
        if guest is not self.spares_told:
            executor_request(self.inner, f"spares {self.spares}")
            self.spares_told = guest

    def charge(self, elapsed: float, part: str, outcome, twin_outcome) -> None:
        twin_s = min(executed_s(twin_outcome), elapsed)
        if self.activity != "main":
            self.profile.add(self.activity, elapsed)
        elif part != "main":
            self.profile.add(part, elapsed)
        else:
            result = outcome.result if isinstance(outcome, KernelCrash) else outcome
            if isinstance(result, ProgramResult):
                self.profile.executed(result)
            executed = min(executed_s(outcome), elapsed - twin_s)
            self.profile.add("twin", twin_s)
            self.profile.add("execute", executed)
            self.profile.add("send", elapsed - twin_s - executed)


def executed_s(outcome) -> float:
    """The executor's own time for a program, from its result (0 without one)."""
    result = outcome.result if isinstance(outcome, KernelCrash) else outcome
    return sum(result.phases_ns.values()) / 1e9 if isinstance(result, ProgramResult) else 0.0


@dataclass
class Stats:
    revision: str = ""
    programs: int = 0
    executor_errors: int = 0
    unconfirmed: int = 0
    reached: set[str] = field(default_factory=set)
    # with coverage (README, "Coverage"): the series' reachable lines, and each line this worker
    # reached first with what reached it and when (seconds into the campaign)
    series_total: int = 0
    series_reached: dict[tuple[str, int], tuple[str, float]] = field(default_factory=dict)
    profile: Profile = field(default_factory=Profile)


class Fuzzer:
    """One worker: a target, its kernel's ABI, the findings and example database it shares with
    the campaign's other workers, and with other machines' through `shared` (Redis)."""

    def __init__(self, target: Target, store: FindingStore, database: ExampleDatabase, deadline: float,
                 should_stop=lambda: False, shared: Shared | None = None, batch_twins: bool = BATCH_TWINS,
                 spares: int | None = None, faults_and_threads: bool = False):
        self.stats = Stats(revision=revision_of(store.kernel_info))
        self.profile = self.stats.profile
        self.target = ProfiledTarget(target, self.profile, Abi.from_kernel_info(store.kernel_info), batch_twins,
                                     spares)
        self.profile_started = time.monotonic()
        self.last_check_end: float | None = None  # inside a Hypothesis round: when check() last returned
        self.shrinking = False  # Hypothesis has a failing example and shrinks it
        self.info = store.kernel_info
        self.abi = Abi.from_kernel_info(self.info)
        self.store = store
        self.database = database
        self.shared = shared
        self.deadline = deadline
        self.should_stop = should_stop
        self.replayed: set[str] = set()  # shared programs this worker replayed (key and program)
        self.settled: set[str] = set()  # keys recorded before this round: they no longer fail
        self.found: set[str] = set()  # keys this worker confirmed
        # Findings whose program a smaller one replaced this round, as they were before it: the
        # replacement is checked on a fresh kernel when the round ends, and put back if it fails.
        self.replaced: dict[str, dict[str, str]] = {}
        self.started = time.time()
        self.faults_and_threads = faults_and_threads
        cover = getattr(target, "coverage", None)
        if cover is not None:
            self.stats.series_total = cover.total

    def run_round(self, round_seed: int) -> None:
        """One Hypothesis run; a finding ends it after shrinking."""
        seed_generation(round_seed)

        @settings(hypothesis_profile("campaign"), database=self.database)
        @given(programs(self.abi, faults_and_threads=self.faults_and_threads))
        def explore(program: Program) -> None:
            self.check(program)

        def run() -> None:
            self.shrinking, self.last_check_end = False, time.monotonic()
            try:
                explore()
            except FindingError:
                pass
            except BaseExceptionGroup as group:  # several findings shrunk in one round
                if group.subgroup(lambda e: not isinstance(e, (FindingError, BaseExceptionGroup))):
                    raise
            finally:
                self.hypothesis_time()
                self.last_check_end = None

        self.in_round(run)

    def hypothesis_time(self) -> None:
        """Charge the time since check() last returned to Hypothesis: drawing the next program,
        or shrinking once it holds a failing one."""
        if self.last_check_end is not None:
            self.profile.add("shrink" if self.shrinking else "generate", time.monotonic() - self.last_check_end)
            self.last_check_end = time.monotonic()

    @contextlib.contextmanager
    def doing(self, activity: str):
        """Charge the runs and oracles inside to `activity` (main, confirm, shrink), unless an
        outer activity already claims them: confirming a smaller program is part of shrinking."""
        before = self.target.activity
        if before == "main":
            self.target.activity = activity
        try:
            yield
        finally:
            self.target.activity = before

    def run_spec_programs(self, programs: list[Program]) -> None:
        """Judge each of the spec's programs as a generated one, then minimise what they found."""
        def run() -> None:
            for program in programs:
                try:
                    self.check(program)
                except FindingError:
                    pass

        self.in_round(run)

    def in_round(self, run: Callable[[], None]) -> None:
        """`run` as one round: keys recorded before it do not fail it, what it finds is minimised
        after it, and the smaller programs it recorded are checked on a fresh kernel at the end."""
        self.sync(replay=True)
        self.settled = set(self.store.keys())
        try:
            run()
            for key in sorted(self.found - self.settled):
                self.minimise(key)
        except SystemExit:
            self.replaced.clear()  # told to leave: no time for a fresh kernel; each was confirmed
            raise
        finally:
            self.check_replacements()
            self.sync(replay=False)

    def sync(self, replay: bool) -> None:
        """Offer Redis each finding whose program here is smaller than the shared one (or that it
        lacks: found while it was away, or before a kill); with `replay`, replay each shared one
        smaller than ours. Redis away: nothing to do, the folder keeps everything for later."""
        if self.shared is None:
            return
        shared = self.shared.findings(self.stats.revision)
        if shared is None:
            return
        local = {doc["key"]: doc for doc in self.store.findings() if "key" in doc}
        for key, doc in local.items():
            if smaller_than_recorded(Program.from_json(doc["program"]), shared.get(key)):
                self.shared.offer(doc)
        for key, doc in shared.items() if replay else ():
            if smaller_than_recorded(Program.from_json(doc["program"]), local.get(key)):
                self.replay_shared(doc)

    def replay_shared(self, doc: dict) -> None:
        """Replay a finding another machine shared, as a new one is confirmed: on a fresh kernel,
        CONFIRM_RUNS times. Kept if it fails each time; either way, tried once per worker."""
        program = with_target_sysno(Program.from_json(doc["program"]), self.info)
        tried = f"{doc['key']}\n{program.dumps()}"
        if tried in self.replayed:
            return
        self.replayed.add(tried)
        verdict = self.confirmed(program, doc["key"], fresh=True)
        if verdict is None:
            print(f"zcfuzz: {doc['title']}, shared by {doc.get('machine', '?')}, does not fail here",
                  file=sys.stderr, flush=True)
            return
        violation = next(v for v in verdict.violations if v.key == doc["key"])
        self.store.record(violation, program, self.console(verdict), origin=doc)

    def check_replacements(self) -> None:
        """Each program that replaced a smaller finding's this round must fail on a fresh kernel
        too (a leaky guest's state can be what made it fail); otherwise the finding goes back."""
        for key, before in sorted(self.replaced.items()):
            if not self.confirmed(self.store.program(key), key, fresh=True):
                self.store.restore(key, before)
        self.replaced.clear()

    def minimise(self, key: str) -> None:
        """Drop ops and unused fixtures one at a time while the same violation comes back.

        Hypothesis shrinks what it drew; this also takes apart the multi-op steps it drew whole.
        """
        with self.doing("shrink"):
            self.minimise_ops(key)

    def minimise_ops(self, key: str) -> None:
        program = self.store.program(key)
        improved = True
        while improved:
            improved = False
            for candidate in smaller_programs(program):
                if self.should_stop() or time.monotonic() > self.deadline:
                    raise BudgetSpent
                verdict = self.judge(candidate)
                same = [v for v in verdict.violations if v.key == key] if verdict else []
                if same and self.keep_if_smaller(same[0], candidate, verdict):
                    program, improved = candidate, True
                    break

    def check(self, program: Program) -> None:
        self.hypothesis_time()
        try:
            with self.doing("shrink" if self.shrinking else "main"):
                self.check_one(program)
        except FindingError:
            self.shrinking = self.last_check_end is not None  # Hypothesis shrinks what failed
            raise
        finally:
            if self.last_check_end is not None:
                self.last_check_end = time.monotonic()

    def check_one(self, program: Program) -> None:
        if self.should_stop() or time.monotonic() > self.deadline:
            raise BudgetSpent
        verdict = self.judge(program)
        self.steer()
        if verdict is None:
            return
        failing = None
        for violation in verdict.violations:
            if violation.key in self.settled:
                self.keep_if_smaller(violation, program, verdict)
                continue
            if violation.key not in self.found:
                if not self.confirmed(program, violation.key, fresh=True):
                    self.stats.unconfirmed += 1
                    continue
                self.found.add(violation.key)
                self.store.record(violation, program, self.console(verdict))
                self.sync(replay=False)  # other machines stop searching for it as soon as can be
            else:
                self.keep_if_smaller(violation, program, verdict)
            failing = failing or violation
        if failing is not None:
            raise finding_error(failing.key)(failing.message)

    def steer(self) -> None:
        """With coverage: credit the lines the program just judged reached first, and tell
        Hypothesis, so that its database keeps the program (target scores are saved with it) and
        shrinking prefers programs that still reach as much of the series."""
        cover = getattr(self.target, "coverage", None)
        if cover is None:
            return
        elapsed = time.time() - self.started
        # Every run the program was judged by (its sendfile64 twin runs last), not the last one.
        new, lines = self.target.take_new()
        for key in new:
            self.stats.series_reached.setdefault(key, (cover.reached[key], elapsed))
        if currently_in_test_context():
            hypothesis_target(float(len(lines)), label="series lines")
            if new:
                event("reached new series lines")

    def keep_if_smaller(self, violation: Violation, program: Program, verdict: Verdict) -> bool:
        """Record `program` for the violation's key if it is smaller than the recorded one and
        fails again: a smaller program that fails only now and then is no reproducer."""
        key = violation.key
        if not self.store.is_smaller(key, program):
            return False
        with self.doing("shrink"):
            if not self.confirmed(program, key, fresh=False):
                return False
        if key not in self.replaced and self.store.known(key):
            self.replaced[key] = self.store.snapshot(key)
        return self.store.record(violation, program, self.console(verdict))

    def judge(self, program: Program) -> Verdict | None:
        started, runs_before = time.monotonic(), self.target.run_s
        self.target.runs_in_judge = 0
        try:
            verdict = judge(self.target, program, self.abi, self.info)
        except ExecutorError as err:
            self.stats.executor_errors += 1
            with open(self.store.root / "executor-errors.log", "a", encoding="utf-8") as log:
                log.write(f"{err}\n  program: {json.dumps(program.to_json())}\n")
            return None
        finally:
            oracles = time.monotonic() - started - (self.target.run_s - runs_before)
            self.profile.add("judge" if self.target.activity == "main" else self.target.activity, oracles)
        self.stats.programs += 1 + (verdict.twin_result is not None)
        self.stats.reached |= verdict.reached
        return verdict

    def confirmed(self, program: Program, key: str, fresh: bool) -> Verdict | None:
        """The violation comes back on each of CONFIRM_RUNS more runs that wait longer for
        completions (a slow kernel is not a lossy one, a race won once is no reproducer); with
        `fresh`, each on a kernel that has printed no report since it booted, so that what a
        leaky kernel left behind is not what fails. A fresh kernel costs a switch to the spare
        guest, so smaller programs found while shrinking are checked that way once per round.
        The last run's verdict if it came back each time, else None."""
        again = None
        with self.doing("confirm"):
            for _ in range(CONFIRM_RUNS):
                if fresh and self.target.tainted:
                    self.target.restart()
                again = self.judge(confirmation_program(program))
                if again is None or not any(v.key == key for v in again.violations):
                    return None
        return again

    def report(self, reports, worker: int) -> None:
        """Send the worker's totals, and its profile up to now, to the campaign."""
        self.hypothesis_time()
        self.profile.settle(time.monotonic() - self.profile_started)
        reports.put((worker, self.stats))

    @staticmethod
    def console(verdict: Verdict) -> str:
        return verdict.crash.console if verdict.crash is not None else ""


def smaller_programs(program: Program):
    """The program with a run of its ops left out, halves first, then quarters, down to single
    ops, then with a fixture no op uses left out. A finding of some thousand ops (a conformance
    row with two threads) whose failure needs only a few of them shrinks in a number of runs
    near the log of its length, where leaving out one op at a time took a run per op."""
    count = len(program.ops)
    size = count // 2  # at most half: a candidate keeps an op
    while size >= 1:
        for start in range(0, count, size):
            yield replace(program, ops=program.ops[:start] + program.ops[start + size:])
        size //= 2
    used = {program.fixture(ref).name for op in program.ops for ref in op.fd_refs()}
    for i, fixture in enumerate(program.fds):
        if fixture.name not in used:
            yield replace(program, fds=program.fds[:i] + program.fds[i + 1:])


# --- workers and the progress line -----------------------------------------------------------


@dataclass
class CampaignConfig:
    target: str
    budget_s: float
    workers: int = 1
    seed: int = 0
    findings: Path | None = None
    spec_programs: bool = True  # run the spec's programs (conformance.cases) before generating
    until_first_finding: bool = False  # stop once a finding is on disk (time to a mutant's kill)
    target_options: dict = field(default_factory=dict)  # open_target's options: source, build
    database: str | None = None  # redis://HOST:PORT/DB shared with other machines' campaigns
    shard: tuple[int, int] = (0, 1)  # this machine's part of the spec programs and seeds: I of N
    cover: bool = False  # run programs with KCOV, steer by the series' lines reached (fuzz.cover)
    cover_reached: dict = field(default_factory=dict)  # series lines reached before the campaign, and by what
    cover_fraction: float | None = None  # stop once this fraction of the series' reachable lines is reached
    profile: bool = False  # print where the campaign's wall time went (totals have it either way)
    batch_twins: bool = BATCH_TWINS  # a program and its sendfile64 twin in one request
    spares: int | None = None  # spare TCP pairs per kind the executor connects while idle (None: its default)
    faults_and_threads: bool = False  # generate fail_nth faults and second-thread ops too (fuzz.strategies)

    @property
    def findings_dir(self) -> Path:
        return self.findings or default_findings_dir(self.target)

    @property
    def database_dir(self) -> Path:
        return self.findings_dir / "examples"


def worker_main(*args) -> None:
    """A worker told to leave (SIGTERM, SIGINT, its parent's death) exits with the signal's status
    and no traceback, also when the signal came while Hypothesis ran a program, which hands the
    SystemExit back wrapped in an exception group."""
    try:
        run_worker(*args)
    except BaseException as err:
        status = leaving_status(err)
        if status is None:
            raise
        sys.exit(status)


def leaving_status(err: BaseException | None, seen: frozenset[int] = frozenset()) -> int | None:
    """The status of the SystemExit `err` is, holds in its group, or was raised from, if any."""
    if err is None or id(err) in seen:
        return None
    if isinstance(err, SystemExit):
        return err.code if isinstance(err.code, int) else 1
    seen = seen | {id(err)}
    for inner in (*getattr(err, "exceptions", ()), err.__cause__, err.__context__):
        status = leaving_status(inner, seen)
        if status is not None:
            return status
    return None


def run_worker(config: CampaignConfig, worker: int, deadline_s: float, started: float, reports, stop,
               parent: int) -> None:
    """One worker process: its own target until the budget is spent or the parent says stop.

    It is in a process group of its own, so a Ctrl-C reaches only the campaign, which stops it
    (a guest in the terminal's group would die of the SIGINT and look like a crash)."""
    die_with_parent(signal.SIGTERM, parent)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, leave)
    os.setpgid(0, 0)
    deadline = time.monotonic() + deadline_s
    try:
        tgt = open_target(config.target, **config.target_options)
    except UserError as err:
        print(f"zcfuzz: error: {err}", file=sys.stderr)
        sys.exit(err.exit_status)
    with tgt:
        shared = Shared(config.database) if config.database else None
        store = FindingStore(config.findings_dir, tgt.kernel_info(), campaign_started=started, machine=machine_name())
        corpus: list[Program] = []
        if config.cover:
            tgt, corpus = covering(tgt, config)
        fuzzer = Fuzzer(tgt, store, example_database(config.database_dir, shared), deadline,
                        should_stop=lambda: stop.is_set() or bool(LEAVING), shared=shared,
                        batch_twins=config.batch_twins, spares=config.spares,
                        faults_and_threads=config.faults_and_threads)
        fuzzer.started = started
        last = time.monotonic()
        round_number = 0
        try:
            if corpus:  # what reached new lines in earlier campaigns on this folder, first
                fuzzer.run_spec_programs(share_of(corpus, config.shard, worker, config.workers))
            if config.spec_programs:
                programs = spec_programs(fuzzer.abi, fuzzer.info)
                fuzzer.run_spec_programs(share_of(programs, config.shard, worker, config.workers))
            while not fuzzer.should_stop() and time.monotonic() < deadline:
                fuzzer.run_round(round_seed(config.seed, config.shard, worker, round_number))
                round_number += 1
                if time.monotonic() - last > PROGRESS_INTERVAL_S:
                    fuzzer.report(reports, worker)
                    last = time.monotonic()
        except BudgetSpent:
            pass
        finally:
            fuzzer.report(reports, worker)
    if LEAVING:
        sys.exit(128 + LEAVING[0])


def covering(tgt: Target, config: CampaignConfig) -> tuple[Target, list[Program]]:
    """The target with coverage on, and the coverage corpus of the findings folder."""
    from zcfuzz.fuzz.cover import CoverTarget, coverage_for, load_corpus

    corpus_dir = config.findings_dir / "cover-corpus"
    coverage = coverage_for(config.target.removeprefix("vm:"),
                            tgt.kernel_info(), config.target_options.get("source"))
    for key, by in config.cover_reached.items():
        coverage.reached.setdefault(tuple(key), by)
    corpus = load_corpus(corpus_dir)
    info = tgt.kernel_info()
    return CoverTarget(tgt, coverage, corpus_dir), [with_target_sysno(p, info) for p in corpus]


def share_of(programs: list[Program], shard: tuple[int, int], worker: int, workers: int) -> list[Program]:
    """A worker's part of the spec programs: its machine's I-th of N parts, then its own of that,
    so machines with different numbers of workers still split them with nothing run twice."""
    index, count = shard
    return programs[index::count][worker::workers]


def round_seed(seed: int, shard: tuple[int, int], worker: int, round_number: int) -> int:
    """Worker w of shard I/N seeds as worker w*N+I of one big campaign: no two workers of any
    machine draw the same programs, and a machine alone (0/1) draws what it always did."""
    index, count = shard
    return hash((seed, worker * count + index, round_number)) & 0xFFFFFFFF


LEAVING: list[int] = []  # the signal a worker was told to leave by, once it was


def leave(signum: int, frame) -> None:
    """SIGTERM (or SIGINT) in a worker: leave through its `finally`s, which close its target,
    within EXIT_GRACE_S; SIGALRM, which no one handles, ends it after that. Python drops an
    exception raised where it ignores them (a gc callback of Hypothesis's, a __del__), so the
    signal is also kept: the worker's next program sees it and leaves by it."""
    signal.alarm(EXIT_GRACE_S)
    LEAVING.append(signum)
    raise SystemExit(128 + signum)


def run_campaign(config: CampaignConfig, out=sys.stderr) -> dict:
    """Run the campaign to its budget and return the totals. Findings are on disk as they come.
    SIGINT or SIGTERM stops the workers cleanly first, then has its usual effect."""
    if config.workers < 1:
        raise UserError("--workers must be at least 1")
    check_target(config.target, config.target_options.get("source"))
    shared = Shared(config.database) if config.database else None
    if shared is not None:
        shared.check()
    FindingStore(config.findings_dir, {}).tidy()  # what a killed campaign left half written
    context = multiprocessing.get_context("fork")
    reports, stop = context.Queue(), context.Event()
    started = time.time()
    procs = [context.Process(target=worker_main, args=(config, w, config.budget_s, started, reports, stop,
                                                       os.getpid()), daemon=True) for w in range(config.workers)]
    start = time.monotonic()
    progress = Progress(out, config.findings_dir, shared, config.cover_fraction, len(config.cover_reached))
    latest: dict[int, Stats] = {}
    stopped_by: list[int] = []

    def stop_workers(signum: int, frame) -> None:
        stopped_by.append(signum)  # the loop below sees it; stop.set() takes a lock, not here

    handlers = {s: signal.signal(s, stop_workers) for s in (signal.SIGINT, signal.SIGTERM)}
    memory = MemoryPeaks()  # its thread starts once the workers are forked, so none of them has it
    try:
        for proc in procs:
            proc.start()
        with memory:
            while (any(p.is_alive() for p in procs) or not reports.empty()) and not stopped_by:
                drain_reports(reports, latest)
                if config.until_first_finding and finding_files(config.findings_dir):
                    stop.set()
                totals = progress.show(time.monotonic() - start, latest, final=False)
                if config.cover_fraction is not None and totals.get("series_fraction_s") is not None:
                    stop.set()
                time.sleep(PROGRESS_INTERVAL_S if any(p.is_alive() for p in procs) else 0)
    finally:
        stop.set()
        end_workers(procs, STOP_GRACE_S if stopped_by else BUDGET_END_GRACE_S)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        drain_reports(reports, latest)
    totals = progress.show(time.monotonic() - start, latest, final=True)
    totals.update(memory.to_json())  # the peak memory of the campaign's processes and guests together
    if config.profile and "profile" in totals:
        print(Profile.from_json(totals["profile"]).format(), file=out, flush=True)
    if stopped_by:
        signal.raise_signal(stopped_by[0])  # KeyboardInterrupt, or the end SIGTERM means
    failed = [p.exitcode for p in procs if p.exitcode]
    if failed and not latest:
        raise UserError(f"every worker failed (exit status {failed[0]}); see the messages above")
    return totals


def end_workers(procs: list, grace_s: float) -> None:
    """Give the workers, told to stop, `grace_s` to end; then SIGTERM them (they close their
    targets); then SIGKILL them. Last, whatever a worker started and left running (a guest, an
    executor, what those started) is ended too: the parent-death signal reaches only the
    children of a worker, not theirs."""
    family = descendants(*running_pids(procs))
    join_all(procs, grace_s)
    family += descendants(*running_pids(procs))
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    join_all(procs, EXIT_GRACE_S + 1)
    family += descendants(*running_pids(procs))
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    join_all(procs, None)
    end_processes(family)


def running_pids(procs: list) -> list[int]:
    """The pids of the workers that were started and still run."""
    return [proc.pid for proc in procs if proc.pid is not None and proc.is_alive()]


def join_all(procs: list, timeout_s: float | None) -> None:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    for proc in procs:
        proc.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


def drain_reports(reports, latest: dict[int, Stats]) -> None:
    while True:
        try:
            worker, stats = reports.get(timeout=0.05)
        except Exception:  # queue.Empty: nothing more for now
            return
        latest[worker] = stats


class Progress:
    """The progress line: this campaign's totals and, with a shared database, every running
    campaign's on the same revision, as each reports its own to Redis."""

    def __init__(self, out, findings_dir: Path, shared: Shared | None, cover_fraction: float | None = None,
                 cover_before: int = 0):
        self.out, self.findings_dir, self.shared = out, findings_dir, shared
        self.cover_fraction = cover_fraction or 0.9
        self.cover_before = cover_before  # series lines reached before the campaign (fuzz.cover)
        self.campaign = f"{machine_name()}:{os.getpid()}"

    def show(self, elapsed: float, latest: dict[int, Stats], final: bool) -> dict:
        programs = sum(s.programs for s in latest.values())
        reached = set().union(*(s.reached for s in latest.values())) if latest else set()
        totals = {
            "programs": programs,
            "programs_per_s": programs / elapsed if elapsed > 0 else 0.0,
            "findings": len(finding_files(self.findings_dir)),
            "clauses_reached": len(reached),
            "executor_errors": sum(s.executor_errors for s in latest.values()),
            "unconfirmed": sum(s.unconfirmed for s in latest.values()),
        }
        if latest:
            totals["profile"] = Profile.combine([s.profile for s in latest.values()]).to_json()
        line = (f"[{int(elapsed) // 3600}:{int(elapsed) // 60 % 60:02}:{int(elapsed) % 60:02}] "
                f"{totals['programs']} programs, {totals['programs_per_s']:.1f}/s, {totals['findings']} findings, "
                f"{totals['clauses_reached']} clauses reached")
        if totals["executor_errors"]:
            line += f", {totals['executor_errors']} executor errors"
        series_total = max((s.series_total for s in latest.values()), default=0)
        if series_total:
            totals.update(series_coverage(latest, series_total, self.cover_fraction))
            line += f", series lines {self.cover_before + totals['series_lines']}/{series_total}"
        revision = next((s.revision for s in latest.values()), None)
        if self.shared is not None and revision is not None:
            self.shared.report(revision, self.campaign, {"machine": machine_name(), **totals})
            everyone = self.shared.combined(revision)
            if everyone is None:
                line += "; all machines: Redis away"
            else:
                totals["shared"] = everyone
                campaigns = f"{everyone['campaigns']} campaign{'s' if everyone['campaigns'] != 1 else ''}"
                line += (f"; all {campaigns} on {revision}: {everyone['programs']} programs, "
                         f"{everyone['programs_per_s']:.1f}/s, {everyone['findings']} findings")
        interactive = getattr(self.out, "isatty", lambda: False)()
        if final or interactive:
            print(("\r" if interactive else "") + line + ("\n" if final else ""), end="", file=self.out, flush=True)
        return totals


def series_coverage(latest: dict[int, Stats], total: int, fraction: float) -> dict:
    """The workers' series lines together: each line by whichever worker reached it first, and
    when `fraction` of the reachable lines were reached (None if not yet)."""
    first: dict[tuple[str, int], tuple[str, float]] = {}
    for stats in latest.values():
        for key, (by, when) in stats.series_reached.items():
            if key not in first or when < first[key][1]:
                first[key] = (by, when)
    times = sorted(when for _, when in first.values())
    needed = max(1, -(-int(fraction * total * 1000) // 1000))  # ceil without float surprises
    return {"series_lines": len(first), "series_total": total,
            "series_reached_by": {f"{file}:{line}": by for (file, line), (by, _) in first.items()},
            "series_fraction_s": times[needed - 1] if len(times) >= needed else None}


# --- replaying a finding -----------------------------------------------------------------------


def replay(folder: Path, target_spec: str, **target_options) -> tuple[bool, str]:
    """Run a finding's program again: (still fails, what was seen)."""
    return next(replay_each([folder], target_spec, **target_options))[1:]


def replay_each(folders: list[Path], target_spec: str, **target_options):
    """(folder name, still fails, what was seen) for each finding, all on one target, each on a
    kernel that has printed no report since it booted."""
    loaded = []
    for folder in folders:
        finding = FindingStore.read(folder / "finding.json")
        if finding is None or not (folder / "program.json").is_file():
            raise UserError(f"{folder} is not a finding folder: it needs finding.json and program.json")
        loaded.append((folder.name, finding, Program.load(str(folder / "program.json"))))
    with open_target(target_spec, **target_options) as tgt:
        yield from replay_on(tgt, loaded)


def replay_shared(database: str, target_spec: str, **target_options):
    """(title, still fails, what was seen) for each finding shared in Redis for the revision
    the target runs, as `replay_each` replays folders."""
    shared = Shared(database)
    shared.check()
    with open_target(target_spec, **target_options) as tgt:
        revision = revision_of(tgt.kernel_info())
        findings = shared.findings(revision)
        if findings is None:
            raise UserError(f"Redis at {database} went away")
        if not findings:
            known = ", ".join(shared.revisions()) or "none"
            raise UserError(f"no shared findings for {revision} in {database} (revisions with findings: {known})")
        yield from replay_on(tgt, [(doc["title"], doc, Program.from_json(doc["program"]))
                                   for doc in sorted(findings.values(), key=lambda d: d.get("found", ""))])


def replay_on(tgt: Target, loaded: list[tuple]):
    """(name, still fails, what was seen) for each (name, finding, program) of `loaded`."""
    info = tgt.kernel_info()
    for name, finding, program in loaded:
        if tgt.tainted:
            tgt.restart()  # each finding on a kernel that no earlier one left a report on
        program = confirmation_program(with_target_sysno(program, info))
        verdict = judge(tgt, program, Abi.from_kernel_info(info), info)
        same = [v for v in verdict.violations if v.key == finding["key"]]
        if same:
            yield name, True, same[0].message
        else:
            yield name, False, "; ".join(v.message for v in verdict.violations) or "clean"
