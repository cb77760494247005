"""Patch coverage: KCOV PCs of a guest to the lines a series adds (README, "Coverage").

Three pieces, each usable alone:

- `series_lines(patches)`: the `+` lines of a series, numbered as they are in the tree after
  the whole series (a later patch that moves or removes an earlier one's line is followed), each
  with its patch, text and enclosing function.
- `KernelLines(vmlinux)`: what the built kernel has of them. Its DWARF line table (only the
  objects the series touches have one: they are built with `-g1`, the rest without debug info)
  says which source lines have machine code; its disassembly says where each KCOV site
  (`call __sanitizer_cov_trace_pc`) is and which instructions run whenever that site runs (the
  straight-line code around it up to the next branch, jump target or site).
- `SeriesCoverage`: both together. A series line is *reachable* when the built kernel has
  machine code for it inside the straight-line code of a KCOV site; it is *reached* when a
  program hit one of those sites. Every other `+` line is put down with the reason it cannot be
  reached: the file is not built for this architecture and config, the line has no machine code
  (a declaration, comment, brace or preprocessor line, or code the compiler removed or merged
  into another line), or its code is not instrumented (a header's inline function used only by
  objects built without KCOV).
"""

from __future__ import annotations

import bisect
import functools
import html
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from zcfuzz.vm.errors import UserError, require

# --- the series' lines ---------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesLine:
    file: str  # path in the tree, as the patch names it
    line: int  # number in the tree after the whole series
    patch: str  # the patch that added it (file name)
    text: str
    function: str  # the function (or other definition) it is in, "" when at file scope

    @property
    def key(self) -> tuple[str, int]:
        return (self.file, self.line)


HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)$")
# A function definition's first line, as kernel style writes it: at column 0, a name then "(".
DEFINITION = re.compile(r"^(?:[A-Za-z_][\w\s\*]*?\b)?([A-Za-z_]\w*)\s*\((?!\*)")
SYSCALL_DEFINITION = re.compile(r"^(?:COMPAT_)?SYSCALL_DEFINE\d\((\w+)")


def function_of(line: str) -> str | None:
    """The name a line at column 0 defines, if it starts a function definition."""
    if not line or line[0] in " \t#{}/*" or line.rstrip().endswith(";"):
        return None
    syscall = SYSCALL_DEFINITION.match(line)
    if syscall:
        return ("compat_sys_" if line.startswith("COMPAT") else "sys_") + syscall.group(1)
    match = DEFINITION.match(line)
    if match and match.group(1) not in ("if", "for", "while", "switch", "return", "sizeof"):
        return match.group(1)
    return None


@dataclass
class _Hunk:
    old_start: int
    old_count: int
    new_start: int
    lines: list[str]
    context: str


def _file_diffs(patch: Path) -> list[tuple[str, list[_Hunk]]]:
    """(new path, hunks) of each file a patch changes; a deleted file has path "/dev/null"."""
    diffs: list[tuple[str, list[_Hunk]]] = []
    hunk: _Hunk | None = None
    remaining = [0, 0]
    for raw in patch.read_text(errors="replace").splitlines():
        if hunk is not None and (remaining[0] > 0 or remaining[1] > 0):
            tag = raw[:1] or " "
            hunk.lines.append(tag + raw[1:])
            if tag in " -":
                remaining[0] -= 1
            if tag in " +":
                remaining[1] -= 1
            continue
        if raw.startswith("+++ "):
            name = raw[4:].split("\t")[0]
            diffs.append((name.removeprefix("b/"), []))
            continue
        match = HUNK.match(raw)
        if match and diffs:
            old_count = int(match.group(2) or "1")
            new_count = int(match.group(4) or "1")
            hunk = _Hunk(int(match.group(1)), old_count, int(match.group(3)), [], match.group(5))
            diffs[-1][1].append(hunk)
            remaining = [old_count, new_count]
    return diffs


