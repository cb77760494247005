"""Stack frames of a report, and the frames that never name a bug's culprit.

A title names the first frame of the crashing stack that is not kernel machinery many crashes
pass through. The lists below are data: each group of names carries the reason its frames are
passed over. Names match as regular expressions searched anywhere in the function name (so
`kmalloc` covers `__kmalloc_node_track_caller`); `^` and `$` pin them where that would catch too
much.
"""

from __future__ import annotations

import re

from zcfuzz.vm.triage.titles import clean_function_name

# Pieces of the line formats below.
PC = r"\[<?(?:0x)?[0-9a-f]+>?\]"
# A symbol as `%pS` prints it: the name, then `+0xOFF/0xSIZE` or a clone suffix (`.isra.0`).
FUNC = r"([a-zA-Z0-9_]+)(?:\.|\+)"
# `net/ipv4/tcp.c:123`
SRC = r"([a-zA-Z0-9\-_/.]+\.[a-z]+:[0-9]+)"

# A stack line: ` func+0x1a/0x2b`, ` [<ffffffff8148e81d>] func+0x2bd/0x3410`, powerpc
# `[c0..] [c0..] func+0x1/0x2`; 32-bit arm names the frame and its caller:
# `[<80c1e5e8>] (func) from [<80c1eb20>] (caller+0x60/0xdc)`. Frames the unwinder is unsure of
# (`? func+...`) and inlined ones (`func file.c:12 [inline]`) do not match.
FRAME_LINES: tuple[re.Pattern, ...] = (
    re.compile(rf"^ *(?:{PC} ){{0,2}}{FUNC}"),
    re.compile(rf"^ *{PC} \(([a-zA-Z0-9_.]+)\) from {PC} \({FUNC}"),
)

# The faulting instruction: x86 `RIP: 0010:func+...` or `IP: [<...>] func+...`, powerpc
# `NIP [c0..] func+...`, arm64 `pc : func+...`, older arm `PC is at func+...`. A user-mode
# `RIP: 0033:0x4a2b` or a NULL `IP: (null)` is an instruction pointer without a function.
INSTRUCTION_POINTER = re.compile(
    rf"(?:IP|NIP|pc |PC is at):? (?:(?:[0-9]+:)?(?:{PC} +){{0,2}}([a-zA-Z0-9_]+(?:\.[a-zA-Z0-9_]+)*)(?:\.|\+)"
    rf"|(?:[0-9]+:)?0x[0-9a-f]+|(?:[0-9]+:)?{PC} +\[< *\(null\)>\] +\(null\)|[0-9]+: +\(null\))"
)

# Lines that open a stack listing. `stack backtrace:` (lockdep) is left out: lockdep's own
# stacks after it are parsed where a format asks for them.
STACK_STARTS: tuple[re.Pattern, ...] = (
    re.compile(r"Call [Tt]race"),
    re.compile(r"Allocated:"),
    re.compile(r"Allocated by task [0-9]+:"),
    re.compile(r"Freed:"),
    re.compile(r"Freed by task [0-9]+:"),
    # kmemleak's `backtrace (crc 1a2b3c4d):`
    re.compile(r"[^k] backtrace(?: \(crc [0-9a-fA-F]*\))?:"),
    re.compile(r"Backtrace:"),
    re.compile(r"Uninit was stored to memory at"),
    # riscv's show_regs() ends with this line and dumps the stack with no header.
    re.compile(r"status: [0-9a-f]{16} badaddr: [0-9a-f]{16} cause: [0-9a-f]{16}"),
)
RISCV_STACK_START = STACK_STARTS[-1]

# Lines that mean the stack being read is not the crash's: fault injection prints its own
# stack (should_fail) into the middle of whatever report follows the injected failure.
CORRUPTING_LINES: tuple[re.Pattern, ...] = (
    re.compile(r"^(?: \[<?(?:0x)?[0-9a-f]+>?\])? should_fail(?:slab)?(?:\.[a-z0-9.]+)?\+0x"),
)


def _names(reason: str, *patterns: str) -> tuple[str, tuple[str, ...]]:
    return reason, patterns


