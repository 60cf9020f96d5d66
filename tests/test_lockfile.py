"""requirements.lock: parsing, its agreement with pyproject.toml, and the report's version-drift flag."""

from __future__ import annotations

import re
import tomllib

import pytest

from optnb.experiments import lockfile, render, tables
from optnb.experiments.lockfile import Drift, LockFileError, drift, parse_lock, read_lock
from optnb.experiments.results import RECORDED_PACKAGES
from optnb.info import package_versions
from optnb.paths import repo_root

GOOD = """\
# a comment line
--extra-index-url https://example.org/simple
Jupyter_Core==5.9.1    # via jupyter-client
numpy==2.4.6 \\
    --hash=sha256:0123456789abcdef \\
    --hash=sha256:fedcba9876543210
pywin32==311 ; sys_platform == "win32"
uvicorn[standard]==0.40.0
torch==2.14.1

zope.interface==8.0
"""


def test_parse_good_lock_normalises_names_and_tolerates_comments_hashes_markers():
    pins = parse_lock(GOOD)
    assert pins == {"jupyter-core": "5.9.1", "numpy": "2.4.6", "pywin32": "311", "uvicorn": "0.40.0",
                    "torch": "2.14.1", "zope-interface": "8.0"}
    assert lockfile.canonical_name("Foo__Bar.baz") == "foo-bar-baz"


@pytest.mark.parametrize(("line", "why"), [
    ("numpy>=2.4", "not a `name==version` pin"),
    ("numpy", "not a `name==version` pin"),
    ("numpy==", "not a `name==version` pin"),
    ("numpy==2.*", "not a `name==version` pin"),
    ("numpy==2.4.6 trailing", "not a `name==version` pin"),
    ("-e .", "not a `name==version` pin"),
    ("-r other.txt", "not a `name==version` pin"),
    ("https://example.org/numpy-2.4.6.whl", "not a `name==version` pin"),
    ("NumPy==2.0.0", "numpy is pinned twice (2.4.6 and 2.0.0)"),
])
def test_malformed_line_is_refused_in_one_line_naming_it(line, why):
    text = "# header\nnumpy==2.4.6\n" + line + "\n"
    with pytest.raises(LockFileError) as err:
        parse_lock(text, "x.lock")
    message = str(err.value)
    assert "\n" not in message and message.startswith("x.lock line 3:") and why in message
    assert "make lock" in message


def test_oversize_lock_is_refused_as_text_and_as_file(tmp_path):
    big = "numpy==2.4.6\n" + "#" * lockfile.LOCK_MAX_BYTES
    with pytest.raises(LockFileError, match="more than"):
        parse_lock(big)
    path = tmp_path / "requirements.lock"
    path.write_text(big)
    with pytest.raises(LockFileError, match=r"bytes, more than"):
        read_lock(path)
    with pytest.raises(LockFileError, match="cannot read the lock file"):
        read_lock(tmp_path / "missing.lock")
    path.write_text("numpy==2.4.6\n")
    assert read_lock(path) == {"numpy": "2.4.6"}


LOCKED = {"torch": "2.14.1", "torchvision": "0.29.1", "numpy": "2.4.6", "scipy": "1.17.1"}


def test_drift_compares_locked_packages_only_and_accepts_local_builds():
    same = {"torch": "2.14.1+cu130", "torchvision": "0.29.1+cpu", "numpy": "2.4.6", "python": "3.11.7",
            "cuda": "13.0", "gpu": "H200", "not-locked": "1.0"}
    assert drift(same, LOCKED) == []
    moved = {**same, "NumPy": "2.3.0", "scipy": None, "torch": "2.13.0+cpu"}
    del moved["numpy"]
    assert drift(moved, LOCKED) == [Drift("numpy", "2.3.0", "2.4.6"), Drift("scipy", None, "1.17.1"),
                                    Drift("torch", "2.13.0+cpu", "2.14.1")]
    # a lock with a local label wants exactly that build
    assert drift({"torch": "2.14.1+cu130"}, {"torch": "2.14.1+cpu"}) == [Drift("torch", "2.14.1+cu130", "2.14.1+cpu")]
    # an older sidecar (torch and torchvision only) is compared on what it has
    assert drift({"torch": "2.14.1", "torchvision": "0.28.0", "python": "3.11.7"}, LOCKED) == [
        Drift("torchvision", "0.28.0", "0.29.1")]
    assert str(Drift("scipy", None, "1.17.1")) == "scipy not installed (lock 1.17.1)"


