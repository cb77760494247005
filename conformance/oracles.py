"""The oracles: what must hold of a program's result, each in exactly one place.

Each oracle takes a program and what a target returned for it and gives a list of
`Violation`s, empty when the result is clean. `judge` runs a program on a target and applies
every oracle that the kernel under it can answer (no sendfile2: no parity, no sendfile2 ids).

- parity: sendfile2 with flags 0 (or SENDFILE_ZC on a TCP/UDP socket) moves the same bytes and
  leaves the same offsets as sendfile64 on a fresh identical fixture; compared is only what the
  ABI fixes, by one rule (above `parity`), never what timing sets.
- accounting: each socket's 32-bit zerocopy counter, shared by sendfile2 ZC, splice ZC and
  sendmsg(MSG_ZEROCOPY), takes one id per call that sent more than 0 bytes; the notified ranges
  cover exactly those ids, once each.
- errno: what conformance.model accepts for each call.
- data: the peer receives exactly the bytes sent, from the offsets sent; after the notification
  of every call that sent a file's bytes, rewriting the file changes nothing the peer receives.
- promise: no notification covers a call while bytes of it are still unacknowledged.
- health: a crash, hang, WARNING or KASAN report under a program.
"""

from __future__ import annotations

import errno as errno_module
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from zcfuzz.conformance.abi import (
    EOF_PUSHES_KINDS,
    MSG_DONTWAIT,
    MSG_MORE,
    MSG_ZEROCOPY,
    SO_EE_CODE_ZEROCOPY_COPIED,
    SO_EE_ORIGIN_ZEROCOPY,
    SPLICE_F_BASE,
    STREAM_SOCKET_KINDS,
    TRUE_ZEROCOPY_KINDS,
    ZEROCOPY_KINDS,
    Abi,
)
from zcfuzz.conformance.model import (
    expected_errno,
    sendfile_flags_mask,
    splice_flags_mask,
)
from zcfuzz.vm.program import (
    CONTENT_KINDS,
    NIC_KINDS,
    SOCKET_KINDS,
    Op,
    Program,
    ProgramResult,
    digest,
    errno_name,
    pattern,
)
from zcfuzz.vm.target import KernelCrash, Target

# Which sendfile64 twin a sendfile2 call has (`parity_twin`): flags 0 or SENDFILE_DEFAULT, or ZC.
PARITY_FLAGS0 = "flags0"
PARITY_ZC = "zc"
# What broke, in words: a violation's `detail`, which tells two findings of one clause apart.
ZC_RECORD_FORMAT = "malformed record"
ZC_ID_ONCE = "id notified twice"
ZC_NO_INVENTED_ID = "id no call took"
ZC_NO_ID_ON_FAILURE = "id taken by a call that sent nothing"
ZC_COPIED = "COPIED flag"
ZC_CONCURRENT = "ids not 0..n-1 once each with two threads"
ZC_NOTIFIES = {"sendfile2": "sendfile2 not notified", "splice": "splice not notified",
               "sendmsg": "sendmsg not notified"}
NONBLOCK_NEVER_BLOCKS = "blocked though non-blocking"
PEER_DATA = "peer data"
ZC_NOT_EARLY = "notified early"
ZC_OVERWRITE_SAFE = "rewrite seen after the notification"
PARITY_DIFFERS = "differs from sendfile64"
DUMMY_UDP_PAYLOAD_MAX = 1500 - 20 - 8  # dummy0's MTU less the IPv4 and UDP headers
# The NIC path's sockets (vm/PROGRAM.md, "The NIC path") are TCP and UDP as the loopback ones are;
# only their peer is across a device that keeps the pages until it has sent them.
ZC_SOCKET_KINDS = ZEROCOPY_KINDS + NIC_KINDS
STREAM_KINDS = STREAM_SOCKET_KINDS + tuple(k for k in NIC_KINDS if k.startswith("tcp"))
TCP_KINDS = tuple(k for k in ZC_SOCKET_KINDS if k.startswith("tcp"))
# Ops that change a file's bytes in place: a rewrite of what a zerocopy call may still reference.
REWRITE_OPS = ("pwrite", "truncate", "mmap_write")


# --- the clause a violation breaks ---------------------------------------------------------
# Each violation names its clause of conformance/SPEC.md, so that a finding carries the same id
# as the spec, the conformance verdict and the gate (and with it the RFC defects it catches).

SF64_ERRNO_CLAUSES = {errno_module.EBADF: "SF64-EBADF", errno_module.EFAULT: "SF64-EFAULT",
                      errno_module.EINVAL: "SF64-EINVAL", errno_module.ESPIPE: "SF64-ESPIPE",
                      errno_module.EOVERFLOW: "SF64-EOVERFLOW", errno_module.EAGAIN: "SF64-EAGAIN",
                      errno_module.EPIPE: "SF64-EPIPE", errno_module.ECONNRESET: "SF64-EPIPE"}
SPLICE_ERRNO_CLAUSES = {errno_module.EBADF: "SPLICE-EBADF", errno_module.EINVAL: "SPLICE-EINVAL",
                        errno_module.ESPIPE: "SPLICE-ESPIPE"}
# The clause of each zerocopy accounting rule, by the kind of call it is about.
SENDFILE2_ACCOUNTING = {ZC_RECORD_FORMAT: "ZC-RANGE-COALESCE", ZC_ID_ONCE: "ZC-NOTIFY-ONCE",
                        ZC_NO_INVENTED_ID: "ZC-ID-ONCE", ZC_NO_ID_ON_FAILURE: "ZC-ID-NOT-ON-FAILURE",
                        ZC_NOTIFIES["sendfile2"]: "ZC-NOTIFY-ONCE"}
MSGZC_ACCOUNTING = {ZC_NO_ID_ON_FAILURE: "MSGZC-ID-NOT-ON-FAILURE"}
PROMISE_CLAUSES = {"sendfile2": "ZC-NO-EARLY-NOTIFY", "splice": "SPLICE-ZC-NO-EARLY-NOTIFY",
                   "sendmsg": "MSGZC-NIC-NO-EARLY"}
PARITY_CLAUSES = {PARITY_FLAGS0: ("SF2-PARITY-ERRNO", "SF2-PARITY-TRANSFER"),
                  PARITY_ZC: ("SF2-ZC-ERRNO", "SF2-ZC-TRANSFER")}
SERIES_OPS = ("sendfile2", "splice", "tee", "vmsplice", "sendfile64")


def flag_bit(kernel_info: dict, table: str, name: str) -> int:
    return (kernel_info.get(table) or {}).get(name, 0)


def call_clause(program: Program, i: int, accepted: frozenset[int] | None, kernel_info: dict) -> str:
    """The clause that fixes what call `i` must return, given what the model accepts of it (None:
    the model cannot tell): the flags it breaks first, then its errno's own clause."""
    op = program.ops[i]
    flags = dict(op.args).get("flags", 0) or 0
    expected = 0 if accepted is None or 0 in accepted else min(accepted)
    if op.op == "sendfile64":
        return SF64_ERRNO_CLAUSES.get(expected, "SF64-COUNT")
    if op.op == "sendfile2":
        if expected == errno_module.ENOSYS:
            return ""
        if flags & ~sendfile_flags_mask(kernel_info):
            return "SF2-FLAGS-UNKNOWN"
        if not flags & flag_bit(kernel_info, "sendfile_flags", "SENDFILE_ZC"):
            return "SF2-PARITY-ERRNO"
        if expected == errno_module.EOPNOTSUPP:
            return "SF2-ZC-NON-SOCKET"
        if expected == errno_module.ENOBUFS:
            return "ZC-ENOBUFS-OPTMEM" if program.optmem_max else "ZC-MEMLOCK-LIMIT"
        if expected == 0 and op["count"] > program.memlock:
            return "ZC-MEMLOCK-SENT"
        return "SF2-ZC-ERRNO"
    zc = flags & flag_bit(kernel_info, "splice_flags", "SPLICE_F_ZC")
    if op.op == "splice":
        if flags & ~splice_flags_mask(kernel_info):
            return "SPLICE-FLAGS-UNKNOWN"
        if zc:
            return "SPLICE-ZC-ERRNO"
        if op["len"] == 0:
            return "SPLICE-LEN0"
        return SPLICE_ERRNO_CLAUSES.get(expected, "SPLICE-ODD-FDS")
    if op.op in ("tee", "vmsplice"):
        if zc:
            return f"{op.op.upper()}-ZC-REJECTED"
        if flags & ~splice_flags_mask(kernel_info):
            return f"{op.op.upper()}-FLAGS-UNKNOWN"
        return "SPLICE-ODD-FDS"
    return ""


