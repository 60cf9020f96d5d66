"""The ``optnb`` command: list, info, run, delegation, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import FIXTURE_NOTEBOOKS, REPO

from optnb import cli
from optnb.cli.common import CliError
from optnb.cli.run import coerce


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("optnb: error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["run", "00_tour", "--profile", "bogus"],
         ["argument --profile: invalid choice: 'bogus'", "smoke", "quick", "paper", "auto"]),
        (["run", "99_nope"], ["unknown notebook '99_nope'; valid:", "00_tour"]),
        (["run", "00_tour", "-p", "SEED=abc"], ["parameter SEED expects an int (default 0), got 'abc'"]),
        (["run", "00_tour", "-p", "PROFILE=fast"],
         ["PROFILE='fast' is not valid; expected one of: smoke, quick, paper, auto"]),
        (["run", "00_tour", "-p", "NOPE=1"], ["unknown parameter NOPE", "PROFILE, SEED"]),
        (["run", "00_tour", "-p", "SEED"], ["-p expects NAME=VALUE, got 'SEED'"]),
        (["run", "00_tour", "-y", "SEED: true"], ["parameter SEED expects int", "got bool True"]),
        (["run", "00_tour", "-y", "[1, 2]"], ["-y must be a YAML mapping"]),
        (["frobnicate"], ["argument COMMAND: invalid choice: 'frobnicate'"]),
        ([], ["a command is required: list, info, run"]),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(capsys, tmp_results, monkeypatch, argv, fragments):
    monkeypatch.delenv("OPTNB_PROFILE", raising=False)  # `make test` sets it; it adds a note line
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, *fragments)
    assert not (tmp_results / "runs").exists()  # nothing was executed


def test_coerce_types_values_by_the_notebook_default():
    assert coerce("AUGMENT", "false", True) is False
    assert coerce("AUGMENT", "True", False) is True
    assert coerce("SEED", "3", 0) == 3
    assert coerce("BETA", "1", 0.9) == 1.0 and isinstance(coerce("BETA", "1", 0.9), float)
    assert coerce("MODEL", "123", "hbnet56") == "123"  # strings stay strings
    assert coerce("ANY", "[1, 2]", None) == [1, 2]
    with pytest.raises(CliError, match=r"AUGMENT expects a bool \(true/false\)"):
        coerce("AUGMENT", "maybe", True)


def test_list_shows_notebooks_parameters_and_valid_choices(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    assert "00_tour  (00_tour.ipynb)" in out
    assert "PROFILE" in out and "one of: smoke, quick, paper, auto" in out
    code, out, _ = run_cli(capsys, "list", "--json")
    listing = json.loads(out)
    assert listing["00_tour"]["parameters"]["SEED"] == {"default": 0, "type": "int"}


def test_info_reports_versions_device_and_datasets(capsys):
    code, out, _ = run_cli(capsys, "info", "--json")
    assert code == 0
    info = json.loads(out)
    import torch

    assert info["packages"]["torch"] == torch.__version__.split("+")[0]
    assert info["device"]["cuda_available"] == torch.cuda.is_available()
    assert info["datasets"]["embedded"] is True and info["datasets"]["synthetic"] is True
    code, out, _ = run_cli(capsys, "info")
    assert code == 0 and "datasets    found:" in out and "device      default=" in out


@pytest.mark.parametrize("command", [m.NAME for m in cli.COMMANDS])
def test_every_subcommand_is_one_branch_of_the_tree(command, capsys):
    """list, info, run, train, search, evaluate, reproduce, bench: one parser, one --help each."""
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: optnb {command}" in capsys.readouterr().out


def test_one_line_errors_and_exit_codes_for_every_subcommand(capsys):
    assert cli.main(["bench", "--pair", "resnet56"]) == 2
    assert capsys.readouterr().err.strip() == (
        "optnb: error: --pair 'resnet56' is not BASELINE:VARIANT (e.g. resnet56:hbnet56)")
    assert cli.main(["reproduce", "--jobs", "-1", "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == "optnb: error: --jobs must be >= 0 (0 = auto), got -1"


@pytest.mark.notebooks
@pytest.mark.timeout(120)
def test_run_executes_a_notebook_and_a_failure_exits_1(capsys, tmp_results):
    code, out, _ = run_cli(capsys, "run", str(FIXTURE_NOTEBOOKS / "ok.ipynb"), "-p", "X=3", "-q")
    assert code == 0
    output = tmp_results / "runs" / out.strip().split("/runs/")[1]
    assert output.is_file() and output.name == "ok.ipynb"
    code, _, err = run_cli(capsys, "run", str(FIXTURE_NOTEBOOKS / "raises.ipynb"), "-q")
    assert code == 1
    assert "raised ValueError: fixture failure with X=1" in err
    assert "--- failing cell ---" in err


def test_python_dash_m_optnb_works():
    proc = subprocess.run([sys.executable, "-m", "optnb", "run", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "-p NAME=VALUE" in proc.stdout


def test_the_command_tree_loads_without_torch():
    """The deferred imports keep `optnb --help` fast: building the parser imports no torch,
    papermill or nbconvert (the subcommands load them when they run)."""
    code = ("import sys; from optnb.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'papermill', 'nbconvert') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
