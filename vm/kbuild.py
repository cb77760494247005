"""Kernel builds: base source, a revision's series applied, configured, built and cached.

Layout under the cache directory (ZCFUZZ_CACHE, else $XDG_CACHE_HOME/zcfuzz):

    sources/linux-VERSION/     pristine base, unpacked once, never written again
    work/SLOT/src              the base hard-linked, with one revision's series applied
    work/SLOT/build            its out-of-tree build folder (incremental rebuilds)
    kernels/KEY/               vmlinux (and a bzImage for a kernel without PVH), config, info.json

A slot is one revision name on one base, so a one-file change to a series touches only that
file's mtime and rebuilds in seconds. Every slot keeps `src` and `build` side by side and ccache
runs with the slot as its base directory, so the same object compiled in two slots is one ccache
hit. KEY hashes the base, the series content and the config fragments: a second build of the
same inputs is a lookup.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from zcfuzz.vm import schema
from zcfuzz.vm.errors import UserError, debian_package_of, require

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PATCHES_DIR = PROJECT_ROOT / "kernel-patches"
DEFAULT_CONFIG_FRAGMENT = PATCHES_DIR / "config" / "zcfuzz.config"
SHIPPED_OBJECT_COUNTS = PATCHES_DIR / "config" / "object-counts.json"
DEBIAN_SOURCE_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
BUILD_TOOLS = ("make", "gcc", "flex", "bison", "bc", "cpio")
BUILD_HEADERS = ("/usr/include/gelf.h", "/usr/include/openssl/opensslv.h")  # objtool, the certificate tools

# Names the suite takes from the kernel it tests, never from constants of its own.
ABI_DEFINE = re.compile(r"^#\s*define\s+(__NR_sendfile2|SENDFILE_\w+|SPLICE_F_\w+)\s+(.+?)\s*(?:/\*.*)?$")


def cache_dir() -> Path:
    explicit = os.environ.get("ZCFUZZ_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "zcfuzz"


def sha256_bytes(*chunks: bytes) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(len(chunk).to_bytes(8, "little"))
        digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def locked(path: Path):
    """Serialise work on one slot or source between zcfuzz processes (CI, workers). The holder
    may unlink `path` (a slot that is gone needs no lock): a waiter that then gets the lock on
    the unlinked file sees it and locks the path anew."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(path, "a")
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    with handle:
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- revisions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Revision:
    """A folder of git format-patch files, applied in the order of its `series` file."""

    name: str
    folder: Path
    patches: tuple[Path, ...]
    slot: str = ""  # the build folder to reuse; revisions sharing one rebuild incrementally
    base_commit: str = ""  # for a commit range of a git tree: the commit the series applies to
    cover: tuple[str, ...] = ()  # C files instrumented beyond the series' own (--cover), tree-relative

    def with_patch(self, patch: Path, slot: str) -> "Revision":
        """This revision plus one more patch (a seeded bug, say), built in `slot`."""
        return Revision(f"{self.name}+{patch.stem}", self.folder, (*self.patches, patch.resolve()), slot,
                        self.base_commit, self.cover)

    @property
    def series_sha256(self) -> str:
        return sha256_bytes(*(p.name.encode() + b"\0" + p.read_bytes() for p in self.patches))


def resolve_revision(rev: str, source: str | None = None) -> Revision:
    """REV is a name under kernel-patches/, a path to a revision folder, an mbox file (what
    `git format-patch --stdout` and `b4 am` write) or a commit range A..B of the --source tree."""
    candidate = Path(rev)
    if candidate.is_file():
        return mbox_revision(candidate.stem, candidate.read_bytes(), f"--rev {rev}")
    if ".." in rev and not candidate.exists():
        return range_revision(rev, source)
    folder = candidate if candidate.is_dir() and (candidate / "series").exists() else PATCHES_DIR / rev
    if not (folder / "series").is_file():
        known = sorted(p.parent.name for p in PATCHES_DIR.glob("*/series"))
        raise UserError(
            f"no revision {rev!r}: give a folder with a 'series' file, an mbox of patches, a commit range "
            f"A..B with --source, or one of {', '.join(known)}"
        )
    patches = []
    for line in (folder / "series").read_text().splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        patch = folder / entry
        if not patch.is_file():
            raise UserError(f"{folder / 'series'} lists {entry}, which is not in {folder}")
        patches.append(patch)
    name = folder.name if folder.parent.resolve() == PATCHES_DIR.resolve() else str(folder.resolve())
    return Revision(name=name, folder=folder.resolve(), patches=tuple(patches))


# The From_ line that starts each message of an mbox: "From <anything> <asctime date>".
MBOX_FROM_LINE = re.compile(rb"^From \S+ +\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4}$", re.M)
PATCH_SUBJECT = re.compile(rb"^Subject: *(?:\[[^\]]*\] *)?(.*)$", re.M)


