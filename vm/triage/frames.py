"""Stack frames of a report and the generic ones that never name a bug's culprit.

A title names the first frame of the crashing stack that is not kernel machinery every crash
passes through: locking, allocation, refcount and list helpers, string and copy routines,
syscall entry and socket/VFS dispatch, the sanitizers' report code, WARN/BUG machinery,
scheduler and wait primitives, interrupt and exception entry, device-core teardown (a WARN in
sysfs removal names the driver that unregistered the device).
"""

from __future__ import annotations

import re

from vm.triage.titles import clean_function_name

FUNCTION = r"[A-Za-z_$][\w.$]*"

# ` func+0x1a/0x2b`, ` [<ffffffff8148e81d>] func+0x2bd/0x3410`, symbolised
# ` func+0x1a/0x2b file.c:12`, arm64 ` func+0x1a/0x2b (T)`, powerpc `[c0..] [c0..] func+0x1/0x2`,
# powerpc's `--- interrupt: 700 at func+0x2c/0x70`, 32-bit arm `[<80c1e5e8>] (func) from [<...>]`.
# Left out: frames the unwinder is unsure of (`? func+...`, stale stack words) and symbolised
# `func file.c:12 [inline]` lines, whose code the report attributes to the real frame below.
FRAME_LINE = re.compile(
    rf"^\s*(?:\[<?[0-9a-f]+>?\]\s*)*(?:--- interrupt: \w+ at )?"
    rf"(?:(?P<func>{FUNCTION})\+0x[0-9a-f]+/0x[0-9a-f]+|\((?P<arm_func>{FUNCTION})(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?\) from )"
)

# The faulting instruction: x86 `RIP: 0010:func+...` or `IP: [<...>] func+...`, arm64
# `pc : func+...`, older arm `PC is at func+...`, riscv `epc : func+...`. User-mode
# instruction pointers (`RIP: 0033:0x4a2b`) have no symbol and do not match.
INSTRUCTION_POINTER = re.compile(
    rf"^\s*(?:RIP: [0-9a-f]{{4}}:|E?IP: |pc : |PC is at |epc : |NIP \[[0-9a-f]+\] |EIP: [0-9a-f]+:)"
    rf"(?:\[<[0-9a-f]+>\]\s+)*(?:\[<[0-9a-f]+>\]\s+)?(?P<func>{FUNCTION})\+0x"
)

# Lines after which a report lists stack frames.
STACK_START = re.compile(r"^\s*(?:Call Trace|Call trace|Backtrace|backtrace|stack backtrace)\s*:?\s*$")

# Lines that end the crashing stack: the allocation/free stacks of a KASAN report, KMSAN
# origins, the user-mode registers, lockdep's held-lock lists, the end-of-report markers.
STACK_END = re.compile(
    r"^\s*(?:Allocated by task|Freed by task|Last potentially related|Second to last potentially"
    r"|The buggy address|Memory state around|Uninit was (?:created|stored)|Local variable"
    r"|Bytes \d+-\d+ of|RIP: 00[23]3:|Modules linked in|---\[ end trace|Kernel Offset:"
    r"|Showing all locks held|NMI backtrace for cpu|Sending NMI from CPU)"
)

