"""Title normalisation: the same bug must get the same title whatever run printed it.

A title keeps function names as they are (`udp4_lib_lookup2`, `nl802154_add_llsec_key`); the
volatile parts a report copies into its header (addresses, offsets, line numbers, process and
other numbers, executor instance names) become fixed words, as syzkaller's titles do, so that
titles compare equal with syzbot's and kernel CI's.
"""

from __future__ import annotations

import re

# Order matters: an address goes before the number rule can eat its digits, and a rule is
# applied until nothing changes because its matches may overlap (`0,1,2`).
NORMALISATION_RULES: tuple[tuple[re.Pattern, str], ...] = (
    # The fuzzer's own processes and scratch directories carry an instance number.
    (re.compile(r"syz-executor\.?\d+(?:[/:]\d+)?", re.ASCII), "syz-executor"),
    (re.compile(r"syzkaller\d+(?:[/:]\d+)?", re.ASCII), "syzkaller"),
    # Six hex digits or more after a non-word character: an address or a hash.
    (re.compile(r"([^a-zA-Z0-9])(?:0x)?[0-9a-f]{6,}", re.ASCII), r"\1ADDR"),
    (re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", re.ASCII), "IP"),
    (re.compile(r"(\.\w+)(?::\d+)+", re.ASCII), r"\1:LINE"),
    # `func+0x1a/0x2b`: offsets and sizes change with every build.
    (re.compile(r"([a-zA-Z][a-zA-Z0-9_.]+)\+0x[0-9a-z]+/0x[0-9a-z]+", re.ASCII), r"\1"),
    # A number standing alone; digits inside a word (`ext4`, `cfg80211`) name something.
    (re.compile(r"(\W)\d+(\W|$)", re.ASCII), r"\1NUM\2"),
    # Unless the run of digits is long: then it is an id (`syzkaller-testdir264563108`).
    (re.compile(r"\d{7,}", re.ASCII), "NUM"),
)

# Intermixed output can make a header line very long; syzkaller cuts titles here.
MAX_TITLE_LENGTH = 120


def normalize_title(text: str) -> str:
    """Replace addresses, offsets, line numbers and other numbers by ADDR, LINE, NUM."""
    for pattern, replacement in NORMALISATION_RULES:
        while True:
            replaced = pattern.sub(replacement, text)
            if replaced == text:
                break
            text = replaced
    return sanitize_title(text)


def sanitize_title(title: str) -> str:
    """One line of printable ASCII, single-spaced, at most MAX_TITLE_LENGTH characters."""
    title = title[:MAX_TITLE_LENGTH].replace("\t", " ")
    title = "".join(ch for ch in title if " " <= ch < "\x7f")
    return re.sub(r" {2,}", " ", title).strip()


def clean_function_name(name: str) -> str:
    """`__call_rcu.constprop.76` -> `__call_rcu`: compiler clones are the same function."""
    return name.split(".", 1)[0]