def mbox_revision(name: str, mbox: bytes, what: str, base_commit: str = "") -> Revision:
    """A revision from an mbox of patches: its messages that carry a diff, in order (a cover
    letter carries none), written once as a series folder under the cache keyed by content."""
    starts = [m.start() for m in MBOX_FROM_LINE.finditer(mbox)]
    messages = [mbox[a:b] for a, b in zip(starts, starts[1:] + [len(mbox)])]
    patches = [m for m in messages if b"\ndiff --git " in m]
    if not patches:
        raise UserError(f"{what}: no patches in it (expected an mbox as 'git format-patch --stdout' writes)")
    folder = cache_dir() / "mbox" / sha256_bytes(mbox)[:16]
    if not (folder / "series").is_file():
        staging = folder.with_name(folder.name + f".{os.getpid()}")
        staging.mkdir(parents=True, exist_ok=True)
        names = []
        for number, message in enumerate(patches, start=1):
            subject = PATCH_SUBJECT.search(message)
            slug = re.sub(r"[^A-Za-z0-9]+", "-", subject.group(1).decode(errors="replace") if subject else "")
            names.append(f"{number:04d}-{slug.strip('-')[:52] or 'patch'}.patch")
            (staging / names[-1]).write_bytes(message)
        (staging / "series").write_text("".join(f"{n}\n" for n in names))
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    patch_files = tuple(folder / line for line in (folder / "series").read_text().split())
    return Revision(name=name, folder=folder, patches=patch_files, base_commit=base_commit)


def git_output(tree: Path, *args: str, what: str) -> bytes:
    done = subprocess.run(["git", "-C", str(tree), *args], capture_output=True)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise UserError(f"{what}: {reason[-1] if reason else 'git failed'}")
    return done.stdout


def range_revision(rev: str, source: str | None) -> Revision:
    """Commits A..B of the --source git tree as a revision applied to the tree as it is at A."""
    if not source:
        raise UserError(f"--rev {rev}: a commit range needs --source TREE, the git tree it is in")
    tree = Path(source).resolve()
    start, end = rev.split("..", 1)
    what = f"--rev {rev} in {source}"
    base = git_output(tree, "rev-parse", "--verify", f"{start}^{{commit}}", what=what).decode().strip()
    git_output(tree, "rev-parse", "--verify", f"{end or 'HEAD'}^{{commit}}", what=what)
    mbox = git_output(tree, "format-patch", "--stdout", "--no-signature", rev, what=what)
    return mbox_revision(re.sub(r"[^A-Za-z0-9._-]+", "_", rev), mbox, what, base_commit=base)


def patched_files(patch: Path) -> set[str]:
    """Paths a patch creates, changes or deletes (both sides of a rename)."""
    files = set()
    for line in patch.read_text(errors="replace").splitlines():
        if line.startswith("diff --git "):
            parts = line.split()
            files.update(p[2:] for p in parts[2:4] if p[:2] in ("a/", "b/"))
    return files


# --- base source -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseSource:
    """A pristine kernel tree: Debian's linux-source-6.12 by default, or a user's tree."""

    tree: Path
    version: str
    identity: str  # what distinguishes this base in cache keys and slot names

    @property
    def slot_suffix(self) -> str:
        return "" if self.identity == f"debian-{self.version}" else "-" + sha256_bytes(self.identity.encode())[:10]


def kernel_version(tree: Path) -> str:
    fields = {}
    for line in (tree / "Makefile").read_text().splitlines()[:12]:
        m = re.match(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(\S*)", line)
        if m:
            fields[m.group(1)] = m.group(2)
    if "VERSION" not in fields:
        raise UserError(f"{tree} is not a kernel tree (no VERSION in its Makefile)")
    return f"{fields['VERSION']}.{fields.get('PATCHLEVEL', '0')}.{fields.get('SUBLEVEL', '0')}{fields.get('EXTRAVERSION', '')}"


def debian_source() -> BaseSource:
    """Unpack Debian's linux-source-6.12 once into the cache, installing it with apt if missing."""
    sources = cache_dir() / "sources"
    unpacked = sorted(sources.glob("linux-6.12.*"))
    if unpacked and (unpacked[-1] / ".zcfuzz-complete").exists():
        tree = unpacked[-1]
        version = kernel_version(tree)
        return BaseSource(tree=tree, version=version, identity=f"debian-{version}")
    if not DEBIAN_SOURCE_TARBALL.exists():
        install_debian_source()
    with locked(sources / ".unpack.lock"):
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=sources))
        try:
            subprocess.run(["tar", "-xJf", str(DEBIAN_SOURCE_TARBALL), "-C", str(staging)], check=True)
            inner = next(staging.iterdir())
            version = kernel_version(inner)
            tree = sources / f"linux-{version}"
            if not tree.exists():
                inner.rename(tree)
                (tree / ".zcfuzz-complete").touch()
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return BaseSource(tree=tree, version=version, identity=f"debian-{version}")


