"""The rendered site of a reproduction (``optnb site``): static HTML of its executed notebooks.

Which runs: those of the latest ``optnb reproduce`` on the results folder, as listed in
``<results>/report/runs.csv``, plus its report notebook (90) when that ran after the list was
written. Without a ``runs.csv`` every run folder under ``<results>/runs/`` is shown (the index
says so). The index lists them in notebook order (00, 01, ..., 10, 90), the runs of one notebook
grouped under it with their parameters; every run has a page at ``runs/<run id>.html`` with its
provenance line on top (from the run's sidecar), a failed run's error, and the executed notebook
as nbconvert renders it, figures embedded as data URIs.

Read offline, without a kernel: the pages load no script or style from the internet (no
require.js, no widget manager, no mermaid; widget outputs become a note). Math is typeset by a
local MathJax 2 when one is installed (copied into ``_static/mathjax``), else it stays TeX source
and the index says so. ``report.md`` is copied in and rendered as ``report.html``.

The site is built in a temporary folder beside its destination, then swapped in: a failed build
leaves the previous site as it was. A destination that exists and is not a site built here
(no ``.optnb-site`` marker) is never replaced.
"""

from __future__ import annotations

import csv
import html
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import nbformat
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from optnb.atomic import write_text
from optnb.experiments.results import error_line, read_sidecar, run_id_for
from optnb.experiments.runner import INJECTED
from optnb.experiments.targets import NB_REPORT
from optnb.paths import ensure_dir, is_run_id, results_dir, run_dir, runs_dir

MARKER = ".optnb-site"
RUNS_CSV = Path("report") / "runs.csv"
REPORT_MD = Path("report") / "report.md"
PAGES = "runs"  # pages live in <site>/runs/, so no run id can collide with index.html
#: MathJax 2's combined configuration the site loads (pip's jupyter-server-mathjax ships only
#: this one), then the site's own ``config/<MATHJAX_SITE_CONFIG>.js`` on top of it
MATHJAX_COMBINED = "TeX-AMS-MML_HTMLorMML-full"
MATHJAX_SITE_CONFIG = "optnb-site"
#: chromium refuses web fonts over file:// (a CORS error, origin null), so the site's MathJax uses
#: the reader's installed fonts: plainer glyphs, but every formula renders offline
MATHJAX_SITE_JS = ("MathJax.Hub.Config({\"HTML-CSS\": {availableFonts: [], preferredFont: null, webFont: null,\n"
                   "  imageFont: null}});\n"
                   f"MathJax.Ajax.loadComplete(\"[MathJax]/config/{MATHJAX_SITE_CONFIG}.js\");\n")
#: where a MathJax 2 tree (``MathJax.js`` beside ``jax/``) may be installed, relative to a prefix
MATHJAX_PLACES = ("share/jupyter/nbextensions/mathjax", "share/javascript/mathjax",
                  "lib/python*/site-packages/notebook/static/components/MathJax",
                  "lib/python*/site-packages/jupyter_server/static/components/MathJax",
                  "lib/python*/site-packages/jupyter_server_mathjax/static")
WIDGET_NOTE = "[interactive widget: open the notebook in JupyterLab (make lab) to use it]"
NOT_PAPER_DATA = "a stand-in, not the paper's data"

