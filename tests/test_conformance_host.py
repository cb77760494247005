"""The whole suite against the running kernel: baseline clauses pass, patched ones are unsupported.

The host kernel has neither sendfile2 nor SPLICE_F_ZC, so every clause that needs them must say
`unsupported` (never pass), and every 6.12 baseline clause must hold on it too; a baseline clause
is unsupported only when a fixture needs something the machine lacks (dummy0 for true zerocopy).
Two runs give the same verdicts.
"""

from __future__ import annotations

import pytest
from zcfuzz.conformance.suite import PASS, UNSUPPORTED, run_suite
from zcfuzz.vm.backends import open_target

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def two_runs():
    with open_target("host") as target:
        if "SPLICE_F_ZC" in (target.kernel_info().get("splice_flags") or {}):
            pytest.skip("the running kernel implements SPLICE_F_ZC: this test is about unpatched kernels")
        return [run_suite(target)[1] for _ in range(2)]


def test_baseline_clauses_hold(two_runs):
    for r in two_runs[0]:
        if not r.clause.requires:
            assert r.verdict == PASS or (r.verdict == UNSUPPORTED and "could not be built" in r.reason), \
                f"{r.clause.id}: {r.verdict}: {r.reason}"


def test_patched_clauses_unsupported(two_runs):
    for r in two_runs[0]:
        if r.clause.requires:
            assert r.verdict == UNSUPPORTED, f"{r.clause.id}: {r.verdict}"


def test_verdicts_repeat(two_runs):
    first, second = ([(r.clause.id, r.verdict) for r in run] for run in two_runs)
    assert first == second