def install_debian_source() -> None:
    command = ["apt-get", "install", "-y", "-q", debian_package_of()[str(DEBIAN_SOURCE_TARBALL)]]
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise UserError(f"kernel source missing: run 'sudo {' '.join(command)}' or pass --source TREE")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not DEBIAN_SOURCE_TARBALL.exists():
        raise UserError(f"'{' '.join(command)}' failed; run 'apt-get update' and try again, or pass --source TREE")


def user_source(tree: str) -> BaseSource:
    path = Path(tree).resolve()
    if not (path / "Makefile").is_file() or not (path / "Kconfig").is_file():
        raise UserError(f"--source {tree}: not a kernel tree (no top-level Makefile and Kconfig)")
    if (path / ".config").exists() or (path / "include" / "config").exists():
        raise UserError(f"--source {tree}: the tree has an in-tree build; run 'make mrproper' in it first")
    head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    identity = f"{path}@{head.stdout.strip() or 'no-git'}"
    return BaseSource(tree=path, version=kernel_version(path), identity=identity)


def commit_source(tree: str, commit: str) -> BaseSource:
    """The --source tree as it is at `commit`, exported once into the cache (no build files)."""
    path = Path(tree).resolve()
    dest = cache_dir() / "sources" / f"git-{commit[:16]}"
    if not (dest / ".zcfuzz-complete").exists():
        with locked(dest.parent / ".unpack.lock"):
            if not (dest / ".zcfuzz-complete").exists():
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir(parents=True)
                archive = subprocess.Popen(["git", "-C", str(path), "archive", "--format=tar", commit],
                                           stdout=subprocess.PIPE)
                subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
                if archive.wait() != 0:
                    raise UserError(f"--source {tree}: 'git archive {commit}' failed")
                (dest / ".zcfuzz-complete").touch()
    return BaseSource(tree=dest, version=kernel_version(dest), identity=f"{path}@{commit}")


def base_source(source: str | None, revision: Revision | None = None) -> BaseSource:
    """What a revision applies to: the start of its commit range, the --source tree, or Debian's."""
    if revision is not None and revision.base_commit:
        return commit_source(source, revision.base_commit)
    return user_source(source) if source else debian_source()


# --- applying a series -----------------------------------------------------------------------


def apply_series(tree: Path, patches: tuple[Path, ...]) -> None:
    """Apply patches in order with git apply; the first failure is one line naming patch and file."""
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(tree.parent))
    for patch in patches:
        done = subprocess.run(
            ["git", "apply", "--whitespace=nowarn", str(patch)], cwd=tree, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise UserError(f"{patch} does not apply: {first_failing_file(done.stderr)}")


def first_failing_file(stderr: str) -> str:
    for pattern in (r"patch failed: (\S+?):(\d+)", r"error: (\S+): does not exist in index", r"error: (\S+): No such file",
                    r"error: (\S+): already exists", r"corrupt patch at line (\d+)", r"No valid patches in input"):
        m = re.search(pattern, stderr)
        if m:
            if "corrupt" in pattern:
                return f"corrupt patch at line {m.group(1)}"
            if "No valid" in pattern:
                return "not a patch (no diff in it)"
            return f"{m.group(1)}" + (f" (hunk at line {m.group(2)})" if m.lastindex and m.lastindex > 1 else "")
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "git apply failed"


def link_tree(source: Path, dest: Path) -> None:
    """A hard-linked copy: cheap, and safe because patching replaces files instead of writing them."""
    subprocess.run(["cp", "-al", str(source), str(dest)], check=True)


@dataclass(frozen=True)
class Slot:
    """One revision's source tree and build folder on one base."""

    root: Path

    @property
    def src(self) -> Path:
        return self.root / "src"

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def lock_file(self) -> Path:
        return self.root.parent / f"{self.root.name}.lock"

    def locked(self):
        """Held while anything builds in or rewrites this slot."""
        return locked(self.lock_file)

    @property
    def state_file(self) -> Path:
        return self.root / "applied.json"

    def state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}


def slot_for(base: BaseSource, revision: Revision) -> Slot:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", (revision.slot or revision.name).strip("/"))[-60:]
    return Slot(cache_dir() / "work" / f"{name}{base.slot_suffix}")


