"""`zcfuzz bench`: the performance figures kernel developers judge a fuzzer by, measured side by
side in one run on one guest, so that ratios between them hold on a noisy, shared machine.

Guest figures: boot to executor ready (as the target does it, restoring a saved guest, and cold),
reboot after a crash, programs per second for a fixed set
of representative programs next to the executor's plain C loop doing the same calls (the C loop
is the ceiling: a program can only lose to it by the executor's and the host's overhead).
Host figures: Hypothesis generation per example, time to each finding from an empty example
database (as campaigns run, the spec's programs first, and by generation alone), time to each
mutant's kill, kernel build cache hit and one-file rebuild, peak memory (zcfuzz with its
campaign workers, and QEMU, each summed over its processes).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from zcfuzz.conformance.abi import MSG_ZEROCOPY, Abi
from zcfuzz.fuzz.findings import finding_files
from zcfuzz.vm import kbuild
from zcfuzz.vm.backends import executor_request, open_target, revision_of
from zcfuzz.vm.errors import UserError, check_outputs, write_output
from zcfuzz.vm.executor import READY_LINE
from zcfuzz.vm.lifetime import MemoryPeaks
from zcfuzz.vm.program import Program
from zcfuzz.vm.target import KernelCrash, Target

C_LOOP_BYTES = 512  # what each C-loop workload moves per call (zcexec.c C_LOOP_BYTES)
SPARES_DEFAULT = 2  # spare pairs per kind a guest's executor keeps unless told otherwise (zcexec.c)
CRASH_PROGRAM = Program.from_json({"fds": [], "ops": [{"op": "lkdtm", "crash": "BUG"}]})
WARNING_PROGRAM = Program.from_json({"fds": [], "ops": [{"op": "lkdtm", "crash": "WARNING"}]})
ROUNDS = 3  # program and C loop alternate this many times per workload; the median counts
PINGS = 200
FINDINGS_POLL_S = 0.2
TOUCHED_FILE = "fs/splice.c"
_TIMESTAMP = re.compile(r"^\[\s*(\d+\.\d+)\]", re.M)
_INIT_AND_READY = re.compile(r"zcfuzz-executor: /init at (\d+\.\d+) s, ready at (\d+\.\d+) s")
_INITCALL = re.compile(r"initcall (\S+) returned \S+ after (\d+) usecs")

# What the issue asks of each figure: (comparison, bound).
TARGETS = {
    "boot_s_median": ("<=", 0.2),
    "cold_boot_s_median": ("<=", 1.5),
    "reboot_after_crash_s": ("<=", 3.0),
    "ratio_to_c_loop": (">=", 0.5),
    "ratio_to_c_loop_batched": (">=", 0.5),
    "time_to_find_max_s": ("<=", 600.0),
    "time_to_find_median_s": ("<=", 30.0),
    "time_to_find_generated_max_s": ("<=", 600.0),
    "time_to_find_generated_median_s": ("<=", 30.0),
    "campaign_programs_per_s": (">=", 150.0),
}
GUEST_FIGURES = ("boot_s_median", "cold_boot_s_median", "reboot_after_first_crash_s", "reboot_after_crash_s",
                 "next_program_after_warning_s", "programs_per_s", "c_loop_per_s", "ratio_to_c_loop", "time_split",
                 "programs_per_s_batched", "ratio_to_c_loop_batched",
                 "nic_programs_per_s", "round_trip_ms", "time_to_find_s",
                 "time_to_find_generated_s", "time_to_kill_s", "switches", "campaign_programs_per_s",
                 "campaign_profile", "campaign_switches", "time_to_90pct_series_lines")


# --- the representative programs and their C loops ---------------------------------------------


def representative_programs(info: dict) -> dict[str, Program | str]:
    """The fixed set of programs measured, by name; a string says why one is not applicable."""
    abi = Abi.from_kernel_info(info)
    file = {"name": "f", "kind": "file", "size": C_LOOP_BYTES}
    sock = {"name": "s", "kind": "tcp4"}
    pipe = {"name": "p", "kind": "pipe"}
    send = {"op": "sendfile64", "out": "s", "in": "f", "offset": 0, "count": C_LOOP_BYTES}
    write = {"op": "write", "fd": "p.w", "len": C_LOOP_BYTES}
    splice = {"op": "splice", "in": "p.r", "off_in": None, "out": "s", "off_out": None, "len": C_LOOP_BYTES,
              "flags": 0}
    read = {"op": "peer_read", "fd": "s", "max": 65536}
    drain = {"op": "drain", "fd": "s"}
    programs: dict[str, Program | str] = {
        "sendfile64": Program.from_json({"fds": [file, sock], "ops": [send, read]}),
        "sendfile2_zc": "n/a: kernel has no sendfile2",
        "splice": Program.from_json({"fds": [pipe, sock], "ops": [write, splice, read]}),
        "mixed6": Program.from_json({"fds": [file, sock, pipe], "ops": [
            send, write, splice, {"op": "sendmsg", "fd": "s", "len": C_LOOP_BYTES, "flags": 0}, read, drain]}),
    }
    if abi.has_sendfile2 and not abi.sendfile_zc:
        programs["sendfile2_zc"] = "n/a: kernel has no SENDFILE_ZC flag"
    elif abi.has_sendfile2:
        programs["sendfile2_zc"] = Program.from_json({
            "sysno": {"sendfile2": abi.nr_sendfile2},
            "fds": [file, dict(sock, zerocopy=True)],
            "ops": [{"op": "sendfile2", "out": "s", "in": "f", "offset": 0, "count": C_LOOP_BYTES,
                     "flags": abi.sendfile_zc}, read, drain]})
    return programs


def nic_programs() -> dict[str, Program]:
    """Programs through the NIC path (vm/PROGRAM.md, "The NIC path"), as campaigns draw them: one
    that sends to a TCP and a UDP peer across the NIC, and one that holds the TCP peer back, sends
    with MSG_ZEROCOPY, lets the peer go and waits for the notification (the resend waits for
    TCP's retransmission timeout, and the program settles until nothing is in flight)."""
    file = {"name": "f", "kind": "file", "size": C_LOOP_BYTES}
    tcp, udp = {"name": "t", "kind": "tcp4_nic"}, {"name": "u", "kind": "udp4_nic"}
    send = {"op": "sendfile64", "in": "f", "offset": 0, "count": C_LOOP_BYTES}
    return {
        "nic_send": Program.from_json({"fds": [file, tcp, udp], "ops": [
            dict(send, out="t"), dict(send, out="u"),
            {"op": "peer_read", "fd": "t", "max": 65536}, {"op": "peer_read", "fd": "u", "max": 65536}]}),
        "nic_hold_release": Program.from_json({"fds": [dict(tcp, zerocopy=True)], "ops": [
            {"op": "peer_hold", "fd": "t"}, {"op": "sendmsg", "fd": "t", "len": C_LOOP_BYTES, "flags": MSG_ZEROCOPY},
            {"op": "peer_release", "fd": "t"}, {"op": "drain", "fd": "t", "wait_ms": 5000}]}),
    }


def c_loop_request(name: str, info: dict, iterations: int) -> str:
    """The executor request for the C loop doing the work of program `name`."""
    abi = Abi.from_kernel_info(info)
    workload = {"sendfile64": "sendfile", "sendfile2_zc": f"sendfile2-zc {abi.nr_sendfile2} {abi.sendfile_zc}",
                "splice": "splice", "mixed6": "mixed"}[name]
    return f"c-loop {iterations} {workload}"


# --- figure computation ---------------------------------------------------------------------------


def ratios(programs_per_s: dict, c_loop_per_s: dict) -> dict:
    """Program rate over C loop rate, where both were measured; the reason otherwise."""
    out = {}
    for name, rate in programs_per_s.items():
        loop = c_loop_per_s.get(name)
        out[name] = round(rate / loop, 3) if isinstance(rate, float) and isinstance(loop, float) and loop else rate
    return out


def boot_breakdown(console: str, boot_s: float) -> dict:
    """Where a boot's wall time went: before the kernel's clock starts (QEMU start-up, loading the
    kernel), the kernel's own boot to /init, and the executor's start to its ready line, by the
    clock readings the executor prints; where the console read so far lacks them (the reader
    runs behind the port's ready line), split at the last kernel timestamp before ready."""
    stated = _INIT_AND_READY.search(console)
    if stated:
        init_s, ready_s = float(stated.group(1)), float(stated.group(2))
        return {"before_kernel_s": round(max(boot_s - ready_s, 0.0), 2), "kernel_to_init_s": round(init_s, 2),
                "init_to_ready_s": round(ready_s - init_s, 2)}
    before_ready = console.split(READY_LINE, 1)[0]
    stamps = [float(s) for s in _TIMESTAMP.findall(before_ready)]
    kernel_s = stamps[-1] if stamps else 0.0
    return {"before_kernel_s": round(max(boot_s - kernel_s, 0.0), 2), "kernel_to_ready_s": round(kernel_s, 2)}


def slowest_initcalls(console: str, count: int = 8) -> list[tuple[str, float]]:
    """The initcalls that cost most, in seconds (a console booted with initcall_debug)."""
    calls = [(name, int(usecs) / 1e6) for name, usecs in _INITCALL.findall(console)]
    return sorted(calls, key=lambda call: -call[1])[:count]


def finding_times(first_seen: dict[str, float], suffix: str = "", reason: str = "no finding") -> dict:
    """Median and worst time to a finding, or a reason when there was none."""
    if not first_seen:
        return {f"time_to_find{suffix}_median_s": reason, f"time_to_find{suffix}_max_s": reason}
    times = list(first_seen.values())
    return {f"time_to_find{suffix}_median_s": round(statistics.median(times), 1),
            f"time_to_find{suffix}_max_s": round(max(times), 1)}


def target_verdict(figure: str, value) -> str:
    """'met', 'not met' or '' (no target, or no number to judge)."""
    if figure not in TARGETS:
        return ""
    comparison, bound = TARGETS[figure]
    values = [v for v in (value.values() if isinstance(value, dict) else [value]) if isinstance(v, (int, float))]
    if not values:
        return ""
    worst = min(values) if comparison == ">=" else max(values)
    return "met" if (worst >= bound if comparison == ">=" else worst <= bound) else "not met"


def format_value(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {format_value(v)}" for k, v in value.items()) or "none"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    if isinstance(value, list):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def format_table(figures: dict) -> str:
    """The human report: one row per figure, its target and whether it is met."""
    accel = figures.get("accel", "")
    lines = [f"zcfuzz bench on {figures['target']} (linux {figures['kernel'].get('base_version', '?')}, "
             f"accel {accel})"]
    if accel == "tcg":
        lines.append("figures marked [TCG] were taken under TCG emulation (no KVM): guest work is ~45x slower")
    rows = []
    for figure, value in figures.items():
        if figure in ("target", "accel", "kernel"):
            continue
        name = figure + (" [TCG]" if accel == "tcg" and figure in GUEST_FIGURES else "")
        target = " ".join(map(str, TARGETS[figure])) if figure in TARGETS else ""
        rows.append((name, target, target_verdict(figure, value), format_value(value)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}")
    return "\n".join(lines)


# --- measurements in the guest --------------------------------------------------------------------


def round_trip_ms(target: Target, pings: int = PINGS) -> float:
    """Median host -> executor -> host time of a request that does nothing."""
    times = []
    for _ in range(pings):
        started = time.perf_counter()
        executor_request(target, "ping")
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 3)


PHASES = ("build", "ops", "final", "teardown")


def program_rate(target: Target, program: Program, seconds: float) -> tuple[float, dict]:
    """Programs per second for `seconds`, and the share of that time each part took: the ops'
    calls, the rest of the executor's ops phase, its other phases (vm/PROGRAM.md `phases_ns`),
    and what is left: transport, parsing and the host."""
    first = target.run(program)
    failed = [op for op in first.ops if op["errno"]]
    if failed:
        raise UserError(f"bench program {program.dumps()} failed: {failed[0]}")
    count, spent, started = 0, dict.fromkeys(("calls", *PHASES), 0), time.perf_counter()
    while time.perf_counter() - started < seconds:
        result = target.run(program)
        spent["calls"] += sum(op["ns"] for op in result.ops)
        for phase in PHASES:
            spent[phase] += result.phases_ns.get(phase, 0)
        count += 1
    elapsed = time.perf_counter() - started
    share = {"calls": spent["calls"], "ops_other": spent["ops"] - spent["calls"],
             **{phase: spent[phase] for phase in PHASES if phase != "ops"}}
    share["transport_and_host"] = elapsed * 1e9 - sum(share.values())
    return count / elapsed, {part: ns / 1e9 / elapsed for part, ns in share.items()}


def c_loop_rate(target: Target, name: str, info: dict, seconds: float) -> float:
    """The C loop's iterations per second, run long enough to take about `seconds`."""
    probe = executor_request(target, c_loop_request(name, info, 50))["c_loop"]["per_sec"]
    iterations = max(50, int(probe * seconds))
    return executor_request(target, c_loop_request(name, info, iterations))["c_loop"]["per_sec"]


SPEEDUPS_OFF = {"batch_twins": False, "spares": 0}  # a campaign as it ran before either
SWITCH_ROUNDS = 4  # each switch alternates on and off this many times; the median of each counts
BATCH = 8  # programs per request with batching on


def batch_rate(target: Target, program: Program, seconds: float) -> float:
    """Programs per second sent BATCH to a request (`Target.run_many`), each still run alone."""
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        outcomes = target.run_many([program] * BATCH)
        bad = [o for o in outcomes if not hasattr(o, "ops")]
        if bad:
            raise UserError(f"bench program {program.dumps()} failed in a batch: {bad[0]}")
        count += len(outcomes)
    return count / (time.perf_counter() - started)


def program_figures(target: Target, seconds: float) -> dict:
    """programs_per_s (one program per request), programs_per_s_batched (BATCH per request),
    c_loop_per_s, the ratio of each to the C loop, and time_split, one entry per program."""
    info = target.kernel_info()
    programs_per_s, batched_per_s, c_loop_per_s, time_split = {}, {}, {}, {}
    for name, program in representative_programs(info).items():
        if isinstance(program, str):
            programs_per_s[name] = batched_per_s[name] = c_loop_per_s[name] = time_split[name] = program
            continue
        rates, batched, loops, splits = [], [], [], []
        for _ in range(ROUNDS):
            rate, split = program_rate(target, program, seconds / ROUNDS)
            rates.append(rate)
            splits.append(split)
            batched.append(batch_rate(target, program, seconds / ROUNDS))
            loops.append(c_loop_rate(target, name, info, seconds / ROUNDS))
        programs_per_s[name] = round(statistics.median(rates), 1)
        batched_per_s[name] = round(statistics.median(batched), 1)
        c_loop_per_s[name] = round(statistics.median(loops), 1)
        median_round = rates.index(statistics.median_low(rates))  # its split adds up to 1
        time_split[name] = {part: round(share, 3) for part, share in splits[median_round].items()}
    return {"programs_per_s": programs_per_s, "programs_per_s_batched": batched_per_s, "c_loop_per_s": c_loop_per_s,
            "ratio_to_c_loop": ratios(programs_per_s, c_loop_per_s),
            "ratio_to_c_loop_batched": ratios(batched_per_s, c_loop_per_s), "time_split": time_split}


def mix_rate(rates: list) -> float:
    """Programs per second of a mix running each program equally often (their harmonic mean)."""
    return round(len(rates) / sum(1 / rate for rate in rates), 2)


def nic_figures(target: Target, seconds: float, programs_per_s: dict) -> dict:
    """Programs per second of each NIC program (one round each: they are slow), of the two in
    equal numbers (`nic_mix`) and of them and the representative programs (`programs_per_s`) in
    equal numbers (`all_mix`)."""
    if not target.name.startswith("vm:"):
        return {"nic_programs_per_s": "n/a: the NIC path is a guest's"}
    rates = {name: program_rate(target, program, seconds)[0] for name, program in nic_programs().items()}
    measured = [rate for rate in programs_per_s.values() if isinstance(rate, float)]
    figures = {name: round(rate, 2) for name, rate in rates.items()}
    figures.update(nic_mix=mix_rate(list(rates.values())), all_mix=mix_rate([*rates.values(), *measured]))
    return {"nic_programs_per_s": figures}


def switch_figures(target: Target, seconds: float) -> dict:
    """Each speed-up that can be switched, on and off in alternating rounds on the same guest:
    `batch` (BATCH sendfile64 programs per request, against one per request) and `spares`
    (the ZC sendfile2 program, or a MSG_ZEROCOPY one on a kernel without it, with the executor
    connecting spare pairs while idle, against none: `spares 0`)."""
    info = target.kernel_info()
    programs = representative_programs(info)
    zerocopy = programs["sendfile2_zc"]
    if isinstance(zerocopy, str):
        zerocopy = Program.from_json({"fds": [{"name": "s", "kind": "tcp4", "zerocopy": True}], "ops": [
            {"op": "sendmsg", "fd": "s", "len": C_LOOP_BYTES, "flags": MSG_ZEROCOPY},
            {"op": "peer_read", "fd": "s", "max": 65536}, {"op": "drain", "fd": "s"}]})
    rounds = {name: {"on": [], "off": []} for name in ("batch", "spares")}
    each = seconds / SWITCH_ROUNDS / 2
    try:
        for i in range(SWITCH_ROUNDS):
            for on in ((True, False) if i % 2 == 0 else (False, True)):
                state = "on" if on else "off"
                rounds["batch"][state].append(batch_rate(target, programs["sendfile64"], each) if on
                                              else program_rate(target, programs["sendfile64"], each)[0])
                executor_request(target, f"spares {SPARES_DEFAULT if on else 0}")
                rounds["spares"][state].append(program_rate(target, zerocopy, each)[0])
    finally:  # back to the executor's own default: spares in a guest, none on the host
        executor_request(target, f"spares {SPARES_DEFAULT if target.name.startswith('vm:') else 0}")
    return {"switches": {name: {state: round(statistics.median(rates), 1) for state, rates in states.items()}
                         for name, states in rounds.items()}}


def campaign_figures(rev: str, budget_s: float, seed: int) -> dict:
    """A fixed-seed campaign on REV as `zcfuzz fuzz` runs it (spec programs first): programs per
    second (a program's sendfile64 twin counts, as the progress line counts it) and where its
    time went; then the same campaign with every speed-up off, with each off, and with all on
    again (each switch's `on` is the mean of the two on-runs)."""
    from zcfuzz.fuzz.campaign import CampaignConfig, run_campaign

    if kbuild.cached_build(rev) is None:
        return {"campaign_programs_per_s": f"not measured: {rev} not built"}
    # On first and last, so that a change of load on a shared machine shows in the two on-runs.
    runs = {"on": {}, "all_off": SPEEDUPS_OFF, "batch_twins_off": {"batch_twins": False}, "spares_off": {"spares": 0},
            "on_again": {}}
    totals = {}
    for name, options in runs.items():
        with tempfile.TemporaryDirectory(prefix="zcfuzz-bench-campaign-") as folder:
            config = CampaignConfig(target=f"vm:{rev}", budget_s=budget_s, seed=seed, findings=Path(folder),
                                    target_options={"build": False}, **options)
            totals[name] = run_campaign(config, out=sys.stderr)
    rates = {name: round(t["programs_per_s"], 2) for name, t in totals.items()}
    on = round((rates["on"] + rates["on_again"]) / 2, 2)
    return {"campaign_programs_per_s": rates["on"], "campaign_profile": totals["on"].get("profile", {}),
            "campaign_switches": {"on_runs": [rates["on"], rates["on_again"]],
                                  "batch_twins": {"on": on, "off": rates["batch_twins_off"]},
                                  "spares": {"on": on, "off": rates["spares_off"]},
                                  "all": {"on": on, "off": rates["all_off"]}}}


def coverage_figure(rev: str, budget_s: float, seed: int) -> dict:
    """Seconds until a campaign with coverage reached 90% of the series' reachable lines."""
    if budget_s <= 0:
        return {"time_to_90pct_series_lines": "not measured: --cover-budget 0"}
    if kbuild.cached_build(rev) is None:
        return {"time_to_90pct_series_lines": f"not measured: {rev} not built"}
    from zcfuzz.workflows.cover import time_to_cover

    with tempfile.TemporaryDirectory(prefix="zcfuzz-bench-cover-") as folder:
        return {"time_to_90pct_series_lines": time_to_cover(rev, budget_s, fraction=0.9, seed=seed,
                                                            findings=Path(folder))}


CONSOLE_CATCH_UP_S = 2.0  # for the console reader to reach a cold guest's clock readings


def boot_figures(target, boots: int) -> dict:
    """Median time to a ready executor over `boots` guests started as the target starts them
    (restoring its saved guest) and over as many cold boots, and where a cold boot's time went."""
    target.close()
    target.boot()  # a target's first guest boots and is saved, if nothing was saved yet
    started, cold, console = [], [], ""
    for _ in range(boots):
        target.close()
        started.append(target.boot().boot_seconds)
    target.close()
    for _ in range(boots):
        with target.cold_guest() as guest:
            cold.append(guest.boot_seconds)
            # the executor prints its clock readings before it says ready on its port
            console = guest.console_text_with(_INIT_AND_READY.pattern, CONSOLE_CATCH_UP_S)
    return {"boot_s_median": round(statistics.median(started), 2), "boot_s": [round(t, 2) for t in started],
            "cold_boot_s_median": round(statistics.median(cold), 2), "cold_boot_s": [round(t, 2) for t in cold],
            "cold_boot_breakdown": boot_breakdown(console, cold[-1])}


def initcall_figures(target) -> dict:
    """One boot with initcall_debug: the slowest initcalls (this boot is slower, so not timed)."""
    with target.cold_guest("initcall_debug ignore_loglevel", slower=3) as guest:
        console = guest.console_text()
    calls = slowest_initcalls(console)
    return {"slowest_initcalls_s": {name: round(seconds, 3) for name, seconds in calls}}


def reboot_after_crash(target, program: Program) -> dict:
    """From the start of a program that panics the guest (LKDTM BUG) to the next program's result:
    the first crash waits for a guest to start (restored from the saved one), later ones take the
    spare guest started meanwhile. Then the same after an LKDTM WARNING, which leaves the guest
    running."""
    figures: dict = {}

    def crash_then_run(crash: Program, detected_key: str) -> float:
        started = time.monotonic()
        try:
            target.run(crash)
        except KernelCrash:
            figures[detected_key] = round(time.monotonic() - started, 2)
        else:
            raise UserError(f"LKDTM {crash.ops[0]['crash']} was not reported: is CONFIG_LKDTM on?")
        target.run(program)
        return round(time.monotonic() - started, 2)

    target.close()
    target.boot()
    figures["reboot_after_first_crash_s"] = crash_then_run(CRASH_PROGRAM, "crash_detected_s")
    if target.spare is not None:
        target.spare.ready()
    figures["reboot_after_crash_s"] = crash_then_run(CRASH_PROGRAM, "crash_detected_s")
    figures["next_program_after_warning_s"] = crash_then_run(WARNING_PROGRAM, "warning_detected_s")
    return figures


# --- measurements on the host ---------------------------------------------------------------------


def hypothesis_ms_per_example(info: dict, examples: int) -> float:
    """Median time between two programs Hypothesis hands to an empty test (fuzz.strategies)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from zcfuzz.fuzz.strategies import programs

    stamps: list[float] = []

    @settings(max_examples=examples, database=None, deadline=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(programs(Abi.from_kernel_info(info)))
    def generate(program: Program) -> None:
        stamps.append(time.perf_counter())

    generate()
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    return round(statistics.median(intervals) * 1000, 3)


def watch_findings(folder: Path, started: float, first_seen: dict[str, float], stop: threading.Event) -> None:
    """Note when each finding's folder first appears (a folder appears whole: fuzz.findings)."""
    while not stop.wait(FINDINGS_POLL_S):
        for path in finding_files(folder):
            try:
                title = json.loads(path.read_text())["title"]
            except (OSError, ValueError, KeyError):
                continue
            first_seen.setdefault(title, round(time.monotonic() - started, 1))


def campaign_finding_times(target_spec: str, budget_s: float, seed: int, folder: Path,
                           spec_programs: bool = True, until_first: bool = False, **options) -> dict[str, float]:
    """A campaign with a fixed seed from an empty database in `folder`: seconds from its start to
    each finding, by title. `options` are more CampaignConfig fields (the speed-ups off)."""
    from zcfuzz.fuzz.campaign import CampaignConfig, run_campaign

    first_seen: dict[str, float] = {}
    config = CampaignConfig(target=target_spec, budget_s=budget_s, seed=seed, findings=folder,
                            spec_programs=spec_programs, until_first_finding=until_first,
                            target_options={"build": False}, **options)
    stop = threading.Event()
    watcher = threading.Thread(target=watch_findings, args=(folder, time.monotonic(), first_seen, stop))
    watcher.start()
    try:
        run_campaign(config, out=sys.stderr)
    finally:
        stop.set()
        watcher.join()
    return dict(sorted(first_seen.items(), key=lambda item: item[1]))


def time_to_find(rev: str, budget_s: float, seed: int, spec_programs: bool = True, suffix: str | None = None,
                 **options) -> dict:
    """Seconds to each finding of a campaign on REV from an empty database, as `zcfuzz fuzz`
    runs it (the spec's programs first) or, without spec_programs, by generation alone (the
    figures' names then end in _generated, or in `suffix`). `options` go to the campaign."""
    suffix = suffix if suffix is not None else "" if spec_programs else "_generated"
    if kbuild.cached_build(rev) is None:
        reason = f"not measured: {rev} not built"
        return {f"time_to_find{suffix}_s": reason, **finding_times({}, suffix, reason)}
    with tempfile.TemporaryDirectory(prefix="zcfuzz-bench-") as folder:
        first_seen = campaign_finding_times(f"vm:{rev}", budget_s, seed, Path(folder), spec_programs, **options)
    return {f"time_to_find{suffix}_s": first_seen, **finding_times(first_seen, suffix)}


def mutant_kill_times(rev: str, mutants: Path, budget_s: float, seed: int) -> dict:
    """Seconds from an empty database to each mutant's kill: a campaign on REV plus the mutant,
    stopped at its first finding, whose program must then not fail on REV itself."""
    from zcfuzz.workflows.gate import fails_on, read_findings
    from zcfuzz.workflows.mutants import load_mutants, materialise

    if kbuild.cached_build(rev) is None:
        return {"time_to_kill_s": f"not measured: {rev} not built"}
    revision = kbuild.resolve_revision(rev)
    times: dict[str, float | str] = {}
    with tempfile.TemporaryDirectory(prefix="zcfuzz-bench-mutants-") as work:
        for mutant in load_mutants(mutants):
            kbuild.build_kernel(revision.with_patch(mutant.patch, slot=f"{revision.name}-mutants"))
            folder = Path(work) / mutant.name
            target_spec = f"vm:{materialise(revision, mutant, folder / 'revision')}"
            found = campaign_finding_times(target_spec, budget_s, seed, folder / "findings", until_first=True)
            findings = {doc["title"]: doc for doc in read_findings(folder / "findings").values()}
            kills = [t for title, t in found.items() if not fails_on(findings[title], f"vm:{rev}", {})]
            times[mutant.name] = min(kills) if kills else f"survived {budget_s:.0f} s"
    killed = [t for t in times.values() if isinstance(t, float)]
    return {"time_to_kill_s": times,
            "time_to_kill_median_s": round(statistics.median(killed), 1) if killed else "no kill",
            "time_to_kill_max_s": round(max(killed), 1) if killed else "no kill"}


def build_cache_hit_s(rev: str) -> float:
    started = time.monotonic()
    kbuild.build_kernel(rev)
    return round(time.monotonic() - started, 4)


def build_one_file_s(rev: str, touched: str) -> float:
    """Touch one file in the revision's slot and time the incremental make of what boots."""
    revision = kbuild.resolve_revision(rev)
    base = kbuild.base_source(None)
    slot = kbuild.slot_for(base, revision)
    with slot.locked():
        kbuild.sync_slot(slot, base, revision)
        kbuild.configure(slot, kbuild.config_fragments(None))
        image = kbuild.boot_target(slot.build / ".config")
        kbuild.run_make(slot, image)  # up to date first, so only the touched file is timed
        path = slot.src / touched
        if not path.is_file():
            raise UserError(f"--touch {touched}: no such file in the kernel tree")
        path.touch()
        started = time.monotonic()
        kbuild.run_make(slot, image)
        return round(time.monotonic() - started, 1)


@contextlib.contextmanager
def ccache_disabled():
    previous = os.environ.get("CCACHE_DISABLE")
    os.environ["CCACHE_DISABLE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["CCACHE_DISABLE"]
        else:
            os.environ["CCACHE_DISABLE"] = previous


def build_cold_s(rev: str) -> float:
    """The revision built from nothing in a slot of its own as `build_kernel` builds it, ccache
    off; the slot is removed."""
    revision = kbuild.resolve_revision(rev)
    cold = kbuild.Revision(revision.name, revision.folder, revision.patches, f"{revision.name}-bench-cold")
    base = kbuild.base_source(None)
    slot = kbuild.slot_for(base, cold)
    with slot.locked(), ccache_disabled():
        shutil.rmtree(slot.root, ignore_errors=True)
        started = time.monotonic()
        try:
            kbuild.sync_slot(slot, base, cold)
            kbuild.configure(slot, kbuild.config_fragments(None))
            kbuild.run_make(slot, kbuild.boot_target(slot.build / ".config"))
            return round(time.monotonic() - started, 1)
        finally:
            shutil.rmtree(slot.root, ignore_errors=True)


def peak_rss_mb() -> dict:
    """Peak resident memory of zcfuzz's own process and of its largest finished child (QEMU,
    compilers), as the kernel accounts each process. What all of them took together at once is
    the figures of `MemoryPeaks` (cmd_bench)."""
    return {"host_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "children_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


# --- the run -----------------------------------------------------------------------------------


def kernel_summary(info: dict) -> dict:
    keys = ("revision", "base_version", "key", "nr_sendfile2", "sendfile_flags", "splice_flags", "build_seconds")
    return {k: info[k] for k in keys if k in info}


def run_bench(args, progress=print) -> dict:
    """Every figure, in an order that keeps one guest for the guest figures and runs the campaign
    and the builds with no guest of ours competing for the CPU."""
    figures: dict = {"target": args.target}
    rev = revision_of(args.target)  # None for the host
    with open_target(args.target) as target:
        info = target.kernel_info()
        figures.update(accel=info.get("accel", "none"), kernel=kernel_summary(info))
        programs = representative_programs(info)
        if rev is not None:
            progress(f"bench: {args.boots} boots")
            figures.update(boot_figures(target, args.boots))
            progress("bench: reboot after a crash")
            figures.update(reboot_after_crash(target, programs["sendfile64"]))
        progress("bench: programs and C loops")
        figures["round_trip_ms"] = round_trip_ms(target)
        figures.update(program_figures(target, args.seconds))
        progress("bench: programs across the NIC")
        figures.update(nic_figures(target, args.seconds / ROUNDS, figures["programs_per_s"]))
        progress("bench: each speed-up on and off")
        figures.update(switch_figures(target, args.seconds))
        if rev is not None:
            target.close()
            progress("bench: a boot with initcall_debug")
            figures.update(initcall_figures(target))
    progress("bench: Hypothesis generation")
    figures["hypothesis_ms_per_example"] = hypothesis_ms_per_example(info, args.examples)
    from zcfuzz.fuzz.campaign import parse_budget

    if rev is not None:
        progress(f"bench: campaign programs per second on {rev} ({args.campaign_budget} each, speed-ups on, then each off)")
        figures.update(campaign_figures(rev, parse_budget(args.campaign_budget), args.find_seed))
        progress(f"bench: time to 90% of the series' lines on {rev} (at most {args.cover_budget})")
        cover_budget = 0.0 if args.cover_budget in ("0", "0s") else parse_budget(args.cover_budget)
        figures.update(coverage_figure(rev, cover_budget, args.find_seed))
    progress(f"bench: time to find on {args.find_rev} ({args.find_budget})")
    find_budget = parse_budget(args.find_budget)
    figures.update(time_to_find(args.find_rev, find_budget, args.find_seed))
    progress(f"bench: time to find on {args.find_rev} by generation alone ({args.find_budget})")
    figures.update(time_to_find(args.find_rev, find_budget, args.find_seed, spec_programs=False))
    progress(f"bench: time to find on {args.find_rev} with the speed-ups off ({args.find_budget})")
    figures.update(time_to_find(args.find_rev, find_budget, args.find_seed, suffix="_speedups_off", **SPEEDUPS_OFF))
    progress(f"bench: time to kill each mutant of {args.mutant_rev} (at most {args.kill_budget} each)")
    figures.update(mutant_kill_times(args.mutant_rev, args.mutants, parse_budget(args.kill_budget), args.find_seed))
    if rev is not None:
        progress("bench: kernel build cache hit and one-file rebuild")
        figures["build_cache_hit_s"] = build_cache_hit_s(rev)
        figures["build_one_file_s"] = build_one_file_s(rev, args.touch)
        figures["build_cold_s"] = build_cold_s(rev) if args.cold else "not measured: pass --cold"
    figures.update(peak_rss_mb())
    return figures


def cmd_bench(args) -> int:
    from zcfuzz.fuzz.campaign import parse_budget
    from zcfuzz.workflows.mutants import load_mutants

    if args.boots < 1 or args.seconds <= 0 or args.examples < 2:
        raise UserError("--boots must be at least 1, --seconds positive and --examples at least 2")
    # What would stop the run late stops it now: a bad budget, no mutants, an unwritable report.
    for budget in (args.find_budget, args.kill_budget, args.campaign_budget):
        parse_budget(budget)
    if args.cover_budget not in ("0", "0s"):
        parse_budget(args.cover_budget)
    load_mutants(args.mutants)
    check_outputs(args.json)
    with MemoryPeaks() as memory:  # zcfuzz with its campaign workers, and QEMU, each summed
        figures = run_bench(args, progress=lambda line: print(line, file=sys.stderr))
    figures.update(memory.to_json())
    print(format_table(figures))
    write_output(args.json, json.dumps(figures, indent=2) + "\n")
    return 0


def register(sub) -> None:
    bench = sub.add_parser("bench", help="measure boot, program rates against a C loop, findings, builds")
    bench.add_argument("--target", default="vm:v2", help="vm:REV (default vm:v2), or host for program rates only")
    bench.add_argument("--json", help="also write the figures to this file as JSON")
    bench.add_argument("--cold", action="store_true", help="also time a cold kernel build (15-30 min)")
    bench.add_argument("--boots", type=int, default=5, help="boots for the median (default 5)")
    bench.add_argument("--seconds", type=float, default=6.0,
                       help="measuring time per program and per C loop (default 6)")
    bench.add_argument("--examples", type=int, default=300, help="Hypothesis examples to time (default 300)")
    bench.add_argument("--find-rev", default="rfc-v1", help="revision for time to find (default rfc-v1)")
    bench.add_argument("--find-budget", default="5m", help="campaign budget for time to find (default 5m)")
    bench.add_argument("--find-seed", type=int, default=0, help="campaign seed (default 0)")
    bench.add_argument("--mutant-rev", default="v2", help="revision the mutants apply to (default v2)")
    bench.add_argument("--mutants", default=kbuild.PATCHES_DIR / "mutants", type=Path, metavar="DIR",
                       help="folder of mutant patches (default kernel-patches/mutants)")
    bench.add_argument("--kill-budget", default="1m", help="campaign budget per mutant (default 1m)")
    bench.add_argument("--campaign-budget", default="1m",
                       help="each campaign of campaign_programs_per_s and its speed-ups off (default 1m)")
    bench.add_argument("--cover-budget", default="5m",
                       help="budget of time_to_90pct_series_lines; 0 skips it (default 5m)")
    bench.add_argument("--touch", default=TOUCHED_FILE, help=f"file of the one-file rebuild (default {TOUCHED_FILE})")
    bench.set_defaults(func=cmd_bench)
