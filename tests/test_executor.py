"""The executor on the running kernel, through the host target."""

from __future__ import annotations

import errno
import json
import os

import pytest
from zcfuzz.vm.program import FD_KINDS, NIC_KINDS, Program, digest, pattern

pytestmark = pytest.mark.host

MSG_ZEROCOPY = 0x4000000
SO_EE_ORIGIN_ZEROCOPY = 5
SO_EE_CODE_ZEROCOPY_COPIED = 1
# Kinds the running kernel may lack, with the errno that says so: only a guest has the NIC path.
MAY_BE_MISSING = {"udp_dummy": errno.ENODEV, **{kind: errno.ENETUNREACH for kind in NIC_KINDS}}


def run(host, fds, ops, **options):
    return host.run(Program.from_json({"fds": fds, "ops": ops, **options}))


@pytest.mark.parametrize("kind", list(FD_KINDS))
def test_every_fixture_kind_builds_or_says_why(host, kind):
    result = run(host, [{"name": "x", "kind": kind}], [])
    if kind in MAY_BE_MISSING and result.fixture_errors:
        (error,) = result.fixture_errors
        assert error["errno"] == MAY_BE_MISSING[kind] and error["reason"]
    else:
        assert result.fixture_errors == []


SENDFILES = [
    # (socket kind, file size, offset, count, bytes moved)
    ("tcp4", 65536, 0, 512, 512),
    ("tcp4", 65536, 1000, 4096, 4096),
    ("tcp6", 4096, 4000, 512, 96),
    ("unix_stream", 8192, 0, 8192, 8192),
    ("tcp4", 100, 100, 10, 0),
]


@pytest.mark.parametrize("sock, size, offset, count, moved", SENDFILES)
def test_sendfile64_moves_the_file_slice(host, sock, size, offset, count, moved):
    result = run(host, [{"name": "f", "kind": "file", "size": size, "seed": 3}, {"name": "s", "kind": sock}],
                 [{"op": "sendfile64", "out": "s", "in": "f", "offset": offset, "count": count}])
    assert (result.ret(0), result.errno(0)) == (moved, 0)
    op = result.ops[0]
    assert (op["offset_before"], op["offset_after"]) == (offset, offset + moved)
    assert (op["in_pos_before"], op["in_pos_after"]) == (0, 0)  # an offset pointer leaves the position alone
    assert op["out_pos_before"] is None  # sockets have no position
    assert op["in_size_after"] == size
    assert result.peer_bytes("s") == moved
    assert result.peer_digest("s") == digest(pattern(3, offset, moved))


def test_sendfile64_without_offset_advances_the_file_position(host):
    result = run(host, [{"name": "f", "kind": "file", "size": 2048}, {"name": "s", "kind": "tcp4"}],
                 [{"op": "sendfile64", "out": "s", "in": "f", "offset": None, "count": 700}] * 2)
    assert [(op["in_pos_before"], op["in_pos_after"]) for op in result.ops] == [(0, 700), (700, 1400)]
    assert result.peer_digest("s") == digest(pattern(0, 0, 1400))


def test_sendfile_from_a_non_file_reports_no_size(host):
    result = run(host, [{"name": "p", "kind": "pipe"}, {"name": "s", "kind": "tcp4"}],
                 [{"op": "sendfile64", "out": "s", "in": "p.r", "offset": None, "count": 10}])
    assert result.ops[0]["in_size_after"] is None


ERRNOS = [
    # (out kind, in kind, offset, errno)
    ("invalid", "file", None, errno.EBADF),
    ("tcp4", "invalid", None, errno.EBADF),
    ("closed", "file", None, errno.EBADF),
    ("tcp4", "file_wo", None, errno.EBADF),
    ("file_ro", "file", None, errno.EBADF),
    ("tcp4", "file", "unmapped", errno.EFAULT),
    ("tcp4", "file", "protnone", errno.EFAULT),
    ("tcp4", "file", -1, errno.EINVAL),
    ("file_append", "file", None, errno.EINVAL),
]


