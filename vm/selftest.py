"""The kernel's own msg_zerocopy selftest, run for real across a guest's NIC path.

tools/testing/selftests/net/msg_zerocopy.c of the base tree is built statically on the host, as
it is (`sendmsg` mode) and as the RFC's last patch changes it (`sendfile` mode: `-f FILE` sends
the file with sendfile2(), SENDFILE_ZC with `-z`). A busybox guest booted on the revision sets up
the NIC path as the executor does (vm/PROGRAM.md, "The NIC path": the second NIC in a network
namespace of its own, 169.254.90.1 and .2), runs the receiver (`-r`) in the peer's namespace and
the sender in ours, prints what each printed on the console and powers off. The host reads the
selftest's own lines back: `rx=N (M MB)`, `tx=N (M MB) txc=N zc=y|n`, `missing notifications:
N < M` and the `msg_zerocopy: ...` of error(), with the first kernel report the console shows.
"""

from __future__ import annotations

import functools
import re
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from zcfuzz.vm import kbuild, triage
from zcfuzz.vm.errors import UserError, require

SELFTEST = "tools/testing/selftests/net/msg_zerocopy.c"
SENDFILE_PATCH = kbuild.PATCHES_DIR / "rfc-v1" / "0010-selftests-Add-sendfile-zerocopy-notification-test.patch"
SENDFILE_ZC = 0x2  # what the RFC's selftest passes with -z -f (its #define SENDFILE_ZC)
MODES = ("sendmsg", "sendfile")
LOCAL4, PEER4 = "169.254.90.1", "169.254.90.2"  # vm/PROGRAM.md, "The NIC path"
LOCAL6, PEER6 = "fd00:5a::1", "fd00:5a::2"
DATA_MB = 8  # the file the sendfile mode sends, as the RFC's msg_zerocopy.sh makes it
TX_SECONDS, RX_SECONDS = 4, 7  # the receiver's clock starts at accept; it must outlast the sender
GUEST_TIMEOUT_S = 240.0
MARK = "zcfuzz-selftest"
_LINE = re.compile(rf"{MARK} (tx|rx|nic|exit|done)(?::| |$)\s?(.*)")
_RX = re.compile(r"^rx=(\d+) \((\d+) MB\)")
_TX = re.compile(r"^tx=(\d+) \((\d+) MB\) txc=(\d+) zc=([yn])")
_MISSING = re.compile(r"^missing notifications: (\d+) < (\d+)")
_COMPLETED = re.compile(r"^completed: (\d+) \(h=(\d+) l=(\d+)\)")  # with -v -v: one per record read
_GAP = re.compile(r"^gap: (\d+)\.\.(\d+) does not append to (\d+)")
_INCONSISTENT = "serr: inconsistent"  # this record's COPIED differs from the one before


# --- building the selftest ----------------------------------------------------------------------


def selftest_binary(mode: str, nr_sendfile2: int | None = None) -> Path:
    """The static msg_zerocopy of the base tree for `mode`: as it is for `sendmsg`, with the RFC's
    selftest patch applied in a scratch copy for `sendfile`, its sendfile2 number the kernel's."""
    if mode not in MODES:
        raise UserError(f"selftest mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "sendfile" and nr_sendfile2 is None:
        raise UserError("the sendfile mode of msg_zerocopy needs a kernel with sendfile2")
    require("tools to build the msg_zerocopy selftest", "gcc")
    source = (kbuild.debian_source().tree / SELFTEST).read_bytes()
    patch = SENDFILE_PATCH.read_bytes() if mode == "sendfile" else b""
    defines = [f"-D__NR_sendfile2={nr_sendfile2}"] if mode == "sendfile" else []
    key = kbuild.sha256_bytes(source, patch, " ".join(defines).encode(), gcc_version().encode())[:16]
    binary = kbuild.cache_dir() / "selftests" / f"msg_zerocopy-{mode}-{key}"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zcfuzz-selftest-") as scratch:
        tree = Path(scratch)
        for rel in (SELFTEST, SELFTEST.replace(".c", ".sh")):
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_bytes((kbuild.debian_source().tree / rel).read_bytes())
        if patch:
            kbuild.apply_series(tree, (SENDFILE_PATCH,))
        partial = binary.with_suffix(".tmp")
        done = subprocess.run(["gcc", "-static", "-O2", "-Wall", *defines, "-o", str(partial), str(tree / SELFTEST)],
                              check=False, capture_output=True, text=True)
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if "error" in line] or ["gcc failed"]
            hint = " (static linking needs libc6-dev)" if "cannot find -lc" in done.stderr else ""
            raise UserError(f"building msg_zerocopy failed: {errors[0]}{hint}")
        partial.replace(binary)
    return binary