# Frames no report is titled after: the culprit is the caller.
SKIPPED_FRAMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    _names("sanitizer runtime and report code: the bug is in the checked access's function",
           "__sanitizer", "__asan", "kasan", "hwasan", "__msan", "kmsan", "kcsan_setup_watchpoint",
           "check_memory_region", "check_heap_object", "check_object", "read_word_at_a_time",
           r"(?:read|write)_once_.*nocheck", "print_address_description", "print_report",
           "print_usage_bug", "print_unlock", "imbalance_bug", "print_tainted", "^get_taint$",
           "__fortify_report", "__phys_addr"),
    _names("WARN/BUG/panic and trap machinery: it reports, the caller misbehaved",
           "panic", "invalid_op", "report_bug", "fixup_bug", "do_error", r"_trap$|do_trap", "assertfail",
           "program_check_exception", "program_check_common", "warn_slowpath", "warn_alloc", "warn_bogus",
           "__warn"),
    _names("arm64 fault entry: how the fault was delivered, not where it happened",
           r"do_(?:kernel|translation)_fault", "do_mem_abort", "el1_abort", r"el1h_64_sync(?:_handler)?"),
    _names("stack dumping and saving",
           "show_stack", "dump_stack", "walk_stack", "dump_backtrace", "stack_trace_consume_entry",
           "arch_stack_walk", "stack_trace_save", "_indirect_thunk_"),
    _names("allocators and page-cache lookups: they fail or corrupt because of their caller",
           "alloc_page", r"k?v?(?:m|z|c)alloc", "krealloc", "kmem_cache", "allocate_slab",
           "__alloc_frozen_pages_noprof", r"folio_(?:alloc|unlock)", "filemap_alloc_folio",
           "__filemap_get_folio", "find_or_create_page", "do_read_cache_folio", "read_cache_page",
           "pagecache_get_page", "grab_cache_page_write_begin", "slab_", "^kv?free$", "kfree_skb",
           "memdup", "strdup", "strndup"),
    _names("debugobjects: it checks the object its caller passes",
           "debug_object", "timer_is_static_object", "work_is_static_object"),
    _names("lockdep, irq-flag tracing and the locking primitives: the lock's user is the culprit",
           "lockdep", "bh_enable", "bh_disable", "lock_acquire", "lock_release", "lock_class",
           "mark_lock", r"(?:reacquire|mark)_held_locks", "raw_spin_rq", "spin_lock", "spin_trylock",
           "spin_unlock", "read_lock", "read_trylock", "write_lock", "write_trylock", "read_unlock",
           "write_unlock", "^down$", "down_read", "down_write", "down_trylock", "up_read", "up_write",
           "^mutex_", "^__mutex_", "^rt_mutex_", "owner_on_cpu", "osq_lock", "osq_unlock",
           r"(?:trace|lockdep)_(?:hard|soft)irq", r"^(?:un)?lock_page", "seqprop_assert",
           "lock_timer_base"),
    _names("atomics, bit operations and reference counts: generic helpers every subsystem uses",
           r"atomic(?:64)?_(?:dec|inc|read|set|or|xor|and|add|sub|fetch|xchg|cmpxchg|try)",
           r"(?:set|clear|change|test)_bit", "^refcount_", "^kref_", "ref_tracker"),
    _names("wakeups and completions: the waiter or waker is the culprit",
           "__wake_up", "^complete$", "wait_for_completion", "finish_wait"),
    _names("string, copy and formatting routines: they act on what the caller hands them",
           "memcpy", "memcmp", "memset", "memchr", "memmove", "strcmp", "strncmp", "strcpy", "strlcpy",
           "strncpy", "strscpy", "strlen", "strstr", "strnstr", "strnlen", "strchr", "copy_to_user",
           "copy_from_user", "copy_to_iter", "copy_from_iter", "copy_page_to_iter", "copy_page_from_iter",
           "copy_folio_to_iter", "^copyin$", "^copyout$", "put_user", "get_user", "might_fault",
           "might_sleep", "__might_resched", "string", "pointer", "snprintf", "scnprintf", "kasprintf",
           "kvasprintf", "printk", "va_format", "dev_info", "dev_notice", "dev_warn", "dev_err",
           "dev_alert", "dev_crit", "dev_emerg", "hex_dump_to_buffer", "print_hex_dump",
           r"extract_(?:user|iter)_to_sg", r"^crc\d+", "crc_itu_t"),
    _names("MMIO and port accessors: the driver that calls them is the culprit",
           "readb$", "readw$", "readl$", "readq$", "writeb$", "writew$", "writel$", "writeq$", "logic_in",
           "logic_out"),
    _names("list, tree and xarray helpers: their DEBUG checks catch the caller's corruption",
           "list_add", "list_del", "list_replace", "list_move", "list_splice", "^rb_", "^__rb_", "^klist_",
           r"xas_(?:start|load|find)", "rhashtable_lookup", "ida_free"),
    _names("timer and workqueue plumbing: the work's owner is the culprit",
           "del_timer", "__timer_delete_sync", "sk_stop_timer_sync", "__mod_timer", "flush_work",
           "__cancel_work_timer", "cancel_work_sync", "try_to_grab_pending", "flush_workqueue",
           "drain_workqueue", "destroy_workqueue", "queue_work", "insert_work", "__queue_delayed_work",
           "queue_delayed_work_on", "kthread_stop", "cleanup_srcu_struct"),
    _names("device-core and sysfs teardown: a WARN there names the driver that unregistered",
           "kobject_", "add_uevent_var", "get_device_parent", "device_add", "device_del",
           "device_unregister", "device_destroy", "device_release", "devres_release_all",
           "hwrng_unregister", "i2c_del_adapter", "__unregister_client", "device_for_each_child",
           "rollback_registered", "unregister_netdev", "sysfs_remove", "device_remove_file",
           "tty_unregister_device", "^put_device$"),
    _names("USB core: urb submission WARNs on the driver's bad urb",
           "dummy_urb_enqueue", "usb_kill_urb", "usb_kill_anchored_urbs", "usb_control_msg",
           "usb_hcd_submit_urb", "usb_submit_urb"),
    _names("inode, dentry and buffer reference drops: the last put only finds the damage",
           "^iput$", "^iput_final$", "^ihold$", "fast_dput", "dput", "drop_nlink", "mark_buffer_dirty",
           "find_lock_entries", "truncate_inode_pages_range"),
    _names("tracepoints", "perf_trace"),
)