def sync_slot(slot: Slot, base: BaseSource, revision: Revision) -> None:
    """Bring the slot's tree to base + series, rewriting only the files whose content changes.

    The series is applied to a fresh hard-linked staging tree first, so a patch that does not
    apply leaves the slot as it was, and a slot made for it is removed again.
    """
    state = slot.state()
    series_sha = revision.series_sha256
    if (slot.src.is_dir() and state.get("series_sha256") == series_sha and state.get("base") == base.identity
            and state.get("cover", []) == list(revision.cover)):
        return
    new_slot = not slot.root.exists()
    slot.root.mkdir(parents=True, exist_ok=True)
    staging = slot.root / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    link_tree(base.tree, staging)
    try:
        apply_series(staging, revision.patches)
        touched = set().union(*(patched_files(p) for p in revision.patches)) if revision.patches else set()
        touched |= instrument(staging, touched, revision.cover)
        if not slot.src.is_dir() or state.get("base") != base.identity:
            shutil.rmtree(slot.src, ignore_errors=True)
            shutil.rmtree(slot.build, ignore_errors=True)
            staging.rename(slot.src)
        else:
            for rel in sorted(touched | set(state.get("touched", []))):
                replace_if_changed(staging / rel, slot.src / rel)
    except UserError:
        if new_slot:  # under the slot's lock (locked() lets its holder unlink it)
            shutil.rmtree(slot.root, ignore_errors=True)
            slot.lock_file.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    slot.state_file.write_text(json.dumps({"base": base.identity, "series_sha256": series_sha,
                                           "touched": sorted(touched), "cover": list(revision.cover)}))


INSTRUMENTED_BY = "# zcfuzz: KCOV and line information for the files the series touches"


