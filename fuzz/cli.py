"""`zcfuzz fuzz` (a campaign) and `zcfuzz repro` (replay findings)."""

from __future__ import annotations

import sys
from pathlib import Path


def cmd_fuzz(args) -> int:
    from fuzz.campaign import CampaignConfig, parse_budget, run_campaign
    from fuzz.findings import FindingStore

    config = CampaignConfig(target=args.target, budget_s=parse_budget(args.budget), workers=args.workers,
                            seed=args.seed, findings=Path(args.findings) if args.findings else None,
                            spec_programs=args.spec_programs)
    totals = run_campaign(config)
    print(f"findings in {config.findings_dir}: {totals['findings']}", file=sys.stderr)
    for doc in FindingStore(config.findings_dir, {}).findings():
        after = doc.get("found_after_s")
        print(f"{'' if after is None else f'{after:.1f}s':>8}  {doc['title']}  [{len(doc['program']['ops'])} ops]"
              f"  {doc['folder']}")
    return 0


def cmd_repro(args) -> int:
    from fuzz.campaign import replay_each
    from fuzz.findings import finding_files

    folders = []
    for given in map(Path, args.finding):
        # A campaign's findings folder stands for every finding in it.
        folders += sorted(p.parent for p in finding_files(given)) or [given]
    failing = 0
    for folder, still_fails, message in replay_each(folders, args.target):
        failing += still_fails
        name = f"{folder.name}: " if len(folders) > 1 else ""
        print(f"{name}{'still fails' if still_fails else 'fixed'}: {message}", flush=True)
    return 1 if failing else 0


def register(sub) -> None:
    fuzz = sub.add_parser("fuzz", help="run a fuzzing campaign against a kernel")
    fuzz.add_argument("--target", required=True, help="host, or vm:REV for a built revision")
    fuzz.add_argument("--budget", default="10m", help="how long to run: 30s, 10m, 2h (default 10m)")
    fuzz.add_argument("--workers", type=int, default=1, help="parallel targets (default 1)")
    fuzz.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    fuzz.add_argument("--findings", help="findings folder (default: under the zcfuzz cache)")
    fuzz.add_argument("--no-spec-programs", dest="spec_programs", action="store_false",
                      help="generate from the start: skip the spec's own programs (one per conformance row) "
                           "that a campaign runs first")
    fuzz.set_defaults(func=cmd_fuzz)

    repro = sub.add_parser("repro", help="replay findings; exit 1 if any still fails, 0 if all are fixed")
    repro.add_argument("finding", nargs="+", help="a finding folder written by `zcfuzz fuzz`, or a campaign's "
                       "findings folder (every finding in it)")
    repro.add_argument("--target", required=True, help="host, or vm:REV")
    repro.set_defaults(func=cmd_repro)