def never_blocks_clause(program: Program, i: int, kernel_info: dict) -> str:
    op = program.ops[i]
    if op.op == "sendfile2":
        return "SF2-NONBLOCK-EAGAIN"
    if op.op == "sendfile64":
        return "SF64-EAGAIN"
    if op.op == "splice" and op["flags"] & flag_bit(kernel_info, "splice_flags", "SPLICE_F_ZC"):
        return "SPLICE-ZC-ERRNO"
    return ""


def accounting_clause(program: Program, sock: str, rule: str, op_index: int | None) -> str:
    """The clause of a zerocopy accounting rule on `sock`: about the call it names, or about
    every kind of call that sends on the socket (ZC-COUNTER-SHARED where they are several)."""
    kinds = {op.op for op in program.ops if op.op in ("sendfile2", "splice", "sendmsg")
             and sock in (dict(op.args).get("out"), dict(op.args).get("fd"))}
    kind = program.ops[op_index].op if op_index is not None else next(iter(kinds)) if len(kinds) == 1 else ""
    nic = program.fixture(sock).kind in NIC_KINDS
    if rule == ZC_CONCURRENT:
        return "ZC-ID-CONCURRENT" if kinds - {"sendmsg"} else "MSGZC-OPT-IN"
    if rule == ZC_COPIED:
        true_zerocopy = program.fixture(sock).kind in TRUE_ZEROCOPY_KINDS
        if kind == "sendmsg":
            return "MSGZC-TRUE-ZEROCOPY-DUMMY" if true_zerocopy else "MSGZC-COPIED-LOOPBACK"
        return "ZC-TRUE-ZEROCOPY-DUMMY" if true_zerocopy else "ZC-COPIED-LOOPBACK"
    if kind == "splice":
        return "SPLICE-ZC-PIPE-TO-SOCKET"
    if kind == "sendmsg":
        return MSGZC_ACCOUNTING.get(rule, "MSGZC-NIC-NOTIFY" if nic else "MSGZC-OPT-IN")
    if kind == "sendfile2":
        return SENDFILE2_ACCOUNTING[rule]
    return "ZC-RANGE-COALESCE" if rule == ZC_RECORD_FORMAT else "ZC-COUNTER-SHARED"


def stream_clause(program: Program, sock: str, overwrite: bool) -> str:
    """The clause of what a peer of `sock` received: the promise of the call kinds that sent
    file pages to it, or what the calls said they sent."""
    calls = [op for op in program.ops if dict(op.args).get("out") == sock]
    if overwrite:
        return "SPLICE-ZC-OVERWRITE-SAFE" if any(op.op == "splice" for op in calls) and \
            not any(op.op == "sendfile2" for op in calls) else "ZC-OVERWRITE-SAFE"
    if any(op.op == "sendfile2" and op["flags"] for op in calls):
        return "SF2-ZC-TRANSFER"
    return "SF2-PARITY-TRANSFER" if any(op.op == "sendfile2" for op in calls) else "SF64-COUNT"


def crash_clause(program: Program | None, kernel_info: dict) -> str:
    """The clause of the call a crash came under: the program's last call into the series
    (a shrunk program ends with the call that crashes); "" if it has none."""
    if program is None:
        return ""
    calls = [i for i, op in enumerate(program.ops) if op.op in SERIES_OPS]
    if not calls:
        return ""
    try:
        accepted = expected_errno(program, calls[-1], kernel_info)
    except (KeyError, ValueError, TypeError):
        accepted = None
    return call_clause(program, calls[-1], accepted, kernel_info)


@dataclass(frozen=True)
class Violation:
    """One broken rule: which oracle saw it, the clause of conformance/SPEC.md it breaks (its id,
    as the spec, findings, the gate and the reports give it; "" for a crash under no call of the
    series), the op (None: the whole program), and `detail`, what broke in a few stable words
    (a crash's title for health), which tells two findings of one clause apart."""

    oracle: str
    clause_id: str
    op_index: int | None
    message: str
    detail: str = ""

    @property
    def key(self) -> str:
        """What makes two violations the same finding: a crash by its title, as syzkaller does."""
        if self.oracle == "health":
            return f"health:{self.detail}"
        return f"{self.oracle}:{self.clause_id}" + (f":{self.detail}" if self.detail else "")

    @property
    def title(self) -> str:
        if self.oracle == "health":
            return self.detail
        return f"{self.oracle}: {self.clause_id or 'no clause'}" + (f" ({self.detail})" if self.detail else "")

    def to_json(self) -> dict:
        return {"oracle": self.oracle, "clause_id": self.clause_id, "op_index": self.op_index,
                "message": self.message, "detail": self.detail}


# --- accounting ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ZerocopyCall:
    """A call that should take a notification id from a socket's counter if it sends."""

    op_index: int
    op: str  # sendfile2, splice or sendmsg
    # took an id: returned more than 0 (None: cannot be told, `datagram_corked`, or SO_ZEROCOPY
    # switched on the other thread)
    sent: bool | None


def zerocopy_calls(program: Program, result: ProgramResult, abi: Abi, sock: str) -> list[ZerocopyCall]:
    """The calls on `sock` that the counter model cares about, in order."""
    zerocopy_on = program.fixture(sock).zerocopy
    datagram = program.fixture(sock).kind.startswith("udp")
    corked = datagram_corked(program, result, sock)
    # The threads that turned SO_ZEROCOPY on or off: a sendmsg on another thread may have run
    # before or after, so whether it was a zerocopy send at all is not known.
    switched_by = {op.thread for i, op in enumerate(program.ops) if op.op == "setsockopt_zerocopy"
                   and op["fd"] == sock and result.ops[i].get("ret", -1) == 0}
    calls: list[ZerocopyCall] = []
    for i, op in enumerate(program.ops):
        ret, failed = result.ops[i].get("ret", -1), result.ops[i].get("errno", 0) != 0
        if op.op == "setsockopt_zerocopy" and op["fd"] == sock and ret == 0:
            zerocopy_on = op["value"] == 1
        elif op.op == "sendmsg" and op["fd"] == sock and op["flags"] & MSG_ZEROCOPY and switched_by - {op.thread}:
            calls.append(ZerocopyCall(i, "sendmsg", None))
        elif op.op == "sendfile2" and op["out"] == sock and abi.is_sendfile_zc(op["flags"]):
            calls.append(ZerocopyCall(i, "sendfile2", ret > 0))
        elif op.op == "sendmsg" and op["fd"] == sock and op["flags"] & MSG_ZEROCOPY and zerocopy_on:
            # An empty UDP datagram still sends its header, and takes an id for it; an empty
            # append to a corked one adds no header, so it takes none; where whether a datagram
            # waited is not known, neither is the id.
            empty_takes = datagram and not failed and (None if corked[i] is None else not corked[i])
            calls.append(ZerocopyCall(i, "sendmsg", True if ret > 0 else empty_takes))
        elif op.op == "splice" and op["out"] == sock and abi.is_splice_zc(op["flags"]):
            calls.append(ZerocopyCall(i, "splice", ret > 0))
    return calls


def datagram_corked(program: Program, result: ProgramResult, sock: str) -> list[bool | None]:
    """Before each op and after the last, whether a datagram of `sock` waits for more: True,
    False, or None where it cannot be told (always False for a stream socket). A send that
    failed while one waited may have failed in the append, where UDP discards the datagram
    (udp_flush_pending_frames), or before it (a flag or length check), which keeps it."""
    datagram = program.fixture(sock).kind.startswith("udp")
    states, corked = [], False
    for op, op_result in zip(program.ops, result.ops):
        states.append(corked)
        if not datagram:
            continue
        if reached_send_path(op, op_result, sock):
            # Stopped short with a fault injected: by its read (the datagram waits) or by a send.
            corked = None if stopped_short(program, op, op_result) and op.fail_nth else \
                asks_for_more(program, op, op_result)
        elif corked is not False and sock in (dict(op.args).get("out"), dict(op.args).get("fd")) \
                and op.op in ("sendmsg", "write", "sendfile2", "sendfile64", "splice"):
            corked = None
    return states + [corked]


def reached_send_path(op: Op, op_result: dict, sock: str) -> bool:
    """The op sent to `sock`: an empty sendmsg does, a splice or sendfile that moved nothing not."""
    if op_result.get("errno", 0) != 0 or op_result.get("ret", -1) < 0:
        return False
    if op.op in ("sendmsg", "write") and op["fd"] == sock:
        return op.op == "sendmsg" or op_result["ret"] > 0
    return op.op in ("sendfile2", "sendfile64", "splice") and op["out"] == sock and op_result["ret"] > 0