GENERIC_FRAMES = re.compile(
    "^(?:" + "|".join((
        # stack dumping, sanitizers and the WARN/BUG/panic machinery
        r"_*dump_stack\w*", r"show_stack", r"show_regs", r"dump_backtrace\w*", r"walk_stackframe",
        r"fixup_bug", r"bad_page", r"__sanitizer_\w+", r"_*should_fail\w*", r"check_preemption_disabled",
        r"debug_smp_processor_id", r"__this_cpu_preempt_check", r"_*check_heap_object", r"exiting_irq",
        r"retint_\w+", r"__x86_indirect_thunk_\w+", r"__x86_return_thunk", r"kmemleak_\w+", r"depot_\w+",
        r"_*rb_(?:erase|insert)\w*", r"do_read_cache_\w+", r"_*dump_page", r"print_\w+", r"printk\w*",
        r"_?printk", r"vprintk\w*", r"\w*kasan\w*", r"__asan\w*", r"asan_report\w*", r"check_memory_region\w*",
        r"\w*kmsan\w*", r"kfence\w*", r"\w*ubsan\w*", r"__ubsan\w*", r"report_\w+", r"warn_\w+",
        r"__warn\w*", r"warn_slowpath\w*", r"__warn_printk", r"do_error_trap", r"do_trap\w*",
        r"handle_bug", r"exc_\w+", r"asm_exc_\w+", r"do_invalid_op", r"do_general_protection",
        r"invalid_op", r"general_protection", r"page_fault", r"do_page_fault", r"__do_page_fault",
        r"do_user_addr_fault", r"kernelmode_fixup_or_oops", r"page_fault_oops", r"do_kern_addr_fault", r"spurious_kernel_fault",
        r"oops_\w+", r"die\w*", r"__die\w*", r"bug_handler", r"panic", r"nmi_\w+",
        r"_*do_kernel_fault", r"do_bad_area", r"do_translation_fault", r"do_mem_abort",
        r"el\d\w*_(?:abort|da|ia|sync\w*|irq\w*)", r"el\dh?_\d+_\w+", r"el\d_\w+",
        r"__dabt_\w+", r"do_DataAbort", r"do_sea", r"__do_user_fault",
        r"debug_object\w*", r"debug_check_\w+", r"debug_print_object", r"debug_locks_off",
        r"refcount_\w+", r"__refcount_\w+", r"kref_\w+", r"ref_tracker_\w+",
        r"__list_\w+_valid\w*", r"__list_\w+", r"list_\w+", r"hlist_\w+", r"__hlist_\w+",
        r"check_\w+_object\w*", r"check_slab_allocation", r"__check_object_size", r"check_object_size", r"usercopy_\w+",
        r"fortify_\w+", r"__fortify_\w+", r"lockdep_\w+", r"__lockdep_\w+", r"lock_\w+",
        r"__lock_\w+", r"mark_lock\w*", r"mark_held_locks", r"validate_chain", r"check_noncircular",
        r"check_prev_add", r"check_prevs_add", r"register_lock_class", r"look_up_lock_class",
        r"find_held_lock", r"hlock_class", r"valid_state", r"print_circular_bug\w*",
        r"rcu_lockdep_\w+", r"rcu_read_lock\w*", r"rcu_read_unlock\w*",
        # locking primitives
        r"_raw_\w+", r"__raw_\w+", r"do_raw_\w+", r"raw_spin\w+", r"queued_\w+", r"native_queued_\w+",
        r"__pv_queued\w*", r"pv_\w*_lock\w*", r"spin_\w+", r"__spin_\w+", r"_spin_\w+",
        r"read_lock\w*", r"write_lock\w*", r"read_unlock\w*", r"write_unlock\w*",
        r"_*mutex_\w+", r"mutex_\w+", r"_*down\w*", r"down_\w+", r"_*up_\w+", r"up", r"rwsem_\w+",
        r"__rwsem_\w+", r"percpu_down_\w+", r"percpu_up_\w+", r"__percpu_down_\w+", r"rt_mutex\w*",
        r"__rt_mutex\w*", r"rtlock_\w+", r"local_bh_\w+", r"__local_bh_\w+",
        r"preempt_\w+", r"__preempt_\w+", r"lock_timer_base", r"lock_sock\w*", r"release_sock",
        r"__release_sock", r"might_sleep\w*", r"__might_\w+", r"___might_\w+", r"__cant_sleep",
        # scheduling and waiting (a hung task sleeps in these)
        r"_*schedule\w*", r"schedule\w*", r"preempt_schedule\w*", r"io_schedule\w*",
        r"__switch_to\w*", r"context_switch", r"finish_task_switch\w*", r"finish_wait", r"prepare_to_wait\w*", r"__wait_\w+", r"wait_\w+",
        r"do_wait_\w+", r"_*wait_for_common\w*", r"do_wait_for_common", r"bit_wait\w*",
        r"out_of_line_wait_on_bit\w*", r"__wait_on_bit\w*", r"folio_wait_\w+", r"__folio_lock\w*",
        r"__lock_page\w*", r"sync_page\w*", r"wake_up\w*", r"__wake_up\w*", r"try_to_wake_up",
        r"complete\w*", r"kthread_\w+", r"__kthread_\w+",
        r"synchronize_rcu_expedited_wait\w*", r"wait_rcu_gp",
        r"__wait_rcu_gp", r"rcu_\w*wait\w*",
        # allocation and freeing
        r"_*kmalloc\w*", r"kmalloc\w*", r"kzalloc\w*", r"kcalloc\w*", r"krealloc\w*", r"kvmalloc\w*",
        r"__kvmalloc\w*", r"kvzalloc\w*", r"kvfree\w*", r"kfree\w*", r"__kfree\w*", r"kmem_cache_\w+",
        r"__kmem_cache_\w+", r"slab_\w+", r"__slab_\w+", r"___slab_\w+", r"new_slab\w*", r"_*cache_\w+",
        r"____cache_\w+", r"cache_alloc\w*", r"kmemdup\w*", r"kstrdup\w*", r"kstrndup", r"memdup_\w+",
        r"vmalloc\w*", r"__vmalloc\w*", r"vzalloc\w*", r"vfree\w*", r"__vfree\w*",
        r"_*alloc_pages\w*", r"alloc_pages\w*", r"__alloc_frozen_pages\w*", r"alloc_frozen_pages\w*",
        r"__get_free_pages", r"get_zeroed_page", r"_*free_pages\w*", r"free_pages\w*",
        r"_*folio_alloc\w*", r"folio_alloc\w*", r"_*kmalloc_\w+", r"alloc_slab\w*",
        r"kmalloc_slab", r"kmalloc_order\w*", r"kmalloc_large\w*",
        r"page_alloc\w*", r"__page_alloc\w*", r"free_unref_page\w*", r"__free_one_page",
        r"_*alloc_skb\w*", r"skb_clone\w*", r"consume_skb", r"_*kfree_skb\w*", r"kfree_skb\w*",
        r"skb_release_\w+", r"__skb_\w*free\w*", r"skb_free_\w+", r"sk_free", r"__sk_free",
        r"sk_destruct", r"__sk_destruct", r"kfree_rcu\w*",
        r"mempool_\w+", r"_*put_page\w*", r"put_page\w*", r"folio_put\w*", r"__folio_put\w*",
        r"release_pages", r"free_unref_\w+", r"folios_put\w*", r"_*vunmap\w*",
        r"_*dev_kfree_skb\w*", r"pskb_expand_head", r"\w*copy_(?:to|from)_iter\w*", r"dst_release\w*", r"drop_nlink",
        # string and copy routines
        r"_*mem(?:cpy|move|set|cmp|chr|scan|dup)\w*",
        r"_*str(?:n?cpy|lcpy|scpy|n?cat|lcat|n?cmp|n?casecmp|n?len|r?chr|str|sep|n?dup|to\w+)", r"bcmp", r"sprintf\w*", r"snprintf\w*", r"vsnprintf\w*", r"scnprintf\w*",
        r"vscnprintf", r"kvasprintf\w*", r"kasprintf\w*", r"copy_\w*user\w*", r"_copy_\w*user\w*",
        r"__copy_\w*user\w*", r"raw_copy_\w+", r"copy_to_iter\w*", r"_copy_to_iter\w*",
        r"copy_from_iter\w*", r"_copy_from_iter\w*", r"iov_iter_\w+", r"__get_user\w*",
        r"__put_user\w*", r"get_user\w*", r"put_user\w*", r"rep_movs_\w+", r"__rep_\w+",
        r"test_and_\w+_bit\w*", r"\w*set_bit\w*", r"\w*clear_bit\w*", r"__bitmap_\w+",
        r"instrument_\w+", r"atomic\w*", r"_*arch_(?:local|atomic|spin|cmpxchg|xchg|trigger|jump_label|timer)\w*",
        r"csum_partial\w*", r"memzero_\w+", r"hex_dump\w*", r"seq_printf",
        # syscall entry and generic dispatch
        r"do_syscall_\w+", r"__do_sys_\w+", r"do_fast_syscall_\w+", r"entry_\w+", r"ret_from_\w+",
        r"syscall_\w+", r"__syscall_\w+", r"x64_sys_call", r"x32_sys_call", r"ia32_sys_call",
        r"invoke_syscall", r"el0_svc\w*", r"do_el0_svc\w*", r"el0t_\w+", r"system_call\w*",
        r"fpsimd_\w+", r"int80_\w+", r"sock_sendmsg\w*", r"__sock_sendmsg", r"sock_recvmsg\w*",
        r"sock_write_iter", r"sock_read_iter", r"____sys_sendmsg", r"___sys_sendmsg", r"__sys_sendmsg",
        r"____sys_recvmsg", r"___sys_recvmsg", r"__sys_recvmsg", r"__sys_sendto", r"__sys_recvfrom",
        r"sock_ioctl", r"sock_do_ioctl", r"sock_common_\w+", r"sock_setsockopt", r"sock_close",
        r"__sock_release", r"sock_release", r"__sys_setsockopt", r"__sys_getsockopt", r"__sys_\w+",
        r"do_sock_\w+", r"vfs_\w+", r"__vfs_\w+", r"do_iter_\w+", r"__do_iter_\w+", r"new_sync_\w+",
        r"ksys_\w+", r"do_sys_\w+", r"__fput\w*", r"____fput", r"fput\w*", r"task_work_run",
        r"syscall_exit\w*", r"do_exit", r"do_group_exit", r"get_signal", r"do_signal\w*",
        r"arch_do_signal\w*", r"do_filp_open", r"path_openat", r"do_dentry_open", r"filp_close",
        r"filp_open", r"file_open\w*", r"do_file_open", r"full_proxy_\w+", r"do_vfs_ioctl",
        # process, interrupt and timer dispatch
        r"kthread", r"worker_thread", r"process_one_work", r"process_scheduled_works",
        r"smpboot_thread_fn", r"call_timer_fn", r"__run_timers\w*", r"run_timer_softirq",
        r"expire_timers", r"__hrtimer_run_queues", r"hrtimer_\w+", r"__do_softirq", r"do_softirq\w*",
        r"handle_softirqs", r"irq_exit\w*", r"__irq_exit\w*", r"invoke_softirq", r"run_ksoftirqd",
        r"\w*_interrupt", r"sysvec_\w+", r"__sysvec_\w+", r"asm_sysvec_\w+", r"asm_call_\w+",
        r"call_on_\w*stack", r"irq_\w+", r"__irq_\w+", r"_*handle_\w*irq\w*", r"generic_handle_\w+",
        r"do_IRQ", r"common_interrupt", r"ret_from_intr", r"tick_\w+", r"update_process_times",
        r"rcu_core\w*", r"rcu_do_batch", r"rcu_process_callbacks", r"rcu_sched_clock_irq\w*",
        r"rcu_check_callbacks", r"rcu_pending", r"rcu_dump_cpu_stacks", r"print_cpu_stall\w*",
        r"check_cpu_stall", r"rcu_gp_\w+", r"trigger_\w+backtrace\w*", r"watchdog\w*",
        r"_*queue_work\w*", r"queue_work\w*", r"flush_work\w*", r"__flush_work\w*",
        r"generic_exec_single",
        r"update_stack_state", r"unwind_\w+", r"__unwind_\w+", r"__save_stack_trace",
        r"save_stack\w*", r"stack_trace_\w+", r"arch_stack_walk", r"kernel_text_address",
        r"__kernel_text_address", r"trace_\w+", r"__trace_\w+", r"perf_trace_\w+", r"__traceiter_\w+",
        r"mod_timer\w*", r"__mod_timer", r"add_timer\w*", r"del_timer\w*", r"timer_delete\w*",
        r"sysfs_remove_\w+", r"kobject_\w+", r"add_uevent_var", r"device_del", r"device_unregister",
        r"proc_register", r"proc_create\w*", r"proc_mkdir\w*", r"device_add", r"dpm_sysfs_\w+",
        r"put_device", r"device_release_driver\w*", r"platform_device_(?:del|unregister)",
        r"i2c_del_adapter", r"i2c_unregister_device",
        r"radix_tree_\w+", r"idr_\w+", r"ida_\w+", r"drain_workqueue", r"destroy_workqueue",
        r"_*cancel_work\w*", r"_*cancel_delayed_work\w*", r"cleanup_srcu_struct",
        # waiting for writeback, console and lockdep internals, trap handlers of other arches
        r"_*filemap_fdatawait\w*", r"filemap_write_and_wait\w*", r"console_lock", r"console_unlock",
        r"check_usage\w*", r"check_irq_usage", r"_*atomic_dec_and\w*", r"_*msan\w*",
        r"do_tag_check_fault", r"program_check_\w+", r"brk_handler", r"call_break_hook",
        r"do_debug_exception", r"\w+_panic",
        # the start-of-text symbol an unwinder names for code it cannot place (arm64 softirq entry)
        r"_stext",
    )) + r")$"
)