def _run(run_id, model, seed, versions):
    params = {"MODEL": model, "DATASET": "cifar10", "AUGMENT": True, "SEED": seed, "PROFILE": "paper"}
    return {"notebook": "06_train_cifar", "run_id": run_id, "status": "complete", "parameters": params,
            "profile": "paper", "dataset": "cifar10", "dataset_real": True, "device": "cpu",
            "versions": versions, "started": "2026-01-01T00:00:00+00:00",
            "finished": "2026-01-02T00:00:00+00:00",
            "results": {"test_error": {"value": 5.4, "unit": None}, "epochs": {"value": 300, "unit": None}}}


def _no_sizes(table, row, genotype):
    raise LookupError("models not built in this test")


def test_report_flags_each_run_made_with_other_versions_and_nothing_when_all_match():
    locked = read_lock()
    tested = {name: locked[lockfile.canonical_name(name)] for name in RECORDED_PACKAGES}
    tested["torch"] += "+cu130"
    ok = {"a": _run("a", "hbnet56", 0, {**tested, "python": "3.11.7"}),
          "old": _run("old", "hbnet56", 1, {"torch": tested["torch"], "torchvision": tested["torchvision"]})}
    md = render.report_markdown(tables.build(sidecars=ok, tables=["table1"], size_fn=_no_sizes))
    assert "versions other than" not in md and "(lock " not in md

    scs = {**ok, "b": _run("b", "hbnet56", 2, {**tested, "numpy": "1.26.4", "papermill": "2.6.0"}),
           "c": _run("c", "resnet56", 0, {"torch": "2.13.0+cpu"})}
    md = render.report_markdown(tables.build(sidecars=scs, tables=["table1"], size_fn=_no_sizes))
    assert "**2 run(s) made with versions other than the tested ones** (requirements.lock" in md
    assert f"- `b`: numpy 1.26.4 (lock {locked['numpy']}); papermill 2.6.0 (lock {locked['papermill']})\n" in md
    assert f"- `c`: torch 2.13.0+cpu (lock {locked['torch']})\n" in md
    assert "- `a`" not in md and "- `old`" not in md


def test_report_says_in_one_line_when_the_lock_cannot_be_read(tmp_path, monkeypatch):
    bad = tmp_path / "requirements.lock"
    bad.write_text("numpy==2.4.6\nnumpy>=2\n")
    monkeypatch.setattr(lockfile, "lock_path", lambda: bad)
    text = lockfile.drift_markdown({"a": _run("a", "hbnet56", 0, {"numpy": "1.0"})})
    assert text.startswith("Versions not compared with requirements.lock: ") and "line 2" in text
    assert "\n" not in text


def _requirement_name(spec: str) -> str:
    return lockfile.canonical_name(re.match(r"[A-Za-z0-9._-]+", spec)[0])


def test_lock_pins_every_dependency_of_pyproject_and_the_torch_pair():
    project = tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    locked = read_lock()
    missing = sorted({_requirement_name(s) for s in specs} - set(locked))
    assert not missing, f"{lockfile.LOCK_FILE} lacks {missing}: run `make lock`"
    for spec in specs:  # pyproject's exact pins are the lock's
        if "==" in spec:
            name, version = spec.split("==")
            assert locked[_requirement_name(name)] == version.strip()
    assert locked["torch"] == "2.14.1" and locked["torchvision"] == "0.29.1"
    assert {lockfile.canonical_name(n) for n in RECORDED_PACKAGES} <= set(locked)


def test_this_environment_has_the_locked_versions_of_the_recorded_packages():
    assert drift(package_versions(RECORDED_PACKAGES)) == [], "the venv differs from requirements.lock: run `make`"
