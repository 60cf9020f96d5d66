"""Parameter resolution for notebooks and the CLI: profiles, validation, the run's ``Config``.

Every notebook has one ``parameters`` cell of UPPER_CASE literals and then calls
``cfg = optnb.experiments.resolve(globals(), notebook="NN_topic")``. ``resolve`` is the only
place where values are derived (papermill does not recompute derived values after injecting
parameters), and the only place that reads the environment overrides used by CI.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optnb.experiments import ownership, results
from optnb.paths import RUN_ID_RULE, is_run_id, results_dir, run_dir
from optnb.specs import (
    DATASET_CHOICES,
    LIVE_CHOICES,
    PROFILE_CHOICES,
    REAL_DATASETS,
    Param,
    ParameterError,
    choice,
    integer,
    text,
)

#: notebook stem -> "module:ATTR" holding that notebook's ``dict[str, Param]`` (imported lazily).
NOTEBOOK_SPECS: dict[str, str] = {
    "01_forward_pass_is_gradient_descent": "optnb.theory.params:NB01",
    "02_momentum_networks": "optnb.theory.params:NB02",
    "03_activation_cost_functions": "optnb.theory.params:NB03",
    "04_faster_optimizer_better_network": "optnb.theory.params:NB04",
    "05_hbnet_agdnet": "optnb.models.params:NB05",
    "06_train_cifar": "optnb.train.params:NB06",
    "07_train_imagenet": "optnb.train.params:NB07",
    "08_nas_search": "optnb.nas.params:NB08",
    "08b_search_stability": "optnb.experiments.params:NB08B",
    "09_nas_evaluate": "optnb.nas.params:NB09",
    "10_beyond_the_paper_design": "optnb.train.study:NB10",
    "90_reproduce_tables": "optnb.experiments.params:NB90",
}

#: notebook stem -> "module:function" checking parameters together (after each was validated,
#: before anything is written): ``function(values)`` raises ``ParameterError``; ``values["PROFILE"]``
#: is the effective profile there (``auto`` and ``$OPTNB_PROFILE`` applied).
NOTEBOOK_CHECKS: dict[str, str] = {
    "06_train_cifar": "optnb.train.params:check_row",
    "07_train_imagenet": "optnb.train.params:check_row",
    "08_nas_search": "optnb.nas.params:check_search",
}

#: the real dataset ``DATASET="auto"`` means for a notebook outside the smoke profile.
DEFAULT_REAL_DATASET: dict[str, str] = {"07_train_imagenet": "imagenet"}

_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _is_run_id(value: str) -> bool:
    return value == "" or is_run_id(value)


COMMON: dict[str, Param] = {
    "PROFILE": choice(*PROFILE_CHOICES, help="smoke (CI CPU) | quick (one GPU) | paper | auto"),
    "SEED": integer(0, 2**31 - 1, help="seed for python, numpy and torch"),
    "DEVICE": text(help="auto | cpu | cuda | cuda:N"),
    "DATASET": choice(*DATASET_CHOICES, help="auto picks a real dataset when present"),
    "LIVE": choice(*LIVE_CHOICES, help="live plots: widget (JupyterLab) | display | off"),
    "RESULTS_DIR": text(help="'' means the package default (results/)"),
    "RUN_ID": text(help="'' means notebook stem + hash of the parameters", check=_is_run_id,
                   rule=f"'' (notebook stem + hash of the parameters) or {RUN_ID_RULE}"),
}
COMMON_DEFAULTS: dict[str, Any] = {
    "PROFILE": "auto", "SEED": 0, "DEVICE": "auto", "DATASET": "auto", "LIVE": "auto",
    "RESULTS_DIR": "", "RUN_ID": "",
}


def notebook_spec(notebook: str) -> dict[str, Param]:
    """The notebook-specific ``Param`` spec (empty when the notebook declares none)."""
    target = NOTEBOOK_SPECS.get(notebook)
    if not target:
        return {}
    module_name, attr = target.split(":")
    module = importlib.import_module(module_name)
    return dict(getattr(module, attr))


def notebook_check(notebook: str) -> Callable[[Mapping[str, Any]], None] | None:
    """The notebook's check of its validated parameters together (``NOTEBOOK_CHECKS``), if it has
    one; it raises ``ParameterError``."""
    target = NOTEBOOK_CHECKS.get(notebook)
    if not target:
        return None
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)


def resolve_profile(name: str) -> str:
    """``auto`` -> ``quick`` with a GPU, else ``smoke``; other names are validated."""
    COMMON["PROFILE"].validate("PROFILE", name)
    if name != "auto":
        return name
    import torch  # deferred: only ``auto`` needs to look for a GPU

    return "quick" if torch.cuda.is_available() else "smoke"


def effective_profile(requested: str, label: str = "PROFILE") -> tuple[str, list[str]]:
    """The profile a run asked for ``requested`` really uses, and notes saying why:
    ``$OPTNB_PROFILE`` wins (CI sets it, and every notebook's ``resolve`` applies it), then
    ``auto`` becomes quick with a CUDA GPU and smoke without."""
    notes = []
    env = os.environ.get("OPTNB_PROFILE", "").strip()
    if env and env != requested:
        COMMON["PROFILE"].validate("OPTNB_PROFILE", env)
        notes.append(f"profile from $OPTNB_PROFILE={env} (overrides {label} {requested}, as in the notebooks)")
        requested = env
    profile = resolve_profile(requested)
    if requested == "auto":
        notes.append(f"profile auto -> {profile}")
    return profile, notes


# --------------------------------------------------------------------------------------------
# The resolved configuration


@dataclass(frozen=True)
class Config:
    """Everything a notebook run needs, derived once by :func:`resolve`."""

    notebook: str
    profile: str
    seed: int
    device: Any  # torch.device
    dataset: str
    dataset_real: bool
    live: str
    results_dir: Path
    run_id: str
    run_dir: Path
    params: Mapping[str, Any] = field(default_factory=dict)
    parameters: Mapping[str, Any] = field(default_factory=dict)  # every UPPER name, as given
    notes: tuple[str, ...] = ()

    @property
    def smoke(self) -> bool:
        return self.profile == "smoke"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("params", "parameters"):
            raise AttributeError(name)
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(f"Config has no field or parameter {name!r}")

    def summary(self, width: int = 80) -> str:
        """The one-line config print: each parameter value (and the run id and device) is put on
        one line and cut to ``width`` characters, with the full length said
        (``genotype=Genotype(normal=[...... (812 chars)``); ``parameters`` and the sidecar keep
        the full values, and the notes (written by ``resolve``) are printed whole."""

        def short(value: Any) -> str:
            full = str(value)
            text = " ".join(full.split())  # a multi-line value (JSON) stays on the line
            if len(text) <= width:
                return text
            return f"{text[:width]}... ({len(full):,} chars)"

        extra = " ".join(f"{k}={short(v)}" for k, v in self.params.items())
        data = self.dataset if self.dataset_real else f"{self.dataset} (not the paper's dataset)"
        line = (
            f"cfg: notebook={self.notebook} profile={self.profile} device={short(self.device)} "
            f"data={data} live={self.live} seed={self.seed} run={short(self.run_id)}"
        )
        line = f"{line} | {extra}" if extra else line
        return line + "".join(f" [{n}]" for n in self.notes)


def _headless() -> bool:
    return os.environ.get("OPTNB_HEADLESS", "").strip().lower() in ("1", "true", "yes")


def _live_mode(requested: str) -> str:
    if requested != "auto":
        return requested
    if _headless():
        return "off"
    try:
        from IPython import get_ipython

        shell = get_ipython()
        import ipywidgets  # noqa: F401
    except ImportError:
        return "off"
    # Only "is there a kernel at all"; headless runs are detected through OPTNB_HEADLESS/LIVE.
    return "widget" if shell is not None and getattr(shell, "kernel", None) is not None else "off"


def _dataset(requested: str, notebook: str, profile: str) -> tuple[str, list[str]]:
    # deferred: optnb.data imports torch/torchvision, which `optnb list` and the runner never need
    from optnb import data

    notes: list[str] = []
    if requested == "auto":
        if profile == "smoke":
            return "embedded", ["smoke profile: embedded data"]
        real = DEFAULT_REAL_DATASET.get(notebook, "cifar10")
        if data.available(real):
            return real, notes
        notes.append(f"{real} not found at {data.location(real)}: using the EMBEDDED dataset")
        return "embedded", notes
    if requested in REAL_DATASETS and not data.available(requested):
        raise ParameterError(
            f"DATASET={requested!r} was asked for but is not under {data.location(requested)}; put its "
            f"files there (see README) or use DATASET='embedded' (valid: {', '.join(DATASET_CHOICES)})"
        )
    return requested, notes


def _smoke_threads() -> int:
    raw = os.environ.get("OPTNB_THREADS", "1")
    if not raw.isdigit() or int(raw) < 1:
        raise ParameterError(f"OPTNB_THREADS={raw!r} is not valid; expected a positive int")
    return int(raw)


def collect_parameters(namespace: Mapping[str, Any], spec: Mapping[str, Param]) -> dict[str, Any]:
    """The UPPER_CASE parameters a notebook declared, with defaults for the common ones."""
    values = {k: v for k, v in COMMON_DEFAULTS.items()}
    for name in (*COMMON, *spec):
        if name in namespace:
            values[name] = namespace[name]
        elif name in spec:
            raise ParameterError(
                f"parameter {name} is missing from the notebook's parameters cell "
                f"(expected {spec[name].describe()})"
            )
    return values


def validate(values: Mapping[str, Any], spec: Mapping[str, Param]) -> dict[str, Any]:
    """Validate ``values`` against the common spec plus ``spec``; unknown names are an error."""
    allowed = {**COMMON, **spec}
    out = {}
    for name, value in values.items():
        if name not in allowed:
            raise ParameterError(
                f"unknown parameter {name}; valid parameters: {', '.join(sorted(allowed))}"
            )
        out[name] = allowed[name].validate(name, value)
    return out


def resolve(namespace: Mapping[str, Any], notebook: str, quiet: bool = False,
            register: bool = True) -> Config:
    """Validate a notebook's parameters, apply profile and environment, seed, register the run.

    ``register=True`` claims the run folder (``ownership``: one owner per run folder; refused with
    ``RunBusyError`` while another process holds it) and writes the sidecar (:func:`register_run`).
    ``register=False`` (the non-zero ranks of a ``torchrun`` job, and commands that check more
    before they register) creates and writes nothing. Every parameter is checked before anything
    is written: a refused run leaves no folder behind.

    ``namespace`` is normally ``globals()`` of the notebook. Environment overrides (CI): ``OPTNB_PROFILE``,
    ``OPTNB_DEVICE``, ``OPTNB_LIVE`` and ``OPTNB_HEADLESS=1`` (``LIVE="auto"`` becomes ``off``).
    """
    # deferred: optnb.seed imports torch, which `optnb list` and the runner never need
    from optnb.seed import resolve_device, seed_everything

    spec = notebook_spec(notebook)
    values = collect_parameters(namespace, spec)
    notes: list[str] = []
    for name, env in (("PROFILE", "OPTNB_PROFILE"), ("DEVICE", "OPTNB_DEVICE"), ("LIVE", "OPTNB_LIVE")):
        if os.environ.get(env):
            values[name] = os.environ[env]
            notes.append(f"{name} from ${env}")
    values = validate(values, spec)
    profile, profile_notes = effective_profile(values["PROFILE"])
    # deferred: optnb.train loads torch, which `optnb --help` (it imports this module) must not
    from optnb.train import rehearsal_overlay

    if rehearsal_overlay.activate(profile) is not None:  # only with $OPTNB_REHEARSAL, paper only
        profile_notes.append(f"dress rehearsal (${rehearsal_overlay.ENV}): a few steps of the paper "
                             "configuration, not a result")
    if (check := notebook_check(notebook)) is not None:
        check({**values, "PROFILE": profile})
    notes.extend(profile_notes)
    try:
        device = resolve_device(values["DEVICE"])
    except ValueError as err:
        raise ParameterError(f"DEVICE: {err}") from None
    dataset, data_notes = _dataset(values["DATASET"], notebook, profile)
    notes.extend(data_notes)
    run_id = values["RUN_ID"] or results.run_id_for(notebook, values)
    base = results_dir(values["RESULTS_DIR"] or None)

    seed_everything(values["SEED"])
    if profile == "smoke":
        import torch  # deferred with optnb.seed above

        # One thread by default: on small shared CPUs, oversubscribed OpenMP threads spin and made
        # smoke steps up to ~7x slower than a single thread; OPTNB_THREADS overrides.
        torch.set_num_threads(_smoke_threads())

    cfg = Config(
        notebook=notebook,
        profile=profile,
        seed=values["SEED"],
        device=device,
        dataset=dataset,
        dataset_real=dataset in REAL_DATASETS,
        live=_live_mode(values["LIVE"]),
        results_dir=base,
        run_id=run_id,
        run_dir=run_dir(run_id, base, create=False),
        params={k.lower(): v for k, v in values.items() if k in spec},
        parameters=values,
        notes=tuple(notes),
    )
    if register:
        register_run(cfg)
    rehearsal_overlay.note_process(cfg.run_dir)
    if not quiet:
        print(cfg.summary())
    return cfg


# --------------------------------------------------------------------------------------------
# The run's owner

#: this process's claim of the run it registered last (None: none, or its runner holds it)
_registered: ownership.RunLock | None = None


def register_run(cfg: Config) -> None:
    """Claim ``cfg``'s run folder and write its sidecar (status ``running``).

    The claim is skipped when ``$OPTNB_RUN_OWNER`` says that the runner that started this
    process (a kernel, a torchrun job) holds the folder. The run becomes this process's current
    run: the claim of the previous one is given back. If the sidecar cannot be written (a full
    disk), a folder the claim created is removed again."""
    global _registered
    lock = None if ownership.held_for_me(cfg.run_dir) else ownership.claim(cfg.run_dir)
    try:
        results.start_run(cfg)
    except BaseException:
        if lock is not None:
            lock.release(discard=True)
        raise
    previous, _registered = _registered, lock
    if previous is not None:
        previous.release()


def release_run() -> None:
    """Give back the claim :func:`register_run` took (a command calls this when it ends)."""
    global _registered
    lock, _registered = _registered, None
    if lock is not None:
        lock.release()


@contextlib.contextmanager
def registered(cfg: Config, register: bool = True) -> Iterator[Config]:
    """A command's run: :func:`register_run`, the body, then :func:`release_run`.

    If the body raises (a bad checkpoint, a full disk, Ctrl-C), a sidecar that is not complete
    is marked ``failed`` with the error in one line, so no sidecar is left saying ``running``
    for a run nobody runs. ``register=False`` (non-zero torchrun ranks) does none of this."""
    if not register:
        yield cfg
        return
    register_run(cfg)
    try:
        yield cfg
    except BaseException as err:
        if not results.is_complete(cfg.run_dir):
            with contextlib.suppress(OSError):  # a full disk may refuse this write too
                results.mark_failed(cfg.run_dir, results.error_line(err))
        raise
    finally:
        release_run()
