"""`zcfuzz fuzz` (a campaign) and `zcfuzz repro` (replay a finding)."""

from __future__ import annotations

import sys
from pathlib import Path


def cmd_fuzz(args) -> int:
    from fuzz.campaign import CampaignConfig, parse_budget, run_campaign

    config = CampaignConfig(target=args.target, budget_s=parse_budget(args.budget), workers=args.workers,
                            seed=args.seed, findings=Path(args.findings) if args.findings else None)
    totals = run_campaign(config)
    print(f"findings in {config.findings_dir}: {totals['findings']}", file=sys.stderr)
    return 0


def cmd_repro(args) -> int:
    from fuzz.campaign import replay

    still_fails, message = replay(Path(args.finding), args.target)
    print(f"{'still fails' if still_fails else 'fixed'}: {message}")
    return 1 if still_fails else 0


def register(sub) -> None:
    fuzz = sub.add_parser("fuzz", help="run a fuzzing campaign against a kernel")
    fuzz.add_argument("--target", required=True, help="host, or vm:REV for a built revision")
    fuzz.add_argument("--budget", default="10m", help="how long to run: 30s, 10m, 2h (default 10m)")
    fuzz.add_argument("--workers", type=int, default=1, help="parallel targets (default 1)")
    fuzz.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    fuzz.add_argument("--findings", help="findings folder (default: under the zcfuzz cache)")
    fuzz.set_defaults(func=cmd_fuzz)

    repro = sub.add_parser("repro", help="replay a finding; exit 1 if it still fails, 0 if fixed")
    repro.add_argument("finding", help="a finding folder written by `zcfuzz fuzz`")
    repro.add_argument("--target", required=True, help="host, or vm:REV")
    repro.set_defaults(func=cmd_repro)