def sent_with_more(op: Op, op_result: dict) -> bool:
    """The call's last send carried MSG_MORE, so UDP built (and copied) a datagram to hold more:
    asked for (MSG_MORE, SPLICE_F_MORE), or a sendfile that moved less than its count (its direct
    splice sends each chunk short of count with MSG_MORE)."""
    if op.op == "sendmsg":
        return bool(op["flags"] & MSG_MORE)
    if op.op == "splice":
        return bool(op["flags"] & SPLICE_F_BASE["SPLICE_F_MORE"])
    return op.op in ("sendfile2", "sendfile64") and 0 < op_result.get("ret", -1) < op["count"]


def stopped_short(program: Program, op: Op, op_result: dict) -> bool:
    """A sendfile to a UDP socket that moved less than its count, neither at the end of its file
    nor cut short by the executor's timer: a chunk's send failed (the datagram at its largest
    size, EMSGSIZE; memory, ENOBUFS or EAGAIN) or, with a fault injected, maybe its read."""
    return op.op in ("sendfile2", "sendfile64") and program.fixture(op["out"]).kind.startswith("udp") \
        and 0 < op_result.get("ret", -1) < op["count"] and not ran_out_of_input(op, op_result) \
        and not op_result.get("timed_out")


def flushed_short(program: Program, op: Op, op_result: dict) -> bool:
    """A sendfile that stopped short where only a failed send can stop it (no fault injected):
    UDP discards a datagram whose append fails (udp_flush_pending_frames), with the bytes the
    call counted in it, so nothing waits after it. 6.12 on a 65536-byte sendfile to udp4: 65507
    (the largest datagram) returned, the next chunk EMSGSIZE, the datagram gone."""
    return stopped_short(program, op, op_result) and not op.fail_nth


def asks_for_more(program: Program, op: Op, op_result: dict) -> bool:
    """The call left a datagram waiting for more, forever: it sent with MORE and did not push it.
    A sendfile that ran out of input pushes it, where the socket has splice_eof; one whose next
    chunk failed left nothing waiting (`flushed_short`)."""
    if not sent_with_more(op, op_result) or flushed_short(program, op, op_result):
        return False
    return not (op.op in ("sendfile2", "sendfile64") and ran_out_of_input(op, op_result)
                and program.fixture(op["out"]).kind in EOF_PUSHES_KINDS)


def ran_out_of_input(op: Op, op_result: dict) -> bool:
    """The sendfile stopped at the end of a regular file (its read returned 0)."""
    end = op_result.get("offset_after") if isinstance(op["offset"], int) else op_result.get("in_pos_after")
    size = op_result.get("in_size_after")
    return end is not None and size is not None and end >= size


@dataclass(frozen=True)
class CounterModel:
    """How a kernel hands out ids; the correct one has no deviations.

    `silent` names call kinds that take no id at all; `failures_consume` makes a sendfile2 ZC
    call take an id even when it fails or sends nothing. Deviating models explain an observed
    id set, so a violation names the rule that broke instead of listing ids.
    """

    silent: frozenset[str] = frozenset()
    failures_consume: bool = False

    def notified_ids(self, calls: list[ZerocopyCall]) -> dict[int, int]:
        """id -> the index of the op whose completion notifies it."""
        ids, counter = {}, 0
        for call in calls:
            if call.op in self.silent:
                continue
            if call.sent:
                ids[counter] = call.op_index
                counter += 1
            elif self.failures_consume and call.op == "sendfile2":
                counter += 1
        return ids

    def deviations(self, calls: list[ZerocopyCall]) -> list[tuple[str, int, str]]:
        """(rule, op index, message) for each way this model differs from the correct one."""
        out = []
        for op in sorted(self.silent):
            first = next(c for c in calls if c.op == op and c.sent)
            out.append((ZC_NOTIFIES[op], first.op_index, f"{op} with the zerocopy flag sent data but took no "
                        "notification id"))
        if self.failures_consume:
            first = next(c for c in calls if c.op == "sendfile2" and not c.sent)
            out.append((ZC_NO_ID_ON_FAILURE, first.op_index, "a sendfile2 ZC call that failed or sent 0 bytes "
                        "consumed a notification id (the ids that follow have a gap)"))
        return out


# When two models explain the same ids, blame the newest path first: sendmsg(MSG_ZEROCOPY) is
# long established, sendfile2's ZC path is the proposal's core, splice ZC its afterthought.
SUSPICION = ("splice", "sendfile2", "sendmsg")


def resolutions(calls: list[ZerocopyCall]) -> list[list[ZerocopyCall]]:
    """Each way the calls whose id cannot be told (`sent` None) may have gone, none taking one
    first. Programs are short, so the ways are few."""
    unknown = [k for k, call in enumerate(calls) if call.sent is None]
    ways = []
    for choice in itertools.product((False, True), repeat=len(unknown)):
        way = list(calls)
        for k, sent in zip(unknown, choice):
            way[k] = replace(calls[k], sent=sent)
        ways.append(way)
    return ways


def candidate_models(calls: list[ZerocopyCall]) -> list[CounterModel]:
    """Models that could explain `calls`, fewest deviations first (the correct model first)."""
    sending_kinds = sorted({c.op for c in calls if c.sent}, key=SUSPICION.index)
    can_consume = any(c.op == "sendfile2" and not c.sent for c in calls)
    models = []
    for n in range(len(sending_kinds) + 1):
        for silent in itertools.combinations(sending_kinds, n):
            models.append(CounterModel(frozenset(silent)))
            if can_consume:
                models.append(CounterModel(frozenset(silent), failures_consume=True))
    return sorted(models, key=lambda m: len(m.silent) + m.failures_consume)


def notification_records(program: Program, result: ProgramResult, sock: str) -> list[dict]:
    """Every zerocopy record read from `sock`: by drain ops, then by the final drain."""
    records = [n for i, op in enumerate(program.ops) if op.op == "drain" and op["fd"] == sock
               for n in result.ops[i].get("notifications", [])]
    records += result.final.get("notifications", {}).get(sock, [])
    return [r for r in records if r.get("origin") == SO_EE_ORIGIN_ZEROCOPY]


def accounting(program: Program, result: ProgramResult, abi: Abi) -> list[Violation]:
    """Notified id ranges against the counter model, socket by socket."""
    violations = []
    for fixture in program.fds:
        if fixture.kind not in ZC_SOCKET_KINDS or result.fixture_error(fixture.name) is not None:
            continue
        violations += socket_accounting(program, result, abi, fixture.name)
    return violations


def amount_unknown(op: Op) -> bool:
    """The call's offset is on a read-only page: the data moves, then storing the offset back
    fails with EFAULT (ZC-EFAULT-AFTER-SEND), so how many bytes it sent, and whether it took an
    id, is not in its result."""
    return op.op in ("sendfile2", "sendfile64", "splice") and \
        "readonly" in (dict(op.args).get("offset"), dict(op.args).get("off_in"))


def sent_unknown(program: Program, sock: str) -> bool:
    """A call to `sock` whose amount is unknown (`amount_unknown`): nothing that counts the
    stream or its ids is judged."""
    return any(amount_unknown(op) and sock == dict(op.args).get("out") for op in program.ops)


