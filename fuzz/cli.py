"""`zcfuzz fuzz` (a campaign), `zcfuzz repro` (replay findings) and `zcfuzz findings` (the shared ones)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

DATABASE_ENV = "ZCFUZZ_DATABASE"
DATABASE_HELP = f"redis://HOST:PORT/DB shared with other machines' campaigns (default: ${DATABASE_ENV})"


def cmd_fuzz(args) -> int:
    from zcfuzz.fuzz.campaign import (
        CampaignConfig,
        parse_budget,
        parse_shard,
        run_campaign,
    )
    from zcfuzz.fuzz.findings import FindingStore
    from zcfuzz.fuzz.shared import parse_database_url
    from zcfuzz.vm.backends import revision_of
    from zcfuzz.vm.errors import UserError

    if args.cover and revision_of(args.target) is None:
        raise UserError(f"--cover needs a guest target (vm:REV), not {args.target}: KCOV is read from its kernel")
    config = CampaignConfig(target=args.target, budget_s=parse_budget(args.budget), workers=args.workers,
                            seed=args.seed, findings=Path(args.findings) if args.findings else None,
                            spec_programs=args.spec_programs, shard=parse_shard(args.shard),
                            database=parse_database_url(args.database) if args.database else None,
                            cover=args.cover, faults_and_threads=args.faults_and_threads,
                            profile=args.profile)
    totals = run_campaign(config)
    print(f"findings in {config.findings_dir}: {totals['findings']}", file=sys.stderr)
    if args.cover:
        print(f"series lines {totals.get('series_lines', 0)}/{totals.get('series_total', 0)}", file=sys.stderr)
    if "shared" in totals:
        print(f"findings shared in {config.database}: {totals['shared']['findings']}", file=sys.stderr)
    for doc in FindingStore(config.findings_dir, {}).findings():
        after = doc.get("found_after_s")
        print(f"{'' if after is None else f'{after:.1f}s':>8}  {doc['title']}  [{len(doc['program']['ops'])} ops]"
              f"  {doc['folder']}")
    return 0


def cmd_repro(args) -> int:
    from zcfuzz.fuzz.campaign import replay_each, replay_shared
    from zcfuzz.fuzz.findings import finding_files
    from zcfuzz.vm.errors import UserError

    if args.finding:
        folders = []
        for given in map(Path, args.finding):
            # A campaign's findings folder stands for every finding in it.
            folders += sorted(p.parent for p in finding_files(given)) or [given]
        replays, several = replay_each(folders, args.target), len(folders) > 1
    elif args.database:
        replays, several = replay_shared(args.database, args.target), True
    else:
        raise UserError("give finding folders, or --database redis://HOST:PORT/DB to replay the shared findings")
    failing = 0
    for name, still_fails, message in replays:
        failing += still_fails
        prefix = f"{name}: " if several else ""
        print(f"{prefix}{'still fails' if still_fails else 'fixed'}: {message}", flush=True)
    return 1 if failing else 0


def cmd_findings(args) -> int:
    from zcfuzz.fuzz.shared import Shared
    from zcfuzz.vm.errors import UserError

    if not args.database:
        raise UserError(f"give --database redis://HOST:PORT/DB (or set {DATABASE_ENV})")
    shared = Shared(args.database)
    shared.check()
    docs = []
    for revision in [args.revision] if args.revision else shared.revisions():
        docs += (shared.findings(revision) or {}).values()
    docs.sort(key=lambda d: (d.get("revision", ""), d.get("found", "")))
    if args.json:
        print(json.dumps(docs, indent=2))
        return 0
    for doc in docs:
        print(f"{doc.get('revision', '')}  {doc.get('found', '')}  {doc['title']}  [{len(doc['program']['ops'])} ops]"
              f"  found first by {doc.get('machine', '?')}")
    print(f"{len(docs)} findings in {args.database}", file=sys.stderr)
    return 0


def register(sub) -> None:
    database = os.environ.get(DATABASE_ENV) or None
    fuzz = sub.add_parser("fuzz", help="run a fuzzing campaign against a kernel")
    fuzz.add_argument("--target", required=True, help="host, or vm:REV for a built revision")
    fuzz.add_argument("--budget", default="10m", help="how long to run: 30s, 10m, 2h (default 10m)")
    fuzz.add_argument("--workers", type=int, default=1, help="parallel targets (default 1)")
    fuzz.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    fuzz.add_argument("--findings", help="findings folder (default: under the zcfuzz cache)")
    fuzz.add_argument("--no-spec-programs", dest="spec_programs", action="store_false",
                      help="generate from the start: skip the spec's own programs (one per conformance row) "
                           "that a campaign runs first")
    fuzz.add_argument("--cover", action="store_true", help="run every program with KCOV and steer by the "
                      "series' lines reached, as `zcfuzz cover` does; programs that reach new lines are kept in "
                      "the findings folder's cover-corpus/ and run first next time (README, \"Coverage\")")
    fuzz.add_argument("--database", default=database, help=DATABASE_HELP)
    fuzz.add_argument("--shard", default="0/1", help="I/N: this machine's part of the spec programs and seeds, "
                      "one of N machines (default 0/1)")
    fuzz.add_argument("--faults-and-threads", action="store_true",
                      help="also generate calls whose n-th allocation fails (fail-nth) and calls on a second "
                           "thread, for the error paths and the races between threads (vm/PROGRAM.md)")
    fuzz.add_argument("--profile", action="store_true", help="say at the end where the campaign's wall time "
                      "went: generate, send, execute in the guest, judge, twin, confirm, shrink, restart")
    fuzz.set_defaults(func=cmd_fuzz)

    repro = sub.add_parser("repro", help="replay findings; exit 1 if any still fails, 0 if all are fixed")
    repro.add_argument("finding", nargs="*", help="a finding folder written by `zcfuzz fuzz`, or a campaign's "
                       "findings folder (every finding in it); none: the shared findings of --database")
    repro.add_argument("--target", required=True, help="host, or vm:REV")
    repro.add_argument("--database", default=database, help="replay the findings shared there for the target's "
                       "revision: " + DATABASE_HELP)
    repro.set_defaults(func=cmd_repro)

    findings = sub.add_parser("findings", help="list the findings campaigns shared in Redis")
    findings.add_argument("--database", default=database, help=DATABASE_HELP)
    findings.add_argument("--revision", help="only this revision's (default: every revision's)")
    findings.add_argument("--json", action="store_true", help="the findings as a JSON list")
    findings.set_defaults(func=cmd_findings)
