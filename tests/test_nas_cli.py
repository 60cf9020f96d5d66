"""``optnb search`` / ``optnb evaluate`` (optnb.cli.search, optnb.cli.evaluate) and the notebook specs
(optnb.nas.params)."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
import torch

from optnb import cli
from optnb.cli import search as search_command
from optnb.experiments.profiles import notebook_spec
from optnb.nas.params import EVAL_SIZES, NB08, NB09, SEARCH_SIZES


@pytest.fixture(autouse=True)
def single_thread(monkeypatch):
    """``resolve`` sets 2 threads in smoke; on a loaded 2-core box OpenMP's spin-waiting makes
    tiny-op workloads 10x slower with 2 threads, so these tests keep the process at one."""
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)


def test_notebook_specs_are_registered():
    assert set(notebook_spec("08_nas_search")) == set(NB08) >= {"SPACE", "INIT", "ORDER", "EPOCHS"}
    assert set(notebook_spec("09_nas_evaluate")) == set(NB09) >= {"TASK", "GENOTYPE",
                                                                  "SEARCH_RUN"}
    assert NB08["SPACE"].valid_choices() == ["darts", "hb", "agd"]
    assert set(SEARCH_SIZES) == set(EVAL_SIZES) == {"smoke", "quick", "paper"}
    assert SEARCH_SIZES["paper"]["epochs"] == 50 and EVAL_SIZES["paper"]["epochs"] == 600


@pytest.mark.parametrize("argv, message", [
    (["search", "--space", "nasnet", "--profile", "smoke"], "SPACE='nasnet' is not valid"),
    (["search", "--init", "hb", "--space", "darts", "--profile", "smoke"], "needs space='hb'"),
    (["search", "--order", "two"], "invalid int value"),
    (["search", "--seeds", "0", "1", "--run-id", "x"], "cannot be used with --seeds"),
    (["evaluate", "--genotype", "Genotype(normal=[", "--profile", "smoke"], "malformed"),
    (["evaluate", "--profile", "smoke"], "give GENOTYPE"),
    (["evaluate", "--search-run", "nope", "--profile", "smoke"], "has no genotype"),
    (["search", "--early-stop", "pdarts", "--profile", "smoke"], "EARLY_STOP='pdarts' is not valid"),
    (["search", "--max-skip", "-2", "--profile", "smoke"], "MAX_SKIP"),
    (["search", "--partial-channels", "3", "--profile", "smoke"], "PARTIAL_CHANNELS 3 must divide"),
    (["search", "--skip-hb-pair", "--space", "darts", "--profile", "smoke"], "hb_pair"),
    (["prune"], "invalid choice: 'prune'"),
    ([], "a command is required"),
])
def test_bad_input_prints_one_line_and_returns_2(argv, message, capsys, tmp_results, headless):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_search_then_evaluate_its_genotype(tmp_results, headless, capsys):
    assert cli.main(["search", "--space", "hb", "--init", "hb", "--epochs", "1",
                     "--run-id", "s1"]) == 0
    sidecar = json.loads((tmp_results / "runs" / "s1" / "result.json").read_text())
    assert sidecar["status"] == "complete" and sidecar["profile"] == "smoke"
    results = sidecar["results"]
    assert results["search_cost_gpu_days"]["value"] > 0
    assert "not GPU-days" in results["search_cost_gpu_days"]["unit"]  # a CPU run says so
    assert results["genotype"]["value"].startswith("Genotype(normal=[")
    assert sidecar["parameters"]["SPACE"] == "hb"
    assert cli.main(["evaluate", "--search-run", "s1", "--epochs", "1", "--run-id", "e1"]) == 0
    results = json.loads((tmp_results / "runs" / "e1" / "result.json").read_text())["results"]
    assert 0 <= results["test_error"]["value"] <= 100
    assert results["genotype"]["value"] == json.loads(
        (tmp_results / "runs" / "s1" / "result.json").read_text())["results"]["genotype"]["value"]
    assert 2.0 < results["params_m"]["value"] < 5.0  # the paper-size network of an HB cell


def test_seeds_run_as_separate_processes(monkeypatch):
    launched = []

    class FakePool:
        """Records what the worker pool (spawned processes, optnb.experiments.workers) would run."""

        def __init__(self, workers):
            self.workers = workers

        def submit(self, fn, argv):
            assert fn is search_command.run_seed and self.workers == 2
            launched.append(argv)
            done = Future()
            done.set_result(0)
            return done

        def close(self):
            pass

    monkeypatch.setattr(search_command, "WorkerPool", FakePool)
    assert cli.main(["search", "--space", "agd", "--seeds", "0", "3", "--jobs", "2",
                     "--profile", "smoke", "--max-skip", "2", "--early-stop", "darts+"]) == 0
    assert [argv[argv.index("--seed") + 1] for argv in launched] == ["0", "3"]
    assert all(argv[argv.index("--space") + 1] == "agd" for argv in launched)
    assert all("--seeds" not in argv for argv in launched)
    assert all(argv[argv.index("--max-skip") + 1] == "2" and argv[argv.index("--early-stop") + 1] == "darts+"
               for argv in launched)  # every seed searches with the same remedies


def _seed_after_rendezvous(argv: list[str]) -> int:
    """A seed's task (in a worker process) that first waits until the other seed's worker has
    arrived too: it can only return 0 when both seeds run at the same time."""
    meeting = Path(os.environ["OPTNB_TEST_RENDEZVOUS"])
    (meeting / str(os.getpid())).write_text(argv[argv.index("--seed") + 1])
    deadline = time.monotonic() + 180.0
    while len(list(meeting.iterdir())) < 2:
        if time.monotonic() > deadline:
            return 99  # the other seed never started while this one waited: not concurrent
        time.sleep(0.05)
    return search_command.run_seed(argv)


def _log(results: Path, seed: int) -> list[dict]:
    """The search log of the one run folder of ``seed`` under ``results``."""
    folders = [p.parent for p in (results / "runs").glob("*/result.json")
               if json.loads(p.read_text())["parameters"]["SEED"] == seed]
    assert len(folders) == 1, f"seed {seed}: {folders}"
    return [json.loads(line) for line in (folders[0] / "metrics.jsonl").read_text().splitlines()]


def test_seeds_run_concurrently_in_worker_processes_and_resume(monkeypatch, tmp_path, tmp_results, headless):
    """Real processes: seeds 0,1 with --jobs 2 meet at a rendezvous (so they ran at once, in two
    processes); a second call with seeds 0 1 2 resumes 0 and 1 from their final checkpoints (no
    epoch trained again) and searches 2 from scratch."""
    meeting = tmp_path / "rendezvous"
    meeting.mkdir()
    monkeypatch.setenv("OPTNB_TEST_RENDEZVOUS", str(meeting))
    monkeypatch.setattr(search_command, "run_seed", _seed_after_rendezvous)
    common = ["--space", "darts", "--profile", "smoke", "--epochs", "1", "--jobs", "2"]
    assert cli.main(["search", *common, "--seeds", "0,1"]) == 0
    pids = {p.name: p.read_text() for p in meeting.iterdir()}
    assert sorted(pids.values()) == ["0", "1"] and str(os.getpid()) not in pids  # two workers
    first = {seed: _log(tmp_results, seed) for seed in (0, 1)}
    assert all([r["epoch"] for r in log if r["kind"] == "epoch"] == [1] for log in first.values())
    last = {seed: [r for r in log if r["kind"] == "epoch"][-1] for seed, log in first.items()}
    assert last[0]["alpha_normal"] != last[1]["alpha_normal"]  # two seeds, two searches

    monkeypatch.undo()  # the real seed task, without the rendezvous
    monkeypatch.setenv("OPTNB_PROFILE", "smoke")
    monkeypatch.setenv("OPTNB_HEADLESS", "1")
    monkeypatch.setenv("OPTNB_RESULTS", str(tmp_results))
    assert cli.main(["search", *common, "--seeds", "0", "1", "2"]) == 0
    for seed in (0, 1):
        log = _log(tmp_results, seed)
        assert [r for r in log if r["kind"] == "epoch"] == [r for r in first[seed] if r["kind"] == "epoch"]
        assert [r["start_epoch"] for r in log if r["kind"] == "search"] == [0, 1]  # resumed at the end
    assert [r["epoch"] for r in _log(tmp_results, 2) if r["kind"] == "epoch"] == [1]


def test_seeds_take_commas_or_spaces_and_refuse_bad_lists(monkeypatch, capsys):
    launched = []
    monkeypatch.setattr(search_command, "run_seeds", lambda args: launched.append(args.seeds) or 0)
    assert cli.main(["search", "--seeds", "0,1", "3", "--profile", "smoke"]) == 0
    assert launched == [[0, 1, 3]]
    for bad, message in (("0,,1", "ints separated by commas or spaces"), ("0,x", "must be an int"),
                         ("-1", "must be >= 0")):
        assert cli.main(["search", "--seeds", bad]) == 2
        assert message in capsys.readouterr().err


def test_a_seed_process_reports_bad_input_as_one_line(capsys, tmp_results, headless):
    assert search_command.run_seed(["--space", "nasnet", "--seed", "1"]) == 2
    assert capsys.readouterr().err.strip().startswith("optnb: error: SPACE='nasnet' is not valid")