def socket_accounting(program: Program, result: ProgramResult, abi: Abi, sock: str) -> list[Violation]:
    def violation(rule: str, op_index: int | None, message: str) -> Violation:
        return Violation("accounting", accounting_clause(program, sock, rule, op_index), op_index,
                         f"{sock}: {message}", rule)

    sending = [op for op in program.ops if sock in (dict(op.args).get("out"), dict(op.args).get("fd"))
               and op.op in ("sendfile2", "splice", "sendmsg")]
    if sent_unknown(program, sock):
        return []
    calls = zerocopy_calls(program, result, abi, sock)
    records = notification_records(program, result, sock)
    out, seen, twice = [], set(), set()
    # A datagram larger than the device MTU is fragmented, and fragments are built by copying.
    fits_one_frame = all((dict(op.args).get("count") or dict(op.args).get("len") or 0) <= DUMMY_UDP_PAYLOAD_MAX
                         for op in sending)
    # A datagram sent with MSG_MORE (or by a sendfile short of its count) is built by copying,
    # to hold what comes next, and finished by whatever pushes it.
    corking = any(sent_with_more(op, r) for op, r in zip(program.ops, result.ops) if reached_send_path(op, r, sock))
    # A fault that failed an allocation on the way may make the stack copy what it would not.
    true_zerocopy = program.fixture(sock).kind in TRUE_ZEROCOPY_KINDS and fits_one_frame and not corking \
        and not fault_met(program, result)
    copied = []
    for record in records:
        lo, hi = record.get("lo", 0), record.get("hi", 0)
        # Cover letter: "The records are those of MSG_ZEROCOPY: ... ee_errno 0, ee_info..ee_data
        # an inclusive range of ids" (ZC-RANGE-COALESCE).
        if record.get("errno", 0) != 0 or lo > hi:
            out.append(violation(ZC_RECORD_FORMAT, None, f"malformed notification {record}"))
            continue
        ids = set(range(lo, hi + 1))
        twice |= ids & seen
        seen |= ids
        copied.append((lo, hi, bool(record.get("code", 0) & SO_EE_CODE_ZEROCOPY_COPIED)))
    # COPIED: msg_zerocopy.rst and the cover letter, "COPIED is set on loopback and deferred copies
    # as for MSG_ZEROCOPY" (ZC-COPIED-LOOPBACK, ZC-TRUE-ZEROCOPY-DUMMY).
    # Through dummy0 nothing is delivered, so nothing may be marked copied. Local delivery copies,
    # but a small send the stack copied at send time may complete without the flag (seen on
    # 6.18 loopback TCP): there, only "no range at all marked copied" is wrong.
    if true_zerocopy and any(flag for _, _, flag in copied):
        lo, hi, _ = next(c for c in copied if c[2])
        out.append(violation(ZC_COPIED, None, f"range {lo}-{hi} has COPIED set, but nothing left "
                             f"{program.fixture(sock).kind} to be copied"))
    # A peer that closed before reading leaves nothing delivered, so nothing copied.
    peer_gone = any(op.op == "peer_close" and op["fd"] == sock for op in program.ops)
    # Across the NIC nothing is delivered locally: whether the stack copied is the device's matter.
    local = program.fixture(sock).kind not in TRUE_ZEROCOPY_KINDS + NIC_KINDS
    if local and copied and not peer_gone \
            and not any(f for _, _, f in copied):
        out.append(violation(ZC_COPIED, None, f"no range has COPIED set on {program.fixture(sock).kind}, "
                             "though local delivery copies"))
    # Closed: its last completions were never read. Corked: its last bytes are still queued.
    # A fault met: they may still be on their way (`fault_met`).
    closed = any(op.op == "close" and op["fd"] == sock for op in program.ops) or corked(program, result, sock) \
        or fault_met(program, result)
    if on_two_threads(program):
        return out + concurrent_accounting(program, calls, seen, twice, violation, closed,
                                           gives_ids_back_unserialised(program, result, sock))
    # Cover letter: each call that sent "queues exactly one notification" (ZC-NOTIFY-ONCE).
    if twice:
        out.append(violation(ZC_ID_ONCE, None, f"ids {_ranges(twice)} notified more than once"))
    # The set of ids: cover letter, "A call that sent at least one byte takes exactly one id, from
    # the same per-socket counter as sendmsg(MSG_ZEROCOPY)", "A call that fails or sends nothing
    # takes no id" (ZC-ID-ONCE, ZC-ID-NOT-ON-FAILURE, ZC-COUNTER-SHARED; msg_zerocopy.rst).
    # It is fixed once the final drain has settled, whatever drains saw in the middle.
    ways = resolutions(calls)
    explanations = sorted(((model, way) for way in ways for model in candidate_models(way)),
                          key=lambda pair: len(pair[0].silent) + pair[0].failures_consume)
    for model, way in explanations:
        expected = model.notified_ids(way)
        if seen == set(expected) or (closed and seen <= set(expected)):
            out += [violation(rule, i, message) for rule, i, message in model.deviations(way)]
            return out
    expected = CounterModel().notified_ids(ways[0])
    invented = seen - set(expected)
    lost = set(expected) - seen
    if invented:
        out.append(violation(ZC_NO_INVENTED_ID, None, f"ids {_ranges(invented)} notified, but only "
                             f"{len(expected)} call(s) sent data"))
    if lost and not closed:
        first = min(lost)
        op = program.ops[expected[first]].op
        out.append(violation(ZC_NOTIFIES[op], expected[first], f"ids {_ranges(lost)} never notified "
                             f"(expected {_ranges(set(expected)) or 'none'})"))
    return out


def on_two_threads(program: Program) -> bool:
    """Some op runs on the second thread: between the threads' ops there is no order."""
    return any(op.thread for op in program.ops)


def fault_met(program: Program, result: ProgramResult) -> bool:
    """An op's injected fault failed an allocation (vm/PROGRAM.md, "Fault injection"). Where it
    hit is not known: the call's own path, or the transmit it pushed (an skb clone that fails
    leaves the data queued for the retransmission timer), so how much reached a peer by the end,
    and when the completions come, are not fixed."""
    return any(op.fail_nth and result.fault_injected(i) for i, op in enumerate(program.ops))


def shares_fixtures_across_threads(program: Program, i: int) -> bool:
    """Op i uses a fixture an op of the other thread uses: what state it finds is not fixed."""
    mine = {program.fixture(ref).name for ref in program.ops[i].fd_refs()}
    return any(op.thread != program.ops[i].thread and mine & {program.fixture(ref).name for ref in op.fd_refs()}
               for op in program.ops)


def gives_ids_back_unserialised(program: Program, result: ProgramResult, sock: str) -> bool:
    """6.12's own MSG_ZEROCOPY on a UDP socket: a sendmsg that fails after taking its id gives it
    back by decrementing the socket's counter (msg_zerocopy_put_abort), and the UDP send path
    takes no socket lock, so when a send on the other thread took the next id meanwhile, that id
    is given out again and the one before it never is. Seen on the base kernel as on v2, with no
    call of the series in the program: which ids come, and how often, is then not the series'."""
    return program.fixture(sock).kind.startswith("udp") and any(
        op.op == "sendmsg" and op["flags"] & MSG_ZEROCOPY and program.fixture(op["fd"]).name == sock
        and op_result.get("ret", 0) < 0 for op, op_result in zip(program.ops, result.ops))


def concurrent_accounting(program: Program, calls: list[ZerocopyCall], seen: set[int], twice: set[int],
                          violation: Callable, closed: bool, unserialised: bool) -> list[Violation]:
    """The ids of a socket sent on by two threads, judged as any interleaving allows: each call
    that sent took one id, one that sent nothing may keep its id when a call on the other thread
    took the next (v2 cover letter), and no id is skipped or notified twice (ZC-ID-CONCURRENT).
    Closed or corked: its last completions may never come, so only what did come is judged.
    `unserialised` (`gives_ids_back_unserialised`): only that no more ids came than calls made."""
    out = []
    if twice and not unserialised:
        out.append(violation(ZC_CONCURRENT, None, f"ids {_ranges(twice)} notified more than once"))
    fewest = sum(1 for call in calls if call.sent)
    most = len(calls)
    if len(seen) > most:
        out.append(violation(ZC_CONCURRENT, None, f"{len(seen)} ids notified, but only {most} zerocopy "
                             "call(s) were made"))
    if not closed and not unserialised:
        missing = set(range(max(seen, default=-1) + 1)) - seen
        if missing:
            out.append(violation(ZC_CONCURRENT, None, f"ids {_ranges(missing)} never notified, though "
                                 f"id {max(seen)} was"))
        elif len(seen) < fewest:
            out.append(violation(ZC_CONCURRENT, None, f"{len(seen)} ids notified, but {fewest} call(s) sent data"))
    return out


def _ranges(ids: set[int]) -> str:
    """`0-3,7`: ids as inclusive ranges."""
    parts, run = [], []
    for i in sorted(ids):
        if run and i != run[-1] + 1:
            parts.append(run)
            run = []
        run.append(i)
    if run:
        parts.append(run)
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in parts)


# --- the promise: a notification means the pages are free ---------------------------------


def call_ids(program: Program, result: ProgramResult, abi: Abi, sock: str) -> dict[int, int]:
    """op index -> the id the correct counter model gives each zerocopy call on `sock` that sent."""
    return {i: n for n, i in CounterModel().notified_ids(zerocopy_calls(program, result, abi, sock)).items()}


def stream_ends(program: Program, result: ProgramResult, sock: str) -> list[int]:
    """Per op, the bytes sent to stream `sock` once it has run (its call's last byte's end)."""
    ends, sent = [], 0
    for op, op_result in zip(program.ops, result.ops):
        if reached_send_path(op, op_result, sock):
            sent += max(op_result["ret"], 0)
        ends.append(sent)
    return ends


