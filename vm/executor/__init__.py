"""The guest executor (zcexec.c): where its binary is, built on demand with its Makefile."""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path

from zcfuzz.vm.errors import UserError, require

SOURCE_DIR = Path(__file__).resolve().parent
# What the executor prints once it reads requests: defined once, in its source.
READY_LINE = re.search(r'#define READY_LINE "(.*)\\n"', (SOURCE_DIR / "zcexec.c").read_text()).group(1)


@functools.cache
def executor_binary() -> Path:
    """The static `zcexec`, rebuilt by make when zcexec.c or the Makefile is newer than it."""
    require("tools to build the executor", "gcc", "make")
    build = subprocess.run(["make", "-s", "-C", str(SOURCE_DIR), "zcexec"], capture_output=True, text=True)
    if build.returncode != 0:
        errors = [line for line in build.stderr.splitlines() if "error" in line] or build.stderr.splitlines()
        hint = " (static linking needs libc6-dev)" if "cannot find -lc" in build.stderr else ""
        raise UserError(f"building the executor failed: {errors[0] if errors else 'make failed'}{hint}")
    return SOURCE_DIR / "zcexec"