# Where a task enters the kernel or a worker picks up work. A stall or lockup loops somewhere
# below one of these; the culprit is the frame just inside it (the syscall, the work function,
# the protocol's receive), which stays the same wherever in the loop the watchdog struck.
ENTRY_FRAMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    _names("syscall entry",
           "do_syscall_", "do_fast_syscall_", "sysenter_dispatch", "tracesys_phase2", "el0_svc_handler",
           "invoke_syscall", "ret_fast_syscall"),
    _names("work, softirq and timer dispatch",
           "process_one_work", "netif_receive_skb", "do_softirq", "call_timer_fn", "_run_timers",
           "run_timer_softirq", "hrtimer_run", "run_ksoftirqd", "smpboot_thread_fn", "^kthread$",
           "tasklet_action", "tasklet_hi_action"),
    _names("CPU bring-up and new tasks", "start_secondary", "cpu_startup_entry", "ret_from_fork"),
    _names("file-operation dispatch: the frame inside names the file type",
           "vfs_write", "vfs_read", "vfs_iter_read", "vfs_iter_write", "do_iter_read", "do_iter_write",
           "call_read_iter", "call_write_iter", "new_sync_read", "new_sync_write", "vfs_ioctl",
           "ksys_ioctl", "compat_ioctl", "compat_sys_ioctl", "blkdev_driver_ioctl", "blkdev_ioctl",
           "do_iter_readv_writev", "^call_mmap", "mmap_region", "do_mmap", "do_dentry_open", "vfs_open"),
    _names("socket-operation dispatch: the frame inside names the protocol",
           "^sock_sendmsg", "^sock_recvmsg", "^sock_release", "^__sock_release", "^setsockopt$",
           "kernel_setsockopt", "sock_common_setsockopt", "^listen$", "kernel_listen", "sk_common_release",
           "^sock_mmap", "^accept$", "kernel_accept", "^sock_do_ioctl", "^sock_ioctl", "^compat_sock_ioctl",
           "^nfnetlink_rcv_msg", "^rtnetlink_rcv_msg", "^netlink_dump", r"^(?:sys_)?(?:socketpair|connect|ioctl)"),
    _names("page-fault entry", "__do_fault", "do_page_fault", "^page_fault$"),
    _names("return-to-user work", "__fput", "task_work_run", "exit_to_usermode"),
    _names("cross-CPU calls: a CPU waiting in one is stalled by the call itself", "smp_call_function"),
)