def early_notifications(program: Program, result: ProgramResult, abi: Abi) -> list[Violation]:
    """No record read by a drain covers a call whose last byte the stream still had not seen
    acknowledged right after (the drain's `outq`): the cover letter, one notification "once the
    call has returned and the last skb referencing its data is freed", and TCP frees an skb
    only once the peer acknowledged it. A second thread could send between the read and the
    outq, so only programs on one thread are judged; a connection closed on either side frees its
    queue at the close, acknowledged or not, so it is not judged either."""
    if any(op.thread for op in program.ops):
        return []
    out = []
    for fixture in program.fds:
        sock = fixture.name
        if fixture.kind not in TCP_KINDS or result.fixture_error(sock) is not None or any(
                op.op in ("peer_close", "close") and op["fd"] == sock for op in program.ops) \
                or sent_unknown(program, sock):
            continue
        ids, ends = call_ids(program, result, abi, sock), stream_ends(program, result, sock)
        op_of = {n: i for i, n in ids.items()}
        for d, op in enumerate(program.ops):
            outq = result.ops[d].get("outq")
            if op.op != "drain" or op["fd"] != sock or not isinstance(outq, int) or outq <= 0:
                continue
            acked = ends[d] - outq
            for record in result.ops[d].get("notifications", []):
                if record.get("origin") != SO_EE_ORIGIN_ZEROCOPY:
                    continue
                late = [op_of[n] for n in range(record["lo"], record["hi"] + 1)
                        if n in op_of and ends[op_of[n]] > acked]
                if late:
                    k = late[0]
                    out.append(Violation("promise", PROMISE_CLAUSES.get(program.ops[k].op, ""), k,
                                         f"{sock}: ops[{d}] drain read id {ids[k]} of ops[{k}] "
                                         f"{program.ops[k].op} while {ends[k] - acked} of its bytes were "
                                         f"unacknowledged (outq {outq})", ZC_NOT_EARLY))
                    break
    return out


def notified_before(program: Program, result: ProgramResult, abi: Abi, sock: str, before: int) -> set[int]:
    """The op indexes of the zerocopy calls on `sock` whose ids drains read before op `before`."""
    ids = {n: i for i, n in call_ids(program, result, abi, sock).items()}
    seen = {n for d in range(before) if program.ops[d].op == "drain" and program.ops[d]["fd"] == sock
            for r in result.ops[d].get("notifications", []) if r.get("origin") == SO_EE_ORIGIN_ZEROCOPY
            for n in range(r["lo"], r["hi"] + 1)}
    return {ids[n] for n in seen if n in ids}


def corked(program: Program, result: ProgramResult, sock: str) -> bool:
    """Data of `sock` may wait for more, forever: a datagram may still wait (`datagram_corked`),
    or the last call that sent to a stream asked for more."""
    if program.fixture(sock).kind.startswith("udp"):
        return datagram_corked(program, result, sock)[-1] is not False
    last = [(op, r) for op, r in zip(program.ops, result.ops) if reached_send_path(op, r, sock)]
    return bool(last) and asks_for_more(program, *last[-1])


# --- parity --------------------------------------------------------------------------------


def parity_twin(program: Program, abi: Abi) -> tuple[Program, dict[int, str]] | None:
    """The same program with sendfile64 in place of each sendfile2 that must behave like it.

    Returns the twin and, per replaced op, the clause it answers to; None when nothing is
    replaced (or the kernel has no sendfile2).
    """
    if not abi.has_sendfile2 or on_two_threads(program) or any(op.fail_nth for op in program.ops):
        # A second thread's calls would interleave with the twin's differently; the n-th fault
        # site of a ZC call is not the n-th of sendfile64's (the notification has its own).
        return None
    plain = abi.sendfile_default or 0
    known = plain | (abi.sendfile_zc or 0)
    ops, replaced = list(program.ops), {}
    for i, op in enumerate(program.ops):
        if op.op != "sendfile2" or op["flags"] < 0 or op["flags"] & ~known:
            continue
        if abi.is_sendfile_zc(op["flags"]):
            if program.fixture(op["out"]).kind not in ZC_SOCKET_KINDS:
                continue
            if program.fixture(op["out"]).kind.startswith("udp") and any(
                    e.op in ("sendmsg", "splice", "sendfile2", "sendfile64")
                    and op["out"] in (dict(e.args).get("fd"), dict(e.args).get("out")) for e in program.ops[:i]):
                continue  # a datagram corked before it may carry MSG_ZEROCOPY data: EINVAL, no twin
            replaced[i] = PARITY_ZC
        else:
            replaced[i] = PARITY_FLAGS0
        ops[i] = Op.make("sendfile64", out=op["out"], **{"in": op["in"]}, offset=op["offset"], count=op["count"])
    if not replaced:
        return None
    return replace(program, ops=tuple(ops)), replaced


# The one rule parity judges by: a field is compared only where the ABI fixes it, and only while
# the state it depends on is the same in both runs. A value timing sets (how many bytes had
# arrived at an instant, how much room a buffer had) is never compared, and the fixtures it moved
# data through are left in a state the ABI does not fix, so later amounts through them are not
# compared either; what the ABI fixes whatever the room (`outcome_whatever_the_room`) still is.
# The bytes a peer finally receives are compared where every amount sent to it was.
#
# What the ABI fixes of each op's result, on fixtures in the same state:
# - sendfile2 / sendfile64: the cover letter, "Flags 0 and SENDFILE_DEFAULT are sendfile64:
#   identical return values, errors, *offset and file position updates" (SF2-PARITY-ERRNO,
#   SF2-PARITY-TRANSFER); SENDFILE_ZC "fails exactly like sendfile64" and "moves the same bytes
#   and offsets as sendfile64" (SF2-ZC-ERRNO, SF2-ZC-TRANSFER).
# - splice, tee, vmsplice, write, sendmsg: 6.12 fs/splice.c, fs/read_write.c and net/ return
#   what the call moved, or the errno of the first check that failed, from its arguments and
#   the state of its fds; the same call on the same state gives the same.
# - setsockopt_zerocopy, close, peer_close: msg_zerocopy.rst (SO_ZEROCOPY, MSGZC-SOCKOPT) and
#   close(2) answer from the fd alone.
# - peer_read: nothing. vm/PROGRAM.md: the peer reads what has arrived, non-blocking; how much
#   has arrived at an instant is no part of any ABI (zerocopy and copied pages travel and are
#   charged differently).
# - drain: nothing here; which ids are notified is the accounting oracle's (sendfile64 has none).
# - peer_hold, peer_release, pwrite, truncate, mmap_write: answer from the fd and the file alone.
PARITY_FIELDS = ("ret", "errno", "offset_after", "in_pos_after", "out_pos_after")
CALL_FIELDS = ("ret", "errno", "in_pos_after", "out_pos_after", "off_in_after", "off_out_after")
ANSWER_FIELDS = ("ret", "errno")
DETERMINED_FIELDS = {
    "sendfile2": PARITY_FIELDS, "sendfile64": PARITY_FIELDS,
    "splice": CALL_FIELDS, "tee": CALL_FIELDS, "vmsplice": CALL_FIELDS, "write": CALL_FIELDS,
    "sendmsg": CALL_FIELDS,
    "setsockopt_zerocopy": ANSWER_FIELDS, "close": ANSWER_FIELDS, "peer_close": ANSWER_FIELDS,
    "peer_read": (), "drain": (), "lkdtm": (),
    # vm/PROGRAM.md: the link goes down or up; the file's bytes change in place.
    "peer_hold": ANSWER_FIELDS, "peer_release": ANSWER_FIELDS,
    "pwrite": ANSWER_FIELDS, "truncate": ANSWER_FIELDS, "mmap_write": ANSWER_FIELDS,
}
# The ops that move bytes, and so change the state (bytes queued, room, position) of their fds.
MOVING_OPS = ("sendfile2", "sendfile64", "splice", "tee", "vmsplice", "write", "sendmsg", "peer_read")


def moved_through(program: Program, op: Op) -> set[str]:
    """The fixtures whose state the op's amount changes. A file read at a given offset keeps
    its position (SF64-OFFSET), so it is not one of them."""
    if op.op not in MOVING_OPS:
        return set()
    given_offset = {"in": dict(op.args).get("offset", dict(op.args).get("off_in"))}
    return {program.fixture(op[f]).name for f in op.spec.fd_fields
            if not (program.fixture(op[f]).kind in CONTENT_KINDS and isinstance(given_offset.get(f), int))}


def room_limited(program: Program, op: Op, op_result: dict) -> bool:
    """The call's amount was set by how much room a buffer had at that instant: a non-blocking
    call that met a full buffer, or a blocking one the op timer cut short."""
    return bool(op_result.get("timed_out")) or met_full_buffer(program, op, op_result)