def series_lines(patches: list[Path] | tuple[Path, ...]) -> list[SeriesLine]:
    """Every `+` line of the series still in the tree after its last patch, numbered there."""
    # file -> {line number in the current tree: SeriesLine}
    current: dict[str, dict[int, SeriesLine]] = {}
    for patch in patches:
        for path, hunks in _file_diffs(patch):
            if path == "/dev/null":
                continue
            before = current.get(path, {})
            after: dict[int, SeriesLine] = {}
            shift = 0  # new - old for lines between hunks
            hunk_iter = iter(hunks)
            pending = sorted(before.items())
            p = 0
            for hunk in hunk_iter:
                # tracked lines before this hunk move by the shift so far
                while p < len(pending) and pending[p][0] < hunk.old_start:
                    number, line = pending[p]
                    after[number + shift] = _moved(line, number + shift)
                    p += 1
                old, new = hunk.old_start, hunk.new_start
                function = hunk.context and function_of(hunk.context) or ""
                for text in hunk.lines:
                    tag, body = text[0], text[1:]
                    if tag == " ":
                        if p < len(pending) and pending[p][0] == old:
                            after[new] = _moved(pending[p][1], new)
                            p += 1
                        function = function_of(body) or function
                        old += 1
                        new += 1
                    elif tag == "-":
                        if p < len(pending) and pending[p][0] == old:
                            p += 1  # an earlier patch's line, removed
                        old += 1
                    elif tag == "+":
                        function = function_of(body) or function
                        after[new] = SeriesLine(path, new, patch.name, body, function)
                        new += 1
                shift = new - old
            while p < len(pending):
                number, line = pending[p]
                after[number + shift] = _moved(line, number + shift)
                p += 1
            current[path] = after
    return sorted((line for lines in current.values() for line in lines.values()), key=lambda s: s.key)


def _moved(line: SeriesLine, number: int) -> SeriesLine:
    return line if line.line == number else SeriesLine(line.file, number, line.patch, line.text, line.function)


# --- the built kernel ------------------------------------------------------------------------

LINE_ROW = re.compile(r"^(\S+)\s+(\d+|-)\s+(0x[0-9a-f]+)")
INSTRUCTION = re.compile(r"^([0-9a-f]+):\s+(\S+)(?:\s+(.*))?$")
FUNCTION_START = re.compile(r"^([0-9a-f]+) <([^>]+)>:$")
COVER_CALL = "<__sanitizer_cov_trace_pc>"
BRANCH_TARGET = re.compile(r"\b([0-9a-f]{16}) <")


def _run(command: list[str], what: str) -> str:
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise UserError(f"{what} failed: {(done.stderr.strip().splitlines() or ['no output'])[0]}")
    return done.stdout


def _ends_block(mnemonic: str) -> bool:
    return mnemonic.startswith(("j", "ret", "ud2", "int3", "hlt")) or mnemonic in ("iret", "iretq", "sysret")


