"""Processes zcfuzz starts end with the one that started them, however that one ends.

The kernel's parent-death signal (PR_SET_PDEATHSIG) covers SIGKILL, which no handler sees. It
fires when the *thread* that forked the child ends, so only long-lived threads start children.
It reaches a child only, not the child's own children: where zcfuzz ends a process it started,
it ends the process's whole tree (`descendants`, then `end_processes`).

`MemoryPeaks` samples the resident memory of a process tree: a campaign's workers and guests
together, which the kernel's accounting of one process (getrusage) cannot give.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time

import psutil

PR_SET_PDEATHSIG = 1
END_WAIT_S = 5.0  # how long a process sent SIGKILL may take to be gone
SAMPLE_INTERVAL_S = 0.25  # how often MemoryPeaks reads the tree's memory
MB = 1 << 20


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


def is_qemu(process: psutil.Process) -> bool:
    return process.name().startswith("qemu-system")


class MemoryPeaks:
    """The peak resident memory of this process's tree while in `with`, sampled from a thread
    every SAMPLE_INTERVAL_S with psutil, as sums at one instant:
    - zcfuzz: this process and the processes of the same program below it (campaign workers,
      forked from it);
    - qemu: the QEMU guests below it;
    - tree: everything below it and itself (also host executors, compilers of a kernel build).
    Pages processes share (a forked worker's, until it writes them) count once per process."""

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S):
        self.interval_s = interval_s
        self.root = psutil.Process()
        self.exe = self.root.exe()
        self.peaks = {"zcfuzz": 0, "qemu": 0, "tree": 0}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="memory-peaks", daemon=True)

    def sample(self) -> None:
        sums = dict.fromkeys(self.peaks, 0)
        for process in [self.root, *self.root.children(recursive=True)]:
            try:
                with process.oneshot():
                    rss = process.memory_info().rss
                    if is_qemu(process):
                        sums["qemu"] += rss
                    elif process.exe() == self.exe:
                        sums["zcfuzz"] += rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # gone since it was listed (or a zombie): it holds no memory
            sums["tree"] += rss
        for key, total in sums.items():
            self.peaks[key] = max(self.peaks[key], total)

    def _run(self) -> None:
        while not self.stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> "MemoryPeaks":
        self.sample()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.sample()

    def to_json(self) -> dict:
        """The peaks in MB, under the names the campaign's totals and `zcfuzz bench` give them."""
        return {f"{key}_peak_rss_mb": round(peak / MB, 1) for key, peak in self.peaks.items()}