def outcome_whatever_the_room(program: Program, op: Op, op_result: dict, first_bytes: bool,
                              peer_gone: bool = False) -> dict:
    """What the ABI fixes of a call however much room its buffers had:
    - `blocked`: a non-blocking call never waits (O_NONBLOCK, SPLICE_F_NONBLOCK, MSG_DONTWAIT;
      SF2-NONBLOCK-EAGAIN, cover letter D3);
    - `failure`: an errno other than "no room" (EAGAIN of a non-blocking call, EINTR of a call
      the timer cut short) comes from the arguments and the fds, not the room (cover letter:
      "fails exactly like sendfile64");
    - `moved`, with `first_bytes`: whether the call moved anything, where its fds are in the
      same state in both runs: the first bytes find room in both (how many more fit depends on
      how the pages are charged, which is why only this much is compared).
    With `peer_gone`, EPIPE, ECONNRESET and ECONNREFUSED too: whether the closed peer's answer
    had come back."""
    nonblocking = must_not_block(program, op)
    no_room = {0} | ({errno_module.EAGAIN} if nonblocking else set()) \
        | ({errno_module.EINTR} if op_result.get("timed_out") else set()) \
        | ({errno_module.EPIPE, errno_module.ECONNRESET, errno_module.ECONNREFUSED} if peer_gone else set())
    outcome = {"blocked": slept(op_result) if nonblocking else None,
               "failure": None if op_result.get("errno", 0) in no_room else op_result.get("errno")}
    if first_bytes:
        outcome["moved"] = op_result.get("ret", -1) > 0
    return outcome


def parity(program: Program, result: ProgramResult, twin_result: ProgramResult,
           replaced: dict[int, str]) -> list[Violation]:
    """The first place where the program and its sendfile64 twin part ways in something the ABI
    fixes (the rule above), if any."""
    # What timing has set, fixture by fixture: how much room a socket has (which only the amount
    # of a call that takes only the room depends on: one that waits for room gets it, or the
    # timer cuts it short), and what a pipe or file holds and where its position is (which
    # every amount through it depends on).
    room_timing: set[str] = set()
    contents_timing: set[str] = set()
    uncounted: set[str] = set()  # fixtures an amount not compared went through
    corked: set[str] = set()  # datagram sockets a compared ZC call left corked
    # Sockets whose TCP peer closed, or any peer across the NIC: its FIN, and the RST (or ICMP)
    # that data sent to it earns, come back in their own time, so whether a later call on the
    # socket already sees EPIPE, ECONNRESET or ECONNREFUSED is timing (conformance.model says
    # the same of a single run).
    peer_gone: set[str] = set()

    fixtures = {fixture.name: fixture for fixture in program.fds}

    def timing_set(op: Op) -> None:
        for name in moved_through(program, op):
            (room_timing if fixtures[name].kind in SOCKET_KINDS else contents_timing).add(name)

    def differ(i: int | None, what: str, name: str, ours, theirs) -> list[Violation]:
        cause = max((j for j in replaced if j <= i), default=min(replaced)) if i is not None else max(replaced)
        errno_clause, transfer_clause = PARITY_CLAUSES[replaced[cause]]
        clause = {"errno": errno_clause, "failure": errno_clause, "blocked": "SF2-NONBLOCK-EAGAIN"}.get(
            name, transfer_clause)
        return [Violation("parity", clause, i, f"{what} {ours} where the sendfile64 twin gives {theirs}",
                          PARITY_DIFFERS)]

    for i, op in enumerate(program.ops):
        ours, theirs = result.ops[i], twin_result.ops[i]
        if op.op == "peer_close" and program.fixture(op["fd"]).kind in NIC_KINDS + TCP_KINDS:
            peer_gone.add(program.fixture(op["fd"]).name)
        # The one exception: a datagram a ZC call left corked is held open differently in the
        # two runs (it carries a notification, so a ZC append is EINVAL; ip_append_data sizes
        # the two forms differently near 64 KiB), so nothing on its socket compares after it.
        if {program.fixture(ref).name for ref in op.fd_refs()} & corked:
            continue
        fields, moved = DETERMINED_FIELDS[op.op], moved_through(program, op)
        if errno_module.ENOBUFS in (ours.get("errno"), theirs.get("errno")) and takes_notification(program, op):
            # The zerocopy path's own limits (cover letter: "with SENDFILE_ZC only: ENOBUFS",
            # option memory or RLIMIT_MEMLOCK), which the notifications a run holds use up; the
            # twin holds fewer. Neither this call nor what went through its fds after it compares.
            timing_set(op)
            uncounted |= moved
            continue
        if not fields:
            timing_set(op)  # peer_read took what had arrived: the room it left is timing
            continue
        if amount_unknown(op) and (takes_only_the_room(program, op) or ours.get("timed_out")
                                   or theirs.get("timed_out")):
            # How much it moved is not in its result and was the room it found, so what went
            # through its fds after it, and what a peer got, is not fixed (its errno still is).
            timing_set(op)
            uncounted |= moved
        limited = [room_limited(program, op, r) for r in (ours, theirs)]
        waits_on = contents_timing | (room_timing if takes_only_the_room(program, op) else set())
        gone = bool({program.fixture(ref).name for ref in op.fd_refs()} & peer_gone)
        if any(limited) or moved & waits_on or gone:
            settled = not moved & (contents_timing | room_timing) and not gone
            seen = [outcome_whatever_the_room(program, op, r, first_bytes=settled and not all(limited),
                                              peer_gone=gone) for r in (ours, theirs)]
            timing_set(op)
            uncounted |= moved
        else:
            # A position an earlier amount set is timing too, where the call does not move it.
            timed = {f"{end}_pos_after" for end in ("in", "out")
                     if end in dict(op.args) and program.fixture(op[end]).name in contents_timing}
            seen = [{name: r.get(name) for name in fields if name not in timed} for r in (ours, theirs)]
        # An errno that differs is what a reader must see first: the amounts follow from it.
        for name, value in sorted(seen[0].items(), key=lambda kv: kv[0] not in ("errno", "failure", "blocked")):
            if value != seen[1][name]:
                # Up to the first replaced call the two programs are the same: runs that part
                # ways there did so by timing (a peer's RST that came before one run's call and
                # after the other's), and nothing after them compares.
                if i < min(replaced):
                    return []
                shown = [errno_name(v) if name in ("errno", "failure") and v is not None else v
                         for v in (value, seen[1][name])]
                return differ(i, f"ops[{i}] {op.op}: {name}", name, *shown)
        # A sendfile that moved less than its count sent its last chunk with MSG_MORE: whether
        # the datagram then leaves at once or waits for the next send is not fixed by any ABI
        # (6.12's sendfile64 keeps it corked, UDP over IPv6 has no splice_eof, v2's ZC path sends
        # it), so its boundaries, and what the peer has when the program ends, do not compare.
        # Nor where the amount moved is unknown: it may have been short of the count.
        # The skbs of a zerocopy call carry its notification, so a later zerocopy send on the
        # stream cannot join them and starts a segment of its own, and pure zerocopy skbs are not
        # charged to the send buffer as sendfile64's are: the room the stream has for what
        # follows is not the twin's.
        if replaced.get(i) == PARITY_ZC and program.fixture(op["out"]).kind in STREAM_KINDS \
                and max(ours.get("ret", -1), theirs.get("ret", -1)) > 0:
            room_timing.add(program.fixture(op["out"]).name)
        if replaced.get(i) == PARITY_ZC and program.fixture(op["out"]).kind.startswith("udp") \
                and (asks_for_more(program, op, ours) or sent_with_more(op, ours) or sent_with_more(op, theirs)
                     or amount_unknown(op)):
            corked.add(program.fixture(op["out"]).name)
    # Once drained, a peer has received exactly what the calls sent to it (SF64-COUNT, the data
    # oracle), so its count is fixed where every amount sent to it was compared. Its digest is
    # fixed unless a file it was sent from was written afterwards: pages sent by reference may
    # show the new bytes until their notification, which is what notifications are for.
    sources = {program.fixture(dict(op.args)["in"]).name for op in program.ops if "in" in dict(op.args)}
    written = {program.fixture(dict(op.args).get("out") or op["fd"]).name for op in program.ops
               if op.op in ("sendfile2", "sendfile64", "splice", "tee", "write", "vmsplice", *REWRITE_OPS)}
    fields = ("bytes",) if sources & written else ("bytes", "digest")
    # Datagrams that leave by a device may be dropped on the way (a neighbour queue full while
    # the peer's address resolves): what a UDP peer across the NIC received is not fixed.
    lossy = {f.name for f in program.fds if f.kind in NIC_KINDS and f.kind.startswith("udp")}
    # A peer that closed has what it had read by then, which was what had arrived (timing). A TCP
    # socket the program closed goes on sending what it had queued on its own, and the final read
    # does not wait for a socket the program no longer has: what its peer got is timing too.
    closed = {program.fixture(op["fd"]).name for op in program.ops
              if op.op == "peer_close" or (op.op == "close" and program.fixture(op["fd"]).kind.startswith("tcp"))}
    for sock, peer in result.final.get("peers", {}).items():
        if sock in uncounted | corked | lossy | closed:
            continue
        other = twin_result.final.get("peers", {}).get(sock) or {}
        for name in fields:
            if peer.get(name) != other.get(name):
                return differ(None, f"peer of {sock}: {name}", name, peer.get(name), other.get(name))
    return []


