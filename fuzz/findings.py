"""Findings on disk: one folder per distinct finding, written so that a kill loses nothing.

A finding is keyed by its crash title, or by oracle, clause and what broke (`Violation.key`). Its folder holds `finding.json`
(title, oracle, revision, kernel, program, the machine that found it first, ...), `program.json`,
`repro.c`, `repro.py` and, after a crash, `console.log`. A folder appears whole (built aside in
a folder whose name starts with `.`, then renamed into place); a smaller program for the same key
later replaces each file atomically, `finding.json` last, so `finding.json` says which version a
folder holds: after a kill, `tidy` brings the other files back in line with it and removes what
was being built.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from zcfuzz.conformance.oracles import Violation
from zcfuzz.fuzz.repro import c_reproducer, python_reproducer
from zcfuzz.vm import schema
from zcfuzz.vm.program import PROGRAM_SCHEMA, Program

# A finding's document: its finding.json, and the same document shared in Redis (fuzz/shared.py).
# Fields that findings of every zcfuzz so far have are required; those added since (who found it
# and when) are checked where present, and a field this zcfuzz does not know is let be.
FINDING_SCHEMA: dict = {
    "$schema": schema.DIALECT,
    "title": "zcfuzz finding",
    "type": "object",
    "required": ["title", "key", "oracle", "clause_id", "message", "revision", "program"],
    "properties": {
        **schema.typed(title="string", key="string", oracle="string", clause_id="string",
                       op_index=["integer", "null"], message="string", revision="string", kernel="string",
                       machine="string", found="string", found_after_s=["number", "null"], updated="string"),
        "program": {k: v for k, v in PROGRAM_SCHEMA.items() if k != "$schema"},
        "size": {"type": "array", "items": {"type": "integer"}, "minItems": 3, "maxItems": 3},
    },
}


def program_size(program: Program) -> tuple[int, int, int]:
    """What shrinking minimises: ops, then fixtures, then the text."""
    return len(program.ops), len(program.fds), len(program.dumps())


def smaller_than_recorded(program: Program, recorded: dict | None) -> bool:
    """`program` is smaller than a recorded finding's (any program is, where there is none)."""
    return not recorded or "size" not in recorded or program_size(program) < tuple(recorded["size"])


