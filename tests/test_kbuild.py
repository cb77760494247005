"""The kernel build pipeline: revisions, applying series, ABI values from headers, the cache."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from zcfuzz.vm import kbuild
from zcfuzz.vm.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_REVISIONS = sorted(p.parent.name for p in (ROOT / "kernel-patches").glob("*/series"))


def make_tree(where: Path) -> Path:
    """A tiny stand-in for a kernel tree: enough for version parsing and git apply."""
    tree = where / "linux"
    (tree / "fs").mkdir(parents=True)
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 0\nEXTRAVERSION =\n")
    (tree / "Kconfig").write_text("mainmenu \"test\"\n")
    (tree / "fs" / "splice.c").write_text("".join(f"line {i}\n" for i in range(40)))
    return tree


def make_revision(where: Path, patches: dict[str, str]) -> Path:
    folder = where / "rev"
    folder.mkdir()
    for name, text in patches.items():
        (folder / name).write_text(text)
    (folder / "series").write_text("".join(f"{name}\n" for name in patches))
    return folder


GOOD_PATCH = """\
diff --git a/fs/splice.c b/fs/splice.c
--- a/fs/splice.c
+++ b/fs/splice.c
@@ -1,3 +1,3 @@
 line 0
-line 1
+line one
 line 2
"""
STALE_PATCH = GOOD_PATCH.replace("-line 1\n", "-line 1 that is not there\n")
CORRUPT_PATCH = GOOD_PATCH.replace("@@ -1,3 +1,3 @@", "@@ -1,3 +1,9 @@")


def synced_good_revision(where: Path, tree: Path) -> tuple[kbuild.BaseSource, kbuild.Revision, kbuild.Slot]:
    """GOOD_PATCH as a revision on `tree`, synced into its slot."""
    base = kbuild.user_source(str(tree))
    revision = kbuild.resolve_revision(str(make_revision(where, {"0001-good.patch": GOOD_PATCH})))
    slot = kbuild.slot_for(base, revision)
    kbuild.sync_slot(slot, base, revision)
    return base, revision, slot


def zcfuzz(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, ZCFUZZ_CACHE=str(cache))
    return subprocess.run([sys.executable, "-m", "zcfuzz.cli", *args], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, cwd=ROOT)


@pytest.mark.parametrize(
    "second_patch, expected",
    [
        (STALE_PATCH, "0002-bad.patch does not apply: fs/splice.c"),
        (CORRUPT_PATCH, "0002-bad.patch does not apply: corrupt patch"),
        ("Subject: not a diff\n\nhello\n", "0002-bad.patch does not apply: not a patch"),
    ],
    ids=["stale-context", "corrupt-hunk", "no-diff"],
)
def test_patch_that_does_not_apply_is_one_line_exit_2_and_leaves_no_tree(tmp_path, second_patch, expected):
    tree = make_tree(tmp_path)
    before = (tree / "fs/splice.c").read_text()
    revision = make_revision(tmp_path, {"0001-good.patch": GOOD_PATCH, "0002-bad.patch": second_patch})
    cache = tmp_path / "cache"
    done = zcfuzz("kernel", "build", "--rev", str(revision), "--source", str(tree), cache=cache)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert expected in lines[0]
    assert "Traceback" not in done.stderr
    assert (tree / "fs/splice.c").read_text() == before
    work = cache / "work"
    leftovers = [p for p in work.rglob("*") if p.is_dir() or p.suffix == ".lock"] if work.exists() else []
    assert leftovers == []  # no staging tree, no source tree, no slot made for this series, nor its lock


def test_a_lock_unlinked_by_its_holder_is_not_held_by_two(tmp_path):
    """A waiter that wakes on a lock file its holder unlinked locks the path anew, so it cannot
    hold the old file's lock while a third process holds the new one."""
    path = tmp_path / "slot.lock"
    order = []

    def waiter():
        with kbuild.locked(path):
            order.append(("waiter", os.stat(path).st_ino))

    with kbuild.locked(path):
        thread = threading.Thread(target=waiter)
        thread.start()
        thread.join(0.3)  # the waiter is blocked in flock on the file about to go
        path.unlink()
    thread.join(10)
    assert order and order[0][0] == "waiter"
    assert path.exists() and os.stat(path).st_ino == order[0][1]  # it locked the file at the path


