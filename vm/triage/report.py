"""Find the first kernel report in console output, cut it out and give it a title."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from vm.triage.frames import (
    STACK_END,
    STACK_START,
    culprit_name,
    frame_of_line,
    instruction_pointer_frame,
    is_generic_frame,
)
from vm.triage.patterns import CRASH_PATTERNS, CrashPattern
from vm.triage.titles import clean_function_name, normalize_title

# Host-side titles: the guest died (the connection to it broke) or went silent.
LOST_CONNECTION_TITLE = "lost connection to test machine"
NO_OUTPUT_TITLE = "no output from test machine"

CORRUPTED_FRAME = "corrupted"

# `[  65.9]`, `[  65.9][ T6734]`, `[ 444.4][    C0]`, `<4>`, a `2018/01/09 14:28:48 ` log date;
# user-space output without a newline (`syzkaller login: `) may stand before the timestamp.
CONSOLE_PREFIX = re.compile(
    r"^(?:[^\[\n]*?(?=\[\s*\d+\.\d+\]))?(?:<\d+>)?(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)? |\[\s*\d+\.\d+\])?(?:\[\s*[TC]\d+\])? ?"
)

# Lines that close a report: the end-of-trace marker, the panic footer, the sanitizers' rule.
END_OF_REPORT = re.compile(r"^\s*(?:---\[ end (?:trace|Kernel panic)|Kernel Offset:|={20,}\s*$)")

# Lines that open the stack part of a stall report's CPU dump, and the end of an interrupt.
IRQ_END = re.compile(r"^\s*(?:</IRQ>|<EOI>|</NMI>)")

# The timer interrupt a stall or lockup report is taken from.
TIMER_INTERRUPT = re.compile(r"^(?:\w*apic_timer_interrupt|\w*sysvec_apic_timer_interrupt|el1_irq|gic_handle_irq)")
# Frames that switch to and from the interrupt stack inside one interrupt's entry.
INTERRUPT_STACK_SWITCH = re.compile(r"^(?:asm_call_\w+|call_on_\w*stack|run_on_irqstack\w*)$")

# Frames that only dispatch to the code that looped: generic file and socket syscalls, netlink
# and packet-receive dispatch, softirq and timer dispatch.
DISPATCH_FRAME = re.compile(
    r"^(?:__(?:x64|ia32|arm64)_)?(?:SyS|sys|ksys|__sys|__se_sys)_(?:read|write|ioctl|sendmsg|sendto|sendmmsg)$"
    r"|^(?:netlink_\w+|\w*netlink_rcv\w*|rtnetlink_rcv\w*|genl_\w+|net_rx_action|process_backlog"
    r"|__?netif_receive_skb\w*|netif_receive_\w+|do_softirq_own_stack|inet_sendmsg|\w+_sendmsg"
    r"|gro_\w+|napi_\w+|compat_\w+|exit_to_usermode_loop|\w*ret_from_sys_call)$"
)

# A cross-CPU function call spins until the other CPUs answer: a CPU stuck in one is stalled
# by the call, whoever made it.
CROSS_CPU_CALL = re.compile(r"^smp_call_function\w*")

# `CPU: 1 PID: 2 Comm: ...` and `WARNING: CPU: 1 PID: 2 at ...`: the task a report is about.
TASK_HEADER = re.compile(r"\bCPU: (\d+) (?:UID: \d+ )?PID: (\d+)\b")

# A report longer than this many lines is cut: what follows is other output.
MAX_REPORT_LINES = 400


def _without_group_names(pattern: str) -> str:
    """Named groups may not repeat in one regex; the combined start pattern needs none."""
    return re.sub(r"[(][?]P<\w+>", "(?:", pattern)


_START_ANY = re.compile("|".join(f"(?:{_without_group_names(p.start.pattern)})" for p in CRASH_PATTERNS))
_START_ANY_IN_TEXT = re.compile(
    _without_group_names(CONSOLE_PREFIX.pattern) + f"(?:{_START_ANY.pattern})", re.M
)


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
    text: str  # without the console prefix


def find_crash_start(text: str) -> int | None:
    """Offset of the first line in `text` that starts a kernel report, or None. Cheap enough to
    run on every chunk of console output while a guest runs."""
    match = _START_ANY_IN_TEXT.search(text)
    return match.start() if match else None


def parse(console_text: str) -> CrashReport | None:
    """The first kernel report in `console_text` with its title, or None when there is none."""
    lines = _split_lines(console_text)
    for index, line in enumerate(lines):
        if not _START_ANY.match(line.text):
            continue
        for pattern in CRASH_PATTERNS:
            match = pattern.start.match(line.text)
            if match:
                return _build_report(console_text, lines, index, pattern, match)
    return None


def _split_lines(text: str) -> list[ConsoleLine]:
    lines = []
    offset = 0
    for raw in text.splitlines(keepends=True):
        stripped = raw.rstrip("\r\n").lstrip("\x00")
        prefix = CONSOLE_PREFIX.match(stripped)
        lines.append(ConsoleLine(offset, stripped[prefix.end():]))
        offset += len(raw)
    return lines


@dataclass
class _Stack:
    """The frames of the crashing stack, as far as the report shows them."""

    frames: list[str] = field(default_factory=list)
    # Index in `frames` where the interrupted task's frames start (after `</IRQ>`), if any.
    task_start: int | None = None
    has_trace: bool = False
    # Index in `frames` of the function an instruction-pointer line (`RIP: 0010:...`) named.
    instruction_pointer: int | None = None
    end: int = 0  # index of the line after the last line of the stack


def _read_stack(lines: list[ConsoleLine], start: int, stop: int, pattern: CrashPattern) -> _Stack:
    """Frames of the first stack in the report that shows more than generic frames (a stall
    report dumps the RCU kthread's idle stack before the stalled CPU's). An instruction
    pointer printed just before a `Call Trace:` belongs to that trace, not the one before."""
    stack = _Stack(end=start + 1, has_trace=pattern.trace_after_header)
    in_trace = pattern.trace_after_header
    for index in range(start + 1, stop):
        text = lines[index].text
        if STACK_START.match(text) or (in_trace and STACK_END.match(text)):
            if stack.has_trace:
                frames = stack.frames
                ahead = [frames.pop()] if frames and stack.instruction_pointer == len(frames) - 1 else []
                if not all(map(is_generic_frame, frames)):
                    stack.instruction_pointer = _index_if(stack.instruction_pointer, frames)
                    break
                stack.frames = ahead
                stack.instruction_pointer = 0 if ahead else None
                stack.task_start = None
            in_trace = stack.has_trace = bool(STACK_START.match(text))
            stack.end = index + 1
            continue
        if in_trace and IRQ_END.match(text):
            stack.task_start = len(stack.frames)
            stack.end = index + 1
            continue
        func = instruction_pointer_frame(text)
        if func is not None:
            stack.instruction_pointer = len(stack.frames)
        elif in_trace:
            func = frame_of_line(text)
        if func is not None:
            stack.frames.append(func)
            stack.end = index + 1
    return stack


def _index_if(index: int | None, items: list) -> int | None:
    """`index` if it still points into `items`, else None."""
    return index if index is not None and index < len(items) else None


def _report_end(lines: list[ConsoleLine], start: int) -> int:
    """Index of the line after the report that starts at `start`."""
    stop = min(len(lines), start + MAX_REPORT_LINES)
    for index in range(start + 1, stop):
        if END_OF_REPORT.match(lines[index].text):
            return index + 1
    return stop


def _culprit(stack: _Stack, pattern: CrashPattern) -> str | None:
    if pattern.culprit == "first":
        return _first_non_generic(stack.frames)
    frames = _interrupted_frames(stack, pattern)
    if not frames:
        return None
    innermost = _first_non_generic(frames)
    if innermost is not None and CROSS_CPU_CALL.match(innermost):
        return "smp_call_function"
    looping = [func for func in reversed(frames) if not DISPATCH_FRAME.match(clean_function_name(func))]
    # A stack of nothing but dispatch and helpers: the interrupted function is all there is.
    return _first_non_generic(looping) or culprit_name(frames[0])


def _first_non_generic(frames: list[str]) -> str | None:
    for func in frames:
        if not is_generic_frame(func):
            return culprit_name(func)
    return None


def _interrupted_frames(stack: _Stack, pattern: CrashPattern) -> list[str]:
    """The frames of the code the watchdog found running, innermost first, up to the end of
    the interrupted context (a softirq run on the way out of an interrupt ends where that
    interrupt's entry is).

    A stall is reported from the timer interrupt, so its code starts past the first run of
    timer-interrupt frames; a lockup report prints the interrupted code's own stack. A stall
    stack with neither a timer interrupt nor an instruction pointer is a dump of a task that
    was not running (preempted while holding up the grace period): it shows no looping code.
    """
    frames = stack.frames
    anchors = [i for i, func in enumerate(frames) if TIMER_INTERRUPT.match(func)]
    first = 0
    if pattern.culprit == "stall":
        if not anchors and stack.task_start is None and stack.instruction_pointer is None:
            return []
        if anchors:
            first = anchors[0]
            while first < len(frames) and (
                TIMER_INTERRUPT.match(frames[first]) or INTERRUPT_STACK_SWITCH.match(frames[first])
            ):
                first += 1
        else:
            first = stack.task_start or 0
    ends = [i for i in anchors if i > first]
    if stack.task_start is not None and stack.task_start > first:
        ends.append(stack.task_start)
    interrupted = frames[first:min(ends, default=len(frames))]
    # 6.x prints the interrupted instruction above a trace whose interrupt part is all unsure.
    if stack.instruction_pointer is not None and stack.instruction_pointer < first and not anchors:
        interrupted.insert(0, frames[stack.instruction_pointer])
    return interrupted


def _build_report(
    text: str, lines: list[ConsoleLine], start: int, pattern: CrashPattern, match: re.Match
) -> CrashReport:
    end = _report_end(lines, start)
    stack = _read_stack(lines, start, end, pattern)
    fields = {name: _field_value(name, value) for name, value in match.groupdict().items() if value}
    if pattern.details:
        for line in lines[start:end]:
            details = pattern.details.search(line.text)
            if details:
                fields.update((k, v) for k, v in details.groupdict().items() if v)
                break
    corrupted = False
    if "{frame}" in pattern.title or (pattern.alt_title and "{frame}" in pattern.alt_title):
        culprit = _culprit(stack, pattern)
        corrupted = culprit is None or not stack.has_trace
        fields["frame"] = culprit or CORRUPTED_FRAME
    corrupted = corrupted or _several_tasks(lines[start:stack.end])
    title = _format_title(pattern.title, fields)
    alt_titles = [_format_title(pattern.alt_title, fields)] if pattern.alt_title else []
    report_end = end if END_OF_REPORT.match(lines[end - 1].text) else stack.end
    first = start - 1 if start > 0 and re.match(r"^\s*(?:-+\[ cut here \]-+|={20,})\s*$", lines[start - 1].text) else start
    last_offset = lines[report_end].offset if report_end < len(lines) else len(text)
    return CrashReport(
        title=title,
        alt_titles=alt_titles,
        type=pattern.type,
        corrupted=corrupted,
        report=text[lines[first].offset:last_offset],
    )


def _field_value(name: str, value: str) -> str:
    if name == "func":
        return clean_function_name(normalize_title(value))
    return normalize_title(value)


def _format_title(template: str, fields: dict[str, str]) -> str:
    """Fill `template`; a field the report did not show is left out with its space."""
    title = re.sub(r"\{(\w+)\}", lambda m: fields.get(m[1], ""), template)
    return re.sub(r"\s+", " ", title).strip()


def _several_tasks(lines: list[ConsoleLine]) -> bool:
    """Headers of two tasks before the crashing stack ends: another CPU's report got mixed in,
    and the stack may be the other task's."""
    tasks = {match.groups() for line in lines if (match := TASK_HEADER.search(line.text))}
    return len(tasks) > 1
