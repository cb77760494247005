"""Titles of crashes captured from zcfuzz's own guests, as syzkaller's rules title them.

The logs in tests/data/console/ are consoles of real guests run as zcfuzz runs them (a panic on
an oops, KASAN report or hang; a WARNING leaves the guest running), each provoked by an `lkdtm`
op (drivers/misc/lkdtm) or a `fail_nth` one: `base-*` of the base kernel (6.12.117, an earlier
guest config), the rest of v2 (6.12.118). `test_every_crash_type_gets_the_same_title_twice`
provokes the quick ones again on a v2 guest, twice each.

LKDTM types that print no report on the guest's kernel are not here: those needing UBSAN,
FORTIFY_SOURCE, CFI, hardened usercopy, STACKLEAK, KFENCE, SLUB debugging, init_on_alloc or
another architecture; writing and executing kernel data, which rodata=off allows, and user
memory, which the qemu64 CPU (no SMEP) allows; the timing loops (ATOMIC_TIMING,
REFCOUNT_TIMING) and the checks that only print (REPORT_STACK*).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from zcfuzz.vm import triage
from zcfuzz.vm.backends import open_target
from zcfuzz.vm.program import Program
from zcfuzz.vm.target import KernelCrash

CONSOLE_LOGS = Path(__file__).resolve().parent / "data" / "console"

REFCOUNT_TYPES = [f"REFCOUNT_{what}" for what in (
    "INC_OVERFLOW", "ADD_OVERFLOW", "INC_NOT_ZERO_OVERFLOW", "ADD_NOT_ZERO_OVERFLOW", "DEC_NEGATIVE",
    "DEC_AND_TEST_NEGATIVE", "SUB_AND_TEST_NEGATIVE", "SUB_AND_TEST_ZERO", "INC_ZERO", "ADD_ZERO",
    "INC_SATURATED", "DEC_SATURATED", "ADD_SATURATED", "INC_NOT_ZERO_SATURATED", "ADD_NOT_ZERO_SATURATED",
    "DEC_AND_TEST_SATURATED", "SUB_AND_TEST_SATURATED")]


def lkdtm_log(crash: str) -> str:
    return f"lkdtm-{crash.lower().replace('_', '-')}.log"


# (log, title, report type or None when not checked)
CAPTURED = [
    ("lkdtm-warning.log", "WARNING in lkdtm_WARNING", "WARNING"),
    ("base-lkdtm-warning.log", "WARNING in lkdtm_WARNING", "WARNING"),
    ("lkdtm-warning-message.log", "WARNING in lkdtm_WARNING_MESSAGE", "WARNING"),
    ("lkdtm-bug.log", "kernel BUG in lkdtm_BUG", "BUG"),
    ("base-lkdtm-bug.log", "kernel BUG in lkdtm_BUG", "BUG"),
    # The NULL write faults on the base kernel; on v2 KASAN's check before it reports first.
    ("base-lkdtm-exception.log", "general protection fault in lkdtm_EXCEPTION", None),
    ("lkdtm-exception.log", "KASAN: null-ptr-deref Write in lkdtm_EXCEPTION", "MEMORY_SAFETY_BUG"),
    ("lkdtm-panic.log", "kernel panic: dumptest", None),
    ("base-lkdtm-panic.log", "kernel panic: dumptest", None),
    ("lkdtm-panic-stop-irqoff.log", "kernel panic: panic stop irqoff test", None),
    # DEBUG_LIST with BUG_ON_DATA_CORRUPTION: `kernel BUG at lib/list_debug.c`, which the kernel
    # built out of tree prints as `../src/lib/list_debug.c`.
    ("lkdtm-corrupt-list-add.log", "BUG: corrupted list in lkdtm_CORRUPT_LIST_ADD", "MEMORY_SAFETY_BUG"),
    ("lkdtm-corrupt-list-del.log", "BUG: corrupted list in lkdtm_CORRUPT_LIST_DEL", "MEMORY_SAFETY_BUG"),
    # KASAN, one of each kind LKDTM makes on this kernel.
    ("lkdtm-slab-linear-overflow.log", "KASAN: slab-out-of-bounds Write in lkdtm_SLAB_LINEAR_OVERFLOW",
     "MEMORY_SAFETY_BUG"),
    ("lkdtm-read-after-free.log", "KASAN: slab-use-after-free Read in lkdtm_READ_AFTER_FREE", "MEMORY_SAFETY_BUG"),
    ("base-lkdtm-read-after-free.log", "KASAN: slab-use-after-free Read in lkdtm_READ_AFTER_FREE",
     "MEMORY_SAFETY_BUG"),
    ("lkdtm-write-after-free.log", "KASAN: slab-use-after-free Write in lkdtm_WRITE_AFTER_FREE", "MEMORY_SAFETY_BUG"),
    ("lkdtm-read-buddy-after-free.log", "KASAN: use-after-free Read in lkdtm_READ_BUDDY_AFTER_FREE",
     "MEMORY_SAFETY_BUG"),
    # syzkaller files double frees with invalid frees: one title for both. v2's compiler made
    # the second kmem_cache_free a tail call, so KASAN names the caller that is left.
    ("base-lkdtm-slab-free-double.log", "KASAN: invalid-free in lkdtm_SLAB_FREE_DOUBLE", "MEMORY_SAFETY_BUG"),
    ("lkdtm-slab-free-double.log", "KASAN: invalid-free in lkdtm_do_action", "MEMORY_SAFETY_BUG"),
    # The overflowing write is strscpy's, a generic string helper; the culprit is its caller.
    ("lkdtm-fortify-strscpy.log", "KASAN: stack-out-of-bounds Write in lkdtm_FORTIFY_STRSCPY", "MEMORY_SAFETY_BUG"),
    ("lkdtm-access-null.log", "KASAN: null-ptr-deref Read in lkdtm_ACCESS_NULL", "MEMORY_SAFETY_BUG"),
    ("lkdtm-access-userspace.log", "KASAN: user-memory-access Read in lkdtm_ACCESS_USERSPACE", "MEMORY_SAFETY_BUG"),
    # Without VMAP_STACK the stack's neighbours are slab and freed pages, and KASAN says so.
    ("lkdtm-stack-guard-page-leading.log", "KASAN: slab-out-of-bounds Read in lkdtm_STACK_GUARD_PAGE_LEADING",
     "MEMORY_SAFETY_BUG"),
    ("lkdtm-stack-guard-page-trailing.log", "KASAN: use-after-free Read in lkdtm_STACK_GUARD_PAGE_TRAILING",
     "MEMORY_SAFETY_BUG"),
    ("lkdtm-exhaust-stack.log", "KASAN: slab-out-of-bounds Read in recursive_loop", "MEMORY_SAFETY_BUG"),
    # copy_to_user is generic, and so is do_usercopy_slab_size by syzkaller's unanchored `slab_`.
    ("lkdtm-usercopy-slab-size-to.log", "KASAN: slab-out-of-bounds Read in lkdtm_do_action", "MEMORY_SAFETY_BUG"),
    ("lkdtm-usercopy-slab-size-from.log", "KASAN: slab-out-of-bounds Write in lkdtm_do_action", "MEMORY_SAFETY_BUG"),
    ("lkdtm-usercopy-stack-beyond.log", "KASAN: slab-use-after-free Read in do_usercopy_stack", "MEMORY_SAFETY_BUG"),
    ("lkdtm-usercopy-folio.log", "KASAN: use-after-free Read in do_usercopy_page_span", "MEMORY_SAFETY_BUG"),
    # No KASAN_VMALLOC: the write runs into the guard page past the area.
    ("lkdtm-vmalloc-linear-overflow.log",
     "BUG: unable to handle kernel paging request in lkdtm_VMALLOC_LINEAR_OVERFLOW", "MEMORY_SAFETY_BUG"),
    ("lkdtm-exec-null.log", "BUG: unable to handle kernel NULL pointer dereference in execute_location",
     "MEMORY_SAFETY_BUG"),
    # The instruction pointer is a data address and the unwinder finds no sure frame: syzkaller
    # reads no culprit either.
    ("lkdtm-exec-stack.log", "BUG: unable to handle kernel paging request in corrupted", "MEMORY_SAFETY_BUG"),
    ("lkdtm-exec-kmalloc.log", "BUG: unable to handle kernel paging request in corrupted", "MEMORY_SAFETY_BUG"),
    ("lkdtm-exec-vmalloc.log", "BUG: unable to handle kernel paging request in corrupted", "MEMORY_SAFETY_BUG"),
    ("lkdtm-corrupt-stack.log", "BUG: unable to handle kernel paging request in corrupted", "MEMORY_SAFETY_BUG"),
    ("lkdtm-corrupt-stack-strong.log", "BUG: unable to handle kernel paging request in corrupted",
     "MEMORY_SAFETY_BUG"),
    # Lockdep: the spinlock LKDTM leaves held, named where it was taken. The console is cut after
    # the second might_sleep report; the dying executor repeats them for a minute.
    ("lkdtm-spinlockup.log", "WARNING: lock held when returning to user space in lkdtm_do_action", "LOCKING_BUG"),
    ("lkdtm-hung-task.log", "INFO: task hung in lkdtm_HUNG_TASK", "HANG"),
    ("base-lkdtm-hung-task.log", "INFO: task hung in lkdtm_HUNG_TASK", "HANG"),
    # A lockup is named by the frame inside the file operation (vfs_write) that loops.
    ("lkdtm-soft-lockup.log", "BUG: soft lockup in full_proxy_write", "HANG"),
    ("base-lkdtm-soft-lockup.log", "BUG: soft lockup in full_proxy_write", "HANG"),
    ("lkdtm-loop.log", "BUG: soft lockup in full_proxy_write", "HANG"),
    ("lkdtm-smp-call-lockup.log", "BUG: soft lockup in smp_call_function", "HANG"),
    # No NMI watchdog: RCU on the other CPU reports the stall, with the looping CPU's stack from
    # an NMI. syzkaller reads a stall's stack from the timer interrupt on, and there is none.
    ("lkdtm-hardlockup.log", "INFO: rcu detected stall in corrupted", "HANG"),
    # The access was the interrupt handler's (it took a lock at a wild address); identify_cpu
    # is only the code it interrupted.
    ("boot-kasan-wild-memory-access.log", "KASAN: wild-memory-access Write in handle_edge_irq", "MEMORY_SAFETY_BUG"),
    # Injected faults print a stack each (their FAULT_INJECTION header is KERN_NOTICE, below the
    # guest's loglevel); only the report after them is a crash.
    ("fault-injection.log", None, None),
    ("fault-injection-then-kasan.log", "KASAN: slab-out-of-bounds Write in lkdtm_SLAB_LINEAR_OVERFLOW",
     "MEMORY_SAFETY_BUG"),
    ("fault-injection-then-warning.log", "WARNING in lkdtm_WARNING", "WARNING"),
] + [(lkdtm_log(crash), f"WARNING: refcount bug in lkdtm_{crash}", "WARNING") for crash in REFCOUNT_TYPES]


@pytest.mark.parametrize("log, title, kind", CAPTURED, ids=[row[0] for row in CAPTURED])
def test_captured_crash_has_its_title(log, title, kind):
    report = triage.parse((CONSOLE_LOGS / log).read_text())
    if title is None:
        assert report is None
        return
    assert report is not None
    assert report.title == title
    if kind is not None:
        assert report.type == kind
    culprit = title.split(" in ")[-1].split(":")[-1].strip()
    if culprit == "corrupted":
        assert report.corrupted
    else:
        assert culprit in report.report or "panic" in title


def test_might_sleep_after_the_lockdep_report():
    """The console from the second report on, as a target reads it from a program's start."""
    console = (CONSOLE_LOGS / "lkdtm-spinlockup.log").read_text()
    since = console.index("BUG: sleeping function called from invalid context")
    report = triage.parse(console[console.rindex("\n", 0, since) + 1:])
    assert report.title == "BUG: sleeping function called from invalid context in __fput"
    assert report.type == "ATOMIC_SLEEP"


