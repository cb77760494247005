"""Programs, their results, and the line format spoken with the guest executor (vm/PROGRAM.md).

The fixture kinds and operations are data (`FD_KINDS`, `OPS`) so that conformance clauses and
fuzz strategies enumerate them instead of copying lists. `Program`, `Fixture` and `Op` are frozen
and hashable: Hypothesis generates, shrinks and deduplicates them.
"""

from __future__ import annotations

import errno as errno_module
import functools
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from zcfuzz.vm import schema
from zcfuzz.vm.errors import UserError

# --- fixture kinds -------------------------------------------------------------------------


@dataclass(frozen=True)
class FdKind:
    """One fixture kind: which fd names it gives the program and which options mean something."""

    kind: str
    summary: str
    ends: tuple[str, ...] = ("",)  # pipe: ("r", "w") -> NAME.r, NAME.w
    socket: bool = False
    peer: bool = False  # the executor holds a peer that receives what the program sends
    contents: bool = False  # `size` and `seed` fill it with the file pattern
    nic: bool = False  # the peer is across the guest's NIC path, in a namespace of its own


FD_KINDS: dict[str, FdKind] = {
    k.kind: k
    for k in (
        FdKind("file", "regular tmpfs file, O_RDWR", contents=True),
        FdKind("file_ro", "regular tmpfs file, O_RDONLY", contents=True),
        FdKind("file_wo", "regular tmpfs file, O_WRONLY", contents=True),
        FdKind("file_append", "regular tmpfs file, O_WRONLY|O_APPEND", contents=True),
        FdKind("pipe", "pipe: NAME.r read end, NAME.w write end", ends=("r", "w"), peer=True),
        FdKind("tcp4", "connected loopback TCP/IPv4 client", socket=True, peer=True),
        FdKind("tcp6", "connected loopback TCP/IPv6 client", socket=True, peer=True),
        FdKind("udp4", "UDP/IPv4 connected to a loopback receiver", socket=True, peer=True),
        FdKind("udp6", "UDP/IPv6 connected to a loopback receiver", socket=True, peer=True),
        FdKind("tcp4_nic", "TCP/IPv4 client connected across the NIC path", socket=True, peer=True, nic=True),
        FdKind("tcp6_nic", "TCP/IPv6 client connected across the NIC path", socket=True, peer=True, nic=True),
        FdKind("udp4_nic", "UDP/IPv4 connected to a receiver across the NIC path", socket=True, peer=True,
               nic=True),
        FdKind("udp6_nic", "UDP/IPv6 connected to a receiver across the NIC path", socket=True, peer=True,
               nic=True),
        FdKind("udp_dummy", "UDP/IPv4 bound to dummy0, sends freed undelivered", socket=True),
        FdKind("unix_stream", "AF_UNIX stream socketpair end", socket=True, peer=True),
        FdKind("unix_dgram", "AF_UNIX datagram socketpair end", socket=True, peer=True),
        FdKind("dir", "the executor's tmpfs work directory, O_RDONLY|O_DIRECTORY"),
        FdKind("opath", "regular tmpfs file opened O_PATH", contents=True),
        FdKind("eventfd", "eventfd(0, 0)"),
        FdKind("timerfd", "timerfd_create(CLOCK_MONOTONIC, 0)"),
        FdKind("memfd", "memfd_create, O_RDWR", contents=True),
        FdKind("pidfd", "pidfd_open of the executor"),
        FdKind("epoll", "epoll_create1(0)"),
        FdKind("devzero", "/dev/zero, O_RDWR"),
        FdKind("devnull", "/dev/null, O_RDWR"),
        FdKind("closed", "a number that was a valid fd and has been closed"),
        FdKind("invalid", "-1"),
    )
}
SOCKET_KINDS = tuple(k for k, spec in FD_KINDS.items() if spec.socket)
PEER_KINDS = tuple(k for k, spec in FD_KINDS.items() if spec.peer)
CONTENT_KINDS = tuple(k for k, spec in FD_KINDS.items() if spec.contents)
NIC_KINDS = tuple(k for k, spec in FD_KINDS.items() if spec.nic)

