"""The rows of every clause: each names a condition and the result it must give.

Rows are built from the kernel's own flag values (`Abi`), never from constants of the proposal.
Sendfile scenarios are written once as data (`SENDFILE_SCENARIOS`) and checked three ways:
with sendfile64 (baseline), with sendfile2 flags 0 / SENDFILE_DEFAULT (parity) and with
SENDFILE_ZC where the output is a TCP/UDP socket.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from errno import (
    EAGAIN,
    EBADF,
    ECONNRESET,
    EFAULT,
    EINVAL,
    ENOBUFS,
    EOPNOTSUPP,
    EPIPE,
    ESPIPE,
)
from typing import Callable

from zcfuzz.conformance.abi import (
    MAX_RW_COUNT,
    MSG_MORE,
    MSG_ZEROCOPY,
    SO_EE_CODE_ZEROCOPY_COPIED,
    SPLICE_F_BASE,
    Abi,
)
from zcfuzz.conformance.model import expected_errno, splice_flags_mask
from zcfuzz.conformance.oracles import (
    PARITY_FIELDS,
    data,
    early_notifications,
    notification_records,
    sent_streams,
    socket_accounting,
)
from zcfuzz.conformance.spec import CLAUSE_BY_ID, CLAUSES
from zcfuzz.vm.program import OPS, Program, ProgramResult, digest, errno_name, pattern

SSIZE_MAX = (1 << 63) - 1
MAX_NON_LFS = (1 << 31) - 1
FILE_SIZE = 65536
WAIT_MS = 1000  # drain: wait this long for POLLERR; completions on loopback take microseconds


# Generous: completions on loopback arrive within microseconds, under TCG within milliseconds.
SETTLE_MS = 1000
TIMEOUT_MS = 2000
# The bounded waits of the promise clauses. HOLD_MS: how long a notification may not come while
# the peer is held back (a TCG guest acknowledges across the NIC within tens of milliseconds, so
# a notification that ran ahead of the ACK shows up well within it). ACK_MS: how long it may take
# once the peer is let go (TCP resends at its backed-off retransmission timeout, then the ACK
# frees the skbs).
HOLD_MS = 500
ACK_MS = 5000

# A check gets the row's program, its result and, for twin rows, the result of the sendfile64
# twin; it returns what went wrong, or "" when the row holds.
Check = Callable[[Program, ProgramResult, Abi, "ProgramResult | None"], str]


@dataclass(frozen=True)
class Row:
    """One condition of a clause and the result it must give (LTP style)."""

    condition: str
    expected: str
    fds: tuple[dict, ...]
    ops: tuple[dict, ...]
    check: Check
    isolate: bool = False  # may crash the kernel: run in a program of its own
    # What the row's result shows beyond its verdict ("" for nothing): zerocopy evidence.
    evidence: Check | None = None
    twin: bool = False  # compare with the same row, sendfile2 replaced by sendfile64
    errnos: tuple[tuple[int, frozenset[int]], ...] = ()  # (op index, acceptable errnos) as written
    # Program-wide fields of its own (`memlock`, `optmem_max`): such a row runs in a program alone.
    settings: tuple[tuple[str, int], ...] = ()

    @property
    def alone(self) -> bool:
        return self.isolate or bool(self.settings)

    def program(self, abi: Abi, prefix: str = "") -> dict:
        """This row as a program in vm/PROGRAM.md's JSON form, fixture names prefixed."""
        return {
            **({"sysno": {"sendfile2": abi.nr_sendfile2}} if abi.has_sendfile2 else {}),
            "timeout_ms": TIMEOUT_MS,
            "settle_ms": SETTLE_MS,
            **dict(self.settings),
            "fds": [{**fd, "name": prefix + fd["name"]} for fd in self.fds],
            "ops": [_rename(op, prefix) for op in self.ops],
        }


def _rename(op: dict, prefix: str) -> dict:
    fd_fields = OPS[op["op"]].fd_fields
    return {k: (prefix + v if k in fd_fields else v) for k, v in op.items()}


def fd(name: str, kind: str, **options) -> dict:
    return {"name": name, "kind": kind, **options}


SRC = fd("src", "file", size=FILE_SIZE, seed=1)


# --- checks --------------------------------------------------------------------------------

def _observed(result: ProgramResult, i: int) -> str:
    op = result.ops[i]
    if op.get("timed_out"):
        return "blocked until the op timeout"
    return errno_name(op["errno"]) if op["errno"] else f"success ({op['ret']})"


def expect_errnos(*expected: tuple[int, frozenset[int]], ret: dict[int, int] | None = None) -> Callable:
    """Op i fails with one of its errnos (0: succeeds, returning ret[i] when given)."""

    def check(program: Program, result: ProgramResult, abi: Abi, twin: ProgramResult | None) -> str:
        for i, allowed in expected:
            op = result.ops[i]
            if op.get("timed_out") or op["errno"] not in allowed:
                return f"got {_observed(result, i)} from ops[{i}] {program.ops[i].op}"
            if ret and i in ret and op["errno"] == 0 and op["ret"] != ret[i]:
                return f"ops[{i}] returned {op['ret']}"
        return ""

    return check


def errno_row(condition: str, fds: list[dict], op: dict, *allowed: int, ret: int | None = None,
              isolate: bool = False) -> Row:
    """A one-call row: the call gives one of `allowed` (0: success)."""
    names = " or ".join(errno_name(e) for e in allowed)
    expected = f"{names} ({ret})" if ret is not None and allowed == (0,) else names
    return Row(condition, expected, tuple(fds), (op,),
               expect_errnos((0, frozenset(allowed)), ret={0: ret} if ret is not None else None),
               isolate=isolate, errnos=((0, frozenset(allowed)),))


def all_of(*checks: Callable) -> Callable:
    def check(program, result, abi, twin):
        return next((p for p in (c(program, result, abi, twin) for c in checks) if p), "")

    return check


def accounting_holds(sock: str, at_least: int = 1) -> Callable:
    """conformance.oracles accounting on `sock` is clean and at least `at_least` records arrived."""

    def check(program, result, abi, twin):
        violations = socket_accounting(program, result, abi, sock)
        if violations:
            return violations[0].message
        if len(notification_records(program, result, sock)) < at_least:
            return f"{sock}: no zerocopy notification arrived"
        return ""

    return check


def notified_ids(program: Program, result: ProgramResult, sock: str) -> list[int]:
    return [i for r in notification_records(program, result, sock) for i in range(r["lo"], r["hi"] + 1)]


def max_id_is(sock: str, expected_max: int, required: tuple[int, ...]) -> Callable:
    """The highest id notified on `sock` is `expected_max` and every id in `required` was notified."""

    def check(program, result, abi, twin):
        ids = notified_ids(program, result, sock)
        if not ids or max(ids) != expected_max or not set(required) <= set(ids):
            return f"ids notified: {sorted(ids) or 'none'}"
        return ""

    return check


def data_holds(program, result, abi, twin) -> str:
    violations = data(program, result, abi)
    return violations[0].message if violations else ""


def twin_parity(program, result, abi, twin) -> str:
    """Each sendfile2 op equals its sendfile64 twin field by field, and the peers got the same."""
    for i, op in enumerate(program.ops):
        for name in PARITY_FIELDS:
            if op.op == "sendfile2" and result.ops[i].get(name) != twin.ops[i].get(name):
                return f"ops[{i}] {name} is {result.ops[i].get(name)}, sendfile64 gives {twin.ops[i].get(name)}"
    if result.final.get("peers") != twin.final.get("peers"):
        return f"peers received {result.final.get('peers')}, with sendfile64 {twin.final.get('peers')}"
    return ""


# --- sendfile scenarios, shared by sendfile64, sendfile2 parity and SENDFILE_ZC --------------

@dataclass(frozen=True)
class Scenario:
    clause: str  # the sendfile64 clause it belongs to
    condition: str
    fds: tuple[dict, ...]
    args: dict  # out, in, offset, count
    errno: int


def _sf(clause, condition, fds, errno, out="out", in_="src", offset=0, count=512) -> Scenario:
    return Scenario(clause, condition, tuple(fds),
                    {"out": out, "in": in_, "offset": offset, "count": count}, errno)


ODD_IN = (  # kind, errno reading 512 bytes from it into /dev/null
    ("dir", EINVAL), ("opath", EBADF), ("eventfd", EINVAL), ("timerfd", EINVAL), ("epoll", EINVAL),
    ("pidfd", EINVAL), ("memfd", 0), ("devzero", 0), ("devnull", EINVAL), ("closed", EBADF),
    ("invalid", EBADF), ("file_ro", 0), ("file_wo", EBADF), ("file_append", EBADF), ("tcp4", EINVAL),
    ("unix_stream", EINVAL),
)
ODD_OUT = (  # kind, errno writing 512 bytes of a file to it
    ("dir", EBADF), ("opath", EBADF), ("eventfd", EINVAL), ("timerfd", EINVAL), ("epoll", EINVAL),
    ("pidfd", EINVAL), ("memfd", 0), ("devzero", 0), ("devnull", 0), ("closed", EBADF), ("invalid", EBADF),
    ("file_ro", EBADF), ("file_wo", 0), ("file_append", EINVAL), ("unix_stream", 0), ("unix_dgram", 0),
    ("tcp4", 0), ("udp4", 0),
)
TCP = fd("out", "tcp4")
NULL_OUT = fd("out", "devnull")


