"""Crash triage: find a kernel report in console output and title it as syzkaller would."""

from zcfuzz.vm.triage.report import (
    LOST_CONNECTION_TITLE,
    NO_OUTPUT_TITLE,
    CrashReport,
    find_crash_start,
    parse,
)

__all__ = ["LOST_CONNECTION_TITLE", "NO_OUTPUT_TITLE", "CrashReport", "find_crash_start", "parse"]
