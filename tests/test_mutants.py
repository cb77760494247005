"""The kill matrix: which check kills each seeded bug, in what order checks are tried, and the
rule that a kill must replay on fresh guests.

Unit tests use the real mutant patches, hand-made verdicts and, for the decision alone, made-up
replay counts; the VM tests replay programs on fresh guests and kill mutants for real.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from zcfuzz.conformance.abi import Abi
from zcfuzz.conformance.oracles import judge
from zcfuzz.conformance.spec import CLAUSE_BY_ID, CLAUSES
from zcfuzz.conformance.suite import ERROR, FAIL, PASS, UNSUPPORTED
from zcfuzz.fuzz.campaign import with_target_sysno
from zcfuzz.vm import kbuild
from zcfuzz.vm.backends import open_target
from zcfuzz.vm.errors import UserError
from zcfuzz.vm.program import Program
from zcfuzz.workflows.gate import (
    REPLAYS,
    Replays,
    finding_fails,
    read_findings,
    replay_both,
    replays,
)
from zcfuzz.workflows.mutants import (
    CONFORMANCE,
    FUZZ,
    Kill,
    Mutant,
    Sides,
    clause_order,
    first_kill,
    fuzz_kill,
    load_mutants,
    materialise,
    matrix_markdown,
    matrix_text,
    read_mutant,
    regressions,
    score_line,
)

from tests.test_gate import assert_one_line_error, zcfuzz

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


def always(on_mutant: int = REPLAYS, on_rev: int = 0) -> Replays:
    return Replays("mutant", (on_mutant, REPLAYS), "v2", (on_rev, REPLAYS))


def test_the_first_regression_that_replays_kills_and_no_later_clause_runs():
    reference = {"A": PASS, "B": FAIL, "C": PASS, "D": PASS, "E": UNSUPPORTED}
    ran = []

    def verdicts(pairs):
        for clause_id, verdict in pairs:
            ran.append(clause_id)
            yield clause_id, verdict, f"{clause_id} said {verdict}"

    # B fails on the reference too (fail and error rank alike): no kill; C regresses; D never runs.
    passed_over: list[str] = []
    found = first_kill(regressions(reference, verdicts([("A", PASS), ("B", ERROR), ("C", ERROR), ("D", FAIL)])),
                       lambda clause_id: always(), passed_over)
    assert found == ("C", "error: C said error", always()) and passed_over == []
    assert ran == ["A", "B", "C"]
    assert list(regressions(reference, verdicts([("A", PASS), ("B", FAIL), ("E", UNSUPPORTED)]))) == []


def test_a_kill_that_fails_only_sometimes_is_passed_over_for_the_next():
    """The issue's case: a finding that failed once, then replayed clean on some fresh guests of
    the mutant, kills nothing; nor does one that fails on the revision now and then, or on every
    guest of both. The next candidate, failing every time on the mutant only, kills."""
    replayed = {"parity:SF2-FLAGS0-PARITY": always(on_mutant=1), "accounting:ZC-NOTIFY-ONCE": always(on_rev=1),
                "WARNING in skb_zcopy": always(on_rev=REPLAYS), "data:ZC-DATA-EXACT": always(),
                "never asked": always()}
    asked = []

    def replay(key):
        asked.append(key)
        return replayed[key]

    passed_over: list[str] = []
    found = first_kill(((key, f"{key} detail") for key in replayed), replay, passed_over)
    assert found == ("data:ZC-DATA-EXACT", "data:ZC-DATA-EXACT detail", always())
    assert asked == list(replayed)[:4]
    assert passed_over == [f"parity:SF2-FLAGS0-PARITY (1/{REPLAYS} mutant, 0/{REPLAYS} v2)",
                           f"accounting:ZC-NOTIFY-ONCE ({REPLAYS}/{REPLAYS} mutant, 1/{REPLAYS} v2)",
                           f"WARNING in skb_zcopy ({REPLAYS}/{REPLAYS} mutant, {REPLAYS}/{REPLAYS} v2)"]
    # Only flaky candidates: no kill, the mutant survives.
    assert first_kill([("parity:SF2-FLAGS0-PARITY", "")], lambda key: always(on_mutant=REPLAYS - 1), []) is None
    assert not Replays("mutant", (0, 0), "v2", (0, 0)).reproduces  # nothing replayed proves nothing


def kill(name: str, expected: tuple[str, ...], check: str = "", killer: str = "",
         passed_over: tuple[str, ...] = ()) -> Kill:
    return Kill(Mutant(Path(f"{name}.patch"), expected), check, killer, f"{killer} detail" if check else "", 40.0,
                12.0, str(always()) if check else "", passed_over)


def test_kill_matrix_rows_and_score():
    flaky = f"parity:SF2-FLAGS0-PARITY (1/{REPLAYS} mutant, 0/{REPLAYS} v2)"
    kills = [kill("0001-a", ("SF2-FLAGS-UNKNOWN",), CONFORMANCE, "SF2-FLAGS-UNKNOWN"),
             kill("0002-b", ("ZC-NOTIFY-ONCE",), CONFORMANCE, "ZC-ID-ONCE"),
             kill("0003-c", ("ZC-NOTIFY-ONCE",), FUZZ, "accounting:ZC-NOTIFY-ONCE", (flaky,)),
             kill("0004-d", ("ZC-MEMLOCK-SENT",), passed_over=(flaky,))]
    lines = matrix_text(kills).splitlines()
    assert re.split(r"\s{2,}", lines[0])[4] == "replayed"
    replayed = f"{REPLAYS}/{REPLAYS} mutant, 0/{REPLAYS} v2"
    assert [re.split(r"\s{2,}", line) for line in lines[1:]] == [
        ["0001-a", CONFORMANCE, "SF2-FLAGS-UNKNOWN", "yes", replayed, "40", "12"],
        ["0002-b", CONFORMANCE, "ZC-ID-ONCE", "no", replayed, "40", "12"],
        ["0003-c", FUZZ, "accounting:ZC-NOTIFY-ONCE", "no", replayed, "40", "12"],
        ["0004-d", "SURVIVED", "-", "-", "-", "40", "12"]]
    assert score_line(kills) == "mutants: 3/4 killed (75%); survived: 0004-d"
    markdown = matrix_markdown(kills, "v2")
    assert markdown.count("\n| `") == 4 and "- `0002-b`: ZC-ID-ONCE detail" in markdown
    assert f"| `accounting:ZC-NOTIFY-ONCE` | no | {replayed} | 40 | 12 |" in markdown
    assert f"- `0003-c`: {flaky}" in markdown and f"- `0004-d`: {flaky}" in markdown


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
    replayed = [re.split(r"\s{2,}", line)[4] for line in done.stdout.splitlines()[1:-1]]
    assert replayed == [f"{REPLAYS}/{REPLAYS} mutant, 0/{REPLAYS} v2"] * len(PATCHES)
    assert (tmp_path / "kills.md").read_text().count("\n| `") == len(PATCHES)


# --- replays on real guests -----------------------------------------------------------------------

UNKNOWN_FLAG = {  # rfc-v1's D1: sendfile2 takes an unknown flag bit; v2 says EINVAL
    "fds": [{"name": "src", "kind": "file", "size": 4096, "seed": 1}, {"name": "sock", "kind": "tcp4"}],
    "ops": [{"op": "sendfile2", "out": "sock", "in": "src", "offset": 0, "count": 512, "flags": 4},
            {"op": "peer_read", "fd": "sock", "max": 65536}],
}


@pytest.mark.vm
def test_each_replay_runs_on_a_fresh_guest_not_the_warm_one():
    program = Program.from_json({"fds": [{"name": "src", "kind": "file", "size": 4096}], "ops": []})
    guests = []

    def attempt(target) -> bool:
        target.run(program)
        guests.append(target.guest.process.pid)
        return len(guests) == 2  # fails on the second guest only

    with open_target("vm:v2") as target:
        target.run(program)
        warm = target.guest.process.pid
        assert replays(attempt, target) == (1, REPLAYS)
    assert len(set(guests)) == REPLAYS and warm not in guests


@pytest.mark.vm
def test_a_finding_replays_on_every_fresh_guest_of_the_kernel_it_fails_on_and_none_of_the_other():
    with open_target("vm:rfc-v1") as target:
        info = target.kernel_info()
        program = with_target_sysno(Program.from_json(UNKNOWN_FLAG), info)
        violations = judge(target, program, Abi.from_kernel_info(info), info).violations
    assert violations, "rfc-v1 took the unknown flag without a violation"
    finding = {"key": violations[0].key, "title": violations[0].key, "program": program.to_json()}
    replayed = replay_both(finding_fails(finding), ("rfc-v1", "vm:rfc-v1"), ("v2", "vm:v2"), build=False)
    assert str(replayed) == f"{REPLAYS}/{REPLAYS} rfc-v1, 0/{REPLAYS} v2" and replayed.reproduces
    # The other way round, as the gate asks when v2 is the candidate: a finding of rfc-v1 only.
    backwards = replay_both(finding_fails(finding), ("v2", "vm:v2"), ("rfc-v1", "vm:rfc-v1"), times=1, build=False)
    assert str(backwards) == "0/1 v2, 1/1 rfc-v1" and not backwards.reproduces


@pytest.mark.vm
def test_a_campaign_finding_kills_only_once_it_replayed(tmp_path):
    """fuzz_kill for real, with rfc-v1 standing for a mutant of v2: its campaign finds the RFC's
    defects, and the finding that kills failed on every fresh guest of rfc-v1 and none of v2's."""
    passed_over: list[str] = []
    found = fuzz_kill(Sides("vm:rfc-v1", "v2", "vm:v2"), 90.0, 0, tmp_path / "findings", passed_over)
    assert found is not None, passed_over
    check, key, _, replayed = found
    assert check == FUZZ and key in read_findings(tmp_path / "findings")
    assert replayed.reproduces and str(replayed) == f"{REPLAYS}/{REPLAYS} mutant, 0/{REPLAYS} v2"
    assert all("mutant" in p for p in passed_over)


@pytest.mark.vm
def test_one_mutant_killed_end_to_end_says_how_often_the_kill_replayed(tmp_path):
    done = zcfuzz("mutants", "--rev", "v2", "--only", "0001", "--budget", "20s", "--md", str(tmp_path / "kills.md"))
    assert done.returncode == 0, done.stdout + done.stderr
    header, row = done.stdout.splitlines()[:2]
    assert re.split(r"\s{2,}", header)[4] == "replayed"
    assert re.split(r"\s{2,}", row)[:5] == [PATCHES[0].stem, CONFORMANCE, "SF2-FLAGS-UNKNOWN", "yes",
                                           f"{REPLAYS}/{REPLAYS} mutant, 0/{REPLAYS} v2"]
    assert f"| {REPLAYS}/{REPLAYS} mutant, 0/{REPLAYS} v2 |" in (tmp_path / "kills.md").read_text()
