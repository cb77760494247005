"""Patch coverage without a guest: the series' `+` lines as the tree numbers them after the whole
series, and what `zcfuzz cover` says of bad input (README, "Coverage")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from zcfuzz.vm.coverage import function_of, series_lines
from zcfuzz.vm.errors import UserError

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
    return subprocess.run([sys.executable, "-m", "zcfuzz.cli", *args], check=False, capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_cover_bad_input_is_one_line_exit_2(tmp_path):
    for args in (["cover", "--rev", "no-such-revision"], ["cover", "--rev", "v2", "--budget", "soon"],
                 ["cover", "--rev", "v2", "--json", str(tmp_path / "missing" / "c.json")]):
        done = zcfuzz(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr


# --- --cover FILE: more files built with KCOV ----------------------------------------------------


def scratch_tree(where: Path) -> Path:
    """Two kernel folders with their kbuild Makefiles and C files, as hard links of a pristine
    copy (as a slot's tree is), so that an edit that wrote into a linked file would show."""
    from zcfuzz.vm import kbuild

    pristine = where / "pristine"
    for folder, stem in (("fs", "splice"), ("net/ipv4", "tcp")):
        (pristine / folder).mkdir(parents=True)
        (pristine / folder / "Makefile").write_text(f"obj-y += {stem}.o\n")
        (pristine / folder / f"{stem}.c").write_text("int x;\n")
    tree = where / "tree"
    kbuild.link_tree(pristine, tree)
    return tree


def test_instrument_adds_the_cover_files_to_their_kbuild_makefile(tmp_path):
    from zcfuzz.vm import kbuild

    tree = scratch_tree(tmp_path)
    changed = kbuild.instrument(tree, {"fs/splice.c", "include/linux/skbuff.h"}, ("net/ipv4/tcp.c",))
    assert changed == {"fs/Makefile", "net/ipv4/Makefile"}
    tcp = (tree / "net/ipv4/Makefile").read_text()
    assert tcp.startswith("obj-y += tcp.o\n")
    assert "KCOV_INSTRUMENT_tcp.o := y" in tcp and "CFLAGS_tcp.o += -g1" in tcp
    assert "KCOV_INSTRUMENT_splice.o := y" in (tree / "fs/Makefile").read_text()
    for folder in ("fs", "net/ipv4"):  # the pristine tree is never written through a link
        assert (tmp_path / "pristine" / folder / "Makefile").read_text().count("\n") == 1
    with pytest.raises(UserError, match="no such file"):
        kbuild.instrument(tree, set(), ("net/ipv4/udp.c",))


def test_cover_files_are_checked_and_sorted_once():
    from zcfuzz.vm import kbuild

    assert kbuild.cover_files(["./net/ipv4/tcp.c", "fs/splice.c", "net/ipv4/tcp.c"]) == ("fs/splice.c",
                                                                                        "net/ipv4/tcp.c")
    assert kbuild.cover_files(None) == ()
    for bad in ("/etc/passwd.c", "../x.c", "net/ipv4/tcp.h", "tools/x.c"):
        with pytest.raises(UserError, match="--cover"):
            kbuild.cover_files([bad])


def test_the_cover_files_are_part_of_the_build_key(tmp_path):
    """A different set is a different build; no set keeps the key every cached build has."""
    from zcfuzz.vm import kbuild

    base = kbuild.BaseSource(tree=tmp_path, version="6.12.0", identity="debian-6.12.0")
    fragments = kbuild.config_fragments(None)
    plain = kbuild.as_revision("v2")
    key = kbuild.build_key(base, plain, fragments)
    assert key == kbuild.sha256_bytes(base.identity.encode(), plain.series_sha256.encode(),
                                      kbuild.config_sha256(fragments).encode())[:20]
    tcp = kbuild.build_key(base, kbuild.as_revision("v2", cover=["net/ipv4/tcp.c"]), fragments)
    both = kbuild.build_key(base, kbuild.as_revision("v2", cover=["net/ipv4/udp.c", "net/ipv4/tcp.c"]), fragments)
    again = kbuild.build_key(base, kbuild.as_revision("v2", cover=["net/ipv4/tcp.c", "./net/ipv4/udp.c"]), fragments)
    assert len({key, tcp, both}) == 3 and both == again


def test_a_slot_synced_with_cover_files_goes_back_without_them(tmp_path, monkeypatch):
    """The slot's tree follows the cover set: its Makefile gets the lines, and loses them when
    the next build of the revision has no --cover."""
    from zcfuzz.vm import kbuild

    monkeypatch.setenv("ZCFUZZ_CACHE", str(tmp_path / "cache"))
    pristine = scratch_tree(tmp_path).parent / "pristine"
    (pristine / "Kconfig").write_text('mainmenu "test"\n')
    (pristine / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 0\nEXTRAVERSION =\n")
    series = tmp_path / "rev"
    series.mkdir()
    (series / "series").write_text("")
    base = kbuild.user_source(str(pristine))
    plain = kbuild.resolve_revision(str(series))
    covered = kbuild.as_revision(plain, cover=["net/ipv4/tcp.c"])
    slot = kbuild.slot_for(base, plain)
    assert kbuild.slot_for(base, covered) == slot  # one slot: switching rebuilds only what changed
    kbuild.sync_slot(slot, base, covered)
    assert "KCOV_INSTRUMENT_tcp.o := y" in (slot.src / "net/ipv4/Makefile").read_text()
    kbuild.sync_slot(slot, base, plain)
    assert (slot.src / "net/ipv4/Makefile").read_text() == "obj-y += tcp.o\n"


def test_cover_and_fuzz_cover_bad_input_is_one_line_exit_2():
    for args in (["kernel", "build", "--rev", "v2", "--cover", "net/ipv4/no_such_file.c"],
                 ["kernel", "build", "--rev", "v2", "--cover", "../outside.c"],
                 ["cover", "--rev", "v2", "--cover", "net/ipv4/tcp.h"],
                 ["fuzz", "--target", "host", "--cover", "--budget", "10s"]):
        done = zcfuzz(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
        assert "--cover" in done.stderr, done.stderr
