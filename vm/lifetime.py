"""Processes zcfuzz starts end with the one that started them, however that one ends.

The kernel's parent-death signal (PR_SET_PDEATHSIG) covers SIGKILL, which no handler sees. It
fires when the *thread* that forked the child ends, so only long-lived threads start children.
It reaches a child only, not the child's own children: where zcfuzz ends a process it started,
it ends the process's whole tree (`descendants`, then `end_processes`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time

import psutil

PR_SET_PDEATHSIG = 1
END_WAIT_S = 5.0  # how long a process sent SIGKILL may take to be gone


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Have `sig` sent to this process when the thread that started it ends. With `parent`
    (its pid, taken before the fork), exit at once if it has already gone: the signal is only
    sent for deaths after this call."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if parent is not None and os.getppid() != parent:
        os._exit(128 + int(sig))


def descendants(*pids: int) -> list[psutil.Process]:
    """Every process below those of `pids` now: children, theirs, and so on. Take them before
    ending a process: once it is gone, its children belong to init and are no longer found."""
    family: list[psutil.Process] = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            family += psutil.Process(pid).children(recursive=True)
    return family


def end_processes(processes: list[psutil.Process], timeout_s: float = END_WAIT_S) -> list[psutil.Process]:
    """SIGKILL those of `processes` still running and wait up to `timeout_s` for them to end;
    those still running then. A pid the kernel gave to a new process meanwhile is left alone
    (psutil checks a process's start time before it signals it)."""
    running = [process for process in set(processes) if process.is_running()]  # False for a reused pid
    for process in running:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process.kill()
    deadline = time.monotonic() + timeout_s
    while (running := [process for process in running if not ended(process)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return running


def ended(process: psutil.Process) -> bool:
    """Gone, or a zombie: dead, and reaped by whoever is its parent now (init, if it reaps)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
