"""`zcfuzz kernel ...`, `zcfuzz vm ...` and `zcfuzz triage`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from zcfuzz.vm import kbuild
from zcfuzz.vm.errors import UserError


def add_kernel_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rev", default="v2", help="revision name under kernel-patches/ or a revision folder")
    parser.add_argument("--source", help="kernel tree to use as the base instead of Debian's linux-source-6.12")
    parser.add_argument("--config", action="append", metavar="FRAGMENT",
                        help="extra config fragment (file, or name under kernel-patches/config/); repeatable")


def add_cover_files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cover", nargs="+", action="extend", metavar="FILE",
                        help="C files of the kernel tree (net/ipv4/tcp.c) built with KCOV and line tables "
                        "beyond the series' own; a different set is a different build")


def cmd_kernel_build(args) -> int:
    started = time.monotonic()
    build = kbuild.build_kernel(args.rev, args.source, args.config, jobs=args.jobs,
                                progress=lambda line: print(line, file=sys.stderr), cover=args.cover)
    info = kbuild.kernel_info(build)
    elapsed = time.monotonic() - started
    print(f"{info['revision']}: {info['boot_image']} ({elapsed:.1f} s)")
    return 0


def cmd_kernel_check(args) -> int:
    checked = kbuild.check_each_patch(args.rev, args.source, args.config,
                                      progress=lambda line: print(line, file=sys.stderr))
    for name, objects in checked:
        print(f"ok {name} ({len(objects)} objects)")
    print(f"{len(checked)} patches of {args.rev} build one by one")
    return 0


def cmd_kernel_info(args) -> int:
    build = kbuild.cached_build(args.rev, args.source, args.config, args.cover)
    if build is None:
        raise UserError(f"{args.rev} is not built with these inputs: run 'zcfuzz kernel build --rev {args.rev}'")
    info = kbuild.kernel_info(build)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:16} {value}")
    return 0


def cmd_vm_run(args) -> int:
    from zcfuzz.vm.backends import open_target
    from zcfuzz.vm.program import Program
    from zcfuzz.vm.target import KernelCrash

    program = Program.load(args.program)
    with open_target(args.target, **({} if args.target == "host" else {"accel": args.accel})) as target:
        number = target.kernel_info().get("nr_sendfile2")
        if program.sysno_of("sendfile2") is None and number is not None:
            program = dataclasses.replace(program, sysno=(*program.sysno, ("sendfile2", number)))
        try:
            result = target.run(program)
        except KernelCrash as crash:
            print(json.dumps({"crash": {"title": crash.title, "report": crash.report}}, indent=2))
            return 1
    print(json.dumps(result.to_json(), indent=2))
    return 0


def cmd_vm_shell(args) -> int:
    from zcfuzz.vm.qemu import shell

    return shell(args.rev, source=args.source, config=args.config, accel=args.accel)


def register(sub) -> None:
    kernel = sub.add_parser("kernel", help="build kernels for revisions of the series").add_subparsers(
        dest="kernel_command", required=True, metavar="ACTION")
    build = kernel.add_parser("build", help="apply a revision to the base, configure, build and cache it")
    add_kernel_inputs(build)
    build.add_argument("--jobs", "-j", type=int, help="parallel make jobs (default: cores + 1)")
    add_cover_files(build)
    build.set_defaults(func=cmd_kernel_build)
    check = kernel.add_parser("check", help="prove each patch of a revision builds on its own")
    add_kernel_inputs(check)
    check.set_defaults(func=cmd_kernel_check)
    info = kernel.add_parser("info", help="what a built kernel is: versions, hashes, syscall number, flags")
    add_kernel_inputs(info)
    info.add_argument("--json", action="store_true", help="print JSON")
    add_cover_files(info)
    info.set_defaults(func=cmd_kernel_info)

    machine = sub.add_parser("vm", help="run programs on a target; a shell on a guest").add_subparsers(
        dest="vm_command", required=True, metavar="ACTION")
    run = machine.add_parser("run", help="run one program (JSON, see vm/PROGRAM.md) and print its result")
    run.add_argument("program", help="program JSON file")
    run.add_argument("--target", default="vm:v2", help="host, or vm:REV")
    run.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    run.set_defaults(func=cmd_vm_run)
    shell_parser = machine.add_parser("shell", help="interactive shell on a guest booted on a revision")
    add_kernel_inputs(shell_parser)
    shell_parser.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto")
    shell_parser.set_defaults(func=cmd_vm_shell)

    from zcfuzz.vm.triage.command import register as register_triage

    register_triage(sub)