# --- data ----------------------------------------------------------------------------------


class Unknown(Exception):
    """The bytes a call moved cannot be known from the program and its result."""


def source_bytes(program: Program, result: ProgramResult, i: int, in_name: str, offset_field: str,
                 pipes: dict[str, bytearray], dirty: set[str]) -> bytes:
    """The bytes op i read from `in_name` (and took out of it, for a pipe)."""
    ret, op_result = result.ops[i]["ret"], result.ops[i]
    fixture = program.fixture(in_name)
    if fixture.kind == "pipe":
        if in_name not in pipes:
            raise Unknown(in_name)
        data = bytes(pipes[in_name][:ret])
        del pipes[in_name][:ret]
        return data
    if fixture.kind == "devzero":
        return bytes(ret)
    if fixture.kind not in CONTENT_KINDS or fixture.name in dirty:
        raise Unknown(in_name)
    start = op_result.get(f"{offset_field}_before") if isinstance(program.ops[i][offset_field], int) \
        else op_result.get("in_pos_before")
    if start is None:
        raise Unknown(in_name)
    return pattern(fixture.seed, start, min(ret, max(fixture.size - start, 0)))


def sent_streams(program: Program, result: ProgramResult,
                 abi: Abi | None = None) -> tuple[dict[str, bytes | None], set[str]]:
    """What each stream socket's peer should have received (None: cannot be known), and the
    streams whose source file was rewritten only after the notification of every call that sent
    its bytes there (with `abi`, which ids calls took is known), so they must have the old bytes."""
    streams: dict[str, bytearray | None] = {f.name: bytearray() for f in program.fds
                                            if f.kind in STREAM_KINDS}
    pipes: dict[str, bytearray] = {f"{f.name}.r": bytearray() for f in program.fds if f.kind == "pipe"}
    writers = {f"{f.name}.w": f"{f.name}.r" for f in program.fds if f.kind == "pipe"}
    dirty: set[str] = set()  # files a call wrote to: their contents are no longer the pattern
    # sendfile and splice move a file's page-cache pages by reference (MSG_SPLICE_PAGES, pipe
    # buffers): until the peer reads them, a rewrite of the file shows through. So the bytes a
    # stream or pipe took from a file the program rewrites later are the old ones or the new,
    # unless every call that sent them was notified before the rewrite: that is the ABI's
    # promise (cover letter: the notification says "when the file data may be overwritten").
    referenced_by: dict[str, set[str]] = {}
    carried: dict[tuple[str, str], list[int]] = {}  # (file, stream) -> the ops that sent its pages
    promised: set[str] = set()

    def deliver(out: str, data: bytes) -> None:
        if out in writers and writers[out] in pipes:
            pipes[writers[out]] += data
        elif streams.get(out) is not None:
            streams[out] += data

    def forget(name: str) -> None:
        pipes.pop(writers.get(name, name), None)
        if name in streams:
            streams[name] = None

    def keeps_promise(source: str, reader: str, rewrite: int) -> bool:
        sends = carried.get((source, reader), [])
        return abi is not None and reader in streams and bool(sends) and \
            set(sends) <= notified_before(program, result, abi, reader, rewrite)

    for i, op in enumerate(program.ops):
        ret = result.ops[i].get("ret", -1)
        if op.op in ("peer_close", "close"):
            forget(op["fd"])
        written = op["out"] if "out" in op.spec.fd_fields else op["fd"] if "fd" in op.spec.fd_fields else None
        truncated = op.op == "truncate" and result.ops[i].get("errno", -1) == 0
        if (ret > 0 or truncated) and written in program.fd_index and \
                program.fixture(written).kind in CONTENT_KINDS:
            source = program.fixture(written).name
            dirty.add(source)
            for reader in referenced_by.pop(source, set()):
                if keeps_promise(source, reader, i):
                    promised.add(reader)
                else:
                    forget(reader)
        if any(op[f] == "readonly" for f in ("offset", "off_in", "off_out") if f in dict(op.args)):
            forget(op["out"])  # data moved, then storing the offset back failed: EFAULT, count unknown
            continue
        if ret <= 0 or op.op in ("peer_read", "drain", "setsockopt_zerocopy", "peer_close", "close",
                                 "peer_hold", "peer_release", *REWRITE_OPS):
            continue
        try:
            if op.op in ("sendfile2", "sendfile64", "splice"):
                offset_field = "off_in" if op.op == "splice" else "offset"
                deliver(op["out"], source_bytes(program, result, i, op["in"], offset_field, pipes, dirty))
                if program.fixture(op["in"]).kind in CONTENT_KINDS:
                    referenced_by.setdefault(program.fixture(op["in"]).name, set()).add(op["out"])
                    carried.setdefault((program.fixture(op["in"]).name, op["out"]), []).append(i)
                elif program.fixture(op["in"]).kind == "pipe":  # pages a pipe held go on by reference
                    writer = op["in"][:-1] + "w"
                    for source, readers in referenced_by.items():
                        if writer in readers:
                            readers.add(op["out"])
                            carried.setdefault((source, op["out"]), []).append(i)
            elif op.op in ("sendmsg", "write", "vmsplice"):
                deliver(op["fd"], pattern(0, 0, ret))
            else:  # tee copies a pipe's bytes without consuming them: rare, not modelled
                forget(op["out"])
        except Unknown:
            forget(op["out"] if "out" in op.spec.fd_fields else op["fd"])
    return ({name: bytes(data) if data is not None else None for name, data in streams.items()},
            {name for name in promised if streams.get(name) is not None})


def data(program: Program, result: ProgramResult, abi: Abi | None = None) -> list[Violation]:
    """Each stream socket's peer received exactly the bytes the calls report sending: count and
    digest once the final read has drained it (SF64-COUNT, "the peer receives exactly them").
    Where the source was rewritten after the notifications of the calls that sent it, a peer
    that got other bytes saw pages the notification had said were free (ZC-OVERWRITE-SAFE)."""
    out = []
    if len({op.thread for op in program.ops if op.op in MOVING_OPS + REWRITE_OPS + ("close", "peer_close")}) > 1:
        return out  # the bytes of two threads reach a peer in an order no one chose
    if fault_met(program, result):
        return out
    streams, promised = sent_streams(program, result, abi)
    for sock, expected in streams.items():
        peer = result.final.get("peers", {}).get(sock)
        if expected is None or peer is None or result.fixture_error(sock) is not None or corked(program, result, sock):
            continue
        if peer.get("bytes") != len(expected) or peer.get("digest") != digest(expected):
            rule, why = (ZC_OVERWRITE_SAFE, ": the file was rewritten only after every call that sent it "
                         "was notified") if sock in promised else (PEER_DATA, "")
            out.append(Violation("data", stream_clause(program, sock, sock in promised), None,
                                 f"peer of {sock} received {peer.get('bytes')} bytes (digest {peer.get('digest')}), "
                                 f"the calls sent {len(expected)} (digest {digest(expected)}){why}", rule))
    return out


# --- errno ---------------------------------------------------------------------------------


def errno_names(accepted: frozenset[int]) -> str:
    """`EINVAL`, `OK|EAGAIN`: what the model accepts of a call, stable for a finding's detail."""
    return "|".join(sorted(errno_name(e) for e in accepted))


def met_full_buffer(program: Program, op: Op, op_result: dict) -> bool:
    """A call that takes only the room it finds and met a full buffer: EAGAIN, or a send that
    took less than given."""
    if not takes_only_the_room(program, op):
        return False
    short_send = op.op in ("sendmsg", "splice") and 0 <= op_result.get("ret", -1) < op["len"] % (1 << 64)  # len is a size_t
    return op_result.get("errno") == errno_module.EAGAIN or short_send or stopped_at_full_buffer(program, op, op_result)


def stopped_at_full_buffer(program: Program, op: Op, op_result: dict) -> bool:
    """A non-blocking sendfile that sent some bytes but fewer than its file had to give."""
    if op.op not in ("sendfile2", "sendfile64") or not takes_only_the_room(program, op):
        return False
    start = op_result.get("offset_before") if isinstance(op["offset"], int) else op_result.get("in_pos_before")
    source = program.fixture(op["in"])
    if start is None or source.kind not in CONTENT_KINDS:
        return False
    available = min(op["count"], max(source.size - start, 0))
    return 0 < op_result.get("ret", -1) < available


