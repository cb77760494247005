"""The conformance suite on real guests: base, rfc-v1 (the posted RFC) and v2 (our revision).

What each revision must give is stated by the spec itself: a clause's `catches` names the RFC
defects (D1-D7) it is designed to trip on, so on rfc-v1 exactly those clauses fail (or crash),
on v2 every clause passes, and on the unpatched base the baseline clauses pass and the rest are
`unsupported`.
"""

from __future__ import annotations

import pytest
from zcfuzz.conformance.spec import CLAUSES
from zcfuzz.conformance.suite import CRASH, FAIL, PASS, UNSUPPORTED, run_suite
from zcfuzz.vm.backends import open_target

pytestmark = pytest.mark.vm

BASELINE = {c.id for c in CLAUSES if not c.requires}
PATCHED = {c.id for c in CLAUSES if c.requires}
CATCHES_RFC_DEFECT = {c.id for c in CLAUSES if c.catches}


def verdicts(rev: str) -> dict[str, str]:
    with open_target(f"vm:{rev}") as target:
        _, results = run_suite(target)
    return {r.clause.id: r.verdict for r in results}


def test_base_passes_every_baseline_clause_and_lacks_the_feature():
    first = verdicts("base")
    assert {c for c, v in first.items() if v != PASS} == PATCHED
    assert {first[c] for c in PATCHED} == {UNSUPPORTED}
    assert verdicts("base") == first  # two runs, identical verdicts


# Clauses whose verdict on rfc-v1 has been seen to vary between runs of the same guest: the slow
# client crashed on D7 in two runs and passed in one (which of its calls meet the RFC's defects
# depends on how far the peer has read). v2 passes them every time; they run here all the same.
UNSETTLED_ON_RFC_V1 = {"ZC-SLOW-CLIENT"}


def test_rfc_v1_fails_exactly_the_clauses_its_defects_violate():
    result = verdicts("rfc-v1")
    failing = {c for c, v in result.items() if v in (FAIL, CRASH)}
    assert failing - UNSETTLED_ON_RFC_V1 == CATCHES_RFC_DEFECT - UNSETTLED_ON_RFC_V1
    assert {c for c, v in result.items() if v == PASS} - UNSETTLED_ON_RFC_V1 == \
        set(result) - CATCHES_RFC_DEFECT - UNSETTLED_ON_RFC_V1
    assert {result[c] for c in UNSETTLED_ON_RFC_V1} <= {PASS, FAIL, CRASH}  # they ran
    assert result["SF2-ZC-NON-SOCKET"] == CRASH  # D2: the NULL socket is dereferenced


def test_v2_passes_every_clause():
    first = verdicts("v2")
    assert {c: v for c, v in first.items() if v != PASS} == {}
    assert verdicts("v2") == first