@pytest.mark.parametrize("out, in_, offset, expected", ERRNOS)
def test_sendfile64_errnos(host, out, in_, offset, expected):
    result = run(host, [{"name": "o", "kind": out}, {"name": "i", "kind": in_}],
                 [{"op": "sendfile64", "out": "o", "in": "i", "offset": offset, "count": 64}])
    assert (result.ret(0), result.errno_name(0)) == (-1, errno.errorcode[expected])


def test_sendfile2_without_a_number_is_skipped(host):
    result = run(host, [{"name": "f", "kind": "file"}, {"name": "s", "kind": "tcp4"}],
                 [{"op": "sendfile2", "out": "s", "in": "f", "offset": 0, "count": 1, "flags": 1}])
    assert (result.errno(0), result.ops[0]["skipped"]) == (errno.ENOSYS, "no syscall number")
    assert result.peer_bytes("s") == 0


def test_full_nonblocking_unix_dgram_gives_eagain(host):
    """LTP sendfile07: fill a non-blocking AF_UNIX datagram pair, then sendfile into it."""
    fills = [{"op": "write", "fd": "u", "len": 4096}] * 64
    result = run(host, [{"name": "f", "kind": "file"}, {"name": "u", "kind": "unix_dgram", "nonblock": True,
                                                            "sndbuf": 16384}],
                 fills + [{"op": "sendfile64", "out": "u", "in": "f", "offset": 0, "count": 512}])
    assert errno.EAGAIN in [result.errno(i) for i in range(len(fills))]  # the pair did fill up
    assert (result.ret(len(fills)), result.errno_name(len(fills))) == (-1, "EAGAIN")
    assert not result.timed_out(len(fills))


def test_msg_zerocopy_on_loopback_is_notified_as_copied(host):
    result = run(host, [{"name": "s", "kind": "tcp4", "zerocopy": True}],
                 [{"op": "sendmsg", "fd": "s", "len": 10000, "flags": MSG_ZEROCOPY},
                  {"op": "sendmsg", "fd": "s", "len": 10000, "flags": MSG_ZEROCOPY},
                  {"op": "drain", "fd": "s", "wait_ms": 500}])
    assert result.ret(0) == result.ret(1) == 10000
    notes = result.notifications("s")
    assert notes and all(n["origin"] == SO_EE_ORIGIN_ZEROCOPY and n["errno"] == 0 for n in notes)
    assert all(n["code"] & SO_EE_CODE_ZEROCOPY_COPIED for n in notes)
    assert sorted(i for n in notes for i in range(n["lo"], n["hi"] + 1)) == [0, 1]
    assert result.peer_digest("s") == digest(pattern(0, 0, 10000) * 2)


def test_without_so_zerocopy_msg_zerocopy_is_ignored(host):
    result = run(host, [{"name": "s", "kind": "tcp4"}],
                 [{"op": "sendmsg", "fd": "s", "len": 100, "flags": MSG_ZEROCOPY}], settle_ms=50)
    assert result.ret(0) == 100 and result.notifications("s") == []


def test_so_zerocopy_on_unix_is_a_fixture_error(host):
    result = run(host, [{"name": "u", "kind": "unix_stream", "zerocopy": True}],
                 [{"op": "write", "fd": "u", "len": 1}])
    assert result.fixture_error("u") == errno.EOPNOTSUPP
    assert result.ops[0]["fixture_error"] and result.errno(0) == errno.EBADF


BLOCKING = [
    # ops that block forever without the timeout
    [{"op": "splice", "in": "p.r", "off_in": None, "out": "n", "off_out": None, "len": 100, "flags": 0}],
    [{"op": "tee", "in": "p.r", "out": "q.w", "len": 100, "flags": 0}],
    [{"op": "write", "fd": "p.w", "len": 1 << 20}],
]