def folder_name(key: str) -> str:
    """A readable, filesystem-safe, collision-free name for a finding key."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", key).strip("-")[:80]
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def revision_of(kernel_info: dict) -> str:
    """The revision findings on this kernel are recorded for."""
    return kernel_info.get("revision") or kernel_info.get("target", "")


def program_json(program: Program) -> str:
    return json.dumps(program.to_json(), indent=2) + "\n"


def finding_from_json(doc: Any, what: str) -> dict:
    """A finding's document read from `what` (a file, a Redis field), its program checked as a
    program file is: whatever `doc` is, a finding or a one-line error naming `what`."""
    schema.check(doc, FINDING_SCHEMA, what)
    with schema.within(what):
        Program.from_json(doc["program"])
    return doc


def finding_files(root: Path) -> list[Path]:
    """The `finding.json` of each finding folder in place under `root` (not of one being built)."""
    return [path for path in Path(root).glob("*/finding.json") if not path.parent.name.startswith(".")]


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class FindingStore:
    """The findings folder of a campaign, shared by its workers."""

    def __init__(self, root: Path, kernel_info: dict, campaign_started: float | None = None,
                 machine: str | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.kernel_info = kernel_info
        self.campaign_started = campaign_started  # time.time() when the campaign began
        self.machine = machine or socket.gethostname()

    def folder(self, key: str) -> Path:
        return self.root / folder_name(key)

    def known(self, key: str) -> bool:
        return (self.folder(key) / "finding.json").is_file()

    def recorded(self, key: str) -> dict | None:
        return self.read(self.folder(key) / "finding.json")

    def findings(self) -> list[dict]:
        """Every finding's document, in the order they were found."""
        docs = [doc for doc in map(self.read, finding_files(self.root)) if doc]
        return sorted(docs, key=lambda d: (d.get("found", ""), d.get("key", "")))

    @staticmethod
    def read(path: Path) -> dict | None:
        """A finding.json with the name of its folder; None if there is none (yet), a one-line
        error if it is not a finding's."""
        try:
            text = path.read_bytes()
        except OSError:
            return None
        return dict(finding_from_json(schema.parse(text, str(path)), str(path)), folder=path.parent.name)

    def keys(self) -> list[str]:
        return [doc["key"] for doc in self.findings() if "key" in doc]

    def is_smaller(self, key: str, program: Program) -> bool:
        """No finding has this key yet, or `program` is smaller than the one on disk."""
        return smaller_than_recorded(program, self.recorded(key))

    def program(self, key: str) -> Program:
        return Program.load(str(self.folder(key) / "program.json"))

    def record(self, violation: Violation, program: Program, console: str = "", origin: dict | None = None) -> bool:
        """Write the finding if it is new or `program` is smaller than the one on disk. `origin`
        is the finding as another machine recorded it first (Redis), when it is new here."""
        recorded = self.recorded(violation.key)
        if not smaller_than_recorded(program, recorded):
            return False
        files = self.files(violation, program, console, recorded or origin or {})
        if not recorded and self._create(violation.key, files):
            return True
        folder = self.folder(violation.key)
        for name, text in files.items():
            write_atomic(folder / name, text)
        return True

    def tidy(self) -> None:
        """Undo what a writer killed mid-write left: folders and files being built, and a folder
        whose files were replaced up to, but not including, `finding.json`. Only while no
        campaign writes here."""
        for path in self.root.glob(".new-*"):
            shutil.rmtree(path, ignore_errors=True)
        for doc in self.findings():
            folder, program = self.root / doc["folder"], Program.from_json(doc["program"])
            for path in folder.glob(".*"):
                path.unlink()  # a file write_atomic had not renamed into place yet
            path = folder / "program.json"
            if not path.is_file() or path.read_text(encoding="utf-8") != program_json(program):
                nr = program.sysno_of("sendfile2")
                for name, text in (("program.json", program_json(program)),
                                   ("repro.c", c_reproducer(program, nr, doc["title"])),
                                   ("repro.py", python_reproducer(program, nr, doc["title"]))):
                    write_atomic(folder / name, text)

    def snapshot(self, key: str) -> dict[str, str]:
        """The finding's files as they are now, to put back with `restore`."""
        folder = self.folder(key)
        return {path.name: path.read_text(encoding="utf-8") for path in folder.iterdir()
                if path.is_file() and not path.name.startswith(".")}

    def restore(self, key: str, files: dict[str, str]) -> None:
        """Put a snapshot back, file by file, `finding.json` last."""
        folder = self.folder(key)
        for name in sorted(files, key=lambda n: n == "finding.json"):
            write_atomic(folder / name, files[name])
        for path in folder.iterdir():
            if path.is_file() and not path.name.startswith(".") and path.name not in files:
                path.unlink()

    def _create(self, key: str, files: dict[str, str]) -> bool:
        """Build the folder aside and rename it into place; False if another worker won."""
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".new-"))
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        try:
            os.rename(staging, self.folder(key))
            return True
        except OSError:
            for name in files:
                (staging / name).unlink()
            staging.rmdir()
            return False

    def files(self, violation: Violation, program: Program, console: str, first: dict) -> dict[str, str]:
        """The folder's contents, `finding.json` last (dicts keep order: writes follow it).
        `first` is the finding as first recorded (empty when new): when it was found stays."""
        now = time.time()
        found_after = first.get("found_after_s", round(now - self.campaign_started, 1)
                                if self.campaign_started is not None else None)
        info = self.kernel_info
        nr = info.get("nr_sendfile2")
        title = violation.title
        files = {
            "program.json": program_json(program),
            "repro.c": c_reproducer(program, nr, title),
            "repro.py": python_reproducer(program, nr, title),
        }
        if console:
            files["console.log"] = console
        files["finding.json"] = json.dumps({
            "title": title,
            "key": violation.key,
            "oracle": violation.oracle,
            "clause_id": violation.clause_id,
            "op_index": violation.op_index,
            "message": violation.message,
            "revision": revision_of(info),
            "kernel": info.get("base_version", ""),
            "program": program.to_json(),
            "size": list(program_size(program)),
            "machine": first.get("machine", self.machine),
            "found": first.get("found", time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now))),
            "found_after_s": found_after,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
        }, indent=2) + "\n"
        return files