def takes_notification(program: Program, op: Op) -> bool:
    """The call allocates a zerocopy notification and charges RLIMIT_MEMLOCK: sendmsg with
    MSG_ZEROCOPY, sendfile2 with any flag (a twin's plain sendfile2 stands for a ZC one), splice
    with a bit beyond the four of 6.12 (SPLICE_F_ZC; any other such bit is EINVAL at once)."""
    flags = dict(op.args).get("flags", 0)
    return op.op == "sendfile2" or (op.op == "sendmsg" and bool(flags & MSG_ZEROCOPY)) \
        or (op.op == "splice" and bool(flags & ~sum(SPLICE_F_BASE.values())))


def slept(op_result: dict) -> bool:
    """The call waited until the executor's timer interrupted it. The timer fires on a slow call
    too (under TCG a non-blocking send of megabytes through loopback runs past a short timeout),
    and a call that ran to its end returns what it did: only EINTR says the signal ended a wait."""
    return bool(op_result.get("timed_out")) and op_result.get("errno") == errno_module.EINTR


def takes_only_the_room(program: Program, op: Op) -> bool:
    """The call moves what room its output has at that instant and never waits for more, though
    it may wait on its input: a call that may not block at all, or a splice into a non-blocking
    socket from a blocking pipe (6.12 splice_to_socket sends with MSG_DONTWAIT where the socket is
    O_NONBLOCK, whatever the pipe) or into a pipe under SPLICE_F_NONBLOCK (given, or taken from
    a non-blocking pipe it reads: do_splice)."""
    if must_not_block(program, op):
        return True
    if op.op != "splice":
        return False
    source, out = program.fixture(op["in"]), program.fixture(op["out"])
    return out.nonblock or (out.kind == "pipe" and (bool(op["flags"] & SPLICE_F_BASE["SPLICE_F_NONBLOCK"])
                                                     or (source.kind == "pipe" and source.nonblock)))


def must_not_block(program: Program, op: Op) -> bool:
    """True when every fd the call could wait on is non-blocking (files never make it wait)."""
    def nonblock(name: str) -> bool:
        fixture = program.fixture(name)
        return fixture.nonblock or fixture.kind in CONTENT_KINDS

    if op.op in ("sendfile2", "sendfile64"):
        return program.fixture(op["in"]).kind in CONTENT_KINDS and program.fixture(op["out"]).nonblock
    if op.op == "splice":
        return (nonblock(op["in"]) or bool(op["flags"] & SPLICE_F_BASE["SPLICE_F_NONBLOCK"])) and \
            program.fixture(op["out"]).nonblock
    if op.op == "sendmsg":
        return program.fixture(op["fd"]).nonblock or bool(op["flags"] & MSG_DONTWAIT)
    return False


def errno_violations(program: Program, result: ProgramResult, kernel_info: dict,
                     reached: set[str] | None = None) -> list[Violation]:
    """Each call's errno against conformance.model; a non-blocking call must never block.

    The model answers only where the kernel's checks, in their order (6.12 source and the cover
    letter's list), fix the errno; where it depends on state the model does not follow (how
    full a socket is) it gives None and nothing is compared. Never blocking: O_NONBLOCK, and
    SF2-NONBLOCK-EAGAIN. Adds the clause of every call the model predicts to `reached`.
    """
    out = []
    for i, op in enumerate(program.ops):
        op_result = result.ops[i]
        if op_result.get("fixture_error") or op_result.get("skipped"):
            continue
        if op_result.get("timed_out"):
            if must_not_block(program, op) and slept(op_result):
                out.append(Violation("errno", never_blocks_clause(program, i, kernel_info), i,
                                     f"ops[{i}] {op.op} blocked with every fd it waits on non-blocking, "
                                     "until the executor interrupted it", f"{op.op} {NONBLOCK_NEVER_BLOCKS}"))
            continue
        if result.fault_injected(i) or shares_fixtures_across_threads(program, i):
            continue  # the fault chose its errno; the other thread, the state it found
        accepted = expected_errno(program, i, kernel_info)
        if accepted is None:
            continue
        clause = call_clause(program, i, accepted, kernel_info)
        if reached is not None and clause:
            reached.add(clause)
        if op_result["errno"] in accepted:
            continue
        got = errno_name(op_result["errno"])
        out.append(Violation("errno", clause, i, f"ops[{i}] {op.op} gave {got} (ret {op_result['ret']}), "
                             f"expected {errno_names(accepted)}", f"{op.op} expects {errno_names(accepted)}"))
    return out


# --- health --------------------------------------------------------------------------------


def health(crash: KernelCrash, kernel_info: dict) -> list[Violation]:
    """A crash, hang or kernel report is a finding of its own, named by its title, under the
    clause of the call it came under."""
    first = next((line for line in crash.report.splitlines() if line.strip()), crash.title)
    return [Violation("health", crash_clause(crash.program, kernel_info), None, first.strip(), crash.title)]


# --- all together --------------------------------------------------------------------------


@dataclass
class Verdict:
    """What judging one program found, with the results it was judged on."""

    violations: list[Violation] = field(default_factory=list)
    result: ProgramResult | None = None
    twin_result: ProgramResult | None = None
    crash: KernelCrash | None = None
    reached: set[str] = field(default_factory=set)  # clause ids some check applied to


# How much longer calls may run when parity is judged again after the timer cut one short.
PATIENT_TIMEOUT_FACTOR = 10


def judge(target: Target, program: Program, abi: Abi, kernel_info: dict) -> Verdict:
    """Run `program` (and its sendfile64 twin) on `target` and apply every oracle."""
    verdict = Verdict()
    result = verdict.result = run_into(verdict, target, program, kernel_info)
    if result is None:
        return verdict
    verdict.violations += errno_violations(program, result, kernel_info, verdict.reached)
    verdict.violations += accounting(program, result, abi)
    verdict.violations += data(program, result, abi)
    verdict.violations += early_notifications(program, result, abi)
    verdict.reached |= {accounting_clause(program, f.name, ZC_NOTIFIES[call.op], call.op_index)
                        for f in program.fds if f.kind in ZC_SOCKET_KINDS
                        for call in zerocopy_calls(program, result, abi, f.name) if call.sent}
    # The promise was put to the test: a record read while bytes were unacknowledged, or a
    # rewrite after the notifications of every call that sent the file.
    if any(r.get("outq", 0) > 0 and r.get("notifications") for r in result.ops):
        verdict.reached.add("ZC-NO-EARLY-NOTIFY")
    if sent_streams(program, result, abi)[1]:
        verdict.reached.add("ZC-OVERWRITE-SAFE")
    twin = parity_twin(program, abi)
    if twin is None:
        return verdict
    twin_program, replaced = twin
    twin_result = verdict.twin_result = run_into(verdict, target, twin_program, kernel_info)
    if twin_result is None:
        return verdict
    verdict.reached |= {PARITY_CLAUSES[kind][1] for kind in replaced.values()}
    found = parity(program, result, twin_result, replaced)
    if found and waited_for_the_timer(program, result, twin_program, twin_result):
        # The timer cut a blocking call short, so whether it got anywhere may be timing (a
        # slower path under TCG): judge parity again on both, given time to finish.
        patient, patient_twin = (replace(p, timeout_ms=min(p.timeout_ms * PATIENT_TIMEOUT_FACTOR, 600_000))
                                 for p in (program, twin_program))
        ours, theirs = run_into(verdict, target, patient, kernel_info), run_into(verdict, target, patient_twin, kernel_info)
        if ours is None or theirs is None:
            return verdict
        found = parity(patient, ours, theirs, replaced)
    verdict.violations += found
    return verdict


def waited_for_the_timer(program: Program, result: ProgramResult, twin_program: Program,
                         twin_result: ProgramResult) -> bool:
    """Some call that may block ran into the op timer. A non-blocking one that did is wrong
    whatever more time would give it (the errno oracle says so), so it asks for no rerun."""
    return any(op_result.get("timed_out") and not must_not_block(p, op)
               for p, r in ((program, result), (twin_program, twin_result))
               for op, op_result in zip(p.ops, r.ops))


def run_into(verdict: Verdict, target: Target, program: Program, kernel_info: dict) -> ProgramResult | None:
    """Run a program for `verdict`: a crash becomes its health findings; after a WARNING the
    kernel went on, so the result still counts. None when there is no result to judge."""
    try:
        return target.run(program)
    except KernelCrash as crash:
        verdict.crash = verdict.crash or crash
        verdict.violations += [v for v in health(crash, kernel_info) if v not in verdict.violations]
        return crash.result
