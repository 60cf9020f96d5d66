"""``optnb site``: the static HTML of a reproduction's executed notebooks (``optnb.experiments.site``).

The fixture is a results folder as ``optnb reproduce`` leaves it: executed notebooks (Markdown
with math, PNG figures, stream output, an error), their sidecars, ``report/runs.csv`` in plan
order (not notebook order), ``report/report.md`` and notebook 90's run, made with nbformat.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from optnb.cli import main
from optnb.experiments import site
from optnb.experiments.results import SIDECAR, run_id_for
from optnb.experiments.targets import NB_REPORT

REPORT_RUN = run_id_for(NB_REPORT, {"PROFILE": "smoke"})
#: run id -> (notebook, figures, status, extra parameters), in the plan's order (runs.csv)
RUNS: dict[str, tuple[str, int, str, dict[str, Any]]] = {
    "06_train_cifar-aaaa0001": ("06_train_cifar", 2, "complete", {"MODEL": "hbnet20", "DATASET": "cifar10"}),
    "06_train_cifar-aaaa0002": ("06_train_cifar", 1, "complete", {"MODEL": "resnet20"}),
    "01_forward_pass-bbbb0001": ("01_forward_pass", 1, "complete", {}),
    "00_tour-cccc0001": ("00_tour", 1, "failed", {}),
}
BLOCKED = "09_nas_evaluate-dddd0001"  # in runs.csv, never ran: no folder
ERROR = "cell 3: ZeroDivisionError: division by zero"
SHA = "0123456789abcdef0123456789abcdef01234567"


def png(width: int = 3, height: int = 2) -> str:
    """A tiny RGB PNG, base64 (what a notebook's image/png output holds)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    raw = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return base64.b64encode(raw).decode()


def executed_notebook(stem: str, figures: int, failed: bool, params: dict[str, Any]) -> Any:
    cells = [new_markdown_cell(f"# {stem[:2]} \u00b7 {stem[3:].replace('_', ' ').title()} (%)\n\n"
                               "The update $x_{k+1} = x_k - s \\nabla f(x_k)$, eq. (1).")]
    for k in range(figures):
        cells.append(new_code_cell(f"plot({k})", execution_count=k + 1, outputs=[
            new_output("stream", name="stdout", text=f"figure {k} of {stem}\n"),
            new_output("display_data", data={"image/png": png(3 + k, 2), "text/plain": "<Figure>"}),
        ]))
    if failed:
        cells.append(new_code_cell("1 / 0", execution_count=figures + 1, outputs=[
            new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                       traceback=["ZeroDivisionError"])]))
    nb = new_notebook(cells=cells)
    nb.metadata["papermill"] = {"parameters": {"PROFILE": "smoke", "SEED": 0, "LIVE": "off",
                                               "RUN_ID": "x", "RESULTS_DIR": "/r", **params}}
    return nb


def sidecar(run_id: str, stem: str, status: str, params: dict[str, Any], finished: str) -> dict[str, Any]:
    out = {"notebook": stem, "run_id": run_id, "status": status, "profile": "smoke",
           "parameters": {"PROFILE": "smoke", "SEED": 0, "LIVE": "off", **params},
           "dataset": params.get("DATASET", "embedded"), "dataset_real": "DATASET" in params, "device": "cpu",
           "versions": {"torch": "2.9.1+cpu"}, "git": {"sha": SHA, "dirty": True},
           "started": finished, "finished": finished, "notes": [], "results": {"acc": {"value": 0.5}}}
    if status == "failed":
        out["error"] = ERROR
    return out


def write_run(results: Path, run_id: str, stem: str, figures: int, status: str, params: dict[str, Any],
              finished: str = "2026-01-02T03:04:05+00:00") -> None:
    folder = results / "runs" / run_id
    folder.mkdir(parents=True)
    nbformat.write(executed_notebook(stem, figures, status == "failed", params), str(folder / f"{stem}.ipynb"))
    (folder / SIDECAR).write_text(json.dumps(sidecar(run_id, stem, status, params, finished)))


def make_results(root: Path, report_notebook: bool = True) -> Path:
    """A results folder as a smoke reproduction leaves it (see module docstring)."""
    results = root / "results"
    for run_id, (stem, figures, status, params) in RUNS.items():
        write_run(results, run_id, stem, figures, status, params)
    report = results / "report"
    report.mkdir()
    rows = [{"run_id": r, "notebook": s, "ok": st == "complete", "skipped": False, "duration_s": 1.0,
             "error": ERROR if st == "failed" else ""} for r, (s, _, st, _) in RUNS.items()]
    rows.append({"run_id": BLOCKED, "notebook": "09_nas_evaluate", "ok": False, "skipped": False,
                 "duration_s": 0.0, "error": "blocked: needs 08_nas_search-x, which did not complete"})
    with (report / "runs.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.utime(report / "runs.csv", (1767322800, 1767322800))  # 2026-01-02 03:00 UTC, before the runs finished
    (report / "report.md").write_text("# Reproduction report\n\n| Row | Ours |\n| --- | --- |\n| hbnet20 | 0.50 |\n")
    if report_notebook:  # notebook 90, run by reproduce after runs.csv was written
        write_run(results, REPORT_RUN, NB_REPORT, 1, "complete", {})
    return results


def figures_in(nb_path: Path) -> int:
    nb = nbformat.read(str(nb_path), as_version=4)
    return sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))


