"""KTAP v1 and JUnit output parse, and say what the verdicts say."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from zcfuzz.conformance.report import junit, ktap
from zcfuzz.conformance.spec import CLAUSES
from zcfuzz.conformance.suite import CRASH, ERROR, FAIL, PASS, UNSUPPORTED, ClauseResult

VERDICTS = (PASS, FAIL, CRASH, UNSUPPORTED, ERROR)
RESULTS = [ClauseResult(c, VERDICTS[i % len(VERDICTS)], f"reason {i}\nsecond line",
                        {"fds": [], "ops": []} if VERDICTS[i % len(VERDICTS)] in (FAIL, CRASH) else None)
           for i, c in enumerate(CLAUSES[:10])]


def test_ktap_structure():
    lines = ktap(RESULTS, "suite").splitlines()
    assert lines[:2] == ["KTAP version 1", "1..1"]
    assert lines[2:5] == ["  KTAP version 1", "  # Subtest: suite", f"  1..{len(RESULTS)}"]
    results = [l for l in lines if re.match(r"  (not )?ok \d+ ", l)]
    assert len(results) == len(RESULTS)
    for n, (line, r) in enumerate(zip(results, RESULTS), 1):
        m = re.fullmatch(r"  (ok|not ok) (\d+) (\S+)(?: # (SKIP|ERROR) (.*))?", line)
        assert m, line
        assert int(m[2]) == n and m[3] == r.clause.id
        assert (m[1] == "ok") == (r.verdict in (PASS, UNSUPPORTED))
        assert m[4] == {UNSUPPORTED: "SKIP", ERROR: "ERROR"}.get(r.verdict)
    assert all(l.startswith("  ") for l in lines[2:-1]), "subtests are indented two spaces"
    assert lines[-1] == "not ok 1 suite"
    assert not any("\n" in l or "second line" in l and "reason" not in l for l in lines)


def test_ktap_all_clean_is_ok():
    clean = [ClauseResult(c, PASS, "fine") for c in CLAUSES[:3]]
    assert ktap(clean, "s").splitlines()[-1] == "ok 1 s"


def test_junit_counts():
    suite = ET.fromstring(junit(RESULTS, "suite")).find("testsuite")
    assert int(suite.get("tests")) == len(RESULTS)
    assert int(suite.get("failures")) == sum(r.verdict in (FAIL, CRASH) for r in RESULTS)
    assert int(suite.get("skipped")) == sum(r.verdict == UNSUPPORTED for r in RESULTS)
    assert int(suite.get("errors")) == sum(r.verdict == ERROR for r in RESULTS)
