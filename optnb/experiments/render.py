"""Rendering the reproduction tables: Markdown (README, report.md), HTML and CSV.

``lines_markdown`` is the long form with provenance (one line per row, column and group of
runs); ``paper_view_markdown`` is the paper's table as printed with our value after each measured
column; ``sizes_markdown`` the parameter/MAC table; ``operations_markdown`` Table 3.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from optnb.atomic import write_text
from optnb.experiments import beyond, beyond_nas, lockfile, paper
from optnb.experiments.tables import COLUMNS, STATUS_ELIGIBLE, STATUS_REHEARSAL, Line, Report
from optnb.experiments.targets import table as report_table
from optnb.nas.operations import PRIMITIVES


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "\u2014"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _num(line: Line, value: float) -> str:
    """Errors with two decimals; search costs (tiny on smoke runs) with three significant digits."""
    if report_table(line.table).column(line.column).kind == "cost":
        return f"{value:.3g}"
    return f"{value:.2f}"


def _ours(line: Line) -> str:
    if line.mean is None:
        return "\u2014"
    spread = f" \u00b1 {_num(line, line.sd)}" if line.sd is not None else ""
    return f"{_num(line, line.mean)}{spread}"


def _diff(value: float | None) -> str:
    return "\u2014" if value is None else f"{value:+.2f}"


def md_table(header: Sequence[str], body: Iterable[Sequence[str]]) -> str:
    def clean(cell: str) -> str:
        return str(cell).replace("|", "\\|").replace("\n", " ")

    rows = [header, ["---"] * len(header), *body]
    return "\n".join("| " + " | ".join(clean(c) for c in r) + " |" for r in rows)


LINE_HEADER = ("Row", "Column", "Paper", "Ours (mean \u00b1 sd)", "n", "\u0394", "Status",
               "Data", "Device", "Epochs", "Date")


def line_cells(line: Line) -> list[str]:
    status = line.status if not line.verdict or not line.eligible else f"{line.verdict}"
    if line.status != STATUS_ELIGIBLE and line.status != "not run":
        status = f"**{line.status}**"
    col = report_table(line.table).column(line.column).label
    return [line.label, col, fmt(line.paper), _ours(line), str(line.n) if line.n else "",
            _diff(line.diff), status, line.dataset or "\u2014", line.device or "\u2014",
            line.epochs or "\u2014", line.date or "\u2014"]


def lines_markdown(found_lines: Sequence[Line]) -> str:
    return md_table(LINE_HEADER, (line_cells(x) for x in found_lines))


SIZE_HEADER = ("Row", "Params paper (M)", "Params ours (M)", "\u0394", "FLOPs paper (G)",
               "FLOPs ours (G, MACs)", "Note")


def sizes_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    body = [
        [r["label"], fmt(r.get("paper_params_m")), fmt(r.get("ours_params_m"), 3),
         _diff(r.get("diff_params_m")), fmt(r.get("paper_flops_g")),
         fmt(r.get("ours_flops_g"), 3), r.get("note", "")]
        for r in rows
    ]
    return md_table(SIZE_HEADER, body)


def operations_markdown(registry: Sequence[str] = PRIMITIVES) -> str:
    """Table 3 beside the operation registry of ``optnb.nas``."""
    body = [[str(op.index), op.label, f"`{op.name}`",
             "yes" if op.name in registry else ("\u2014" if not registry else "**missing**")]
            for op in paper.OPERATIONS]
    return md_table(("#", "Paper (Table 3)", "optnb name", "in optnb.nas"), body)


PAPER_VIEW_LEGEND = (
    "Ours = mean \u00b1 sd over seeds. No mark: paper profile on the real dataset. "
    "\u00a7 reduced schedule (quick profile). \u2021 smoke profile and/or embedded data: "
    "only shows that the pipeline runs, not comparable with the paper."
)


def _rank(line: Line) -> int:
    if line.eligible:
        return 0
    return 1 if line.status.startswith("REDUCED") else 2


def _marked(line: Line) -> str:
    mark = "" if line.eligible else ("\u00a7" if _rank(line) == 1 else "\u2021")
    return _ours(line) + mark


def paper_view_markdown(table_name: str, found_lines: Sequence[Line]) -> str:
    """The paper's table as printed (every row), with an "ours" column after each measured one.

    Where several provenance groups exist for a cell, the most faithful one is shown (paper
    profile on real data, then quick, then smoke/embedded) and marked (see the legend).
    """
    table = paper.table(table_name)
    best: dict[tuple[str, str], Line] = {}
    for line in found_lines:
        if line.table != table_name or not line.n or line.status == STATUS_REHEARSAL:
            continue  # a rehearsal's numbers are never put beside the paper's
        key = (line.row, line.column)
        if key not in best or _rank(line) < _rank(best[key]):
            best[key] = line
    header = ["Model"]
    for col in table.columns:
        header.append(col.label)
        if col.kind in ("error", "cost"):
            header.append(f"{col.label} (ours)")
    body = []
    for row in table.rows:
        cells = [row.label]
        for col in table.columns:
            cells.append(fmt(row.values.get(col.key)))
            if col.kind in ("error", "cost"):
                line = best.get((row.key, col.key))
                cells.append(_marked(line) if line else ("" if not row.reproducible else "\u2014"))
        body.append(cells)
    return md_table(header, body) + "\n\n" + PAPER_VIEW_LEGEND


BEYOND_HEADER = ("Variant", "Column", "Ours (mean \u00b1 sd)", "n", "Baseline",
                 "Baseline (same profile, data)", "\u0394 vs baseline", "Status", "Data", "Device",
                 "Seeds")


NO_BEYOND_RUN = "_No beyond-the-paper run yet (`optnb reproduce --only beyond`, quick or paper)._"


def beyond_markdown(found_lines: Sequence[Line], baseline_lines: Sequence[Line],
                    baselines_of: Callable[[str], Sequence[str]] | None = None,
                    empty: str = NO_BEYOND_RUN) -> str:
    """Variants beyond the paper, each beside its baseline rows measured under the same profile and
    dataset (``baseline_lines``: the lines of the paper table the baselines are rows of; by default
    Table 1's, with ``beyond``'s baseline of each variant). No paper column, no verdict."""
    baselines_of = baselines_of or (lambda row: (beyond.variant(row).baseline,))
    baselines = {(x.row, x.column, x.profile, x.dataset): x for x in baseline_lines if x.n}
    body = []
    for line in found_lines:
        if not line.n:
            continue
        status = line.status if line.eligible else f"**{line.status}**"
        for baseline in baselines_of(line.row):
            base = baselines.get((baseline, line.column, line.profile, line.dataset))
            delta = None if base is None or base.mean is None else line.mean - base.mean
            body.append([line.label, report_table(line.table).column(line.column).label, _ours(line),
                         str(line.n), baseline, _ours(base) if base else "not run",
                         _diff(delta), status, line.dataset or "\u2014", line.device or "\u2014",
                         line.seeds or "\u2014"])
    if not body:
        return empty
    return md_table(BEYOND_HEADER, body)


def write_csv(path: str | Path, found_lines: Sequence[Line]) -> Path:
    """All comparison lines as CSV (numbers unrounded)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for line in found_lines:
        writer.writerow({k: ("" if v is None else v) for k, v in line.as_dict().items()})
    return write_text(path, buf.getvalue())