# --- operations ----------------------------------------------------------------------------

FD = "fd"  # the name of a fixture end
INT = "int"  # passed as the C type of the argument: -1 means all bits set
OFFSET = "offset"  # null, an integer (pointer to a loff_t), or one of BAD_POINTERS
CRASH = "crash"  # an LKDTM crash type
BAD_POINTERS = ("unmapped", "readonly", "protnone")
REQUIRED = object()


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    default: Any = REQUIRED


@dataclass(frozen=True)
class OpSpec:
    """One operation: its fields in wire order (the executor reads them by position)."""

    op: str
    fields: tuple[FieldSpec, ...]
    summary: str
    # One system call of the program's: a fault injected while it runs is that call's. Ops that
    # loop (peer_read, drain) or open files (lkdtm) take no `fail_nth`.
    one_call: bool = True

    @property
    def fd_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.type == FD)


def _spec(op: str, summary: str, *fields: tuple, one_call: bool = True) -> OpSpec:
    return OpSpec(op, tuple(FieldSpec(*f) for f in fields), summary, one_call)


OPS: dict[str, OpSpec] = {
    s.op: s
    for s in (
        _spec("sendfile2", "syscall(sysno.sendfile2, out, in, offset, count, flags)",
              ("out", FD), ("in", FD), ("offset", OFFSET), ("count", INT), ("flags", INT)),
        _spec("sendfile64", "sendfile(out, in, offset, count)",
              ("out", FD), ("in", FD), ("offset", OFFSET), ("count", INT)),
        _spec("splice", "splice(in, off_in, out, off_out, len, flags)",
              ("in", FD), ("off_in", OFFSET), ("out", FD), ("off_out", OFFSET), ("len", INT),
              ("flags", INT)),
        _spec("tee", "tee(in, out, len, flags)", ("in", FD), ("out", FD), ("len", INT), ("flags", INT)),
        _spec("vmsplice", "vmsplice(fd, one iovec of len pattern bytes, flags)",
              ("fd", FD), ("len", INT), ("flags", INT)),
        _spec("sendmsg", "sendmsg(fd, len pattern bytes, flags)", ("fd", FD), ("len", INT), ("flags", INT)),
        _spec("write", "write(fd, len pattern bytes)", ("fd", FD), ("len", INT)),
        _spec("peer_read", "the peer of fd reads up to max bytes, non-blocking", ("fd", FD), ("max", INT),
              one_call=False),
        _spec("peer_close", "the peer of fd closes", ("fd", FD)),
        _spec("drain", "read fd's error queue until empty, polling wait_ms for POLLERR first",
              ("fd", FD), ("wait_ms", INT, 0), one_call=False),
        _spec("setsockopt_zerocopy", "setsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, value)",
              ("fd", FD), ("value", INT)),
        _spec("close", "close(fd)", ("fd", FD)),
        _spec("lkdtm", "write crash to /sys/kernel/debug/provoke-crash/DIRECT", ("crash", CRASH),
              one_call=False),
        _spec("peer_hold", "the peer of a *_nic fd stops taking frames: its link goes down", ("fd", FD),
              one_call=False),
        _spec("peer_release", "the held peer's link comes up and a TCP peer acknowledges at once",
              ("fd", FD), one_call=False),
        _spec("pwrite", "pwrite(2) of the pattern with seed over [offset, offset+len) of fd",
              ("fd", FD), ("offset", INT), ("len", INT), ("seed", INT), one_call=False),
        _spec("truncate", "ftruncate(fd, length)", ("fd", FD), ("length", INT)),
        _spec("mmap_write", "store the pattern with seed over [offset, offset+len) through a shared mapping",
              ("fd", FD), ("offset", INT), ("len", INT), ("seed", INT), one_call=False),
    )
}

