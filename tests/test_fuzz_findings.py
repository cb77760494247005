"""The findings writer: whole folders, atomic updates, one folder per key, smallest program kept."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from zcfuzz.conformance.oracles import Violation
from zcfuzz.fuzz.findings import FindingStore, finding_files
from zcfuzz.fuzz.repro import c_reproducer, python_reproducer
from zcfuzz.vm.program import FD_KINDS, Program

INFO = {"revision": "rfc-v1", "base_version": "6.12.117", "nr_sendfile2": 467}
LOST = Violation("accounting", "SPLICE-ZC-PIPE-TO-SOCKET", 1, "sock: ids 0 never notified", "splice not notified")
CRASH = Violation("health", "SPLICE-ZC-ERRNO", None, "BUG: ...", "BUG: kernel NULL pointer dereference in splice_write_sd")


def program(n_ops: int) -> Program:
    ops = [{"op": "sendfile2", "out": "sock", "in": "src", "offset": 0, "count": 512, "flags": 2}] * n_ops
    return Program.from_json({"sysno": {"sendfile2": 467}, "fds": [
        {"name": "src", "kind": "file"}, {"name": "sock", "kind": "tcp4", "zerocopy": True}], "ops": ops})


def finding(store: FindingStore, violation: Violation) -> dict:
    return json.loads((store.folder(violation.key) / "finding.json").read_text())


def test_a_finding_is_written_whole(tmp_path):
    store = FindingStore(tmp_path, INFO)
    assert store.record(LOST, program(3), console="") is True
    folder = store.folder(LOST.key)
    assert sorted(p.name for p in folder.iterdir()) == ["finding.json", "program.json", "repro.c", "repro.py"]
    document = finding(store, LOST)
    assert (document["title"], document["oracle"], document["revision"], document["kernel"]) == (
        "accounting: SPLICE-ZC-PIPE-TO-SOCKET (splice not notified)", "accounting", "rfc-v1", "6.12.117")
    assert Program.from_json(document["program"]) == program(3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_dedup_keeps_the_smallest_program(tmp_path):
    store = FindingStore(tmp_path, INFO)
    store.record(LOST, program(3))
    assert store.record(LOST, program(5)) is False
    assert len(finding(store, LOST)["program"]["ops"]) == 3
    assert store.record(LOST, program(1)) is True
    assert len(finding(store, LOST)["program"]["ops"]) == 1
    assert json.loads((store.folder(LOST.key) / "program.json").read_text()) == program(1).to_json()
    store.record(CRASH, program(2), console="BUG: kernel NULL pointer dereference\n")
    assert sorted(store.keys()) == sorted([LOST.key, CRASH.key])
    assert (store.folder(CRASH.key) / "console.log").read_text().startswith("BUG:")


def test_a_finding_found_first_elsewhere_keeps_who_and_when(tmp_path):
    there = FindingStore(tmp_path / "there", INFO, machine="lab-1")
    there.record(LOST, program(2))
    origin = there.findings()[0]
    here = FindingStore(tmp_path / "here", INFO, machine="ci-runner")
    assert here.record(LOST, program(2), origin=origin)
    assert here.record(LOST, program(1))
    document = finding(here, LOST)
    assert (document["machine"], document["found"]) == ("lab-1", origin["found"])
    assert len(document["program"]["ops"]) == 1
    assert not here.record(LOST, program(1), origin=origin)  # no smaller than the one here


def test_a_snapshot_puts_a_replaced_finding_back(tmp_path):
    store = FindingStore(tmp_path, INFO)
    store.record(CRASH, program(3), console="BUG: kernel NULL pointer dereference\n")
    before = store.snapshot(CRASH.key)
    store.record(CRASH, program(1))
    assert len(finding(store, CRASH)["program"]["ops"]) == 1
    store.restore(CRASH.key, before)
    assert store.snapshot(CRASH.key) == before and len(finding(store, CRASH)["program"]["ops"]) == 3


def test_an_update_killed_midway_leaves_a_readable_finding(tmp_path, monkeypatch):
    store = FindingStore(tmp_path, INFO)
    store.record(LOST, program(3))
    real_replace = os.replace

    def killed(src, dst):
        if str(dst).endswith("finding.json"):
            raise KeyboardInterrupt  # the campaign is killed before the last rename
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        store.record(LOST, program(1))
    monkeypatch.undo()
    assert len(finding(store, LOST)["program"]["ops"]) == 3  # the old, complete record
    assert Program.from_json(json.loads((store.folder(LOST.key) / "program.json").read_text()))

    store.tidy()  # a rerun: finding.json says which version the folder holds
    folder = store.folder(LOST.key)
    assert json.loads((folder / "program.json").read_text()) == finding(store, LOST)["program"]
    assert (folder / "repro.c").read_text() == c_reproducer(program(3), 467, "accounting: SPLICE-ZC-PIPE-TO-SOCKET (splice not notified)")
    assert sorted(p.name for p in folder.iterdir()) == ["finding.json", "program.json", "repro.c", "repro.py"]


def test_a_folder_killed_while_being_built_is_no_finding(tmp_path):
    store = FindingStore(tmp_path, INFO)
    store.record(LOST, program(1))
    building = tmp_path / ".new-killed"
    shutil.copytree(store.folder(LOST.key), building)
    assert finding_files(tmp_path) == [store.folder(LOST.key) / "finding.json"]
    store.tidy()
    assert not building.exists() and store.keys() == [LOST.key]


def every_kind_and_op() -> Program:
    fds = [{"name": f"f_{kind}", "kind": kind, **({"zerocopy": True} if kind.startswith(("tcp", "udp")) else {})}
           for kind in FD_KINDS]
    sock, src, pipe = "f_tcp4", "f_file", "f_pipe"
    ops = [
        {"op": "sendfile2", "out": sock, "in": src, "offset": 0, "count": 4096, "flags": 2},
        {"op": "sendfile64", "out": sock, "in": src, "offset": "unmapped", "count": 1},
        {"op": "splice", "in": src, "off_in": 7, "out": pipe + ".w", "off_out": None, "len": 100, "flags": 0},
        {"op": "tee", "in": pipe + ".r", "out": "f_devnull", "len": 1, "flags": 0x10},
        {"op": "splice", "in": pipe + ".r", "off_in": None, "out": sock, "off_out": None, "len": 100, "flags": 0x10},
        {"op": "vmsplice", "fd": pipe + ".w", "len": 10, "flags": 0},
        {"op": "sendmsg", "fd": sock, "len": 100, "flags": 0x4000000},
        {"op": "write", "fd": pipe + ".w", "len": 10},
        {"op": "peer_read", "fd": sock, "max": 100},
        {"op": "drain", "fd": sock, "wait_ms": 10},
        {"op": "setsockopt_zerocopy", "fd": "f_udp4", "value": 2},
        {"op": "peer_close", "fd": "f_unix_stream"},
        {"op": "close", "fd": "f_eventfd"},
    ]
    return Program.from_json({"sysno": {"sendfile2": 467}, "fds": fds, "ops": ops})


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_c_reproducer_builds_static(tmp_path):
    source = tmp_path / "repro.c"
    source.write_text(c_reproducer(every_kind_and_op(), 467, "test"))
    built = subprocess.run(["cc", "-static", "-Wall", "-Werror", "-o", str(tmp_path / "repro"), str(source)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert "syscall(467," in source.read_text()


def test_python_reproducer_runs_on_this_kernel(tmp_path):
    prog = Program.from_json({"fds": [{"name": "src", "kind": "file", "size": 100}, {"name": "sock", "kind": "tcp4"}],
                              "ops": [{"op": "sendfile64", "out": "sock", "in": "src", "offset": 0, "count": 100},
                                      {"op": "peer_read", "fd": "sock", "max": 1000}]})
    script = tmp_path / "repro.py"
    script.write_text(python_reproducer(prog, None, "test"))
    ran = subprocess.run(["python3", "-I", str(script)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[:2] == ["ops[0] sendfile64 = 100", "ops[1] peer_read = 100"]


THREADED_AND_FAULTED = Program.from_json({
    "fds": [{"name": "s", "kind": "tcp4", "zerocopy": True}, {"name": "f", "kind": "file", "size": 8192},
            {"name": "p", "kind": "pipe"}],
    "ops": [{"op": "sendmsg", "fd": "s", "len": 1000, "flags": 0x4000000, "thread": 1},
            {"op": "sendfile64", "out": "s", "in": "f", "offset": 0, "count": 4096, "fail_nth": 2},
            {"op": "vmsplice", "fd": "p.w", "len": 10, "flags": 0, "fail_nth": 1, "thread": 1},
            {"op": "write", "fd": "p.w", "len": 5, "fail_nth": 3},
            {"op": "peer_read", "fd": "s", "max": 100000, "thread": 1}],
})


def reported_ops(output: str) -> set[tuple[int, str]]:
    """(op index, "call" or "fault") for each line a reproducer printed about an op."""
    return {(int(line[4:line.index("]")]), "fault" if " fault " in line else "call")
            for line in output.splitlines() if line.startswith("ops[") and (" = " in line or " fault " in line)}


EXPECTED_REPORTS = {(0, "call"), (1, "call"), (1, "fault"), (2, "call"), (2, "fault"), (3, "call"), (3, "fault"),
                    (4, "call")}


def test_c_reproducer_runs_thread_1_in_a_second_thread_and_arms_each_fault_right_before_its_call(tmp_path):
    source = c_reproducer(THREADED_AND_FAULTED, None, "test")
    thread_1 = source[source.index("static void *second_thread"):source.index("int main")]
    assert [f"report({i}" in thread_1 or f"report_faulted({i}" in thread_1 for i in range(5)] == [
        True, False, True, False, False]  # peer_read is a helper call of its own
    assert "peer_read(4," in thread_1
    lines = source.splitlines()
    for i in (1, 2, 3):
        armed = lines.index(f"\tint fault{i} = fault_arm({THREADED_AND_FAULTED.ops[i].fail_nth});")
        assert lines[armed + 1].startswith(f"\treport_faulted({i}, ")
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler")
    (tmp_path / "repro.c").write_text(source)
    built = subprocess.run(["cc", "-static", "-pthread", "-Wall", "-Werror", "-o", str(tmp_path / "repro"),
                            str(tmp_path / "repro.c")], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([str(tmp_path / "repro")], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and reported_ops(ran.stdout) == EXPECTED_REPORTS, ran.stdout


def test_python_reproducer_runs_threads_and_faults(tmp_path):
    script = tmp_path / "repro.py"
    script.write_text(python_reproducer(THREADED_AND_FAULTED, None, "test"))
    ran = subprocess.run(["python3", "-I", str(script)], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert reported_ops(ran.stdout) == EXPECTED_REPORTS, ran.stdout
    if not os.path.exists("/proc/thread-self/fail-nth"):
        assert ran.stdout.count("fault not armed: no /proc/thread-self/fail-nth") == 3
