"""Unbounded inputs (issue 10, class 2): genotypes, plan files and the config line are bounded.

Every bad input is refused with one line naming the limit and the value, before anything is
parsed further, built or run: ``optnb.nas.genotypes`` (text, ops per cell, arity, nodes, concat
ranges measured symbolically, JSON depth and size), ``optnb.experiments.plans.load_plan`` (file
size, runs, parameters, value sizes, nesting) and ``Config.summary`` (long values shortened).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from optnb.experiments import plans
from optnb.experiments.plans import PlanError
from optnb.experiments.profiles import Config
from optnb.nas import genotypes as G
from optnb.nas.errors import GenotypeError, NasError

REDUCE = "[('max_pool_3x3', 0), ('max_pool_3x3', 1)]"
BIG = 100_000_000_000  # range(0, 10**11): the sweep's MemoryError
BEYOND_MAXSIZE = "1" + "0" * 30  # a range longer than sys.maxsize: len() overflows
HUGE_HEX = "0x" + "f" * 20_000  # an int too long for repr() (sys.get_int_max_str_digits)


def text(normal: str, normal_concat: str = "[2]", reduce: str = REDUCE,
         reduce_concat: str = "[2]") -> str:
    """``Genotype(...)`` text; the defaults are a valid 1-node, arity-2 cell."""
    return (f"Genotype(normal={normal}, normal_concat={normal_concat}, reduce={reduce}, "
            f"reduce_concat={reduce_concat})")


def ops(count: int, name: str = "skip_connect", index: int = 0) -> str:
    return "[" + ", ".join([f"({name!r}, {index})"] * count) + "]"


def pairs(count: int) -> list[tuple[str, int]]:
    return [("skip_connect", 0)] * count


def as_json(normal: object, normal_concat: object = (2,)) -> str:
    return json.dumps({"normal": normal, "normal_concat": list(normal_concat),
                       "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]], "reduce_concat": [2]})


def one_line(err: BaseException, limit: int = 400) -> str:
    message = str(err)
    assert "\n" not in message and len(message) < limit, message[:500]
    return message


# ------------------------------------------------------------------------------ genotypes
#: (bad input, what the one-line message must say: the limit and the value)
GENOTYPE_CASES = {
    # the sweep: thousands of operations (arity 1000), grown to 5.6 GB when built
    "arity 1000 (text, 1 node)": (text(ops(1000)), r"1,000 operations; the limit is 64 \(16 nodes x arity 4"),
    "arity 1000 (Genotype, 4 nodes)": (G.Genotype(pairs(4000), [2, 3, 4, 5], pairs(8), [2, 3, 4, 5]),
                                       r"4,000 operations; the limit is 64"),
    "arity 1000 (genotype.json dict)": ({"normal": [list(p) for p in pairs(4000)], "normal_concat": [2, 3, 4, 5],
                                         "reduce": [list(p) for p in pairs(8)], "reduce_concat": [2, 3, 4, 5]},
                                        r"4,000 operations; the limit is 64"),
    "arity 5": (text(ops(20), "[2, 3, 4, 5]"), r"5 operations per node .*the limit is arity 4"),
    "17 nodes": (text(ops(34), "[18]"), r"17 nodes .*the limit is 16"),
    # the sweep: normal_concat=range(0, 10**11) ended in a MemoryError traceback
    "concat range(0, 10**11) (text)": (text(ops(2), f"range(0, {BIG})"),
                                       r"100,000,000,000 entries; the limit is 18"),
    "concat range(0, 10**11) (Genotype)": (G.Genotype(pairs(2), range(0, BIG), pairs(2), [2]),
                                           r"100,000,000,000 entries; the limit is 18"),
    "concat range(0, 10**11) (dict)": ({"normal": [["skip_connect", 0]] * 2, "normal_concat": range(0, BIG),
                                        "reduce": [["skip_connect", 0]] * 2, "reduce_concat": [2]},
                                       r"100,000,000,000 entries; the limit is 18"),
    "concat range beyond sys.maxsize": (text(ops(2), f"range(0, {BEYOND_MAXSIZE})"),
                                        r"1,000,000,000,000,000,000,000,000,000,000 entries; the limit is 18"),
    "concat list of 19": (text(ops(2), str([2] * 19)), r"19 entries; the limit is 18"),
    "concat index 0xfff...": (text(ops(2), f"[{HUGE_HEX}]"), r"an int too large to print nodes .*the limit is 16"),
    "text of 80 KB": (text(ops(2)) + " " * 80_000, r"genotype text is 80,\d{3} characters; the limit is 65,536"),
    "op name of 70 KB": (text(f"[('{'x' * 70_000}', 0), ('skip_connect', 1)]"), r"the limit is 65,536"),
    "unknown name of 70 KB": ("x" * 70_000, r"70,000 characters; the limit is 65,536"),
    "JSON of 80 KB": (as_json([["skip_connect", 0]] * 4000), r"characters; the limit is 65,536"),
    "JSON nested 30,000 deep": ('{"normal": ' + "[" * 30_000 + "]" * 30_000
                                + ', "normal_concat": [2], "reduce": [], "reduce_concat": [2]}',
                                r"nests deeper than the decoder allows; the limit is 3 levels"),
    "JSON nested 4 deep": (as_json([[["skip_connect", 0]], [["skip_connect", 1]]]),
                           r"nests 4 or more levels deep; the limit is 3"),
    "text nested 3 deep": (text("[[('skip_connect', 0), ('skip_connect', 1)]]"),
                           r"nest more than 2 levels; the limit is 2"),
    "7,000 nested minus signs": (text(ops(2), "[" + "-" * 7000 + "2]"),
                                 r"deeper than Python's parser allows; a field holds at most 2 levels"),
    "30,000 chained additions": (text(ops(2), "+".join(["1"] * 30_000)),
                                 r"deeper than Python's parser allows; a field holds at most 2 levels"),
    "index 0xfff...": (text(f"[('skip_connect', {HUGE_HEX}), ('skip_connect', 1)]"),
                       r"an int too large to print\): node 0 can only read states 0\.\.1"),
}


@pytest.mark.parametrize("spec, message", GENOTYPE_CASES.values(), ids=GENOTYPE_CASES.keys())
def test_oversized_genotypes_are_refused_in_one_line_naming_the_limit(spec, message):
    start = time.perf_counter()
    with pytest.raises(GenotypeError, match=message) as info:
        G.parse(spec)
    assert time.perf_counter() - start < 2.0  # refused before anything large is made
    one_line(info.value)


def test_from_json_names_its_own_text_limit():
    with pytest.raises(GenotypeError, match=r"genotype JSON is \d\d,\d{3} characters; the limit is 65,536"):
        G.from_json(as_json([["skip_connect", 0]] * 4000))


@pytest.mark.parametrize("concat", [range(0, BIG), range(0, int(BEYOND_MAXSIZE))], ids=["10**11", "beyond maxsize"])
def test_arity_and_cell_steps_measure_a_range_before_listing_it(concat):
    with pytest.raises(GenotypeError, match=r"entries; the limit is 18"):
        G.cell_steps(concat)
    with pytest.raises(GenotypeError, match=r"entries; the limit is 18"):
        G.arity(G.Genotype(pairs(2), concat, pairs(2), [2]))


#: malformed shapes that used to escape as TypeError / plain ValueError tracebacks or huge lines
MALFORMED_CASES = {
    "range step 0": (text(ops(2), "range(2, 6, 0)"), r"range\(\) step must not be zero"),
    "JSON ops not a list": ('{"normal": 5, "normal_concat": [2], "reduce": [], "reduce_concat": [2]}',
                            r"normal must be a list of \(op, index\) pairs, got 5"),
    "JSON int of 5,000 digits": (as_json([["skip_connect", 0]] * 2, [int("1" * 50)]).replace("1" * 50, "1" * 5000),
                                 r"genotype JSON is malformed: Exceeds the limit \(4300 digits\)"),
    "Genotype with None ops": (G.Genotype(None, [2], pairs(2), [2]), r"normal must be a list of \(op, index\) pairs"),
    "op name of 1,000 chars": (text(f"[('{'y' * 1000}', 0), ('skip_connect', 1)]"),
                               r"unknown operation 'yyy+\.\.\. \(1,002 chars\)"),
    "unknown name of 1,000 chars": ("z" * 1000, r"unknown genotype 'zzz+\.\.\. \(1,000 chars\)'"),
}


@pytest.mark.parametrize("spec, message", MALFORMED_CASES.values(), ids=MALFORMED_CASES.keys())
def test_malformed_shapes_are_one_short_line(spec, message):
    with pytest.raises(NasError, match=message) as info:
        G.parse(spec)
    one_line(info.value)


def test_the_limits_leave_room_for_research_cells():
    """Published cells, HB (arity 3) and the largest allowed cell (16 nodes x arity 4) all load."""
    largest = G.Genotype([("sep_conv_3x3", node + 1) for node in range(16) for _ in range(4)],
                         range(2, 18), [("max_pool_3x3", 0)] * 64, range(2, 18))
    g = G.parse(G.to_text(largest))
    assert (G.arity(g), G.cell_steps(g.normal_concat), len(g.normal)) == (4, 16, 64)
    assert len(G.to_text(g)) < G.MAX_TEXT_CHARS // 8 and G.from_json(G.to_json(g)) == g
    for name in ("DARTS_V1", "DARTS_V2", "PC_DARTS", "PDARTS"):
        assert G.parse(G.to_json(G.get(name))) == G.get(name)


# ------------------------------------------------------------------------------ plan files
def _run(**parameters: object) -> dict:
    return {"notebook": "09_nas_evaluate", "parameters": {"PROFILE": "smoke", "TASK": "cifar10",
                                                          "SEARCH_RUN": "", **parameters}}


def _genotype_of(chars: int) -> str:
    """Genotype text of at least ``chars`` characters (arity ~ chars / 20 in one node)."""
    return text(ops(max(2, chars // 20 + 1)))


PLAN_CASES = {
    "2,001 runs": ({"runs": [_run(GENOTYPE="DARTS_V2", SEED=i) for i in range(2001)]},
                   r"has 2,001 runs; the limit is 2,000"),
    "GENOTYPE of 84 KB": ({"runs": [_run(GENOTYPE=_genotype_of(84_000))]},
                          r"run 0: parameter GENOTYPE is a string of \d\d,\d{3} characters; the limit is 65,536"),
    "string in a mapping value": ({"runs": [{"notebook": "06_train_cifar", "parameters": {
        "MODEL_OPTIONS": {"note": "n" * 70_000}}}]},
        r"parameter MODEL_OPTIONS\.note is a string of 70,000 characters; the limit is 65,536"),
    "parameters as pairs": ({"runs": [{"notebook": "00_tour", "parameters": [["GENOTYPE", "g" * 70_000]]}]},
                            r"parameter #0\[1\] is a string of 70,000 characters; the limit is 65,536"),
    "65 parameters": ({"runs": [{"notebook": "00_tour", "parameters": {f"P{i}": i for i in range(65)}}]},
                      r"has 65 parameters; the limit is 64"),
    "mapping of 65 entries": ({"runs": [{"notebook": "06_train_cifar", "parameters": {
        "MODEL_OPTIONS": {f"k{i}": i for i in range(65)}}}]},
        r"parameter MODEL_OPTIONS has 65 entries; the limit is 64"),
    "parameter name of 200 chars": ({"runs": [{"notebook": "00_tour", "parameters": {"P" * 200: 1}}]},
                                    r"parameter name of 200 characters; the limit is 128"),
    "notebook name of 200 chars": ({"runs": [{"notebook": "n" * 200, "parameters": {}}]},
                                   r"run 0: notebook is a string of 200 characters; the limit is 128"),
    "target row of 200 chars": ({"runs": [{"notebook": "00_tour", "target": {"table": "table1", "row": "r" * 200}}]},
                                r"run 0: target\.row is a string of 200 characters; the limit is 128"),
    "needs entry of 200 chars": ({"runs": [{"notebook": "00_tour", "needs": ["x" * 200]}]},
                                 r"run 0: needs\[0\] is a string of 200 characters; the limit is 128"),
    "nested 7 levels": ({"runs": [{"notebook": "00_tour", "parameters": {"A": {"b": [[1]]}}}]},
                        r"nests 7 or more levels deep; the limit is 6"),
}


def _write(path: Path, content: object) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize("content, message", PLAN_CASES.values(), ids=PLAN_CASES.keys())
def test_oversized_plans_are_refused_in_one_line_naming_the_limit(tmp_path, content, message):
    path = _write(tmp_path / "plan.json", content)
    with pytest.raises(PlanError, match=message) as info:
        plans.load_plan(path, "smoke")
    one_line(info.value)


def test_a_10_mb_plan_is_refused_unread_in_milliseconds(tmp_path):
    """The sweep: a 10 MB genotype in a --plan file hung (it reached the notebook)."""
    path = _write(tmp_path / "big.json", {"runs": [_run(GENOTYPE=_genotype_of(10_000_000))]})
    assert path.stat().st_size > 10_000_000
    start = time.perf_counter()
    with pytest.raises(PlanError, match=r"is 10,\d{3},\d{3} bytes; the limit is 4,194,304 bytes") as info:
        plans.load_plan(path, "smoke")
    assert time.perf_counter() - start < 1.0
    one_line(info.value)


#: malformed plan files that used to escape as tracebacks or non-PlanError exceptions
MALFORMED_PLANS = {
    "JSON nested 100,000 deep": ("[" * 100_000 + "]" * 100_000,
                                 r"nests deeper than the JSON decoder allows; the limit is 6"),
    "runs not a list": ('{"runs": 5}', r"'runs' must be a list of runs, got int"),
    "int of 5,000 digits": ('{"runs": [{"notebook": "00_tour", "estimate_s": ' + "1" * 5000 + "}]}",
                            r"cannot read plan file .*Exceeds the limit \(4300 digits\)"),
    "estimate_s infinite": ('{"runs": [{"notebook": "00_tour", "estimate_s": 1e999}]}',
                            r"run 0 is malformed \(ValueError: estimate_s must be a finite number >= 0, got inf\)"),
}


@pytest.mark.parametrize("content, message", MALFORMED_PLANS.values(), ids=MALFORMED_PLANS.keys())
def test_malformed_plans_are_one_line(tmp_path, content, message):
    with pytest.raises(PlanError, match=message) as info:
        plans.load_plan(_write(tmp_path / "plan.json", content), "smoke")
    one_line(info.value)


def test_a_binary_plan_file_is_one_line(tmp_path):
    path = tmp_path / "plan.json"
    path.write_bytes(b'{"runs": [\xff\xfe]}')
    with pytest.raises(PlanError, match=r"not UTF-8 text \(invalid start byte at byte 10\)") as info:
        plans.load_plan(path, "smoke")
    one_line(info.value)


def test_plan_string_limit_is_the_genotype_limit_and_a_large_genotype_still_loads(tmp_path):
    assert plans.MAX_PARAMETER_CHARS == G.MAX_TEXT_CHARS
    largest = G.to_text(G.Genotype([("sep_conv_3x3", 0)] * 64, range(2, 18), [("max_pool_3x3", 0)] * 64,
                                   range(2, 18)))
    plan = plans.load_plan(_write(tmp_path / "plan.json", {"runs": [_run(GENOTYPE=largest)]}), "smoke")
    assert plan.runs[0].parameters["GENOTYPE"] == largest


# ------------------------------------------------------------------------------ the config line
def _config(**params: object) -> Config:
    return Config(notebook="09_nas_evaluate", profile="smoke", seed=0, device="cpu", dataset="embedded",
                  dataset_real=False, live="off", results_dir=Path("results"), run_id="r1",
                  run_dir=Path("results/runs/r1"), params=params, parameters={k.upper(): v for k, v in params.items()})


def test_the_config_line_shortens_long_values_and_keeps_them_in_the_config():
    genotype = _genotype_of(80_000)  # the sweep: an 80 KB genotype in every cfg: line
    cfg = _config(task="cifar10", genotype=genotype, search_run="")
    line = cfg.summary()
    assert len(line) < 400 and "\n" not in line
    assert f"genotype={genotype[:80]}... ({len(genotype):,} chars)" in line
    assert "task=cifar10 " in line and line.endswith("search_run=")
    assert cfg.genotype == genotype and cfg.parameters["GENOTYPE"] == genotype  # never shortened
    assert _config(genotype="DARTS_V2").summary().endswith("| genotype=DARTS_V2")  # short: as before


def test_a_multi_line_value_stays_on_the_config_line():
    genotype = G.to_json(G.get("PDARTS")).replace(", ", ",\n  ")
    line = _config(genotype=genotype).summary()
    assert "\n" not in line and f"({len(genotype):,} chars)" in line


def test_resolve_prints_a_short_line_and_records_the_full_value(tmp_results, headless, capsys, monkeypatch):
    import torch

    from optnb.experiments import results
    from optnb.experiments.profiles import resolve

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    genotype = _genotype_of(80_000)
    cfg = resolve({"TASK": "cifar10", "GENOTYPE": genotype, "SEARCH_RUN": "", "EPOCHS": 0},
                  notebook="09_nas_evaluate")
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("cfg: notebook=09_nas_evaluate") and len(line) < 400
    sidecar = json.loads((cfg.run_dir / results.SIDECAR).read_text())
    assert sidecar["parameters"]["GENOTYPE"] == genotype


# ------------------------------------------------------------------------------ end to end
def _cli_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("optnb: error: ") and len(err) < 500, err[:600]
    return err


EVALUATE_CASES = {
    "arity 1000": (text(ops(1000)), "1,000 operations; the limit is 64"),
    "concat range(0, 10**11)": (text(ops(2), f"range(0, {BIG})"), "100,000,000,000 entries; the limit is 18"),
    "text of 80 KB": (_genotype_of(80_000), "characters; the limit is 65,536"),
    "7,000 nested minus signs": (text(ops(2), "[" + "-" * 7000 + "2]"), "deeper than Python's parser allows"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("genotype, message", EVALUATE_CASES.values(), ids=EVALUATE_CASES.keys())
def test_evaluate_refuses_an_oversized_genotype_with_exit_2(genotype, message, capsys, tmp_results, headless):
    from optnb import cli

    assert cli.main(["evaluate", "--genotype", genotype, "--profile", "smoke"]) == 2
    assert message in _cli_error(capsys)
    assert not (tmp_results / "runs").exists() or not any((tmp_results / "runs").iterdir())  # no run folder


@pytest.mark.timeout(120)
def test_evaluate_refuses_an_oversized_search_genotype_with_exit_2(capsys, tmp_results, headless):
    folder = tmp_results / "runs" / "s1"
    folder.mkdir(parents=True)
    (folder / "genotype.json").write_text(json.dumps(
        {"normal": [list(p) for p in pairs(4000)], "normal_concat": [2, 3, 4, 5],
         "reduce": [list(p) for p in pairs(8)], "reduce_concat": [2, 3, 4, 5]}))
    from optnb import cli

    assert cli.main(["evaluate", "--search-run", "s1", "--profile", "smoke"]) == 2
    assert "4,000 operations; the limit is 64" in _cli_error(capsys)
    assert [p.name for p in (tmp_results / "runs").iterdir()] == ["s1"]  # no evaluation run folder


@pytest.mark.timeout(120)
@pytest.mark.parametrize("chars, message", [
    (10_000_000, r"is 10,\d{3},\d{3} bytes; the limit is 4,194,304 bytes"),
    (84_000, r"parameter GENOTYPE is a string of \d\d,\d{3} characters; the limit is 65,536"),
], ids=["10 MB file", "84 KB genotype"])
def test_reproduce_refuses_an_oversized_plan_with_exit_2(tmp_path, chars, message, capsys, tmp_results, headless):
    from optnb import cli

    path = _write(tmp_path / "big.json", {"runs": [_run(GENOTYPE=_genotype_of(chars))]})
    assert cli.main(["reproduce", "--plan", str(path), "--profile", "smoke",
                     "--results", str(tmp_results)]) == 2
    err = _cli_error(capsys)
    assert re.search(message, err), err
    assert not (tmp_results / "runs").exists() and not (tmp_results / "report").exists()


@pytest.mark.parametrize("content, message", [
    (b"{" + b" " * (16 * 65_536) + b"}", "holds more than 1048576 bytes"),
    (b"\xff\xfe not json", "is not a genotype JSON file"),
])
def test_a_search_runs_genotype_file_is_read_within_the_limit(tmp_path, content, message):
    from optnb.nas.experiment import genotype_of_run

    folder = tmp_path / "runs" / "s1"
    folder.mkdir(parents=True)
    (folder / "genotype.json").write_bytes(content)
    with pytest.raises(G.GenotypeError, match=message):
        genotype_of_run("s1", tmp_path)
