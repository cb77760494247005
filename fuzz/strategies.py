"""Hypothesis strategies for sendfile2 / SPLICE_F_ZC programs (vm/PROGRAM.md).

Small strategies with domain names compose into `programs(abi)`. Generation leans toward what
finds ABI bugs: zerocopy flags on TCP/UDP sockets, sendfile2(flags=0) that the parity oracle
pairs with sendfile64, sendmsg(MSG_ZEROCOPY) sharing a socket's notification counter, partial
peer reads and error-queue drains between calls, and the ABI's promise: peers across the NIC
held back and let go, the source file rewritten around notifications. Every flag value comes
from `Abi`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from hypothesis import strategies as st
from zcfuzz.conformance.abi import (
    MAX_RW_COUNT,
    MSG_DONTWAIT,
    MSG_MORE,
    MSG_ZEROCOPY,
    STREAM_SOCKET_KINDS,
    ZEROCOPY_KINDS,
    Abi,
)
from zcfuzz.vm.program import BAD_POINTERS, FD_KINDS, NIC_KINDS, Fixture, Op, Program

PAGE = 4096
# Blocking calls cost the whole per-op timeout; fuzz programs keep it short. Completions on
# loopback arrive within microseconds; confirmation runs use a longer settle (campaign.py).
FUZZ_TIMEOUT_MS = 300
FUZZ_SETTLE_MS = 20

FILL_BYTES = 4 << 20  # the executor's whole pattern buffer (vm/PROGRAM.md): more than any socket takes

SOURCE = "src"
SOCKET = "sock"
SECOND_SOCKET = "sock2"
PIPE = "p"
ODD = "odd"

# TCP and UDP sockets, loopback and across the NIC path: the ones the ZC paths serve.
INET_KINDS = ZEROCOPY_KINDS + NIC_KINDS
# Kinds that are not the usual endpoints: the ZC paths must reject them cleanly.
ODD_KINDS = tuple(k for k in FD_KINDS if k not in INET_KINDS and k != "pipe")
PEER_SOCKET_KINDS = ("tcp4", "tcp6", "udp4", "udp6", "unix_stream", "unix_dgram", *NIC_KINDS)
STREAM_KINDS = STREAM_SOCKET_KINDS + tuple(k for k in NIC_KINDS if k.startswith("tcp"))
# How long a drain waits for a notification that must come once the peer has acknowledged:
# across the NIC under TCG, tens of milliseconds; after a release, the sender's resend.
PROMISE_WAIT_MS = (0, 100, 1000)
# How long a drain waits while a peer is held back, for a record that must not come yet: one
# that comes early comes when the device is done with what it sent, well within it. Shorter than
# TCP's first retransmission timeout (200 ms at least), so the peer let go gets the first resend
# instead of one backed off to 400 ms or more: a hold that outlasted one took 0.6-0.8 s a run.
HELD_WAIT_MS = (0, 100)


# --- numbers -------------------------------------------------------------------------------


def file_sizes() -> st.SearchStrategy[int]:
    """A few sizes around pages (offsets and counts near the size are derived from it)."""
    return st.sampled_from([0, 1, PAGE - 1, PAGE, PAGE + 1, 16 * PAGE, 65536 + 17, 256 * 1024])


def offsets(size: int) -> st.SearchStrategy:
    """Offset arguments: NULL, boundaries of the file, negative, huge, and bad pointers."""
    boundaries = [0, 1, size - 1, size, size + 1, PAGE, -1, -PAGE, (1 << 62), (1 << 63) - 1, MAX_RW_COUNT]
    return st.one_of(
        st.just(None),
        st.sampled_from(sorted(set(boundaries))),
        st.integers(0, max(size, 1)),
        st.sampled_from(BAD_POINTERS),
    )


def counts() -> st.SearchStrategy[int]:
    """Counts: 0, 1, page multiples, around MAX_RW_COUNT, and values that overflow ssize_t."""
    interesting = [0, 1, PAGE - 1, PAGE, 2 * PAGE, 16 * PAGE, 65536, MAX_RW_COUNT - 1, MAX_RW_COUNT,
                   MAX_RW_COUNT + 1, 1 << 31, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]
    return st.sampled_from(interesting) | st.integers(0, 1 << 20)


def single_bits() -> st.SearchStrategy[int]:
    return st.integers(0, 31).map(lambda bit: 1 << bit)


def flag_words() -> st.SearchStrategy[int]:
    """Any 32-bit flags word: unknown bits must be rejected, not ignored."""
    return st.integers(0, (1 << 32) - 1)


def sendfile2_flags(abi: Abi) -> st.SearchStrategy[int]:
    valid = st.sampled_from(abi.sendfile2_flag_sets)
    zc = st.just(abi.sendfile_zc) if abi.sendfile_zc else st.just(0)
    return st.one_of(zc, valid, single_bits(), flag_words())


def splice_flags(abi: Abi) -> st.SearchStrategy[int]:
    zc = st.just(abi.splice_zc) if abi.splice_zc else st.just(0)
    return st.one_of(zc, st.sampled_from(abi.splice_flag_sets), single_bits(), flag_words())


def sendmsg_flags() -> st.SearchStrategy[int]:
    return st.sampled_from([MSG_ZEROCOPY, MSG_ZEROCOPY, MSG_ZEROCOPY | MSG_DONTWAIT, MSG_ZEROCOPY | MSG_MORE, 0])


def read_sizes() -> st.SearchStrategy[int]:
    """What a peer reads at once: a little (a partial read) or everything."""
    return st.sampled_from([1, 100, PAGE, 65536, 1 << 24])


# --- fixtures ------------------------------------------------------------------------------


def source_files(name: str = SOURCE) -> st.SearchStrategy[Fixture]:
    kind = st.sampled_from(["file", "file", "file", "file_ro", "memfd"])
    return st.builds(Fixture, name=st.just(name), kind=kind, size=file_sizes(), seed=st.integers(0, 255))


def socket_states(name: str, kinds: tuple[str, ...]) -> st.SearchStrategy[Fixture]:
    """A socket with SO_ZEROCOPY on or off, blocking or not, default or small SO_SNDBUF."""
    return st.builds(
        Fixture,
        name=st.just(name),
        kind=st.sampled_from(kinds),
        zerocopy=st.booleans(),
        nonblock=st.booleans(),
        sndbuf=st.sampled_from([0, 0, 0, 4608, 65536]),
    ).map(lambda f: f if f.kind in INET_KINDS else Fixture(f.name, f.kind, nonblock=f.nonblock))


def zerocopy_sockets(name: str = SOCKET) -> st.SearchStrategy[Fixture]:
    return socket_states(name, INET_KINDS + ("tcp4", "udp4", "tcp4_nic"))


def any_sockets(name: str) -> st.SearchStrategy[Fixture]:
    return socket_states(name, INET_KINDS + ("unix_stream", "unix_dgram"))


def pipes(name: str = PIPE) -> st.SearchStrategy[Fixture]:
    return st.builds(Fixture, name=st.just(name), kind=st.just("pipe"), nonblock=st.booleans())


def odd_fds(name: str = ODD) -> st.SearchStrategy[Fixture]:
    """An fd of any other kind: a directory, O_PATH, eventfd, a closed number, -1..."""
    return st.builds(Fixture, name=st.just(name), kind=st.sampled_from(ODD_KINDS), nonblock=st.booleans())


@st.composite
def fixture_sets(draw) -> tuple[Fixture, ...]:
    """A source file and a socket, sometimes a second socket, a pipe and an odd fd."""
    fixtures = [draw(SOURCE_FILES), draw(ZEROCOPY_SOCKETS)]
    if draw(st.booleans()):
        fixtures.append(draw(PIPES))
    if draw(st.integers(0, 3)) == 0:
        fixtures.append(draw(SECOND_SOCKETS))
    if draw(st.integers(0, 2)) == 0:
        fixtures.append(draw(ODD_FDS))
    return tuple(fixtures)


# Built once: a strategy validates itself on its first draw, which costs more than the draw.
SOURCE_FILES, ZEROCOPY_SOCKETS, PIPES = source_files(), zerocopy_sockets(), pipes()
SECOND_SOCKETS, ODD_FDS = any_sockets(SECOND_SOCKET), odd_fds()


# --- operations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    """The fd names of one program's fixtures, by the role they can play in a call.

    Hashable, so the op strategies built for one shape of program are built once (building a
    strategy costs far more than drawing from it).
    """

    all: tuple[str, ...]
    sockets: tuple[str, ...]
    peer_sockets: tuple[str, ...]
    nonblocking_streams: tuple[str, ...]  # sockets whose send buffer can fill to EAGAIN
    nic_sockets: tuple[str, ...]  # sockets whose peer peer_hold can hold back
    pipe: tuple[str, ...]  # (read end, write end) or ()
    size: int

    @classmethod
    def of(cls, fixtures: tuple[Fixture, ...]) -> "Endpoints":
        source = fixtures[0]
        return cls(
            all=tuple(n for f in fixtures for n in f.fd_names),
            sockets=tuple(f.name for f in fixtures if f.spec.socket),
            peer_sockets=tuple(f.name for f in fixtures if f.kind in PEER_SOCKET_KINDS),
            nonblocking_streams=tuple(f.name for f in fixtures if f.kind in STREAM_KINDS and f.nonblock),
            nic_sockets=tuple(f.name for f in fixtures if f.kind in NIC_KINDS),
            pipe=next((f.fd_names for f in fixtures if f.kind == "pipe"), ()),
            size=source.size,
        )

    def outs(self) -> st.SearchStrategy[str]:
        """Mostly a socket, sometimes anything (the ZC path must refuse non-sockets)."""
        return st.one_of(st.sampled_from(self.sockets), st.sampled_from(self.sockets), st.sampled_from(self.all))

    def ins(self) -> st.SearchStrategy[str]:
        return st.one_of(st.just(SOURCE), st.just(SOURCE), st.sampled_from(self.all))


def sendfile2_ops(abi: Abi, ends: Endpoints) -> st.SearchStrategy[Op]:
    return st.builds(lambda out, in_, offset, count, flags: Op.make(
        "sendfile2", out=out, **{"in": in_}, offset=offset, count=count, flags=flags),
        ends.outs(), ends.ins(), offsets(ends.size), counts(), sendfile2_flags(abi))


def sendfile64_ops(ends: Endpoints) -> st.SearchStrategy[Op]:
    return st.builds(lambda out, in_, offset, count: Op.make(
        "sendfile64", out=out, **{"in": in_}, offset=offset, count=count),
        ends.outs(), ends.ins(), offsets(ends.size), counts())


def splice_ops(abi: Abi, ends: Endpoints) -> st.SearchStrategy[Op]:
    """File -> pipe and pipe -> socket when there is a pipe (the ZC path), else any pair."""
    anything = st.builds(lambda i, o, off_in, n, flags: Op.make(
        "splice", **{"in": i}, off_in=off_in, out=o, off_out=None, len=n, flags=flags),
        ends.ins(), ends.outs(), offsets(ends.size), counts(), splice_flags(abi))
    if not ends.pipe:
        return anything
    read_end, write_end = ends.pipe
    fill = st.builds(lambda i, off_in, n: Op.make(
        "splice", **{"in": i}, off_in=off_in, out=write_end, off_out=None, len=n, flags=0),
        st.just(SOURCE), offsets(ends.size), counts())
    to_socket = st.builds(lambda o, n, flags: Op.make(
        "splice", **{"in": read_end}, off_in=None, out=o, off_out=None, len=n, flags=flags),
        st.sampled_from(ends.sockets), counts(), splice_flags(abi))
    return st.one_of(fill, to_socket, to_socket, anything)


def pipe_ops(abi: Abi, ends: Endpoints) -> st.SearchStrategy[Op]:
    """tee and vmsplice, which must not take SPLICE_F_ZC, and plain writes to fill a pipe."""
    if not ends.pipe:
        return st.nothing()
    read_end, write_end = ends.pipe
    return st.one_of(
        st.builds(lambda n, flags: Op.make("vmsplice", fd=write_end, len=n, flags=flags),
                  st.sampled_from([1, PAGE, 65536]), splice_flags(abi)),
        st.builds(lambda o, n, flags: Op.make("tee", **{"in": read_end}, out=o, len=n, flags=flags),
                  st.sampled_from(ends.all), counts(), splice_flags(abi)),
        st.builds(lambda n: Op.make("write", fd=write_end, len=n), st.sampled_from([1, PAGE, 65536])),
    )


def socket_ops(ends: Endpoints) -> st.SearchStrategy[Op]:
    """What happens to a socket between transfers: MSG_ZEROCOPY sends, reads, drains, toggles."""
    sock = st.sampled_from(ends.sockets)
    strategies = [
        st.builds(lambda fd, n, flags: Op.make("sendmsg", fd=fd, len=n, flags=flags),
                  sock, st.sampled_from([0, 1, 100, PAGE, 65536]), sendmsg_flags()),
        st.builds(lambda fd: Op.make("drain", fd=fd), sock),
        st.builds(lambda fd, value: Op.make("setsockopt_zerocopy", fd=fd, value=value),
                  sock, st.sampled_from([0, 1, 1, 2])),
    ]
    if ends.peer_sockets:
        peers = st.sampled_from(ends.peer_sockets)
        strategies.append(st.builds(lambda fd, n: Op.make("peer_read", fd=fd, max=n), peers, read_sizes()))
    return st.one_of(strategies)


def peer_closes(ends: Endpoints) -> st.SearchStrategy[Op]:
    """The peer goes away: later sends must fail, notifications for earlier ones still come."""
    if not ends.peer_sockets:
        return st.nothing()
    return st.builds(lambda fd: Op.make("peer_close", fd=fd), st.sampled_from(ends.peer_sockets))


def closes(ends: Endpoints) -> st.SearchStrategy[Op]:
    return st.builds(lambda fd: Op.make("close", fd=fd), st.sampled_from(ends.all))


@functools.lru_cache(maxsize=1024)
def rewrites(ends: Endpoints) -> st.SearchStrategy[Op]:
    """The source file's bytes change in place, at any point: what a zerocopy call sent from it
    may still be referenced until its notification (vm/PROGRAM.md: pwrite, truncate, mmap_write)."""
    spots = st.sampled_from(sorted({0, 1, PAGE - 1, PAGE, max(ends.size - 1, 0)}))
    lengths = st.sampled_from([1, 100, PAGE, 65536])
    seeds = st.integers(0, 255)
    return st.one_of(
        st.builds(lambda o, n, seed: Op.make("pwrite", fd=SOURCE, offset=o, len=n, seed=seed), spots, lengths, seeds),
        st.builds(lambda o, n, seed: Op.make("mmap_write", fd=SOURCE, offset=o, len=n, seed=seed), spots, lengths,
                  seeds),
        st.builds(lambda length: Op.make("truncate", fd=SOURCE, length=length), spots),
    )


def holds(ends: Endpoints) -> st.SearchStrategy[Op]:
    """A peer across the NIC held back or let go (every *_nic peer shares the hold)."""
    if not ends.nic_sockets:
        return st.nothing()
    return st.builds(lambda op, fd: Op.make(op, fd=fd), st.sampled_from(["peer_hold", "peer_release"]),
                     st.sampled_from(ends.nic_sockets))


@functools.lru_cache(maxsize=1024)
def operations(abi: Abi, ends: Endpoints) -> st.SearchStrategy[Op]:
    """One call, weighted toward the zerocopy transfers and what happens to their sockets."""
    transfer = sendfile2_ops(abi, ends) if abi.has_sendfile2 else sendfile64_ops(ends)
    weighted = [
        (transfer, 6), (sendfile64_ops(ends), 2), (splice_ops(abi, ends), 3), (socket_ops(ends), 6),
        (pipe_ops(abi, ends), 1 if ends.pipe else 0), (peer_closes(ends), 1 if ends.peer_sockets else 0),
        (closes(ends), 1), (rewrites(ends), 1), (holds(ends), 1 if ends.nic_sockets else 0),
    ]
    return st.sampled_from([s for s, weight in weighted for _ in range(weight)]).flatmap(lambda s: s)


@functools.lru_cache(maxsize=1024)
def zerocopy_rounds(abi: Abi, ends: Endpoints) -> st.SearchStrategy[list[Op]]:
    """A zerocopy send, maybe a partial peer read, then a drain of the same socket's error queue."""
    sock = st.sampled_from(ends.sockets)
    sends = [st.builds(lambda fd, n: [Op.make("sendmsg", fd=fd, len=n, flags=MSG_ZEROCOPY)], sock,
                       st.sampled_from([1, 100, PAGE, 65536]))]
    if abi.has_sendfile2 and abi.sendfile_zc:
        sends.append(st.builds(lambda fd, offset, count: [Op.make(
            "sendfile2", out=fd, **{"in": SOURCE}, offset=offset, count=count, flags=abi.sendfile_zc)],
            sock, offsets(ends.size), counts()))
    if ends.pipe and abi.splice_zc:
        read_end, write_end = ends.pipe
        sends.append(st.builds(lambda fd, n: [
            Op.make("splice", **{"in": SOURCE}, off_in=0, out=write_end, off_out=None, len=n, flags=0),
            Op.make("splice", **{"in": read_end}, off_in=None, out=fd, off_out=None, len=n, flags=abi.splice_zc)],
            sock, st.sampled_from([1, 100, PAGE, 65536])))
    read = st.one_of(st.just([]), st.builds(lambda fd, n: [Op.make("peer_read", fd=fd, max=n)],
                                            st.sampled_from(ends.peer_sockets), read_sizes())
                     if ends.peer_sockets else st.just([]))
    return st.builds(lambda send, peer, fd: send + peer + [Op.make("drain", fd=fd)], st.one_of(sends), read, sock)