# A hung task sleeps in these; its culprit is the first frame that is not waiting.
WAITING_FRAMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    _names("scheduler and sleeping primitives", "sched", "context_switch", "__switch_to", "wait",
           "completion", "kthread"),
    _names("locks slept on (rtnl_lock is an anchor, see HANG_ANCHORS)", "_lock", "_slowlock", "down", "rwsem"),
    _names("waiting for other work to finish", "synchronize", "cancel_delayed_work", "rcu_barrier"),
)

# Not passed over in titles (syzkaller does not), but never a culprit by themselves.
PLUMBING_FRAMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    _names("assembly entry and return stubs: below every syscall and interrupt", "^entry_", "^ret_from_", "^asm_"),
    _names("irq-flag helpers: where irq tracing notices a problem, not where it is", "^arch_local_irq_"),
)

# A hung task stuck behind one of these is one bug however it got there: everything blocked on
# the RTNL lock (named by the frame that takes it), or on a grace period that never ends.
HANG_ANCHORS: tuple[tuple[str, str | None], ...] = (
    ("rtnl_lock", None),
    ("synchronize_rcu", "synchronize_rcu"),
    ("synchronize_srcu", "synchronize_rcu"),
    ("synchronize_net", "synchronize_rcu"),
    ("synchronize_sched", "synchronize_rcu"),
)

# Syscall entry points are named differently per arch and kernel version (`__x64_sys_read`,
# `__arm64_sys_read`, `SyS_read`, `__do_sys_read`); the shortest name left after taking one of
# these prefixes off is the one a title uses.
SYSCALL_PREFIXES = (
    "SYSC_", "SyS_", "sys_", "__x64_", "__ia32_", "__arm64_", "____sys_", "___sys_", "__sys_", "__se_",
    "__se_sys_", "__do_sys_", "compat_SYSC_", "compat_SyS_", "ksys_",
)


def names_pattern(groups: tuple[tuple[str, tuple[str, ...]], ...], *extra: str) -> re.Pattern:
    """One regex for every name of `groups` plus `extra` names."""
    names = [name for _, group in groups for name in group] + list(extra)
    return re.compile("|".join(names))


SKIPPED = names_pattern(SKIPPED_FRAMES)
ENTRY = names_pattern(ENTRY_FRAMES)
WAITING = names_pattern(WAITING_FRAMES)
SLEEPING = names_pattern(WAITING_FRAMES[:1])
PLUMBING = names_pattern(PLUMBING_FRAMES)


def is_generic_frame(func: str) -> bool:
    """True for frames that appear in every kind of crash and so say nothing about this one:
    the skipped helpers, kernel entry and dispatch, and the scheduler a task sleeps in."""
    name = clean_function_name(func)
    return any(pattern.search(name) for pattern in (SKIPPED, ENTRY, SLEEPING, PLUMBING))


def frames_of_line(text: str) -> list[str]:
    """The functions a stack line names (two for 32-bit arm's `(f) from (g)`), else []."""
    for pattern in FRAME_LINES:
        match = pattern.match(text)
        if match:
            return [clean_function_name(name) for name in match.groups() if name]
    return []


def frame_of_line(text: str) -> str | None:
    """The innermost function a stack line names, or None for any other line."""
    frames = frames_of_line(text)
    return frames[0] if frames else None


def instruction_pointer_frame(text: str) -> str | None:
    """The function a kernel-mode instruction-pointer line (`RIP: 0010:...`) names, else None."""
    match = INSTRUCTION_POINTER.search(text)
    return match[1] if match else None


def strip_syscall_prefix(func: str) -> str:
    """`__x64_sys_sendfile64` -> `sys_sendfile64`, `__se_sys_read` -> `read`."""
    stripped = func
    for prefix in SYSCALL_PREFIXES:
        if func.startswith(prefix) and len(func) - len(prefix) < len(stripped):
            stripped = func[len(prefix):]
    return stripped


def culprit_name(func: str) -> str:
    """The name a title gives the culprit frame `func`: one name per function whatever its
    clone suffix or the arch's syscall prefix, and one name for every cross-CPU call variant."""
    name = strip_syscall_prefix(clean_function_name(func))
    return "smp_call_function" if "smp_call_function" in name else name