def lines_html(found_lines: Sequence[Line]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in LINE_HEADER)
    body = []
    for line in found_lines:
        style = "" if line.eligible or line.status == "not run" else ' style="color:#a33"'
        cells = "".join(f"<td>{html.escape(c.strip('*'))}</td>" for c in line_cells(line))
        body.append(f"<tr{style}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"



def operations_section() -> str:
    return "## Table 3: candidate operations\n\n" + operations_markdown()


def report_markdown(report: Report, title: str = "Reproduction report", header: str = "") -> str:
    """The whole report: summary counts, then Tables 1-5 (long form) and the model sizes."""
    c = report.counts()
    parts = [f"# {title}", ""]
    if header:
        parts += [header, ""]
    parts.append(
        f"{c['measured']} measured cell(s); {c['eligible']} made with the paper profile on "
        f"the real dataset ({c['consistent']} consistent with the paper); "
        f"**{c['not_reproduction']} are NOT reproductions** (smoke profile, embedded data "
        "or a reduced schedule) and only show that the pipeline runs."
    )
    drift = lockfile.drift_markdown({m.run_id: report.sidecars.get(m.run_id) or {} for m in report.measurements})
    if drift:
        parts += ["", drift]
    names = [n for n in ("table1", "table2", "table3", "table4", "table5", "beyond", "beyond_nas")
             if n in report.lines or n == "table3"]
    for name in names:
        if name == "table3":
            parts += ["", operations_section()]
            continue
        if name in BEYOND_SECTIONS:
            parts += ["", BEYOND_SECTIONS[name](report)]
            continue
        t = paper.table(name)
        found = report.lines[name]
        measured = [x for x in found if x.n]
        parts += ["", f"## {t.title}", "", paper_view_markdown(name, found), "",
                  f"Provenance of the {len(measured)} measured cell(s) "
                  f"({len(found) - len(measured)} reproducible cell(s) not run):"]
        if measured:
            parts += ["", lines_markdown(measured)]
        if report.sizes.get(name):
            parts += ["", "Model sizes from the code (full size, no training, any profile):",
                      "", sizes_markdown(report.sizes[name])]
        for note in t.notes:
            parts += ["", f"_{note}_"]
    return "\n".join(parts) + "\n"


def beyond_section(report: Report) -> str:
    """The beyond-the-paper table: variants beside their baselines, then their sizes."""
    t = beyond.TABLE
    parts = [f"## {t.title}", "", f"_{t.caption}_", "",
             beyond_markdown(report.lines.get(t.name, []), report.lines.get("table1", []))]
    if report.sizes.get(t.name):
        parts += ["", "Model sizes from the code (full size, no training, any profile):", "",
                  sizes_markdown(report.sizes[t.name])]
    return "\n".join(parts)


def beyond_nas_section(report: Report) -> str:
    """The beyond-the-paper NAS table: each variant beside its Table 4 rows, then cell sizes."""
    t = beyond_nas.TABLE
    empty = ("_No beyond-the-paper NAS variant run yet (`optnb reproduce --only beyond_nas`, quick or "
             f"paper); the stability across seeds is in notebook {beyond_nas.STABILITY_NOTEBOOK}._")
    parts = [f"## {t.title}", "", f"_{t.caption}_", "",
             beyond_markdown(report.lines.get(t.name, []), report.lines.get("table4", []),
                             lambda row: beyond_nas.variant(row).baselines, empty)]
    if report.sizes.get(t.name):
        parts += ["", "Cell sizes in the evaluation network (C = 36, 20 cells, auxiliary head; any profile):",
                  "", sizes_markdown(report.sizes[t.name])]
    parts += ["", f"_{t.notes[-1]}_"]
    return "\n".join(parts)


#: the sections of the tables that are not the paper's, by table name
BEYOND_SECTIONS: Mapping[str, Callable[[Report], str]] = {
    beyond.TABLE.name: beyond_section, beyond_nas.TABLE.name: beyond_nas_section}
