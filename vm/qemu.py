"""The `vm:REV` target: a QEMU guest booted on a built revision, running the executor as /init.

The guest is a kernel and a small initramfs whose only program is the static executor. Programs
and results travel over a virtio-serial port named `zcfuzz`; the kernel console (ttyS0) is read
live into a log. The guest panics on any oops, KASAN report, hung task or soft lockup, so a crash
ends the QEMU process; the console then names it (vm.triage) and the next program gets a fresh
boot; from a target's first crash on, a spare guest boots in the background, so a crash costs
the time to notice it rather than a boot. A boot is a cold boot only once per kernel, executor
and QEMU: the first guest, once ready, is saved (a migration to a file) and later guests restore
that state with `-incoming`, which under TCG takes well under a second where a boot takes
several. A WARNING does not panic it: the executor counts the
WARNINGs each program printed, the program is reported with the WARNING's title and its result,
and the guest serves the next one, so a known WARNING hit by most programs does not cost a
reboot each. QEMU runs with PR_SET_PDEATHSIG so it never outlives zcfuzz.
"""

from __future__ import annotations

import ctypes
import functools
import json
import mmap
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil
from zcfuzz.vm import kbuild, triage
from zcfuzz.vm.errors import UserError, missing
from zcfuzz.vm.executor import READY_LINE, executor_binary
from zcfuzz.vm.lifetime import descendants, die_with_parent, end_processes
from zcfuzz.vm.program import ExecutorError, Program, ProgramResult, decode_reply
from zcfuzz.vm.target import KernelCrash, Target

QEMU = "qemu-system-x86_64"
# 512 MiB holds the largest fixture (a 64 MiB file) many times over; half of the 1 GiB it was
# makes a boot's memory map and KASAN shadow set-up and a saved guest (its shadow marks every
# free page) half as large.
GUEST_MEMORY_MB = 512
# Two vCPUs by default, so the CPU completing TX or processing ACKs can race the sending one;
# multi-threaded TCG gives each its own host thread.
DEFAULT_VCPUS = 2
MAX_VCPUS = 8  # CONFIG_NR_CPUS of the guest config
QEMU_RSS_LIMIT = (GUEST_MEMORY_MB + 768) * 1024 * 1024
# Every bug report but a WARNING panics the guest: the QEMU process exiting is the crash signal.
# WARNINGs are counted by the executor (/sys/kernel/warn_count) and leave the kernel running.
KERNEL_CMDLINE = (
    "console=ttyS0 loglevel=5 printk.time=1 panic=-1 oops=panic "
    "hung_task_panic=1 softlockup_panic=1 kasan.fault=panic rdinit=/init "
    # Boot speed under TCG: ACPI probing and the W+X page-table walk (rodata) cost seconds,
    # and a guest needs no side-channel mitigations. Without ACPI there is no HPET, and the
    # clocksource watchdog would find TCG's TSC unstable and fall back to jiffies (4 ms steps).
    "acpi=off rodata=off mitigations=off tsc=reliable"
)
BOOT_TIMEOUT_S = 60.0
# CONFIG_DEFAULT_HUNG_TASK_TIMEOUT is 20 s and khungtaskd checks as often: a hang is reported
# 20 to 40 s after it starts.
HUNG_TASK_GRACE_S = 45.0
WARNING_REPORT_END = "---[ end trace"
WARNING_REPORT_WAIT_S = 5.0
PROBE_TIMEOUT_S = 15.0
BOOT_ATTEMPTS = 2
SNAPSHOT_SAVE_TIMEOUT_S = 120.0
SNAPSHOTS_KEPT = 6  # a snapshot is about 250 MiB; the least recently used beyond these go


def qemu_binary() -> str:
    path = shutil.which(QEMU)
    if not path:
        raise missing(f"{QEMU} not found", QEMU)
    return path


@functools.cache
def qemu_version() -> str:
    """A saved guest restores only into the QEMU that saved it."""
    return subprocess.run([qemu_binary(), "--version"], capture_output=True, text=True).stdout.strip()


# rdtsc; shl rdx, 32; or rax, rdx; ret
RDTSC_X86_64 = bytes.fromhex("0f31" "48c1e220" "4809d0" "c3")


