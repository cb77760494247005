"""Titles of crashes captured from zcfuzz's own guests (LKDTM on the base kernel, 6.12 + KASAN).

The logs in tests/data/console/ were captured with `zcfuzz vm run` of an `lkdtm` op; the live
counterpart, which provokes the same crashes again, is in test_vm_target.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vm import triage

CONSOLE_LOGS = Path(__file__).resolve().parent / "data" / "console"

CAPTURED = [
    ("lkdtm-warning.log", "WARNING in lkdtm_WARNING", "WARNING"),
    ("lkdtm-bug.log", "kernel BUG in lkdtm_BUG", None),
    ("lkdtm-exception.log", "general protection fault in lkdtm_EXCEPTION", None),
    ("lkdtm-panic.log", "kernel panic: dumptest", None),
    ("lkdtm-read-after-free.log", "KASAN: slab-use-after-free Read in lkdtm_READ_AFTER_FREE", "MEMORY_SAFETY_BUG"),
    # syzkaller files double frees with invalid frees: one title for both.
    ("lkdtm-slab-free-double.log", "KASAN: invalid-free in lkdtm_SLAB_FREE_DOUBLE", "MEMORY_SAFETY_BUG"),
    ("lkdtm-hung-task.log", "INFO: task hung in lkdtm_HUNG_TASK", "HANG"),
    # A lockup is named by the frame inside the file operation (vfs_write) that loops.
    ("lkdtm-soft-lockup.log", "BUG: soft lockup in full_proxy_write", "HANG"),
    # The access was the interrupt handler's (it took a lock at a wild address); identify_cpu
    # is only the code it interrupted.
    ("boot-kasan-wild-memory-access.log", "KASAN: wild-memory-access Write in handle_edge_irq", "MEMORY_SAFETY_BUG"),
]


@pytest.mark.parametrize("log, title, kind", CAPTURED, ids=[row[0] for row in CAPTURED])
def test_captured_crash_has_its_title(log, title, kind):
    report = triage.parse((CONSOLE_LOGS / log).read_text())
    assert report is not None
    assert report.title == title
    if kind is not None:
        assert report.type == kind
    assert title.split(" in ")[-1].split(":")[-1].strip() in report.report or "panic" in title


def test_every_captured_log_is_in_the_table():
    assert sorted(p.name for p in CONSOLE_LOGS.glob("*.log")) == sorted(row[0] for row in CAPTURED)