class KernelLines:
    """Source lines with machine code, KCOV sites and the lines each site's run implies."""

    def __init__(self, vmlinux: Path):
        require("binutils (objdump) to read the kernel's line table", "objdump")
        if not vmlinux.is_file():
            raise UserError(f"no kernel image {vmlinux}")
        self.vmlinux = vmlinux
        self.rows: list[tuple[int, str | None, int]] = []  # (address, file, line); file None: end
        self._read_line_table()
        self.row_addresses = [r[0] for r in self.rows]
        self.compiled: set[tuple[str, int]] = {(f, n) for _, f, n in self.rows if f is not None}
        self.files = {f for f, _ in self.compiled}
        # return address KCOV records -> lines that run whenever that site runs
        self.sites: dict[int, frozenset[tuple[str, int]]] = {}
        self.site_function: dict[int, str] = {}
        self._read_sites()
        self.instrumented: set[tuple[str, int]] = set().union(*self.sites.values()) if self.sites else set()

    def _read_line_table(self) -> None:
        text = _run(["objdump", "--dwarf=decodedline", str(self.vmlinux)], "objdump --dwarf=decodedline")
        headers = [line[:-1] for line in text.splitlines() if line.endswith(":") and "/" in line]
        by_base = {Path(h).name: h for h in headers}
        current = ""
        for line in text.splitlines():
            if line.endswith(":") and not line.startswith(("Contents", "File name")) and " " not in line:
                name = line[:-1]
                current = normalise(by_base.get(name, name) if "/" not in name else name)
                continue
            match = LINE_ROW.match(line)
            if not match or not current:
                continue
            address = int(match.group(3), 16)
            if match.group(2) == "-":
                self.rows.append((address, None, 0))
            else:
                self.rows.append((address, current, int(match.group(2))))
        self.rows.sort(key=lambda r: r[0])

    def line_at(self, address: int) -> tuple[str, int] | None:
        i = bisect.bisect_right(self.row_addresses, address) - 1
        if i < 0 or self.rows[i][1] is None:
            return None
        return (self.rows[i][1], self.rows[i][2])

    def _ranges(self) -> list[tuple[int, int]]:
        """The address ranges of the line table's sequences, merged where they nearly touch."""
        ranges: list[list[int]] = []
        start = None
        for address, file, _ in self.rows:
            if file is not None and start is None:
                start = address
            elif file is None and start is not None:
                if ranges and start - ranges[-1][1] < 4096:
                    ranges[-1][1] = max(ranges[-1][1], address)
                else:
                    ranges.append([start, address])
                start = None
        return [(a, b) for a, b in ranges]

    def _read_sites(self) -> None:
        for start, stop in self._ranges():
            text = _run(["objdump", "-d", "--no-show-raw-insn", f"--start-address={start:#x}",
                         f"--stop-address={stop:#x}", str(self.vmlinux)], "objdump -d")
            self._read_function_blocks(text)

    def _read_function_blocks(self, text: str) -> None:
        functions: list[tuple[str, list[tuple[int, str, str]]]] = []
        for line in text.splitlines():
            start = FUNCTION_START.match(line)
            if start:
                functions.append((start.group(2), []))
                continue
            match = INSTRUCTION.match(line.strip())
            if match and functions:
                functions[-1][1].append((int(match.group(1), 16), match.group(2), match.group(3) or ""))
        for name, instructions in functions:
            self._function_blocks(name, instructions)

    def _function_blocks(self, name: str, instructions: list[tuple[int, str, str]]) -> None:
        """Split a function at jump targets and after branches; in each straight-line piece,
        instructions before its first KCOV site belong to that site, later ones to the site
        before them."""
        targets = set()
        for _, mnemonic, operands in instructions:
            if mnemonic.startswith("j"):
                target = BRANCH_TARGET.search(operands)
                if target:
                    targets.add(int(target.group(1), 16))
        piece: list[tuple[int, bool, int]] = []  # (address, is a site, return address of it)

        def flush() -> None:
            site = None
            pending: list[int] = []
            lines: dict[int, set] = {}
            for address, is_site, returns in piece:
                if is_site:
                    site = returns
                    lines[site] = set()
                    for early in pending:
                        self._add_line(lines[site], early)
                    pending = []
                if site is None:
                    pending.append(address)
                else:
                    self._add_line(lines[site], address)
            for site, found in lines.items():
                self.sites[site] = frozenset(found)
                self.site_function[site] = name
            piece.clear()

        for i, (address, mnemonic, operands) in enumerate(instructions):
            if address in targets and piece:
                flush()
            is_site = mnemonic.startswith("call") and operands.endswith(COVER_CALL)
            returns = instructions[i + 1][0] if is_site and i + 1 < len(instructions) else 0
            piece.append((address, is_site, returns))
            if _ends_block(mnemonic):
                flush()
        if piece:
            flush()

    @functools.cached_property
    def dispatched_syscalls(self) -> set[str] | None:
        """The `sys_*` functions x86_64's syscall dispatcher (`x64_sys_call`) calls: a syscall
        only 32-bit or compat tables name (sendfile, not sendfile64) has no number here."""
        symbols = _run(["nm", "-S", str(self.vmlinux)], "nm")
        found = re.search(r"^([0-9a-f]+) ([0-9a-f]+) T x64_sys_call$", symbols, re.MULTILINE)
        if not found:
            return None
        start, size = int(found.group(1), 16), int(found.group(2), 16)
        text = _run(["objdump", "-d", "--no-show-raw-insn", f"--start-address={start:#x}",
                     f"--stop-address={start + size:#x}", str(self.vmlinux)], "objdump -d")
        return set(re.findall(r"<__x64_(sys_\w+)>", text))

    def _add_line(self, into: set, address: int) -> None:
        line = self.line_at(address)
        if line is not None:
            into.add(line)


def normalise(path: str) -> str:
    """A line-table path as the tree names it: `../src/fs/splice.c` -> `fs/splice.c`."""
    parts = [p for p in path.split("/") if p not in ("", ".", "..")]
    for i, part in enumerate(parts):
        if part in TOP_DIRS:
            return "/".join(parts[i:])
    return "/".join(parts)


TOP_DIRS = {"arch", "block", "certs", "crypto", "drivers", "fs", "include", "init", "io_uring", "ipc", "kernel",
            "lib", "mm", "net", "rust", "samples", "scripts", "security", "sound", "usr", "virt"}