FAULTABLE_OPS = tuple(name for name, spec in OPS.items() if spec.one_call)
THREADS = (0, 1)  # thread 0 runs in the executor's own thread, thread 1 in a second one
MAX_FAIL_NTH = (1 << 31) - 1
SYSNO_NAMES = ("sendfile2",)
DEFAULT_TIMEOUT_MS = 2000
DEFAULT_SETTLE_MS = 200
DEFAULT_MEMLOCK = 8 << 20
DEFAULT_FILE_SIZE = 4096
MAX_FILE_SIZE = 64 << 20
# The executor's tables (zcexec.c MAX_FIXTURES, MAX_OPS): a larger program is refused here, in
# one line, rather than by the executor.
MAX_FIXTURES = 64
MAX_OPS = 4096
PATTERN_BUFFER = 4 << 20  # bytes of pattern the executor has for write/sendmsg/vmsplice

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,31}\Z")
_CRASH = re.compile(r"[A-Z][A-Z0-9_]{0,39}\Z")
_INT_RANGE = {INT: (-(1 << 63), (1 << 64) - 1), OFFSET: (-(1 << 63), (1 << 63) - 1)}

# --- file pattern and digest ---------------------------------------------------------------


def pattern_byte(i: int, seed: int) -> int:
    return ((i ^ (i >> 8) ^ (i >> 16)) * 31 + seed) & 0xFF


@functools.lru_cache(maxsize=16)
def _pattern_blocks(seed: int) -> tuple[bytes, ...]:
    """The 256 aligned 256-byte blocks a pattern is made of: in block `i >> 8`, byte `i` is
    `((i & 0xff) ^ c) * 31 + seed` with `c = ((i >> 8) ^ (i >> 16)) & 0xff`."""
    return tuple(bytes(((low ^ c) * 31 + seed) & 0xFF for low in range(256)) for c in range(256))


def pattern(seed: int, start: int, length: int) -> bytes:
    """Bytes [start, start+length) of a file filled with seed `seed`: megabytes of expected
    stream per program, so built from whole blocks rather than byte by byte."""
    if length <= 0:
        return b""
    blocks = _pattern_blocks(seed)
    first, last = start >> 8, (start + length - 1) >> 8
    data = b"".join(blocks[(h ^ (h >> 8)) & 0xFF] for h in range(first, last + 1))
    return data[start & 0xFF: (start & 0xFF) + length]


def digest(data: bytes) -> str:
    """The peer digest of vm/PROGRAM.md: CRC-32 (zlib's) as 8 lower-case hex digits."""
    return f"{zlib.crc32(data):08x}"


# --- programs ------------------------------------------------------------------------------

# A program file's shape and JSON types (vm/PROGRAM.md, "Program"), checked before anything else.
# Names, kinds, ranges and each op's fields (they depend on the op: OPS) are checked by
# Program.from_json itself, in messages that say which op a field belongs to.
PROGRAM_SCHEMA: dict = {
    "$schema": schema.DIALECT,
    "title": "zcfuzz program",
    "type": "object",
    "required": ["fds", "ops"],
    "additionalProperties": False,
    "properties": {
        "sysno": {"type": ["object", "null"], "additionalProperties": {"type": ["integer", "null"]}},
        **schema.typed(timeout_ms="integer", settle_ms="integer", memlock="integer", cover="boolean",
                       optmem_max="integer"),
        "fds": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "kind"],
            "additionalProperties": False,
            "properties": schema.typed(name="string", kind="string", nonblock="boolean", zerocopy="boolean",
                                       sndbuf="integer", size="integer", seed="integer"),
        }},
        "ops": {"type": "array", "items": {
            "type": "object",
            "required": ["op"],
            "properties": {"op": {"type": "string"}},
        }},
    },
}


def _fail(where: str, problem: str) -> UserError:
    return UserError(f"program: {where}: {problem}")


