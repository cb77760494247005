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

from vm.errors import UserError

if TYPE_CHECKING:
    from vm.program import Program, ProgramResult


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


class Target(abc.ABC):
    """Runs programs on one kernel. Use as a context manager so nothing outlives the caller."""

    name: str

    @abc.abstractmethod
    def kernel_info(self) -> dict:
        """What `zcfuzz kernel info --json` says of the kernel under this target."""

    @abc.abstractmethod
    def run(self, program: "Program") -> "ProgramResult":
        """Run one program; raise KernelCrash if the kernel crashed or hung under it."""

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


def open_target(spec: str, **options) -> Target:
    """Make a target from its command-line name: `host` or `vm:REV`."""
    if spec == "host":
        from vm.host import HostTarget

        return HostTarget(**options)
    if spec.startswith("vm:") and len(spec) > 3:
        from vm.qemu import VmTarget

        return VmTarget(spec[3:], **options)
    raise UserError(f"unknown target {spec!r}: use 'host' or 'vm:REV' (REV a revision name or folder)")
