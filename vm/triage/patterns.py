"""The table of kernel report kinds: how each starts, how it is titled, what kind of bug it is.

Titles follow syzkaller's convention, so a finding dedups against syzbot and kernel CI. In a
title, `{frame}` is the culprit taken from the crashing stack; other fields are the named groups
of `start` (and of `details`, searched in the lines that follow), normalised by
vm.triage.titles except groups called `func`, which are function names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MEMORY_SAFETY_BUG = "MEMORY_SAFETY_BUG"
LOCKING_BUG = "LOCKING_BUG"
HANG = "HANG"
WARNING = "WARNING"
DOS = "DoS"
LEAK = "LEAK"
UNDEFINED_BEHAVIOUR = "UBSAN"
ATOMIC_SLEEP = "ATOMIC_SLEEP"
DATA_RACE = "DATA_RACE"
BUG = "BUG"


@dataclass(frozen=True)
class CrashPattern:
    """One kind of kernel report."""

    start: re.Pattern
    title: str
    type: str
    # Another title the same bug goes by in syzkaller's coarse classes (`bad-access in X`).
    alt_title: str | None = None
    details: re.Pattern | None = None
    # How the culprit is chosen: the "first" non-generic frame of the crashing stack; for a
    # "lockup" the first of the code the watchdog interrupted; for a "stall" the outermost of
    # it, past generic dispatch (see vm.triage.report).
    culprit: str = "first"
    # KMSAN, KFENCE and KCSAN print the stack right under the header, with no `Call Trace:`.
    trace_after_header: bool = False


def _pattern(start: str, title: str, type: str, **options) -> CrashPattern:
    details = options.pop("details", None)
    return CrashPattern(
        start=re.compile(start),
        title=title,
        type=type,
        details=re.compile(details) if details else None,
        **options,
    )


def _warning_at(path: str) -> str:
    """A WARN() header at a source file: `WARNING: CPU: 1 PID: 2 at lib/refcount.c:28 ...`
    (up to 6.14) or `WARNING: lib/refcount.c:28 at ...` (6.15 on)."""
    return rf"WARNING: (?:CPU: \d+ PID: \d+ at )?\S*?{path}:\d+"


BAD_ACCESS = "bad-access in {frame}"
OOPS = r"(?:Oops: )?"

CRASH_PATTERNS: tuple[CrashPattern, ...] = (
    # Memory-safety sanitizers.
    _pattern(r"BUG: KASAN: (?:double-free or )?(?P<kind>invalid-free|double-free)",
             "KASAN: {kind} in {frame}", MEMORY_SAFETY_BUG, alt_title="invalid-free in {frame}"),
    _pattern(r"BUG: KASAN: (?P<kind>[\w-]+) in ", "KASAN: {kind} {access} in {frame}", MEMORY_SAFETY_BUG,
             alt_title=BAD_ACCESS, details=r"(?P<access>Read|Write) (?:of size|at addr)"),
    _pattern(r"BUG: KFENCE: (?P<kind>invalid free|memory corruption)", "KFENCE: {kind} in {frame}",
             MEMORY_SAFETY_BUG, alt_title="invalid-free in {frame}", trace_after_header=True),
    _pattern(r"BUG: KFENCE: (?P<kind>[\w-]+) (?P<access>read|write)", "KFENCE: {kind} {access} in {frame}",
             MEMORY_SAFETY_BUG, alt_title=BAD_ACCESS, trace_after_header=True),
    _pattern(r"BUG: KMSAN: (?P<kind>[\w-]+)", "KMSAN: {kind} in {frame}", MEMORY_SAFETY_BUG, alt_title=BAD_ACCESS,
             trace_after_header=True),
    _pattern(r"BUG: KCSAN: (?P<kind>.+?) in ", "KCSAN: {kind} in {frame}", DATA_RACE, trace_after_header=True),
    _pattern(r"UBSAN: Undefined behaviour in", "UBSAN: undefined-behaviour in {frame}", UNDEFINED_BEHAVIOUR),
    _pattern(r"UBSAN: (?P<kind>[\w-]+) in", "UBSAN: {kind} in {frame}", UNDEFINED_BEHAVIOUR, alt_title=BAD_ACCESS),
    # Oopses.
    _pattern(OOPS + r"general protection fault", "general protection fault in {frame}", DOS, alt_title=BAD_ACCESS),
    _pattern(r"(?:BUG: unable to handle kernel |BUG: kernel |Unable to handle kernel )NULL pointer dereference",
             "BUG: unable to handle kernel NULL pointer dereference in {frame}", MEMORY_SAFETY_BUG,
             alt_title=BAD_ACCESS),
    _pattern(r"BUG: unable to handle (?:kernel paging request|page fault for address)"
             r"|Unable to handle kernel (?:paging request|access to user memory)",
             "BUG: unable to handle kernel paging request in {frame}", MEMORY_SAFETY_BUG, alt_title=BAD_ACCESS),
    _pattern(r"usercopy: [Kk]ernel memory (?:exposure|overwrite) attempt|kernel BUG at mm/usercopy\.c:",
             "BUG: bad usercopy in {frame}", BUG),
    _pattern(r"kernel BUG at ", "kernel BUG in {frame}", BUG),
    _pattern(OOPS + r"divide error:", "divide error in {frame}", DOS),
    _pattern(OOPS + r"invalid opcode:", "invalid opcode in {frame}", DOS),
    _pattern(r"PANIC: double fault", "PANIC: double fault in {frame}", DOS),
    _pattern(r"BUG: (?:TASK )?stack guard page was hit", "BUG: stack guard page was hit in {frame}", DOS,
             alt_title="stack-overflow in {frame}"),
    _pattern(r"Unhandled fault:", "Unhandled fault in {frame}", DOS, alt_title=BAD_ACCESS),
    # Warnings; the specific ones are told apart by the line before the WARN() header or by
    # the file the header points at.
    _pattern(r"ODEBUG: ", "WARNING: ODEBUG bug in {frame}", WARNING),
    _pattern(r"refcount_t: ", "WARNING: refcount bug in {frame}", WARNING),
    _pattern(_warning_at(r"lib/refcount\.c"), "WARNING: refcount bug in {frame}", WARNING),
    _pattern(_warning_at(r"kernel/locking/lockdep\.c"), "WARNING: locking bug in {frame}", LOCKING_BUG),
    _pattern(_warning_at(r"mm/slab_common\.c") + r" kmalloc", "WARNING: kmalloc bug in {frame}", WARNING),
    _pattern(r"proc_dir_entry '.*' already registered", "WARNING: proc registration bug in {frame}", WARNING),
    _pattern(r"WARNING: kernel stack regs at .* has bad 'bp' value",
             "WARNING: kernel stack regs has bad 'bp' value", WARNING),
    _pattern(r"WARNING: (?:CPU: \d+ PID: \d+ at |\S+:\d+ at )", "WARNING in {frame}", WARNING),
    # Lock debugging.
    _pattern(r"(?:WARNING|\[ INFO): possible (?:circular locking dependency|recursive locking) detected"
             r"|(?:WARNING|\[ INFO): \S+-safe -> \S+-unsafe lock order detected",
             "possible deadlock in {frame}", LOCKING_BUG),
    _pattern(r"(?:WARNING|\[ INFO): inconsistent lock state", "inconsistent lock state in {frame}", LOCKING_BUG),
    _pattern(r"(?:\[ )?(?P<level>BUG|WARNING|INFO): (?P<what>bad unlock balance|held lock freed|"
             r"suspicious RCU usage|possible irq lock inversion dependency)",
             "{level}: {what} in {frame}", LOCKING_BUG),
    _pattern(r"WARNING: [Nn]ested lock was not taken", "WARNING: nested lock was not taken in {frame}", LOCKING_BUG),
    _pattern(r"WARNING: lock held when returning to user space", "WARNING: lock held when returning to user space"
             " in {frame}", LOCKING_BUG),
    _pattern(r"INFO: trying to register non-static key", "INFO: trying to register non-static key in {frame}",
             LOCKING_BUG),
    _pattern(r"BUG: (?P<lock>spinlock|rwlock) (?P<what>[\w ]+?) on CPU", "BUG: {lock} {what} in {frame}",
             LOCKING_BUG),
    _pattern(r"BUG: using (?P<func>\w+\(\)) in preemptible", "BUG: using {func} in preemptible code in {frame}",
             LOCKING_BUG),
    _pattern(r"BUG: sleeping function called from invalid context",
             "BUG: sleeping function called from invalid context in {frame}", ATOMIC_SLEEP),
    _pattern(r"BUG: scheduling while atomic", "BUG: scheduling while atomic in {frame}", ATOMIC_SLEEP),
    # Hangs and stalls.
    _pattern(r"INFO: task .* blocked (?:in I/O wait )?for more than", "INFO: task hung in {frame}", HANG,
             alt_title="hang in {frame}"),
    _pattern(r"(?:rcu: )?INFO: rcu_\w+ (?:self-)?detected (?:expedited )?stalls?",
             "INFO: rcu detected stall in {frame}", HANG, alt_title="stall in {frame}", culprit="stall"),
    _pattern(r"(?:watchdog: )?BUG: soft lockup", "BUG: soft lockup in {frame}", HANG,
             alt_title="stall in {frame}", culprit="lockup"),
    _pattern(r"BUG: workqueue lockup", "BUG: workqueue lockup", HANG),
    # Memory leaks (kmemleak), page state, panics.
    _pattern(r"BUG: memory leak", "memory leak in {frame}", LEAK),
    _pattern(r"BUG: Bad page (?P<what>state|map)", "BUG: Bad page {what} in {frame}", MEMORY_SAFETY_BUG),
    _pattern(r"BUG: Dentry .* still in use", "BUG: Dentry still in use in {frame}", BUG),
    _pattern(r"Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: (?P<func>\S+)",
             "kernel panic: stack is corrupted in {func}", DOS),
    _pattern(r"Kernel panic - not syncing: corrupted stack end", "kernel panic: corrupted stack end in {frame}",
             DOS, alt_title="stack-overflow in {frame}"),
    # The device instance and errno a panic message ends with vary from run to run
    # (`Couldn't open N_TTY ldisc for ptm1 --- error -12.`).
    _pattern(r"Kernel panic - not syncing: (?P<message>.+?)(?: for [a-z]+\d+)?(?: --- error -?\d+\.?)?\s*$",
             "kernel panic: {message}", DOS),
)
