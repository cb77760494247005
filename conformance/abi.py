"""The proposal's numbers as one kernel under test defines them.

Syscall numbers and flag values come from the kernel's own headers (`Target.kernel_info()`);
a revision may renumber or drop them, so nothing here is a constant of the proposal. The
MSG_ZEROCOPY family is stable uapi and is.
"""

from __future__ import annotations

from dataclasses import dataclass

MSG_DONTWAIT = 0x40
MSG_MORE = 0x8000
MSG_ZEROCOPY = 0x4000000
SO_EE_ORIGIN_ZEROCOPY = 5
SO_EE_CODE_ZEROCOPY_COPIED = 1
MAX_RW_COUNT = 0x7FFFF000
SPLICE_F_BASE = {"SPLICE_F_MOVE": 1, "SPLICE_F_NONBLOCK": 2, "SPLICE_F_MORE": 4, "SPLICE_F_GIFT": 8}

# Sockets that MSG_ZEROCOPY (and the proposal's ZC paths) serve: TCP and UDP over INET/INET6.
ZEROCOPY_KINDS = ("tcp4", "tcp6", "udp4", "udp6", "udp_dummy")
# Local delivery copies the pages (COPIED set); dummy0 frees the skb undelivered (COPIED clear).
TRUE_ZEROCOPY_KINDS = ("udp_dummy",)
# Byte streams: what a peer reads is the concatenation of what was sent.
STREAM_SOCKET_KINDS = ("tcp4", "tcp6", "unix_stream")
# Datagram sockets whose socket ops have splice_eof, so a sendfile that runs out of input pushes
# the datagram it corked; 6.12's inet6_dgram_ops has none, so UDP over IPv6 keeps it corked.
EOF_PUSHES_KINDS = ("udp4", "udp_dummy")


@dataclass(frozen=True)
class Abi:
    """sendfile2's number and the SENDFILE_*/SPLICE_F_ZC values of one kernel (None: absent)."""

    nr_sendfile2: int | None = None
    sendfile_default: int | None = None
    sendfile_zc: int | None = None
    splice_zc: int | None = None
    revision: str = ""

    @classmethod
    def from_kernel_info(cls, info: dict) -> "Abi":
        sendfile = info.get("sendfile_flags") or {}
        splice = info.get("splice_flags") or {}
        return cls(
            nr_sendfile2=info.get("nr_sendfile2"),
            sendfile_default=sendfile.get("SENDFILE_DEFAULT"),
            sendfile_zc=sendfile.get("SENDFILE_ZC"),
            splice_zc=splice.get("SPLICE_F_ZC"),
            revision=str(info.get("revision") or ""),
        )

    @property
    def has_sendfile2(self) -> bool:
        return self.nr_sendfile2 is not None

    @property
    def sendfile2_flag_sets(self) -> tuple[int, ...]:
        """Every combination of the flags sendfile2 defines, 0 first."""
        bits = [b for b in (self.sendfile_default, self.sendfile_zc) if b]
        return tuple(sorted({0, *bits, *([bits[0] | bits[1]] if len(bits) == 2 else [])}))

    @property
    def splice_flag_sets(self) -> tuple[int, ...]:
        """Subsets of the base splice flags, each also with SPLICE_F_ZC when the kernel has it."""
        base = list(SPLICE_F_BASE.values())
        subsets = {sum(b for i, b in enumerate(base) if mask >> i & 1) for mask in range(1 << len(base))}
        if self.splice_zc:
            subsets |= {s | self.splice_zc for s in subsets}
        return tuple(sorted(subsets))

    def is_sendfile_zc(self, flags: int) -> bool:
        return bool(self.sendfile_zc) and bool(flags & self.sendfile_zc)

    def is_splice_zc(self, flags: int) -> bool:
        return bool(self.splice_zc) and bool(flags & self.splice_zc)