def test_unknown_revision_names_the_known_ones(tmp_path):
    done = zcfuzz("kernel", "build", "--rev", "no-such-rev", cache=tmp_path)
    assert done.returncode == 2
    assert "no revision 'no-such-rev'" in done.stderr and "base" in done.stderr


def test_series_listing_a_missing_patch_is_rejected(tmp_path):
    folder = tmp_path / "rev"
    folder.mkdir()
    (folder / "series").write_text("0001-missing.patch\n")
    with pytest.raises(UserError, match="0001-missing.patch"):
        kbuild.resolve_revision(str(folder))


def test_sync_rewrites_only_files_whose_content_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("ZCFUZZ_CACHE", str(tmp_path / "cache"))
    tree = make_tree(tmp_path)
    (tree / "fs" / "other.c").write_text("untouched\n")
    base, revision, slot = synced_good_revision(tmp_path, tree)
    assert "line one" in (slot.src / "fs/splice.c").read_text()
    other_inode = (slot.src / "fs/other.c").stat().st_ino
    assert other_inode == (tree / "fs/other.c").stat().st_ino  # hard-linked, never copied
    # Back to no patches: splice.c is restored as a fresh file, other.c is left alone.
    empty = kbuild.Revision(revision.name, revision.folder, ())
    kbuild.sync_slot(slot, base, empty)
    assert (slot.src / "fs/splice.c").read_text() == (tree / "fs/splice.c").read_text()
    assert (slot.src / "fs/splice.c").stat().st_ino != (tree / "fs/splice.c").stat().st_ino
    assert (slot.src / "fs/other.c").stat().st_ino == other_inode


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"asm/unistd_64.h": "#define __NR_sendfile2 467\n"}, {"nr_sendfile2": 467}),
        ({"linux/sendfile.h": "#define SENDFILE_DEFAULT\t0x1\n#define SENDFILE_ZC 0x2\n"
                              "#define SENDFILE_ALL (SENDFILE_DEFAULT | SENDFILE_ZC)\n"},
         {"sendfile_flags": {"SENDFILE_ALL": 3, "SENDFILE_DEFAULT": 1, "SENDFILE_ZC": 2}}),
        ({"linux/splice.h": "#define SPLICE_F_MOVE (0x01) /* move */\n#define SPLICE_F_ZC (0x10)\n"
                            "#define SPLICE_F_ALL (SPLICE_F_MOVE|SPLICE_F_ZC)\n"},
         {"splice_flags": {"SPLICE_F_ALL": 17, "SPLICE_F_MOVE": 1, "SPLICE_F_ZC": 16}}),
        ({"asm/unistd_64.h": "#define __NR_mseal 462\n"}, {"nr_sendfile2": None, "sendfile_flags": {}}),
        ({"bits/fcntl-linux.h": "# define SPLICE_F_MOVE\t\t1\t/* Move pages.  */\n"},
         {"splice_flags": {"SPLICE_F_MOVE": 1}}),
    ],
    ids=["syscall-number", "sendfile-flags", "splice-flags", "unpatched", "glibc-style"],
)
def test_abi_values_come_from_the_kernels_headers(tmp_path, headers, expected):
    for rel, text in headers.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    abi = kbuild.read_abi_from_headers(tmp_path)
    for key, value in expected.items():
        assert abi[key] == value


