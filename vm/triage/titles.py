"""Title normalisation: the same bug must get the same title whatever run printed it.

Function names inside a title stay as they are (`udp4_lib_lookup2`, `__x64_sys_openat`); only
the volatile parts a report copies into its header (addresses, offsets, line numbers, CPU and
process numbers) are replaced by fixed words, as syzkaller's titles do.
"""

from __future__ import annotations

import re

# Order matters: a symbol offset must go before the hex rule eats its numbers.
NORMALISATION_RULES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"\b([A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[[\w-]+\])?"), r"\1"),
    (re.compile(r"(\.[chS]):\d+(?::\d+)?\b"), r"\1:LINE"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "ADDR"),
    (re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b"), "ADDR"),
    # Bare numbers, CPU numbers and long numeric suffixes (temp dir names, task ids); short
    # digit runs inside a word (`ext4`, `i2c`, `x86_64`) name something and stay.
    (re.compile(r"(?<!\w)\d+|(?<=CPU)\d+|(?<=[A-Za-z])\d{3,}\b"), "NUM"),
)


def normalize_title(text: str) -> str:
    """Replace addresses, offsets, line, CPU and other numbers by ADDR, LINE, NUM."""
    for pattern, replacement in NORMALISATION_RULES:
        text = pattern.sub(replacement, text)
    return re.sub(r"\s+", " ", text).strip()


def clean_function_name(name: str) -> str:
    """`__call_rcu.constprop.76` -> `__call_rcu`: compiler clones are the same function."""
    return name.split(".", 1)[0]
