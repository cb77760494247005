"""The vm:REV target for real: boot a built kernel under QEMU, run programs, survive crashes.

These build the base kernel when it is not cached yet (minutes on a cold machine) and boot it
under whatever accelerator the probe found (TCG where KVM does not work).
"""

from __future__ import annotations

import pytest
from zcfuzz.vm.backends import open_target
from zcfuzz.vm.program import Program
from zcfuzz.vm.target import KernelCrash

# One xdist_group: one worker boots the module's guest for all its tests.
pytestmark = [pytest.mark.vm, pytest.mark.xdist_group("guest-base-target")]

SENDFILE_TO_TCP = {
    "fds": [
        {"name": "src", "kind": "file", "size": 8192, "seed": 3},
        {"name": "sock", "kind": "tcp4"},
        {"name": "invalid_fd", "kind": "invalid"},
    ],
    "ops": [
        {"op": "sendfile64", "out": "sock", "in": "src", "offset": 100, "count": 512},
        {"op": "sendfile64", "out": "sock", "in": "src", "offset": None, "count": 1000},
        {"op": "sendfile64", "out": "sock", "in": "invalid_fd", "offset": None, "count": 1},
        {"op": "peer_read", "fd": "sock", "max": 65536},
    ],
}


@pytest.fixture(scope="module")
def base_target():
    with open_target("vm:base") as target:
        yield target


def comparable(result) -> list[dict]:
    """The fields both kernels define, without timing."""
    return [{k: v for k, v in op.items() if k not in ("ns", "start_ns", "end_ns")} for op in result.ops]


@pytest.mark.host
def test_base_guest_runs_a_program_like_the_host(base_target):
    program = Program.from_json(SENDFILE_TO_TCP)
    in_guest = base_target.run(program)
    with open_target("host") as host:
        on_host = host.run(program)
    assert in_guest.ret(0) == 512 and in_guest.errno(0) == 0
    assert in_guest.ops[0]["offset_after"] == 612
    assert comparable(in_guest) == comparable(on_host)
    assert in_guest.peers == on_host.peers


def test_base_kernel_has_no_sendfile2(base_target):
    info = base_target.kernel_info()
    assert info["nr_sendfile2"] is None
    assert info["base_version"].startswith("6.12")
    # The number a patched revision uses is unassigned on the base: ENOSYS.
    program = Program.from_json({
        "sysno": {"sendfile2": 467},
        "fds": [{"name": "src", "kind": "file", "size": 4096}, {"name": "sock", "kind": "tcp4"}],
        "ops": [{"op": "sendfile2", "out": "sock", "in": "src", "offset": 0, "count": 512, "flags": 0}],
    })
    assert base_target.run(program).errno_name(0) == "ENOSYS"


@pytest.mark.parametrize(
    "crash, title",
    [
        ("BUG", "kernel BUG in lkdtm_BUG"),
        # Outline KASAN checks the NULL write before it is made and reports it itself, where
        # inline KASAN's shadow load of a NULL address faulted first.
        ("EXCEPTION", "KASAN: null-ptr-deref Write in lkdtm_EXCEPTION"),
        ("PANIC", "kernel panic: dumptest"),
        ("READ_AFTER_FREE", "KASAN: slab-use-after-free Read in lkdtm_READ_AFTER_FREE"),
        ("HUNG_TASK", "INFO: task hung in lkdtm_HUNG_TASK"),
    ],
)
def test_a_crash_is_titled_and_the_next_program_gets_a_fresh_boot(base_target, crash, title):
    crashing = Program.from_json({"fds": [], "ops": [{"op": "lkdtm", "crash": crash}]})
    with pytest.raises(KernelCrash) as caught:
        base_target.run(crashing)
    assert caught.value.title == title
    assert caught.value.program == crashing
    assert caught.value.report.strip().splitlines()[0] in caught.value.console
    # Counted after the crash: the guest may have had its first boot for the crashing program.
    boots = len(base_target.boots)
    assert base_target.run(Program.from_json(SENDFILE_TO_TCP)).ret(0) == 512
    assert len(base_target.boots) == boots + 1


def test_the_same_crash_gets_the_same_title_on_every_boot(base_target):
    crashing = Program.from_json({"fds": [], "ops": [{"op": "lkdtm", "crash": "BUG"}]})
    titles = set()
    for _ in range(2):
        with pytest.raises(KernelCrash) as caught:
            base_target.run(crashing)
        titles.add(caught.value.title)
    assert titles == {"kernel BUG in lkdtm_BUG"}