def test_exported_headers_win_over_internal_ones(tmp_path):
    uapi, internal = tmp_path / "uapi", tmp_path / "internal"
    for folder, value in ((uapi, "0x2"), (internal, "0x4")):
        (folder / "linux").mkdir(parents=True)
        (folder / "linux/sendfile.h").write_text(f"#define SENDFILE_ZC {value}\n")
    assert kbuild.read_abi_from_headers(uapi, internal)["sendfile_flags"] == {"SENDFILE_ZC": 2}


@pytest.mark.parametrize("rev", SHIPPED_REVISIONS)
def test_every_shipped_series_applies_in_order_on_the_debian_base(tmp_path, rev):
    base = kbuild.debian_source()
    revision = kbuild.resolve_revision(rev)
    staging = tmp_path / "tree"
    kbuild.link_tree(base.tree, staging)
    kbuild.apply_series(staging, revision.patches)
    for patch in revision.patches:
        for rel in kbuild.patched_files(patch):
            assert (staging / rel).exists() or "deleted file" in patch.read_text()


def test_a_missing_tool_the_build_runs_is_named(tmp_path):
    log = tmp_path / "build.log"
    log.write_text("\n$ make -C src O=build headers_install\n  INSTALL ./usr/include\n/bin/sh: 1: rsync: not found\n"
                   "make[2]: *** [src/Makefile:1358: headers_install] Error 127\n")
    assert kbuild.first_build_error(log) == "/bin/sh: 1: rsync: not found"


def git(tree: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t.invalid", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t.invalid")
    return subprocess.run(["git", "-C", str(tree), *args], check=True, capture_output=True, text=True,
                          env=env).stdout


def make_git_tree(where: Path) -> Path:
    """The stand-in tree as a git repository, tagged `base`, with two commits on top."""
    tree = make_tree(where)
    git(tree, "init", "-q")
    git(tree, "add", ".")
    git(tree, "commit", "-q", "-m", "base")
    git(tree, "tag", "base")
    for number in (1, 2):
        (tree / "fs" / "splice.c").write_text((tree / "fs" / "splice.c").read_text() + f"added {number}\n")
        git(tree, "commit", "-q", "-am", f"splice: add line {number}")
    return tree


def test_an_mbox_is_a_revision_of_its_patches_without_the_cover_letter(tmp_path, monkeypatch):
    monkeypatch.setenv("ZCFUZZ_CACHE", str(tmp_path / "cache"))
    tree = make_git_tree(tmp_path)
    mbox = tmp_path / "series.mbx"
    mbox.write_text(git(tree, "format-patch", "--stdout", "--cover-letter", "base..HEAD"))
    revision = kbuild.resolve_revision(str(mbox))
    assert revision.name == "series"
    assert [p.name for p in revision.patches] == ["0001-splice-add-line-1.patch", "0002-splice-add-line-2.patch"]
    base = kbuild.user_source(str(make_tree(tmp_path / "pristine")))
    slot = kbuild.slot_for(base, revision)
    kbuild.sync_slot(slot, base, revision)
    assert (slot.src / "fs/splice.c").read_text().endswith("added 1\nadded 2\n")
    assert kbuild.resolve_revision(str(mbox)).series_sha256 == revision.series_sha256  # by content


def test_a_commit_range_applies_to_the_tree_at_its_start(tmp_path, monkeypatch):
    monkeypatch.setenv("ZCFUZZ_CACHE", str(tmp_path / "cache"))
    tree = make_git_tree(tmp_path)
    revision = kbuild.resolve_revision("base..HEAD", str(tree))
    assert len(revision.patches) == 2
    assert revision.base_commit == git(tree, "rev-parse", "base").strip()
    base = kbuild.base_source(str(tree), revision)
    assert "added" not in (base.tree / "fs/splice.c").read_text()
    slot = kbuild.slot_for(base, revision)
    kbuild.sync_slot(slot, base, revision)
    assert (slot.src / "fs/splice.c").read_text() == (tree / "fs/splice.c").read_text()