@functools.lru_cache(maxsize=4)
def kernel_lines(vmlinux: str) -> KernelLines:
    return KernelLines(Path(vmlinux))


# --- both together ---------------------------------------------------------------------------

NOT_CODE = re.compile(r"^\s*($|//|/\*|\*|#|[{}]\s*[;,]?\s*$|(?:else|do)\s*\{?\s*$|[A-Za-z_][\w\s\*,\[\]]*;\s*$)")
NOT_BUILT_HERE = "not built: {why}"


def why_unreachable(line: SeriesLine, kernel: KernelLines) -> str:
    """Why a `+` line has no KCOV site in the built kernel."""
    file = line.file
    if not file.endswith((".c", ".h", ".S")):
        return "not kernel C (documentation, syscall table, build file)"
    if file.startswith("tools/"):
        return "not built: user-space tools and selftests"
    arch = re.match(r"arch/([^/]+)/", file)
    if arch and arch.group(1) != "x86":
        return f"not built: architecture {arch.group(1)}"
    if "compat" in line.text.lower() or line.function.startswith("compat_"):
        compat = " (CONFIG_COMPAT is off)"
    else:
        compat = ""
    if file.endswith(".c") and file not in kernel.files:
        return f"not built: no object of {file} in this config{compat}"
    if line.key in kernel.compiled:
        return "machine code without a KCOV site (not instrumented)"
    if NOT_CODE.match(line.text):
        return "no machine code: declaration, comment, brace or preprocessor line"
    if file.endswith(".h"):
        return "no machine code in an object built with KCOV (a header line used elsewhere or nowhere)"
    return f"no machine code: compiled out or merged into another line{compat}"


