"""Every shipped revision builds and builds are cached.

Real kernel builds: minutes on a cold machine (ccache and the build cache make later runs fast).
That each patch builds on its own is `zcfuzz kernel check --rev REV` (about ten minutes per
revision here): run it when a series changes; it is not part of the default test run, which has
to fit CI's time on a cold machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kbuild

ROOT = Path(__file__).resolve().parent.parent
REVISIONS = ("base", "rfc-v1", "v2")


def zcfuzz(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zcfuzz.cli", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, cwd=ROOT, env=dict(os.environ))


@pytest.mark.parametrize("rev", REVISIONS)
def test_revision_builds_and_second_build_is_a_cache_hit(rev):
    first = zcfuzz("kernel", "build", "--rev", rev)
    assert first.returncode == 0, first.stderr
    image = Path(json.loads(zcfuzz("kernel", "info", "--rev", rev, "--json").stdout)["boot_image"])
    built = image.stat().st_mtime_ns
    second = zcfuzz("kernel", "build", "--rev", rev)
    assert second.returncode == 0, second.stderr
    assert "building" not in second.stderr  # nothing was rebuilt
    assert image.stat().st_mtime_ns == built  # nor copied again


@pytest.mark.parametrize("rev", REVISIONS)
def test_kernel_info_reads_the_abi_from_the_built_kernel(rev):
    done = zcfuzz("kernel", "info", "--rev", rev, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    for key in ("base_version", "series_sha256", "config_sha256", "nr_sendfile2", "boot_image", "vmlinux"):
        assert key in info
    assert Path(info["boot_image"]).stat().st_size > 1_000_000
    assert info["base_version"].startswith("6.12.")
    if rev == "base":
        assert info["nr_sendfile2"] is None
        assert "SPLICE_F_ZC" not in info["splice_flags"]
    else:
        assert info["nr_sendfile2"] == 467
        assert info["sendfile_flags"]["SENDFILE_ZC"] == 2
        assert info["splice_flags"]["SPLICE_F_ZC"] == 0x10