EXPECTED_ORDER = ["00_tour-cccc0001", "01_forward_pass-bbbb0001", "06_train_cifar-aaaa0001",
                  "06_train_cifar-aaaa0002", BLOCKED, REPORT_RUN]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    results = make_results(tmp_path_factory.mktemp("site"))
    index, pages = site.build(results)
    assert pages == 5  # every run with a folder; the blocked one has none
    return results, index


def test_the_index_lists_the_runs_in_notebook_order_grouped_with_their_parameters(built):
    results, index = built
    assert index == results / "site" / "index.html"
    text = index.read_text()
    positions = [text.index(run_id) for run_id in EXPECTED_ORDER]
    assert positions == sorted(positions)
    headings = re.findall(r"<h2>([^<:]+)", text)
    assert headings == ["00_tour", "01_forward_pass", "06_train_cifar", "09_nas_evaluate", NB_REPORT]
    assert "MODEL=hbnet20" in text and "MODEL=resnet20" in text
    assert "RUN_ID" not in text and "RESULTS_DIR" not in text  # injected by the runner, not chosen
    assert "<h2>06_train_cifar: 06 \u00b7 Train Cifar (%)</h2>" in text  # the notebook's own title
    for run_id in EXPECTED_ORDER:
        has_page = run_id != BLOCKED
        assert (f'href="runs/{run_id}.html"' in text) is has_page
        assert (results / "site" / "runs" / f"{run_id}.html").is_file() is has_page
    assert "blocked: needs 08_nas_search-x" in text
    local = site.find_mathjax()  # pip's jupyter-server-mathjax, when installed
    assert ("Math is typeset by the local MathJax" if local else "Math is shown as TeX source") in text
    assert 'href="report.html"' in text and (results / "site" / "report.md").is_file()
    assert "<td>hbnet20</td>" in (results / "site" / "report.html").read_text()


def test_every_page_has_its_provenance_line_and_its_figures_embedded(built):
    results, _ = built
    for run_id in set(EXPECTED_ORDER) - {BLOCKED}:
        page = (results / "site" / "runs" / f"{run_id}.html").read_text()
        executed = next((results / "runs" / run_id).glob("*.ipynb"))
        line = html.unescape(re.sub(r"<[^>]+>", "", re.search(r'<p class="optnb-provenance">(.*?)</p>', page).group(1)))
        stem, _, status, params = RUNS.get(run_id, (NB_REPORT, 1, "complete", {}))
        dataset = "cifar10 (real)" if "DATASET" in params else "embedded (a stand-in, not the paper's data)"
        for field in (f"notebook {stem} \u00b7 run {run_id} \u00b7 status {status} \u00b7 profile smoke",
                      f"dataset {dataset}", "device cpu", "seed 0",
                      f"git {SHA[:12]} (uncommitted changes)", "torch 2.9.1+cpu", "finished 2026-01-02 03:04:05 UTC"):
            assert field in line, (field, line)
        images = re.findall(r'<img [^>]*src="([^"]*)"', page)
        assert len(images) == figures_in(executed) and images
        assert all(src.startswith("data:image/png;base64,") for src in images)
        assert 'href="../index.html"' in page and 'href="../report.html"' in page
        assert "\\nabla f(x_k)" in page  # TeX source in the page; a local MathJax typesets it
        assert "figure 0 of" in page  # the stream output


def test_a_failed_run_says_so_and_shows_its_error(built):
    results, _ = built
    page = (results / "site" / "runs" / "00_tour-cccc0001.html").read_text()
    assert "status <b>failed</b>" in page
    assert re.search(r'class="optnb-failed"><b>FAILED</b><pre>' + re.escape(ERROR), page)
    ok = (results / "site" / "runs" / "01_forward_pass-bbbb0001.html").read_text()
    assert "status <b>complete</b>" in ok and 'class="optnb-failed"' not in ok


def test_no_page_needs_a_script_or_style_from_the_internet(built):
    results, _ = built
    for page in (results / "site").rglob("*.html"):
        text = page.read_text()
        fetched = re.findall(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="([^"]*)"', text)
        assert not [u for u in fetched if re.match(r"(https?:)?//", u)], (page.name, fetched)
        assert "cdnjs" not in text and "unpkg" not in text and "require.js" not in text


def test_the_report_notebook_of_an_older_reproduction_is_not_shown(tmp_path):
    results = make_results(tmp_path, report_notebook=False)
    write_run(results, REPORT_RUN, NB_REPORT, 1, "complete", {}, finished="2025-06-01T00:00:00+00:00")
    runs, source = site.latest_runs(results)
    assert [r.run_id for r in runs] == EXPECTED_ORDER[:-1]
    assert "runs.csv" in source


