"""zcfuzz bench: figure computation and JSON shape without a VM, the C-loop workloads on the
host executor, and one reduced bench on a real guest."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest
from zcfuzz.vm.kbuild import PATCHES_DIR
from zcfuzz.workflows import bench

V2_INFO = {"revision": "v2", "base_version": "6.12.0", "nr_sendfile2": 467,
           "sendfile_flags": {"SENDFILE_DEFAULT": 1, "SENDFILE_ZC": 2}, "splice_flags": {"SPLICE_F_ZC": 16}}
BASE_INFO = {"revision": "base", "base_version": "6.12.0", "nr_sendfile2": None, "sendfile_flags": {},
             "splice_flags": {}}


def test_sendfile2_program_takes_number_and_flag_from_the_kernel():
    program = bench.representative_programs(V2_INFO)["sendfile2_zc"]
    (sendfile2,) = [op for op in program.ops if op.op == "sendfile2"]
    assert program.sysno_of("sendfile2") == 467 and sendfile2["flags"] == 2
    assert program.fixture("s").zerocopy
    assert bench.c_loop_request("sendfile2_zc", V2_INFO, 10) == "c-loop 10 sendfile2-zc 467 2"


def test_kernel_without_sendfile2_has_no_sendfile2_program():
    programs = bench.representative_programs(BASE_INFO)
    assert programs["sendfile2_zc"] == "n/a: kernel has no sendfile2"
    assert all(not isinstance(p, str) for name, p in programs.items() if name != "sendfile2_zc")


def test_mixed_program_has_six_calls():
    assert len(bench.representative_programs(BASE_INFO)["mixed6"].ops) == 6


def test_nic_programs_cross_the_nic_and_one_holds_the_peer_back():
    programs = bench.nic_programs()
    assert {f.kind for f in programs["nic_send"].fds} >= {"tcp4_nic", "udp4_nic"}
    assert [op.op for op in programs["nic_hold_release"].ops] == ["peer_hold", "sendmsg", "peer_release", "drain"]


def test_a_mix_runs_each_program_equally_often():
    assert bench.mix_rate([1.0, 4.0]) == 1.6  # 2 programs in 1 s + 0.25 s


@pytest.mark.host
def test_nic_figures_need_a_guest(host):
    assert bench.nic_figures(host, 1.0, {})["nic_programs_per_s"].startswith("n/a")


def test_ratio_is_program_rate_over_c_loop_rate_and_keeps_reasons():
    reason = "n/a: kernel has no sendfile2"
    out = bench.ratios({"sendfile64": 500.0, "sendfile2_zc": reason}, {"sendfile64": 1000.0, "sendfile2_zc": reason})
    assert out == {"sendfile64": 0.5, "sendfile2_zc": reason}


CONSOLE = """SeaBIOS
[    0.000000] Linux version 6.12
[    0.912000] initcall serial8250_init+0x0/0x1a0 returned 0 after 280957 usecs
[    1.500000] initcall loop_init+0x0/0x130 returned 0 after 65989 usecs
[    3.250000] Run /init as init process
zcfuzz-executor ready
[    9.000000] later
"""


def test_boot_breakdown_splits_at_the_kernel_clock_before_ready():
    assert bench.boot_breakdown(CONSOLE, 7.0) == {"before_kernel_s": 3.75, "kernel_to_ready_s": 3.25}


def test_boot_breakdown_takes_the_executors_clock_readings():
    console = CONSOLE.replace("zcfuzz-executor ready", "zcfuzz-executor: /init at 3.300 s, ready at 4.400 s\n"
                                                        "zcfuzz-executor ready")
    assert bench.boot_breakdown(console, 7.0) == {"before_kernel_s": 2.6, "kernel_to_init_s": 3.3,
                                                  "init_to_ready_s": 1.1}


def test_slowest_initcalls_in_seconds_slowest_first():
    assert bench.slowest_initcalls(CONSOLE, 1) == [("serial8250_init+0x0/0x1a0", 0.280957)]


def test_finding_times_median_and_worst():
    assert bench.finding_times({"a": 10.0, "b": 20.0, "c": 600.5}) == {
        "time_to_find_median_s": 20.0, "time_to_find_max_s": 600.5}
    assert bench.finding_times({})["time_to_find_max_s"] == "no finding"


@pytest.mark.parametrize("figure, value, verdict", [
    ("boot_s_median", 0.15, "met"),
    ("boot_s_median", 0.5, "not met"),
    ("cold_boot_s_median", 1.2, "met"),
    ("cold_boot_s_median", 6.0, "not met"),
    ("ratio_to_c_loop", {"a": 0.7, "b": 0.4, "c": "n/a: kernel has no sendfile2"}, "not met"),
    ("ratio_to_c_loop", {"a": 0.7, "c": "n/a"}, "met"),
    ("time_to_find_max_s", "no finding", ""),
    ("round_trip_ms", 0.2, ""),
    ("campaign_programs_per_s", 57.7, "not met"),
    ("campaign_programs_per_s", 151.0, "met"),
])
def test_target_verdict(figure, value, verdict):
    assert bench.target_verdict(figure, value) == verdict


def test_table_marks_guest_figures_taken_under_tcg():
    table = bench.format_table({"target": "vm:v2", "accel": "tcg", "kernel": V2_INFO, "boot_s_median": 6.1,
                                "hypothesis_ms_per_example": 1.2})
    boot = next(line for line in table.splitlines() if line.startswith("boot_s_median"))
    hypothesis = next(line for line in table.splitlines() if line.startswith("hypothesis"))
    assert "[TCG]" in boot and "<= 0.2" in boot and "not met" in boot and boot.endswith("6.1")
    assert "[TCG]" not in hypothesis and "TCG emulation" in table


def test_hypothesis_figure_is_a_positive_time():
    assert bench.hypothesis_ms_per_example(V2_INFO, 5) > 0


def test_coverage_figure_is_skipped_without_a_budget():
    assert bench.coverage_figure("v2", 0, 0) == {"time_to_90pct_series_lines": "not measured: --cover-budget 0"}


def test_time_to_find_says_when_the_revision_is_not_built(monkeypatch):
    monkeypatch.setattr(bench.kbuild, "cached_build", lambda rev: None)
    figures = bench.time_to_find("rfc-v1", 1.0, 0)
    assert figures["time_to_find_s"] == "not measured: rfc-v1 not built"


# --- the C loops and program rates on the host executor ------------------------------------------


@pytest.mark.host
@pytest.mark.parametrize("workload", ["sendfile", "splice", "mixed"])
def test_c_loop_workloads_run_on_the_host(host, workload):
    answer = json.loads(host.request(f"c-loop 200 {workload}"))["c_loop"]
    assert answer["workload"] == workload and answer["iterations"] == 200 and answer["per_sec"] > 0


@pytest.mark.host
@pytest.mark.parametrize("request_line, message", [
    ("c-loop 10 nosuch", "unknown workload"),
    ("c-loop 10 sendfile2-zc", "needs SENDFILE2_NR FLAGS"),
    ("c-loop 10 splice 1", "takes no arguments"),
    ("c-loop 0", "N must be"),
])
def test_bad_c_loop_requests_are_refused(host, request_line, message):
    assert message in json.loads(host.request(request_line))["error"]


@pytest.mark.host
def test_program_figures_on_the_host(host):
    figures = bench.program_figures(host, 0.3)
    assert set(figures["programs_per_s"]) == set(bench.representative_programs(host.kernel_info()))
    for name, rate in figures["programs_per_s"].items():
        if isinstance(rate, str):
            assert rate.startswith("n/a")
        else:
            split = figures["time_split"][name]
            assert rate > 0 and figures["c_loop_per_s"][name] > 0 and 0 < split["calls"] < 1
            assert set(split) == {"calls", "ops_other", "build", "final", "teardown", "transport_and_host"}
            assert sum(split.values()) == pytest.approx(1, abs=0.01) and split["final"] > 0


# --- a reduced bench on a real guest ---------------------------------------------------------------

FIGURES = ("boot_s_median", "cold_boot_s_median", "reboot_after_first_crash_s", "reboot_after_crash_s",
           "next_program_after_warning_s", "programs_per_s", "c_loop_per_s", "ratio_to_c_loop", "nic_programs_per_s",
           "round_trip_ms", "switches", "campaign_programs_per_s", "programs_per_s_batched", "ratio_to_c_loop_batched",
           "hypothesis_ms_per_example", "time_to_find_s", "time_to_find_generated_s", "time_to_kill_s", "build_cache_hit_s", "build_one_file_s", "host_peak_rss_mb", "children_peak_rss_mb")


def positive(value) -> bool:
    """A measured figure: a positive number, or a string saying why there is none."""
    if isinstance(value, dict):
        return all(positive(v) for v in value.values())
    if isinstance(value, str):
        return value.startswith(("n/a", "not measured", "survived"))
    return value > 0


@pytest.mark.vm
def test_reduced_bench_on_a_guest(tmp_path):
    from zcfuzz.vm.kbuild import build_kernel

    build_kernel("rfc-v1")  # time to find is measured on it (v2, the target, is built by the bench)
    mutants = tmp_path / "mutants"
    mutants.mkdir()
    shutil.copy(PATCHES_DIR / "mutants" / "0001-sendfile2-signed-flags.patch", mutants)
    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers())
    out = tmp_path / "bench.json"
    args = parser.parse_args(["bench", "--target", "vm:v2", "--json", str(out), "--boots", "2", "--seconds", "1.5",
                              "--examples", "20", "--find-budget", "45s", "--mutants", str(mutants),
                              "--kill-budget", "45s", "--campaign-budget", "20s", "--cover-budget", "0"])
    assert args.func(args) == 0
    figures = json.loads(out.read_text())
    assert figures["accel"] in ("tcg", "kvm") and figures["kernel"]["revision"] == "v2"
    for figure in FIGURES:
        assert positive(figures[figure]), (figure, figures[figure])
    assert figures["build_cold_s"].startswith("not measured")
    # by the executor's own clock readings, not the fallback split at the last kernel timestamp
    assert set(figures["cold_boot_breakdown"]) == {"before_kernel_s", "kernel_to_init_s", "init_to_ready_s"}
    assert set(figures["nic_programs_per_s"]) == {"nic_send", "nic_hold_release", "nic_mix", "all_mix"}
    assert isinstance(figures["time_to_find_s"], dict)  # rfc-v1 was there to measure it on
    assert set(figures["time_to_kill_s"]) == {"0001-sendfile2-signed-flags"}
    assert set(figures["switches"]) == {"batch", "spares"}
    assert set(figures["campaign_switches"]) == {"on_runs", "batch_twins", "spares", "all"}
    assert isinstance(figures["time_to_find_speedups_off_s"], dict)
    assert sum(figures["campaign_profile"]["share"].values()) == pytest.approx(1, abs=0.01)
    assert figures["time_to_90pct_series_lines"] == "not measured: --cover-budget 0"


@pytest.mark.vm
def test_nic_figures_on_a_guest():
    from zcfuzz.vm.backends import open_target

    with open_target("vm:v2") as target:
        figures = bench.nic_figures(target, 0.5, {"sendfile64": 100.0})["nic_programs_per_s"]
    assert figures["nic_send"] > figures["nic_hold_release"] > 0  # holding the peer costs a resend
    assert figures["nic_hold_release"] <= figures["nic_mix"] <= figures["nic_send"]
    assert figures["nic_hold_release"] <= figures["all_mix"] <= 100


@pytest.mark.parametrize("args, words", [
    (["--mutants", "/nonexistent"], ["no *.patch", "/nonexistent"]),
    (["--json", "/nonexistent/bench.json"], ["cannot write", "/nonexistent/bench.json"]),
    (["--kill-budget", "soon"], ["bad budget", "soon"]),
    (["--campaign-budget", "1 minute"], ["bad budget", "1 minute"]),
    (["--cover-budget", "soonish"], ["bad budget", "soonish"]),
], ids=["no-mutants", "unwritable-json", "bad-budget", "bad-campaign-budget", "bad-cover-budget"])
def test_what_would_stop_a_bench_late_stops_it_at_once(args, words):
    from tests.test_gate import assert_one_line_error, zcfuzz

    assert_one_line_error(zcfuzz("bench", "--target", "host", *args, timeout=60), *words)