@functools.cache
def host_tsc_khz() -> int | None:
    """The host's TSC rate, which is the guest's under TCG (QEMU passes host ticks through
    unscaled). None off x86_64 or where executable memory is refused."""
    if platform.machine() != "x86_64":
        return None
    try:
        code = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:
        return None
    code.write(RDTSC_X86_64)
    rdtsc = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(ctypes.c_char.from_buffer(code)))
    rates = []
    for _ in range(3):
        started, ticks = time.perf_counter_ns(), rdtsc()
        time.sleep(0.02)
        rates.append((rdtsc() - ticks) * 1_000_000 // (time.perf_counter_ns() - started))
    del rdtsc
    return sorted(rates)[1]


def tsc_rate(accel: str) -> str:
    """Kernel parameters that give a TCG guest its TSC rate. It has neither ACPI's PM timer nor
    an HPET to calibrate the TSC against and PIT calibration fails under TCG, so it would mark
    the TSC unstable and keep time in 4 ms jiffies; told the rate, it keeps a TSC clocksource."""
    khz = host_tsc_khz() if accel == "tcg" else None
    return f"tsc_early_khz={khz}" if khz else ""


def guest_vcpus() -> int:
    """vCPUs per guest: ZCFUZZ_VCPUS, else DEFAULT_VCPUS."""
    value = os.environ.get("ZCFUZZ_VCPUS", str(DEFAULT_VCPUS))
    if not value.isdigit() or not 1 <= int(value) <= MAX_VCPUS:
        raise UserError(f"ZCFUZZ_VCPUS={value!r}: give a number of vCPUs from 1 to {MAX_VCPUS}")
    return int(value)


def machine_args(accel: str) -> list[str]:
    """QEMU and the machine every guest runs on: memory, vCPUs (multi-threaded under TCG), no
    default devices, no display; a guest never reboots, it ends."""
    return [
        qemu_binary(), "-accel", "tcg,thread=multi" if accel == "tcg" else accel,
        # One CPU per socket: the firmware's MP table, which the guest enumerates CPUs from
        # (it has no ACPI), lists one CPU per package.
        "-m", str(GUEST_MEMORY_MB), "-smp", f"{guest_vcpus()},sockets={guest_vcpus()}",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-cpu", "qemu64" if accel == "tcg" else "host",
    ]


# The guest's NIC path: two virtio-net NICs, one for the sender and one the executor moves into
# the peer's network namespace, joined by a pair of datagram sockets in the guest's own folder,
# each NIC's frames sent to the other's: nothing leaves this QEMU. With NAPI TX, skbs keep a
# sent file's pages until TX completes, and TCP keeps them until the peer ACKs: true zerocopy,
# as between two hosts.
NIC_MACS = ("52:54:00:5a:c0:01", "52:54:00:5a:c0:02")


def nic_pair_args(folder: Path) -> list[str]:
    args = []
    for number, mac in enumerate(NIC_MACS):
        local, remote = folder / f"nic{number}", folder / f"nic{1 - number}"
        args += ["-netdev", f"dgram,id=nic{number},local.type=unix,local.path={local},"
                            f"remote.type=unix,remote.path={remote}",
                 "-device", f"virtio-net-pci,netdev=nic{number},mac={mac}"]
    return args


# --- initramfs -------------------------------------------------------------------------------


def cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0), ino: int = 1) -> bytes:
    """One newc cpio record, so the initramfs needs neither root nor a cpio tool."""
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % value for value in fields)
    record = header + encoded
    record += b"\0" * (-len(record) % 4) + data
    return record + b"\0" * (-len(record) % 4)


# What every guest's root holds before its /init runs: a console, and the mount points /init uses.
GUEST_TREE = (("dev", 0o040755, b"", (0, 0)), ("dev/console", 0o020600, b"", (5, 1)), ("proc", 0o040755, b"", (0, 0)),
              ("sys", 0o040755, b"", (0, 0)), ("tmp", 0o041777, b"", (0, 0)))