@pytest.mark.parametrize("args, expected", [
    (("--rev", "base..HEAD"), "a commit range needs --source TREE"),
    (("--rev", "nosuchref..HEAD", "--source", "TREE"), "--rev nosuchref..HEAD in"),
    (("--rev", "MBOX"), "no patches in it"),
], ids=["range-without-source", "unknown-ref", "mbox-without-patches"])
def test_bad_mbox_or_range_is_one_line_exit_2(tmp_path, args, expected):
    tree = make_git_tree(tmp_path)
    (tmp_path / "empty.mbx").write_text("From 0 Mon Sep 17 00:00:00 2001\nSubject: hello\n\nno diff\n")
    args = [str(tree) if a == "TREE" else str(tmp_path / "empty.mbx") if a == "MBOX" else a for a in args]
    done = zcfuzz("kernel", "build", *args, cache=tmp_path / "cache")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and expected in done.stderr, done.stderr


def test_required_options_are_the_fragments_required_blocks():
    required = kbuild.required_options(kbuild.DEFAULT_CONFIG_FRAGMENT)
    assert required["CONFIG_SMP"] == "y" and required["CONFIG_VIRTIO_CONSOLE"] == "y"
    assert "CONFIG_KASAN" not in required  # wanted for fuzzing, not needed to run


def test_a_complete_config_missing_required_options_names_them(tmp_path):
    config = tmp_path / "config"
    config.write_text("#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_64BIT=y\n# CONFIG_SMP is not set\n")
    assert kbuild.is_full_config(config)
    unmet = kbuild.unmet_options(kbuild.required_options(kbuild.DEFAULT_CONFIG_FRAGMENT), config)
    assert "CONFIG_SMP=y" in unmet and "CONFIG_64BIT=y" not in unmet


def test_build_progress_counts_objects_of_the_expected_total():
    import io

    stream = io.StringIO()
    meter = kbuild.BuildProgress("zcfuzz: v2", expected=200, stream=stream, interval=0)
    for _ in range(50):
        meter.compiled()
    meter.done()
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("zcfuzz: v2: 50/200 objects, 25%") and "elapsed" in last and "left" in last
    assert len(stream.getvalue().splitlines()) == 51  # plain lines off a terminal


def test_a_fresh_machine_expects_the_shipped_configs_object_count(tmp_path, monkeypatch):
    """Nothing built here yet: the first build's progress line still has a total, the count
    a from-scratch build of the shipped config compiled where it was measured. Counts made here
    come first."""
    monkeypatch.setenv("ZCFUZZ_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    shipped = kbuild.config_sha256(kbuild.config_fragments(None))
    assert shipped in kbuild.shipped_object_counts(), \
        "zcfuzz.config changed: build it from scratch and put its object count in object-counts.json"
    assert kbuild.expected_objects(shipped) == kbuild.shipped_object_counts()[shipped] > 500
    assert kbuild.expected_objects("another config") is None
    kbuild.record_objects(shipped, 901)
    assert kbuild.expected_objects(shipped) == 901 and kbuild.expected_objects("another config") == 901


def test_the_touched_c_files_get_kcov_and_line_tables_in_the_slot_only(tmp_path, monkeypatch):
    monkeypatch.setenv("ZCFUZZ_CACHE", str(tmp_path / "cache"))
    tree = make_tree(tmp_path)
    (tree / "fs" / "Makefile").write_text("obj-y += splice.o\n")
    base, revision, slot = synced_good_revision(tmp_path, tree)
    makefile = (slot.src / "fs" / "Makefile").read_text()
    assert "KCOV_INSTRUMENT_splice.o := y" in makefile and "CFLAGS_splice.o += -g1" in makefile
    assert (tree / "fs" / "Makefile").read_text() == "obj-y += splice.o\n"  # the base is untouched
    kbuild.sync_slot(slot, base, kbuild.Revision(revision.name, revision.folder, ()))
    assert (slot.src / "fs" / "Makefile").read_text() == "obj-y += splice.o\n"  # put back without the series
