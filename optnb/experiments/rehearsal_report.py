"""The dress rehearsal's report: ``<results>/rehearsal/report.md`` and ``report.json``.

Per rehearsed run: its status, wall time, the steps it trained, the evidence that it was killed
and resumed (the kill, then a fit that started at epoch >= 1 from the checkpoint), the
configuration it recorded beside the paper's (``paper_config.check``; a shrunk per-step batch is
a documented deviation with its reason), the FLOPs of one training step, the batch it used
against the paper's, the memory per sample and what the paper's batch needs. Rehearsal rows are
never put beside the paper's numbers: they are not results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from optnb.experiments.render import md_table
from optnb.train import rehearsal_overlay

#: configuration keys whose mapping keys are epochs (JSON made them strings)
EPOCH_KEYED = ("lr_at", "drop_path_at")


def _epoch_keys(config: dict[str, Any]) -> dict[str, Any]:
    out = dict(config)
    for key in EPOCH_KEYED:
        if isinstance(out.get(key), dict):
            out[key] = {int(k) if str(k).lstrip("-").isdigit() else k: v for k, v in out[key].items()}
    return out


def config_check(folder: Path, target: Any, sizing: Any) -> dict[str, Any] | None:
    """``paper_config.check`` of the configuration the run recorded (``rehearsal.json``), with
    the per-step batch as a documented deviation where the rehearsal shrank it; None when the
    run recorded none."""
    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.experiments import paper_config

    path = folder / rehearsal_overlay.CONFIG_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    actual = _epoch_keys(record["configuration"])
    deviations = {}
    if record["step_batch"] < record["paper_batch"]:
        why = sizing.reason if sizing is not None and sizing.reason else "the rehearsal's per-step batch"
        deviations["batch_size"] = (f"rehearsal on this machine: {record['step_batch']} per step instead of "
                                    f"{record['paper_batch']} ({why})")
        actual["batch_size"] = record["step_batch"]
    row = target.row if target is not None else None
    rows = paper_config.ROW_SETTINGS.get(record["phase"])
    if rows is not None and row not in rows:
        row = None
    column = target.column if target is not None and record["phase"] == "train_cifar" else None
    checked = paper_config.check(record["phase"], actual, deviations, row=row, column=column)
    return {"check": checked.to_dict(), "markdown": checked.to_markdown(), "ok": checked.ok,
            "failures": [f"{r.name}: paper {r.paper!r}, actual {r.actual!r} ({r.status})" for r in checked.failures],
            "step_batch": record["step_batch"], "paper_batch": record["paper_batch"],
            "compile": record.get("compile")}


def _log(folder: Path) -> dict[str, Any]:
    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.train.callbacks import read_jsonl

    records = read_jsonl(folder / "metrics.jsonl")
    # one record per (re)start of the fit; its "kind" is the run's (train, search, evaluate)
    starts = [r["start_epoch"] for r in records if "start_epoch" in r]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    end = next((r for r in reversed(records) if r.get("kind") == "end"), {})
    return {"fit_starts_at_epoch": starts, "epochs": len(epochs), "steps": epochs[-1].get("step") if epochs else 0,
            "resumed_from": end.get("resumed_from"), "epochs_planned": end.get("epochs_planned"),
            "lr": [e.get("lr") for e in epochs],
            "held_out": {k: v for k, v in (epochs[-1] if epochs else {}).items() if k.endswith("_error")}}


def _run(item: Any, root: Path, sizing: dict[str, Any]) -> dict[str, Any]:
    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.experiments import costs
    from optnb.experiments.rehearsal_sizing import key_of
    from optnb.experiments.results import read_sidecar
    from optnb.paths import run_dir

    run = item.run
    folder = run_dir(run.run_id, root, create=False)
    size = sizing.get(key_of(run)) if run.target is not None else None
    log = _log(folder)
    sidecar = read_sidecar(folder)
    first = item.attempts[0] if item.attempts else None
    last = item.attempts[-1] if item.attempts else None
    resumed = bool(log["resumed_from"]) and max(log["fit_starts_at_epoch"] or [0]) >= 1
    problems = []
    if first is None or not first.killed:
        problems.append((first.error or "not killed").splitlines()[0] if first else "not run")
    if last is None or not last.ok:
        problems.append((last.error or "failed").splitlines()[0] if last else "not run")
    elif not resumed:
        problems.append("no resume: the second start did not continue the checkpoint")
    if sidecar.get("rehearsal") is not True:
        problems.append("the sidecar does not say rehearsal: true")
    checked = config_check(folder, run.target, size) if folder.is_dir() else None
    if checked is None and not problems:
        problems.append("the run recorded no configuration")
    elif checked is not None and not checked["ok"]:
        problems.append(f"configuration differs from the paper: {'; '.join(checked['failures'])}")
    cost = None
    if run.target is not None:
        try:
            c = costs.row_cost(run.target)
            cost = {"gpu_hours": c.gpu_hours, "gpu": c.gpu.name, "steps": c.steps}
        except (costs.CostError, KeyError, ValueError):
            cost = None
    target = run.target
    return {
        "run_id": run.run_id, "notebook": Path(run.notebook).stem,
        "table": target.table if target else run.suite, "row": target.row if target else "",
        "column": target.column if target else None, "role": target.role if target else None,
        "ok": not problems, "problems": problems,
        "wall_s": round(sum(a.duration_s for a in item.attempts), 1),
        "attempts": [{"ok": a.ok, "killed": a.killed, "kill_after_s": a.kill_after_s,
                      "duration_s": round(a.duration_s, 1),
                      "error": a.error.splitlines()[0] if a.error else None}
                     for a in item.attempts],
        "resumed": resumed, **log, "sidecar_status": sidecar.get("status"),
        "rehearsal_sidecar": sidecar.get("rehearsal"),
        "sizing": size.to_dict() if size is not None else None,
        "step_flops_paper_batch": size.flops_per_step if size is not None else None,
        "step_flops_used": (size.flops_per_step * (checked or {}).get("step_batch", size.step_batch) // size.paper_batch
                            if size is not None else None),
        "config": checked, "paper_scale_cost": cost,
    }


def build(rehearsed: list[Any], root: Path, sizing: dict[str, Any], overlay: Any, settings: Any,
          wall_s: float) -> dict[str, Any]:
    """The report as a JSON-able dict (``ok``: every run rehearsed and every configuration checked)."""
    from dataclasses import asdict

    runs = [_run(item, root, sizing) for item in rehearsed]
    hours: dict[str, float] = {}
    for r in runs:
        if r["paper_scale_cost"]:
            hours[r["table"]] = hours.get(r["table"], 0.0) + r["paper_scale_cost"]["gpu_hours"]
    return {"ok": all(r["ok"] for r in runs), "wall_s": round(wall_s, 1), "runs": runs,
            "overlay": overlay.to_dict(), "settings": asdict(settings), "gpu_hours_by_table": hours,
            "note": "REHEARSAL: a few steps of each run at the paper's configuration on generated data; "
                    "these are not results and are never compared with the paper"}


def _gib(b: float | None) -> str:
    return "" if b is None else f"{b / 2**30:.1f} GiB"


def to_markdown(report: dict[str, Any]) -> str:
    runs = report["runs"]
    ok = sum(r["ok"] for r in runs)
    o = report["overlay"]
    lines = [
        "# Dress rehearsal of the paper plan (`optnb reproduce --profile paper --rehearse`)", "",
        f"**{report['note']}.**", "",
        f"{ok} of {len(runs)} run(s) rehearsed without a problem; {report['wall_s']:.0f} s in all. Each run: "
        f"{o['steps_per_epoch']} step(s) per epoch, stopped after {o['stop_after']} of its full epochs "
        f"(the schedule keeps the paper's length), killed hard after its first checkpoint, resumed, "
        f"evaluated on {o['eval_samples']} held-out images, recorded. torch.compile off.", "",
    ]
    body = []
    for r in runs:
        s = r["sizing"] or {}
        cell = "/".join(x for x in (r["table"], r["row"], r["column"] or r["role"] or "") if x)
        batch = f"{s.get('paper_batch', '')} -> {s.get('step_batch', '')}" if s else ""
        if s and s.get("reason"):
            batch += f" ({s['reason'].split(':')[0]})"
        check = "" if r["config"] is None else ("ok" if r["config"]["ok"] else "**DIFFERS**")
        body.append([f"`{r['run_id']}`", cell, "ok" if r["ok"] else "**FAILED**", f"{r['wall_s']:.0f}s",
                     str(r["steps"]), str(r["resumed_from"]), batch,
                     f"{r['step_flops_paper_batch'] / 1e9:.0f}" if r["step_flops_paper_batch"] else "",
                     _gib((s.get("memory") or {}).get("paper_batch_needs")), check])
    lines.append(md_table(("Run", "Cell", "Status", "Time", "Steps", "Resumed from", "Batch paper -> step",
                           "GFLOP/step (paper batch)", "Paper batch needs", "Config"), body))
    failed = [r for r in runs if not r["ok"]]
    for r in failed:
        lines += ["", f"### FAILED: {r['run_id']} ({r['notebook']})", ""] + [f"- {p}" for p in r["problems"]]
    shrunk = {r["sizing"]["key"]: r["sizing"] for r in runs if r["sizing"] and r["sizing"]["reason"]}
    if shrunk:
        lines += ["", "## Per-step batches smaller than the paper's", ""]
        lines += [f"- `{k}`: {s['paper_batch']} -> {s['step_batch']}: {s['reason']}. Memory: "
                  f"{s['memory']['describe']}." for k, s in sorted(shrunk.items())]
    lines += ["", "## The configuration beside the paper (one run per table)", ""]
    seen = set()
    for r in runs:
        if r["config"] is not None and (r["table"] not in seen or not r["config"]["ok"]):
            seen.add(r["table"])
            lines += [f"### {r['table']} / {r['row']} {r['column'] or r['role'] or ''} (`{r['run_id']}`)", "",
                      r["config"]["markdown"], ""]
    hours = report["gpu_hours_by_table"]
    if hours:
        gpu = next((r["paper_scale_cost"]["gpu"] for r in runs if r["paper_scale_cost"]), "")
        lines += ["## The same runs at paper scale (dry-run cost model, `optnb.experiments.costs`)", "",
                  md_table(("Table", f"GPU-hours ({gpu})"), [[t, f"{h:.1f}"] for t, h in sorted(hours.items())])]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], root: Path) -> tuple[Path, Path]:
    # deferred: heavy (torch, the networks, the plans) and only needed here
    from optnb.atomic import write_text
    from optnb.experiments.results import to_jsonable

    md, js = root / "report.md", root / "report.json"
    write_text(md, to_markdown(report))
    write_text(js, json.dumps(to_jsonable(report), indent=1, sort_keys=True) + "\n")
    return md, js


def summary(report: dict[str, Any]) -> str:
    runs = report["runs"]
    lines = [f"{'ok  ' if r['ok'] else 'FAIL'} {r['run_id']:<36} {r['table']}/{r['row']}/{r['column'] or r['role']}"
             f"  {r['wall_s']:.0f}s" + ("" if r["ok"] else f"  {r['problems'][0]}") for r in runs]
    lines.append(f"rehearsal: {sum(r['ok'] for r in runs)} ok, {sum(not r['ok'] for r in runs)} failed")
    return "\n".join(lines)