def initramfs_archive(init: bytes, dirs: tuple[str, ...] = (), files: dict[str, bytes] | None = None) -> bytes:
    """The one way a guest's initramfs is made: GUEST_TREE, `dirs`, the executable /init and
    `files` (path in the guest: an executable's bytes)."""
    records = [*GUEST_TREE, *((name, 0o040755, b"", (0, 0)) for name in dirs), ("init", 0o100755, init, (0, 0)),
               *((name, 0o100755, data, (0, 0)) for name, data in (files or {}).items())]
    entries = [cpio_entry(name, mode, data, rdev, ino) for ino, (name, mode, data, rdev) in enumerate(records, 1)]
    return b"".join(entries) + cpio_entry("TRAILER!!!", 0, ino=0)


def build_initramfs(executor: Path, dest: Path) -> Path:
    tmp = dest.with_suffix(".tmp")
    tmp.write_bytes(initramfs_archive(executor.read_bytes()))
    tmp.replace(dest)
    return dest


def initramfs_for(executor: Path) -> Path:
    """The initramfs is keyed by the executor's content, so a rebuilt executor is picked up."""
    digest = kbuild.sha256_bytes(executor.read_bytes())[:16]
    path = kbuild.cache_dir() / "initramfs" / f"zcexec-{digest}.cpio"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        build_initramfs(executor, path)
    return path


# --- accelerator -----------------------------------------------------------------------------


def choose_accel(requested: str, kernel: Path, initramfs: Path) -> str:
    """KVM only where a real probe boot reaches the executor; a present /dev/kvm proves nothing."""
    if requested in ("kvm", "tcg"):
        return requested
    cache = kbuild.cache_dir() / "accel.json"
    try:
        return json.loads(cache.read_text())["accel"]
    except (OSError, ValueError, KeyError):
        pass
    accel = "tcg"
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        try:
            with Guest(kernel, initramfs, "kvm", boot_timeout=PROBE_TIMEOUT_S):
                accel = "kvm"
        except GuestError:
            accel = "tcg"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"accel": accel, "probed_at": time.time()}))
    return accel


# --- one guest -------------------------------------------------------------------------------


class GuestError(Exception):
    """The guest did not come up or went away; `console` holds what it printed."""

    def __init__(self, message: str, console: str):
        super().__init__(message)
        self.console = console