def test_every_captured_log_is_in_the_table():
    assert sorted(p.name for p in CONSOLE_LOGS.glob("*.log")) == sorted(row[0] for row in CAPTURED)


# Crash types a v2 guest reports within seconds; the hangs (HUNG_TASK, SOFTLOCKUP, LOOP,
# SMP_CALL_LOCKUP, HARDLOCKUP) and SPINLOCKUP take 20 to 55 s each and are checked above only.
# Not STACK_GUARD_PAGE_*: a write past the stack faults only where the neighbouring vmalloc
# area leaves a hole, which depends on the boot (a v2 guest restored after an executor change
# took the trailing write without a fault).
QUICK_TYPES = [
    "WARNING", "BUG", "EXCEPTION", "PANIC", "CORRUPT_LIST_ADD", "SLAB_LINEAR_OVERFLOW", "READ_AFTER_FREE",
    "WRITE_AFTER_FREE", "READ_BUDDY_AFTER_FREE", "SLAB_FREE_DOUBLE", "FORTIFY_STRSCPY", "ACCESS_NULL",
    "ACCESS_USERSPACE", "USERCOPY_FOLIO", "VMALLOC_LINEAR_OVERFLOW", "EXEC_NULL",
    "EXEC_STACK", "REFCOUNT_DEC_AND_TEST_NEGATIVE",
]
EXPECTED_TITLES = {log: title for log, title, _ in CAPTURED}
# Reads past an allocation into whatever the boot put next to it: KASAN names the bug by that
# neighbour (a freed slab page, "slab-use-after-free"; a freed page, "use-after-free"), which
# can differ from one boot to the next. Their titles compare with KASAN's bug type left out.
NEIGHBOUR_NAMES_THE_BUG = {"USERCOPY_FOLIO"}