@st.composite
def promise_rounds(draw, abi: Abi, ends: Endpoints) -> list[Op]:
    """The ABI's promise: a zerocopy send with the peer maybe held back, a bounded wait for its
    notification, the source rewritten, the peer let go, and a last wait: the oracles judge that
    no record came while the bytes were unacknowledged, and that a rewrite after the record
    changed nothing the peer got."""
    *send, drain = draw(zerocopy_rounds(abi, ends))
    held = bool(ends.nic_sockets) and draw(st.booleans())
    nic = draw(st.sampled_from(ends.nic_sockets)) if held else ""
    ops = [Op.make("peer_hold", fd=nic)] if held else []
    waits = HELD_WAIT_MS if held else PROMISE_WAIT_MS
    ops += send + [Op.make("drain", fd=drain["fd"], wait_ms=draw(st.sampled_from(waits))), draw(rewrites(ends))]
    ops += [Op.make("peer_release", fd=nic)] if held else []
    return ops + [Op.make("drain", fd=drain["fd"], wait_ms=draw(st.sampled_from(PROMISE_WAIT_MS)))]


def full_buffers(ends: Endpoints) -> st.SearchStrategy[list[Op]]:
    """The peer stops reading and a non-blocking stream socket's buffers fill: two sends of the
    whole pattern with MSG_DONTWAIT, the second to see EAGAIN. What follows must not block."""
    if not ends.nonblocking_streams:
        return st.nothing()
    return st.sampled_from(ends.nonblocking_streams).map(
        lambda fd: [Op.make("sendmsg", fd=fd, len=FILL_BYTES, flags=MSG_DONTWAIT)] * 2)


