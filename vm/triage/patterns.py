"""The table of kernel report formats: how each is recognised, titled and found damaged.

Titles follow syzkaller's convention, so a finding dedups against syzbot and kernel CI.

A report starts at the first console line that holds one of the `ReportKind.header` strings
(the words the kernel's reporting code prints first: `BUG:`, `WARNING:`, `Kernel panic`, ...).
Within a kind, the format whose `title` regex matches earliest in the report text wins (the
first listed on a tie). A format's `details` must match too, or the report is damaged; the
named groups of both fill the template. `{frame}` (and `{frame2}` for a second stack) is the
culprit read from the report by the format's `StackRule`:

- `parts` are matched in order, line by line: a regex moves past the first line it matches
  (its capture groups are candidate frames, e.g. the function in `RIP: 0010:func+0x1a/0x2b`),
  and READ_STACK collects the frames of the stack listing that follows (until the next listing
  starts, or the next part matches);
- candidates are passed over if they match vm.triage.frames.SKIPPED_FRAMES or the format's
  own `skip`; of the rest, `culprit` picks one ("first", or see vm.triage.report for "stall"
  and "hang");
- if no frame is left the title says `corrupted`; `fallback_parts` are tried before that.

Every pattern here is written from what the kernel prints (mm/kasan/report.c, lib/bug.c,
kernel/panic.c, kernel/locking/lockdep.c, kernel/hung_task.c, kernel/rcu/tree_stall.h,
mm/kmemleak.c, lib/ubsan.c, kernel/kcsan/report.c, arch/*/kernel/traps.c and fault.c).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from zcfuzz.vm.triage.frames import FUNC, INSTRUCTION_POINTER, PC, SRC

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
FUZZER_FAILURE = "SYZ_FAILURE"
REBOOT = "REBOOT"

# Marks the place in `StackRule.parts` where a stack listing is read.
READ_STACK = None

CALL_TRACE = re.compile(r"Call [Tt]race:|Backtrace:")
# What a kernel built out of its source tree (make O=..., or with an absolute source path)
# prints before every __FILE__: `kernel BUG at ../src/lib/list_debug.c:29!`. A header that names
# a source file matches it from the tree's root, whatever path led there.
SOURCE_ROOT = r"(?:(?:\.\./|/)[^\s:]*?/)?"
# `at: func+0x1a/0x2b`: where lockdep saw a lock taken.
LOCK_SITE = re.compile(rf"at: (?:{PC} +)?{FUNC}")


def named_func(name: str) -> str:
    """FUNC with its name captured as group `name`."""
    return rf"(?P<{name}>[a-zA-Z0-9_]+)(?:\.|\+)"


@dataclass(frozen=True)
class StackRule:
    """Where in a report the culprit frame is found; see the module docstring."""

    parts: tuple[re.Pattern | None, ...]
    fallback_parts: tuple[re.Pattern | None, ...] = ()
    # Frames passed over in this kind of report only, and why.
    skip: tuple[str, ...] = ()
    skip_reason: str = ""
    culprit: str = "first"


@dataclass(frozen=True)
class ReportFormat:
    title: re.Pattern
    template: str
    type: str
    details: re.Pattern | None = None
    alt_titles: tuple[str, ...] = ()
    stack: StackRule | None = None
    # False for reports the kernel prints without a stack (KCSAN prints its own short ones,
    # SYZFAIL comes from user space): a missing `Call Trace:` does not damage them.
    has_stack_trace: bool = True
    # A format that only matches what is left of a damaged header.
    corrupted: bool = False


@dataclass(frozen=True)
class ReportKind:
    header: str
    formats: tuple[ReportFormat, ...]
    # Lines holding the header that are not kernel reports.
    not_reports: tuple[re.Pattern, ...] = field(default=())

    def starts(self, line: str) -> bool:
        return self.header in line and not any(p.search(line) for p in self.not_reports)


def _fmt(title: str, template: str, type: str, *, details: str | None = None, **options) -> ReportFormat:
    return ReportFormat(
        title=re.compile(title), template=template, type=type,
        details=re.compile(details) if details else None, **options,
    )


def _stack(*parts, fallback_parts=(), skip=(), skip_reason="", culprit="first") -> StackRule:
    def compiled(items):
        return tuple(re.compile(p) if isinstance(p, str) else p for p in items)
    return StackRule(compiled(parts), compiled(fallback_parts), tuple(skip), skip_reason, culprit)


def _lines(*patterns: str) -> tuple[re.Pattern, ...]:
    return tuple(re.compile(p) for p in patterns)


# Oopses: the faulting instruction names the culprit; the trace below it is read if that
# function is a helper.
FAULT_STACK = _stack(INSTRUCTION_POINTER, CALL_TRACE, READ_STACK)
TRACE_STACK = _stack(CALL_TRACE, READ_STACK)
# Lines of a multi-line report header: `(?:.*\n)+?` crosses lines up to the next thing named.
ACROSS = r"(?:.*\n)+?"


def _warning_stack(*skip: str, reason: str = "") -> StackRule:
    """A WARN() trap prints the registers (x86 `RIP:`, powerpc `--- interrupt:`) of the warning
    site and then its stack; older kernels print only the stack."""
    return _stack(
        re.compile(rf"(?:{INSTRUCTION_POINTER.pattern}|--- interrupt: [0-9]+ at {FUNC})"), READ_STACK,
        fallback_parts=(CALL_TRACE, READ_STACK), skip=skip, skip_reason=reason,
    )


# A stall is reported from the timer interrupt: the looping code is below its entry.
STALL_STACK = _stack(
    "apic_timer_interrupt", INSTRUCTION_POINTER, READ_STACK,
    fallback_parts=("apic_timer_interrupt|Exception stack|el1h_64_irq", READ_STACK),
    skip=("apic_timer_interrupt", "rcu"), skip_reason="the timer interrupt and RCU report the stall",
    culprit="stall",
)

KASAN_ACCESS = r"BUG: KASAN: (?:[a-z\-]+) in " + FUNC
KASAN_FREE = r"BUG: KASAN: (?:double-free or invalid-free|double-free|invalid-free) in " + FUNC
KMSAN_STACKS = (READ_STACK, r"(?:Local variable .* created at:|Uninit was created at:)", READ_STACK)
KFENCE_HEADER = r"BUG: KFENCE: (?:[a-z\- ]+) in " + FUNC

BUG_REPORTS = ReportKind("BUG:", (
    _fmt(r"BUG: KASAN:", "KASAN: {kind} {access} in {frame}", MEMORY_SAFETY_BUG,
         details=rf"BUG: KASAN: (?P<kind>[a-z\-]+) in {FUNC}{ACROSS}"
                 r".*(?P<access>Read|Write) (?:of size|at addr) [0-9a-f]+",
         alt_titles=("bad-access in {frame}",),
         stack=_stack(KASAN_ACCESS, CALL_TRACE, READ_STACK,
                      skip=("kernel_fault", "tag_check", "mem_abort", "^el1_", "^el1h_"),
                      skip_reason="arm64 hardware-tag faults arrive through the fault handlers")),
    _fmt(r"BUG: KASAN:", "KASAN: invalid-free in {frame}", MEMORY_SAFETY_BUG, details=KASAN_FREE,
         alt_titles=("invalid-free in {frame}",),
         stack=_stack(KASAN_FREE, CALL_TRACE, READ_STACK, skip=("slab_", "kfree", "vunmap", "vfree"),
                      skip_reason="the free routines: the bad free is their caller's")),
    # Kernels before 4.x printed no function in the header, only the address.
    _fmt(rf"BUG: KASAN: (?P<kind>[a-z\-]+) on address{ACROSS}.*(?P<access>Read|Write) of size [0-9]+",
         "KASAN: {kind} {access}", MEMORY_SAFETY_BUG),
    _fmt(r"BUG: KASAN: (?P<what>.*)", "KASAN: {what}", MEMORY_SAFETY_BUG, corrupted=True),
    _fmt(r"BUG: KMSAN: kernel-usb-infoleak", "KMSAN: kernel-usb-infoleak in {frame}", MEMORY_SAFETY_BUG,
         details=rf"BUG: KMSAN: kernel-usb-infoleak in {FUNC}", alt_titles=("KMSAN origin in {frame2}",),
         stack=_stack(*KMSAN_STACKS, skip=("alloc_skb", "usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg",
                                           "usb_interrupt_msg", "usb_control_msg"),
                      skip_reason="USB transfer helpers: the driver that sent the data leaked it"),
         has_stack_trace=False),
    _fmt(r"BUG: KMSAN:", "KMSAN: {kind} in {frame}", MEMORY_SAFETY_BUG,
         details=rf"BUG: KMSAN: (?P<kind>[a-z\-]+) in {FUNC}", alt_titles=("bad-access in {frame}",),
         stack=_stack(*KMSAN_STACKS, skip=("alloc_skb", "netlink_ack", "netlink_rcv_skb", "_encrypt$",
                                           "^(?:crypto|cipher|drbg|rng)_"),
                      skip_reason="generic skb and crypto code uses what its caller failed to set"),
         has_stack_trace=False),
    # KCSAN names both racing functions in its header; its stacks have no `Call Trace:`.
    _fmt(r"BUG: KCSAN: data-race", "KCSAN: {what}", DATA_RACE, details=r"BUG: KCSAN: (?P<what>.*)",
         has_stack_trace=False),
    _fmt(r"BUG: KCSAN:", "KCSAN: {what}", DATA_RACE, details=r"BUG: KCSAN: (?P<what>.*)", has_stack_trace=False),
    _fmt(rf"BUG: KFENCE: (?P<kind>use-after-free|out-of-bounds) (?P<access>read|write) in {FUNC}",
         "KFENCE: {kind} {access} in {frame}", MEMORY_SAFETY_BUG, alt_titles=("bad-access in {frame}",),
         stack=_stack(KFENCE_HEADER, READ_STACK)),
    _fmt(rf"BUG: KFENCE: invalid free in {FUNC}", "KFENCE: invalid free in {frame}", MEMORY_SAFETY_BUG,
         alt_titles=("invalid-free in {frame}",), stack=_stack(KFENCE_HEADER, READ_STACK), has_stack_trace=False),
    _fmt(rf"BUG: KFENCE: invalid (?P<access>read|write) in {FUNC}", "KFENCE: invalid {access} in {frame}",
         MEMORY_SAFETY_BUG, alt_titles=("bad-access in {frame}",), stack=_stack(KFENCE_HEADER, READ_STACK)),
    _fmt(rf"BUG: KFENCE: memory corruption in {FUNC}", "KFENCE: memory corruption in {frame}", MEMORY_SAFETY_BUG,
         stack=_stack(KFENCE_HEADER, READ_STACK), has_stack_trace=False),
    _fmt(r"BUG: (?:unable to handle kernel paging request|unable to handle page fault for address"
         r"|Unable to handle kernel data access)",
         "BUG: unable to handle kernel paging request in {frame}", MEMORY_SAFETY_BUG,
         alt_titles=("bad-access in {frame}",), stack=FAULT_STACK),
    _fmt(r"BUG: (?:unable to handle kernel NULL pointer dereference|kernel NULL pointer dereference"
         r"|Kernel NULL pointer dereference)",
         "BUG: unable to handle kernel NULL pointer dereference in {frame}", MEMORY_SAFETY_BUG,
         alt_titles=("bad-access in {frame}",), stack=FAULT_STACK),
    # The x86 page-fault oops prints its header in two printk() calls; the second can be lost.
    _fmt(r"BUG: (?:unable to handle kernel|Unable to handle kernel)", "BUG: unable to handle kernel",
         MEMORY_SAFETY_BUG, corrupted=True),
    _fmt(r"BUG: (?P<lock>spinlock|rwlock) (?P<what>lockup suspected|already unlocked|recursion|cpu recursion"
         r"|bad magic|wrong owner|wrong CPU|trylock failure on UP)",
         "BUG: {lock} {what} in {frame}", LOCKING_BUG,
         stack=_stack(CALL_TRACE, READ_STACK, skip=("spin_", "_lock", "_unlock"),
                      skip_reason="the spinlock debug checks and lock wrappers")),
    _fmt(r"BUG: soft lockup", "BUG: soft lockup in {frame}", HANG, alt_titles=("stall in {frame}",),
         stack=_stack(INSTRUCTION_POINTER, CALL_TRACE, READ_STACK, culprit="stall")),
    # lockdep's debug_show_held_locks(): `#0: ffff... (lock){....}, at: [<...>] func+0x..`.
    _fmt(r"BUG: .*still has locks held!", "BUG: still has locks held in {func}", LOCKING_BUG,
         details=rf"BUG: .*still has locks held!{ACROSS}.*{PC} +{named_func('func')}"),
    _fmt(r"BUG: scheduling while atomic", "BUG: scheduling while atomic in {frame}", ATOMIC_SLEEP,
         stack=_stack(CALL_TRACE, READ_STACK, skip=("schedule",), skip_reason="where it was noticed")),
    _fmt(r"BUG: lock held when returning to user space", "BUG: lock held when returning to user space in {func}",
         LOCKING_BUG, has_stack_trace=False,
         details=rf"BUG: lock held when returning to user space{ACROSS}.*leaving the kernel with locks still held"
                 rf"{ACROSS}.*at: (?:{PC} +)?{named_func('func')}"),
    _fmt(r"BUG: bad unlock balance detected!", "BUG: bad unlock balance in {frame}", LOCKING_BUG,
         stack=_stack(rf"{PC} +{FUNC}", CALL_TRACE, READ_STACK)),
    _fmt(r"BUG: held lock freed!", "BUG: held lock freed in {func}", LOCKING_BUG,
         details=rf"BUG: held lock freed!{ACROSS}.*{PC} +{named_func('func')}"),
    _fmt(r"BUG: Bad rss-counter state", "BUG: Bad rss-counter state", BUG, has_stack_trace=False),
    _fmt(r"BUG: non-zero nr_ptes on freeing mm", "BUG: non-zero nr_ptes on freeing mm", BUG, has_stack_trace=False),
    _fmt(r"BUG: non-zero nr_pmds on freeing mm", "BUG: non-zero nr_pmds on freeing mm", BUG, has_stack_trace=False),
    # The filesystem type and the block device (loop0, loop1, ...) are not part of the bug.
    _fmt(r"BUG: Dentry .* still in use", "BUG: Dentry still in use in {op}", BUG,
         details=r"BUG: Dentry .* still in use \([0-9]+\) \[(?P<op>unmount) of (?P<fs>[^\]]+)\]",
         alt_titles=("BUG: Dentry still in use [{op} of {fs}]",)),
    # The page's allocation stack (page_owner) says whose page it was.
    _fmt(r"BUG: Bad page (?P<what>state|cache)", "BUG: Bad page {what} in {frame}", MEMORY_SAFETY_BUG,
         stack=_stack("page last allocated", READ_STACK,
                      skip=("(?:free|put|get|update|release)_page", "free_unref", "^_*folio", "truncate_inode_pages",
                            "page_frag_free", "alloc", "vmap", "page_owner"),
                      skip_reason="page allocation and release paths every page goes through")),
    _fmt(r"BUG: Bad page map", "BUG: Bad page map", MEMORY_SAFETY_BUG),
    _fmt(r"BUG: workqueue lockup", "BUG: workqueue lockup", HANG, has_stack_trace=False),
    _fmt(r"BUG: sleeping function called from invalid context at (?P<where>.*)",
         "BUG: sleeping function called from invalid context in {frame}", ATOMIC_SLEEP, stack=TRACE_STACK),
    _fmt(r"BUG: using (?P<func>[a-z_]+)\(\) in preemptible", "BUG: using {func}() in preemptible code in {frame}",
         LOCKING_BUG,
         stack=_stack(CALL_TRACE, READ_STACK,
                      skip=("dump_stack", "preemption", "preempt", "debug_", "processor_id", "this_cpu"),
                      skip_reason="the preemption check and the per-CPU accessor it guards")),
    _fmt(r"BUG: workqueue leaked lock or atomic", "BUG: workqueue leaked lock or atomic in {func}", LOCKING_BUG,
         details=rf"BUG: workqueue leaked lock or atomic{ACROSS}.*last function: (?P<func>[a-zA-Z0-9_]+)\n",
         has_stack_trace=False),
    # kmemleak prints the allocation's stack; its caller, not the allocator, leaked it.
    _fmt(r"BUG: memory leak", "memory leak in {frame}", LEAK,
         stack=_stack(r"backtrace(?: \(crc [0-9a-fA-F]*\))?:", READ_STACK,
                      skip=("kmemleak", "mmap", "kmem", "slab", "alloc", "create_object", "idr_get", "list_lru_init",
                            "kasprintf", "kvasprintf", "pcpu_create", "strdup", "strndup", "memdup"),
                      skip_reason="allocators and allocating wrappers")),
    _fmt(r"BUG: .*stack guard page was hit at", "BUG: stack guard page was hit in {frame}", DOS,
         alt_titles=("stack-overflow in {frame}",),
         stack=_stack(INSTRUCTION_POINTER, CALL_TRACE, READ_STACK, culprit="stall")),
    # arm and arm64 report this lockdep check under its own name; x86 as a lockdep WARNING.
    _fmt(r"BUG: Invalid wait context", "WARNING: locking bug in {frame}", LOCKING_BUG,
         stack=_stack(CALL_TRACE, READ_STACK, skip=("lock_sock", "release_sock"),
                      skip_reason="socket lock wrappers")),
    _fmt(r"BUG:\s*(?:\n|$)", "BUG: corrupted", BUG, corrupted=True),
), _lines(
    r"ODEBUG:",  # the line before a debugobjects WARNING, which is the report
    r"Boot_DEBUG:", r"xlog_status:", r"DEBUG:",  # Android boot and ART debug output
    r"BUG: no syscalls can create resource",  # the fuzzer's own debug output
))


def _warning_at(path: str, site: str) -> str:
    """A WARN() header at `path`: `WARNING: CPU: 1 PID: 2 at lib/refcount.c:28 func+0x..` (up to
    6.14) or `WARNING: lib/refcount.c:28 at func+0x.., CPU#1: comm/2` (6.15 on)."""
    return rf"WARNING: .*{path}.* (?:{site}|at)"


WARNING_REPORTS = ReportKind("WARNING:", (
    _fmt(_warning_at(r"lib/debugobjects\.c", "debug_print|debug_check"), "WARNING: ODEBUG bug in {frame}", WARNING,
         stack=_warning_stack("debug_", "rcu", "hrtimer_", "timer_", "work_", "percpu_", "vunmap", "vfree", "__free_",
                              "debug_check", "kobject_",
                              reason="debugobjects' users: timers, work, RCU heads, freeing")),
    _fmt(_warning_at(r"mm/usercopy\.c", "usercopy_warn"), "WARNING: bad usercopy in {frame}", WARNING,
         stack=_warning_stack("usercopy", "__check", reason="the hardened-usercopy checks")),
    _fmt(_warning_at(r"lib/kobject\.c", "kobject_"), "WARNING: kobject bug in {frame}", WARNING,
         stack=_warning_stack("kobject_", reason="the kobject core")),
    _fmt(_warning_at(r"fs/proc/generic\.c", "proc_register"), "WARNING: proc registration bug in {frame}", WARNING,
         stack=_warning_stack("proc_", reason="procfs registration")),
    _fmt(_warning_at(r"lib/refcount\.c", "refcount_"), "WARNING: refcount bug in {frame}", WARNING,
         stack=_warning_stack("refcount", "kobject_", reason="refcount and kobject get/put")),
    _fmt(r"WARNING: .*kernel/locking/lockdep\.c.*lock_", "WARNING: locking bug in {frame}", LOCKING_BUG,
         stack=_warning_stack("lock_sock", "release_sock", reason="socket lock wrappers")),
    _fmt(r"WARNING: .*still has locks held!", "WARNING: still has locks held in {func}", LOCKING_BUG,
         details=rf"WARNING: .*still has locks held!{ACROSS}.*at: {named_func('func')}"),
    _fmt(r"WARNING: Nested lock was not taken", "WARNING: nested lock was not taken in {frame}", LOCKING_BUG,
         stack=_warning_stack()),
    _fmt(r"WARNING: lock held when returning to user space",
         "WARNING: lock held when returning to user space in {func}",
         LOCKING_BUG, has_stack_trace=False,
         details=rf"WARNING: lock held when returning to user space{ACROSS}.*leaving the kernel with locks still held"
                 rf"{ACROSS}.*at: (?:{PC} +)?{named_func('func')}"),
    _fmt(r"WARNING: .*mm/.*\.c.* k?.?malloc", "WARNING: kmalloc bug in {frame}", WARNING,
         stack=_warning_stack("kmalloc", "krealloc", "slab", "kmem", reason="the slab allocator")),
    _fmt(r"WARNING: .*mm/vmalloc.c.*__vmalloc_node", "WARNING: zero-size vmalloc in {frame}", WARNING,
         stack=_warning_stack()),
    # usb_submit_urb() WARNs on a urb its driver built wrong: the title names both.
    _fmt(r"WARNING: .* usb_submit_urb", "WARNING in {frame}/usb_submit_urb", WARNING,
         stack=_warning_stack("usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg", "usb_interrupt_msg",
                              "usb_control_msg", reason="the USB transfer helpers")),
    _fmt(rf"WARNING: {SRC} at 0x\d+, CPU#\d+", "WARNING in {frame}", WARNING, stack=_warning_stack()),
    _fmt(rf"WARNING: .* at {SRC} {FUNC}", "WARNING in {frame}", WARNING, stack=_warning_stack()),
    _fmt(rf"WARNING: {SRC} at {FUNC}", "WARNING in {frame}", WARNING, stack=_warning_stack()),
    _fmt(rf"WARNING: \[.*\] {SRC} at {FUNC}.*", "WARNING in {frame}", WARNING, stack=_warning_stack()),
    # lockdep: the lock being taken (`is trying to acquire lock: ... at: func`) names the bug.
    _fmt(r"WARNING: possible circular locking dependency detected", "possible deadlock in {frame}", LOCKING_BUG,
         details=rf"WARNING: possible circular locking dependency detected{ACROSS}.*is trying to acquire lock",
         stack=_stack(LOCK_SITE, LOCK_SITE, READ_STACK,
                      skip=("process_one_work", "flush_workqueue", "drain_workqueue", "destroy_workqueue"),
                      skip_reason="workqueue code takes the lockdep map of the work item it runs or flushes")),
    _fmt(r"WARNING: possible irq lock inversion dependency detected", "possible deadlock in {func}", LOCKING_BUG,
         details=rf"WARNING: possible irq lock inversion dependency detected{ACROSS}.*just changed the state of lock"
                 rf"{ACROSS}.*at: (?:{PC} +)?{named_func('func')}"),
    _fmt(r"WARNING: .*-safe -> .*-unsafe lock order detected", "possible deadlock in {frame}", LOCKING_BUG,
         stack=_stack(r"which became (?:.*) at:", READ_STACK)),
    _fmt(r"WARNING: possible recursive locking detected", "possible deadlock in {func}", LOCKING_BUG,
         details=rf"WARNING: possible recursive locking detected{ACROSS}.*is trying to acquire lock"
                 rf"{ACROSS}.*at: (?:{PC} +)?{named_func('func')}"),
    _fmt(r"WARNING: inconsistent lock state", "inconsistent lock state in {frame}", LOCKING_BUG,
         details=rf"WARNING: inconsistent lock state{ACROSS}.*takes{ACROSS}.*at: (?:{PC} +)?{FUNC}",
         stack=TRACE_STACK),
    _fmt(r"WARNING: suspicious RCU usage", "WARNING: suspicious RCU usage in {frame}", LOCKING_BUG,
         details=rf"WARNING: suspicious RCU usage{ACROSS}.*?{SRC}",
         stack=_stack(CALL_TRACE, READ_STACK, skip=("rcu", "kmem", "slab"),
                      skip_reason="RCU's own lockdep checks and the allocators that run them")),
    _fmt(r"WARNING: kernel stack regs at [0-9a-f]+ in [^ ]* has bad '(?P<reg>[^']+)' value",
         "WARNING: kernel stack regs has bad '{reg}' value", WARNING, has_stack_trace=False),
    _fmt(r"WARNING: kernel stack frame pointer at [0-9a-f]+ in [^ ]* has bad value",
         "WARNING: kernel stack frame pointer has bad value", WARNING, has_stack_trace=False),
    _fmt(r"WARNING: bad unlock balance detected!", "WARNING: bad unlock balance in {frame}", LOCKING_BUG,
         stack=_stack(rf"{PC} +{FUNC}", CALL_TRACE, READ_STACK)),
    _fmt(r"WARNING: held lock freed!", "WARNING: held lock freed in {func}", LOCKING_BUG,
         details=rf"WARNING: held lock freed!{ACROSS}.*at:(?: {PC})? +{named_func('func')}"),
    _fmt(r"WARNING: kernel stack regs .* has bad 'bp' value", "WARNING: kernel stack regs has bad value", WARNING,
         has_stack_trace=False),
    _fmt(r"WARNING: kernel stack frame pointer .* has bad value", "WARNING: kernel stack regs has bad value",
         WARNING, has_stack_trace=False),
    _fmt(r"WARNING:\s*(?:\n|$)", "WARNING: corrupted", WARNING, corrupted=True),
), _lines(
    # Messages that say WARNING without a WARN() behind them.
    r"WARNING: /etc/ssh/moduli does not exist, using fixed modulus",
    r"WARNING: workqueue cpumask: online intersect",
    r"WARNING: [Tt]he mand mount option",
    r"WARNING: Unsupported flag value\(s\) of 0x%x in DT_FLAGS_1",
    r"WARNING: Unprivileged eBPF is enabled with eIBRS",
    r"WARNING: fbcon: Driver '(.*)' missed to adjust virtual screen size",
    r"WARNING: See https.* for mitigation options.",
    r"WARNING: kernel not compiled with CPU_SRSO",
    r"EXT4-[Ff][Ss](?: \(.*\))?:",
    r"(?i)warning: .* uses (?:deprecated v2 capabilities|wireless extensions)",
    r"XFS \(\w+\): WARNING",
))

# Lockdep before 4.13 printed `[ INFO: possible circular locking dependency detected ]`.
OLD_LOCKDEP = rf"{ACROSS}.*at: {PC} +{named_func('func')}"

INFO_REPORTS = ReportKind("INFO:", (
    _fmt(r"INFO: possible circular locking dependency detected", "possible deadlock in {func}", LOCKING_BUG,
         details=r"INFO: possible circular locking dependency detected \]" + ACROSS + ".*is trying to acquire lock"
                 + OLD_LOCKDEP),
    _fmt(r"INFO: possible irq lock inversion dependency detected", "possible deadlock in {func}", LOCKING_BUG,
         details=r"INFO: possible irq lock inversion dependency detected \]" + ACROSS
                 + ".*just changed the state of lock" + OLD_LOCKDEP),
    _fmt(r"INFO: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected", "possible deadlock in {func}", LOCKING_BUG,
         details=r"INFO: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected \]" + ACROSS + ".*is trying to acquire"
                 + OLD_LOCKDEP),
    _fmt(r"INFO: possible recursive locking detected", "possible deadlock in {func}", LOCKING_BUG,
         details=r"INFO: possible recursive locking detected \]" + ACROSS + ".*is trying to acquire lock"
                 + OLD_LOCKDEP),
    _fmt(r"INFO: inconsistent lock state", "inconsistent lock state in {func}", LOCKING_BUG,
         details=r"INFO: inconsistent lock state \]" + ACROSS + ".*takes" + OLD_LOCKDEP),
    _fmt(r"INFO: rcu_(?:preempt|sched|bh|tasks) (?:self-)?detected(?: expedited)? stall",
         "INFO: rcu detected stall in {frame}", HANG, alt_titles=("stall in {frame}",), stack=STALL_STACK),
    _fmt(r"INFO: trying to register non-static key", "INFO: trying to register non-static key in {frame}",
         LOCKING_BUG,
         stack=_stack(CALL_TRACE, READ_STACK, skip=("stack", "lock", "IRQ"),
                      skip_reason="lockdep's key registration and the lock calls that reach it")),
    _fmt(r"INFO: suspicious RCU usage", "INFO: suspicious RCU usage in {frame}", LOCKING_BUG,
         details=rf"INFO: suspicious RCU usage{ACROSS}.*?{SRC}",
         stack=_stack(CALL_TRACE, READ_STACK, skip=("rcu", "kmem", "slab"),
                      skip_reason="RCU's own lockdep checks and the allocators that run them")),
    _fmt(r"INFO: task [\s\S]{0,100}? blocked (?:in I/O wait )?for more than [0-9]+ seconds",
         "INFO: task hung in {frame}", HANG, alt_titles=("hang in {frame}",),
         stack=_stack(CALL_TRACE, READ_STACK, culprit="hang")),
    _fmt(r"INFO: task [\s\S]{0,100}? can't die for more than .* seconds", "INFO: task can't die in {frame}", HANG,
         alt_titles=("hang in {frame}",),
         stack=_stack(CALL_TRACE, READ_STACK, skip=("schedule",), skip_reason="where it sleeps")),
    # What is left of an old KASAN report whose header was lost.
    _fmt(r"INFO: (?P<what>Freed|Allocated) in (?P<where>.*)", "INFO: {what} in {where}", MEMORY_SAFETY_BUG,
         corrupted=True),
    _fmt(r"INFO:\s*(?:\n|$)", "INFO: corrupted", BUG, corrupted=True),
), _lines(
    r"INFO: lockdep is turned off", r"INFO: Stall ended before state dump start", r"INFO: NMI handler",
    r"INFO: recovery required on readonly filesystem", r"(?:handler|interrupt).*took too long",
    r"INFO: sys_.* is not present in /proc/kallsyms", r"INFO: no syscalls can create resource",
    r"rmt_storage:INFO:", r"_INFO:",
))


def _fault(header: str, template: str, type: str, alt: str | None = "bad-access in {frame}",
           stack: StackRule = FAULT_STACK) -> ReportKind:
    """An oops whose header is its only line of its kind: the faulting instruction names it."""
    return ReportKind(header, (
        _fmt(re.escape(header), template, type, alt_titles=(alt,) if alt else (), stack=stack),
    ))


def _fixed(header: str, title: str, type: str, pattern: str | None = None) -> ReportKind:
    """A report with a fixed title and no stack of its own."""
    return ReportKind(header, (
        _fmt(pattern or re.escape(header), title, type, has_stack_trace=False),
    ))


KERNEL_PANIC = "Kernel panic - not syncing: "

PANIC_REPORTS = ReportKind("Kernel panic", (
    # CONFIG_STACKPROTECTOR: __stack_chk_fail() names the function whose canary died, when
    # the symbol survived; else the stack says where.
    _fmt(KERNEL_PANIC + "stack-protector:", "kernel panic: stack is corrupted in {func}", DOS,
         details=KERNEL_PANIC + r"stack-protector: Kernel stack is corrupted in: " + named_func("func"),
         has_stack_trace=False),
    _fmt(KERNEL_PANIC + "stack-protector:", "kernel panic: stack is corrupted in {frame}", DOS,
         details=KERNEL_PANIC + r"stack-protector: Kernel stack is corrupted in: [a-f0-9]+",
         stack=_stack(CALL_TRACE, READ_STACK, skip=("stack_chk",), skip_reason="the canary check")),
    _fmt(KERNEL_PANIC + "corrupted stack end", "kernel panic: corrupted stack end in {frame}", DOS,
         details=KERNEL_PANIC + "corrupted stack end detected inside scheduler",
         alt_titles=("stack-overflow in {frame}",),
         stack=_stack(CALL_TRACE, READ_STACK, skip=("schedule", "retint_kernel"),
                      skip_reason="the scheduler that noticed", culprit="stall")),
    _fmt(KERNEL_PANIC + "kernel stack overflow", "kernel stack overflow in {frame}", DOS,
         alt_titles=("stack-overflow in {frame}",),
         stack=_stack(CALL_TRACE, READ_STACK, skip=("bad_stack",), skip_reason="the overflow handler",
                      culprit="stall")),
    # The exit code and the tty are of this run only.
    _fmt(KERNEL_PANIC + "Attempted to kill init!", "kernel panic: Attempted to kill init!", DOS),
    _fmt(KERNEL_PANIC + r"Couldn't open N_TTY ldisc for [^ ]+ --- error -[0-9]+",
         "kernel panic: Couldn't open N_TTY ldisc", DOS),
    # panic() after an oops, a WARN (panic_on_warn) or a hung task: the report that caused it
    # was printed before; if it is not in the log, the log is damaged.
    _fmt(KERNEL_PANIC + "Fatal exception", "kernel panic: Fatal exception", DOS, corrupted=True),
    _fmt(KERNEL_PANIC + "panic_on_warn set", "kernel panic: panic_on_warn set", DOS, corrupted=True),
    _fmt(KERNEL_PANIC + "hung_task: blocked tasks", "kernel panic: hung_task: blocked tasks", DOS, corrupted=True),
    _fmt(KERNEL_PANIC + "(?P<message>.*)", "kernel panic: {message}", DOS),
))

KERNEL_BUG_REPORTS = ReportKind("kernel BUG", (
    _fmt(rf"kernel BUG at {SOURCE_ROOT}mm/usercopy\.c", "BUG: bad usercopy in {frame}", BUG,
         stack=_stack(CALL_TRACE, READ_STACK, skip=("usercopy", "__check"), skip_reason="the usercopy checks")),
    # CONFIG_DEBUG_LIST: the list helpers BUG on a list someone else corrupted.
    _fmt(rf"kernel BUG at {SOURCE_ROOT}lib/list_debug\.c", "BUG: corrupted list in {frame}", MEMORY_SAFETY_BUG,
         alt_titles=("bad-access in {frame}",), stack=TRACE_STACK),
    _fmt(r"kernel BUG at (?P<where>.*)", "kernel BUG in {frame}", BUG,
         stack=_stack(INSTRUCTION_POINTER, CALL_TRACE, READ_STACK, skip=("^skb_",),
                      skip_reason="skb helpers BUG_ON() what their caller passed")),
))

UBSAN_STACK = _stack(CALL_TRACE, READ_STACK, skip=("ubsan", "overflow"), skip_reason="the UBSAN handlers")

UBSAN_REPORTS = ReportKind("UBSAN:", (
    _fmt(r"UBSAN:", "UBSAN: undefined-behaviour in {frame}", UNDEFINED_BEHAVIOUR,
         details=r"UBSAN: Undefined behaviour in", stack=UBSAN_STACK),
    _fmt(r"UBSAN: array-index-out-of-bounds in", "UBSAN: array-index-out-of-bounds in {frame}", UNDEFINED_BEHAVIOUR,
         alt_titles=("bad-access in {frame}",), stack=UBSAN_STACK),
    _fmt(r"UBSAN:", "UBSAN: {kind} in {frame}", UNDEFINED_BEHAVIOUR, details=r"UBSAN: (?P<kind>.*?) in",
         stack=UBSAN_STACK),
))

TRUSTY_REPORTS = ReportKind("trusty: panic", (
    _fmt(r"trusty: panic.* ASSERT FAILED", "trusty: ASSERT FAILED: {what}", BUG, has_stack_trace=False,
         details=r"trusty: panic \(.*?\):(?: DEBUG)? ASSERT FAILED at \(.*?\): (?P<what>.+)"),
    _fmt(r"trusty: panic.* ASSERT FAILED.*: *(?P<what>.*)", "trusty: ASSERT FAILED: {what}", BUG, corrupted=True),
    _fmt(r"trusty: panic", "trusty: panic: {what}", BUG, details=r"trusty: panic \(.*?\): (?P<what>.+)",
         has_stack_trace=False),
))

# In the order a line is tried against them: the first kind whose header a line holds wins.
REPORT_KINDS: tuple[ReportKind, ...] = (
    BUG_REPORTS,
    WARNING_REPORTS,
    INFO_REPORTS,
    ReportKind("Unable to handle kernel", (
        _fmt(r"Unable to handle kernel (?P<what>paging request|NULL pointer dereference|access to user memory)",
             "BUG: unable to handle kernel {what} in {frame}", MEMORY_SAFETY_BUG,
             alt_titles=("bad-access in {frame}",), stack=FAULT_STACK),
    )),
    ReportKind("general protection fault", (
        _fmt(r"general protection fault.*:", "general protection fault in {frame}", DOS,
             alt_titles=("bad-access in {frame}",), stack=FAULT_STACK),
    ), _lines(r"general protection fault .* error:\d+ in ")),  # a user-space fault, logged
    _fault("stack segment: ", "stack segment fault in {frame}", DOS, alt=None),
    PANIC_REPORTS,
    ReportKind("PANIC: double fault", (
        _fmt(r"PANIC: double fault", "PANIC: double fault in {frame}", DOS, stack=_stack(INSTRUCTION_POINTER)),
    )),
    ReportKind("rust_kernel: panicked", (
        _fmt(r"rust_kernel: panicked", "{message} in {frame}", BUG,
             details=r"rust_kernel: panicked at [^\n]*?\n(?P<message>.+?)\n",
             stack=_stack(CALL_TRACE, READ_STACK, skip=(re.escape("__rustc::rust_begin_unwind"),),
                          skip_reason="the Rust panic runtime")),
    )),
    KERNEL_BUG_REPORTS,
    ReportKind("Kernel BUG", (_fmt(r"Kernel BUG (?P<what>.*)", "kernel BUG {what}", BUG),)),
    ReportKind("BUG kmalloc-", (_fmt(r"BUG kmalloc-.*: Object already free", "BUG: Object already free",
                                     MEMORY_SAFETY_BUG),)),
    _fault("divide error:", "divide error in {frame}", DOS, alt=None, stack=_stack(INSTRUCTION_POINTER)),
    # The x86 IDTENTRY conversion (5.8) misspelt the header for a while.
    _fault("divide_error:", "divide error in {frame}", DOS, alt=None, stack=_stack(INSTRUCTION_POINTER)),
    _fault("invalid opcode:", "invalid opcode in {frame}", DOS, alt=None, stack=_stack(INSTRUCTION_POINTER)),
    _fault("int3:", "int3 in {frame}", DOS, alt=None),
    UBSAN_REPORTS,
    # The guest rebooted on its own: the reboot banner of the boot loader or decompressor.
    ReportKind("Booting the kernel.", (
        _fmt(r"^Booting the kernel", "unexpected kernel reboot", REBOOT, has_stack_trace=False),
    ), _lines(r"Parsing ELF|Decompressing Linux|Unknown parameter '")),
    _fixed("unregister_netdevice: waiting for", "unregister_netdevice: waiting for DEV to become free", HANG,
           r"unregister_netdevice: waiting for (?:.*) to become free"),
    _fixed("VFS: Close: file count is 0", "VFS: Close: file count is zero (use-after-free)", MEMORY_SAFETY_BUG),
    _fixed("VFS: Busy inodes after unmount", "VFS: Busy inodes after unmount (use-after-free)", MEMORY_SAFETY_BUG),
    # arm64 says "Internal error" where arm says "Unable to handle kernel paging request".
    _fault("Internal error:", "Internal error in {frame}", DOS),
    # arm's name for what x86 reports as a general protection fault.
    _fault("Unhandled fault:", "Unhandled fault in {frame}", DOS),
    _fault("Alignment trap:", "Alignment trap in {frame}", DOS, alt=None),
    TRUSTY_REPORTS,
    # A Go program (the fuzzer's own tools) died.
    ReportKind("fatal error:", (
        _fmt(r"fatal error:", "go runtime error", FUZZER_FAILURE, has_stack_trace=False),
    ), _lines(r"ALSA", r"fatal error: cannot create timer")),
    # The executor's own failure messages.
    ReportKind("SYZFAIL:", (
        _fmt(r"SYZFAIL:(?P<what>.*)", "SYZFAIL:{what}", FUZZER_FAILURE, has_stack_trace=False),
    )),
    ReportKind("SYZFATAL:", (
        _fmt(r"SYZFATAL:(?P<what>.*)", "SYZFATAL:{what}", FUZZER_FAILURE, alt_titles=("SYZFATAL",),
             has_stack_trace=False),
    )),
    ReportKind("panic:", (
        _fmt(r"panic: Sentry detected .* stuck task", "panic: Sentry detected stuck tasks", FUZZER_FAILURE,
             has_stack_trace=False),
        _fmt(r"panic:(?P<what>.*)", "panic:{what}", FUZZER_FAILURE, has_stack_trace=False),
    ), _lines(
        r"_panic:",  # kernel functions (skb_panic) in a message
        r"xlog_status:", r"ddb\.onpanic:", r"evtlog_status:",
    )),
)

# Headers that do not end the report they appear in: the oops and panic that follow a BUG(),
# or a double fault taken while reporting.
CONTINUATION_HEADERS = _lines(
    r"invalid opcode: 0000", r"Kernel panic - not syncing", r"unregister_netdevice: waiting for",
    r"PANIC: double fault", r"Internal error:",
)

# Messages that are not bugs but print a stack: inside another report, they mix their stack in.
INFO_MESSAGES_WITH_STACK = ("vmalloc: allocation failure:", "FAULT_INJECTION: forcing a failure",
                            "FAULT_FLAG_ALLOW_RETRY missing")