@functools.cache
def gcc_version() -> str:
    return subprocess.run(["gcc", "--version"], check=False, capture_output=True, text=True).stdout.split("\n", 1)[0]


# --- the guest ----------------------------------------------------------------------------------


def nic_end(device: str, address4: str, address6: str) -> str:
    """Shell commands bringing one end of the NIC path up, as the executor's nic_end_up does."""
    return (f"echo 0 > /proc/sys/net/ipv6/conf/{device}/accept_dad; "
            # msg_zerocopy.sh raises optmem_max: every notification in flight takes option memory
            "echo 1000000 > /proc/sys/net/core/optmem_max; ip link set lo up; "
            f"ip addr add {address4}/16 dev {device} && ip -6 addr add {address6}/64 dev {device} && "
            f"ip link set {device} up")


def guest_init(mode: str, family: int, proto: str, zerocopy: bool, vcpus: int) -> str:
    """/init of the selftest guest: the NIC path, then one receiver and one sender, then off."""
    from zcfuzz.vm.qemu import NIC_MACS

    local, peer = (LOCAL4, PEER4) if family == 4 else (LOCAL6, PEER6)
    rx_cpu, tx_cpu = (1, 0) if vcpus > 1 else (0, 0)
    common = f"-{family} -S {local} -D {peer}"
    sendfile = " -f /tmp/data" if mode == "sendfile" else ""
    flag = " -z" if zerocopy else ""
    ping = "ping" if family == 4 else "ping6"
    return f"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mount -t devtmpfs dev /dev