@pytest.mark.parametrize("ops", BLOCKING)
def test_per_op_timeout_interrupts_a_blocked_call(host, ops):
    result = run(host, [{"name": "p", "kind": "pipe"}, {"name": "q", "kind": "pipe"},
                        {"name": "n", "kind": "devnull"}],
                 ops + [{"op": "write", "fd": "q.w", "len": 3}], timeout_ms=150)
    assert result.timed_out(0)
    assert 150e6 <= result.ops[0]["ns"] < 2e9
    assert not result.timed_out(1) and result.ret(1) == 3  # the program goes on after it


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_no_fd_leak_across_programs(host):
    every_kind = Program.from_json({
        "fds": [{"name": kind, "kind": kind} for kind in FD_KINDS]
               + [{"name": "z", "kind": "tcp6", "zerocopy": True}],
        "ops": [{"op": "close", "fd": "pipe.w"}, {"op": "close", "fd": "tcp4"},
                {"op": "peer_close", "fd": "udp4"},
                  {"op": "sendmsg", "fd": "z", "len": 100, "flags": MSG_ZEROCOPY}],
    })
    host.run(every_kind)
    before = open_fds(host.pid)
    for _ in range(200):
        result = host.run(every_kind)
    assert open_fds(host.pid) == before
    assert result.peer_bytes("z") == 100


REUSE = [
    # (fixtures, ops, fixtures expected to come from the pool on the second run)
    ([{"name": "f", "kind": "file", "size": 512, "seed": 9}, {"name": "s", "kind": "tcp4", "sndbuf": 12345}],
     [{"op": "sendfile64", "out": "s", "in": "f", "offset": None, "count": 512},
      {"op": "peer_read", "fd": "s", "max": 512}],
     ["f", "s"]),
    ([{"name": "f", "kind": "file", "size": 512, "seed": 9}, {"name": "s", "kind": "tcp4", "sndbuf": 12345}],
     [{"op": "write", "fd": "f", "len": 100},
      {"op": "sendfile64", "out": "s", "in": "f", "offset": 0, "count": 512}],
     ["s"]),
    ([{"name": "f", "kind": "file_ro", "size": 700}, {"name": "s", "kind": "tcp6", "zerocopy": True}],
     [{"op": "sendfile64", "out": "s", "in": "f", "offset": None, "count": 700}],
     ["f"]),
    ([{"name": "f", "kind": "file", "size": 512, "seed": 9}, {"name": "s", "kind": "tcp4", "sndbuf": 12345}],
     [{"op": "sendfile2", "out": "s", "in": "f", "offset": 0, "count": 512, "flags": 0}],
     ["f"]),
]


@pytest.mark.parametrize("fds, ops, reused", REUSE)
def test_kept_fixtures_are_indistinguishable_from_new_ones(host, fds, ops, reused):
    program = Program.from_json({"fds": fds, "ops": ops, "settle_ms": 50})
    host.run(program)
    first, second = host.run(program), host.run(program)  # the first run may have found others' leftovers
    assert second.reused == reused
    assert [(op["ret"], op["errno"]) for op in first.ops] == [(op["ret"], op["errno"]) for op in second.ops]
    assert first.peers == second.peers


def test_a_full_pool_gives_up_its_oldest_fixture_and_keeps_no_more_fds(host):
    def files(first_size: int) -> Program:  # seventeen files no later program asks for again
        return Program.from_json({"fds": [{"name": f"f{i}", "kind": "file", "size": first_size + i}
                                          for i in range(17)], "ops": []})

    pair = Program.from_json({"fds": [{"name": "s", "kind": "tcp4", "sndbuf": 23456}],
                              "ops": [{"op": "peer_read", "fd": "s", "max": 1}]})
    host.run(files(1000))
    host.run(files(2000))
    full = open_fds(host.pid)
    host.run(files(3000))
    assert open_fds(host.pid) == full  # what the newer files pushed out was closed
    host.run(pair)
    assert host.run(pair).reused == ["s"]


