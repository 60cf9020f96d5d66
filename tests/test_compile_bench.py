"""``optnb bench --suite compile``: the statistics on a fake clock (exact), one real quick run on
tiny models with the ``aot_eager`` backend (every column, no C++ code generation), the CLI's errors."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from optnb import cli
from optnb.experiments import compile_bench as cb

CPU = torch.device("cpu")


class FakeClock:
    """A clock that moves only when a fake step says how long it took."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fake_cases(clock: FakeClock, seconds: dict[str, list[float]]) -> list[cb.Case]:
    """Cases whose ``run(i)`` advances ``clock`` by ``seconds[key][i]`` (no model is run)."""
    cases = []
    for model in ("resnet8", "hbnet8"):
        for v in cb.variants_for(model, CPU, "aot_eager"):
            key = f"{model}/{v.name}"

            def run(i: int, key: str = key) -> None:
                clock.now += seconds[key][i]

            cases.append(cb.Case(model, v, "eager", 4, torch.nn.Linear(1, 1), run))
    return cases


def test_statistics_on_a_fake_clock():
    clock = FakeClock()
    warm = {"eager": [1.0, 0.5], "eager+cl": [1.0, 0.5], "compiled": [10.0, 0.5],
            "compiled+cl": [8.0, 0.5]}
    step = {"eager": [0.40, 0.50, 0.60], "eager+cl": [0.40, 0.50, 0.60],
            "compiled": [0.20, 0.25, 0.40], "compiled+cl": [0.50, 0.60, 0.70]}
    seconds = {f"{m}/{v}": [*warm[v], *(t * (1.5 if m == "hbnet8" else 1.0) for t in step[v])]
               for m in ("resnet8", "hbnet8") for v in warm}
    cases = _fake_cases(clock, seconds)
    timed = cb.time_cases(cases, CPU, warmup=2, steps=3, clock=clock)
    rows = {(r["model"], r["variant"]): r for r in cb.summarise(cases, timed)}
    c = rows["resnet8", "compiled"]
    assert c["step_s"] == pytest.approx([0.20, 0.25, 0.40], abs=1e-12)
    assert c["step_med_s"] == pytest.approx(0.25)
    assert (c["step_min_s"], c["step_max_s"]) == pytest.approx((0.20, 0.40))
    speedup = statistics.median([0.40 / 0.20, 0.50 / 0.25, 0.60 / 0.40])  # per-round ratios
    assert c["speedup"] == pytest.approx(speedup) and c["speedup_min"] == pytest.approx(1.5)
    assert c["compile_s"] == pytest.approx(10.5 - 1.5)
    assert c["steps_to_pay"] == pytest.approx(9.0 / (0.5 - 0.5 / speedup))
    slower = rows["resnet8", "compiled+cl"]  # slower than eager: never pays for its compilation
    assert slower["speedup"] < 1 and slower["steps_to_pay"] is None
    assert "compile_s" not in rows["resnet8", "eager+cl"]
    assert rows["resnet8", "eager"]["speedup"] == 1.0
    assert c["graphs_warmup"] == 0 and "error" not in c  # nothing was compiled
    (pair,) = cb.pair_ratios(list(rows.values()))
    assert pair["pair"] == "hbnet8/resnet8" and pair["cpu_target"] is None
    for v in warm:  # the ratio of the measured medians
        assert pair["ratios"][v] == pytest.approx(
            rows["hbnet8", v]["step_med_s"] / rows["resnet8", v]["step_med_s"])
        assert pair["ratios"][v] == pytest.approx(1.5)


