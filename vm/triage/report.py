"""Find the first kernel report in console output, cut it out and give it a title.

The console interleaves the output of every CPU and task. A kernel built with
CONFIG_PRINTK_CALLER stamps each line with its origin (`[ T6734]` for a task, `[    C1]` for a
CPU in interrupt context); the report is then read from the lines of the origin that printed
its header only, plus, once the report asks every CPU for a backtrace ("Sending NMI from CPU"),
the lines those CPUs print. Without caller stamps the report ends where the next one starts.
Frames the unwinder marks unsure (`? func+0x..`) are never read.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from zcfuzz.vm.triage.frames import (
    CORRUPTING_LINES,
    ENTRY,
    FRAME_LINES,
    HANG_ANCHORS,
    INSTRUCTION_POINTER,
    RISCV_STACK_START,
    SKIPPED,
    STACK_STARTS,
    WAITING,
    frames_of_line,
    instruction_pointer_frame,
    strip_syscall_prefix,
)
from zcfuzz.vm.triage.patterns import (
    CONTINUATION_HEADERS,
    INFO_MESSAGES_WITH_STACK,
    READ_STACK,
    REPORT_KINDS,
    ReportFormat,
    ReportKind,
    StackRule,
)
from zcfuzz.vm.triage.titles import clean_function_name, normalize_title

# Host-side titles: the guest died (the connection to it broke) or went silent.
LOST_CONNECTION_TITLE = "lost connection to test machine"
NO_OUTPUT_TITLE = "no output from test machine"

CORRUPTED_FRAME = "corrupted"

# `[   65.899519] `, `[   65.899519][ T6734] `, `<4>[ 65.8] `, after user-space output that had no
# newline (`syzkaller login: `) or a note that printk dropped messages.
CONSOLE_PREFIX = re.compile(
    r"^(?:\*\* [0-9]+ printk messages dropped \*\* )?(?:.* login: )?(?:<[0-9]+>)?"
    r"\[ *[0-9]+\.[0-9]+\](\[ *[CT][0-9]+\])? "
)
# The origin of a line printed without CONFIG_PRINTK_CALLER, and of one with no timestamp.
CONSOLE = "console"
NO_PREFIX = ""
CPU_ORIGIN = re.compile(r"\[ *C[0-9]+\]")
TIMESTAMP = re.compile(r"\[ *[0-9]+\.[0-9]+\]")

# An unsure frame (x86 `? func`, powerpc `func (unreliable)`); `<EOI>` lines are never unsure.
UNSURE_FRAME = re.compile(r"(?:\[<[0-9a-f]+>\])? \? ")
UNRELIABLE_SUFFIX = " (unreliable)"

# printk replays a message it had to drop; the header line before a replay is not a report.
REPLAY = "** replaying previous printk message **"

# After this many lines of a report, a panic (panic_on_warn, panic_on_oops) or a lockdep
# report that the oops itself set off only repeats the stack; KMSAN reports are shorter.
REPORT_MIN_LINES = 22
KMSAN_REPORT_MIN_LINES = 16
TRAILING_REPORTS = ("Kernel panic - not syncing", "WARNING: possible circular locking dependency detected")
LOCK_DEBUGGING_OFF = "Disabling lock debugging due to kernel taint"
ALL_CPU_BACKTRACE = "Sending NMI from CPU"

# Lines that close a report for the `report` text: the end-of-trace marker, the panic footer,
# the sanitizers' rule.
END_OF_REPORT = re.compile(r"^\s*(?:---\[ end (?:trace|Kernel panic)|Kernel Offset:|={20,}\s*$)")
CUT_HERE = re.compile(r"^\s*(?:-+\[ cut here \]-+|={20,})\s*$")
# A report longer than this many lines is cut in the `report` text: what follows is other output.
MAX_REPORT_LINES = 400

# `CPU: 1 PID: 2 Comm: ...` and `WARNING: CPU: 1 PID: 2 at ...`: the task a report is about.
TASK_HEADER = re.compile(r"\bCPU: (\d+) (?:UID: \d+ )?PID: (\d+)\b")

# The timer interrupt a stall is reported from, as a 6.x trace lists it: unsure (`? `), with
# the interrupted code's registers printed above the trace instead.
UNSURE_TIMER_INTERRUPT = re.compile(r"^\s*\? \w*apic_timer_interrupt\+0x")

_ANY_HEADER = re.compile("|".join(re.escape(kind.header) for kind in REPORT_KINDS))


@dataclass
class CrashReport:
    """What triage says about one kernel report."""

    title: str
    type: str
    corrupted: bool
    report: str
    alt_titles: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return asdict(self)


@dataclass
class ConsoleLine:
    offset: int
    raw: str
    text: str  # without the console prefix
    origin: str  # `[ T6734]`, `[    C1]`, CONSOLE or NO_PREFIX
    unsure: bool  # an unsure stack frame


def find_crash_start(text: str) -> int | None:
    """Offset of the first line in `text` that starts a kernel report, or None. Cheap enough to
    run on every chunk of console output while a guest runs."""
    position = 0
    while (match := _ANY_HEADER.search(text, position)) is not None:
        start = text.rfind("\n", 0, match.start()) + 1
        end = text.find("\n", match.start())
        end = len(text) if end < 0 else end
        if _report_kind(text[start:end]) is not None:
            return start
        position = end + 1
    return None


def parse(console_text: str) -> CrashReport | None:
    """The first kernel report in `console_text` with its title, or None when there is none."""
    lines = _split_lines(console_text)
    for index, line in enumerate(lines):
        kind = _report_kind(line.raw)
        if kind is not None and not _replayed(lines, index):
            return _build_report(console_text, lines, index, kind)
    return None


def _report_kind(line: str) -> ReportKind | None:
    for kind in REPORT_KINDS:
        if kind.starts(line):
            return kind
    return None


def _replayed(lines: list[ConsoleLine], index: int) -> bool:
    return index + 1 < len(lines) and REPLAY in lines[index + 1].raw


def _split_lines(text: str) -> list[ConsoleLine]:
    """Lines end at a newline only: a lone carriage return or form feed inside a line is
    console noise, not a line break."""
    lines = []
    offset = 0
    for raw in text.split("\n"):
        lines.append(_console_line(offset, raw.removesuffix("\r")))
        offset += len(raw) + 1
    if lines and not lines[-1].raw:
        lines.pop()
    return lines


def _console_line(offset: int, raw: str) -> ConsoleLine:
    """A line with its prefix split off. An unsure frame is unsure with or without a timestamp
    (syzkaller only drops those of timestamped lines), so stamps never change a title."""
    prefix = CONSOLE_PREFIX.match(raw)
    text = raw[raw.index("] ") + 2:] if prefix else raw
    unsure = "<EOI>" not in text and (bool(UNSURE_FRAME.search(text)) or text.endswith(UNRELIABLE_SUFFIX))
    origin = (prefix[1] or CONSOLE) if prefix else NO_PREFIX
    return ConsoleLine(offset, raw, text, origin, unsure)


def _starts_another_report(lines: list[ConsoleLine], index: int) -> bool:
    line = lines[index].raw
    if any(message in line for message in INFO_MESSAGES_WITH_STACK):
        return True
    return (
        _report_kind(line) is not None
        and not _replayed(lines, index)
        and not any(p.search(line) for p in CONTINUATION_HEADERS)
    )


@dataclass
class _ReportText:
    """The lines of one report, as read from the console."""

    lines: list[str]
    # How many of `lines` the title is read from: up to the next report, unless caller
    # stamps tell the report's own lines apart.
    title_lines: int
    # `lines` with the unsure frames left in, for the 6.x stall rule.
    with_unsure: list[str]
    # Index in the console of the line where the next report starts, if any.
    next_report: int | None


def _read_report(lines: list[ConsoleLine], start: int) -> _ReportText:
    origin = lines[start].origin
    stamped_by_caller = origin not in (CONSOLE, NO_PREFIX)
    min_lines = KMSAN_REPORT_MIN_LINES if "BUG: KMSAN:" in lines[start].raw else REPORT_MIN_LINES
    report = _ReportText([], 0, [], None)
    all_cpus = skip_rest = False
    counted = 0
    for index in range(start, len(lines)):
        line = lines[index]
        first = index == start
        if not first and report.next_report is None and _starts_another_report(lines, index):
            report.next_report = index
        if not first and (line.origin != origin and not (all_cpus and CPU_ORIGIN.match(line.origin))):
            continue
        if not first and line.unsure:
            report.with_unsure.append(line.text)
            continue
        counted += 1
        skip = skip_rest
        if LOCK_DEBUGGING_OFF in line.raw:
            skip = True
        elif ALL_CPU_BACKTRACE in line.raw:
            all_cpus = True
        elif any(message in line.raw for message in TRAILING_REPORTS) and counted > min_lines:
            skip = skip_rest = True
        if skip and not first:
            continue
        report.lines.append(line.text)
        report.with_unsure.append(line.text)
        if report.next_report is None or stamped_by_caller:
            report.title_lines = len(report.lines)
    return report


def _joined(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


@dataclass
class _Description:
    title: str
    format: ReportFormat | None
    alt_titles: list[str]
    corrupted: bool


def _describe(text: str, kind: ReportKind, with_unsure: str) -> _Description:
    """Title `text` by the format of `kind` that matches earliest in it."""
    best: _Description | None = None
    best_start = len(text) + 1
    title_matched = False
    for fmt in kind.formats:
        match = fmt.title.search(text)
        if match is None or match.start() > best_start or (match.start() == best_start and best is not None):
            continue
        if match.start() < best_start:
            best, best_start = None, match.start()
        title_matched = True
        fields = {name: value for name, value in match.groupdict().items() if value}
        if fmt.details is not None:
            match = fmt.details.search(text)
            if match is None:
                continue
            fields.update((name, value) for name, value in match.groupdict().items() if value)
        corrupted = False
        if fmt.stack is not None:
            frames, found = _culprits(text[match.start():].split("\n"), fmt.stack)
            if not found and fmt.stack.culprit == "stall":
                frames, found = _stall_of_6x_trace(with_unsure, fmt.stack) or (frames, found)
            corrupted = not found
            fields.update(zip(("frame", "frame2"), frames))
        best = _Description(
            title=fmt.template.format_map(_Fields(fields)),
            format=fmt,
            alt_titles=[alt.format_map(_Fields(fields)) for alt in fmt.alt_titles],
            corrupted=corrupted or fmt.corrupted,
        )
    if best is not None:
        return best
    # A header no format knows: its own line is the title.
    position = text.find(kind.header)
    line_end = text.find("\n", position)
    return _Description(text[position:line_end if line_end >= 0 else len(text)], None, [], title_matched)


class _Fields(dict):
    """Template fields; a part the report did not show is left empty."""

    def __missing__(self, key: str) -> str:
        return ""


def _culprits(lines: list[str], rule: StackRule) -> tuple[list[str], bool]:
    """The culprit of each stack `rule` reads, and whether every one was found."""
    culprits, found = _read_parts(lines, rule.parts, rule)
    if not found and rule.fallback_parts:
        return _read_parts(lines, rule.fallback_parts, rule)
    return culprits, found


def _read_parts(lines: list[str], parts: tuple, rule: StackRule) -> tuple[list[str], bool]:
    """Walk `lines` through `parts` (see vm.triage.patterns); one culprit per stack read."""
    skip = _skip_pattern(rule)
    culprits: list[str] = []
    candidates: list[str] = []
    found = True
    stacks_read = 0
    position = 0
    part = 0
    while True:
        if part == len(parts) or (parts[part] is READ_STACK and stacks_read > 0):
            culprit = _choose(candidates, rule.culprit)
            if culprit is None:
                culprit, found = CORRUPTED_FRAME, False
            culprits.append(culprit)
            candidates = []
        if part == len(parts):
            return culprits, found
        pattern = parts[part]
        next_part = parts[part + 1] if part + 1 < len(parts) else None
        if pattern is READ_STACK:
            stacks_read += 1
        while position < len(lines):
            line = lines[position]
            position += 1
            if any(p.search(line) for p in CORRUPTING_LINES):
                found = False
                break
            if pattern is not READ_STACK:
                match = pattern.search(line)
                if match:
                    candidates += _unskipped(match.groups(), skip)
                    break
                continue
            if any(p.search(line) for p in STACK_STARTS):
                break
            if next_part is not None and (match := next_part.search(line)):
                candidates += _unskipped(match.groups(), skip)
                part += 1
                break
            candidates += _unskipped(_frame_names(line), skip)
        part += 1


def _frame_names(line: str) -> tuple[str, ...]:
    for pattern in FRAME_LINES:
        match = pattern.match(line)
        if match:
            return match.groups()
    return ()


def _skip_pattern(rule: StackRule) -> re.Pattern:
    if not rule.skip:
        return SKIPPED
    return re.compile(SKIPPED.pattern + "|" + "|".join(rule.skip))


def _unskipped(names, skip: re.Pattern) -> list[str]:
    """`names` without the frames `skip` passes over; a clone suffix is not part of a name."""
    cleaned = (clean_function_name(name) for name in names if name)
    return [name for name in cleaned if not skip.search(name)]


def _choose(frames: list[str], culprit: str) -> str | None:
    if not frames:
        return None
    names = [strip_syscall_prefix(frame) for frame in frames]
    if culprit == "stall":
        return _looping_code(names)
    if culprit == "hang":
        return _hung_in(names)
    return names[0]


def _looping_code(frames: list[str]) -> str | None:
    """A stall or lockup strikes anywhere in the code that loops, so the culprit is where that
    code was entered: the frame just inside the syscall entry, work dispatch, socket or file
    operation (ENTRY_FRAMES); a CPU waiting in a cross-CPU call is stalled by the call itself."""
    previous = frames[0]
    for frame in frames:
        if ENTRY.search(frame):
            return "smp_call_function" if "smp_call_function" in frame else previous
        previous = frame
    return None


def _hung_in(frames: list[str]) -> str | None:
    """A hung task shows where it sleeps, not who holds it up; everything stuck on the RTNL
    lock or on an RCU grace period is one bug each. Else the first frame not sleeping."""
    for frame in frames:
        for anchor, name in HANG_ANCHORS:
            if anchor in frame:
                return name or frame
    return next((frame for frame in frames if not WAITING.search(frame)), None)


def _stall_of_6x_trace(with_unsure: str, rule: StackRule) -> tuple[list[str], bool] | None:
    """Since 6.x a stall dump prints the interrupted code's registers above a trace whose
    interrupt part is all unsure; the interrupted task's frames follow its unsure timer
    interrupt entry. The instruction pointer is the innermost of them."""
    lines = with_unsure.split("\n")
    timer = next((i for i, line in enumerate(lines) if UNSURE_TIMER_INTERRUPT.match(line)), None)
    if timer is None:
        return None
    pointer = next((instruction_pointer_frame(line) for line in reversed(lines[:timer])
                    if INSTRUCTION_POINTER.search(line)), None)
    if pointer is None:
        return None
    skip = _skip_pattern(rule)
    frames = [pointer]
    for line in lines[timer + 1:]:
        if any(p.search(line) for p in STACK_STARTS):
            break
        frames += frames_of_line(line)
    culprit = _choose(_unskipped(frames, skip), rule.culprit)
    return ([culprit], True) if culprit else None


def _damaged(title: str, report: str, fmt: ReportFormat | None) -> bool:
    """A report whose title (before normalisation) took in another line's timestamp, or that
    promises a stack and shows none."""
    if TIMESTAMP.search(title):
        return True
    if fmt is None or not fmt.has_stack_trace:
        return False
    has_stack = False
    for start in STACK_STARTS:
        match = start.search(report)
        if match is None:
            continue
        following = report[match.start():].split("\n")
        if len(following) < 4:
            return True
        listed = False
        for line in following[1:16]:
            if any(p.search(line) for p in STACK_STARTS):
                break
            if "(stack is not available)" in line or any(p.match(line) for p in FRAME_LINES):
                listed = has_stack = True
                break
        if not listed and start is not RISCV_STACK_START:
            return True
    return not has_stack


def _header_cut(text: str, lines: list[ConsoleLine], start: int) -> bool:
    """The output ends inside the report's header line: the title may be missing words."""
    return start == len(lines) - 1 and not text.endswith("\n")