class Guest:
    """One QEMU process: boot, a connected channel to the executor, the console as it arrives."""

    def __init__(self, kernel: Path, initramfs: Path, accel: str, boot_timeout: float | None = BOOT_TIMEOUT_S,
                 cmdline_extra: str = "", restore: Path | None = None):
        """Start QEMU and, unless `boot_timeout` is None, wait for the executor (`wait_ready`).
        With `restore`, the guest resumes a state `save` wrote instead of booting.

        QEMU dies with the thread that started it (PR_SET_PDEATHSIG), so a guest booted in the
        background is started here by a long-lived thread and waited for by another."""
        self.workdir = Path(tempfile.mkdtemp(prefix="zcfuzz-vm-"))
        self.socket_path = self.workdir / "executor.sock"
        self.qmp_path = self.workdir / "qmp.sock"
        self.restored = restore is not None
        self.console_path = self.workdir / "console.log"
        self.console = bytearray()
        self.console_lock = threading.Lock()
        command = [
            *machine_args(accel), "-kernel", str(kernel), "-initrd", str(initramfs),
            "-append", f"{KERNEL_CMDLINE} {tsc_rate(accel)} {cmdline_extra}".strip(),
            "-serial", "stdio",
            "-device", "virtio-serial-pci,max_ports=2",
            "-chardev", f"socket,id=zc,path={self.socket_path},server=on,wait=off",
            "-device", "virtserialport,chardev=zc,name=zcfuzz",
            "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
            *nic_pair_args(self.workdir),
        ]
        saved = os.open(restore, os.O_RDONLY | os.O_CLOEXEC) if restore is not None else None
        if saved is not None:
            # QEMU reads the saved guest from the file itself: no `cat` process, no pipe
            command += ["-incoming", f"fd:{saved}"]
        self.started = time.monotonic()
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                                            pass_fds=() if saved is None else (saved,))
        finally:
            if saved is not None:
                os.close(saved)
        self.reader = threading.Thread(target=self._read_console, daemon=True)
        self.reader.start()
        self.channel: socket.socket | None = None
        self.buffer = b""
        self.warned = False  # printed a WARNING and went on: its state may differ from a fresh boot's
        self.on_failure = lambda: None  # what the owner wants done when the guest does not come up
        if boot_timeout is not None:
            self.wait_ready(boot_timeout)

    def wait_ready(self, timeout: float = BOOT_TIMEOUT_S) -> None:
        """Connect to the executor and wait for its ready line; GuestError (and closed) if not."""
        try:
            self._connect(timeout)
            self.boot_seconds = time.monotonic() - self.started
        except BaseException:
            self.close()
            self.on_failure()
            raise

    def _read_console(self) -> None:
        with open(self.console_path, "wb") as log:
            for chunk in iter(lambda: self.process.stdout.read1(65536), b""):
                log.write(chunk)
                log.flush()
                with self.console_lock:
                    self.console += chunk

    def console_size(self) -> int:
        with self.console_lock:
            return len(self.console)

    def report_end(self, since: int) -> int:
        """The console position after the end of the first WARNING report from `since` on (its
        `---[ end trace` line), or the current end when there is none."""
        with self.console_lock:
            printed = bytes(self.console[since:])
        end = printed.find(WARNING_REPORT_END.encode())
        newline = printed.find(b"\n", end) if end >= 0 else -1
        return since + (newline + 1 if newline >= 0 else len(printed))

    def console_text(self, since: int = 0) -> str:
        """What the console printed from byte `since` (a `console_size()`) on."""
        with self.console_lock:
            return self.console[since:].decode(errors="replace").replace("\r\n", "\n")

    def console_text_with(self, wanted: str, timeout_s: float, since: int = 0) -> str:
        """console_text(since) once it holds `wanted` (a regular expression), or as it is after
        timeout_s: the thread reading the console may be behind what the guest has said elsewhere."""
        deadline = time.monotonic() + timeout_s
        while not re.search(wanted, printed := self.console_text(since)) and time.monotonic() < deadline:
            time.sleep(0.01)
        return printed

    def _connect(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                self.channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.channel.connect(str(self.socket_path))
                break
            except OSError:
                self.channel.close()
                self.channel = None
                time.sleep(0.02)
        if self.channel is None:
            raise GuestError(self._death_reason("QEMU did not start"), self.console_text())
        if self.restored:  # the saved guest had said ready already: ask it
            self.send(b"ping\n")
        line = self.read_line(deadline)
        if line is None or (b'"pong"' if self.restored else READY_LINE.encode()) not in line:
            raise GuestError(self._death_reason("the executor did not report ready"), self.console_text())

    def save(self, dest: Path) -> None:
        """Write this guest's whole state to `dest` (a migration to a file), then let it go on.
        Call it on a guest no program has run on, so every restore starts where a boot ends."""
        partial = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as qmp:
                qmp.settimeout(SNAPSHOT_SAVE_TIMEOUT_S)
                qmp.connect(str(self.qmp_path))
                replies = qmp.makefile("r")
                replies.readline()  # the greeting

                def execute(command: str, **arguments) -> dict:
                    qmp.sendall(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
                    for line in replies:
                        reply = json.loads(line)
                        if "error" in reply:
                            raise GuestError(f"QMP {command}: {reply['error'].get('desc')}", self.console_text())
                        if "return" in reply:
                            return reply["return"]
                    raise GuestError(self._death_reason(f"QMP {command}: no answer"), self.console_text())

                execute("qmp_capabilities")
                execute("migrate", uri=f"exec:cat > {shlex.quote(str(partial))}")
                deadline = time.monotonic() + SNAPSHOT_SAVE_TIMEOUT_S
                while (status := execute("query-migrate").get("status")) not in ("completed", "failed", "cancelled"):
                    if time.monotonic() > deadline:
                        raise GuestError("saving the guest took too long", self.console_text())
                    time.sleep(0.02)
                execute("cont")  # a migrated guest stays paused
            if status != "completed":
                raise GuestError(f"saving the guest {status}", self.console_text())
            partial.replace(dest)
        finally:
            partial.unlink(missing_ok=True)

    def _death_reason(self, what: str) -> str:
        status = self.process.poll()
        return f"{what} (QEMU {'exited with ' + str(status) if status is not None else 'still running'})"

    def read_line(self, deadline: float) -> bytes | None:
        """One line from the executor, or None when the guest died or the deadline passed."""
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None and not self._readable():
                return None
            self.channel.settimeout(min(remaining, 0.25))
            try:
                chunk = self.channel.recv(1 << 20)
            except TimeoutError:
                self._check_memory()
                continue
            except OSError:
                return None
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def _readable(self) -> bool:
        self.channel.settimeout(0)
        try:
            chunk = self.channel.recv(1 << 20)
        except (BlockingIOError, OSError):
            return False
        self.buffer += chunk
        return bool(chunk)

    def _check_memory(self) -> None:
        try:
            if psutil.Process(self.process.pid).memory_info().rss > QEMU_RSS_LIMIT:
                self.process.kill()
        except psutil.NoSuchProcess:
            pass

    def send(self, data: bytes) -> None:
        self.channel.sendall(data)

    def close(self) -> None:
        """Stop QEMU and what it started (the `cat` of a save, which its death does not end)."""
        if self.channel is not None:
            self.channel.close()
        started = descendants(self.process.pid) if self.process.poll() is None else []
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        end_processes(started)
        self.reader.join(timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Guest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def host_timeout_s(program: Program) -> float:
    """How long the host waits for a result before it calls the guest hung: every op may run
    into its own timeout, the final drain settles, and the guest's hung-task detector (20 s)
    should get to speak first (a task stuck in D state ignores the executor's timers)."""
    return HUNG_TASK_GRACE_S + len(program.ops) * program.timeout_ms / 1000 + program.settle_ms / 1000


class SpareGuest:
    """A guest booting in the background, taken when the running one dies."""

    def __init__(self, guest: Guest):
        self.booting: Guest | None = guest
        self.guest: Guest | None = None  # set once the boot succeeded
        self.thread = threading.Thread(target=self._wait, daemon=True)
        self.thread.start()

    def _wait(self) -> None:
        try:
            self.booting.wait_ready()
        except (GuestError, OSError):
            return  # the caller boots one itself, with its own retry and message
        self.guest = self.booting

    def ready(self) -> bool:
        """Wait for the boot to end (wait_ready has its own timeout); True when the guest came up."""
        self.thread.join()
        return self.guest is not None

    def take(self) -> "Guest | None":
        """The booted guest (waiting for it if need be), or None when it did not come up."""
        self.ready()
        guest, self.guest, self.booting = self.guest, None, None
        return guest

    def close(self) -> None:
        """Stop it, booted or not (a boot cut short ends its waiting thread at once). A restore
        stopped here did not fail, so the saved guest it was reading stays."""
        if self.booting is not None:
            self.booting.on_failure = lambda: None
            self.booting.close()
            self.thread.join(5)
        self.guest = self.booting = None


class VmTarget(Target):
    """Programs run in a guest booted on a revision; a crash costs that program a reboot, which
    a spare guest booted in the background after the first crash hides."""

    def __init__(self, rev: str, source: str | None = None, config: list[str] | None = None,
                 accel: str = "auto", build: bool = True, cover: list[str] | None = None):
        self.rev = rev
        kernel = (kbuild.build_kernel(rev, source, config, cover=cover) if build
                  else kbuild.cached_build(rev, source, config, cover))
        if kernel is None:
            raise UserError(f"{rev} is not built: run 'zcfuzz kernel build --rev {rev}'")
        self.info = kbuild.kernel_info(kernel)
        self.name = f"vm:{self.info['revision']}"
        self.kernel = Path(self.info["boot_image"])
        self.initramfs = initramfs_for(executor_binary())
        self.accel = choose_accel(accel, self.kernel, self.initramfs)
        self.guest: Guest | None = None
        self.spare: SpareGuest | None = None
        self.boots: list[float] = []

    def kernel_info(self) -> dict:
        return dict(self.info, target=self.name, accel=self.accel)

    def boot(self) -> Guest:
        """A guest ready for programs. A boot that fails before any program ran is tried again
        once: under a loaded TCG host early boot occasionally trips over itself, and that is no
        program's finding."""
        if self.guest is None and self.spare is not None:
            self.guest = self.spare.take()
            self.spare = self._spare()
            if self.guest is not None:
                self.boots.append(self.guest.boot_seconds)
        failed_boots = 0
        while self.guest is None:
            guest = self._new_guest()
            try:
                guest.wait_ready()
            except GuestError as err:
                if guest.restored and not self.snapshot.exists():
                    continue  # the saved guest did not restore and is gone: boot, and save anew
                failed_boots += 1
                if failed_boots < BOOT_ATTEMPTS:
                    continue
                report = triage.parse(err.console)
                if report is not None:
                    raise KernelCrash(report.title, report.report, None, err.console)
                raise UserError(f"guest on {self.name} did not boot: {err}; run 'zcfuzz vm shell --rev {self.rev}'")
            self.guest = guest
            self.boots.append(guest.boot_seconds)
        if not self.guest.restored and not self.snapshot.exists():
            self._save(self.guest)
        return self.guest

    @functools.cached_property
    def snapshot(self) -> Path:
        """Where this target's freshly booted guest is saved: keyed by everything a restore must
        match (kernel, initramfs, QEMU, the code that builds QEMU's command line, accelerator, vCPUs)."""
        kernel = self.kernel.stat()
        key = kbuild.sha256_bytes(json.dumps([str(self.kernel), kernel.st_size, kernel.st_mtime_ns,
                                              self.initramfs.name, qemu_version(), self.accel,
                                              guest_vcpus()]).encode(),
                                  Path(__file__).read_bytes())[:24]
        return kbuild.cache_dir() / "snapshots" / f"{key}.vmstate"

    def cold_guest(self, cmdline_extra: str = "", slower: float = 1.0) -> Guest:
        """A guest booted from nothing, as a kernel's first guest is, never restored nor saved:
        for boot figures (`zcfuzz bench`); `slower` stretches the boot timeout for a boot that
        logs more. The caller closes it; it is a context manager."""
        return Guest(self.kernel, self.initramfs, self.accel, boot_timeout=slower * BOOT_TIMEOUT_S,
                     cmdline_extra=cmdline_extra)

    def _new_guest(self) -> Guest:
        """A guest on its way up, not waited for: restored where a saved one is, else booted.
        A saved guest that fails to restore is dropped, so the next one boots (and saves)."""
        if not self.snapshot.exists():
            return Guest(self.kernel, self.initramfs, self.accel, boot_timeout=None)
        os.utime(self.snapshot)  # recently used, so kept
        guest = Guest(self.kernel, self.initramfs, self.accel, boot_timeout=None, restore=self.snapshot)
        guest.on_failure = lambda: self.snapshot.unlink(missing_ok=True)
        return guest

    def _save(self, guest: Guest) -> None:
        """Save a just-booted guest for later boots, keeping the most recently used few. Saving is
        only a speed-up: if it fails, guests boot as before."""
        self.snapshot.parent.mkdir(parents=True, exist_ok=True)
        try:
            guest.save(self.snapshot)
        except (GuestError, OSError, ValueError):
            return
        saved = sorted(self.snapshot.parent.glob("*.vmstate"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in saved[SNAPSHOTS_KEPT:]:
            old.unlink(missing_ok=True)

    @property
    def tainted(self) -> bool:
        return self.guest is not None and self.guest.warned

    def restart(self) -> None:
        """Drop the running guest; the next program takes the spare (booting one if none is)."""
        if self.guest is not None:
            self.guest.close()
            self.guest = None
        self.spare = self.spare or self._spare()

    def _spare(self) -> SpareGuest:
        """A guest started here, in the thread that runs programs, and waited for in another."""
        return SpareGuest(self._new_guest())

    def run(self, program: Program) -> ProgramResult:
        guest = self.boot()
        console_mark = guest.console_size()
        guest.send(program.encode().encode())
        line = guest.read_line(time.monotonic() + host_timeout_s(program))
        if line is not None:
            try:
                result = decode_reply(line.decode(errors="replace"))
            except ExecutorError:
                # The executor's child died under the program: the kernel killed it, and the
                # console says why (or the guest is about to panic and say so).
                if not b'"executor_died"' in line:
                    raise
            else:
                if result.warnings:
                    raise self._warning(program, result, console_mark)
                return result
        raise self._crash(program, console_mark)

    def run_many(self, programs: list[Program]) -> list:
        """The programs sent in one write and their replies read as they come: the executor
        runs each as a request of its own (fresh fixtures, its checks, its WARNING count), and
        the virtio-serial round trip and the guest's wake-up are paid once. Outcomes as
        `Target.run_many`; a crash ends the guest, so the programs after it are not run."""
        guest = self.boot()
        console_mark = guest.console_size()
        guest.send(b"".join(program.encode().encode() for program in programs))
        outcomes: list = []
        for program in programs:
            if self.guest is not guest:  # the kernel died under an earlier program
                outcomes.append(None)
                continue
            line = guest.read_line(time.monotonic() + host_timeout_s(program))
            if line is not None:
                try:
                    result = decode_reply(line.decode(errors="replace"))
                except ExecutorError as err:
                    if b'"executor_died"' not in line:
                        outcomes.append(err)  # a refused request: the executor serves the next
                        continue
                else:
                    if result.warnings:
                        crash = self._warning(program, result, console_mark)
                        outcomes.append(crash)
                        console_mark = guest.report_end(console_mark)  # the next program's output follows
                        continue
                    outcomes.append(result)
                    continue
            outcomes.append(self._crash(program, console_mark))
        return outcomes

    def _warning(self, program: Program, result: ProgramResult, console_mark: int) -> KernelCrash:
        """The kernel printed a WARNING under `program` and went on: name it, keep the guest."""
        guest = self.guest
        printed = guest.console_text_with(re.escape(WARNING_REPORT_END), WARNING_REPORT_WAIT_S, console_mark)
        guest.warned = True
        report = triage.parse(printed)
        title = report.title if report is not None else "WARNING: report unreadable on the console"
        text = report.report if report is not None else printed[-4000:]
        return KernelCrash(title, text, program, printed, result=result)

    def _crash(self, program: Program, console_mark: int) -> KernelCrash:
        """The guest died or went silent under `program`: name it from the console, then reboot."""
        guest = self.guest
        if guest.process.poll() is None:
            # Silent but alive: give the kernel's own detectors a moment to speak, then stop it.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and guest.process.poll() is None:
                time.sleep(0.1)
        alive = guest.process.poll() is None
        guest.close()
        self.guest = None
        self.spare = self.spare or self._spare()  # a target that crashed once will again
        console = guest.console_text()
        report = triage.parse(guest.console_text(console_mark)) or triage.parse(console)
        if report is not None:
            return KernelCrash(report.title, report.report, program, console)
        title = triage.NO_OUTPUT_TITLE if alive else triage.LOST_CONNECTION_TITLE
        return KernelCrash(title, console[-4000:], program, console)

    def close(self) -> None:
        if self.guest is not None:
            self.guest.close()
            self.guest = None
        if self.spare is not None:
            self.spare.close()
            self.spare = None


def busybox_initramfs(init: str, files: dict[str, bytes] | None = None) -> bytes:
    """An initramfs whose /init is the busybox shell script `init` (busybox in /bin, its applets
    installed by the script itself), with `files` (path in the guest: contents) beside it."""
    busybox = shutil.which("busybox")
    if not busybox:
        raise missing("busybox not found", "busybox")
    return initramfs_archive(init.encode(), ("bin",), {"bin/busybox": Path(busybox).read_bytes(), **(files or {})})


def shell(rev: str, source: str | None = None, config: list[str] | None = None, accel: str = "auto") -> int:
    """An interactive busybox shell on a guest booted on the revision (for debugging by hand)."""
    kernel = kbuild.build_kernel(rev, source, config)
    workdir = Path(tempfile.mkdtemp(prefix="zcfuzz-shell-"))
    try:
        initramfs = workdir / "shell.cpio"
        initramfs.write_bytes(busybox_initramfs(
            "#!/bin/busybox sh\n/bin/busybox --install -s /bin\nmount -t proc proc /proc\n"
            "mount -t sysfs sys /sys\nmount -t debugfs none /sys/kernel/debug\n"
            "ip link set lo up\nsetsid cttyhack sh\npoweroff -f\n"))
        chosen = "tcg" if accel == "auto" else accel
        image = kbuild.kernel_info(kernel)["boot_image"]
        command = [*machine_args(chosen), "-kernel", image, "-initrd", str(initramfs),
                   "-append", f"console=ttyS0 panic=-1 rdinit=/init {tsc_rate(chosen)}", "-serial", "mon:stdio"]
        return subprocess.call(command, preexec_fn=die_with_parent)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
