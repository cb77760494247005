"""Processes zcfuzz starts end with the one that started them, however that one ends.

The kernel's parent-death signal (PR_SET_PDEATHSIG) covers SIGKILL, which no handler sees. It
fires when the *thread* that forked the child ends, so only long-lived threads start children.
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Have `sig` sent to this process when the thread that started it ends. With `parent`
    (its pid, taken before the fork), exit at once if it has already gone: the signal is only
    sent for deaths after this call."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if parent is not None and os.getppid() != parent:
        os._exit(128 + int(sig))
