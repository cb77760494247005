"""The kill matrix: which check kills each seeded bug, in what order checks are tried.

Unit tests use the real mutant patches and hand-made verdicts; the VM test builds and kills
every mutant for real.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conformance.spec import CLAUSE_BY_ID, CLAUSES
from conformance.suite import ERROR, FAIL, PASS, UNSUPPORTED
from fuzz.mutants import (CONFORMANCE, FUZZ, Kill, Mutant, clause_order, first_regression, load_mutants,
                          materialise, matrix_markdown, matrix_text, read_mutant, score_line)
from tests.test_gate import assert_one_line_error, zcfuzz
from vm import kbuild
from vm.errors import UserError

MUTANTS_DIR = kbuild.PATCHES_DIR / "mutants"
PATCHES = sorted(MUTANTS_DIR.glob("*.patch"))


def test_every_mutant_names_known_clauses_that_kill_it():
    mutants = load_mutants(MUTANTS_DIR)
    assert [m.patch for m in mutants] == PATCHES
    for mutant in mutants:
        line = re.search(r"^Killed-by: (.+)$", mutant.patch.read_text(), re.MULTILINE).group(1)
        assert mutant.expected == tuple(i.strip() for i in line.split(","))
        assert all(i in CLAUSE_BY_ID for i in mutant.expected)


def test_a_killed_by_line_naming_no_clause_is_a_user_error(tmp_path):
    patch = tmp_path / "0001-x.patch"
    patch.write_text("Subject: [PATCH] x\n\nKilled-by: ZC-NOTIFY-ONCE, NO-SUCH-CLAUSE\n---\n")
    with pytest.raises(UserError, match="NO-SUCH-CLAUSE"):
        read_mutant(patch)


def test_only_picks_one_mutant_by_name_stem_or_number():
    first = PATCHES[0]
    number = first.stem.split("-", 1)[0]
    for spelling in (first.name, first.stem, number):
        assert [m.patch for m in load_mutants(MUTANTS_DIR, spelling)] == [first]
    with pytest.raises(UserError, match="no mutant"):
        load_mutants(MUTANTS_DIR, "9999")


def test_clauses_the_mutant_names_run_first_then_every_other_once():
    expected = ("ZC-NOTIFY-ONCE", "SF2-FLAGS-UNKNOWN")
    order = clause_order(expected)
    assert order[:2] == list(expected)
    assert sorted(order) == sorted(c.id for c in CLAUSES)
    assert order[2:] == [c.id for c in CLAUSES if c.id not in expected]


def test_the_first_regression_kills_and_no_later_clause_runs():
    reference = {"A": PASS, "B": FAIL, "C": PASS, "D": PASS, "E": UNSUPPORTED}
    ran = []

    def verdicts(pairs):
        for clause_id, verdict in pairs:
            ran.append(clause_id)
            yield clause_id, verdict, f"{clause_id} said {verdict}"

    # B fails on the reference too (fail and error rank alike): no kill; C regresses; D never runs.
    assert first_regression(reference, verdicts([("A", PASS), ("B", ERROR), ("C", ERROR), ("D", FAIL)])) \
        == ("C", "error: C said error")
    assert ran == ["A", "B", "C"]
    assert first_regression(reference, verdicts([("A", PASS), ("B", FAIL), ("E", UNSUPPORTED)])) is None


def kill(name: str, expected: tuple[str, ...], check: str = "", killer: str = "") -> Kill:
    return Kill(Mutant(Path(f"{name}.patch"), expected), check, killer, f"{killer} detail" if check else "", 40.0,
                12.0)


def test_kill_matrix_rows_and_score():
    kills = [kill("0001-a", ("SF2-FLAGS-UNKNOWN",), CONFORMANCE, "SF2-FLAGS-UNKNOWN"),
             kill("0002-b", ("ZC-NOTIFY-ONCE",), CONFORMANCE, "ZC-ID-ONCE"),
             kill("0003-c", ("ZC-NOTIFY-ONCE",), FUZZ, "accounting:ZC-NOTIFY-ONCE"),
             kill("0004-d", ("ZC-MEMLOCK-SENT",))]
    rows = [line.split() for line in matrix_text(kills).splitlines()[1:]]
    assert rows == [["0001-a", CONFORMANCE, "SF2-FLAGS-UNKNOWN", "yes", "40", "12"],
                    ["0002-b", CONFORMANCE, "ZC-ID-ONCE", "no", "40", "12"],
                    ["0003-c", FUZZ, "accounting:ZC-NOTIFY-ONCE", "no", "40", "12"],
                    ["0004-d", "SURVIVED", "-", "-", "40", "12"]]
    assert score_line(kills) == "mutants: 3/4 killed (75%); survived: 0004-d"
    markdown = matrix_markdown(kills, "v2")
    assert markdown.count("\n| `") == 4 and "- `0002-b`: ZC-ID-ONCE detail" in markdown


def test_a_materialised_mutant_is_the_shared_slot_build(tmp_path):
    """`vm:FOLDER` must find the kernel the shared slot built, or every campaign would rebuild."""
    revision = kbuild.resolve_revision("v2")
    mutant = load_mutants(MUTANTS_DIR)[0]
    folder = materialise(revision, mutant, tmp_path / "rev")
    built = revision.with_patch(mutant.patch, slot="v2-mutants")
    assert kbuild.resolve_revision(str(folder)).series_sha256 == built.series_sha256


def test_unknown_mutant_is_a_one_line_error():
    assert_one_line_error(zcfuzz("mutants", "--rev", "v2", "--only", "9999"), "9999")


@pytest.mark.vm
def test_every_mutant_of_v2_is_killed(tmp_path):
    done = zcfuzz("mutants", "--rev", "v2", "--md", str(tmp_path / "kills.md"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == f"mutants: {len(PATCHES)}/{len(PATCHES)} killed (100%)"
    rows = [line.split()[:2] for line in done.stdout.splitlines()[1:-1]]
    assert rows == [[p.stem, rows[i][1]] for i, p in enumerate(PATCHES)]
    assert all(check in (CONFORMANCE, FUZZ, "boot") for _, check in rows)
    assert (tmp_path / "kills.md").read_text().count("\n| `") == len(PATCHES)