def is_generic_frame(func: str) -> bool:
    """True for frames that appear in every kind of crash and so say nothing about this one."""
    return bool(GENERIC_FRAMES.match(clean_function_name(func)))


def frame_of_line(text: str) -> str | None:
    """The function a stack line names, or None for any other line."""
    match = FRAME_LINE.match(text)
    return (match["func"] or match["arm_func"]) if match else None


def instruction_pointer_frame(text: str) -> str | None:
    """The function a kernel-mode instruction-pointer line (`RIP: 0010:...`) names, else None."""
    match = INSTRUCTION_POINTER.match(text)
    return match["func"] if match else None


# Names that differ by arch or variant but are one culprit: `__x64_sys_read` and
# `__arm64_sys_read` are the syscall `sys_read`; every smp_call_function variant is the
# cross-CPU call a stalled CPU waits in.
CULPRIT_ALIASES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"^(?:__(?:x64|ia32|x32|arm64|riscv|s390x?|powerpc)_|__se_|__do_)(?=sys_)"), ""),
    (re.compile(r"^smp_call_function_\w+"), "smp_call_function"),
)


def culprit_name(func: str) -> str:
    """The name a title gives the culprit frame `func`."""
    name = clean_function_name(func)
    for pattern, replacement in CULPRIT_ALIASES:
        name = pattern.sub(replacement, name)
    return name