# --- faults and a second thread (vm/PROGRAM.md, "Fault injection", "Concurrent calls") -------


def fault_sites() -> st.SearchStrategy[int]:
    """Which fault site of a call fails: mostly one of its first allocations, sometimes one deep
    in the send path (a page of the payload, the skb, the notification's ubuf)."""
    return st.one_of(st.integers(1, 8), st.integers(9, 64))


def with_fault(op: Op) -> st.SearchStrategy[Op]:
    """The op as it is or, when it is one system call, with its n-th fault site failing."""
    if not op.spec.one_call:
        return st.just(op)
    return st.one_of(st.just(op), fault_sites().map(lambda n: replace(op, fail_nth=n)))


def on_either_thread(op: Op) -> st.SearchStrategy[Op]:
    """The op in the thread it was given, or moved to the second one."""
    return st.sampled_from([op, replace(op, thread=1)])


def id_give_back_races(abi: Abi, ends: Endpoints) -> st.SearchStrategy[list[Op]]:
    """The race the v2 cover letter describes: a sendmsg(MSG_ZEROCOPY) on the second thread takes
    the socket's next notification id while a ZC sendfile2 that sends nothing (its offset is at
    the end of the file) gives the id it took back."""
    if not (abi.has_sendfile2 and abi.sendfile_zc):
        return st.nothing()
    return st.builds(lambda fd, n: [
        Op.make("sendfile2", out=fd, **{"in": SOURCE}, offset=ends.size, count=PAGE, flags=abi.sendfile_zc),
        Op.make("sendmsg", fd=fd, len=n, flags=MSG_ZEROCOPY, thread=1)],
        st.sampled_from(ends.sockets), st.sampled_from([1, 100, PAGE]))


