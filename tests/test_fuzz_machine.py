"""The stateful machine runs interleavings on the host kernel and its invariants hold there."""

from __future__ import annotations

from hypothesis import settings

from fuzz.machine import machine_for
from fuzz.profiles import profile
from vm.target import open_target


def test_interleavings_on_the_host_kernel():
    with open_target("host") as target:
        machine = machine_for(target)
        runs = []
        original = target.run

        def counting_run(program):
            runs.append(program)
            return original(program)

        target.run = counting_run
        machine.TestCase.settings = settings(profile("ci"), max_examples=8, stateful_step_count=6)
        machine.TestCase().runTest()
    assert runs, "no step ran a program"
    assert max(len(p.ops) for p in runs) > 1  # steps accumulate into one growing program
