"""Beyond the paper, NAS (issue 13, items 4-5): the ``beyond_nas`` table, how searches with
options map to it, the searches of several seeds (``optnb.experiments.seeds``), the
``beyond_nas`` suite of the plans and its section of the report."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from optnb.experiments import beyond_nas, plans, render, seeds, tables
from optnb.experiments.profiles import notebook_spec
from optnb.experiments.targets import NB_EVALUATE, NB_SEARCH, SEARCH_ROWS, Target, target_of
from optnb.specs import ParameterError

GENOTYPE = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), "
            "('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 2)], "
            "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), "
            "('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), "
            "('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")


def search_sidecar(run_id, row, seed, *, options=None, profile="smoke", dataset="embedded", epochs=0,
                   status="complete", finished="2026-12-01T00:00:00+00:00", cost=0.5):
    space, init, order = SEARCH_ROWS[row]
    params = {"PROFILE": profile, "SPACE": space, "INIT": init, "ORDER": order, "SEED": seed,
              "DATASET": "auto", "EPOCHS": epochs, **dict(beyond_nas.DEFAULT_OPTIONS), **(options or {})}
    return {"notebook": NB_SEARCH, "run_id": run_id, "status": status, "parameters": params,
            "profile": profile, "dataset": dataset, "dataset_real": dataset == "cifar10",
            "device": "cpu", "finished": finished,
            "results": {"search_cost_gpu_days": {"value": cost, "unit": "days"},
                        "genotype": {"value": GENOTYPE, "unit": None}}}


def evaluate_sidecar(run_id, search_id, seed, error, *, profile="smoke", dataset="embedded"):
    params = {"PROFILE": profile, "TASK": "cifar10", "SEARCH_RUN": search_id, "GENOTYPE": "", "SEED": seed}
    return {"notebook": NB_EVALUATE, "run_id": run_id, "status": "complete", "parameters": params,
            "profile": profile, "dataset": dataset, "dataset_real": dataset == "cifar10", "device": "cpu",
            "finished": "2026-12-01T00:00:00+00:00",
            "results": {"test_error": {"value": error, "unit": "%"}, "params_m": {"value": 3.3, "unit": "M"}}}


# --- the table and how runs map to it ------------------------------------------------------------

def test_every_variant_is_a_table4_search_row_with_options_and_has_no_paper_numbers():
    assert [r.key for r in beyond_nas.TABLE.rows] == [v.key for v in beyond_nas.VARIANTS]
    assert all(v is None for r in beyond_nas.TABLE.rows for v in r.values.values())
    spec = notebook_spec(NB_SEARCH)
    for v in beyond_nas.VARIANTS:
        assert v.search in SEARCH_ROWS and set(v.baselines) <= set(SEARCH_ROWS)
        assert v.options and set(v.options) <= set(beyond_nas.DEFAULT_OPTIONS)
        for name, value in v.options.items():  # every option is a valid notebook-08 parameter value
            assert spec[name].validate(name, value) == value
    for name, default in beyond_nas.DEFAULT_OPTIONS.items():  # and the defaults are notebook 08's
        assert spec[name].validate(name, default) == default
    assert len({(v.search, tuple(sorted(v.options.items()))) for v in beyond_nas.VARIANTS}) == len(beyond_nas.VARIANTS)
    with pytest.raises(KeyError, match="valid rows: darts_pc4"):
        beyond_nas.variant("pc_darts")


def test_a_search_with_options_beyond_the_paper_never_fills_table4():
    plain = search_sidecar("s", "hb", 0)
    assert target_of(plain) == Target("table4", "hb", None, "search")
    pc = search_sidecar("s", "hb", 0, options={"PARTIAL_CHANNELS": 4})
    assert target_of(pc) == Target("beyond_nas", "hb_pc4", None, "search")
    capped = search_sidecar("s", "hb", 0, options={"MAX_SKIP": 2, "SKIP_HB_PAIR": True})
    assert target_of(capped) == Target("beyond_nas", "hb_skip2", None, "search")
    # a combination no row has, or an option on a row no variant modifies: no table at all
    assert target_of(search_sidecar("s", "hb", 0, options={"PARTIAL_CHANNELS": 2})) is None
    assert target_of(search_sidecar("s", "hb_init", 0, options={"MAX_SKIP": 2})) is None
    assert target_of(search_sidecar("s", "darts_1st", 0, options={"DERIVE": "darts"})) is None
    # an evaluation follows its search; a transfer of a variant's cell is in no table
    found = {"s": pc, "p": plain}
    assert target_of(evaluate_sidecar("e", "s", 0, 5.0), found.get) == Target("beyond_nas", "hb_pc4", None, "evaluate")
    assert target_of(evaluate_sidecar("e", "p", 0, 5.0), found.get) == Target("table4", "hb", None, "evaluate")
    transfer = evaluate_sidecar("t", "s", 0, 5.0)
    transfer["parameters"]["TASK"] = "imagenet"
    assert target_of(transfer, found.get) is None


# --- the searches of several seeds -----------------------------------------------------------------

def test_rows_and_seeds_are_parsed_with_one_line_errors():
    assert seeds.parse_rows(" hb, hb_init ,hb") == ("hb", "hb_init")
    assert seeds.parse_seeds("3, 0,1") == (3, 0, 1)
    for bad, message in (("", "no search row given; valid rows: darts_1st"),
                         ("hb,nasnet", "unknown search row 'nasnet'")):
        with pytest.raises(ParameterError, match=message):
            seeds.parse_rows(bad)
    for bad, message in (("0", "compares 2 to 16 seeds, got 1"), ("0,0", "different non-negative"),
                         ("0,-1", "different non-negative"), ("0,x", "ints separated by commas"),
                         (",".join(map(str, range(17))), "got 17")):
        with pytest.raises(ParameterError, match=message):
            seeds.parse_seeds(bad)
    spec = notebook_spec("08b_search_stability")
    with pytest.raises(ParameterError, match="SEEDS='7' is not valid; expected 2 to 16"):
        spec["SEEDS"].validate("SEEDS", "7")
    with pytest.raises(ParameterError, match="ROWS='x' is not valid; expected a comma-separated list of darts_1st"):
        spec["ROWS"].validate("ROWS", "x")


def test_search_runs_are_the_plans_own():
    plan = plans.build("smoke", only="table4", available=lambda name: True)
    planned = {r.run_id for r in plan.runs if r.notebook == NB_SEARCH}
    assert {seeds.search_run(row, 0, "smoke").run_id for row in plans.SMOKE_ROWS["table4"]} == planned


def test_find_searches_matches_settings_and_takes_the_latest_of_a_seed():
    found = {
        "a": search_sidecar("a", "hb", 0, finished="2026-12-01T00:00:00+00:00"),
        "b": search_sidecar("b", "hb", 0, finished="2026-12-02T00:00:00+00:00"),  # later: counts
        "c": search_sidecar("c", "hb", 1),
        "d": search_sidecar("d", "hb", 2, status="running"),
        "e": search_sidecar("e", "hb", 2, options={"PARTIAL_CHANNELS": 4}),  # not the row's settings
        "f": search_sidecar("f", "hb", 2, epochs=1),  # not the profile's epochs
        "g": search_sidecar("g", "hb", 2, profile="quick"),
        "h": search_sidecar("h", "hb", 2, dataset="cifar10"),
        "i": search_sidecar("i", "hb_init", 0),
        "j": search_sidecar("j", "hb", 5),  # a seed not asked for
    }
    got = seeds.find_searches(("hb", "agd"), (0, 1, 2), "smoke", "embedded", sidecars=found)
    assert got == {"hb": {0: "b", 1: "c"}, "agd": {}}
    assert seeds.missing(got, ("hb", "agd"), (0, 1, 2)) == [("hb", 2), ("agd", 0), ("agd", 1), ("agd", 2)]


def test_ensure_searches_says_what_is_missing_and_how_to_run_it(tmp_path):
    runs = tmp_path / "runs"
    for run_id, sc in (("s0", search_sidecar("s0", "hb", 0)),):
        (runs / run_id).mkdir(parents=True)
        (runs / run_id / "result.json").write_text(json.dumps(sc))
    with pytest.raises(ParameterError) as err:
        seeds.ensure_searches(("hb",), (0, 1, 3), "smoke", "embedded", run=False, results_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message and "hb seed 1, hb seed 3" in message
    assert "optnb search --space hb --init random --order 1 --profile smoke --seeds 1,3" in message
    got = seeds.ensure_searches(("hb",), (0,), "smoke", "embedded", run=False, results_dir=tmp_path)
    assert got == {"hb": {0: runs / "s0"}}


# --- the plans ---------------------------------------------------------------------------------------

def test_smoke_suite_is_notebook_08b_over_two_seeds_of_the_smoke_rows():
    plan = plans.build("smoke", only="beyond_nas")
    study = [r for r in plan.runs if r.notebook == beyond_nas.STABILITY_NOTEBOOK]
    assert len(study) == 1 and study[0].parameters["SEEDS"] == "0,1"
    assert study[0].parameters["ROWS"] == ",".join(plans.SMOKE_ROWS["table4"])
    searches = [r for r in plan.runs if r.notebook == NB_SEARCH]
    assert set(study[0].needs) == {r.run_id for r in searches} and len(searches) == 8
    assert {(r.target.row, r.parameters["SEED"]) for r in searches} == {
        (row, s) for row in plans.SMOKE_ROWS["table4"] for s in (0, 1)}
    assert plan.stages()[-1] == study and any("quick and paper" in n for n in plan.notes)
    plans.validate(plan)  # the notebook and its parameters check out


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_quick_and_paper_suites_search_and_evaluate_every_variant_beside_its_table4_rows(profile):
    plan = plans.build(profile, only="beyond_nas", seeds=2, available=lambda name: True)
    roles = Counter((r.target.table, r.target.role) for r in plan.runs if r.target)
    n = len(beyond_nas.VARIANTS)
    assert roles[("beyond_nas", "search")] == roles[("beyond_nas", "evaluate")] == 2 * n
    by_id = {r.run_id: r for r in plan.runs}
    for run in plan.runs:
        if run.target and run.target.table == "beyond_nas" and run.target.role == "search":
            v = beyond_nas.variant(run.target.row)
            assert {k: run.parameters[k] for k in v.options} == dict(v.options)
            assert target_of({"notebook": run.notebook, "parameters": dict(run.parameters)}) == run.target
        if run.notebook == NB_EVALUATE:
            search = by_id[run.needs[0]]
            assert run.parameters["SEARCH_RUN"] == search.run_id and run.target.row == search.target.row
    evaluated = {r.target.row for r in plan.runs
                 if r.target and r.target.table == "table4" and r.target.role == "evaluate"}
    assert evaluated == {b for v in beyond_nas.VARIANTS for b in v.baselines}
    study = next(r for r in plan.runs if r.notebook == beyond_nas.STABILITY_NOTEBOOK)
    assert study.parameters["SEEDS"] == "0,1,2,3"  # at least the study's 4 seeds
    assert study.parameters["ROWS"] == ",".join(r.key for r in plans.paper.table("table4").reproducible_rows)
    assert len(study.needs) == 4 * len(SEARCH_ROWS)
    plans.validate(plan)


# --- the report ---------------------------------------------------------------------------------------

def test_report_shows_each_variant_beside_its_table4_rows_and_never_counts_it():
    found = {
        "s": search_sidecar("s", "darts_1st", 0, options={"MAX_SKIP": 2}, cost=0.25),
        "e": evaluate_sidecar("e", "s", 0, 4.0),
        "b": search_sidecar("b", "darts_1st", 0),
        "be": evaluate_sidecar("be", "b", 0, 5.5),
    }
    report = tables.build(sidecars=found, size_fn=lambda t, r, g: {"params_m": 3.0, "flops_g": 0.5})
    measured = [x for x in report.lines["beyond_nas"] if x.n]
    assert {(x.row, x.column) for x in measured} == {("darts_skip2", "test_error"),
                                                     ("darts_skip2", "search_cost_gpu_days")}
    assert report.counts()["measured"] == 2  # Table 4's two cells, not the variant's
    text = render.beyond_nas_section(report)
    assert text.startswith("## Beyond the paper: NAS (not from the paper)")
    error_lines = [line for line in text.splitlines() if line.startswith("| DARTS space, at most 2 skips")
                   and "| Test Error |" in line]
    assert len(error_lines) == 2  # one per baseline row: darts_1st (measured) and hb_init (not run)
    darts = next(line for line in error_lines if "| darts_1st |" in line)
    assert "| 4.00 |" in darts and "5.50" in darts and "-1.50" in darts
    assert "not run" in next(line for line in error_lines if "| hb_init |" in line)
    assert "08b_search_stability" in text
    assert "## Beyond the paper: NAS" in render.report_markdown(report)
    sizes = {r["row"]: r for r in report.sizes["beyond_nas"]}
    assert sizes["darts_skip2"]["ours_params_m"] == 3.0 and "cell of search s" in sizes["darts_skip2"]["note"]


def test_cell_sizes_of_a_variant_need_its_search():
    from optnb.experiments.sizes import full_size

    with pytest.raises(LookupError, match="no searched genotype for beyond_nas/hb_pc4"):
        full_size("beyond_nas", "hb_pc4")
    assert full_size("beyond_nas", "hb_pc4", GENOTYPE) == full_size("table4", "x", GENOTYPE)