@functools.lru_cache(maxsize=1024)
def step_lists(abi: Abi, ends: Endpoints, max_ops: int,
               faults_and_threads: bool) -> st.SearchStrategy[list[list[Op]]]:
    """The steps of a program on these fixtures: single calls, zerocopy and promise rounds,
    buffers filled (and with `faults_and_threads`, the id give-back race)."""
    rounds = st.one_of(zerocopy_rounds(abi, ends), promise_rounds(abi, ends))
    steps = st.one_of(operations(abi, ends).map(lambda op: [op]), rounds, full_buffers(ends))
    if faults_and_threads:
        steps = st.one_of(steps, id_give_back_races(abi, ends))
    return st.lists(steps, min_size=1, max_size=max_ops)


@st.composite
def programs(draw, abi: Abi, max_ops: int = 8, faults_and_threads: bool = False) -> Program:
    """A few calls on the same fixtures, so notification ids and socket state carry across.

    `faults_and_threads` (`zcfuzz fuzz --faults-and-threads`) also injects faults into calls and
    runs some of them in a second thread. The oracles judge such programs by what any interleaving
    and any failed allocation leave fixed (conformance.oracles: `on_two_threads`, `fault_met`).
    """
    fixtures = draw(fixture_sets())
    ops = [op for step in draw(step_lists(abi, Endpoints.of(fixtures), max_ops, faults_and_threads))
           for op in step][:max_ops]
    if faults_and_threads:
        ops = [draw(with_fault(op).flatmap(on_either_thread)) for op in ops]
    sysno = (("sendfile2", abi.nr_sendfile2),) if abi.has_sendfile2 else ()
    return Program(fds=fixtures, ops=tuple(ops), sysno=sysno, timeout_ms=FUZZ_TIMEOUT_MS,
                   settle_ms=FUZZ_SETTLE_MS)
