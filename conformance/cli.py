"""`zcfuzz conform`: run the ABI clauses against a target and say plainly what failed and why."""

from __future__ import annotations

import sys

from zcfuzz.vm.errors import UserError, check_outputs, write_output


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "conform", help="check a kernel against the sendfile2 / SPLICE_F_ZC ABI, clause by clause",
        description="Runs every clause of conformance/SPEC.md on one target and prints clause, verdict "
                    "(pass, fail, crash, unsupported, error) and a one-line reason. Exit status 1 when a "
                    "clause failed, crashed or could not run.")
    parser.add_argument("--target", default="host", help="host, or vm:REV (default: host)")
    parser.add_argument("--clause", action="append", metavar="ID", help="run only this clause (repeatable)")
    parser.add_argument("--ktap", metavar="FILE", help="write KTAP v1 results")
    parser.add_argument("--junitxml", metavar="FILE", help="write JUnit XML results")
    parser.add_argument("--json", metavar="FILE", help="write verdicts, kernel info and failing programs")
    parser.add_argument("--matrix", metavar="REVS", help="comma-separated revisions: run on vm:REV for each "
                        "and print a clause x revision matrix")
    parser.add_argument("--md", metavar="FILE", help="with --matrix: write the matrix as Markdown")
    parser.add_argument("--html", metavar="FILE", help="with --matrix: write the matrix as HTML")
    parser.add_argument("--spec", action="store_true", help="regenerate conformance/SPEC.md and exit")
    parser.set_defaults(func=cmd_conform)


def _check_clause_ids(ids: list[str] | None) -> None:
    from zcfuzz.conformance.spec import CLAUSE_BY_ID

    unknown = [i for i in ids or [] if i not in CLAUSE_BY_ID]
    if unknown:
        raise UserError(f"unknown clause {unknown[0]!r}: see conformance/SPEC.md for the ids")


def _run(target_name: str, clause_ids: list[str] | None):
    from zcfuzz.conformance.report import table
    from zcfuzz.conformance.suite import run_suite
    from zcfuzz.vm.backends import open_target

    print(f"# target {target_name}", file=sys.stderr)
    with open_target(target_name) as target:
        kernel_info, results = run_suite(
            target, clause_ids, progress=lambda r: print(f"# {r.clause.id}: {r.verdict}", file=sys.stderr))
    print(table(results), end="")
    return kernel_info, results


def cmd_conform(args) -> int:
    from zcfuzz.conformance import report
    from zcfuzz.conformance.spec import SPEC_PATH, render_markdown
    from zcfuzz.conformance.suite import CRASH, ERROR, FAIL

    if args.spec:
        SPEC_PATH.write_text(render_markdown(), encoding="utf-8")
        print(f"wrote {SPEC_PATH.name}")
        return 0
    _check_clause_ids(args.clause)
    if (args.md or args.html) and not args.matrix:
        raise UserError("--md and --html go with --matrix REVS")
    if args.matrix and (args.ktap or args.junitxml or args.json):
        raise UserError("--ktap, --junitxml and --json report one --target: give --md or --html with --matrix")
    check_outputs(args.ktap, args.junitxml, args.json, args.md, args.html)
    if args.matrix:
        revisions = [r for r in args.matrix.split(",") if r]
        columns = {}
        for revision in revisions:
            columns[revision] = _run(f"vm:{revision}", args.clause)[1]
        markdown = report.matrix_markdown(columns)
        print(markdown, end="")
        write_output(args.md, markdown)
        if args.html:
            write_output(args.html, report.matrix_html(columns))
        every = [r for results in columns.values() for r in results]
    else:
        kernel_info, every = _run(args.target, args.clause)
        if args.ktap:
            write_output(args.ktap, report.ktap(every, report.SUITE_NAME))
        if args.junitxml:
            write_output(args.junitxml, report.junit(every, report.SUITE_NAME))
        if args.json:
            write_output(args.json, report.as_json(args.target, kernel_info, every))
    return 1 if any(r.verdict in (FAIL, CRASH, ERROR) for r in every) else 0