BAD_REQUESTS = [
    ("program 1 2", "program record needs 4 fields"),
    ("program 1 2 3 4 ; fd a nosuchkind 0 0 0 0 0", "unknown fixture kind"),
    ("program 1 2 3 4 ; op close 0", "bad fd reference"),
    ("program 1 2 3 4 ; fd a file 0 0 0 0 0 ; op splice 0 null", "needs 6 arguments"),
    ("program 1 2 3 4 ; fd a file 0 0 0 0 0 ; op write 0 lots", "bad integer"),
    ("program 1 2 3 4 ; fd a file 0 0 0 0 0 ; op write 0 1 thread=2", "bad option thread=2"),
    ("program 1 2 3 4 ; fd a file 0 0 0 0 0 ; op write 0 1 fail_nth=0", "bad option fail_nth=0"),
    ("program 1 2 3 4 ; fd a tcp4 0 0 0 0 0 ; op drain 0 0 fail_nth=1", "bad option fail_nth=1"),
    ("program x 2 3 4", "bad number"),
    ("program 1 2 3 4 cover=1 optmem_max=4096 extra", "program record needs 4 fields"),
    ("program 1 2 3 4 optmem_max=lots", "unknown option"),
    ("hello", "unknown request"),
]


@pytest.mark.parametrize("line, message", BAD_REQUESTS)
def test_malformed_requests_get_an_error_and_serving_goes_on(host, line, message):
    assert message in json.loads(host.request(line))["error"]
    assert json.loads(host.request("ping")) == {"pong": True}


def test_c_loop_request(host):
    answer = json.loads(host.request("c-loop 1000"))["c_loop"]
    assert answer["iterations"] == 1000 and answer["per_sec"] > 0


CAP_IPC_LOCK = 14


@pytest.mark.parametrize("field", ["CapEff", "CapPrm", "CapBnd"])
def test_executor_runs_without_cap_ipc_lock(host, field):
    host.run(Program.from_json({"fds": [], "ops": []}))
    with open(f"/proc/{host.pid}/status") as status:
        caps = {line.split(":")[0]: int(line.split()[1], 16) for line in status if line.startswith("Cap")}
    assert not caps[field] & (1 << CAP_IPC_LOCK)


@pytest.mark.parametrize("memlock, ret, error", [
    (0, -1, "ENOBUFS"),  # every pinned page is over the limit, as for an ordinary user
    (8 << 20, 65536, "OK"),
])
def test_memlock_limits_zerocopy_sends(host, memlock, ret, error):
    result = run(host, [{"name": "s", "kind": "tcp4", "zerocopy": True}],
                 [{"op": "sendmsg", "fd": "s", "len": 65536, "flags": MSG_ZEROCOPY}], memlock=memlock)
    assert (result.ret(0), result.errno_name(0)) == (ret, error)
    with open(f"/proc/{host.pid}/limits") as limits:
        (line,) = [line for line in limits if line.startswith("Max locked memory")]
    assert int(line.split()[3]) == memlock


# --- fault injection and concurrent calls (vm/PROGRAM.md) ---------------------------------------

NO_FAIL_NTH = not os.path.exists("/proc/thread-self/fail-nth")


@pytest.mark.skipif(not NO_FAIL_NTH, reason="this kernel has fail-nth; the guest tests cover it")
@pytest.mark.parametrize("thread", [0, 1])
def test_without_fail_nth_the_call_runs_unfaulted_and_says_so(host, thread):
    result = run(host, [{"name": "f", "kind": "file", "size": 4096}, {"name": "s", "kind": "tcp4"}],
                 [{"op": "sendfile64", "out": "s", "in": "f", "offset": 0, "count": 512, "fail_nth": 1,
                   "thread": thread},
                  {"op": "sendfile64", "out": "s", "in": "f", "offset": 512, "count": 512, "thread": thread}])
    assert (result.ret(0), result.ops[0]["fault_injected"], result.ops[0]["skipped_fault"]) == (512, False,
                                                                                                "no fail-nth")
    assert "fault_injected" not in result.ops[1] and "skipped_fault" not in result.ops[1]
    assert result.peer_digest("s") == digest(pattern(0, 0, 1024))