def _sendfile_scenarios(socket_out: dict) -> list[Scenario]:
    """Error scenarios with `socket_out` as the output where the output does not matter."""
    s = socket_out
    return [
        _sf("SF64-EBADF", "in_fd is -1", [fd("src", "invalid"), s], EBADF),
        _sf("SF64-EBADF", "in_fd was closed", [fd("src", "closed"), s], EBADF),
        _sf("SF64-EBADF", "in_fd is O_PATH", [fd("src", "opath"), s], EBADF),
        _sf("SF64-EBADF", "in_fd is write-only", [fd("src", "file_wo"), s], EBADF),
        _sf("SF64-EFAULT", "offset points at an unmapped page", [SRC, s], EFAULT, offset="unmapped"),
        _sf("SF64-EFAULT", "offset points at a PROT_NONE page", [SRC, s], EFAULT, offset="protnone"),
        _sf("SF64-EFAULT", "offset points at a read-only page (write-back fails)", [SRC, s], EFAULT,
            offset="readonly"),
        _sf("SF64-EINVAL", "offset is -1", [SRC, s], EINVAL, offset=-1),
        _sf("SF64-EINVAL", "offset + count wraps past LLONG_MAX", [SRC, s], EINVAL, offset=SSIZE_MAX - 100),
        _sf("SF64-EINVAL", "in_fd is a pipe and offset is NULL (cannot seek)",
            [fd("src", "pipe"), s], EINVAL, in_="src.r", offset=None),
        _sf("SF64-ESPIPE", "in_fd is a pipe and offset is given", [fd("src", "pipe"), s], ESPIPE, in_="src.r"),
        _sf("SF64-ESPIPE", "in_fd is a socket and offset is given", [fd("src", "unix_stream"), s], ESPIPE),
        _sf("SF64-ESPIPE", "in_fd is an eventfd and offset is given", [fd("src", "eventfd"), s], ESPIPE),
        _sf("SF64-EOVERFLOW", "offset 2^31-1 (no 2^31 limit for sendfile64): EOF", [SRC, s], 0,
            offset=MAX_NON_LFS),
        _sf("SF64-EOVERFLOW", "offset 2^32: EOF", [SRC, s], 0, offset=1 << 32),
        _sf("SF64-EOVERFLOW", "offset LLONG_MAX - 512, count 512: EOF", [SRC, s], 0, offset=SSIZE_MAX - 512),
        _sf("SF64-ODD-IN", "in_fd is a TCP socket, offset NULL (cannot seek)", [fd("src", "tcp4"), s], EINVAL,
            offset=None),
        _sf("SF64-ODD-IN", "in_fd is a directory", [fd("src", "dir"), s], EINVAL, offset=None),
        _sf("SF64-ODD-IN", "in_fd is an eventfd", [fd("src", "eventfd"), s], EINVAL, offset=None),
    ]


def _baseline_only_scenarios() -> list[Scenario]:
    """Scenarios whose output is not a socket (or not valid): sendfile64 and flags-0 parity only."""
    rows = [
        _sf("SF64-EBADF", "out_fd is -1", [SRC, fd("out", "invalid")], EBADF),
        _sf("SF64-EBADF", "out_fd was closed", [SRC, fd("out", "closed")], EBADF),
        _sf("SF64-EBADF", "out_fd is read-only", [SRC, fd("out", "file_ro")], EBADF),
        _sf("SF64-EINVAL", "count is SSIZE_MAX + 1", [SRC, NULL_OUT], EINVAL, count=SSIZE_MAX + 1),
        _sf("SF64-EINVAL", "count is all ones", [SRC, NULL_OUT], EINVAL, count=(1 << 64) - 1),
        _sf("SF64-EINVAL", "out_fd is O_APPEND", [SRC, fd("out", "file_append")], EINVAL),
        _sf("SF64-EOVERFLOW", "a file output: offset 2^31-1 reads EOF", [SRC, NULL_OUT], 0, offset=MAX_NON_LFS),
    ]
    rows += [_sf("SF64-ODD-IN", f"in_fd is {kind}", [fd("src", kind, size=FILE_SIZE), NULL_OUT], errno,
                 offset=None) for kind, errno in ODD_IN]
    rows += [_sf("SF64-ODD-OUT", f"out_fd is {kind}", [SRC, fd("out", kind)], errno) for kind, errno in ODD_OUT]
    rows.append(_sf("SF64-ODD-OUT", "out_fd is a pipe", [SRC, fd("out", "pipe")], 0, out="out.w"))
    return rows


SENDFILE_SCENARIOS = _sendfile_scenarios(TCP) + _baseline_only_scenarios()


def _scenario_row(s: Scenario, op: str, flags: int | None = None, label: str = "") -> Row:
    args = dict(s.args)
    if op == "sendfile2":
        args["flags"] = flags
    return errno_row(s.condition + label, list(s.fds), {"op": op, **args}, s.errno)


def _sendfile64_rows(clause: str) -> list[Row]:
    return [_scenario_row(s, "sendfile64") for s in SENDFILE_SCENARIOS if s.clause == clause]


# --- sendfile64 clauses with rows of their own ---------------------------------------------

def _eagain_rows(op: str = "sendfile64", flag_sets: tuple[tuple[str, int], ...] = ()) -> list[Row]:
    """Fill a non-blocking socket, then each flag value must give EAGAIN, never block."""
    rows = []
    for kind, size, fills, count in (("unix_dgram", 4096, 16, 1024), ("tcp4", 1 << 20, 8, 1 << 20)):
        fds = [fd("src", "file", size=size, seed=2), fd("out", kind, nonblock=True, sndbuf=4096)]
        fill = {"op": "sendfile64", "out": "out", "in": "src", "offset": 0, "count": count}
        # Acknowledgements still on their way (softirq, on either CPU of an SMP guest) free room
        # after a fill has met EAGAIN, and a receive window may take more than the first fills;
        # once the peer's buffer is full and the acknowledgements are in, only the peer reading
        # could free room, and it never reads. So: fill, let the stream settle, fill what it
        # freed, twice, then check.
        settle = {"op": "drain", "fd": "out", "wait_ms": SETTLE_MS}
        ops = [fill] * fills + [settle, fill, settle, fill]
        tail = [(fill, "sendfile64")]
        if op == "sendfile2":
            tail = [({"op": "sendfile2", "out": "out", "in": "src", "offset": 0, "count": count, "flags": v},
                     f"sendfile2({name})") for name, v in flag_sets if kind == "tcp4" or "ZC" not in name]
        filling = [(i, frozenset({0, EAGAIN})) for i, o in enumerate(ops) if o is fill]
        checks = [(len(ops) + j, frozenset({EAGAIN})) for j in range(len(tail))]
        rows.append(Row(f"non-blocking {kind} filled by sendfile64, settled and filled again twice, then "
                        + ", ".join(label for _, label in tail), "EAGAIN from each, none blocks",
                        tuple(fds), tuple(ops) + tuple(o for o, _ in tail), expect_errnos(*filling, *checks),
                        errnos=tuple(checks)))
    return rows


def _epipe_rows(op: dict) -> list[Row]:
    """After the peer closes: AF_UNIX at once; TCP once the peer's RST came back."""
    rows = []
    if op["op"] == "sendfile64":
        rows.append(Row("unix_stream peer closed", "EPIPE", (SRC, fd("out", "unix_stream")),
                        ({"op": "peer_close", "fd": "out"}, op), expect_errnos((1, frozenset({EPIPE}))),
                        errnos=((1, frozenset({EPIPE})),)))
    # The RST the first call draws comes back in softirq, on either CPU of an SMP guest: the row
    # waits for it (POLLERR once sk_err is set) before the calls that must see it.
    early = frozenset({0, EPIPE, ECONNRESET})
    rst_came_back = {"op": "drain", "fd": "out", "wait_ms": 2000}
    checks = ((1, early), (3, early), (4, frozenset({EPIPE})))
    rows.append(Row("tcp4 peer closed, a call, its RST waited for, two calls",
                    "success or ECONNRESET, then EPIPE by the third call",
                    (SRC, fd("out", "tcp4")), ({"op": "peer_close", "fd": "out"}, op, rst_came_back, op, op),
                    expect_errnos(*checks), errnos=checks))
    return rows


def _offset_rows(op: str, flags: int | None = None) -> list[Row]:
    """Offsets written back, positions moved, data as sent: by field, against expected values."""
    extra = {"flags": flags} if op == "sendfile2" else {}

    def call(**args) -> dict:
        return {"op": op, "out": "out", "in": "src", **args, **extra}

    def fields(expected: dict[int, dict]) -> Callable:
        def check(program, result, abi, twin):
            for i, want in expected.items():
                for name, value in want.items():
                    if result.ops[i].get(name) != value:
                        return f"ops[{i}] {name} is {result.ops[i].get(name)}"
            return data_holds(program, result, abi, twin)
        return check

    tcp = fd("out", "tcp4")
    return [
        Row("offset pointer 100, count 512", "ret 512, *offset 612, in_fd position unchanged",
            (SRC, tcp), (call(offset=100, count=512),),
            fields({0: {"ret": 512, "offset_after": 612, "in_pos_after": 0}})),
        Row("offset NULL twice, count 512", "ret 512 each, in_fd position 512 then 1024",
            (SRC, tcp), (call(offset=None, count=512), call(offset=None, count=512)),
            fields({0: {"ret": 512, "in_pos_after": 512}, 1: {"ret": 512, "in_pos_after": 1024}})),
        Row("offset 100 bytes before EOF, count 512", "ret 100, *offset at EOF",
            (SRC, tcp), (call(offset=FILE_SIZE - 100, count=512),),
            fields({0: {"ret": 100, "offset_after": FILE_SIZE}})),
        Row("offset at EOF", "ret 0, *offset unchanged", (SRC, tcp), (call(offset=FILE_SIZE, count=512),),
            fields({0: {"ret": 0, "offset_after": FILE_SIZE}})),
        Row("out_fd a regular file", "ret 512, out_fd position 512",
            (SRC, fd("out", "file_wo", size=0)), (call(offset=0, count=512),),
            fields({0: {"ret": 512, "out_pos_after": 512}})),
    ]


COUNTS = (0, 1, 4095, 4096, 8192, FILE_SIZE - 1, FILE_SIZE, FILE_SIZE + 1, MAX_RW_COUNT, MAX_RW_COUNT + 1,
          SSIZE_MAX)