def test_after_a_crash_the_next_program_runs_on_a_spare_guest_booted_meanwhile(base_target):
    crashing = Program.from_json({"fds": [], "ops": [{"op": "lkdtm", "crash": "BUG"}]})
    with pytest.raises(KernelCrash):
        base_target.run(crashing)
    base_target.run(Program.from_json(SENDFILE_TO_TCP))
    assert base_target.spare is not None and base_target.spare.ready()
    spare = base_target.spare.guest
    with pytest.raises(KernelCrash):
        base_target.run(crashing)
    assert base_target.run(Program.from_json(SENDFILE_TO_TCP)).ret(0) == 512
    assert base_target.guest is spare


@pytest.mark.parametrize(
    "crash, title",
    [
        ("WARNING", "WARNING in lkdtm_WARNING"),
        # refcount_t warns once per boot (WARN_ONCE): the executor re-arms it after each program.
        ("REFCOUNT_DEC_ZERO", "WARNING: refcount bug in lkdtm_REFCOUNT_DEC_ZERO"),
    ],
)
def test_a_warning_is_titled_every_time_and_the_guest_goes_on(base_target, crash, title):
    base_target.run(Program.from_json(SENDFILE_TO_TCP))
    boots = len(base_target.boots)
    warning = Program.from_json({"fds": [{"name": "src", "kind": "file", "size": 4096}],
                                 "ops": [{"op": "lkdtm", "crash": crash}, {"op": "close", "fd": "src"}]})
    for _ in range(2):
        with pytest.raises(KernelCrash) as caught:
            base_target.run(warning)
        assert caught.value.title == title
        assert caught.value.result is not None and caught.value.result.warnings >= 1
        assert caught.value.result.ret(1) == 0  # the op after the WARNING still ran
        assert caught.value.report.strip().splitlines()[0] in caught.value.console
    assert base_target.run(Program.from_json(SENDFILE_TO_TCP)).ret(0) == 512
    assert len(base_target.boots) == boots


def test_a_warning_taints_the_guest_until_a_restart(base_target):
    warning = Program.from_json({"fds": [], "ops": [{"op": "lkdtm", "crash": "WARNING"}]})
    base_target.restart()
    base_target.run(Program.from_json(SENDFILE_TO_TCP))
    assert not base_target.tainted
    with pytest.raises(KernelCrash):
        base_target.run(warning)
    assert base_target.tainted
    warned = base_target.guest
    base_target.restart()
    assert base_target.run(Program.from_json(SENDFILE_TO_TCP)).ret(0) == 512
    assert base_target.guest is not warned and not base_target.tainted


def test_boot_is_timed_and_accelerator_chosen_by_probe(base_target):
    base_target.run(Program.from_json(SENDFILE_TO_TCP))
    assert base_target.accel in ("kvm", "tcg")
    assert base_target.boots and all(seconds > 0 for seconds in base_target.boots)
    assert base_target.boots[-1] == base_target.guest.boot_seconds


def test_later_guests_restore_the_first_booted_one(base_target):
    base_target.close()
    base_target.snapshot.unlink(missing_ok=True)
    booted = base_target.run(Program.from_json(SENDFILE_TO_TCP))
    assert not base_target.guest.restored and base_target.snapshot.exists()
    base_target.restart()
    restored = base_target.run(Program.from_json(SENDFILE_TO_TCP))
    assert base_target.guest.restored
    assert comparable(restored) == comparable(booted) and restored.peers == booted.peers


def test_a_saved_guest_that_does_not_restore_gives_way_to_a_boot(base_target):
    base_target.run(Program.from_json(SENDFILE_TO_TCP))
    base_target.close()  # a spare started by an earlier test may have read the good file already
    base_target.snapshot.write_bytes(b"not a migration stream")
    assert base_target.run(Program.from_json(SENDFILE_TO_TCP)).ret(0) == 512
    assert not base_target.guest.restored
    assert base_target.snapshot.stat().st_size > 1 << 20  # saved again from the booted guest


def test_guests_have_two_cpus_and_keep_time_by_the_tsc(base_target):
    """The lean kernel has no ACPI: CPUs come from the firmware's MP table (one per socket) and
    the TSC rate from the host, or the guest would run on one CPU and keep time in jiffies."""
    from zcfuzz.vm.qemu import Guest, guest_vcpus

    with Guest(base_target.kernel, base_target.initramfs, base_target.accel, cmdline_extra="loglevel=7") as guest:
        console = guest.console_text()
    assert f"smp: Brought up 1 node, {guest_vcpus()} CPUs" in console
    if base_target.accel == "tcg":
        assert "Switched to clocksource tsc" in console and "Marking TSC unstable" not in console