_CSS = """
body.optnb-site { font: 15px/1.5 system-ui, sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em; }
.optnb-bar { font: 13px/1.5 system-ui, sans-serif; background: #f3f5f7; border: 1px solid #d0d7de;
  border-radius: 4px; padding: .5em .8em; margin: 0 0 1em 0; }
.optnb-bar a { margin-right: 1em; }
.optnb-failed { background: #fdecea; border: 1px solid #c62828; border-radius: 4px; padding: .5em .8em;
  margin: 0 0 1em 0; }
.optnb-failed pre { white-space: pre-wrap; margin: .3em 0 0 0; }
.optnb-status-failed, .optnb-status-not-run { color: #c62828; font-weight: bold; }
.optnb-params { color: #555; font-size: 90%; }
body.optnb-site a.anchor-link { display: none; }
body.optnb-site table { border-collapse: collapse; }
body.optnb-site td, body.optnb-site th { border: 1px solid #ccc; padding: 2px 6px; }
"""
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock -%}
{%- block jupyter_widgets -%}{%- endblock -%}
{%- block html_head_js_mermaidjs -%}{%- endblock -%}
{%- block html_head_js_mathjax -%}{%- if resources.mathjax_url -%}{{ super() }}{%- endif -%}{%- endblock -%}
{%- block extra_css -%}<style type="text/css">{{ resources.optnb_css }}</style>{%- endblock -%}
{%- block body_header -%}{{ super() }}{{ resources.optnb_header }}{%- endblock -%}
"""


class NoExecutedNotebooksError(LookupError):
    """Nothing to render: the results folder holds no executed notebook."""


class SiteFolderError(ValueError):
    """A destination that is not a site this module built (it would be replaced)."""


@dataclass(frozen=True)
class SiteRun:
    """One run of the reproduction as the site shows it."""

    run_id: str
    notebook: str  # stem, e.g. "06_train_cifar"
    sidecar: Mapping[str, Any] = field(default_factory=dict)
    executed: Path | None = None  # the executed notebook, when there is one
    error: str = ""  # from runs.csv when the sidecar has none (a blocked run has no folder)

    @property
    def status(self) -> str:
        return str(self.sidecar.get("status") or ("failed" if self.error else "not run"))

    @property
    def failed(self) -> bool:
        return self.status != "complete"

    @property
    def has_page(self) -> bool:
        """A run that left a folder (sidecar or notebook) has a page; a blocked one has none."""
        return bool(self.sidecar) or self.executed is not None

    @property
    def href(self) -> str:
        return f"{PAGES}/{self.run_id}.html"

    @property
    def error_text(self) -> str:
        return str(self.sidecar.get("error") or self.error)


# ----------------------------------------------------------------------------------------------
# Which runs


def _executed_notebook(folder: Path, stem: str) -> Path | None:
    named = folder / f"{stem}.ipynb"
    if named.is_file():
        return named
    others = sorted(folder.glob("*.ipynb")) if folder.is_dir() else []
    return others[0] if others else None


def _site_run(results: Path, run_id: str, notebook: str = "", error: str = "") -> SiteRun:
    folder = run_dir(run_id, results, create=False)
    sidecar = read_sidecar(folder)
    sidecar = sidecar if isinstance(sidecar, dict) else {}
    stem = str(sidecar.get("notebook") or notebook or run_id.rsplit("-", 1)[0])
    return SiteRun(run_id, stem, sidecar, _executed_notebook(folder, stem), error)


def _report_run(results: Path, listed: Sequence[SiteRun], written: float) -> SiteRun | None:
    """Notebook 90 of the same reproduction: the run ``run_report_notebook`` makes (parameters
    ``{"PROFILE": <the plan's profile>}``), finished after ``runs.csv`` was written."""
    profiles = {(r.sidecar.get("parameters") or {}).get("PROFILE") for r in listed} - {None}
    for profile in sorted(map(str, profiles)):
        run = _site_run(results, run_id_for(NB_REPORT, {"PROFILE": profile}), NB_REPORT)
        finished = _timestamp(run.sidecar.get("finished"))
        if run.executed is not None and finished is not None and finished >= int(written):
            return run
    return None


def _timestamp(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def latest_runs(results: Path) -> tuple[list[SiteRun], str]:
    """The runs of the latest reproduction in notebook order (stable within a notebook), and
    where that list comes from (one sentence for the index)."""
    runs, listing = runs_dir(results), results / RUNS_CSV
    if listing.is_file():
        with listing.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if is_run_id(r.get("run_id"))]
        found = [_site_run(results, r["run_id"], r.get("notebook") or "", r.get("error") or "") for r in rows]
        report = _report_run(results, found, listing.stat().st_mtime)
        found += [report] if report is not None and report.run_id not in {r.run_id for r in found} else []
        source = f"the latest reproduction, as listed in {listing}"
    else:
        folders = sorted(p.name for p in runs.iterdir() if p.is_dir() and is_run_id(p.name)) if runs.is_dir() else []
        found = [_site_run(results, name) for name in folders]
        source = f"every run folder under {runs} ({listing} not found: no reproduction recorded its runs)"
    found.sort(key=lambda r: r.notebook)
    if not any(r.executed for r in found):
        raise NoExecutedNotebooksError(f"no executed notebooks under {runs}: run `make reproduce` first")
    return found, source


# ----------------------------------------------------------------------------------------------
# What a page says


def _git(sidecar: Mapping[str, Any]) -> str:
    git = sidecar.get("git") or {}
    sha = str(git.get("sha") or "")[:12] or "unknown"
    return sha + (" (uncommitted changes)" if git.get("dirty") else "")


def _finished(value: Any) -> str:
    stamp = _timestamp(value)
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if stamp is not None else "not finished"


def provenance(run: SiteRun) -> list[tuple[str, str]]:
    """The provenance line of a run, from its sidecar: (label, value) pairs."""
    s = run.sidecar
    dataset = str(s.get("dataset") or "unknown")
    if s.get("dataset_real") is True:
        dataset += " (real)"
    elif s.get("dataset_real") is False:
        dataset += f" ({NOT_PAPER_DATA})"
    params = s.get("parameters") or {}
    return [("notebook", run.notebook), ("run", run.run_id), ("status", run.status),
            ("profile", str(s.get("profile") or "unknown")), ("dataset", dataset),
            ("device", str(s.get("device") or "unknown")), ("seed", str(params.get("SEED", "unknown"))),
            ("git", _git(s)), ("torch", str((s.get("versions") or {}).get("torch") or "unknown")),
            ("finished", _finished(s.get("finished")))]


def parameters(run: SiteRun, nb: Any | None = None) -> dict[str, Any]:
    """The parameters the run was given (papermill's record, else the sidecar's), less the ones
    the runner injects (``runner.INJECTED``)."""
    given = (nb.metadata.get("papermill", {}).get("parameters") if nb is not None else None) \
        or run.sidecar.get("parameters") or {}
    if not isinstance(given, Mapping):
        return {}
    return {k: v for k, v in given.items() if k not in INJECTED}


def _nav(prefix: str, report: bool) -> str:
    links = [f'<a href="{prefix}index.html">Index</a>']
    if report:
        links.append(f'<a href="{prefix}report.html">Report</a>')
    return " ".join(links)


def page_header(run: SiteRun, report: bool, prefix: str = "../") -> str:
    """The bar on top of a run's page: links, the provenance line, a failed run's error."""
    cells = " &middot; ".join(f"{html.escape(k)} <b>{html.escape(v)}</b>" for k, v in provenance(run))
    out = f'<div class="optnb-bar"><p>{_nav(prefix, report)}</p><p class="optnb-provenance">{cells}</p></div>'
    if run.failed:
        error = run.error_text or "no error recorded"
        out += (f'<div class="optnb-failed"><b>{html.escape(run.status.upper())}</b>'
                f"<pre>{html.escape(error)}</pre></div>")
    return out


def _shell(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style type="text/css">{_CSS}</style></head><body class="optnb-site">{body}</body></html>\n')


# ----------------------------------------------------------------------------------------------
# Rendering


def find_mathjax(prefixes: Iterable[str | os.PathLike] | None = None) -> Path | None:
    """A local MathJax 2 folder (``MathJax.js`` and the combined configuration the site loads;
    nbconvert's template configures version 2) under the environment's prefix (pip's jupyter-server-mathjax) or ``/usr``
    (Debian's libjs-mathjax)."""
    for prefix in prefixes if prefixes is not None else (sys.prefix, "/usr"):
        for place in MATHJAX_PLACES:
            for folder in sorted(Path(prefix).glob(place)):
                if (folder / "MathJax.js").is_file() and (folder / "config" / f"{MATHJAX_COMBINED}.js").is_file():
                    return folder
    return None


def exporter(mathjax_url: str = "") -> HTMLExporter:
    """nbconvert's lab template without the scripts it would fetch from a CDN."""
    loader = jinja2.DictLoader({"optnb_site.html.j2": _TEMPLATE})
    return HTMLExporter(template_name="lab", template_file="optnb_site.html.j2", extra_loaders=[loader],
                        embed_images=True, mathjax_url=mathjax_url)


def offline(nb: Any) -> Any:
    """``nb`` without widget state; a widget's output becomes a note (it needs a kernel)."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if "application/vnd.jupyter.widget-view+json" in output.get("data", {}):
                output["data"] = {"text/plain": WIDGET_NOTE}
    return nb


def render_page(run: SiteRun, export: HTMLExporter, report: bool) -> str:
    """A run's page: the bar (:func:`page_header`), then the executed notebook, or, where there
    is none or it cannot be read or rendered, what the sidecar recorded and why."""
    header = page_header(run, report)
    nb, problem = _read(run)
    if nb is not None:
        try:
            body, _ = export.from_notebook_node(offline(nb), resources={
                "metadata": {"name": f"{run.notebook} ({run.run_id})"}, "optnb_header": header, "optnb_css": _CSS})
            return body
        except Exception as err:  # noqa: BLE001 - one notebook nbconvert cannot render must not lose the site
            problem = f"could not be rendered ({error_line(err)})"
    results = json.dumps(run.sidecar.get("results") or {}, indent=2, sort_keys=True)
    return _shell(run.run_id, f"{header}<h1>{html.escape(run.run_id)}</h1><p>The executed notebook "
                              f"{html.escape(problem)}. The results its sidecar recorded:</p>"
                              f"<pre>{html.escape(results)}</pre>")


def _read(run: SiteRun) -> tuple[Any | None, str]:
    """The executed notebook, or None and why not."""
    if run.executed is None:
        return None, "is missing (a torchrun job, or a run that failed before writing one)"
    try:
        return nbformat.read(str(run.executed), as_version=4), ""
    except Exception as err:  # noqa: BLE001 - nbformat raises many kinds for a file that is not a notebook
        return None, f"{run.executed.name} could not be read ({error_line(err)})"


def _title(nb: Any | None) -> str:
    """The first Markdown heading of the notebook."""
    for cell in nb.cells if nb is not None else ():
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def render_index(runs: Sequence[SiteRun], source: str, math: str, report: bool) -> str:
    parts = [f"<h1>optnb: the executed notebooks</h1><div class=\"optnb-bar\"><p>{_nav('', report)}</p>"
             f"<p>Runs of {html.escape(source)}; built {datetime.now(UTC):%Y-%m-%d %H:%M UTC}. "
             f"{sum(r.failed for r in runs)} of {len(runs)} run(s) did not complete.</p>"
             f"<p>{html.escape(math)}</p></div>"]
    stems = list(dict.fromkeys(r.notebook for r in runs))
    for stem in stems:
        group = [(r, _read(r)[0]) for r in runs if r.notebook == stem]
        title = next((t for t in (_title(nb) for _, nb in group) if t), "")
        parts.append(f"<h2>{html.escape(stem)}" + (f": {html.escape(title)}" if title else "") + "</h2><ul>")
        for run, nb in group:
            params = ", ".join(f"{k}={v}" for k, v in parameters(run, nb).items())
            status = html.escape(run.status)
            link = (f'<a href="{html.escape(run.href)}">{html.escape(run.run_id)}</a>'
                    if run.has_page else html.escape(run.run_id))
            line = run.error_text.splitlines()[0] if run.failed and run.error_text else ""
            parts.append(f'<li>{link} <span class="optnb-status-{status.replace(" ", "-")}">{status}</span>'
                         + (f" ({html.escape(line)})" if line else "")
                         + (f'<br><span class="optnb-params">{html.escape(params)}</span>' if params else "")
                         + "</li>")
        parts.append("</ul>")
    return _shell("optnb: executed notebooks", "".join(parts))


def render_report(markdown: str) -> str:
    return _shell("Reproduction report", f"<div class=\"optnb-bar\"><p>{_nav('', False)} "
                  f'<a href="report.md">report.md</a></p></div>{markdown2html_mistune(markdown)}')


# ----------------------------------------------------------------------------------------------
# Building


def _write_site(folder: Path, runs: Sequence[SiteRun], source: str, results: Path) -> None:
    report_md = results / REPORT_MD
    report = report_md.is_file()
    mathjax = find_mathjax()
    if mathjax is not None:
        shutil.copytree(mathjax, folder / "_static" / "mathjax")
        write_text(folder / "_static" / "mathjax" / "config" / f"{MATHJAX_SITE_CONFIG}.js",
                   MATHJAX_SITE_JS)
        math = f"Math is typeset by the local MathJax copied from {mathjax}."
    else:
        math = ("Math is shown as TeX source ($...$): no local MathJax was found in this environment, "
                "and the site fetches nothing from the internet.")
    export = exporter(f"../_static/mathjax/MathJax.js?config={MATHJAX_COMBINED},{MATHJAX_SITE_CONFIG},Safe"
                      if mathjax else "")
    for run in runs:
        if run.has_page:
            write_text(folder / run.href, render_page(run, export, report))
    if report:
        shutil.copyfile(report_md, folder / "report.md")
        write_text(folder / "report.html", render_report(report_md.read_text()))
    write_text(folder / "index.html", render_index(runs, source, math, report))
    write_text(folder / MARKER, "built by optnb site; this whole folder is replaced by the next build\n")
    for path in (folder, *folder.rglob("*")):  # readable by all, as a site is (the temp files were 0600)
        path.chmod(0o755 if path.is_dir() else 0o644)


def _swap(built: Path, out: Path) -> None:
    """Put ``built`` where ``out`` is; the old site goes only once the new one is in place."""
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    if out.exists():
        os.replace(out, old)
    try:
        os.replace(built, out)
    except BaseException:
        if old.exists():
            os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def build(results: str | os.PathLike | None = None, out: str | os.PathLike | None = None) -> tuple[Path, int]:
    """Build the site of ``results`` (default: the results root) into ``out`` (default
    ``<results>/site``); returns the index page and the number of run pages."""
    root = results_dir(results)
    runs, source = latest_runs(root)
    target = Path(out).expanduser().resolve() if out else root / "site"
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / MARKER).is_file())):
        raise SiteFolderError(f"{target} exists and is not a site built by optnb site (no {MARKER} in it); "
                              "choose another --out or remove it")
    ensure_dir(target.parent, what="site folder", options="--out")
    built = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        _write_site(built, runs, source, root)
        _swap(built, target)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    return target / "index.html", sum(r.has_page for r in runs)