def _several_tasks(lines: list[ConsoleLine]) -> bool:
    """Headers of two tasks before the crashing stack starts: another CPU's report got mixed in
    and the stack may be the other task's."""
    tasks = set()
    for line in lines[1:]:
        if any(p.search(line.text) for p in STACK_STARTS):
            break
        if match := TASK_HEADER.search(line.text):
            tasks.add(match.groups())
    if match := TASK_HEADER.search(lines[0].text):
        tasks.add(match.groups())
    return len(tasks) > 1


def _build_report(text: str, lines: list[ConsoleLine], start: int, kind: ReportKind) -> CrashReport:
    read = _read_report(lines, start)
    description = _describe(_joined(read.lines[:read.title_lines]), kind, _joined(read.with_unsure))
    title = normalize_title(description.title)
    corrupted = (
        description.corrupted
        or _header_cut(text, lines, start)
        or _damaged(description.title, _joined(read.lines), description.format)
        or _several_tasks(lines[start:start + MAX_REPORT_LINES])
    )
    alt_titles = [alt for alt in dict.fromkeys(map(normalize_title, description.alt_titles)) if alt != title]
    fmt = description.format or kind.formats[-1]
    return CrashReport(
        title=title,
        alt_titles=alt_titles,
        type=fmt.type,
        corrupted=corrupted,
        report=_report_text(text, lines, start, read.next_report),
    )


def _report_text(text: str, lines: list[ConsoleLine], start: int, next_report: int | None) -> str:
    """The console lines of the report: from its header (and the `cut here` line above it) to
    the end-of-report marker, the next report, or MAX_REPORT_LINES."""
    first = start - 1 if start > 0 and CUT_HERE.match(lines[start - 1].text) else start
    stop = min(len(lines), start + MAX_REPORT_LINES, next_report if next_report is not None else len(lines))
    end = next((index + 1 for index in range(start + 1, stop) if END_OF_REPORT.match(lines[index].text)), stop)
    last_offset = lines[end].offset if end < len(lines) else len(text)
    return text[lines[first].offset:last_offset]