def test_without_runs_csv_every_run_folder_is_shown(tmp_path):
    results = make_results(tmp_path)
    (results / "report" / "runs.csv").unlink()
    runs, source = site.latest_runs(results)
    assert [r.run_id for r in runs] == [r for r in EXPECTED_ORDER if r != BLOCKED]
    assert "not found" in source


def test_a_rebuild_replaces_the_site_and_a_foreign_folder_is_never_replaced(tmp_path):
    results = make_results(tmp_path)
    site.build(results)
    stale = results / "site" / "runs" / "stale.html"
    stale.write_text("old")
    site.build(results)
    assert not stale.exists() and (results / "site" / "index.html").is_file()
    assert not [p for p in results.iterdir() if p.name.startswith(".site")]  # no temp folders left
    foreign = tmp_path / "documents"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(site.SiteFolderError, match="not a site built by optnb site"):
        site.build(results, foreign)
    assert (foreign / "thesis.tex").read_text() == "keep me"


def test_a_failed_build_keeps_the_previous_site(tmp_path, monkeypatch):
    results = make_results(tmp_path)
    site.build(results)
    before = (results / "site" / "index.html").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("export failed")

    monkeypatch.setattr(site, "render_index", broken)
    with pytest.raises(RuntimeError):
        site.build(results)
    assert (results / "site" / "index.html").read_text() == before
    assert not [p for p in results.iterdir() if p.name.startswith(".site")]


def test_a_local_mathjax_is_copied_in_and_loaded_by_a_relative_path(tmp_path, monkeypatch):
    mathjax = tmp_path / "prefix" / "share" / "jupyter" / "nbextensions" / "mathjax"
    (mathjax / "jax").mkdir(parents=True)
    (mathjax / "MathJax.js").write_text("window.MathJax = {};")
    assert site.find_mathjax([tmp_path / "prefix"]) is None  # not the combined configuration the site loads
    (mathjax / "config").mkdir()
    (mathjax / "config" / f"{site.MATHJAX_COMBINED}.js").write_text("MathJax.Hub.Config({});")
    assert site.find_mathjax([tmp_path / "prefix"]) == mathjax
    assert site.find_mathjax([tmp_path]) is None
    monkeypatch.setattr(site, "find_mathjax", lambda: mathjax)
    results = make_results(tmp_path)
    site.build(results)
    page = (results / "site" / "runs" / "01_forward_pass-bbbb0001.html").read_text()
    assert ('<script src="../_static/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,optnb-site,Safe">'
            in page)
    config = (results / "site" / "_static" / "mathjax" / "config" / "optnb-site.js").read_text()
    assert "webFont: null" in config  # chromium refuses web fonts over file://
    assert (results / "site" / "_static" / "mathjax" / "MathJax.js").is_file()
    assert "typeset by the local MathJax" in (results / "site" / "index.html").read_text()


def test_a_run_without_a_readable_notebook_gets_a_page_that_says_why(tmp_path):
    results = make_results(tmp_path)
    (results / "runs" / "01_forward_pass-bbbb0001" / "01_forward_pass.ipynb").write_text('{"cells": ')  # killed
    (results / "runs" / "06_train_cifar-aaaa0002" / "06_train_cifar.ipynb").unlink()  # a torchrun job
    site.build(results)
    pages = results / "site" / "runs"
    killed = (pages / "01_forward_pass-bbbb0001.html").read_text()
    assert "The executed notebook 01_forward_pass.ipynb could not be read (NotJSONError" in killed
    torchrun = (pages / "06_train_cifar-aaaa0002.html").read_text()
    assert "The executed notebook is missing (a torchrun job" in torchrun
    assert "status <b>complete</b>" in torchrun and '"acc": {' in html.unescape(torchrun)


def test_widget_outputs_become_a_note(tmp_path):
    nb = executed_notebook("00_tour", 0, False, {})
    nb.cells.append(new_code_cell("explorer", outputs=[new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
        "text/plain": "VBox(children=...)"})]))
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    body, _ = site.exporter().from_notebook_node(site.offline(nb), resources={"optnb_header": "", "optnb_css": ""})
    assert site.WIDGET_NOTE in body and "VBox" not in body and "widget-state" not in body


def test_the_command_builds_the_site_and_says_where(tmp_path, capsys):
    results = make_results(tmp_path)
    out = tmp_path / "www"
    assert main(["site", "--results", str(results), "--out", str(out)]) == 0
    said = capsys.readouterr().out.strip()
    assert said.startswith("site: 5 run page(s) in ") and said.endswith(str(out / "index.html"))
    assert (out / "index.html").is_file() and (out / site.MARKER).is_file()


@pytest.mark.parametrize("with_runs_folder", [False, True])
def test_nothing_executed_is_one_line_and_exit_2(tmp_path, capsys, with_runs_folder):
    results = tmp_path / "results"
    if with_runs_folder:  # a run folder with a sidecar but no executed notebook (a torchrun job)
        (results / "runs" / "06_train_cifar-aaaa0001").mkdir(parents=True)
        (results / "runs" / "06_train_cifar-aaaa0001" / SIDECAR).write_text("{}")
    assert main(["site", "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"optnb: error: no executed notebooks under {results / 'runs'}: "
                   "run `make reproduce` first")
    assert not (results / "site").exists()
