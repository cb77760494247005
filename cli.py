"""zcfuzz: the one command-line entry point.

Each folder registers its own subcommands (vm/cli.py, conformance/cli.py, fuzz/cli.py, and the
revision workflows in workflows/); this file only assembles them and turns a UserError, or a kernel failure no command could judge, into one
line and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from zcfuzz.vm.errors import UserError
from zcfuzz.vm.target import KernelCrash

SUBCOMMAND_MODULES = ("zcfuzz.vm.cli", "zcfuzz.conformance.cli", "zcfuzz.fuzz.cli", "zcfuzz.workflows.gate",
                      "zcfuzz.workflows.mutants", "zcfuzz.workflows.bench", "zcfuzz.workflows.cover")


def cmd_test(args) -> int:
    """zcfuzz's own tests: what CI runs. Tests that need a VM build and boot kernels for real.

    They run in parallel, one pytest-xdist worker per CPU, the tests that share a guest in one
    worker (--dist loadgroup and the tests' xdist_group marks). The arguments given come after
    these, so their own -n or --dist wins (PYTEST_ADDOPTS's too); with -p no:xdist, --pdb or
    --trace, or on one CPU, the tests run in this process, as plain pytest runs them."""
    import importlib.util
    import itertools
    import shlex

    import pytest

    checkout = Path(__file__).resolve().parent
    if not (checkout / "tests").is_dir():
        raise UserError("zcfuzz's tests live in its source checkout: run './zcfuzz test' there")
    os.chdir(checkout)  # so pyproject's testpaths apply when no path is given
    addopts = shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))  # pytest reads these before the arguments
    given = [*addopts, *args.pytest_args]
    plugins_off = {b for a, b in itertools.pairwise(given) if a == "-p"} | {a[2:] for a in given if a.startswith("-p")}
    cpus = len(os.sched_getaffinity(0))
    parallel = (cpus > 1 and importlib.util.find_spec("xdist") is not None and "no:xdist" not in plugins_off
                and not {"--pdb", "--trace"} & set(given)
                and not any(a.startswith(("-n", "--numprocesses", "-d", "--dist")) for a in addopts))
    return pytest.main(["-ra", *(["-n", str(cpus), "--dist", "loadgroup"] if parallel else []), *args.pytest_args])


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="zcfuzz",
        description="Syscall fuzzer and ABI conformance suite for sendfile2 and SPLICE_F_ZC.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    test = sub.add_parser("test", help="run zcfuzz's own tests (pytest arguments may follow)")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    test.set_defaults(func=cmd_test)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C is an interrupt even where SIGINT came ignored (a job started in the background, a
    # parent that ignores it): Python installs its handler only where SIGINT was not ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "test":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if unknown:
        args.pytest_args = unknown + args.pytest_args
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"zcfuzz: error: {err}", file=sys.stderr)
        return err.exit_status
    except KernelCrash as crash:
        print(f"zcfuzz: error: the guest's kernel failed outside any check: {crash.title}; its console is in "
              f"{keep_console(crash)}: rerun, and if it repeats, try 'zcfuzz vm shell'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zcfuzz: interrupted", file=sys.stderr)
        return 130


def keep_console(crash: KernelCrash) -> str:
    """The console of a crash no command turned into a finding, kept under the cache."""
    from zcfuzz.vm.kbuild import cache_dir

    folder = cache_dir() / "crashes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.write_text(f"{crash.title}\n\n{crash.report}\n\n{crash.console}")
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