def without_bug_type(title: str) -> str:
    return re.sub(r"^KASAN: [a-z-]+ ", "KASAN: ", title)


@pytest.fixture(scope="module")  # its tests are one xdist_group: one worker boots it
def v2_target():
    with open_target("vm:v2") as target:
        yield target


@pytest.mark.vm
@pytest.mark.xdist_group("guest-v2-crashes")
@pytest.mark.parametrize("crash", QUICK_TYPES)
def test_every_crash_type_gets_the_same_title_twice(v2_target, crash):
    program = Program.from_json({"fds": [], "ops": [{"op": "lkdtm", "crash": crash}]})
    titles = []
    for _ in range(2):
        # A fresh guest for each run: no spare left booting, no WARNING's taint carried over.
        v2_target.close()
        with pytest.raises(KernelCrash) as caught:
            v2_target.run(program)
        titles.append(caught.value.title)
    v2_target.close()
    expected = EXPECTED_TITLES[lkdtm_log(crash)]
    if crash in NEIGHBOUR_NAMES_THE_BUG:
        assert all(title.startswith("KASAN: ") for title in titles), titles
        titles, expected = [without_bug_type(title) for title in titles], without_bug_type(expected)
    assert titles == [expected] * 2


@pytest.mark.vm
@pytest.mark.xdist_group("guest-v2-crashes")
def test_injected_faults_are_no_crash_on_a_guest(v2_target):
    program = Program.from_json({
        "sysno": {"sendfile2": v2_target.kernel_info()["nr_sendfile2"]},
        "fds": [{"name": "src", "kind": "file", "size": 65536}, {"name": "sock", "kind": "tcp4", "zerocopy": True}],
        "ops": [{"op": "sendfile2", "out": "sock", "in": "src", "offset": 0, "count": 8192, "flags": 2,
                 "fail_nth": nth} for nth in (1, 2, 3)],
    })
    v2_target.close()
    result = v2_target.run(program)
    assert all(op["fault_injected"] for op in result.ops)
    assert triage.parse(v2_target.guest.console_text()) is None
    v2_target.close()
