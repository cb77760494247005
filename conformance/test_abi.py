"""One test per clause of conformance/SPEC.md; the rows are in conformance/cases.py."""

from __future__ import annotations

import pytest

from conformance.spec import CLAUSES
from conformance.suite import CRASH, ERROR, FAIL, UNSUPPORTED, run_clause


@pytest.mark.parametrize("clause", CLAUSES, ids=[c.id for c in CLAUSES])
def test_clause(clause, conformance_target, kernel_info, features):
    outcome = run_clause(conformance_target, clause, kernel_info, features)
    if outcome.verdict == UNSUPPORTED:
        pytest.skip(outcome.reason)
    if outcome.verdict in (FAIL, CRASH, ERROR):
        pytest.fail(f"{outcome.verdict}: {outcome.reason}", pytrace=False)
