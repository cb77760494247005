"""`zcfuzz triage LOG [--json]`: title the first kernel report in a console log."""

from __future__ import annotations

import argparse
import json

from zcfuzz.vm.errors import UserError
from zcfuzz.vm.triage.report import parse

NO_CRASH = "no crash found"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "triage",
        help="title the first kernel crash in a console log as syzkaller would",
        description="Find the first kernel report in LOG and print its title "
        f"(or '{NO_CRASH}'). Exit status 0 either way.",
    )
    parser.add_argument("log", metavar="LOG", help="console log file")
    parser.add_argument(
        "--json", action="store_true", help="print title, alt_titles, type, corrupted and report as JSON"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        with open(args.log, encoding="utf-8", errors="replace") as log:
            console = log.read()
    except OSError as err:
        raise UserError(f"cannot read {args.log}: {err.strerror or err}") from None
    crash = parse(console)
    if args.json:
        fields = crash.as_json() if crash else {
            "title": None, "alt_titles": [], "type": None, "corrupted": False, "report": "",
        }
        print(json.dumps(fields, indent=2))
    else:
        print(crash.title if crash else NO_CRASH)
    return 0
