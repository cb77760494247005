"""Patch coverage without a guest: the series' `+` lines as the tree numbers them after the whole
series, and what `zcfuzz cover` says of bad input (README, "Coverage")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vm.coverage import function_of, series_lines

ROOT = Path(__file__).resolve().parent.parent

FIRST = """\
From 1 Mon Sep 17 00:00:00 2001
Subject: [PATCH 1/2] a: add helpers

---
diff --git a/fs/a.c b/fs/a.c
--- a/fs/a.c
+++ b/fs/a.c
@@ -10,3 +10,8 @@ int old(void)
 context ten
 context eleven
+static int helper(int x)
+{
+\treturn x + 1;
+}
+
 context twelve
"""

SECOND = """\
From 2 Mon Sep 17 00:00:00 2001
Subject: [PATCH 2/2] a: more

---
diff --git a/fs/a.c b/fs/a.c
--- a/fs/a.c
+++ b/fs/a.c
@@ -1,2 +1,4 @@
 line one
+#include <new.h>
+#include <other.h>
 line two
@@ -12,4 +14,4 @@ int old(void)
 static int helper(int x)
 {
-\treturn x + 1;
+\treturn x + 2;
 }
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_series_lines_follow_later_patches(tmp_path):
    """Patch 2 adds two lines above patch 1's and replaces one of them: what is left of patch 1
    moves down by two, the replaced line is patch 2's."""
    first, second = write(tmp_path, "0001.patch", FIRST), write(tmp_path, "0002.patch", SECOND)
    lines = {(s.line, s.patch): s for s in series_lines([first, second])}
    assert sorted(lines) == [(2, "0002.patch"), (3, "0002.patch"), (14, "0001.patch"), (15, "0001.patch"),
                             (16, "0002.patch"), (17, "0001.patch"), (18, "0001.patch")]
    assert lines[(16, "0002.patch")].text == "\treturn x + 2;"
    assert lines[(16, "0002.patch")].function == "helper"
    assert lines[(15, "0001.patch")].function == "helper"
    assert all(s.file == "fs/a.c" for s in lines.values())


def test_function_of_kernel_definitions():
    assert function_of("static ssize_t do_sendfile(int out_fd, int in_fd, loff_t *ppos,") == "do_sendfile"
    assert function_of("SYSCALL_DEFINE5(sendfile2, int, out_fd, int, in_fd,") == "sys_sendfile2"
    assert function_of("COMPAT_SYSCALL_DEFINE5(sendfile2, int, out_fd,") == "compat_sys_sendfile2"
    assert function_of("\tif (x)") is None
    assert function_of("int foo(void);") is None  # a declaration


def zcfuzz(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "zcfuzz.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_cover_bad_input_is_one_line_exit_2(tmp_path):
    for args in (["cover", "--rev", "no-such-revision"], ["cover", "--rev", "v2", "--budget", "soon"],
                 ["cover", "--rev", "v2", "--json", str(tmp_path / "missing" / "c.json")]):
        done = zcfuzz(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