class SeriesCoverage:
    """The series' lines, which are reachable in one built kernel, and which programs reached."""

    def __init__(self, patches: list[Path] | tuple[Path, ...], vmlinux: Path):
        self.kernel = kernel_lines(str(vmlinux))
        self.lines = series_lines(patches)
        self.patches = [p.name for p in patches]
        self.reachable = {s.key: s for s in self.lines if s.key in self.kernel.instrumented}
        self.unreachable = {s.key: why_unreachable(s, self.kernel) for s in self.lines
                            if s.key not in self.reachable}
        for s in list(self.reachable.values()):  # instrumented, but in a syscall nothing can call
            if self.uncallable(s):
                del self.reachable[s.key]
                self.unreachable[s.key] = self.why_not_reached(s)
        # site -> the series lines it implies
        self.site_lines: dict[int, tuple[tuple[str, int], ...]] = {}
        for site, lines in self.kernel.sites.items():
            ours = tuple(sorted(k for k in lines if k in self.reachable))
            if ours:
                self.site_lines[site] = ours
        self.reached: dict[tuple[str, int], str] = {}  # line -> what reached it first
        self.pcs_seen = 0

    @property
    def total(self) -> int:
        return len(self.reachable)

    def lines_of(self, pcs) -> set[tuple[str, int]]:
        found: set[tuple[str, int]] = set()
        for pc in pcs:
            found.update(self.site_lines.get(pc, ()))
        return found

    def add(self, pcs, by: str) -> set[tuple[str, int]]:
        """Record a program's PCs; returns the series lines no earlier program reached."""
        new = {k for k in self.lines_of(pcs) if k not in self.reached}
        for k in new:
            self.reached[k] = by
        self.pcs_seen += 1
        return new

    def uncallable(self, line: SeriesLine) -> bool:
        dispatched = self.kernel.dispatched_syscalls
        return line.function.startswith("sys_") and dispatched is not None and line.function not in dispatched

    def why_not_reached(self, line: SeriesLine) -> str:
        """What can be said of a line no program reached."""
        if self.uncallable(line):
            return (f"{line.function} has no x86_64 syscall number (only 32-bit and compat tables name it): "
                    "no program can call it")
        return "no program reached it"

    def progress(self) -> str:
        return f"series lines {len(self.reached)}/{self.total}"

    # --- reports ---

    def by_function(self) -> dict[tuple[str, str], list[SeriesLine]]:
        out: dict[tuple[str, str], list[SeriesLine]] = {}
        for s in self.reachable.values():
            out.setdefault((s.file, s.function or "(file scope)"), []).append(s)
        return out

    def to_json(self) -> dict:
        by_file: dict[str, dict] = {}
        for s in self.reachable.values():
            entry = by_file.setdefault(s.file, {"lines_total": 0, "lines_reached": 0, "functions": {}})
            function = entry["functions"].setdefault(s.function or "(file scope)",
                                                     {"lines_total": 0, "lines_reached": 0})
            reached = s.key in self.reached
            for counts in (entry, function):
                counts["lines_total"] += 1
                counts["lines_reached"] += reached
        by_patch: dict[str, dict] = {p: {"lines_total": 0, "lines_reached": 0} for p in self.patches}
        for s in self.reachable.values():
            by_patch[s.patch]["lines_total"] += 1
            by_patch[s.patch]["lines_reached"] += s.key in self.reached
        return {
            "lines_total": self.total,
            "lines_reached": len(self.reached),
            "lines_added": len(self.lines),
            "by_file": by_file,
            "by_patch": by_patch,
            "reached": [{"file": f, "line": n, "function": self.reachable[(f, n)].function, "by": by}
                        for (f, n), by in sorted(self.reached.items())],
            "unreached": [{"file": s.file, "line": s.line, "function": s.function, "patch": s.patch,
                           "text": s.text.strip(), "why": self.why_not_reached(s)}
                          for s in sorted(self.reachable.values(), key=lambda s: s.key) if s.key not in self.reached],
            "not_reachable": [{"file": s.file, "line": s.line, "function": s.function, "patch": s.patch,
                               "why": self.unreachable[s.key]} for s in self.lines if s.key in self.unreachable],
        }

    def lcov(self, test_name: str = "zcfuzz") -> str:
        """An lcov tracefile of the series' reachable lines (genhtml, editors' coverage views)."""
        out = [f"TN:{re.sub(r'[^A-Za-z0-9_]', '_', test_name)}"]
        by_file: dict[str, list[SeriesLine]] = {}
        for s in self.reachable.values():
            by_file.setdefault(s.file, []).append(s)
        for file in sorted(by_file):
            lines = sorted(by_file[file], key=lambda s: s.line)
            out.append(f"SF:{file}")
            functions: dict[str, int] = {}
            for s in lines:
                if s.function:
                    functions.setdefault(s.function, s.line)
            for name, first in functions.items():
                out.append(f"FN:{first},{name}")
            for name in functions:
                hit = any(s.key in self.reached for s in lines if s.function == name)
                out.append(f"FNDA:{int(hit)},{name}")
            out.append(f"FNF:{len(functions)}")
            out.append(f"FNH:{sum(any(s.key in self.reached for s in lines if s.function == n) for n in functions)}")
            for s in lines:
                out.append(f"DA:{s.line},{int(s.key in self.reached)}")
            out.append(f"LF:{len(lines)}")
            out.append(f"LH:{sum(s.key in self.reached for s in lines)}")
            out.append("end_of_record")
        return "\n".join(out) + "\n"

    def html(self, title: str) -> str:
        """One page: each patch's `+` lines coloured, each reached line with what reached it first."""
        rows = []
        for patch in self.patches:
            lines = [s for s in self.lines if s.patch == patch]
            if not lines:
                continue
            reached = sum(s.key in self.reached for s in lines if s.key in self.reachable)
            total = sum(s.key in self.reachable for s in lines)
            rows.append(f"<h2>{html.escape(patch)}: {reached}/{total} reachable lines reached</h2><table>")
            for s in lines:
                if s.key in self.reached:
                    cls, note = "hit", self.reached[s.key]
                elif s.key in self.reachable:
                    cls, note = "miss", self.why_not_reached(s)
                else:
                    cls, note = "none", self.unreachable[s.key]
                rows.append(f'<tr class="{cls}"><td>{html.escape(s.file)}:{s.line}</td>'
                            f"<td><code>{html.escape(s.text)}</code></td><td>{html.escape(note)}</td></tr>")
            rows.append("</table>")
        style = ("body{font-family:sans-serif}table{border-collapse:collapse}td{padding:1px 6px;"
                 "white-space:pre;font-size:12px}.hit{background:#c8f0c8}.miss{background:#f6c6c6}"
                 ".none{color:#888}")
        summary = f"{len(self.reached)}/{self.total} reachable lines of the series reached"
        return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
                f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1><p>{summary}</p>"
                + "\n".join(rows) + "</body></html>\n")

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"