def cover_files(files: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """--cover FILE...: C files of the kernel tree, relative to its top, sorted and each once."""
    out = set()
    for given in files or ():
        rel = given.strip().removeprefix("./")
        parts = Path(rel).parts
        if not rel.endswith(".c") or Path(rel).is_absolute() or ".." in parts or \
                parts[:1] in (("tools",), ("scripts",), ("Documentation",)):
            raise UserError(f"--cover {given}: give a kernel C file relative to the tree's top, such as "
                            "net/ipv4/tcp.c")
        out.add(str(Path(*parts)))
    return tuple(sorted(out))


def check_cover_files(base: BaseSource, revision: Revision) -> None:
    """Each --cover file is in the base tree or comes with the series: a one-line error before
    any build, not after applying the series."""
    added = set().union(*(patched_files(p) for p in revision.patches)) if revision.cover else set()
    for rel in revision.cover:
        if not (base.tree / rel).is_file() and rel not in added:
            raise UserError(f"--cover {rel}: no such file in the kernel tree {base.version}")


def instrument(tree: Path, touched: set[str], extra: tuple[str, ...] = ()) -> set[str]:
    """Turn on KCOV (CONFIG_KCOV_INSTRUMENT_ALL is off) and line tables (-g1; the kernel is built
    without debug info) for the objects of the C files the series touches and of `extra` (--cover),
    by appending to their directory's kbuild file in this slot's tree only, never in the series.
    Returns the kbuild files changed, so the next sync puts them back."""
    for rel in extra:
        if not (tree / rel).is_file():
            raise UserError(f"--cover {rel}: no such file in the kernel tree")
        if not any((tree / rel).parent.joinpath(k).is_file() for k in ("Kbuild", "Makefile")):
            raise UserError(f"--cover {rel}: its folder has no Kbuild or Makefile to build it")
    by_kbuild: dict[Path, list[str]] = {}
    for rel in sorted(set(touched) | set(extra)):
        source = tree / rel
        if not rel.endswith(".c") or not source.is_file() or rel.startswith(("tools/", "scripts/", "Documentation/")):
            continue
        kbuild_file = next((k for k in (source.parent / "Kbuild", source.parent / "Makefile") if k.is_file()), None)
        if kbuild_file is not None:
            by_kbuild.setdefault(kbuild_file, []).append(source.stem)
    for kbuild_file, stems in by_kbuild.items():
        lines = [INSTRUMENTED_BY] + [f"KCOV_INSTRUMENT_{stem}.o := y\nCFLAGS_{stem}.o += -g1" for stem in stems]
        text = kbuild_file.read_text() + "\n" + "\n".join(lines) + "\n"
        kbuild_file.unlink()  # hard-linked to the pristine base: write a new file, never into it
        kbuild_file.write_text(text)
    return {str(k.relative_to(tree)) for k in by_kbuild}


def replace_if_changed(wanted: Path, current: Path) -> None:
    """Make `current` a fresh copy of `wanted` (new inode, new mtime) only when they differ."""
    if not wanted.exists():
        if current.exists():
            current.unlink()
        return
    if current.exists() and current.read_bytes() == wanted.read_bytes():
        return
    current.parent.mkdir(parents=True, exist_ok=True)
    if current.exists():
        current.unlink()
    shutil.copyfile(wanted, current)
    shutil.copymode(wanted, current)


# --- config and build ------------------------------------------------------------------------


def config_fragments(extra: list[str] | None) -> list[Path]:
    fragments = [DEFAULT_CONFIG_FRAGMENT]
    for item in extra or []:
        path = Path(item)
        if not path.is_file():
            path = PATCHES_DIR / "config" / item
        if not path.is_file():
            raise UserError(f"config fragment {item!r} not found (a file, or a name under kernel-patches/config/)")
        fragments.append(path.resolve())
    return fragments


def config_sha256(fragments: list[Path]) -> str:
    return sha256_bytes(*(f.read_bytes() for f in fragments))


def check_build_tools() -> None:
    require("build tools", *BUILD_TOOLS, *BUILD_HEADERS)


def make_command(slot: Slot, *targets: str, jobs: int | None = None) -> list[str]:
    command = ["make", "-C", str(slot.src), f"O={slot.build}", f"-j{jobs or (os.cpu_count() or 1) + 1}"]
    if shutil.which("ccache"):
        command.append("CC=ccache gcc")
    return command + list(targets)


COMPILED_OBJECT = re.compile(rb"^\s+CC\s+\S+\.o$")


def object_counts_file() -> Path:
    return cache_dir() / "object-counts.json"


def object_counts() -> dict[str, int]:
    """Config hash to the objects its last full build compiled; empty before the first."""
    try:
        return json.loads(object_counts_file().read_text())
    except (OSError, ValueError):
        return {}


def shipped_object_counts() -> dict[str, int]:
    """What from-scratch builds of the shipped config compiled where it was measured."""
    try:
        return json.loads(SHIPPED_OBJECT_COUNTS.read_text())["counts"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def expected_objects(config_sha: str) -> int | None:
    """Objects the last full build of this config compiled here; else what it compiled where
    zcfuzz was measured (so a fresh machine's first build has a total too); else the count of
    any config built here; None before the first build of an unknown config."""
    counts = object_counts()
    return counts.get(config_sha) or shipped_object_counts().get(config_sha) or max(counts.values(), default=None)


def record_objects(config_sha: str, count: int) -> None:
    counts = object_counts()
    counts[config_sha] = count
    object_counts_file().write_text(json.dumps(counts))


class BuildProgress:
    """Objects compiled of the expected total, elapsed time and an estimate of what is left: one
    line rewritten in place on a terminal, a plain line a minute otherwise (CI logs)."""

    def __init__(self, label: str, expected: int | None, stream=sys.stderr, interval: float | None = None):
        self.label, self.expected, self.stream = label, expected, stream
        self.on_terminal = stream.isatty()
        self.interval = interval if interval is not None else (0.5 if self.on_terminal else 60.0)
        self.started = self.shown_at = time.monotonic()
        self.built = 0

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        text = f"{self.label}: {self.built}"
        if self.expected:
            text += f"/{self.expected} objects, {min(100, 100 * self.built // self.expected)}%"
        else:
            text += " objects"
        text += f", {elapsed // 60:.0f}:{elapsed % 60:02.0f} elapsed"
        if self.expected and self.built:
            left = max(0.0, elapsed * (self.expected - self.built) / self.built)
            text += f", about {left // 60:.0f}:{left % 60:02.0f} left"
        return text

    def compiled(self) -> None:
        self.built += 1
        now = time.monotonic()
        if now - self.shown_at >= self.interval:
            self.shown_at = now
            self.show()

    def show(self) -> None:
        if self.on_terminal:
            self.stream.write("\r\033[K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.built:
            self.show()
            if self.on_terminal:
                self.stream.write("\n")
                self.stream.flush()


def run_make(slot: Slot, *targets: str, jobs: int | None = None, log: Path | None = None,
             progress: BuildProgress | None = None) -> None:
    """Run make in the slot, its output appended to the slot's log; `progress` counts objects.

    ccache runs in depend mode: it hashes the headers the compiler names (kbuild's -MMD) instead
    of running the preprocessor first, which cost a miss a third more CPU (mm, kernel/sched and
    net/ipv4 from nothing: 166 CPU s against 124 without ccache; 120 in depend mode)."""
    env = dict(os.environ, CCACHE_BASEDIR=str(slot.root), CCACHE_DEPEND="1", KBUILD_BUILD_USER="zcfuzz",
               KBUILD_BUILD_HOST="zcfuzz", KBUILD_BUILD_TIMESTAMP="zcfuzz")
    log = log or slot.root / "build.log"
    command = make_command(slot, *targets, jobs=jobs)
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(command)}\n".encode())
        out.flush()
        make = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for line in make.stdout:
            out.write(line)
            if progress and COMPILED_OBJECT.match(line):
                progress.compiled()
        returncode = make.wait()
    if progress:
        progress.done()
    if returncode != 0:
        raise UserError(f"kernel build failed ({first_build_error(log)}); full log: {log}")


def first_build_error(log: Path) -> str:
    """The line of the last make's output that says what went wrong: a compiler error, a link
    error, or a tool the build ran that is not installed."""
    text = log.read_text(errors="replace")
    tail = text[text.rfind("\n$ make") :]
    for line in tail.splitlines():
        if (": error:" in line or "undefined reference" in line or line.endswith(": not found")
                or "Error " in line and "make" not in line):
            return line.strip()[:200]
    return "see the log"


FULL_CONFIG_HEADER = "# Automatically generated file; DO NOT EDIT."
CONFIG_LINE = re.compile(r"^(CONFIG_\w+)=(.*)$|^# (CONFIG_\w+) is not set$")


def is_full_config(path: Path) -> bool:
    """A complete .config (what `make *config` writes) rather than a fragment."""
    with open(path, errors="replace") as handle:
        return FULL_CONFIG_HEADER in "".join(handle.readline() for _ in range(3))


def config_values(text: str) -> dict[str, str]:
    """CONFIG_ name to value ("n" for `# CONFIG_X is not set`); the last assignment wins."""
    values = {}
    for line in text.splitlines():
        m = CONFIG_LINE.match(line.strip())
        if m:
            values[m.group(1) or m.group(3)] = m.group(2) if m.group(1) else "n"
    return values


def required_options(fragment: Path) -> dict[str, str]:
    """The options of a fragment's "# required" blocks: the option lines after such a comment,
    up to a blank line or the next comment."""
    required, in_block, seen_option = {}, False, False
    for line in fragment.read_text().splitlines():
        stripped = line.strip()
        is_option = bool(CONFIG_LINE.match(stripped))
        if stripped.startswith("# required"):
            in_block, seen_option = True, False
        elif not stripped or (seen_option and not is_option):
            in_block = False
        elif in_block and is_option:
            required.update(config_values(stripped))
            seen_option = True
    return required


def unmet_options(wanted: dict[str, str], config: Path) -> list[str]:
    """`CONFIG_X=want` for each wanted value the final .config does not have."""
    have = config_values(config.read_text())
    return [f"{name}={value}" for name, value in wanted.items() if have.get(name, "n") != value]


def configure(slot: Slot, fragments: list[Path]) -> None:
    """Our fragment on top of allnoconfig (every option it does not name is off), then the
    user's fragments; or a user's complete .config, checked for the options zcfuzz needs.
    An option that Kconfig could not set as asked is a one-line error naming it."""
    wanted = config_sha256(fragments)
    if slot.state().get("config_sha256") == wanted and (slot.build / ".config").exists():
        return
    slot.build.mkdir(parents=True, exist_ok=True)
    config = slot.build / ".config"
    full = [f for f in fragments if is_full_config(f)]
    if full:
        if len(full) > 1:
            raise UserError(f"--config: give one complete .config, not {len(full)}")
        shutil.copyfile(full[0], config)
        run_make(slot, "olddefconfig")
        unmet = unmet_options(required_options(DEFAULT_CONFIG_FRAGMENT), config)
        if unmet:
            raise UserError(f"--config {full[0]}: it lacks what zcfuzz needs ({' '.join(unmet)}); "
                            "set them and try again")
    else:
        merged = slot.build / "zcfuzz-allconfig"
        merged_text = "\n".join(f.read_text() for f in fragments)
        merged.write_text(merged_text)
        run_make(slot, f"KCONFIG_ALLCONFIG={merged}", "allnoconfig")
        # Ours in full; with fragments of the user's, theirs in full and what zcfuzz needs of ours
        # (an option of theirs may switch off what ours depend on).
        users = [f for f in fragments if f != DEFAULT_CONFIG_FRAGMENT]
        if users:
            wanted_values = {**required_options(DEFAULT_CONFIG_FRAGMENT),
                             **config_values("\n".join(f.read_text() for f in users))}
        else:
            wanted_values = config_values(merged_text)
        unmet = unmet_options(wanted_values, config)
        if unmet:
            raise UserError(f"the kernel config could not set {' '.join(unmet)} (a dependency is off or "
                            f"missing in this tree); fix the fragments and try again")
    state = slot.state()
    state["config_sha256"] = wanted
    slot.state_file.write_text(json.dumps(state))


def read_abi_from_headers(*include_dirs: Path) -> dict:
    """The sendfile2 number and the SENDFILE_*/SPLICE_F_* values, from a kernel's headers.

    Reads the exported uapi headers first and the kernel-internal ones after, so a revision that
    exports nothing (the posted RFC kept its flags internal) still has its values read from its
    own tree. Composite values such as `(A | B)` are resolved.
    """
    raw: dict[str, str] = {}
    for include in include_dirs:
        for rel in ("asm/unistd_64.h", "asm-generic/unistd.h", "linux/sendfile.h", "linux/splice.h", "linux/fcntl.h",
                    "bits/fcntl-linux.h"):
            path = include / rel
            if not path.is_file():
                continue
            for line in path.read_text(errors="replace").splitlines():
                m = ABI_DEFINE.match(line.strip())
                if m and m.group(1) not in raw:
                    raw[m.group(1)] = m.group(2)
    values = {name: evaluate_define(expr, raw) for name, expr in raw.items()}
    return {
        "nr_sendfile2": values.get("__NR_sendfile2"),
        "sendfile_flags": {k: v for k, v in sorted(values.items()) if k.startswith("SENDFILE_") and v is not None},
        "splice_flags": {k: v for k, v in sorted(values.items()) if k.startswith("SPLICE_F_") and v is not None},
    }


def evaluate_define(expr: str, raw: dict[str, str], depth: int = 0) -> int | None:
    """Evaluate a define built from integers, other defines, |, << and parentheses."""
    if depth > 8:
        return None
    tokens = re.findall(r"0[xX][0-9a-fA-F]+|\d+[uUlL]*|[A-Za-z_]\w*|<<|[|()]|\S", expr)
    out = []
    for token in tokens:
        if token in ("|", "(", ")", "<<"):
            out.append(token)
        elif re.fullmatch(r"0[xX][0-9a-fA-F]+|\d+[uUlL]*", token):
            out.append(str(int(token.rstrip("uUlL"), 0)))
        elif token in raw:
            value = evaluate_define(raw[token], raw, depth + 1)
            if value is None:
                return None
            out.append(str(value))
        else:
            return None
    try:
        return int(eval(" ".join(out), {"__builtins__": {}}))  # only digits and | << ( ) remain
    except (SyntaxError, ValueError, TypeError):
        return None


# The info.json `publish` writes beside a built kernel: what it was built from and the ABI its
# headers define. Programs take their sendfile2 number from it, the oracles its flag values.
KERNEL_INFO_SCHEMA: dict = {
    "$schema": schema.DIALECT,
    "title": "zcfuzz kernel info",
    "type": "object",
    "required": ["revision", "base_version", "nr_sendfile2", "sendfile_flags", "splice_flags"],
    "properties": {
        **schema.typed(revision="string", base_version="string", base="string", series_sha256="string",
                       config_sha256="string", build_seconds="number"),
        "nr_sendfile2": {"type": ["integer", "null"], "minimum": 0},
        "patches": {"type": "array", "items": {"type": "string"}},
        "cover": {"type": "array", "items": {"type": "string"}},
        "sendfile_flags": {"type": "object", "propertyNames": {"pattern": "^SENDFILE_"},
                           "additionalProperties": {"type": "integer"}},
        "splice_flags": {"type": "object", "propertyNames": {"pattern": "^SPLICE_F_"},
                         "additionalProperties": {"type": "integer"}},
    },
}


@dataclass(frozen=True)
class KernelBuild:
    """What `zcfuzz kernel build` produced for one set of inputs."""

    key: str
    folder: Path

    @property
    def info(self) -> dict:
        return schema.read(self.folder / "info.json", "kernel info", KERNEL_INFO_SCHEMA)


def build_key(base: BaseSource, revision: Revision, fragments: list[Path]) -> str:
    """The cache key: base, series, config and, only when given, the --cover files (so a build
    without them keeps the key it always had)."""
    chunks = [base.identity.encode(), revision.series_sha256.encode(), config_sha256(fragments).encode()]
    if revision.cover:
        chunks.append(("cover:" + "\0".join(revision.cover)).encode())
    return sha256_bytes(*chunks)[:20]


def as_revision(rev: "str | Revision", source: str | None = None, cover: list[str] | tuple[str, ...] | None = None
                ) -> Revision:
    revision = rev if isinstance(rev, Revision) else resolve_revision(rev, source)
    return replace(revision, cover=cover_files(cover)) if cover else revision


def cached_build(rev: "str | Revision", source: str | None = None,
                 config: list[str] | None = None, cover: list[str] | None = None) -> KernelBuild | None:
    revision = as_revision(rev, source, cover)
    base = base_source(source, revision)
    folder = cache_dir() / "kernels" / build_key(base, revision, config_fragments(config))
    return KernelBuild(folder.name, folder) if (folder / "info.json").exists() else None


def build_kernel(rev: "str | Revision", source: str | None = None, config: list[str] | None = None,
                 jobs: int | None = None, progress=print, cover: list[str] | None = None) -> KernelBuild:
    """Build (or find in the cache) the kernel for a revision on a base with config fragments,
    with KCOV on the series' C files and on `cover`'s."""
    revision = as_revision(rev, source, cover)
    base = base_source(source, revision)
    check_cover_files(base, revision)
    fragments = config_fragments(config)
    key = build_key(base, revision, fragments)
    folder = cache_dir() / "kernels" / key
    if (folder / "info.json").exists():
        return KernelBuild(key, folder)
    check_build_tools()
    slot = slot_for(base, revision)
    with slot.locked():
        if (folder / "info.json").exists():
            return KernelBuild(key, folder)
        started = time.monotonic()
        sync_slot(slot, base, revision)
        progress(f"zcfuzz: building {revision.name} on linux {base.version} ({len(revision.patches)} patches)")
        configure(slot, fragments)
        config_sha = config_sha256(fragments)
        from_scratch = not (slot.build / "vmlinux").exists()
        meter = BuildProgress(f"zcfuzz: {revision.name}", expected_objects(config_sha) if from_scratch else None)
        run_make(slot, boot_target(slot.build / ".config"), jobs=jobs, progress=meter)
        elapsed = time.monotonic() - started
        if from_scratch:
            record_objects(config_sha, meter.built)
        publish(slot, folder, base, revision, fragments, elapsed)
    return KernelBuild(key, folder)


def abi_include_dirs(slot: Slot) -> tuple[Path, ...]:
    """Where a built tree's ABI values are: its uapi headers (the syscall numbers generated by
    the build), then the kernel-internal ones. They are read in place: `headers_install` would
    add 10 s of a cold build for the same values."""
    return (slot.build / "arch/x86/include/generated/uapi", slot.src / "arch/x86/include/uapi",
            slot.src / "include/uapi", slot.src / "include")


def boot_target(config: Path) -> str:
    """What QEMU boots: a PVH kernel starts from vmlinux as it is, so its build stops there
    (the bzImage's compression and setup code cost a cold build about 6 s); any other needs
    the bzImage."""
    return "vmlinux" if config_values(config.read_text()).get("CONFIG_PVH") == "y" else "bzImage"


def publish(slot: Slot, folder: Path, base: BaseSource, revision: Revision, fragments: list[Path],
            build_seconds: float) -> None:
    """Copy the artefacts out of the slot and write info.json last, so a half copy is never a hit."""
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if boot_target(slot.build / ".config") == "bzImage":
        shutil.copyfile(slot.build / "arch/x86/boot/bzImage", staging / "bzImage")
    shutil.copyfile(slot.build / "vmlinux", staging / "vmlinux")
    shutil.copyfile(slot.build / ".config", staging / "config")
    abi = read_abi_from_headers(*abi_include_dirs(slot))
    info = {
        "revision": revision.name,
        "base_version": base.version,
        "base": base.identity,
        "series_sha256": revision.series_sha256,
        "config_sha256": config_sha256(fragments),
        "patches": [p.name for p in revision.patches],
        **({"cover": list(revision.cover)} if revision.cover else {}),
        **abi,
        "build_seconds": round(build_seconds, 1),
    }
    (staging / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def kernel_info(build: KernelBuild) -> dict:
    """info.json plus where the artefacts are on this machine."""
    info = build.info
    image = boot_target(build.folder / "config")
    info.update(vmlinux=str(build.folder / "vmlinux"), key=build.key, boot_image=str(build.folder / image))
    return info


def check_each_patch(rev: str, source: str | None = None, config: list[str] | None = None,
                     progress=print) -> list[tuple[str, list[str]]]:
    """Prove each patch builds on its own: apply the series one patch at a time in the revision's
    slot and compile the objects of the C files that patch touches (after `prepare`, which also
    regenerates the syscall tables). It works in a slot of its own, so the revision's build
    folder keeps its state and the next build of the revision stays incremental."""
    revision = resolve_revision(rev, source)
    revision = Revision(revision.name, revision.folder, revision.patches, f"{revision.name}-check",
                        revision.base_commit)
    base = base_source(source, revision)
    fragments = config_fragments(config)
    check_build_tools()
    slot = slot_for(base, revision)
    checked = []
    with slot.locked():
        for count, patch in enumerate(revision.patches, start=1):
            sync_slot(slot, base, Revision(revision.name, revision.folder, revision.patches[:count], revision.slot,
                                           revision.base_commit))
            configure(slot, fragments)
            objects = sorted(f[:-2] + ".o" for f in patched_files(patch)
                             if f.endswith(".c") and (slot.src / f).exists() and "/tools/" not in f"/{f}")
            progress(f"zcfuzz: {patch.name}: prepare {' '.join(objects)}")
            run_make(slot, "prepare", *objects)
            checked.append((patch.name, objects))
    return checked