def _count_rows(op: str, flags: int | None = None) -> list[Row]:
    """The clamp at MAX_RW_COUNT cannot be seen without moving 2 GiB; counts above it must work."""
    extra = {"flags": flags} if op == "sendfile2" else {}
    src = fd("src", "file", size=FILE_SIZE // 2, seed=3)
    rows = []
    for count in COUNTS:
        sent = min(count, FILE_SIZE // 2)
        rows.append(Row(f"count {count:#x}", f"ret {sent}, the peer receives those bytes",
                        (src, fd("out", "unix_stream")),
                        ({"op": op, "out": "out", "in": "src", "offset": 0, "count": count, **extra},),
                        all_of(expect_errnos((0, frozenset({0})), ret={0: sent}), data_holds),
                        errnos=((0, frozenset({0})),)))
    return rows


# --- splice, tee, vmsplice --------------------------------------------------------------------

PIPE = fd("p", "pipe")
BAD = fd("bad", "invalid")


def _splice(in_, out, length=512, flags=0, off_in=None, off_out=None) -> dict:
    return {"op": "splice", "in": in_, "off_in": off_in, "out": out, "off_out": off_out, "len": length,
            "flags": flags}


def _splice_rows(clause: str, flags: int = 0) -> list[Row]:
    """Error rows of splice(2); `flags` is OR'ed into every call (SPLICE-ZC-ERRNO)."""
    fill = {"op": "write", "fd": "p.w", "len": 512}

    def after_fill(condition, fds, call, errno) -> Row:
        return Row(condition, errno_name(errno), tuple(fds), (fill, call),
                   expect_errnos((1, frozenset({errno}))), errnos=((1, frozenset({errno})),))

    def row(condition, fds, call, errno) -> Row:
        return errno_row(condition, fds, call, errno)

    f = flags
    tables = {
        "SPLICE-EBADF": [
            row("fd_in is -1", [BAD, PIPE], _splice("bad", "p.w", flags=f), EBADF),
            row("fd_in was closed", [fd("bad", "closed"), PIPE], _splice("bad", "p.w", flags=f), EBADF),
            row("fd_in is write-only", [fd("src", "file_wo"), PIPE], _splice("src", "p.w", flags=f), EBADF),
            row("fd_in is a pipe's write end", [PIPE, fd("out", "devnull")], _splice("p.w", "out", flags=f), EBADF),
            after_fill("fd_out is read-only", [PIPE, fd("out", "file_ro")], _splice("p.r", "out", flags=f), EBADF),
            row("fd_out is -1", [PIPE, BAD], _splice("p.r", "bad", flags=f), EBADF),
            row("fd_out is a pipe's read end", [SRC, PIPE], _splice("src", "p.r", flags=f), EBADF),
        ],
        "SPLICE-EINVAL": [
            row("neither end is a pipe", [SRC, fd("out", "file_wo")], _splice("src", "out", flags=f), EINVAL),
            row("both ends are the same pipe", [PIPE], _splice("p.r", "p.w", flags=f), EINVAL),
            after_fill("fd_out is O_APPEND", [PIPE, fd("out", "file_append")], _splice("p.r", "out", flags=f),
                       EINVAL),
            after_fill("off_out given for a socket", [PIPE, fd("out", "tcp4")],
                       _splice("p.r", "out", flags=f, off_out=0), EINVAL),
            row("off_in given for an eventfd", [fd("src", "eventfd"), PIPE],
                _splice("src", "p.w", flags=f, off_in=0), EINVAL),
            row("off_in is -1", [SRC, PIPE], _splice("src", "p.w", flags=f, off_in=-1), EINVAL),
        ],
        "SPLICE-ESPIPE": [
            row("off_in given for a pipe", [PIPE, fd("out", "file_wo")], _splice("p.r", "out", flags=f, off_in=0),
                ESPIPE),
            row("off_out given for a pipe", [SRC, PIPE], _splice("src", "p.w", flags=f, off_out=0), ESPIPE),
            row("off_in given for a pipe, bad pointer", [PIPE, fd("out", "file_wo")],
                _splice("p.r", "out", flags=f, off_in="unmapped"), ESPIPE),
        ],
    }
    return tables[clause]


ODD_SPLICE_IN = (("dir", EINVAL), ("opath", EBADF), ("eventfd", EINVAL), ("timerfd", EINVAL),
                 ("epoll", EINVAL), ("pidfd", EINVAL), ("memfd", 0), ("devzero", 0), ("devnull", EINVAL),
                 ("closed", EBADF), ("invalid", EBADF), ("file_wo", EBADF), ("tcp4", EAGAIN),
                 ("unix_stream", EAGAIN))
ODD_SPLICE_OUT = (("dir", EBADF), ("opath", EBADF), ("eventfd", EINVAL), ("timerfd", EINVAL),
                  ("epoll", EINVAL), ("pidfd", EINVAL), ("memfd", 0), ("devzero", 0), ("devnull", 0),
                  ("closed", EBADF), ("invalid", EBADF), ("file_ro", EBADF), ("file_append", EINVAL),
                  ("tcp4", 0), ("unix_stream", 0))


def _odd_splice_rows() -> list[Row]:
    nonblock = 2  # SPLICE_F_NONBLOCK is base ABI: a socket with no data must not block the row
    rows = [errno_row(f"fd_in is {kind} (to a pipe, SPLICE_F_NONBLOCK)",
                      [fd("src", kind, size=FILE_SIZE, nonblock=kind in ("tcp4", "unix_stream")), PIPE],
                      _splice("src", "p.w", flags=nonblock), errno) for kind, errno in ODD_SPLICE_IN]
    fill = {"op": "write", "fd": "p.w", "len": 512}
    rows += [Row(f"fd_out is {kind} (from a pipe holding 512 bytes)", errno_name(errno),
                 (PIPE, fd("out", kind, size=0)), (fill, _splice("p.r", "out")),
                 expect_errnos((1, frozenset({errno}))), errnos=((1, frozenset({errno})),))
             for kind, errno in ODD_SPLICE_OUT]
    return rows


CLOSE_WRITER = {"op": "close", "fd": "p.w"}


def _pipe_eof_rows() -> list[Row]:
    """Each reader of a pipe whose only writer was closed before anything was written."""
    rows = []
    for label, nonblock, flags in (("blocking", False, 0), ("O_NONBLOCK", True, 0),
                                   ("SPLICE_F_NONBLOCK", False, SPLICE_F_BASE["SPLICE_F_NONBLOCK"])):
        pipe = fd("p", "pipe", nonblock=nonblock)
        for out, call in ((fd("out", "tcp4"), _splice("p.r", "out", length=1, flags=flags)),
                          (fd("out", "file_wo", size=0), _splice("p.r", "out", length=1, flags=flags)),
                          (fd("q", "pipe"), {"op": "tee", "in": "p.r", "out": "q.w", "len": 1, "flags": flags})):
            rows.append(Row(f"{call['op']} from an empty pipe with no writer ({label}) to {out['kind']}",
                            "success (0)", (pipe, out), (CLOSE_WRITER, call),
                            expect_errnos((1, frozenset({0})), ret={1: 0}), errnos=((1, frozenset({0})),)))
    return rows


def _unknown_bits(valid: int) -> list[int]:
    return [1 << b for b in range(32) if not (1 << b) & valid]




# --- zerocopy ------------------------------------------------------------------------------

def _zc_sock(zerocopy: bool = True, kind: str = "tcp4") -> dict:
    return fd("sock", kind, zerocopy=zerocopy)


def _sf2_zc(abi: Abi, offset: int | None, count: int, out: str = "sock", flags: int | None = None) -> dict:
    """sendfile2 with SENDFILE_ZC, or with `flags` (another set that selects the notification)."""
    return {"op": "sendfile2", "out": out, "in": "src", "offset": offset, "count": count,
            "flags": abi.sendfile_zc if flags is None else flags}


# ZC-ID-CONCURRENT: the threads start together and then go at their own pace. A sendfile2 at the
# end of the file holds its id for a small part of its call, so the first thread makes many more
# calls than the second, to be inside one whenever a sendmsg takes an id.
SENDS_NOTHING = 1536
SENDMSGS = 144


def ids_kept(sock: str, sends: int) -> Callable:
    """How often a sendfile2 that sent nothing met the race and kept its id (notified as COPIED)."""

    def evidence(program, result, abi, twin):
        kept = len(set(notified_ids(program, result, sock))) - sends
        return f"{kept} calls that sent nothing kept their id: a sendmsg had taken the next"

    return evidence


def _sendmsg_zc(length: int = 512) -> dict:
    return {"op": "sendmsg", "fd": "sock", "len": length, "flags": MSG_ZEROCOPY}


PEER_READ = {"op": "peer_read", "fd": "sock", "max": 1 << 22}
DRAIN = {"op": "drain", "fd": "sock", "wait_ms": WAIT_MS}


def _zc_rows(clause: str, abi: Abi) -> list[Row]:
    if clause == "ZC-SO-ZEROCOPY-NOT-REQUIRED":
        return [Row("SO_ZEROCOPY off, sendfile2(SENDFILE_ZC) 4096 bytes, then SO_ZEROCOPY on and "
                    "sendmsg(MSG_ZEROCOPY)", "the sendmsg is notified as id 1: sendfile2 took id 0",
                    (SRC, _zc_sock(False)),
                    (_sf2_zc(abi, 0, 4096), {"op": "setsockopt_zerocopy", "fd": "sock", "value": 1},
                     _sendmsg_zc(), PEER_READ, DRAIN),
                    all_of(expect_errnos((0, frozenset({0})), ret={0: 4096}), max_id_is("sock", 1, (1,))))]
    if clause == "ZC-ID-ONCE":
        calls = tuple(_sf2_zc(abi, n * 4096, 4096) for n in range(3))
        return [Row("three sendfile2(SENDFILE_ZC) calls of 4096 bytes, then sendmsg(MSG_ZEROCOPY)",
                    "the sendmsg is notified as id 3", (SRC, _zc_sock()), calls + (_sendmsg_zc(), PEER_READ, DRAIN),
                    all_of(expect_errnos(*[(i, frozenset({0})) for i in range(4)]), max_id_is("sock", 3, (3,))))]
    if clause == "ZC-NOTIFY-ONCE":
        rows = []
        cases = [("tcp4", 16384, "SENDFILE_ZC", abi.sendfile_zc), ("udp4", 1024, "SENDFILE_ZC", abi.sendfile_zc)]
        if abi.sendfile_default:  # the other flag set that selects the notification
            cases.append(("tcp4", 16384, "SENDFILE_DEFAULT|SENDFILE_ZC", abi.sendfile_default | abi.sendfile_zc))
        for kind, count, label, flags in cases:
            calls = tuple(_sf2_zc(abi, n * count, count, flags=flags) for n in range(2))
            rows.append(Row(f"two sendfile2({label}) on {kind}, the peer reads everything",
                            "ids 0 and 1, each notified once", (SRC, _zc_sock(kind=kind)),
                            calls + (PEER_READ, DRAIN), all_of(expect_errnos((0, frozenset({0})), (1, frozenset({0}))),
                                                                accounting_holds("sock", 1))))
        return rows
    if clause == "ZC-ID-NOT-ON-FAILURE":
        pipe_in = fd("pin", "pipe")
        cases = (
            ("count 0", 0, [], _sf2_zc(abi, 0, 0)),
            ("offset at EOF (0 bytes sent)", 0, [], _sf2_zc(abi, FILE_SIZE, 512)),
            ("offset -1 (EINVAL)", EINVAL, [], _sf2_zc(abi, -1, 512)),
            ("in_fd a pipe with an offset (ESPIPE)", ESPIPE, [pipe_in],
             {**_sf2_zc(abi, 0, 512), "in": "pin.r"}),
            ("offset pointer unmapped (EFAULT)", EFAULT, [], _sf2_zc(abi, "unmapped", 512)),
        )
        return [Row(f"sendfile2(SENDFILE_ZC) with {cond}, then sendmsg(MSG_ZEROCOPY)",
                    f"{errno_name(errno)}; the sendmsg is notified as id 0", (SRC, _zc_sock(), *extra),
                    (call, _sendmsg_zc(), PEER_READ, DRAIN),
                    all_of(expect_errnos((0, frozenset({errno})), (1, frozenset({0}))), max_id_is("sock", 0, (0,))),
                    errnos=((0, frozenset({errno})),))
                for cond, errno, extra, call in cases]
    if clause == "ZC-ID-CONCURRENT":
        nothing, sendmsgs = range(SENDS_NOTHING), range(SENDS_NOTHING, SENDS_NOTHING + SENDMSGS)
        return [Row(f"{SENDS_NOTHING} sendfile2(SENDFILE_ZC) at the end of the file on {kind}, while a second thread "
                    f"makes {SENDMSGS} sendmsg(MSG_ZEROCOPY) of 100 bytes", "every id from 0 notified once; "
                    f"{SENDMSGS} to {SENDMSGS + SENDS_NOTHING} ids", (SRC, _zc_sock(kind=kind)),
                    (_sf2_zc(abi, FILE_SIZE, 4096),) * SENDS_NOTHING + ({**_sendmsg_zc(100), "thread": 1},) * SENDMSGS
                    + (PEER_READ, DRAIN),
                    all_of(expect_errnos(*[(i, frozenset({0})) for i in (*nothing, *sendmsgs)],
                                         ret={i: 100 for i in sendmsgs}),
                           accounting_holds("sock")),  # judged as any interleaving allows
                    evidence=ids_kept("sock", SENDMSGS),
                    settings=(("settle_ms", SETTLE_MS),))  # alone: no other row's ops between the threads
                for kind in ("tcp4", "udp4")]
    if clause == "ZC-COUNTER-SHARED":
        return [Row("sendmsg(MSG_ZEROCOPY), sendfile2(SENDFILE_ZC), sendmsg(MSG_ZEROCOPY)",
                    "the sendmsgs are notified as ids 0 and 2", (SRC, _zc_sock()),
                    (_sendmsg_zc(), _sf2_zc(abi, 0, 4096), _sendmsg_zc(), PEER_READ, DRAIN),
                    all_of(expect_errnos(*[(i, frozenset({0})) for i in range(3)]), max_id_is("sock", 2, (0, 2))))]
    if clause == "ZC-RANGE-COALESCE":
        calls = tuple(_sf2_zc(abi, n * 1024, 1024) for n in range(8))

        def coalesced(program, result, abi, twin):
            records = notification_records(program, result, "sock")
            for prev, cur in zip(records, records[1:]):
                if cur["lo"] == prev["hi"] + 1:
                    return f"records {prev['lo']}-{prev['hi']} and {cur['lo']}-{cur['hi']} were not merged"
            return ""

        return [Row("eight sendfile2(SENDFILE_ZC) calls, one drain after all", "ids 0-7 in merged ranges",
                    (SRC, _zc_sock()), calls + (PEER_READ, DRAIN), all_of(accounting_holds("sock"), coalesced))]
    if clause == "ZC-COPIED-LOOPBACK":
        return [Row(f"sendfile2(SENDFILE_ZC) on loopback {kind}", "every completion has COPIED set",
                    (SRC, _zc_sock(kind=kind)), (_sf2_zc(abi, 0, 1024), PEER_READ, DRAIN),
                    all_of(expect_errnos((0, frozenset({0}))), accounting_holds("sock"), copied_is("sock", True)))
                for kind in ("tcp4", "tcp6", "udp4", "udp6")]
    if clause == "ZC-TRUE-ZEROCOPY-DUMMY":
        return [Row("sendfile2(SENDFILE_ZC) of 1024 bytes over UDP out of dummy0", "COPIED clear",
                    (SRC, _zc_sock(kind="udp_dummy")), (_sf2_zc(abi, 0, 1024), DRAIN),
                    all_of(expect_errnos((0, frozenset({0}))), accounting_holds("sock"), copied_is("sock", False)))]
    if clause == "ZC-MEMLOCK-SENT":
        src = fd("src", "file", size=16384, seed=4)
        return [Row(f"count {count:#x} with RLIMIT_MEMLOCK 8 MiB", "ret 16384 (the whole file), no ENOBUFS",
                    (src, _zc_sock()), (_sf2_zc(abi, 0, count), PEER_READ),
                    expect_errnos((0, frozenset({0})), ret={0: 16384}), errnos=((0, frozenset({0})),))
                for count in (16 << 20, 1 << 30, MAX_RW_COUNT)]
    raise KeyError(clause)


def copied_is(sock: str, copied: bool) -> Callable:
    def check(program, result, abi, twin):
        records = notification_records(program, result, sock)
        wrong = [r for r in records if bool(r["code"] & SO_EE_CODE_ZEROCOPY_COPIED) != copied]
        return f"COPIED {'clear' if copied else 'set'} on {wrong[0]}" if wrong else ""

    return check


def _msgzc_rows(clause: str) -> list[Row]:
    if clause == "MSGZC-SOCKOPT":
        def opt(kind, value, errno):
            return errno_row(f"SO_ZEROCOPY={value} on {kind}", [fd("sock", kind)],
                             {"op": "setsockopt_zerocopy", "fd": "sock", "value": value}, errno)
        return [opt("tcp4", 1, 0), opt("tcp6", 1, 0), opt("udp4", 1, 0), opt("tcp4", 0, 0),
                opt("tcp4", 2, EINVAL), opt("unix_stream", 1, EOPNOTSUPP), opt("unix_dgram", 1, EOPNOTSUPP)]
    if clause == "MSGZC-OPT-IN":
        return [Row(f"sendmsg(MSG_ZEROCOPY) with SO_ZEROCOPY {'on' if on else 'off'}",
                    "one notification" if on else "no notification", (_zc_sock(on),),
                    (_sendmsg_zc(4096), PEER_READ, DRAIN),
                    all_of(expect_errnos((0, frozenset({0}))), accounting_holds("sock", 1 if on else 0)))
                for on in (True, False)]
    if clause == "MSGZC-ID-NOT-ON-FAILURE":
        return [Row("sendmsg(MSG_ZEROCOPY) of 0 bytes, then of 512", "the second is notified as id 0",
                    (_zc_sock(),), (_sendmsg_zc(0), _sendmsg_zc(512), PEER_READ, DRAIN),
                    all_of(expect_errnos((0, frozenset({0})), (1, frozenset({0}))), max_id_is("sock", 0, (0,))))]
    if clause == "MSGZC-COPIED-LOOPBACK":
        return [Row(f"sendmsg(MSG_ZEROCOPY) on loopback {kind}", "COPIED set", (_zc_sock(kind=kind),),
                    (_sendmsg_zc(4096 if kind.startswith("tcp") else 1024), PEER_READ, DRAIN),
                    all_of(accounting_holds("sock"), copied_is("sock", True))) for kind in ("tcp4", "udp4")]
    if clause == "MSGZC-TRUE-ZEROCOPY-DUMMY":
        return [Row("sendmsg(MSG_ZEROCOPY) of 1024 bytes over UDP out of dummy0", "COPIED clear",
                    (_zc_sock(kind="udp_dummy"),), (_sendmsg_zc(1024), DRAIN),
                    all_of(accounting_holds("sock"), copied_is("sock", False)))]
    raise KeyError(clause)


# --- the promise: a notification means the pages are free ------------------------------------

HOLD = {"op": "peer_hold", "fd": "sock"}
RELEASE = {"op": "peer_release", "fd": "sock"}
NIC_TCP = ("tcp4_nic", "tcp6_nic")
NIC_UDP = ("udp4_nic", "udp6_nic")
NIC_SENDS = tuple((kind, 16384) for kind in NIC_TCP) + tuple((kind, 1024) for kind in NIC_UDP)
BIG = 4 << 20  # a file no window or send buffer takes at once


def drain_for(wait_ms: int) -> dict:
    return {"op": "drain", "fd": "sock", "wait_ms": wait_ms}


def not_early(program, result, abi, twin) -> str:
    """conformance.oracles' early-notification rule on every drain of the row."""
    violations = early_notifications(program, result, abi)
    return violations[0].message if violations else ""


def held_back(i: int) -> Callable:
    """The row's premise: drain ops[i] ended with bytes of the stream unacknowledged."""

    def check(program, result, abi, twin):
        outq = result.ops[i].get("outq", 0)
        return "" if outq > 0 else f"nothing was held back: ops[{i}] drain saw outq {outq}"

    return check


def _drain_seen(result: ProgramResult, i: int) -> str:
    """What the drain at ops[i] saw of its socket, so a missing notification says why it could
    have been missing: how long the drain waited, what the peer had not acknowledged, resends."""
    op = result.ops[i]
    seen = [f"the drain waited {op.get('ns', 0) // 1_000_000} ms"]
    if "outq" in op:
        seen.append(f"{op['outq']} bytes unacknowledged")
    if op.get("retrans"):
        seen.append(f"{op['retrans']} segment{'s' if op['retrans'] > 1 else ''} resent")
    return ", ".join(seen)


def notified_by(i: int, ids: tuple[int, ...], sock: str = "sock") -> Callable:
    """Every id in `ids` was read by the drains up to ops[i]: it came within their bounded waits."""

    def check(program, result, abi, twin):
        seen = {n for d, op in enumerate(program.ops[:i + 1]) if op.op == "drain" and op["fd"] == sock
                for r in result.ops[d].get("notifications", []) for n in range(r["lo"], r["hi"] + 1)}
        missing = sorted(set(ids) - seen)
        return f"id {missing[0]} not notified by ops[{i}] ({_drain_seen(result, i)})" if missing else ""

    return check


def copied_shown(*socks: str) -> Callable:
    """Evidence: whether the completions on `socks` said COPIED. Across the NIC it is not a
    verdict: in a TCG guest TCP completions come with COPIED set or clear from one run to the
    next, for sendmsg(MSG_ZEROCOPY) on an unpatched kernel too, and UDP copies (the guest's
    virtio-net has no checksum offload)."""

    def shown(program, result, abi, twin):
        flags = {sock: sorted({"set" if r["code"] & SO_EE_CODE_ZEROCOPY_COPIED else "clear"
                               for r in notification_records(program, result, sock)}) for sock in socks}
        return "COPIED " + ", ".join(f"{'/'.join(v) or 'none'} on {k}" for k, v in flags.items())

    return shown


def old_bytes_kept(program, result, abi, twin) -> str:
    """The row's premise (the notification came before the rewrite) and the promise: the peer
    received the bytes the file had when they were sent."""
    if "sock" not in sent_streams(program, result, abi)[1]:
        return "no notification came before the rewrite, so the row could not judge the promise"
    return data_holds(program, result, abi, twin)


def rewrite_evidence(program, result, abi, twin) -> str:
    """A rewrite before the notification that reached the peer: the pages really went by reference."""
    peer = result.final.get("peers", {}).get("sock", {})
    sent = pattern(1, 0, peer.get("bytes", 0))
    return "" if peer.get("digest") in (None, digest(sent)) else \
        "the peer received rewritten bytes: the pages were sent by reference (zerocopy)"


REWRITES = (
    ("pwrite of new bytes", {"op": "pwrite", "fd": "src", "offset": 0, "len": 16384, "seed": 7}),
    ("truncate to 100 bytes", {"op": "truncate", "fd": "src", "length": 100}),
    ("a store through a shared mapping", {"op": "mmap_write", "fd": "src", "offset": 0, "len": 16384, "seed": 7}),
)


def _held_rows(send: dict, first: tuple[dict, ...], what: str, kinds: tuple[str, ...],
               extra: tuple[dict, ...] = ()) -> list[Row]:
    """Peer held back, one zerocopy send, a bounded wait with no notification, the peer let go,
    the notification within ACK_MS."""
    ops = first + (HOLD, send, drain_for(HOLD_MS), RELEASE, drain_for(ACK_MS))
    n = len(first)
    return [Row(f"{what} on {kind}, the peer held back for {HOLD_MS} ms, then let go",
                f"no notification while held (bytes unacknowledged); id 0 within {ACK_MS} ms of the release",
                (SRC, *extra, _zc_sock(kind=kind)), ops,
                all_of(expect_errnos((n + 1, frozenset({0}))), held_back(n + 2), not_early,
                       notified_by(n + 4, (0,)), accounting_holds("sock")))
            for kind in kinds]


def _window_full_rows(abi: Abi) -> list[Row]:
    """Non-blocking sendfile2 calls of more than any window takes, the peer not reading: each
    returns short (or EAGAIN) once the send buffer is full; 100 ms between them let the peer
    acknowledge what it has room for, until its window closes with bytes queued behind it."""
    src = fd("src", "file", size=BIG, seed=1)
    rounds = (_sf2_zc(abi, None, BIG), drain_for(100)) * 8
    return [Row(f"eight non-blocking sendfile2(SENDFILE_ZC) of {BIG >> 20} MiB on {kind} 100 ms apart, the "
                "peer not reading", f"partial sends; no notification within {HOLD_MS} ms for a call with bytes "
                "queued; each notified once the peer has read everything", (src, fd("sock", kind, nonblock=True)),
                rounds + (drain_for(HOLD_MS), PEER_READ, DRAIN),
                all_of(expect_errnos((0, frozenset({0}))), held_back(len(rounds)), not_early,
                       accounting_holds("sock")))
            for kind in ("tcp4", "tcp4_nic")]


def _overwrite_rows(abi: Abi, via_pipe: bool) -> list[Row]:
    szc = abi.splice_zc
    send = ((_splice("src", "p.w", length=16384, off_in=0), _splice("p.r", "sock", length=16384, flags=szc))
            if via_pipe else (_sf2_zc(abi, 0, 16384),))
    extra = (PIPE,) if via_pipe else ()
    rows = [Row(f"{'file -> pipe -> ' if via_pipe else ''}{kind}: 16384 bytes, their notification, then "
                f"{label}", "the peer receives the bytes as they were sent",
                (SRC, *extra, _zc_sock(kind=kind)), send + (drain_for(ACK_MS), rewrite),
                all_of(expect_errnos(*[(i, frozenset({0})) for i in range(len(send))]),
                       notified_by(len(send), (0,)), old_bytes_kept))
            for kind in ("tcp4", "tcp4_nic", "tcp6_nic") for label, rewrite in REWRITES]
    if not via_pipe:
        rows.append(Row("tcp4_nic: the peer held back, 16384 bytes, a pwrite before their notification, "
                        "the peer let go", "id 0 notified once; the peer may receive either bytes",
                        (SRC, _zc_sock(kind="tcp4_nic")),
                        (HOLD, *send, REWRITES[0][1], RELEASE, drain_for(ACK_MS)),
                        accounting_holds("sock"), evidence=rewrite_evidence))
    return rows


DRAIN_NOW = {"op": "drain", "fd": "sock", "wait_ms": 0}


def any_held_back(program, result, abi, twin) -> str:
    """The slow client's premise: some drain saw the peer behind."""
    held = [r.get("outq", 0) for op, r in zip(program.ops, result.ops) if op.op == "drain"]
    return "" if any(q > 0 for q in held) else "the peer never fell behind: every drain saw outq 0"


def _slow_client_rows(abi: Abi) -> list[Row]:
    """Twelve rounds of a 64 KiB non-blocking sendfile2 and a 16 KiB read by the peer, drains
    between: each drain's outq says how far the peer has acknowledged."""
    src = fd("src", "file", size=1 << 20, seed=1)
    rounds = (_sf2_zc(abi, None, 65536), DRAIN_NOW,
              {"op": "peer_read", "fd": "sock", "max": 16384}, DRAIN_NOW)
    # Then the peer catches up: what it reads frees the window for what is still queued, whose
    # acknowledgements free the last calls' pages; each wait is bounded by ACK_MS.
    catch_up = (PEER_READ, drain_for(ACK_MS)) * 3
    return [Row(f"{kind}: twelve rounds of non-blocking sendfile2(SENDFILE_ZC) of 64 KiB and a 16 KiB read "
                "by the peer, then the peer catches up", "no drain reads an id whose bytes are "
                "unacknowledged; every id notified once; the peer receives the file's bytes in order",
                (src, fd("sock", kind, nonblock=True)), rounds * 12 + catch_up,
                all_of(not_early, accounting_holds("sock"), data_holds, any_held_back))
            for kind in ("tcp4_nic", "tcp4")]


def _promise_rows(clause: str, abi: Abi) -> list[Row]:
    if clause == "MSGZC-NIC-NOTIFY":
        return [Row(f"sendmsg(MSG_ZEROCOPY) of {size} bytes on {kind}", f"notified once within {ACK_MS} ms",
                    (_zc_sock(kind=kind),), (_sendmsg_zc(size), drain_for(ACK_MS)),
                    all_of(notified_by(1, (0,)), accounting_holds("sock")), evidence=copied_shown("sock"))
                for kind, size in NIC_SENDS]
    if clause == "MSGZC-NIC-NO-EARLY":
        return _held_rows(_sendmsg_zc(16384), (), "sendmsg(MSG_ZEROCOPY) of 16384 bytes", NIC_TCP)
    if clause == "ZC-NIC-NOTIFY":
        return [Row(f"sendfile2(SENDFILE_ZC) of {size} bytes on {kind}, sendmsg(MSG_ZEROCOPY) of {size} on another",
                    f"both notified once within {ACK_MS} ms", (SRC, _zc_sock(kind=kind), fd("ref", kind, zerocopy=True)),
                    (_sf2_zc(abi, 0, size), {**_sendmsg_zc(size), "fd": "ref"}, drain_for(ACK_MS),
                     {"op": "drain", "fd": "ref", "wait_ms": ACK_MS}),
                    all_of(notified_by(2, (0,)), notified_by(3, (0,), "ref"), accounting_holds("sock")),
                    evidence=copied_shown("sock", "ref"))
                for kind, size in NIC_SENDS]
    if clause == "ZC-NO-EARLY-NOTIFY":
        return (_held_rows(_sf2_zc(abi, 0, 16384), (), "sendfile2(SENDFILE_ZC) of 16384 bytes", NIC_TCP)
                + _window_full_rows(abi))
    if clause == "ZC-OVERWRITE-SAFE":
        return _overwrite_rows(abi, via_pipe=False)
    if clause == "ZC-SLOW-CLIENT":
        return _slow_client_rows(abi)
    if clause == "SPLICE-ZC-NO-EARLY-NOTIFY":
        fill = (_splice("src", "p.w", length=16384, off_in=0),)
        splice = _splice("p.r", "sock", length=16384, flags=abi.splice_zc)
        return _held_rows(splice, fill, "file -> pipe, then splice(SPLICE_F_ZC) of 16384 bytes", NIC_TCP,
                          extra=(PIPE,))
    if clause == "SPLICE-ZC-OVERWRITE-SAFE":
        return _overwrite_rows(abi, via_pipe=True)
    raise KeyError(clause)


# --- v2's decided behaviours (cover letter, "sendfile2 errors", "Notifications", "Memory accounting")

MSG_MORE_ZC = MSG_ZEROCOPY | MSG_MORE


def _sendfile2(abi: Abi, count: int, flags: int, in_: str = "src", offset: int | str | None = 0,
               out: str = "sock") -> dict:
    return {"op": "sendfile2", "out": out, "in": in_, "offset": offset, "count": count, "flags": flags}


def peer_received(total: int, sock: str = "sock") -> Callable:
    """The peer of `sock` received `total` bytes by the end."""

    def check(program, result, abi, twin):
        got = result.final.get("peers", {}).get(sock, {}).get("bytes")
        return "" if got == total else f"the peer received {got} bytes, expected {total}"

    return check


def received(kind: str, total: int) -> tuple[Callable, ...]:
    """`peer_received(total)` where delivery is certain: a datagram that leaves by the NIC may be
    dropped on the way (a neighbour queue full while the peer's address resolves), so across
    the NIC only the calls and their notifications are judged."""
    return () if kind in NIC_UDP else (peer_received(total),)


def ret_between(i: int, low: int, high: int) -> Callable:
    """ops[i] succeeded with low <= ret <= high."""

    def check(program, result, abi, twin):
        op = result.ops[i]
        return "" if op["errno"] == 0 and low <= op["ret"] <= high else \
            f"ops[{i}] {program.ops[i].op} gave {_observed(result, i)}, expected {low}..{high} bytes"

    return check


def some_errno(indexes: range, errno: int, premise: str) -> Callable:
    """The row's premise: at least one of ops[indexes] failed with `errno`."""

    def check(program, result, abi, twin):
        return "" if any(result.ops[i]["errno"] == errno for i in indexes) else f"premise not met: {premise}"

    return check


def _error_order_rows(abi: Abi) -> list[Row]:
    """Pairs of conditions, each row expecting the one the cover letter checks first."""
    zc = abi.sendfile_zc
    tcp = _zc_sock()
    big = SSIZE_MAX - 100
    pairs = (
        ("offset unmapped (EFAULT) and in_fd -1 (EBADF)", [fd("src", "invalid"), tcp], "src", "unmapped", 512, 0,
         EFAULT),
        ("in_fd a pipe's write end (EBADF) and an offset (ESPIPE)", [PIPE, tcp], "p.w", 0, 512, 0, EBADF),
        ("in_fd a pipe with an offset (ESPIPE) and offset -1 (EINVAL)", [PIPE, tcp], "p.r", -1, 512, 0, ESPIPE),
        ("offset -1 (EINVAL) and out_fd -1 (EBADF)", [SRC, fd("sock", "invalid")], "src", -1, 512, 0, EINVAL),
        ("count above SSIZE_MAX (EINVAL) and out_fd -1 (EBADF)", [SRC, fd("sock", "invalid")], "src", 0,
         SSIZE_MAX + 1, 0, EINVAL),
        ("out_fd -1 (EBADF) and SENDFILE_ZC (EOPNOTSUPP for a non-socket)", [SRC, fd("sock", "invalid")], "src", 0,
         512, zc, EBADF),
        ("out_fd read-only (EBADF) and SENDFILE_ZC to a file (EOPNOTSUPP)", [SRC, fd("sock", "file_ro")], "src", 0,
         512, zc, EBADF),
        ("SENDFILE_ZC to a file (EOPNOTSUPP) and a position near LLONG_MAX", [SRC, fd("sock", "file")], "src", big,
         50, zc, EOPNOTSUPP),
        ("SENDFILE_ZC to a file (EOPNOTSUPP) and an O_APPEND output (EINVAL)", [SRC, fd("sock", "file_append")],
         "src", 0, 512, zc, EOPNOTSUPP),
        ("SENDFILE_ZC to AF_UNIX (EOPNOTSUPP) and in_fd a pipe without offset (EINVAL)",
         [PIPE, fd("sock", "unix_stream")], "p.r", None, 512, zc, EOPNOTSUPP),
    )
    return [errno_row(cond, fds, _sendfile2(abi, count, flags, in_=in_, offset=offset), errno, isolate=bool(flags))
            for cond, fds, in_, offset, count, flags, errno in pairs]


def _efault_after_send_rows(abi: Abi) -> list[Row]:
    return [Row(f"sendfile2(SENDFILE_ZC) of 4096 bytes on {kind} with *offset on a read-only page, then "
                "sendmsg(MSG_ZEROCOPY) of 512", "EFAULT, the peer has the 4096 bytes; ids 0 and 1 notified",
                (SRC, _zc_sock(kind=kind)),
                (_sendfile2(abi, 4096, abi.sendfile_zc, offset="readonly"), _sendmsg_zc(), PEER_READ, DRAIN),
                all_of(expect_errnos((0, frozenset({EFAULT})), (1, frozenset({0}))), max_id_is("sock", 1, (0, 1)),
                       peer_received(4096 + 512)),
                errnos=((0, frozenset({EFAULT})),))
            for kind in ("tcp4", "udp4")]


def _udp_corked_rows(abi: Abi) -> list[Row]:
    """A datagram corked by sendmsg(MSG_ZEROCOPY|MSG_MORE) refuses ZC calls (EINVAL), and, as after
    any failed UDP send, the corked datagram is dropped (udp_flush_pending_frames): its id is still
    notified. Without the flag the same calls append."""
    zc, szc = abi.sendfile_zc, abi.splice_zc
    more = SPLICE_F_BASE["SPLICE_F_MORE"]
    fill = {"op": "write", "fd": "p.w", "len": 300}
    corked = {"op": "sendmsg", "fd": "sock", "len": 100, "flags": MSG_MORE_ZC}
    push = {"op": "sendmsg", "fd": "sock", "len": 10, "flags": 0}
    refused = [("SENDFILE_ZC", _sendfile2(abi, 100, zc))]
    if szc is not None:
        refused.append(("SPLICE_F_MORE|SPLICE_F_ZC", _splice("p.r", "sock", length=100, flags=szc | more)))
    rows = []
    for kind in ("udp4", "udp4_nic"):
        for label, call in refused:
            rows.append(Row(f"{kind}: sendmsg(MSG_ZEROCOPY|MSG_MORE) of 100 bytes, then {label} of 100 onto it, "
                            "then a push of 10", "EINVAL; the corked datagram is dropped: the peer gets 10 bytes; "
                            "id 0 notified, no other", (SRC, PIPE, _zc_sock(kind=kind)),
                            (fill, corked, call, push, PEER_READ, DRAIN),
                            all_of(expect_errnos((1, frozenset({0})), (2, frozenset({EINVAL})), (3, frozenset({0}))),
                                   max_id_is("sock", 0, (0,)), *received(kind, 10)),
                            errnos=((2, frozenset({EINVAL})),)))
        plain = [_sendfile2(abi, 100, 0)] + ([_splice("p.r", "sock", length=100, flags=more)] if szc is not None else [])
        ops = (fill, corked, *plain, push, PEER_READ, DRAIN)
        total = 100 + 100 * len(plain) + 10
        rows.append(Row(f"{kind}: sendmsg(MSG_ZEROCOPY|MSG_MORE) of 100 bytes, then sendfile2 without SENDFILE_ZC"
                        + (" and splice(SPLICE_F_MORE)" if szc is not None else "") + " of 100 onto it, then a push",
                        f"all append: one datagram of {total} bytes; only id 0",
                        (SRC, PIPE, _zc_sock(kind=kind)), ops,
                        all_of(expect_errnos(*[(i, frozenset({0})) for i in range(len(plain) + 3)]),
                               max_id_is("sock", 0, (0,)), *received(kind, total))))
        if szc is None:
            continue
        ops = (fill, _splice("p.r", "sock", length=100, flags=szc | more),
               _splice("p.r", "sock", length=100, flags=szc | more),
               {"op": "sendmsg", "fd": "sock", "len": 10, "flags": MSG_ZEROCOPY}, PEER_READ, DRAIN)
        rows.append(Row(f"{kind}: two splice(SPLICE_F_MORE|SPLICE_F_ZC) of 100 bytes, then sendmsg(MSG_ZEROCOPY) "
                        "of 10", "all succeed: one datagram of 210 bytes; ids 0, 1 and 2 notified",
                        (PIPE, _zc_sock(kind=kind)), ops,
                        all_of(expect_errnos(*[(i, frozenset({0})) for i in range(4)], ret={1: 100, 2: 100, 3: 10}),
                               max_id_is("sock", 2, (0, 1, 2)), *received(kind, 210))))
    return rows


# A socket's option memory small enough that two pending notifications exhaust it.
OPTMEM_TIGHT = 2048


OPTMEM_HELD_AFTER = 5  # index of the first op after _optmem_held_row's premise


def _optmem_held_row(abi: Abi, then: str, expected: str, ops: tuple[dict, ...], check: Check,
                     errnos: tuple[tuple[int, frozenset[int]], ...]) -> Row:
    """A row whose `ops` meet the socket's option memory held by pending notifications: the
    peer held back, 1-byte SENDFILE_ZC calls (ops[1] to ops[4]) until one fails with ENOBUFS."""
    pending = tuple(_sendfile2(abi, 1, abi.sendfile_zc, offset=n) for n in range(OPTMEM_HELD_AFTER - 1))
    return Row(f"tcp4_nic held back, non-blocking, optmem_max {OPTMEM_TIGHT}: 1-byte SENDFILE_ZC calls until "
               f"ENOBUFS, then {then}", expected, (SRC, PIPE, fd("sock", "tcp4_nic", nonblock=True)),
               (HOLD, *pending, *ops),
               all_of(some_errno(range(1, OPTMEM_HELD_AFTER), ENOBUFS, "no 1-byte call met exhausted option memory"),
                      check),
               errnos=errnos, settings=(("optmem_max", OPTMEM_TIGHT),))


def _enobufs_optmem_rows(abi: Abi) -> list[Row]:
    zc, szc = abi.sendfile_zc, abi.splice_zc
    tail = [_sendfile2(abi, 10, zc, in_="p.r", offset=None), _sendfile2(abi, 10, 0, in_="p.r", offset=None)]
    expected = [(OPTMEM_HELD_AFTER, frozenset({ENOBUFS})), (OPTMEM_HELD_AFTER + 1, frozenset({EINVAL}))]
    if szc is not None:
        tail += [{"op": "write", "fd": "p.w", "len": 10}, _splice("p.r", "sock", length=10, flags=szc)]
        expected.append((OPTMEM_HELD_AFTER + 3, frozenset({ENOBUFS})))
    ops = (*tail, RELEASE, drain_for(ACK_MS), _sendfile2(abi, 10, zc, offset=0), drain_for(ACK_MS))
    last_call = OPTMEM_HELD_AFTER + len(ops) - 2
    return [_optmem_held_row(abi, "SENDFILE_ZC and sendfile64 from a pipe without offset"
                             + (", and splice(SPLICE_F_ZC) from a pipe" if szc is not None else "")
                             + "; the peer let go, the notifications read, one more SENDFILE_ZC",
                             "ENOBUFS for the ZC calls (no id), EINVAL for sendfile64; the last call sends 10 bytes",
                             ops, all_of(expect_errnos(*expected, (last_call, frozenset({0})), ret={last_call: 10}),
                                         accounting_holds("sock")),
                             tuple(expected))]


def _count_0_rows(abi: Abi) -> list[Row]:
    zc, szc = abi.sendfile_zc, abi.splice_zc
    nothing = [_sendfile2(abi, 0, zc, offset=0), _sendmsg_zc(0)]
    if szc is not None:
        nothing.append(_splice("p.r", "sock", length=0, flags=szc))
    calls = range(OPTMEM_HELD_AFTER, OPTMEM_HELD_AFTER + len(nothing))
    expected = tuple((i, frozenset({0})) for i in calls)
    return [_optmem_held_row(abi, "SENDFILE_ZC with count 0 and sendmsg(MSG_ZEROCOPY) of 0 bytes"
                             + (" and splice(SPLICE_F_ZC) of len 0" if szc is not None else ""),
                             "each returns 0; only the 1-byte calls that sent are notified",
                             (*nothing, RELEASE, drain_for(ACK_MS)),
                             all_of(expect_errnos(*expected, ret={i: 0 for i in calls}), accounting_holds("sock")),
                             expected)]


def _memlock_limit_rows(abi: Abi) -> list[Row]:
    zc, szc = abi.sendfile_zc, abi.splice_zc
    big = fd("src", "file", size=1 << 20, seed=1)
    sock = fd("sock", "tcp4_nic", nonblock=True, sndbuf=4 << 20)
    # 128 KiB: one 64 KiB sendmsg is charged 18 pages (its pages and two more, as MSG_ZEROCOPY
    # charges), a second would need 36 of 32.
    ops = (HOLD, _sendfile2(abi, 1 << 20, zc, offset=None), RELEASE, drain_for(ACK_MS), PEER_READ,
           _sendfile2(abi, 1 << 20, zc, offset=65536), PEER_READ, drain_for(ACK_MS))
    rows = [Row("tcp4_nic held back, RLIMIT_MEMLOCK 128 KiB: SENDFILE_ZC of a 1 MiB file; the peer let go and "
                "the notification read; SENDFILE_ZC of the file again",
                "each call returns a short count at the limit (at most 128 KiB), never ENOBUFS; id 0 notified "
                "before the second call", (big, sock), ops,
                all_of(ret_between(1, 1, 131072), notified_by(3, (0,)), ret_between(5, 1, 131072),
                       accounting_holds("sock")),
                settings=(("memlock", 131072),))]
    if szc is not None:
        ops = (_splice("src", "p.w", length=65536, off_in=0), _splice("p.r", "sock", length=65536, flags=szc),
               _splice("p.r", "sock", length=65536), PEER_READ, DRAIN)
        rows.append(Row("RLIMIT_MEMLOCK 48 KiB: file -> pipe 64 KiB, then splice(SPLICE_F_ZC) of it to tcp4, then "
                        "splice without the flag", "ENOBUFS (nothing sent, no id), then 65536; nothing notified",
                        (big, PIPE, _zc_sock()), ops,
                        all_of(expect_errnos((1, frozenset({ENOBUFS})), (2, frozenset({0})), ret={2: 65536}),
                               peer_received(65536), max_id_is_none("sock")),
                        errnos=((1, frozenset({ENOBUFS})),), settings=(("memlock", 49152),)))
    return rows


def max_id_is_none(sock: str) -> Callable:
    def check(program, result, abi, twin):
        ids = notified_ids(program, result, sock)
        return f"ids notified: {sorted(ids)}, expected none" if ids else ""

    return check


def _memlock_partial_rows(abi: Abi) -> list[Row]:
    """38 pages of RLIMIT_MEMLOCK: the first call's 64 KiB (18 pages) is sent in part and its rest
    charged again (at least 3 more); a 64 KiB call then needs 18 more: over the limit only if
    the rest was charged again (39 or more), within it if not (36)."""
    zc = abi.sendfile_zc
    big = fd("src", "file", size=1 << 20, seed=1)
    ops = (HOLD, _sendfile2(abi, 65536, zc, offset=0), _sendfile2(abi, 65536, zc, offset=65536))
    return [Row("tcp4_nic held back, non-blocking, RLIMIT_MEMLOCK 38 pages: SENDFILE_ZC of 64 KiB sent in part, "
                "then another of 64 KiB", "the first returns a short count; the second ENOBUFS (the first's "
                "charge is held for all it was given, its rest charged again)",
                (big, fd("sock", "tcp4_nic", nonblock=True)), ops,
                all_of(ret_between(1, 1, 65536 - 4096), expect_errnos((2, frozenset({ENOBUFS})))),
                errnos=((2, frozenset({ENOBUFS})),), settings=(("memlock", 38 * 4096),))]


def _msgzc_after_zc_rows(abi: Abi) -> list[Row]:
    """The peer held back, a ZC call of 16384 bytes: more than the initial congestion window
    sends, so its last skb, carrying the call's notification, is still on the write queue when
    sendmsg(MSG_ZEROCOPY) comes. TCP must start a new skb with a notification of its own."""
    calls = [("sendfile2(SENDFILE_ZC)", (_sendfile2(abi, 16384, abi.sendfile_zc),), (SRC,))]
    if abi.splice_zc is not None:
        calls.append(("file -> pipe, then splice(SPLICE_F_ZC)",
                      (_splice("src", "p.w", length=16384, off_in=0),
                       _splice("p.r", "sock", length=16384, flags=abi.splice_zc)), (SRC, PIPE)))
    rows = []
    for kind in NIC_TCP:
        for label, send, fds in calls:
            n = len(send)
            ops = (HOLD, *send, _sendmsg_zc(100), drain_for(HOLD_MS), RELEASE, drain_for(ACK_MS), PEER_READ, DRAIN)
            sent = tuple((1 + i, frozenset({0})) for i in range(n + 1))
            rows.append(Row(f"{kind}, the peer held back: {label} of 16384 bytes, then sendmsg(MSG_ZEROCOPY) of "
                            "100 onto its queued tail; the peer let go",
                            "16384, then 100; no notification while held; id 0 within "
                            f"{ACK_MS} ms of the release, ids 0 and 1 each notified once; the peer gets 16484 bytes",
                            (*fds, _zc_sock(kind=kind)), ops,
                            all_of(expect_errnos(*sent, ret={n: 16384, n + 1: 100}), held_back(n + 2), not_early,
                                   notified_by(n + 4, (0,)), max_id_is("sock", 1, (0, 1)),
                                   accounting_holds("sock"), peer_received(16484)),
                            errnos=sent))
    return rows


DECIDED_ROWS = {"SF2-ERROR-ORDER": _error_order_rows, "ZC-EFAULT-AFTER-SEND": _efault_after_send_rows,
                "ZC-UDP-CORKED": _udp_corked_rows, "ZC-ENOBUFS-OPTMEM": _enobufs_optmem_rows,
                "ZC-COUNT-0-NO-NOTIFICATION": _count_0_rows,
                "ZC-MEMLOCK-LIMIT": _memlock_limit_rows, "ZC-MEMLOCK-PARTIAL": _memlock_partial_rows,
                "ZC-MSGZC-AFTER-ZC": _msgzc_after_zc_rows}


PROMISE_CLAUSES = ("MSGZC-NIC-NOTIFY", "MSGZC-NIC-NO-EARLY", "ZC-NIC-NOTIFY", "ZC-NO-EARLY-NOTIFY",
                   "ZC-OVERWRITE-SAFE", "ZC-SLOW-CLIENT", "SPLICE-ZC-NO-EARLY-NOTIFY", "SPLICE-ZC-OVERWRITE-SAFE")


# --- the table: clause id -> rows ------------------------------------------------------------

def rows_of(clause_id: str, abi: Abi, kernel_info: dict) -> list[Row]:
    """Every row of one clause for the kernel described by `abi` / `kernel_info`."""
    CLAUSE_BY_ID[clause_id]  # an unknown id is a KeyError here, not an empty clause
    if clause_id in PROMISE_CLAUSES:
        return _promise_rows(clause_id, abi)
    if clause_id in DECIDED_ROWS:
        return DECIDED_ROWS[clause_id](abi)
    zc, default = abi.sendfile_zc, abi.sendfile_default
    if clause_id in ("SF64-EBADF", "SF64-EFAULT", "SF64-EINVAL", "SF64-ESPIPE", "SF64-EOVERFLOW",
                     "SF64-ODD-IN", "SF64-ODD-OUT"):
        return _sendfile64_rows(clause_id)
    if clause_id == "SF64-EAGAIN":
        return _eagain_rows()
    if clause_id == "SF64-EPIPE":
        return _epipe_rows({"op": "sendfile64", "out": "out", "in": "src", "offset": 0, "count": 512})
    if clause_id == "SF64-OFFSET":
        return _offset_rows("sendfile64")
    if clause_id == "SF64-COUNT":
        return _count_rows("sendfile64")
    if clause_id == "SPLICE-LEN0":
        return [errno_row(f"len 0 with {cond}", fds, _splice(i, o, length=0, flags=flags), 0, ret=0)
                for cond, fds, i, o, flags in (
                    ("both fds -1", [BAD], "bad", "bad", 0),
                    ("every flag bit set", [BAD], "bad", "bad", 0xFFFFFFFF),
                    ("no pipe at either end", [SRC, fd("out", "file_wo")], "src", "out", 0))]
    if clause_id == "SPLICE-FLAGS-UNKNOWN":
        return [errno_row(f"flag {bit:#x}", [SRC, PIPE], _splice("src", "p.w", flags=bit), EINVAL)
                for bit in _unknown_bits(splice_flags_mask(kernel_info))]
    if clause_id in ("SPLICE-EBADF", "SPLICE-EINVAL", "SPLICE-ESPIPE"):
        return _splice_rows(clause_id)
    if clause_id == "SPLICE-ODD-FDS":
        return _odd_splice_rows()
    if clause_id == "SPLICE-PIPE-EOF":
        return _pipe_eof_rows()
    if clause_id == "TEE-FLAGS-UNKNOWN":
        tee = {"op": "tee", "in": "bad", "out": "bad", "len": 0}
        return ([errno_row(f"flag {bit:#x}, len 0", [BAD], {**tee, "flags": bit}, EINVAL)
                 for bit in _unknown_bits(splice_flags_mask(kernel_info))]
                + [errno_row("no flags, len 0", [BAD], {**tee, "flags": 0}, 0, ret=0)])
    if clause_id == "VMSPLICE-FLAGS-UNKNOWN":
        return [errno_row(f"flag {bit:#x}", [PIPE], {"op": "vmsplice", "fd": "p.w", "len": 512, "flags": bit},
                          EINVAL) for bit in _unknown_bits(splice_flags_mask(kernel_info))]
    if clause_id.startswith("MSGZC-"):
        return _msgzc_rows(clause_id)
    # --- sendfile2 ---
    valid = (zc or 0) | (default or 0)
    if clause_id == "SF2-FLAGS-UNKNOWN":
        call = {"op": "sendfile2", "out": "out", "in": "src", "offset": 0, "count": 512}
        return ([errno_row(f"flag {bit:#x}", [SRC, TCP], {**call, "flags": bit}, EINVAL) for bit in _unknown_bits(valid)]
                + [errno_row("all 32 bits set", [SRC, TCP], {**call, "flags": 0xFFFFFFFF}, EINVAL)])
    if clause_id == "SF2-FLAGS-CHECKED-FIRST":
        bit = _unknown_bits(valid)[0]
        call = {"op": "sendfile2", "out": "out", "in": "src", "offset": 0, "count": 512, "flags": bit}
        return [errno_row(f"flag {bit:#x} and {cond}", fds, {**call, **args}, EINVAL) for cond, fds, args in (
            ("out_fd -1", [SRC, fd("out", "invalid")], {}),
            ("in_fd -1", [fd("src", "invalid"), TCP], {}),
            ("offset unmapped", [SRC, TCP], {"offset": "unmapped"}),
            ("offset -1", [SRC, TCP], {"offset": -1}),
            ("count SSIZE_MAX + 1", [SRC, TCP], {"count": SSIZE_MAX + 1}))]
    if clause_id == "SF2-PARITY-ERRNO":
        rows = [_scenario_row(s, "sendfile2", flags, f" [flags {label}]") for s in SENDFILE_SCENARIOS
                for label, flags in (("0", 0), ("SENDFILE_DEFAULT", default))]
        rows += _eagain_rows("sendfile2", (("0", 0), ("SENDFILE_DEFAULT", default)))
        rows += _epipe_rows({"op": "sendfile2", "out": "out", "in": "src", "offset": 0, "count": 512, "flags": 0})
        return rows
    if clause_id in ("SF2-PARITY-TRANSFER", "SF2-ZC-TRANSFER"):
        flag_sets = (("0", 0), ("SENDFILE_DEFAULT", default)) if clause_id == "SF2-PARITY-TRANSFER" \
            else (("SENDFILE_ZC", zc),)
        rows = [Row(r.condition + f" [flags {label}]", r.expected + ", as sendfile64", r.fds, r.ops,
                    all_of(r.check, twin_parity), twin=True)
                for label, flags in flag_sets for r in _offset_rows("sendfile2", flags) + _count_rows("sendfile2", flags)
                if not (flags == zc and r.fds[1]["kind"] not in ("tcp4", "udp4"))]
        return rows
    if clause_id == "SF2-ZC-NON-SOCKET":
        return [errno_row(f"out_fd is {kind}", [SRC, fd("out", kind)],
                          {"op": "sendfile2", "out": "out.w" if kind == "pipe" else "out", "in": "src",
                           "offset": 0, "count": 512, "flags": zc}, EOPNOTSUPP, isolate=True)
                for kind in ("file", "pipe", "unix_stream", "unix_dgram", "devnull", "memfd")]
    if clause_id == "SF2-ZC-ERRNO":
        rows = [_scenario_row(s, "sendfile2", zc, " [SENDFILE_ZC]") for s in _sendfile_scenarios(_zc_out())]
        rows += _epipe_rows({"op": "sendfile2", "out": "out", "in": "src", "offset": 0, "count": 512, "flags": zc})
        return rows
    if clause_id == "SF2-NONBLOCK-EAGAIN":
        return [r for r in _eagain_rows("sendfile2", (("SENDFILE_ZC", zc),)) if "tcp4" in r.condition]
    if clause_id.startswith("ZC-"):
        return _zc_rows(clause_id, abi)
    # --- SPLICE_F_ZC ---
    szc = abi.splice_zc
    if clause_id == "SPLICE-ZC-PIPE-TO-SOCKET":
        ops = []
        for n in range(2):
            ops += [_splice("src", "p.w", length=4096, off_in=n * 4096), _splice("p.r", "sock", length=4096, flags=szc)]
        return [Row("file -> pipe, then pipe -> TCP with SPLICE_F_ZC, twice", "4096 each; ids 0 and 1, once each",
                    (SRC, PIPE, _zc_sock()), tuple(ops) + (PEER_READ, DRAIN),
                    all_of(expect_errnos(*[(i, frozenset({0})) for i in range(4)], ret={1: 4096, 3: 4096}),
                           accounting_holds("sock", 1)))]
    if clause_id == "SPLICE-ZC-ERRNO":
        return [_splice_zc_error_row(r, abi, kernel_info)
                for c in ("SPLICE-EBADF", "SPLICE-EINVAL", "SPLICE-ESPIPE") for r in _splice_rows(c, szc)]
    if clause_id == "SPLICE-ZC-PIPE-EOF":
        return [Row(f"splice(SPLICE_F_ZC) from an empty pipe with no writer ({label}) to tcp4, then "
                    "sendmsg(MSG_ZEROCOPY)", "success (0), then 512; the sendmsg is notified as id 0",
                    (fd("p", "pipe", nonblock=nonblock), _zc_sock()),
                    (CLOSE_WRITER, _splice("p.r", "sock", length=1, flags=szc), _sendmsg_zc(), PEER_READ, DRAIN),
                    all_of(expect_errnos((1, frozenset({0})), (2, frozenset({0})), ret={1: 0, 2: 512}),
                           max_id_is("sock", 0, (0,))),
                    errnos=((1, frozenset({0})),))
                for label, nonblock in (("blocking", False), ("O_NONBLOCK", True))]
    if clause_id == "TEE-ZC-REJECTED":
        fill = {"op": "write", "fd": "a.w", "len": 512}
        pipes = (fd("a", "pipe"), fd("b", "pipe"))
        return [Row(f"tee between two pipes with {label}", "EINVAL", pipes,
                    (fill, {"op": "tee", "in": "a.r", "out": "b.w", "len": 512, "flags": flags}),
                    expect_errnos((1, frozenset({EINVAL}))), errnos=((1, frozenset({EINVAL})),))
                for label, flags in (("SPLICE_F_ZC", szc), ("SPLICE_F_ZC|SPLICE_F_NONBLOCK", szc | 2))]
    if clause_id == "VMSPLICE-ZC-REJECTED":
        return [errno_row(f"vmsplice to a pipe with {label}", [PIPE],
                          {"op": "vmsplice", "fd": "p.w", "len": 512, "flags": flags}, EINVAL)
                for label, flags in (("SPLICE_F_ZC", szc), ("SPLICE_F_ZC|SPLICE_F_NONBLOCK", szc | 2))]
    raise KeyError(f"clause {clause_id} has no rows")


def spec_programs(abi: Abi, kernel_info: dict) -> list[Program]:
    """Every row of every clause this kernel's ABI has, one program each, the clauses taken in
    turn (the first row of each, then the second, ...): the spec's own edge cases, which a
    campaign runs before it generates any, as syzkaller starts from its seed corpus."""
    has = {"": True, "sendfile2": abi.has_sendfile2, "splice_zc": abi.splice_zc is not None}
    per_clause = [rows_of(c.id, abi, kernel_info) for c in CLAUSES if has[c.requires]]
    programs: dict[str, Program] = {}
    for row in itertools.chain.from_iterable(itertools.zip_longest(*per_clause)):
        if row is not None:
            program = Program.from_json(row.program(abi))
            programs.setdefault(program.dumps(), program)
    return list(programs.values())


def _splice_zc_error_row(row: Row, abi: Abi, kernel_info: dict) -> Row:
    """A splice error row with SPLICE_F_ZC, expecting what the ABI model says: the same errno
    for bad fds and offsets, EOPNOTSUPP where the output is not a TCP/UDP socket."""
    program = Program.from_json(row.program(abi))
    last = len(program.ops) - 1
    allowed = expected_errno(program, last, kernel_info)
    expected = " or ".join(errno_name(e) for e in sorted(allowed))
    return Row(row.condition + " [SPLICE_F_ZC]", expected, row.fds, row.ops,
               expect_errnos((last, allowed)), errnos=((last, allowed),))


def _zc_out() -> dict:
    return fd("out", "tcp4", zerocopy=True)