def test_an_op_not_attempted_arms_no_fault(host):
    result = run(host, [{"name": "f", "kind": "file"}, {"name": "s", "kind": "tcp4"}],
                 [{"op": "sendfile2", "out": "s", "in": "f", "offset": 0, "count": 1, "flags": 0, "fail_nth": 1}])
    assert result.ops[0]["skipped"] == "no syscall number" and result.ops[0]["fault_injected"] is False
    assert "skipped_fault" not in result.ops[0]


def test_ops_of_both_threads_come_back_in_program_order(host):
    result = run(host, [{"name": "f", "kind": "file", "size": 8192, "seed": 5}, {"name": "s", "kind": "tcp4"}],
                 [{"op": "sendfile64", "out": "s", "in": "f", "offset": 0, "count": 100},
                  {"op": "peer_read", "fd": "s", "max": 1 << 20, "thread": 1},
                  {"op": "sendfile64", "out": "s", "in": "f", "offset": 100, "count": 200},
                  {"op": "peer_read", "fd": "s", "max": 1 << 20, "thread": 1}])
    assert [(op["op"], op["thread"]) for op in result.ops] == [
        ("sendfile64", 0), ("peer_read", 1), ("sendfile64", 0), ("peer_read", 1)]
    assert [result.ret(0), result.ret(2)] == [100, 200]
    for i in range(4):
        assert 0 <= result.ops[i]["start_ns"] <= result.ops[i]["end_ns"]
    assert result.ops[0]["end_ns"] <= result.ops[2]["start_ns"]  # one thread's ops run in order
    assert result.ops[1]["end_ns"] <= result.ops[3]["start_ns"]
    # The peer reads of thread 1 and the final read took the stream in order.
    assert result.peer_digest("s") == digest(pattern(5, 0, 300))
    cpus = len(os.sched_getaffinity(host.pid))
    assert result.thread_cpus == ([-1, -1] if cpus < 2 else sorted(os.sched_getaffinity(host.pid))[:2])


def test_a_program_without_thread_1_has_no_second_thread(host):
    result = run(host, [{"name": "s", "kind": "tcp4"}], [{"op": "write", "fd": "s", "len": 10}])
    assert result.thread_cpus == [] and result.ops[0]["thread"] == 0


def test_each_thread_times_out_on_its_own_timer_and_both_ran_at_once(host):
    result = run(host, [{"name": "p", "kind": "pipe"}, {"name": "q", "kind": "pipe"},
                        {"name": "n", "kind": "devnull"}],
                 [{"op": "splice", "in": "p.r", "off_in": None, "out": "n", "off_out": None, "len": 100, "flags": 0},
                  {"op": "write", "fd": "q.w", "len": 1 << 20, "thread": 1},
                  {"op": "write", "fd": "p.w", "len": 3},
                  {"op": "peer_read", "fd": "q.r", "max": 10, "thread": 1}], timeout_ms=300)
    assert result.timed_out(0) and result.timed_out(1)
    assert all(300e6 <= result.ops[i]["ns"] < 2e9 for i in (0, 1))
    assert result.overlapped(0, 1)
    assert not result.timed_out(2) and result.ret(2) == 3  # each thread goes on after its timeout
    assert not result.timed_out(3) and result.ret(3) == 10


def test_threaded_programs_leave_no_thread_timer_fd_or_pinning_behind(host):
    threaded = Program.from_json({
        "fds": [{"name": "s", "kind": "tcp4", "zerocopy": True}, {"name": "f", "kind": "file"}],
        "ops": [{"op": "sendmsg", "fd": "s", "len": 100, "flags": MSG_ZEROCOPY, "thread": 1},
                {"op": "sendfile64", "out": "s", "in": "f", "offset": 0, "count": 100},
                {"op": "drain", "fd": "s", "thread": 1}],
    })
    host.run(threaded)
    before = open_fds(host.pid), os.sched_getaffinity(host.pid), timers(host.pid)
    for _ in range(100):
        result = host.run(threaded)
    assert (open_fds(host.pid), os.sched_getaffinity(host.pid), timers(host.pid)) == before
    assert os.listdir(f"/proc/{host.pid}/task") == [str(host.pid)]
    assert result.peer_bytes("s") == 200


