"""What a correct kernel answers to one sendfile64/sendfile2/splice/tee/vmsplice call.

`expected_errno(program, op_index, kernel_info)` is the set of acceptable errnos for one op
(0 meaning success), or None where the answer depends on state the model does not track
(how full a socket is, whether a peer has data). It walks the kernel's checks in their order:
fs/read_write.c do_sendfile and rw_verify_area, fs/splice.c splice/tee/vmsplice as of 6.12,
plus the ABI this project fixes for sendfile2 and SPLICE_F_ZC (conformance/SPEC.md).

The fuzz errno oracle and the conformance tables both lean on it, so every prediction is
cross-checked against the tables' hand-written expectations (tests/test_conformance_model.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from errno import (
    EAGAIN,
    EBADF,
    ECONNREFUSED,
    ECONNRESET,
    EFAULT,
    EINVAL,
    ENOBUFS,
    ENOSYS,
    EOPNOTSUPP,
    EPIPE,
    ESPIPE,
)
from typing import Any, Callable

from zcfuzz.conformance.abi import MAX_RW_COUNT, MSG_MORE, SPLICE_F_BASE, ZEROCOPY_KINDS
from zcfuzz.vm.program import BAD_POINTERS, DEFAULT_MEMLOCK, NIC_KINDS, Program

SSIZE_MAX = (1 << 63) - 1
LOFF_MAX = (1 << 63) - 1
MOVED_POSITION_MAX = 1 << 40  # further than any program of ours moves a file position
UDP_SAFE_BYTES = 1024  # a datagram this small fits every MTU the fixtures have
PIPE_SLOTS = 16
PAGE_SIZE = 4096
UINT_MASK = 0xFFFFFFFF
SIZE_MASK = (1 << 64) - 1
SPLICE_F_NONBLOCK = SPLICE_F_BASE["SPLICE_F_NONBLOCK"]
# Bytes a blocking loopback socket takes without its peer reading, well under any default buffer.
SOCKET_SAFE_BYTES = 32 * 1024
UNIX_DGRAM_SAFE_SENDS = 8  # net.unix.max_dgram_qlen is 10


@dataclass(frozen=True)
class FdTraits:
    """The struct file bits the 6.12 checks read, per fixture kind."""

    valid: bool = True  # fdget() finds it (O_PATH files are invisible to fdget)
    read: bool = False  # FMODE_READ
    write: bool = False  # FMODE_WRITE
    pread: bool = False  # FMODE_PREAD / FMODE_PWRITE (set by do_dentry_open, cleared by stream_open)
    lseek: bool = False  # FMODE_LSEEK
    splice_read: bool = False
    splice_write: bool = False
    append: bool = False
    has_data: bool = False  # reading it at a position below `size` yields bytes


_FILE = dict(pread=True, lseek=True, splice_read=True, splice_write=True, has_data=True)
_SOCK = dict(read=True, write=True, splice_read=True, splice_write=True)
_ANON = dict(read=True, write=True, lseek=True)

TRAITS: dict[str, FdTraits] = {
    "file": FdTraits(read=True, write=True, **_FILE),
    "file_ro": FdTraits(read=True, **_FILE),
    "file_wo": FdTraits(write=True, **_FILE),
    "file_append": FdTraits(write=True, append=True, **_FILE),
    "memfd": FdTraits(read=True, write=True, **_FILE),
    "pipe.r": FdTraits(read=True),
    "pipe.w": FdTraits(write=True, splice_write=True),
    **{kind: FdTraits(**_SOCK) for kind in ("tcp4", "tcp6", "udp4", "udp6", "udp_dummy",
                                             "unix_stream", "unix_dgram", *NIC_KINDS)},
    "dir": FdTraits(read=True, pread=True, lseek=True),
    "opath": FdTraits(valid=False),
    "eventfd": FdTraits(**_ANON),
    "timerfd": FdTraits(**_ANON),
    "epoll": FdTraits(**_ANON),
    "pidfd": FdTraits(read=True, write=True, pread=True),
    "devzero": FdTraits(read=True, write=True, pread=True, lseek=True, splice_read=True,
                        splice_write=True, has_data=True),
    "devnull": FdTraits(read=True, write=True, pread=True, lseek=True, splice_write=True),
    "closed": FdTraits(valid=False),
    "invalid": FdTraits(valid=False),
}
INET_SOCKETS = frozenset(ZEROCOPY_KINDS + NIC_KINDS)
UNIX_SOCKETS = frozenset(("unix_stream", "unix_dgram"))


class _Unknown(Exception):
    """The answer depends on state the model does not follow."""


@dataclass
class _Fd:
    """One fd name of the program as the model sees it at the op in question."""

    name: str
    kind: str  # fixture kind, "pipe.r"/"pipe.w" for pipe ends
    traits: FdTraits
    nonblock: bool
    size: int
    sndbuf: int = 0


class _State:
    """What the ops before `op_index` did that later checks depend on."""

    def __init__(self, program: Program, op_index: int):
        self.program = program
        self.closed: set[str] = set()
        self.peer_closed: set[str] = set()
        self.pipe_slots: dict[str, int] = {}  # pipe fixture -> upper bound of slots in use
        self.pipe_maybe_data: set[str] = set()  # pipe fixtures something may have written to
        self.pipe_drained: set[str] = set()  # pipe fixtures an earlier op may have emptied
        self.pos_moved: set[str] = set()  # fds whose file position an earlier op may have moved
        self.sent: dict[str, int] = {}  # socket -> upper bound of bytes queued for the peer
        self.sends: dict[str, int] = {}  # socket -> calls that sent to it
        self.maybe_corked: set[str] = set()  # sockets a send with MSG_MORE (or a sendfile) may have corked
        self.resized: set[str] = set()  # files an earlier pwrite, truncate or store may have grown or cut
        for op in program.ops[:op_index]:
            self._apply(op.op, op.to_json())

    def fd(self, name: str) -> _Fd:
        fixture = self.program.fixture(name)
        kind = fixture.kind
        if kind == "pipe":
            kind = "pipe." + name.rsplit(".", 1)[1]
        traits = TRAITS[kind]
        if name in self.closed:
            traits = TRAITS["closed"]
        return _Fd(name, kind, traits, fixture.nonblock, fixture.size, fixture.sndbuf)

    def pipe_of(self, name: str) -> str:
        return self.program.fixture(name).name

    def _apply(self, op: str, args: dict) -> None:
        if op in ("pwrite", "truncate", "mmap_write"):
            self.resized.add(self.program.fixture(args["fd"]).name)
        if op == "close":
            self.closed.add(args["fd"])
        elif op == "peer_close":
            self.peer_closed.add(args["fd"])
        elif op in ("sendfile64", "sendfile2", "splice", "tee", "vmsplice", "write", "sendmsg"):
            out = args.get("out", args.get("fd"))
            length = args.get("count", args.get("len", 0)) & SIZE_MASK
            if self.program.fixture(out).kind == "pipe":
                pipe = self.pipe_of(out)
                self.pipe_slots[pipe] = self.pipe_slots.get(pipe, 0) + min(length, MAX_RW_COUNT) // PAGE_SIZE + 1
                self.pipe_maybe_data.add(pipe)
            else:
                self.sent[out] = self.sent.get(out, 0) + min(length, MAX_RW_COUNT)
                self.sends[out] = self.sends.get(out, 0) + 1
                more = MSG_MORE if op == "sendmsg" else SPLICE_F_BASE["SPLICE_F_MORE"] if op == "splice" else 0
                # sendfile sends its last chunk with MSG_MORE when it moved less than asked
                if args.get("flags", 0) & more or op in ("sendfile64", "sendfile2"):
                    self.maybe_corked.add(out)
            source = args.get("in")
            if source is not None and self.program.fixture(source).kind == "pipe" and op != "tee":
                self.pipe_drained.add(self.pipe_of(source))
            for key, offset_key in (("in", "offset"), ("in", "off_in"), ("out", "off_out")):
                if key in args and args.get(offset_key) is None:
                    self.pos_moved.add(args[key])
            if "out" in args:
                self.pos_moved.add(args["out"])


def _flags_mask(flags: dict[str, int]) -> int:
    """Every bit a kernel defines; OR, since headers also define the *_ALL unions."""
    mask = 0
    for value in flags.values():
        mask |= value
    return mask


def splice_flags_mask(kernel_info: dict) -> int:
    """The splice flag bits the kernel accepts (SPLICE_F_ALL)."""
    return _flags_mask(kernel_info.get("splice_flags") or SPLICE_F_BASE)


def sendfile_flags_mask(kernel_info: dict) -> int:
    """The sendfile2 flag bits the kernel defines (SENDFILE_ALL); 0 without sendfile2."""
    return _flags_mask(kernel_info.get("sendfile_flags") or {})


def _offset(value: Any) -> tuple[bool, int | None]:
    """(pointer given, value it points at; None for a bad pointer)."""
    if value is None:
        return False, None
    if value in BAD_POINTERS:
        return True, None
    return True, value


def _verify_area(state: _State, fd: _Fd, count: int, pos: int | None) -> None:
    """rw_verify_area: EINVAL for a negative count or position, or one that wraps.

    `pos` None: the call starts at the file's position (do_sendfile and do_splice check that
    too), 0 until an earlier op may have moved it. No op moves it past MOVED_POSITION_MAX, so
    an unknown position only matters for counts that could wrap from there."""
    if count > SSIZE_MAX:
        raise _Err(EINVAL)
    if pos is None:
        if fd.name not in state.pos_moved:
            pos = 0
        elif count > LOFF_MAX - MOVED_POSITION_MAX:
            raise _Unknown
        else:
            return
    if pos < 0 or pos + count > LOFF_MAX:
        raise _Err(EINVAL)


class _Err(Exception):
    def __init__(self, errno: int):
        self.errno = errno


def _pipe_space(state: _State, out: _Fd, nonblock: bool) -> None:
    """wait_for_space: EPIPE without readers, EAGAIN (or a block) when full."""
    pipe = state.pipe_of(out.name)
    if pipe + ".r" in state.closed:
        raise _Err(EPIPE)
    if state.pipe_slots.get(pipe, 0) >= PIPE_SLOTS:
        # An upper bound only: earlier calls may have moved less than they asked for (an empty
        # file, a short read), so the pipe may or may not be full.
        raise _Unknown


def _socket_send(state: _State, out: _Fd, length: int) -> frozenset[int]:
    """What sending `length` bytes to a socket gives, as far as the model can tell."""
    if out.kind.startswith("udp") and length > UDP_SAFE_BYTES:
        raise _Unknown  # a datagram's size limit (EMSGSIZE) and corking are more than the model tracks
    if out.name in state.peer_closed:
        if out.kind in UNIX_SOCKETS:
            return frozenset({EPIPE})
        if out.kind.startswith("udp"):
            # An earlier datagram's ICMP port unreachable is reported on the next send.
            return frozenset({0, ECONNREFUSED})
        if out.kind in NIC_KINDS:
            # The peer's RST crosses a device and may not have come yet: until it does, the
            # send is one on a live connection (EAGAIN on a full non-blocking socket).
            return frozenset({0, EPIPE, ECONNRESET}) | _live_socket_send(state, out, length)
        return frozenset({0, EPIPE, ECONNRESET})
    return _live_socket_send(state, out, length)


def _live_socket_send(state: _State, out: _Fd, length: int) -> frozenset[int]:
    """What sending `length` bytes to a socket whose peer is there gives."""
    if out.kind == "unix_dgram":
        fits = state.sends.get(out.name, 0) < UNIX_DGRAM_SAFE_SENDS and length <= PAGE_SIZE
    elif out.kind.startswith("udp"):
        fits = True
    else:
        fits = state.sent.get(out.name, 0) + length <= SOCKET_SAFE_BYTES
    if out.sndbuf:
        # SO_SNDBUF (doubled by the kernel) also pays for each send's overhead: half of it is
        # safe for the bytes (seen: a unix_dgram socket with 4096 took four 1024-byte sends).
        fits = fits and state.sent.get(out.name, 0) + length <= out.sndbuf // 2
    if fits:
        return frozenset({0})
    if out.nonblock and not out.kind.startswith("udp"):
        return frozenset({0, EAGAIN})
    raise _Unknown


def _readable_bytes(state: _State, fd: _Fd, pos: int | None, count: int) -> int | None:
    """Bytes a read of `count` at `pos` finds (None: unknown)."""
    if not fd.traits.has_data or state.program.fixture(fd.name).name in state.resized:
        return None
    if fd.kind == "devzero":
        return count
    if pos is None:
        if fd.name in state.pos_moved:
            return None
        pos = 0
    return max(0, min(count, fd.size - pos))


def _sendfile(state: _State, args: dict, kernel_info: dict, zc: bool) -> frozenset[int]:
    in_fd, out = state.fd(args["in"]), state.fd(args["out"])
    given, pos = _offset(args["offset"])
    count = args["count"] & SIZE_MASK
    if given and pos is None and args["offset"] != "readonly":
        raise _Err(EFAULT)  # copy_from_user of the offset
    readonly = args["offset"] == "readonly"
    if readonly:
        pos = 0  # the executor's read-only page holds zeros; put_user then fails
    try:
        result = _do_sendfile(state, in_fd, out, given, pos, count, zc)
    except _Err:
        if readonly:
            raise _Err(EFAULT) from None
        raise
    return frozenset({EFAULT}) if readonly else result


def _do_sendfile(state: _State, in_fd: _Fd, out: _Fd, given: bool, pos: int | None, count: int,
                 zc: bool) -> frozenset[int]:
    if not in_fd.traits.valid or not in_fd.traits.read:
        raise _Err(EBADF)
    if given and not in_fd.traits.pread:
        raise _Err(ESPIPE)
    _verify_area(state, in_fd, count, pos)
    count = min(count, MAX_RW_COUNT)
    if not out.traits.valid or not out.traits.write:
        raise _Err(EBADF)
    if zc and out.kind not in INET_SOCKETS:
        raise _Err(EOPNOTSUPP)
    _corked_datagram(state, out, zc)
    # EOVERFLOW needs a position at s_maxbytes; tmpfs and the pseudo filesystems (sockfs, pipefs)
    # all have MAX_LFS_FILESIZE, which rw_verify_area's EINVAL for wrapping positions covers.
    if out.kind == "pipe.w":
        _pipe_space(state, out, out.nonblock)
        if count == 0:
            return frozenset({0})
        if not in_fd.traits.splice_read:
            raise _Err(EINVAL)
        if in_fd.kind in INET_SOCKETS | UNIX_SOCKETS:
            raise _Unknown
        return frozenset({0})
    if out.traits.append:
        raise _Err(EINVAL)
    if zc and count:
        return _or_optmem_exhausted(state, lambda: _direct_splice(state, in_fd, out, pos, count))
    return _direct_splice(state, in_fd, out, pos, count)


def _or_optmem_exhausted(state: _State, rest: Callable[[], frozenset[int]]) -> frozenset[int]:
    """What `rest` of a ZC call's checks gives, or ENOBUFS where the program tightened option
    memory (v2 allocates the notification there: its cover letter's sendfile2 errors, in order)
    or RLIMIT_MEMLOCK (charged before the first send)."""
    if not state.program.optmem_max and state.program.memlock >= DEFAULT_MEMLOCK:
        return rest()
    try:
        return rest() | {ENOBUFS}
    except _Err as err:
        return frozenset({err.errno, ENOBUFS})


def _direct_splice(state: _State, in_fd: _Fd, out: _Fd, pos: int | None, count: int) -> frozenset[int]:
    """do_splice_direct past its O_APPEND test: the input, then the transfer."""
    if not in_fd.traits.lseek:
        raise _Err(EINVAL)
    if count == 0:
        return frozenset({0})
    if not in_fd.traits.splice_read:
        raise _Err(EINVAL)
    available = _readable_bytes(state, in_fd, pos, count)
    if available is None:
        raise _Unknown
    if available == 0:
        return frozenset({0})
    if not out.traits.splice_write:
        raise _Err(EINVAL)
    if out.kind in INET_SOCKETS | UNIX_SOCKETS:
        return _socket_send(state, out, available)
    return frozenset({0})


def _splice(state: _State, args: dict, kernel_info: dict) -> frozenset[int]:
    length = args["len"] & SIZE_MASK
    flags = args["flags"] & UINT_MASK
    if length == 0:
        return frozenset({0})
    if flags & ~splice_flags_mask(kernel_info):
        raise _Err(EINVAL)
    in_fd, out = state.fd(args["in"]), state.fd(args["out"])
    if not in_fd.traits.valid or not out.traits.valid:
        raise _Err(EBADF)
    in_pipe, out_pipe = in_fd.kind.startswith("pipe."), out.kind.startswith("pipe.")
    off_in_given, off_in = _offset(args["off_in"])
    off_out_given, off_out = _offset(args["off_out"])
    if (in_pipe and off_in_given) or (out_pipe and off_out_given):
        raise _Err(ESPIPE)
    for given, value, raw in ((off_out_given, off_out, args["off_out"]), (off_in_given, off_in, args["off_in"])):
        if given and value is None and raw != "readonly":
            raise _Err(EFAULT)
    readonly = "readonly" in (args["off_in"], args["off_out"])
    off_in = 0 if args["off_in"] == "readonly" else off_in
    off_out = 0 if args["off_out"] == "readonly" else off_out
    if not in_fd.traits.read or not out.traits.write:
        raise _Err(EBADF)
    zc = bool(flags & (kernel_info.get("splice_flags") or {}).get("SPLICE_F_ZC", 0))
    if zc and out.kind not in INET_SOCKETS:
        raise _Err(EOPNOTSUPP)  # v2: after the fd, offset and mode checks, before the pipe ones
    if zc and not in_pipe:
        raise _Unknown  # the ABI fixes SPLICE_F_ZC only for pipe -> INET socket
    _corked_datagram(state, out, zc)

    def rest() -> frozenset[int]:
        """The checks after the ZC ones: the pipe ends, then the transfer."""
        nonblock = bool(flags & SPLICE_F_NONBLOCK)
        if in_pipe and out_pipe:
            if state.pipe_of(in_fd.name) == state.pipe_of(out.name):
                raise _Err(EINVAL)
            _pipe_data(state, in_fd, nonblock or in_fd.nonblock or out.nonblock)
            _pipe_space(state, out, nonblock or in_fd.nonblock or out.nonblock)
            result = frozenset({0})
        elif in_pipe:
            if off_out_given and not out.traits.pread:
                raise _Err(EINVAL)
            if out.traits.append:
                raise _Err(EINVAL)
            _verify_area(state, out, length, off_out)
            if not out.traits.splice_write:
                raise _Err(EINVAL)
            may_be_eof, may_have_data = _pipe_data(state, in_fd, nonblock or in_fd.nonblock)
            if out.kind in INET_SOCKETS | UNIX_SOCKETS:
                result = frozenset({0} if may_be_eof else ())  # end of file: 0, the socket untouched
                if may_have_data:
                    result |= _socket_send(state, out, min(length, PIPE_SLOTS * PAGE_SIZE))
            else:
                result = frozenset({0})
        elif out_pipe:
            if off_in_given and not in_fd.traits.pread:
                raise _Err(EINVAL)
            _verify_area(state, in_fd, length, off_in)
            _pipe_space(state, out, nonblock or out.nonblock)
            if not in_fd.traits.splice_read:
                raise _Err(EINVAL)
            if in_fd.kind in INET_SOCKETS | UNIX_SOCKETS:
                raise _Unknown
            result = frozenset({0})
        else:
            raise _Err(EINVAL)
        return frozenset({EFAULT}) if readonly else result

    return _or_optmem_exhausted(state, rest) if zc else rest()


def _corked_datagram(state: _State, out: _Fd, zc: bool) -> None:
    """A zerocopy call that may meet a UDP datagram corked by MSG_MORE: if that datagram already
    carries MSG_ZEROCOPY data, ip_append_data refuses a second notification for it (EINVAL, as
    for io_uring's IORING_OP_SEND_ZC); whether it does is more than the model tracks."""
    if zc and out.kind.startswith("udp") and out.name in state.maybe_corked:
        raise _Unknown


def _pipe_data(state: _State, in_fd: _Fd, nonblock: bool) -> tuple[bool, bool]:
    """(the read end may be at end of file, it may hold data). At end of file (empty, no writer
    left) a read returns 0 at once, before O_NONBLOCK or SPLICE_F_NONBLOCK is looked at (6.12
    splice_to_socket, splice_from_pipe_next and ipipe_prep test pipe->writers first). An empty
    pipe with writers blocks its reader, or gives EAGAIN when non-blocking."""
    pipe = state.pipe_of(in_fd.name)
    writers_gone = pipe + ".w" in state.closed
    if pipe not in state.pipe_maybe_data:
        if writers_gone:
            return True, False
        if nonblock:
            raise _Err(EAGAIN)
        raise _Unknown
    if writers_gone:
        return True, True
    if pipe in state.pipe_drained or nonblock:
        raise _Unknown  # earlier writes *may* have put data in it (an empty file moves none)
    return False, True


def _rejects_splice_zc(flags: int, kernel_info: dict) -> bool:
    """tee and vmsplice refuse SPLICE_F_ZC: they never reach a socket."""
    return bool(flags & (kernel_info.get("splice_flags") or {}).get("SPLICE_F_ZC", 0))


def _tee(state: _State, args: dict, kernel_info: dict) -> frozenset[int]:
    flags = args["flags"] & UINT_MASK
    if flags & ~splice_flags_mask(kernel_info) or _rejects_splice_zc(flags, kernel_info):
        raise _Err(EINVAL)
    if args["len"] & SIZE_MASK == 0:
        return frozenset({0})
    in_fd, out = state.fd(args["in"]), state.fd(args["out"])
    if not in_fd.traits.valid or not out.traits.valid:
        raise _Err(EBADF)
    if not in_fd.traits.read or not out.traits.write:
        raise _Err(EBADF)
    if not (in_fd.kind == "pipe.r" and out.kind == "pipe.w") or state.pipe_of(in_fd.name) == state.pipe_of(out.name):
        raise _Err(EINVAL)
    nonblock = bool(flags & SPLICE_F_NONBLOCK) or in_fd.nonblock or out.nonblock
    _pipe_data(state, in_fd, nonblock)
    _pipe_space(state, out, nonblock)
    return frozenset({0})


def _vmsplice(state: _State, args: dict, kernel_info: dict) -> frozenset[int]:
    flags = args["flags"] & UINT_MASK
    if flags & ~splice_flags_mask(kernel_info) or _rejects_splice_zc(flags, kernel_info):
        raise _Err(EINVAL)
    fd = state.fd(args["fd"])
    if not fd.traits.valid or not (fd.traits.read or fd.traits.write):
        raise _Err(EBADF)
    if args["len"] & SIZE_MASK == 0:
        return frozenset({0})
    if fd.kind == "pipe.w":
        _pipe_space(state, fd, bool(flags & SPLICE_F_NONBLOCK) or fd.nonblock)
        return frozenset({0})
    if fd.kind == "pipe.r":
        _pipe_data(state, fd, bool(flags & SPLICE_F_NONBLOCK) or fd.nonblock)
        return frozenset({0})
    raise _Err(EBADF)


def expected_errno(program: Program | dict, op_index: int, kernel_info: dict) -> frozenset[int] | None:
    """Acceptable errnos of op `op_index` (0: success), or None where the model cannot tell."""
    if isinstance(program, dict):
        program = Program.from_json(program)
    op = program.ops[op_index]
    args = op.to_json()
    state = _State(program, op_index)
    try:
        if op.op == "sendfile64":
            return _sendfile(state, args, kernel_info, zc=False)
        if op.op == "sendfile2":
            if program.sysno_of("sendfile2") is None:
                return frozenset({ENOSYS})
            flags = args["flags"] & UINT_MASK
            if flags & ~sendfile_flags_mask(kernel_info):
                return frozenset({EINVAL})
            zc_flag = (kernel_info.get("sendfile_flags") or {}).get("SENDFILE_ZC", 0)
            return _sendfile(state, args, kernel_info, zc=bool(flags & zc_flag))
        if op.op == "splice":
            return _splice(state, args, kernel_info)
        if op.op == "tee":
            return _tee(state, args, kernel_info)
        if op.op == "vmsplice":
            return _vmsplice(state, args, kernel_info)
    except _Err as err:
        return frozenset({err.errno})
    except _Unknown:
        return None
    return None