def test_a_failing_variant_does_not_stop_the_others():
    clock = FakeClock()
    seconds = {f"{m}/{v.name}": [0.1] * 4 for m in ("resnet8", "hbnet8")
               for v in cb.variants_for(m, CPU)}
    cases = _fake_cases(clock, seconds)

    def boom(i: int) -> None:
        raise RuntimeError("no\ncompiler")

    cases[2].run = boom
    timed = cb.time_cases(cases, CPU, warmup=1, steps=3, clock=clock)
    rows = cb.summarise(cases, timed)
    assert rows[2]["error"] == "RuntimeError: no compiler"
    assert all(len(r["step_s"]) == 3 for i, r in enumerate(rows) if i != 2)
    report = {"date": "d", "device": "cpu", "threads": 1, "torch": "t", "precision": "fp32",
              "compile": "on", "memory": "not measured", "loadavg": None,
              "sizes": cb.sizes_for(CPU, True).__dict__, "rows": rows, "pairs": cb.pair_ratios(rows)}
    text = cb.to_markdown(report)
    assert "| resnet8 | compiled | 4 | failed: RuntimeError: no compiler |" in text
    assert cb.failed(report) == ["resnet8/compiled: RuntimeError: no compiler"]


def test_quick_suite_on_tiny_models(tmp_path):
    """The CLI end to end: three models, every variant compiled by ``aot_eager`` once."""
    argv = ["bench", "--suite", "compile", "--quick", "--device", "cpu", "--models",
            "resnet8,hbnet8,darts_v2", "--compile", "aot_eager", "--batch", "4", "--steps", "2",
            "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    report = json.loads((tmp_path / "compile-latest.json").read_text())
    assert report["compile"] == "aot_eager" and report["threads"] == torch.get_num_threads()
    rows = report["rows"]
    assert [(r["model"], r["variant"]) for r in rows] == [
        (m, v) for m in ("resnet8", "hbnet8", "darts_v2")
        for v in ("eager", "eager+cl", "compiled", "compiled+cl")]
    for r in rows:
        assert "error" not in r, r
        assert r["batch"] == 4 and len(r["step_s"]) == 2 and len(r["warmup_s"]) == 2
        assert r["step_min_s"] <= r["step_med_s"] <= r["step_max_s"]
        assert r["speedup_min"] <= r["speedup"] <= r["speedup_max"] and r["peak_mib"] > 0
        if r["compile"] == "aot_eager":
            # one graph, compiled in warm-up; none after it (the drop-path masks are inputs)
            assert (r["graphs_warmup"], r["graphs_after_warmup"], r["graph_breaks"]) == (1, 0, 0)
            assert "compile_s" in r and "steps_to_pay" in r
    assert not any("cpu_target" in r for r in rows if r["model"] != "darts_v2")  # only *56/*40 have
    assert [r["cpu_target"] for r in rows if r["model"] == "darts_v2" and "cpu_target" in r] == [1.3, 1.3]
    (pair,) = report["pairs"]
    assert pair["pair"] == "hbnet8/resnet8" and set(pair["ratios"]) == {
        "eager", "eager+cl", "compiled", "compiled+cl"}
    md = (tmp_path / "compile-latest.md").read_text()
    assert md.startswith("Measured ") and "load average" in md and "compile aot_eager" in md
    table = [line for line in md.splitlines() if line.startswith("| ") and "| model |" not in line
             and not line.startswith("| pair")]
    assert len(table) == len(rows) + 1  # one row per model/variant, plus the pair row
    assert "| hbnet8/resnet8 |" in md


@pytest.mark.parametrize("argv, needle", [
    (["--suite", "compile", "--models", "resnet8,resnet9"], "unknown model 'resnet9' for --suite "
                                                            "compile; valid models: resnet8,"),
    (["--suite", "compile", "--models", " , "], "valid models:"),
    (["--suite", "compile", "--compile", "fast"], "unknown compile option 'fast'; valid:"),
    (["--suite", "nas", "--models", "resnet8"], "--models: use with --suite compile"),
    (["--suite", "compile", "--batch", "0"], "--batch must be >= 1"),
])
def test_bad_input_is_one_line(argv, needle, capsys, tmp_path):
    assert cli.main(["bench", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert "darts_v2, supernet" in err or "--models" not in argv or "nas" in argv