def timers(pid: int) -> int:
    """POSIX timers the process holds."""
    with open(f"/proc/{pid}/timers") as listing:
        return sum(line.startswith("ID:") for line in listing)


@pytest.mark.parametrize("rewrite", ["pwrite", "mmap_write"])
def test_rewrites_store_the_seed_pattern_in_place(host, rewrite):
    """pwrite and mmap_write put bytes [offset, offset+len) of the seed's pattern at offset:
    what a peer then reads from the file is known to the oracles."""
    result = run(host, [{"name": "f", "kind": "file", "size": 8192, "seed": 1}, {"name": "s", "kind": "unix_stream"}],
                 [{"op": rewrite, "fd": "f", "offset": 4096, "len": 8192, "seed": 7},
                  {"op": "sendfile64", "out": "s", "in": "f", "offset": 0, "count": 8192}])
    stored = 8192 if rewrite == "pwrite" else 4096  # a mapping cannot grow the file
    assert result.ret(0) == stored
    expected = pattern(1, 0, 4096) + pattern(7, 4096, 4096)
    assert result.peer_digest("s") == digest(expected)


def test_truncate_cuts_the_file_and_peer_hold_needs_a_nic(host):
    result = run(host, [{"name": "f", "kind": "file", "size": 8192}, {"name": "s", "kind": "tcp4"}],
                 [{"op": "truncate", "fd": "f", "length": 100},
                  {"op": "sendfile64", "out": "s", "in": "f", "offset": 0, "count": 8192},
                  {"op": "peer_hold", "fd": "s"}])
    assert (result.ret(0), result.ret(1)) == (0, 100)
    assert (result.errno(2), result.ops[2]["skipped"]) == (errno.EOPNOTSUPP, "peer not across the NIC")


def test_a_tcp_drain_says_what_is_unacknowledged(host):
    result = run(host, [{"name": "s", "kind": "tcp4"}], [{"op": "drain", "fd": "s"}])
    assert result.ops[0]["outq"] == 0


def test_a_drain_waits_only_while_a_completion_can_still_come(host):
    """Nothing sent, nothing in flight: the wait ends at once, untimed-out. With the peer slow to
    acknowledge a zerocopy send, the record still comes inside the wait."""
    quiet = run(host, [{"name": "s", "kind": "tcp4", "zerocopy": True}],
                [{"op": "drain", "fd": "s", "wait_ms": 2000}], timeout_ms=3000)
    assert (quiet.ret(0), quiet.timed_out(0)) == (0, False) and quiet.ops[0]["ns"] < 1e9
    sent = run(host, [{"name": "s", "kind": "tcp4", "zerocopy": True}],
               [{"op": "sendmsg", "fd": "s", "len": 100000, "flags": MSG_ZEROCOPY},
                {"op": "drain", "fd": "s", "wait_ms": 2000}], timeout_ms=3000)
    assert sent.ret(0) == 100000 and [n["lo"] for n in sent.ops[1]["notifications"]] == [0]


def test_a_drain_in_a_program_with_a_second_thread_waits_the_whole_time(host):
    result = run(host, [{"name": "s", "kind": "tcp4"}, {"name": "f", "kind": "file"}],
                 [{"op": "drain", "fd": "s", "wait_ms": 300},
                  {"op": "truncate", "fd": "f", "length": 1, "thread": 1}], timeout_ms=3000)
    assert result.ret(0) == 0 and result.ops[0]["ns"] >= 300e6


def test_a_program_with_every_option_runs(host):
    """Both program options at once: the record has its most words (a serving child once read
    past them and died)."""
    result = run(host, [{"name": "src", "kind": "file"}], [{"op": "truncate", "fd": "src", "length": 1}],
                 cover=True, optmem_max=1 << 20)
    assert result.ops[0]["errno"] == 0 and (result.cover or result.cover_error)