say() {{ echo "{MARK} $*"; }}
ip link set lo up
for dev in /sys/class/net/*; do
  case "$(cat $dev/address)" in
    {NIC_MACS[0]}) local=${{dev##*/}} ;;
    {NIC_MACS[1]}) peer=${{dev##*/}} ;;
  esac
done
unshare -n sleep 100000 &
ns=$!
while [ "$(readlink /proc/$ns/ns/net)" = "$(readlink /proc/$$/ns/net)" ]; do usleep 10000; done
ip link set "$peer" netns $ns
{nic_end("$local", LOCAL4, LOCAL6)}
nsenter -t $ns -n sh -c '{nic_end("$0", PEER4, PEER6)}' "$peer"
up=0
for try in 1 2 3 4 5 6 7 8 9 10; do
  if {ping} -c 1 -W 2 {peer} > /dev/null 2>&1; then up=1; break; fi
done
if [ $up = 1 ]; then
  say "nic: up $local {local} <-> $peer {peer}"
  # feature bit 0 of a virtio-net device: VIRTIO_NET_F_CSUM, without which it has no scatter-gather
  say "nic: csum $(cut -c1 /sys/class/net/$local/device/features)"
  dd if=/dev/zero of=/tmp/data bs=1M count={DATA_MB} 2> /dev/null
  nsenter -t $ns -n /bin/msg_zerocopy {common} -t {RX_SECONDS} -C {rx_cpu}{sendfile}{flag} -r {proto} 2> /tmp/rx &
  rx=$!
  for try in $(seq 100); do
    nsenter -t $ns -n netstat -ln 2> /dev/null | grep -q ':8000 ' && break
    usleep 100000
  done
  /bin/msg_zerocopy {common} -t {TX_SECONDS} -C {tx_cpu}{sendfile}{flag} -v -v {proto} 2> /tmp/tx
  txrc=$?
  wait $rx
  rxrc=$?
  sed "s/^/{MARK} tx: /" /tmp/tx
  sed "s/^/{MARK} rx: /" /tmp/rx
  say "nic: retrans $(awk '/^Tcp: [0-9]/ {{print $13}}' /proc/net/snmp)"
  say "exit tx=$txrc rx=$rxrc"
else
  say "nic: down"
fi
say done
reboot -f  # QEMU runs with -no-reboot: it exits
"""


# --- the result ----------------------------------------------------------------------------------


@dataclass
class SelftestRun:
    """What msg_zerocopy printed, sender and receiver, and what the kernel did meanwhile."""

    revision: str
    mode: str
    family: int = 4
    proto: str = "tcp"
    zerocopy: bool = True
    nic_up: bool = False
    nic_csum: int | None = None  # the NIC offers checksum offload, hence scatter-gather (1) or not (0)
    nic_retrans: int | None = None  # TCP segments the sender's namespace resent (RetransSegs)
    tx_exit: int | None = None
    rx_exit: int | None = None
    tx_packets: int | None = None
    tx_mb: int | None = None
    completions: int | None = None  # txc
    zc: bool | None = None  # zc=y: the first notification had SO_EE_CODE_ZEROCOPY_COPIED clear
    rx_packets: int | None = None
    rx_mb: int | None = None
    missing: tuple[int, int] | None = None  # (completions, expected) of "missing notifications"
    # The sender runs with -v -v, so it prints each notification record it reads ("completed:"),
    # each record that does not continue the last ("gap:") and each one whose COPIED differs
    # from the one before ("serr: inconsistent"). `ranges` is [lo, hi, copied] per record.
    ranges: list[list] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    tx_lines: list[str] = field(default_factory=list)
    rx_lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the selftest's error() lines
    kernel_report: str | None = None  # title of the first report on the console (vm.triage)
    finished: bool = False  # the guest's script got to its end
    console: str = field(default="", repr=False)

    @property
    def ids(self) -> list[int]:
        """Every notification id the sender read, in the order read."""
        return [i for lo, hi, _ in self.ranges for i in range(lo, hi + 1)]

    @property
    def copied_ids(self) -> int:
        return sum(hi - lo + 1 for lo, hi, copied in self.ranges if copied)

    @property
    def only_the_last_missing(self) -> bool:
        """Notifications missing, if any, are of the last calls only: every id up to the last one
        read arrived once, in order. The selftest waits 500 ms for the last ones after its final
        call; a loaded TCG guest may take longer to have the peer acknowledge them."""
        return self.ids == list(range(len(self.ids))) and not self.gaps

    def summary(self) -> str:
        zc = {True: "y", False: "n", None: "?"}[self.zc]
        line = (f"{self.revision} {self.mode} ipv{self.family} {self.proto}{' -z' if self.zerocopy else ''}: "
                f"tx={self.tx_packets} ({self.tx_mb} MB) txc={self.completions} zc={zc} "
                f"rx={self.rx_packets} ({self.rx_mb} MB)")
        if self.ranges:
            line += f"; ids {len(self.ids)} in {len(self.ranges)} records, {self.copied_ids} COPIED"
        if self.missing:
            line += f"; missing notifications: {self.missing[0]} < {self.missing[1]}"
        if self.errors:
            line += f"; {'; '.join(self.errors)}"
        if self.kernel_report:
            line += f"; kernel: {self.kernel_report}"
        return line

    def to_json(self) -> dict:
        out = asdict(self)
        del out["console"]
        return out


def parse_console(console: str, run: SelftestRun) -> SelftestRun:
    """Fill `run` from the guest's console: the script's marked lines and the first kernel report."""
    flips: list[bool] = []  # per record read: whether "serr: inconsistent" came right before it
    flipped = False
    for raw in console.splitlines():
        match = _LINE.search(raw)
        if not match:
            continue
        what, text = match.groups()
        if what == "nic" and text.startswith(("csum ", "retrans ")):
            name, value = text.split()
            setattr(run, f"nic_{name}", int(value) if value.isdigit() else None)
        elif what == "nic":
            run.nic_up = text.startswith("up")
        elif what == "exit":
            codes = dict(re.findall(r"(tx|rx)=(\d+)", text))
            run.tx_exit, run.rx_exit = int(codes.get("tx", -1)), int(codes.get("rx", -1))
        elif what == "done":
            run.finished = True
        else:
            (run.tx_lines if what == "tx" else run.rx_lines).append(text)
            if text.startswith("msg_zerocopy:"):
                run.errors.append(f"{what}: {text}")
            elif what == "rx" and (m := _RX.match(text)):
                run.rx_packets, run.rx_mb = int(m[1]), int(m[2])
            elif what == "tx" and (m := _TX.match(text)):
                run.tx_packets, run.tx_mb, run.completions, run.zc = int(m[1]), int(m[2]), int(m[3]), m[4] == "y"
            elif what == "tx" and (m := _MISSING.match(text)):
                run.missing = (int(m[1]), int(m[2]))
            elif what == "tx" and (m := _COMPLETED.match(text)):
                run.ranges.append([int(m[3]), int(m[2]), None])
                flips.append(flipped)
                flipped = False
            elif what == "tx" and _GAP.match(text):
                run.gaps.append(text)
            elif what == "tx" and text == _INCONSISTENT:
                flipped = True
    # zc= is the COPIED state of the last record read; each "inconsistent" flipped it
    state = run.zc
    for record, flip in zip(reversed(run.ranges), reversed(flips)):
        record[2] = None if state is None else not state
        if flip and state is not None:
            state = not state
    report = triage.parse(console)
    run.kernel_report = report.title if report is not None else None
    run.console = console
    return run


def run_selftest(rev: str, mode: str, family: int = 4, proto: str = "tcp", zerocopy: bool = True,
                 accel: str = "auto", timeout: float = GUEST_TIMEOUT_S) -> SelftestRun:
    """Boot a guest on `rev` (built if need be), run msg_zerocopy across its NIC path once."""
    from zcfuzz.vm.executor import executor_binary
    from zcfuzz.vm.qemu import (
        Guest,
        busybox_initramfs,
        choose_accel,
        guest_vcpus,
        initramfs_for,
    )

    if family not in (4, 6) or proto != "tcp" and proto != "udp":
        raise UserError(f"msg_zerocopy across the NIC: ipv{family} {proto}: use ipv4 or ipv6, tcp or udp")
    info = kbuild.kernel_info(kbuild.build_kernel(rev))
    if mode == "sendfile" and zerocopy and info.get("sendfile_flags", {}).get("SENDFILE_ZC") != SENDFILE_ZC:
        raise UserError(f"{rev}: SENDFILE_ZC is {info.get('sendfile_flags', {}).get('SENDFILE_ZC')}, "
                        f"the RFC's selftest passes {SENDFILE_ZC:#x}")
    binary = selftest_binary(mode, info.get("nr_sendfile2"))
    kernel = Path(info["boot_image"])
    accel = choose_accel(accel, kernel, initramfs_for(executor_binary()))
    run = SelftestRun(info["revision"], mode, family, proto, zerocopy)
    with tempfile.TemporaryDirectory(prefix="zcfuzz-selftest-") as work:
        initramfs = Path(work) / "selftest.cpio"
        initramfs.write_bytes(busybox_initramfs(guest_init(mode, family, proto, zerocopy, guest_vcpus()),
                                                {"bin/msg_zerocopy": binary.read_bytes()}))
        with Guest(kernel, initramfs, accel, boot_timeout=None) as guest:
            deadline = time.monotonic() + timeout
            while guest.process.poll() is None and time.monotonic() < deadline:
                if f"{MARK} done" in guest.console_text():
                    try:
                        guest.process.wait(10)  # poweroff -f follows
                    except subprocess.TimeoutExpired:
                        pass
                    break
                time.sleep(0.2)
            console = guest.console_text()
    return parse_console(console, run)
