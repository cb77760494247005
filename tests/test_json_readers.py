"""Every JSON reader: programs, findings and kernel info are checked against their schema, and
whatever a reader is given it returns a document of its format or raises a one-line UserError."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from zcfuzz.conformance.abi import Abi
from zcfuzz.conformance.cases import rows_of
from zcfuzz.conformance.oracles import Violation
from zcfuzz.conformance.spec import CLAUSES
from zcfuzz.fuzz.findings import (
    FINDING_SCHEMA,
    FindingStore,
    revision_of,
    smaller_than_recorded,
)
from zcfuzz.fuzz.shared import shared_finding
from zcfuzz.fuzz.strategies import programs
from zcfuzz.vm import kbuild, schema
from zcfuzz.vm.errors import UserError
from zcfuzz.vm.host import HOST_INCLUDE
from zcfuzz.vm.program import PROGRAM_SCHEMA, Program
from zcfuzz.workflows.gate import read_findings

ROOT = Path(__file__).resolve().parent.parent
RFC = Abi(nr_sendfile2=467, sendfile_default=1, sendfile_zc=2, splice_zc=0x10, revision="rfc-v1")
HOST = Abi()
INFO = {"revision": "rfc-v1", "base_version": "6.12.117", "nr_sendfile2": 467}
SCHEMAS = {"program": PROGRAM_SCHEMA, "finding": FINDING_SCHEMA, "kernel info": kbuild.KERNEL_INFO_SCHEMA}

# --- documents: any JSON, valid ones, and valid ones with one thing wrong -----------------------------

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=4), max_leaves=12)
OTHER_VALUES = st.one_of(st.lists(JSON, max_size=2), st.dictionaries(st.text(max_size=4), JSON, max_size=2),
                         st.integers(), st.floats(), st.none(), st.booleans(), st.text(max_size=8))


def program_docs() -> st.SearchStrategy[dict]:
    return st.one_of(programs(RFC, faults_and_threads=True), programs(HOST)).map(Program.to_json)


def finding_docs(store: FindingStore) -> st.SearchStrategy[dict]:
    """finding.json as a campaign writes it, for generated programs and violations."""
    violations = st.builds(Violation, st.sampled_from(["health", "accounting", "parity"]), st.text(min_size=1),
                           st.none() | st.integers(0, 7), st.text())
    return st.builds(lambda v, p: json.loads(store.files(v, p, "", {})["finding.json"]), violations, programs(RFC))


def kernel_info_docs() -> st.SearchStrategy[dict]:
    """info.json as `kbuild.publish` writes it."""
    flags = st.dictionaries(st.from_regex(r"[A-Z_]{1,12}", fullmatch=True), st.integers(0, 1 << 31), max_size=4)
    return st.fixed_dictionaries({
        "revision": st.text(min_size=1), "base_version": st.text(), "base": st.text(),
        "series_sha256": st.text(), "config_sha256": st.text(), "patches": st.lists(st.text(), max_size=3),
        "nr_sendfile2": st.none() | st.integers(0, 4095),
        "sendfile_flags": flags.map(lambda f: {f"SENDFILE_{k}": v for k, v in f.items()}),
        "splice_flags": flags.map(lambda f: {f"SPLICE_F_{k}": v for k, v in f.items()}),
        "build_seconds": st.floats(0, 1e5),
    }, optional={"cover": st.lists(st.text(), max_size=2)})


def places(doc) -> list[tuple[object, object]]:
    """(container, key) of every value in `doc`, the document itself (in a one-item list) first."""
    holder = [doc]
    found, todo = [], [holder]
    while todo:
        container = todo.pop()
        for key in (range(len(container)) if isinstance(container, list) else list(container)):
            found.append((container, key))
            if isinstance(container[key], (list, dict)):
                todo.append(container[key])
    return found


@st.composite
def mutated(draw, docs: st.SearchStrategy) -> object:
    """A valid document with one value replaced, one field or item dropped, or one field added."""
    holder = [copy.deepcopy(draw(docs))]
    found = places(holder[0])
    found[0] = (holder, 0)
    container, key = draw(st.sampled_from(found))
    how = draw(st.sampled_from(["replace", "drop", "add"] if container is not holder else ["replace"]))
    if how == "replace":
        container[key] = draw(OTHER_VALUES)
    elif how == "drop":
        del container[key]
    elif isinstance(container[key], dict):
        container[key][draw(st.text(max_size=8))] = draw(JSON)
    else:
        container[key] = [container[key], draw(JSON)]
    return holder[0]


def texts(docs: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    """Files: any bytes, any JSON, and valid documents with one thing wrong."""
    return st.one_of(st.binary(max_size=64), JSON.map(lambda d: json.dumps(d).encode()),
                     mutated(docs).map(lambda d: json.dumps(d).encode()))


# --- what a reader may do: give a document of its format, or one line ---------------------------------


def one_line_or(read, *args):
    """`read(*args)`, or None where it raised a UserError of one line; any other exception fails."""
    try:
        return read(*args)
    except UserError as err:
        text = str(err)
        assert text and "\n" not in text and len(text.splitlines()) == 1, repr(text)
        return None


def usable_program(program) -> None:
    assert isinstance(program, Program)
    assert Program.from_json(program.to_json()) == program
    assert program.encode().endswith("\n")


def usable_finding(doc) -> None:
    """What the campaign, the gate and the listings read of a finding works."""
    schema.check(doc, FINDING_SCHEMA, "finding")
    program = Program.from_json(doc["program"])
    smaller_than_recorded(program, doc)
    assert all(isinstance(doc[k], str) for k in ("title", "key", "clause_id", "message", "revision"))
    assert len(doc["program"]["ops"]) >= 0


def usable_kernel_info(info) -> None:
    schema.check(info, kbuild.KERNEL_INFO_SCHEMA, "kernel info")
    assert 0 in Abi.from_kernel_info(info).sendfile2_flag_sets
    assert isinstance(revision_of(info), str) and isinstance(info["revision"], str)


def info_of(folder: Path) -> dict:
    return kbuild.KernelBuild("key", folder).info


def write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return folder / name


# --- the regression, and each reader's errors ---------------------------------------------------------

KIND_IS_A_LIST = {"fds": [{"name": "sock", "kind": ["tcp4"]}], "ops": []}


def test_a_fixture_kind_that_is_a_list_is_one_line_not_a_traceback(tmp_path):
    with pytest.raises(UserError) as caught:
        Program.from_json(KIND_IS_A_LIST)
    assert str(caught.value) == 'program: fds[0].kind: expected a string, got ["tcp4"]'
    path = write(tmp_path, "program.json", json.dumps(KIND_IS_A_LIST).encode())
    with pytest.raises(UserError) as caught:
        Program.load(str(path))
    assert str(caught.value) == f'{path}: program: fds[0].kind: expected a string, got ["tcp4"]'


@pytest.mark.parametrize("data, message", [
    (b'{"fds": [], "ops": [}', "not JSON: Expecting value at line 1 column 21"),
    (b"\xff\xfe\xfa", "not JSON: not UTF-8 text"),
    (b"[" * 100_000, "not JSON zcfuzz reads: nested too deeply"),
    (b'{"fds": [], "ops": [], "sysno": {"sendfile2": ' + b"9" * 5000 + b"}}", "not JSON zcfuzz reads:"),
    (b'{"fds": [{"name": "s", "kind": "tcp4"}], "ops": [{"op": "write", "fd": "s", "len": true}]}',
     "program: ops[0] write.len: expected an integer, got true"),
    (b'{"fds": [{"name": "s", "kind": "tcp4", "sndbuf": 1.0}], "ops": []}',
     "program: fds[0].sndbuf: expected an integer, got 1.0"),
    (b'{"sysno": {"sendfile2": "467"}, "fds": [], "ops": []}',
     'program: sysno.sendfile2: expected an integer or null, got "467"'),
    (b'{"fds": [], "ops": [{"op": "close", "fd": "x"}], "\\n": 1}', "program: top level: unknown field '\\n'"),
])
def test_a_program_file_that_is_wrong_is_one_line_naming_it(tmp_path, data, message):
    path = write(tmp_path, "p.json", data)
    with pytest.raises(UserError) as caught:
        Program.load(str(path))
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(UserError, match="cannot read program .*: No such file"):
        Program.load(str(tmp_path / "absent.json"))


def test_a_finding_that_is_wrong_is_one_line_naming_its_file(tmp_path):
    store = FindingStore(tmp_path, INFO)
    store.record(Violation("accounting", "SPLICE-ZC-PIPE-TO-SOCKET", 1, "sock: ids 0 never notified", "splice not notified"),
                 Program.from_json({"fds": [{"name": "s", "kind": "tcp4"}], "ops": [{"op": "close", "fd": "s"}]}))
    (path,) = tmp_path.glob("*/finding.json")
    good = json.loads(path.read_text())
    assert store.findings() == [dict(good, folder=path.parent.name)]
    assert FindingStore.read(tmp_path / "nowhere" / "finding.json") is None  # none (yet)
    for doc, message in [
        ({k: v for k, v in good.items() if k != "key"}, "top level: missing field 'key'"),
        (dict(good, size=["1", 2, 3]), "size[0]: expected an integer, got \"1\""),
        (dict(good, program=dict(good["program"], fds=[{"name": "s", "kind": ["tcp4"]}])),
         'program.fds[0].kind: expected a string, got ["tcp4"]'),
        (dict(good, program=dict(good["program"], ops=[{"op": "close", "fd": "t"}])),
         "program: ops[0] close: no fd named 't'"),
    ]:
        path.write_text(json.dumps(doc))
        for read in (store.findings, lambda: read_findings(tmp_path)):
            with pytest.raises(UserError) as caught:
                read()
            assert str(caught.value) == f"{path}: {message}" or (
                str(caught.value).startswith(f"{path}: ") and message in str(caught.value)), str(caught.value)
    path.write_text("{")
    with pytest.raises(UserError, match=re.escape(f"{path}: not JSON: ")):
        store.recorded(good["key"])


def test_a_shared_finding_that_is_wrong_is_one_line_naming_it():
    with pytest.raises(UserError) as caught:
        shared_finding("zcfuzz:findings:rfc-v1", "k", b'{"title": 1}')
    assert str(caught.value) == "shared finding 'k' in zcfuzz:findings:rfc-v1: top level: missing field 'key'"


def test_kernel_info_that_is_wrong_is_one_line_naming_its_file(tmp_path):
    info = {"revision": "v2", "base_version": "6.12", "nr_sendfile2": 467, "sendfile_flags": {"SENDFILE_ZC": "2"},
            "splice_flags": {}}
    path = write(tmp_path, "info.json", json.dumps(info).encode())
    with pytest.raises(UserError) as caught:
        info_of(tmp_path)
    assert str(caught.value) == f'{path}: sendfile_flags.SENDFILE_ZC: expected an integer, got "2"'
    with pytest.raises(UserError, match="cannot read kernel info .*info.json: No such file"):
        info_of(tmp_path / "absent")


# --- valid documents pass ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMAS)
def test_each_schema_is_a_draft_2020_12_schema(name):
    Draft202012Validator.check_schema(SCHEMAS[name])
    assert SCHEMAS[name]["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_programs_of_program_md_pass():
    text = (ROOT / "vm" / "PROGRAM.md").read_text(encoding="utf-8")
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL)]
    examples = [doc for doc in examples if "fds" in doc]
    assert len(examples) >= 2
    for doc in examples:
        usable_program(Program.from_json(doc))


@pytest.mark.parametrize("abi", [RFC, HOST], ids=["patched", "unpatched"])
def test_the_programs_of_every_conformance_row_pass(abi):
    info = {"nr_sendfile2": abi.nr_sendfile2, "sendfile_flags": {"SENDFILE_DEFAULT": 1, "SENDFILE_ZC": 2},
            "splice_flags": {"SPLICE_F_ZC": 16}} if abi.has_sendfile2 else {"splice_flags": {}}
    for clause in CLAUSES:
        if clause.requires and not abi.has_sendfile2:
            continue
        for row in rows_of(clause.id, abi, info):
            schema.check(row.program(abi), PROGRAM_SCHEMA, f"{clause.id} {row.condition}")


def test_generated_programs_pass_and_load_from_their_files(tmp_path):
    @settings(max_examples=40)
    @given(program_docs())
    def check(doc):
        schema.check(doc, PROGRAM_SCHEMA, "program")
        path = write(tmp_path, "program.json", json.dumps(doc, indent=2).encode())
        assert Program.load(str(path)) == Program.from_json(doc)

    check()


def test_findings_a_campaign_writes_pass(tmp_path):
    store = FindingStore(tmp_path / "store", INFO)

    @settings(max_examples=20)
    @given(finding_docs(store))
    def check(doc):
        usable_finding(doc)
        usable_finding(shared_finding("zcfuzz:findings:rfc-v1", doc["key"], json.dumps(doc).encode()))

    check()
    found = FindingStore(tmp_path / "found", {"nr_sendfile2": 467})  # no revision: "" as in a host campaign
    found.record(Violation("health", "", None, "BUG: ...", "BUG: kernel NULL pointer dereference"),
                 Program.from_json({"fds": [], "ops": [{"op": "lkdtm", "crash": "BUG"}]}), console="BUG:\n")
    (doc,) = found.findings()
    usable_finding(doc)
    assert doc["revision"] == "" and doc["op_index"] is None and doc["found_after_s"] is None


def test_kernel_info_as_a_build_writes_it_passes(tmp_path):
    info = {"revision": "v2", "base_version": "6.12.117", "base": "linux-6.12.117", "series_sha256": "0" * 64,
            "config_sha256": "1" * 64, "patches": ["0001-a.patch"], "cover": ["net/core/skbuff.c"],
            **kbuild.read_abi_from_headers(HOST_INCLUDE), "build_seconds": 812.4}
    write(tmp_path, "info.json", json.dumps(info, indent=2).encode())
    assert info_of(tmp_path) == info

    @settings(max_examples=40)
    @given(kernel_info_docs())
    def check(doc):
        write(tmp_path, "info.json", json.dumps(doc).encode())
        usable_kernel_info(info_of(tmp_path))

    check()


# --- random JSON, and valid documents with one thing wrong, to each reader ----------------------------


@settings(max_examples=300)
@given(st.one_of(JSON, mutated(program_docs())))
def test_program_from_json_takes_anything(doc):
    program = one_line_or(Program.from_json, doc)
    if program is not None:
        usable_program(program)


def test_program_files_take_anything(tmp_path):
    @settings(max_examples=150)
    @given(texts(program_docs()))
    def check(data):
        program = one_line_or(Program.load, str(write(tmp_path, "program.json", data)))
        if program is not None:
            usable_program(program)

    check()


def test_finding_files_take_anything(tmp_path):
    store = FindingStore(tmp_path / "store", INFO)

    @settings(max_examples=150)
    @given(texts(finding_docs(store)))
    def check(data):
        write(tmp_path / "findings" / "one", "finding.json", data)
        for read in (lambda: FindingStore(tmp_path / "findings", {}).findings(),
                     lambda: list(read_findings(tmp_path / "findings").values())):
            docs = one_line_or(read)
            for doc in docs or ():
                usable_finding(doc)

    check()


def test_shared_findings_take_anything(tmp_path):
    store = FindingStore(tmp_path, INFO)

    @settings(max_examples=150)
    @given(texts(finding_docs(store)))
    def check(data):
        doc = one_line_or(shared_finding, "zcfuzz:findings:rfc-v1", "k", data)
        if doc is not None:
            usable_finding(doc)

    check()


def test_kernel_info_files_take_anything(tmp_path):
    @settings(max_examples=150)
    @given(texts(kernel_info_docs()))
    def check(data):
        write(tmp_path, "info.json", data)
        info = one_line_or(info_of, tmp_path)
        if info is not None:
            usable_kernel_info(info)

    check()
