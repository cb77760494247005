"""What zcfuzz starts it ends, tree and all."""

from __future__ import annotations

import subprocess
import time

import psutil
from zcfuzz.vm.lifetime import descendants, end_processes


def wait_for_children(process: subprocess.Popen, count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        family = descendants(process.pid)
        if len(family) >= count:
            return family
        time.sleep(0.05)
    raise AssertionError(f"{process.args} did not start {count} processes")


def test_grandchildren_outlive_their_parent_unless_the_tree_is_ended():
    parent = subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300 & wait"])
    family = wait_for_children(parent, 2)
    parent.kill()
    parent.wait()
    try:
        assert all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)  # left by the kill alone
    finally:
        alive = end_processes(family)
    assert alive == []


def test_ending_processes_already_gone_is_no_error():
    done = subprocess.Popen(["true"])
    process = psutil.Process(done.pid)
    done.wait()
    assert end_processes([process, process], timeout_s=1) == []