def _check_keys(where: str, obj: Any, allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
    if not isinstance(obj, dict):
        raise _fail(where, f"expected an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise _fail(where, f"unknown field {unknown[0]!r} (known: {', '.join(allowed)})")
    for key in required:
        if key not in obj:
            raise _fail(where, f"missing field {key!r}")


def _int(where: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"expected an integer, got {json.dumps(value)}")
    if not lo <= value <= hi:
        raise _fail(where, f"{value} is outside [{lo}, {hi}]")
    return value


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, f"expected true or false, got {json.dumps(value)}")
    return value


@dataclass(frozen=True)
class Fixture:
    name: str
    kind: str
    nonblock: bool = False
    zerocopy: bool = False
    sndbuf: int = 0
    size: int = DEFAULT_FILE_SIZE
    seed: int = 0

    def __post_init__(self) -> None:
        where = f"fd {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise _fail(f"fd {self.name!r}", "name must be a letter or _ then up to 31 of [A-Za-z0-9_-]")
        if self.kind not in FD_KINDS:
            raise _fail(where, f"unknown kind {self.kind!r} (known: {', '.join(FD_KINDS)})")
        _bool(f"{where} nonblock", self.nonblock)
        _bool(f"{where} zerocopy", self.zerocopy)
        _int(f"{where} sndbuf", self.sndbuf, 0, (1 << 31) - 1)
        _int(f"{where} size", self.size, 0, MAX_FILE_SIZE)
        _int(f"{where} seed", self.seed, 0, 255)

    @property
    def spec(self) -> FdKind:
        return FD_KINDS[self.kind]

    @property
    def fd_names(self) -> tuple[str, ...]:
        """The names ops use for this fixture's fds."""
        return tuple(f"{self.name}.{end}" if end else self.name for end in self.spec.ends)

    def to_json(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        for f in ("nonblock", "zerocopy", "sndbuf", "size", "seed"):
            value = getattr(self, f)
            if value != Fixture.__dataclass_fields__[f].default:
                out[f] = value
        return out

    @classmethod
    def from_json(cls, obj: Any, index: int) -> "Fixture":
        where = f"fds[{index}]"
        _check_keys(where, obj, ("name", "kind", "nonblock", "zerocopy", "sndbuf", "size", "seed"),
                    ("name", "kind"))
        return cls(**obj)


@dataclass(frozen=True)
class Op:
    """One operation: its name and its fields in OPS order, defaults filled in, and how it runs:
    `fail_nth` N makes the N-th fault site the call passes fail (0: none), `thread` is the
    executor thread that runs it (vm/PROGRAM.md, "Fault injection" and "Concurrent calls")."""

    op: str
    args: tuple[tuple[str, Any], ...]
    fail_nth: int = 0
    thread: int = 0

    def __post_init__(self) -> None:
        _check_how_it_runs(self.op, OPS[self.op], self.fail_nth, self.thread)

    @classmethod
    def make(cls, op: str, **fields: Any) -> "Op":
        return cls.from_json({"op": op, **fields}, 0)

    def __getitem__(self, name: str) -> Any:
        for key, value in self.args:
            if key == name:
                return value
        raise KeyError(name)

    @property
    def spec(self) -> OpSpec:
        return OPS[self.op]

    def fd_refs(self) -> Iterator[str]:
        for f in self.spec.fields:
            if f.type == FD:
                yield self[f.name]

    def to_json(self) -> dict:
        out = {"op": self.op, **dict(self.args)}
        for name in ("fail_nth", "thread"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_json(cls, obj: Any, index: int) -> "Op":
        where = f"ops[{index}]"
        if not isinstance(obj, dict) or not isinstance(obj.get("op"), str):
            raise _fail(where, 'expected an object with a string "op"')
        spec = OPS.get(obj["op"])
        if spec is None:
            raise _fail(where, f"unknown op {obj['op']!r} (known: {', '.join(OPS)})")
        names = tuple(f.name for f in spec.fields)
        _check_keys(f"{where} {spec.op}", obj, ("op",) + names + ("fail_nth", "thread"),
                    tuple(f.name for f in spec.fields if f.default is REQUIRED))
        args = []
        for f in spec.fields:
            value = obj.get(f.name, f.default)
            args.append((f.name, _check_field(f"{where} {spec.op}.{f.name}", f.type, value)))
        fail_nth, thread = obj.get("fail_nth", 0), obj.get("thread", 0)
        _check_how_it_runs(f"{where} {spec.op}", spec, fail_nth, thread, least_fail_nth=int("fail_nth" in obj))
        return cls(spec.op, tuple(args), fail_nth, thread)


def _check_how_it_runs(where: str, spec: OpSpec, fail_nth: Any, thread: Any, least_fail_nth: int = 0) -> None:
    """`fail_nth` 0 means no fault: Op takes it, a program file spells it by leaving it out."""
    if isinstance(fail_nth, bool) or not isinstance(fail_nth, int) \
            or not least_fail_nth <= fail_nth <= MAX_FAIL_NTH:
        raise _fail(f"{where}.fail_nth", f"expected a positive integer (the n-th fault site of the "
                                         f"call fails), got {json.dumps(fail_nth)}")
    if fail_nth and not spec.one_call:
        raise _fail(f"{where}.fail_nth", f"{spec.op} is not one system call; fail_nth applies to "
                                         f"{', '.join(FAULTABLE_OPS)}")
    if isinstance(thread, bool) or thread not in THREADS:
        raise _fail(f"{where}.thread", f"expected 0 or 1, got {json.dumps(thread)}")


def _check_field(where: str, type_: str, value: Any) -> Any:
    if type_ == FD:
        if not isinstance(value, str):
            raise _fail(where, f"expected an fd name, got {json.dumps(value)}")
        return value
    if type_ == OFFSET and (value is None or value in BAD_POINTERS):
        return value
    if type_ == OFFSET and isinstance(value, str):
        raise _fail(where, f"expected null, an integer or one of {', '.join(BAD_POINTERS)}, got {value!r}")
    if type_ == CRASH:
        if not isinstance(value, str) or not _CRASH.match(value):
            raise _fail(where, f"expected an LKDTM crash type such as \"WARNING\", got {json.dumps(value)}")
        return value
    return _int(where, value, *_INT_RANGE[type_])


@dataclass(frozen=True)
class Program:
    fds: tuple[Fixture, ...]
    ops: tuple[Op, ...]
    sysno: tuple[tuple[str, int], ...] = ()
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    settle_ms: int = DEFAULT_SETTLE_MS
    memlock: int = DEFAULT_MEMLOCK
    cover: bool = False  # the executor returns the KCOV PCs the program hit (vm/PROGRAM.md, "Coverage")
    optmem_max: int = 0  # net.core.optmem_max while the program runs, 0: as booted
    fd_index: Mapping[str, tuple[int, int]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(self.fds) > MAX_FIXTURES or len(self.ops) > MAX_OPS:
            raise _fail("top level", f"at most {MAX_FIXTURES} fds and {MAX_OPS} ops, got "
                                     f"{len(self.fds)} and {len(self.ops)}: split the program")
        _int("timeout_ms", self.timeout_ms, 1, 600_000)
        _int("settle_ms", self.settle_ms, 0, 60_000)
        _int("memlock", self.memlock, 0, (1 << 63) - 1)
        _bool("cover", self.cover)
        _int("optmem_max", self.optmem_max, 0, (1 << 31) - 1)
        for name, number in self.sysno:
            if name not in SYSNO_NAMES:
                raise _fail("sysno", f"unknown syscall {name!r} (known: {', '.join(SYSNO_NAMES)})")
            _int(f"sysno.{name}", number, 0, 4095)
        index: dict[str, tuple[int, int]] = {}
        for i, fixture in enumerate(self.fds):
            if any(n in index for n in fixture.fd_names) or fixture.name in index:
                raise _fail(f"fds[{i}]", f"duplicate name {fixture.name!r}")
            for end, name in enumerate(fixture.fd_names):
                index[name] = (i, end)
        for i, op in enumerate(self.ops):
            for ref in op.fd_refs():
                if ref not in index:
                    if any(f.name == ref for f in self.fds):
                        hint = f": {ref!r} is a pipe, use {ref + '.r'!r} or {ref + '.w'!r}"
                    else:
                        hint = f" (known: {', '.join(index) or 'none'})"
                    raise _fail(f"ops[{i}] {op.op}", f"no fd named {ref!r}{hint}")
        object.__setattr__(self, "fd_index", index)

    def sysno_of(self, name: str) -> int | None:
        return dict(self.sysno).get(name)

    def fixture(self, name: str) -> Fixture:
        """The fixture an fd name (`sock`, `p.w`) belongs to."""
        return self.fds[self.fd_index[name][0]]

    def to_json(self) -> dict:
        out: dict[str, Any] = {}
        if self.sysno:
            out["sysno"] = dict(self.sysno)
        for name, default in (("timeout_ms", DEFAULT_TIMEOUT_MS), ("settle_ms", DEFAULT_SETTLE_MS),
                              ("memlock", DEFAULT_MEMLOCK)):
            if getattr(self, name) != default:
                out[name] = getattr(self, name)
        if self.cover:
            out["cover"] = True
        if self.optmem_max:
            out["optmem_max"] = self.optmem_max
        out["fds"] = [f.to_json() for f in self.fds]
        out["ops"] = [op.to_json() for op in self.ops]
        return out

    @classmethod
    def from_json(cls, obj: Any) -> "Program":
        schema.check(obj, PROGRAM_SCHEMA, "program")
        _check_keys("top level", obj, ("sysno", "timeout_ms", "settle_ms", "memlock", "cover", "optmem_max",
                                       "fds", "ops"), ("fds", "ops"))
        sysno = obj.get("sysno") or {}
        if not isinstance(sysno, dict):
            raise _fail("sysno", 'expected an object such as {"sendfile2": 467}')
        for key in ("fds", "ops"):
            if not isinstance(obj[key], list):
                raise _fail(key, "expected a list")
        return cls(
            fds=tuple(Fixture.from_json(f, i) for i, f in enumerate(obj["fds"])),
            ops=tuple(Op.from_json(o, i) for i, o in enumerate(obj["ops"])),
            sysno=tuple(sorted((k, v) for k, v in sysno.items() if v is not None)),
            **{k: obj[k] for k in ("timeout_ms", "settle_ms", "memlock", "cover", "optmem_max") if k in obj},
        )

    @classmethod
    def load(cls, path: str) -> "Program":
        """Read a program file, turning any problem into one line."""
        doc = schema.read(path, "program")
        with schema.within(path):
            return cls.from_json(doc)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=False)

    # --- wire format (vm/PROGRAM.md, "Wire format") ---

    def encode(self) -> str:
        """The one-line request the executor reads."""
        sendfile2 = self.sysno_of("sendfile2")
        records = [f"program {-1 if sendfile2 is None else sendfile2} {self.timeout_ms} "
                   f"{self.settle_ms} {self.memlock}" + (" cover=1" if self.cover else "")
                   + (f" optmem_max={self.optmem_max}" if self.optmem_max else "")]
        for f in self.fds:
            records.append(f"fd {f.name} {f.kind} {int(f.nonblock)} {int(f.zerocopy)} "
                           f"{f.sndbuf} {f.size} {f.seed}")
        for op in self.ops:
            words = [op.op]
            for spec_field in op.spec.fields:
                value = op[spec_field.name]
                if spec_field.type == FD:
                    i, end = self.fd_index[value]
                    words.append(str(2 * i + end))
                elif value is None:
                    words.append("null")
                else:
                    words.append(str(value))
            words += [f"{name}={getattr(op, name)}" for name in ("fail_nth", "thread") if getattr(op, name)]
            records.append("op " + " ".join(words))
        return " ; ".join(records) + "\n"


# --- results -------------------------------------------------------------------------------


class ExecutorError(Exception):
    """The executor rejected a request or died under it; the message says which."""


def errno_name(number: int) -> str:
    """`EINVAL`, "OK" for 0: the one spelling of an errno in results, findings and reports.
    EOPNOTSUPP under the name the kernel's docs and the cover letter use, not ENOTSUP."""
    if number == 0:
        return "OK"
    if number == errno_module.EOPNOTSUPP:
        return "EOPNOTSUPP"
    return errno_module.errorcode.get(number, str(number))


@dataclass
class ProgramResult:
    """What a target returned for one program (vm/PROGRAM.md, "Result")."""

    ops: list[dict]
    final: dict
    fixture_errors: list[dict]
    reused: list[str] = field(default_factory=list)  # fixtures kept from an earlier program
    spared: list[str] = field(default_factory=list)  # fixtures that took a spare pair (PROGRAM.md)
    warnings: int = 0  # kernel WARNINGs printed while the program ran (guests only)
    phases_ns: dict = field(default_factory=dict)  # the executor's time: build, ops, final, teardown
    thread_cpus: list = field(default_factory=list)  # programs with thread 1: the CPU each thread ran on
    cover: frozenset = frozenset()  # programs with `cover`: the distinct KCOV PCs hit
    cover_error: str = ""  # programs with `cover` on a kernel without KCOV: why there are no PCs

    @classmethod
    def from_json(cls, obj: dict) -> "ProgramResult":
        return cls(ops=obj["ops"], final=obj["final"], fixture_errors=obj.get("fixture_errors", []),
                   reused=obj.get("reused", []), spared=obj.get("spared", []), warnings=obj.get("warnings", 0),
                   phases_ns=obj.get("phases_ns", {}), thread_cpus=obj.get("thread_cpus", []),
                   cover=frozenset(int(pc, 16) for pc in obj.get("cover", ())),
                   cover_error=obj.get("cover_error", ""))

    def to_json(self) -> dict:
        out = {"ops": self.ops, "final": self.final, "fixture_errors": self.fixture_errors, "reused": self.reused}
        for name in ("warnings", "thread_cpus", "cover_error"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        if self.cover:
            out["cover"] = [hex(pc) for pc in sorted(self.cover)]
        return out

    def ret(self, i: int) -> int:
        return self.ops[i]["ret"]

    def errno(self, i: int) -> int:
        return self.ops[i]["errno"]

    def errno_name(self, i: int) -> str:
        return errno_name(self.ops[i]["errno"])

    def timed_out(self, i: int) -> bool:
        return self.ops[i]["timed_out"]

    def fault_injected(self, i: int) -> bool:
        """Whether op i's call met the fault its `fail_nth` asked for."""
        return self.ops[i].get("fault_injected", False)

    def overlapped(self, i: int, j: int) -> bool:
        """Whether ops i and j ran at the same time: each started before the other ended."""
        a, b = self.ops[i], self.ops[j]
        return a["start_ns"] < b["end_ns"] and b["start_ns"] < a["end_ns"]

    @property
    def peers(self) -> dict[str, dict]:
        return self.final["peers"]

    def peer_bytes(self, name: str) -> int:
        return self.final["peers"][name]["bytes"]

    def peer_digest(self, name: str) -> str:
        return self.final["peers"][name]["digest"]

    def final_notifications(self, name: str) -> list[dict]:
        """Notifications drained from `name`'s error queue after the last op."""
        return self.final["notifications"].get(name, [])

    def notifications(self, name: str) -> list[dict]:
        """Every notification of `name`: those read by `drain` ops, then the final drain."""
        found = [n for op in self.ops if op.get("fd") == name for n in op.get("notifications", [])]
        return found + self.final_notifications(name)

    def fixture_error(self, name: str) -> int | None:
        """The errno that kept fixture `name` from being built, or None."""
        for err in self.fixture_errors:
            if err["name"] == name:
                return err["errno"]
        return None


def decode_reply(line: str) -> ProgramResult:
    """Parse the executor's JSON reply to a program; an error reply raises ExecutorError."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise ExecutorError(f"executor sent a line that is not JSON ({err.msg} at column {err.pos}): "
                            f"{line[max(err.pos - 160, 0):err.pos + 80]!r}") from None
    if not isinstance(obj, dict):
        raise ExecutorError(f"executor sent {line[:200]!r}")
    if "error" in obj:
        raise ExecutorError(f"executor: {obj['error']}")
    return ProgramResult.from_json(obj)
