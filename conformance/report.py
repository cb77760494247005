"""The suite's verdicts for people (a table) and for tools (KTAP v1, JUnit XML, JSON, a matrix)."""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET

from zcfuzz.conformance.suite import CRASH, ERROR, FAIL, PASS, UNSUPPORTED, ClauseResult

SUITE_NAME = "zcfuzz_conformance"  # the clause verdicts' suite in KTAP and JUnit, whichever command ran them


def table(results: list[ClauseResult]) -> str:
    """Clause, verdict, one-line reason; a count of each verdict last."""
    width = max((len(r.clause.id) for r in results), default=6)
    lines = [f"{'clause':<{width}}  {'verdict':<11}  reason"]
    lines += [f"{r.clause.id:<{width}}  {r.verdict:<11}  {r.reason}" for r in results]
    counts = {v: sum(r.verdict == v for r in results) for v in (PASS, FAIL, CRASH, ERROR, UNSUPPORTED)}
    lines.append(", ".join(f"{n} {v}" for v, n in counts.items() if n))
    return "\n".join(lines) + "\n"


def _diagnostic(text: str) -> str:
    return " ".join(text.split())


def ktap(results: list[ClauseResult], suite_name: str) -> str:
    """KTAP v1: one suite, one subtest per clause; unsupported is SKIP, error is ERROR."""
    lines = ["KTAP version 1", "1..1", "  KTAP version 1", f"  # Subtest: {suite_name}",
             f"  1..{len(results)}"]
    for n, r in enumerate(results, 1):
        if r.verdict in (FAIL, CRASH, ERROR):
            lines.append(f"  # {r.clause.id}: {r.verdict}: {_diagnostic(r.reason)}")
        status = "ok" if r.verdict in (PASS, UNSUPPORTED) else "not ok"
        directive = {UNSUPPORTED: " # SKIP ", ERROR: " # ERROR "}.get(r.verdict, "")
        suffix = f"{directive}{_diagnostic(r.reason)}" if directive else ""
        lines.append(f"  {status} {n} {r.clause.id}{suffix}")
    failed = any(r.verdict in (FAIL, CRASH, ERROR) for r in results)
    lines.append(f"{'not ok' if failed else 'ok'} 1 {suite_name}")
    return "\n".join(lines) + "\n"


def junit(results: list[ClauseResult], suite_name: str) -> str:
    counts = {v: sum(r.verdict == v for r in results) for v in (FAIL, CRASH, ERROR, UNSUPPORTED)}
    root = ET.Element("testsuites")
    suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(results)),
                       failures=str(counts[FAIL] + counts[CRASH]), errors=str(counts[ERROR]),
                       skipped=str(counts[UNSUPPORTED]))
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=suite_name, name=r.clause.id)
        if r.verdict in (FAIL, CRASH):
            element = ET.SubElement(case, "failure", type=r.verdict, message=r.reason)
            if r.program:
                element.text = json.dumps(r.program, indent=1)
        elif r.verdict == ERROR:
            ET.SubElement(case, "error", message=r.reason)
        elif r.verdict == UNSUPPORTED:
            ET.SubElement(case, "skipped", message=r.reason)
    return ET.tostring(root, encoding="unicode") + "\n"


def as_json(target: str, kernel_info: dict, results: list[ClauseResult]) -> str:
    return json.dumps({"target": target, "kernel": kernel_info, "clauses": [r.to_json() for r in results]},
                      indent=2) + "\n"


def matrix_markdown(columns: dict[str, list[ClauseResult]]) -> str:
    """Clause x revision; failing programs follow the table as evidence."""
    names = list(columns)
    ids = [r.clause.id for r in next(iter(columns.values()), [])]
    cell = {(name, r.clause.id): r for name, results in columns.items() for r in results}
    lines = ["| clause | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for clause_id in ids:
        lines.append(f"| `{clause_id}` | " + " | ".join(cell[(n, clause_id)].verdict for n in names) + " |")
    evidence = [(n, cell[(n, c)]) for c in ids for n in names if cell[(n, c)].program]
    if evidence:
        lines += ["", "## Evidence", ""]
    for name, r in evidence:
        lines += [f"### {r.clause.id} on {name}: {r.verdict}", "", r.reason, "", "```json",
                  json.dumps(r.program, indent=1), "```", ""]
    return "\n".join(lines) + "\n"


def matrix_html(columns: dict[str, list[ClauseResult]]) -> str:
    names = list(columns)
    ids = [r.clause.id for r in next(iter(columns.values()), [])]
    cell = {(name, r.clause.id): r for name, results in columns.items() for r in results}
    colours = {PASS: "#cfc", FAIL: "#fcc", CRASH: "#f99", ERROR: "#fc9", UNSUPPORTED: "#eee"}
    rows = []
    for clause_id in ids:
        tds = []
        for n in names:
            r = cell[(n, clause_id)]
            detail = html.escape(r.reason)
            if r.program:
                detail += "<pre>" + html.escape(json.dumps(r.program, indent=1)) + "</pre>"
            tds.append(f'<td style="background:{colours[r.verdict]}"><details><summary>{r.verdict}</summary>'
                       f"{detail}</details></td>")
        rows.append(f"<tr><th>{html.escape(clause_id)}</th>{''.join(tds)}</tr>")
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>zcfuzz conformance matrix</title>"
            "</head><body><table border=\"1\" cellspacing=\"0\" cellpadding=\"4\">"
            f"<tr><th>clause</th>{head}</tr>{''.join(rows)}</table></body></html>\n")
