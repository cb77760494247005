"""The one small interface every place that runs programs goes through.

A target runs a `Program` and returns a `ProgramResult`, or raises `KernelCrash` when the kernel
under it crashed, hung or printed a bug report while the program ran. `host` runs the executor
as a local subprocess on the running kernel; `vm:REV` boots a QEMU guest on a built revision
(vm.qemu).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zcfuzz.vm.program import ExecutorError

if TYPE_CHECKING:
    from zcfuzz.vm.program import Program, ProgramResult


@dataclass
class KernelCrash(Exception):
    """The kernel crashed, hung or printed a bug report while `program` ran.

    `result` is the program's result when the kernel went on after the report (a WARNING), so
    the other oracles can still judge it; None when the kernel died under the program.
    """

    title: str
    report: str
    program: "Program | None" = None
    console: str = ""
    extra: dict = field(default_factory=dict)
    result: "ProgramResult | None" = None

    def __str__(self) -> str:
        return self.title


def outcome_result(outcome) -> ProgramResult:
    """The result of an outcome of `run_many`, raising what `run` would have raised."""
    if isinstance(outcome, (KernelCrash, ExecutorError)):
        raise outcome
    if outcome is None:
        raise ValueError("the program was not run")
    return outcome


class Target(abc.ABC):
    """Runs programs on one kernel. Use as a context manager so nothing outlives the caller."""

    name: str

    @abc.abstractmethod
    def kernel_info(self) -> dict:
        """What `zcfuzz kernel info --json` says of the kernel under this target."""

    @abc.abstractmethod
    def run(self, program: "Program") -> "ProgramResult":
        """Run one program; raise KernelCrash if the kernel crashed or hung under it."""

    def run_many(self, programs: list[Program]) -> list:
        """Run programs one after the other, as as many `run`s would, and return each one's
        outcome: what its `run` would have returned or raised (a ProgramResult, a KernelCrash or
        an ExecutorError), or None when it was not run because the kernel died under an earlier
        one.

        This one calls `run`; a target that can send the programs together (vm:REV) pays its
        transport once for all of them, and each still runs alone on fixtures of its own."""
        outcomes: list = []
        for program in programs:
            if outcomes and isinstance(outcomes[-1], KernelCrash) and outcomes[-1].result is None:
                outcomes.append(None)
                continue
            try:
                outcomes.append(self.run(program))
            except (KernelCrash, ExecutorError) as err:
                outcomes.append(err)
        return outcomes

    @property
    def tainted(self) -> bool:
        """The kernel printed a report since it booted and went on: its state may differ from a
        fresh boot's (a leak, for one), so a result worth keeping is checked on a fresh one."""
        return False

    def restart(self) -> None:
        """Run the next program on a freshly booted kernel, where the target can."""

    def close(self) -> None:
        """Release what the target holds (processes, temporary files)."""

    def __enter__(self) -> "Target":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class WrappedTarget(Target):
    """A target that runs its programs on another (`inner`) and adds something around them:
    everything but `run` is the inner target's."""

    def __init__(self, inner: Target):
        self.inner = inner
        self.name = inner.name

    def kernel_info(self) -> dict:
        return self.inner.kernel_info()

    @property
    def tainted(self) -> bool:
        return self.inner.tainted

    def restart(self) -> None:
        self.inner.restart()

    def close(self) -> None:
        self.inner.close()
