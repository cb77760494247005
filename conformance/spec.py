"""The ABI as data: one clause per rule a kernel must follow, and SPEC.md rendered from it.

`requires` says which kernels a clause applies to: "" every kernel (6.12 behaviour that the
proposal must not change), "sendfile2" kernels that have the syscall, "splice_zc" kernels whose
splice takes SPLICE_F_ZC (found by probing, conformance.suite.probe_features). `catches` names
the defects of the posted RFC (D1-D7) the clause is designed to trip on; a clause that catches
nothing must pass on every revision that implements it. The rows of each clause are in
conformance/cases.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPEC_PATH = Path(__file__).with_name("SPEC.md")

MSG_ZEROCOPY_RST = "Documentation/networking/msg_zerocopy.rst"
READ_WRITE_C = "fs/read_write.c"
SPLICE_C = "fs/splice.c"
V2 = "the zcfuzz v2 ABI (kernel-patches, fixed revision)"
RFC = "the RFC cover letter (March 2025)"
# The sentences of the ABI the promise clauses check, quoted.
PAGES_FREE = ("v2 cover letter: an application learns \"when the network stack no longer references the "
              "pages it sent, i.e. when the file data may be overwritten\"")
AFTER_LAST_SKB = ("v2 cover letter: one notification \"once the call has returned and the last skb "
                  "referencing its data is freed\"")
SLOW_CLIENT = ("RFC cover letter: \"a slow client on the other side may take time to receive and ACK the "
               "bytes. In the meantime, the user app ... has no way to know whether it can overwrite the "
               "data on disk\"")
MSGZC_REUSE = "msg_zerocopy.rst: the kernel notifies \"when it is safe to reuse a previously passed buffer\""


@dataclass(frozen=True)
class Clause:
    id: str
    expected: str
    reason: str
    source: str
    requires: str = ""
    catches: tuple[str, ...] = ()
    ltp: str = ""

    @property
    def applies_to(self) -> str:
        return {"": "every kernel", "sendfile2": "kernels with sendfile2",
                "splice_zc": "kernels whose splice takes SPLICE_F_ZC"}[self.requires]


CLAUSES: tuple[Clause, ...] = (
    # --- sendfile64 on 6.12: the baseline sendfile2 inherits ---------------------------------
    Clause("SF64-EBADF", "EBADF when in_fd is not open for reading or out_fd not open for writing",
           "do_sendfile checks FMODE_READ on in_fd and FMODE_WRITE on out_fd; O_PATH fds are invisible "
           "to fdget", READ_WRITE_C, ltp="sendfile03"),
    Clause("SF64-EFAULT", "EFAULT for an offset pointer that cannot be read, or written back",
           "sendfile64 copies *offset in before and out after do_sendfile; a read-only page fails the "
           "write-back after the data has moved", READ_WRITE_C, ltp="sendfile04"),
    Clause("SF64-EINVAL", "EINVAL for a negative offset, a count above SSIZE_MAX, an O_APPEND output "
           "or an input that cannot seek", "rw_verify_area, do_splice_direct and splice_direct_to_actor",
           READ_WRITE_C, ltp="sendfile05"),
    Clause("SF64-ESPIPE", "ESPIPE when an offset is given and in_fd cannot pread (pipe, socket)",
           "do_sendfile tests FMODE_PREAD before using *offset", READ_WRITE_C),
    Clause("SF64-EOVERFLOW", "no EOVERFLOW below s_maxbytes: positions past 2^31 up to LLONG_MAX - count "
           "read EOF (0)", "do_sendfile's EOVERFLOW needs pos >= min(s_maxbytes); tmpfs, sockfs and pipefs "
           "all have MAX_LFS_FILESIZE (pseudo_fs_fill_super), so only the 32-bit sendfile's MAX_NON_LFS "
           "or a small filesystem reaches it", READ_WRITE_C),
    Clause("SF64-EAGAIN", "EAGAIN from a non-blocking output that is full",
           "splice_to_socket adds MSG_DONTWAIT for O_NONBLOCK sockets", SPLICE_C, ltp="sendfile07"),
    Clause("SF64-EPIPE", "EPIPE once the peer of a stream socket has gone",
           "unix_stream_sendmsg and tcp_sendmsg fail on a shut-down connection", "net/unix/af_unix.c, "
           "net/ipv4/tcp.c"),
    Clause("SF64-ODD-IN", "every odd kind of in_fd gets its documented errno or works",
           "the checks in order: fdget, FMODE_READ, FMODE_PREAD, FMODE_LSEEK, ->splice_read",
           f"{READ_WRITE_C}, {SPLICE_C}", ltp="splice07 (sendfile analogue)"),
    Clause("SF64-ODD-OUT", "every odd kind of out_fd gets its documented errno or works",
           "the checks in order: fdget, FMODE_WRITE, O_APPEND, ->splice_write (only once data was read)",
           f"{READ_WRITE_C}, {SPLICE_C}", ltp="splice07 (sendfile analogue)"),
    Clause("SF64-OFFSET", "with an offset pointer the new offset is written back and in_fd's position "
           "is untouched; without one in_fd's position advances", "do_sendfile updates *ppos or f_pos",
           READ_WRITE_C),
    Clause("SF64-COUNT", "count 0 returns 0; counts up to and beyond MAX_RW_COUNT return the bytes "
           "available, and the peer receives exactly them", "do_sendfile clamps count to MAX_RW_COUNT "
           "silently", READ_WRITE_C),
    # --- splice, tee, vmsplice on 6.12 -------------------------------------------------------
    Clause("SPLICE-LEN0", "splice with len 0 returns 0 before looking at flags or fds",
           "SYSCALL_DEFINE6(splice) returns 0 for !len first", SPLICE_C),
    Clause("SPLICE-FLAGS-UNKNOWN", "EINVAL for every flag bit outside SPLICE_F_ALL",
           "splice checks flags & ~SPLICE_F_ALL after len; on an unpatched kernel 0x10 is unknown",
           SPLICE_C),
    Clause("SPLICE-EBADF", "EBADF for a closed fd, a write-only input or a read-only output",
           "fdget, then do_splice's FMODE_READ/FMODE_WRITE test", SPLICE_C, ltp="splice03"),
    Clause("SPLICE-EINVAL", "EINVAL when neither end is a pipe, both ends are one pipe, the output is "
           "O_APPEND or an offset is given for a file that cannot pread/pwrite", "do_splice", SPLICE_C,
           ltp="splice03"),
    Clause("SPLICE-ESPIPE", "ESPIPE for an offset on a pipe end", "__do_splice", SPLICE_C, ltp="splice03"),
    Clause("SPLICE-ODD-FDS", "every odd kind of fd on either side gets EBADF or EINVAL, or works",
           "do_splice: FMODE bits, then ->splice_read / ->splice_write", SPLICE_C, ltp="splice07"),
    Clause("SPLICE-PIPE-EOF", "splice and tee from an empty pipe with no writer left return 0 (end of "
           "file), with or without O_NONBLOCK or SPLICE_F_NONBLOCK",
           "splice_to_socket, splice_from_pipe_next and ipipe_prep return 0 when pipe->writers is 0, "
           "before they look at the non-blocking flag", SPLICE_C),
    Clause("TEE-FLAGS-UNKNOWN", "tee: EINVAL for every flag bit outside SPLICE_F_ALL, even with len 0",
           "tee checks flags before len", SPLICE_C),
    Clause("VMSPLICE-FLAGS-UNKNOWN", "vmsplice: EINVAL for every flag bit outside SPLICE_F_ALL",
           "vmsplice checks flags first", SPLICE_C),
    # --- MSG_ZEROCOPY as the proposal inherits it ---------------------------------------------
    Clause("MSGZC-SOCKOPT", "SO_ZEROCOPY: 1 accepted on TCP/UDP, EOPNOTSUPP on AF_UNIX, EINVAL for 2",
           "sock_setsockopt SO_ZEROCOPY", MSG_ZEROCOPY_RST),
    Clause("MSGZC-OPT-IN", "sendmsg(MSG_ZEROCOPY) notifies only with SO_ZEROCOPY set",
           "without the socket option the flag is ignored silently", MSG_ZEROCOPY_RST),
    Clause("MSGZC-ID-NOT-ON-FAILURE", "sendmsg(MSG_ZEROCOPY) of 0 bytes takes no id",
           "the counter does not move on failure or zero length", MSG_ZEROCOPY_RST),
    Clause("MSGZC-COPIED-LOOPBACK", "MSG_ZEROCOPY completions on loopback TCP have COPIED set",
           "local delivery copies the pages", MSG_ZEROCOPY_RST),
    Clause("MSGZC-TRUE-ZEROCOPY-DUMMY", "MSG_ZEROCOPY over UDP out of dummy0 completes with COPIED clear",
           "the device frees the skb without copying", MSG_ZEROCOPY_RST),
    Clause("MSGZC-NIC-NOTIFY", "sendmsg(MSG_ZEROCOPY) through the NIC path, TCP and UDP: every send notified "
           "once; COPIED is reported, not judged (in this guest it varies for TCP, and UDP copies: its "
           "virtio-net has no checksum offload)", MSGZC_REUSE, MSG_ZEROCOPY_RST),
    Clause("MSGZC-NIC-NO-EARLY", "sendmsg(MSG_ZEROCOPY) on TCP through the NIC with the peer held back: no "
           "notification while its bytes are unacknowledged; once the peer is let go, it comes",
           MSGZC_REUSE, MSG_ZEROCOPY_RST),
    # --- sendfile2 -----------------------------------------------------------------------------
    Clause("SF2-FLAGS-UNKNOWN", "EINVAL for every flag bit outside SENDFILE_ALL, and for all bits set",
           "unknown bits must be refused so they can be given meaning later", V2, "sendfile2", ("D1",)),
    Clause("SF2-FLAGS-CHECKED-FIRST", "unknown flag bits give EINVAL before fds and offset are looked at",
           "the flags test comes first, so the answer does not depend on the other arguments", V2,
           "sendfile2", ("D1",)),
    Clause("SF2-PARITY-ERRNO", "sendfile2 with flags 0 or SENDFILE_DEFAULT fails exactly like sendfile64",
           "a plain sendfile2 is sendfile64 with a flags word", f"{V2}; {RFC}", "sendfile2"),
    Clause("SF2-PARITY-TRANSFER", "sendfile2 with flags 0 or SENDFILE_DEFAULT moves the same bytes and "
           "leaves the same offsets and positions as sendfile64", "checked against a sendfile64 twin on "
           "identical fixtures", f"{V2}; {RFC}", "sendfile2"),
    Clause("SF2-ZC-NON-SOCKET", "SENDFILE_ZC to an out_fd that is not a TCP/UDP INET/INET6 socket: "
           "EOPNOTSUPP", "there is no error queue to notify on; the RFC dereferenced a NULL socket",
           V2, "sendfile2", ("D2",)),
    Clause("SF2-ZC-ERRNO", "sendfile2(SENDFILE_ZC) to a socket fails exactly like sendfile64",
           "the zerocopy path changes how pages are sent, not how arguments are checked", V2, "sendfile2",
           ("D7",)),
    Clause("SF2-ZC-TRANSFER", "sendfile2(SENDFILE_ZC) moves the same bytes and offsets as sendfile64",
           "checked against a sendfile64 twin on identical fixtures", V2, "sendfile2", ("D7",)),
    Clause("SF2-NONBLOCK-EAGAIN", "sendfile2 on a full O_NONBLOCK socket returns EAGAIN with every flag "
           "value, as sendfile64 does", "the RFC's zerocopy path dropped MSG_DONTWAIT", V2, "sendfile2",
           ("D3",)),
    Clause("ZC-SO-ZEROCOPY-NOT-REQUIRED", "SENDFILE_ZC notifies without SO_ZEROCOPY set",
           "the per-call flag is the opt-in, as a caller-supplied ubuf is for io_uring", V2, "sendfile2",
           ("D7",)),
    Clause("ZC-ID-ONCE", "each sendfile2(SENDFILE_ZC) call that sent bytes takes exactly one id",
           "the counter counts calls, not bytes; a later sendmsg(MSG_ZEROCOPY) sees the next id",
           f"{MSG_ZEROCOPY_RST}; {RFC}", "sendfile2", ("D7",)),
    Clause("ZC-NOTIFY-ONCE", "every id taken by sendfile2(SENDFILE_ZC) is notified exactly once, after "
           "the peer has read everything", "an application reuses the file data only after its "
           "notification; the RFC's bare refcount decrement can lose it", f"{MSG_ZEROCOPY_RST}; {V2}",
           "sendfile2", ("D7",)),
    Clause("ZC-ID-NOT-ON-FAILURE", "a sendfile2(SENDFILE_ZC) call that fails or sends 0 bytes takes no id",
           "the counter does not move on failure or zero length", MSG_ZEROCOPY_RST, "sendfile2", ("D5", "D7")),
    Clause("ZC-ID-CONCURRENT", "a sendfile2(SENDFILE_ZC) call that sends nothing while a "
           "sendmsg(MSG_ZEROCOPY) on another thread takes ids of the same socket leaves every id from 0 "
           "notified exactly once", "the call gives its id back only while it is still the last one taken; "
           "once another call took the next, it is notified as COPIED, so no number is skipped or used twice",
           V2, "sendfile2", ("D7",)),
    Clause("ZC-COUNTER-SHARED", "sendfile2(SENDFILE_ZC) and sendmsg(MSG_ZEROCOPY) on one socket share "
           "one counter", "one error queue, one id space per socket", f"{MSG_ZEROCOPY_RST}; {RFC}",
           "sendfile2", ("D7",)),
    Clause("ZC-RANGE-COALESCE", "completions of consecutive ids queued together are read as one "
           "inclusive range", "skb_zerocopy_notify_extend merges lo == previous hi + 1",
           MSG_ZEROCOPY_RST, "sendfile2", ("D7",)),
    Clause("ZC-COPIED-LOOPBACK", "sendfile2(SENDFILE_ZC) completions on loopback TCP and UDP have "
           "COPIED set", "local delivery copies the pages", MSG_ZEROCOPY_RST, "sendfile2", ("D7",)),
    Clause("ZC-TRUE-ZEROCOPY-DUMMY", "sendfile2(SENDFILE_ZC) over UDP out of dummy0 completes with COPIED "
           "clear", "the device frees the skb without copying", MSG_ZEROCOPY_RST, "sendfile2", ("D7",)),
    Clause("ZC-NIC-NOTIFY", "sendfile2(SENDFILE_ZC) through the NIC path, TCP and UDP: notified once, as "
           "sendmsg(MSG_ZEROCOPY) of the same bytes on the same path is; COPIED of both is reported, not "
           "judged", f"{AFTER_LAST_SKB}; v2 cover letter: \"COPIED is set on loopback and deferred copies as "
           "for MSG_ZEROCOPY\"", f"{MSG_ZEROCOPY_RST}; {V2}", "sendfile2", ("D7",)),
    Clause("ZC-NO-EARLY-NOTIFY", "while any byte of a sendfile2(SENDFILE_ZC) call is queued or "
           "unacknowledged (peer held back, window full, non-blocking partial send) no notification covers "
           "its id; once the peer is let go, it comes", AFTER_LAST_SKB, V2, "sendfile2", ("D3", "D7")),
    Clause("ZC-OVERWRITE-SAFE", "after the notification of a sendfile2(SENDFILE_ZC) call, rewriting the file "
           "range it sent (pwrite, truncate, a store through a shared mapping) never changes what the peer "
           "receives; a rewrite before it may show up (zerocopy evidence, not a failure)", PAGES_FREE, V2,
           "sendfile2", ("D7",)),
    Clause("ZC-SLOW-CLIENT", "a peer reading slowly while non-blocking sendfile2(SENDFILE_ZC) calls send a "
           "large file: notifications follow the peer's acknowledgements, never run ahead of them, and every "
           "call is notified once", SLOW_CLIENT, f"{RFC}; {V2}", "sendfile2", ("D3", "D7")),
    # --- v2's decided behaviours: each a sentence of its cover letter ------------------------------
    Clause("SF2-ERROR-ORDER", "sendfile2 with two error conditions at once gives the one its cover letter "
           "lists first: flags, offset readable, in_fd, offset/in_fd pread, offset and count, out_fd, "
           "SENDFILE_ZC output, then sendfile64's own", "the errors are checked in the order the cover letter "
           "lists them, so an answer never depends on which of two mistakes a caller made first", V2,
           "sendfile2", ("D2",)),
    Clause("ZC-EFAULT-AFTER-SEND", "sendfile2(SENDFILE_ZC) whose offset cannot be written back returns EFAULT "
           "after its data was sent; that call took its id and is notified", "sendfile64 stores *offset "
           "after do_sendfile, so the bytes have left when the store fails; v2 cover letter: \"EFAULT offset "
           "not writable on return (as sendfile64): the data was sent, the call took an id\"", V2, "sendfile2",
           ("D7",)),
    Clause("ZC-UDP-CORKED", "onto a UDP datagram corked with sendmsg(MSG_ZEROCOPY|MSG_MORE), SENDFILE_ZC and "
           "SPLICE_F_ZC fail with EINVAL, take no id and drop the corked datagram (its id is still notified), while the same calls without the flag append; a "
           "datagram corked by ZC calls is copied, so ZC calls and sendmsg(MSG_ZEROCOPY) append to it, each "
           "with its own id", "ip_append_data: one datagram carries one notification; a corked datagram "
           "(MSG_MORE) has no checksum offload, so its bytes are copied and carry none; a failed send drops the "
           "corked datagram, as every UDP send error does", V2, "sendfile2", ("D4", "D7")),
    Clause("ZC-ENOBUFS-OPTMEM", "with the socket's option memory held by pending notifications, SENDFILE_ZC "
           "and SPLICE_F_ZC fail with ENOBUFS and take no id, even from an input sendfile64 refuses later "
           "(EINVAL); once the notifications are read, the next call succeeds", "the notification is "
           "allocated before the input is read (v2 cover letter, sendfile2 errors in order)", V2, "sendfile2",
           ("D4",)),
    Clause("ZC-COUNT-0-NO-NOTIFICATION", "SENDFILE_ZC with count 0 and SPLICE_F_ZC with len 0 return 0 "
           "with the socket's option memory held by pending notifications, as sendmsg(MSG_ZEROCOPY) of 0 "
           "bytes does: a call that has nothing to send needs no notification and takes no id",
           "sendfile64 returns 0 for count 0; tcp_sendmsg and ip_append_data allocate a notification only "
           "for a length above 0; v2 cover letter: splice \"len == 0 returns 0 before any flag check\"",
           V2, "sendfile2", ("D5",)),
    Clause("ZC-MEMLOCK-LIMIT", "a ZC transfer larger than RLIMIT_MEMLOCK stops at the limit: sendfile2 "
           "returns the bytes sent so far, a splice whose first send exceeds it fails with ENOBUFS; the "
           "charge is released with the notification", "v2 cover letter: \"if the limit is reached mid-call, "
           "the call returns the bytes sent so far (a short count), and ENOBUFS only if it sent nothing\"",
           V2, "sendfile2", ("D6",)),
    Clause("ZC-MEMLOCK-PARTIAL", "a sendmsg of a ZC call that sends only part of what it was given keeps the "
           "charge for all of it until the notification, and the unsent rest is charged again when given to "
           "the next sendmsg", "as sendmsg(MSG_ZEROCOPY) charges a partial send for its whole buffer; v2 "
           "cover letter, memory accounting", V2, "sendfile2", ("D7",)),
    Clause("ZC-MEMLOCK-SENT", "a SENDFILE_ZC count far above RLIMIT_MEMLOCK sends what sendfile64 sends, "
           "without ENOBUFS", "only the bytes sent are charged to locked memory", V2, "sendfile2", ("D6",)),
    Clause("ZC-MSGZC-AFTER-ZC", "sendmsg(MSG_ZEROCOPY) on TCP while the bytes of a SENDFILE_ZC or SPLICE_F_ZC "
           "call are still queued (peer held back) succeeds and takes the next id; the call and the sendmsg are "
           "each notified once, once the peer is let go", "a call's notification covers that call's bytes "
           "only: v2 patch 2, \"msg_zerocopy_realloc() must not extend the ubuf of a call in flight when a "
           "later sendmsg(MSG_ZEROCOPY) finds it on the TCP write queue tail; TCP starts a new skb for a new "
           "ubuf instead of failing the sendmsg with ENOBUFS\"", V2, "sendfile2", ("D4",)),
    # --- SPLICE_F_ZC -----------------------------------------------------------------------------
    Clause("SPLICE-ZC-PIPE-TO-SOCKET", "splice(SPLICE_F_ZC) from a pipe to a TCP socket takes one id per "
           "call that sent bytes, each notified once", "the flag must reach the socket on the splice "
           "path, not only on sendfile's", f"{V2}; {RFC}", "splice_zc", ("D4",)),
    Clause("SPLICE-ZC-ERRNO", "splice with SPLICE_F_ZC fails like splice without it on bad fds and "
           "offsets (EBADF, ESPIPE), and with EOPNOTSUPP where the output is not a TCP/UDP socket",
           "the flag changes how pages are sent, not how arguments are checked; a notification "
           "that can never come is refused, not accepted silently", V2, "splice_zc", ("D4",)),
    Clause("SPLICE-ZC-PIPE-EOF", "splice(SPLICE_F_ZC) from an empty pipe with no writer left returns 0 "
           "(end of file), with or without O_NONBLOCK, and takes no id",
           "end of file is found before anything is sent, as without the flag; a call that sends "
           "nothing takes no id", V2, "splice_zc"),
    Clause("SPLICE-ZC-NO-EARLY-NOTIFY", "splice(SPLICE_F_ZC) from a pipe to TCP through the NIC with the "
           "peer held back: no notification while its bytes are unacknowledged; once the peer is let go, it "
           "comes", AFTER_LAST_SKB, V2, "splice_zc", ("D4",)),
    Clause("SPLICE-ZC-OVERWRITE-SAFE", "after the notification of a file -> pipe -> socket splice(SPLICE_F_ZC), "
           "rewriting the file range never changes what the peer receives", PAGES_FREE, V2, "splice_zc", ("D4",)),
    Clause("TEE-ZC-REJECTED", "tee with SPLICE_F_ZC: EINVAL", "tee never reaches a socket, so a "
           "notification could never be sent", V2, "splice_zc", ("D4",)),
    Clause("VMSPLICE-ZC-REJECTED", "vmsplice with SPLICE_F_ZC: EINVAL", "vmsplice never reaches a "
           "socket, so a notification could never be sent", V2, "splice_zc", ("D4",)),
)

CLAUSE_BY_ID = {c.id: c for c in CLAUSES}


def render_markdown() -> str:
    """conformance/SPEC.md: the table above for people."""
    lines = [
        "# The sendfile2 / SPLICE_F_ZC ABI, clause by clause",
        "",
        "Generated from `conformance/spec.py` by `zcfuzz conform --spec`; do not edit by hand.",
        "Rows (the conditions each clause is checked under) are in `conformance/cases.py`.",
        "Flags are named, never numbered: their values come from the kernel under test.",
        "",
        "| clause | expected | why | source | applies to | RFC defects |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in CLAUSES:
        ltp = f" (LTP {c.ltp})" if c.ltp else ""
        lines.append(f"| `{c.id}` | {c.expected}{ltp} | {c.reason} | {c.source} | {c.applies_to} | "
                     f"{', '.join(c.catches) or '-'} |")
    return "\n".join(lines) + "\n"
