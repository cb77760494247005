"""What zcfuzz starts it ends, tree and all; and the memory of a tree of processes together."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import psutil
import pytest
from zcfuzz.vm.lifetime import MB, MemoryPeaks, descendants, end_processes


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


HOLD = "import sys, time; held = b'x' * ({mb} << 20); print('ready', flush=True); time.sleep(60)"


def holding(command: list[str], mb: int) -> subprocess.Popen:
    """A Python process that holds `mb` MB of written (resident) memory once it says ready."""
    process = subprocess.Popen([*command, "-c", HOLD.format(mb=mb)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    return process


def test_memory_peaks_add_up_the_processes_of_the_tree(tmp_path):
    qemu = tmp_path / "qemu-system-x86_64"  # what a guest's process is called
    qemu.symlink_to(os.path.realpath(sys.executable))
    with MemoryPeaks(interval_s=0.05) as memory:
        workers = [holding([sys.executable], 64) for _ in range(2)]
        guest = holding([str(qemu)], 96)
        time.sleep(0.3)
        for process in (*workers, guest):
            process.kill()
            process.wait()
    peaks = memory.to_json()
    own = psutil.Process().memory_info().rss / MB
    assert peaks["zcfuzz_peak_rss_mb"] >= own + 2 * 64 - 8  # this process and both workers at once
    assert 96 <= peaks["qemu_peak_rss_mb"] < 96 + own
    assert peaks["tree_peak_rss_mb"] >= peaks["zcfuzz_peak_rss_mb"] + peaks["qemu_peak_rss_mb"] - 8


@pytest.mark.host
def test_a_campaigns_totals_have_the_peak_memory_of_its_workers(tmp_path):
    from zcfuzz.fuzz.campaign import CampaignConfig, run_campaign

    config = CampaignConfig(target="host", budget_s=3, workers=2, seed=1, findings=tmp_path, spec_programs=False)
    totals = run_campaign(config, out=io.StringIO())
    own = psutil.Process().memory_info().rss / MB
    assert totals["zcfuzz_peak_rss_mb"] > own  # the campaign's process and its workers together
    assert totals["qemu_peak_rss_mb"] == 0 and totals["tree_peak_rss_mb"] >= totals["zcfuzz_peak_rss_mb"]
