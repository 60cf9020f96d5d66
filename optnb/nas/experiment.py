"""The glue shared by notebooks 08/09 and ``optnb search``/``optnb evaluate``: data for a resolved
``Config``, the genotype an evaluation run refers to, and the results each run records."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from optnb import data
from optnb.nas import genotypes
from optnb.nas.errors import GenotypeError, NasError
from optnb.nas.evaluate import EvalConfig, EvalResult, full_size_parameters, tensor_loaders
from optnb.nas.params import SEARCH_IMAGE_SIZE, TRANSFER_IMAGE_SIZE
from optnb.nas.search import SearchResult
from optnb.paths import check_run_id, run_dir
from optnb.train import rehearsal_overlay


def _image_size(dataset: str, size: int | None) -> int | None:
    # CIFAR stays at its native 32x32 unless a profile asks otherwise
    return size if dataset in ("embedded", "synthetic", "imagenet") else None


def load_search_data(cfg: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split searched over (uint8 images, labels); smoke shrinks the images."""
    return data.load(cfg.dataset, train=True,
                     image_size=_image_size(cfg.dataset, SEARCH_IMAGE_SIZE[cfg.profile]))


def eval_loaders(cfg: Any, settings: EvalConfig):
    """``(train_loader, test_loader, num_classes)`` for 09.

    Table 4 (and every smoke run): in-memory data on device-resident loaders. Table 5 with the
    real ImageNet tree outside the smoke profile: streamed by ``optnb.data.FolderLoader``
    (RandomResizedCrop + flip + ``settings.color`` at 224, worker processes decode).
    """
    batch = rehearsal_overlay.step_batch(f"evaluate:{settings.network}", settings.batch_size)
    if cfg.task == "imagenet" and cfg.dataset == "imagenet" and cfg.profile != "smoke":
        size = TRANSFER_IMAGE_SIZE[cfg.profile]
        _note(cfg, settings, batch, size)
        opts = {"mean": data.MEAN["imagenet"], "std": data.STD["imagenet"], "resolution": size,
                "seed": settings.seed, "num_workers": min(8, os.cpu_count() or 1)}
        root = data.default_root("imagenet")
        train = data.FolderLoader(root, True, batch, cfg.device, color=settings.color, **opts)
        test = data.FolderLoader(root, False, 2 * batch, cfg.device, **opts)
        return train, test, len(train.classes)
    size = TRANSFER_IMAGE_SIZE[cfg.profile] if cfg.task == "imagenet" else None  # any dataset
    train = data.load(cfg.dataset, train=True, image_size=size)
    test = data.load(cfg.dataset, train=False, image_size=size)
    _note(cfg, settings, batch, int(train[0].shape[-1]))
    loaders = tensor_loaders(replace(settings, batch_size=batch), train, test, cfg.dataset, cfg.device)
    return (*loaders, data.NUM_CLASSES[cfg.dataset])


def _note(cfg: Any, settings: EvalConfig, batch: int, image_size: int) -> None:
    """A rehearsal's record of the evaluation's configuration (``rehearsal_overlay``)."""
    rehearsal_overlay.note_configuration(
        cfg.run_dir, "transfer" if settings.network == "imagenet" else "evaluate", "evaluation",
        settings, settings.batch_size, batch, {"dataset": cfg.dataset, "image_size": image_size})


#: the most a ``genotype.json`` is read of: 16 x the genotype text limit leaves room for any
#: formatting, and the genotype's own limits (``optnb.nas.genotypes``) apply after parsing
GENOTYPE_FILE_BYTES = 16 * genotypes.MAX_TEXT_CHARS


def genotype_of_run(run_id: str, results_dir: str | Path | None = None) -> genotypes.Genotype:
    """The genotype a finished ``08_nas_search`` run wrote (``genotype.json``).

    ``run_id`` must be a run id (``optnb.paths.check_run_id``: a plain folder name), so nothing
    outside ``<results>/runs/`` is ever read; anything else is a one-line ``RunIdError``."""
    check_run_id(run_id, what="SEARCH_RUN")
    path = run_dir(run_id, results_dir, create=False) / "genotype.json"
    if not path.is_file():
        raise NasError(f"search run {run_id!r} has no genotype at {path}; run 08_nas_search "
                       "first or pass GENOTYPE")
    with path.open("rb") as fh:  # a bounded read: the genotype's own limits are checked after it
        raw = fh.read(GENOTYPE_FILE_BYTES + 1)
    if len(raw) > GENOTYPE_FILE_BYTES:
        raise GenotypeError(f"{path} holds more than {GENOTYPE_FILE_BYTES} bytes, far more than any "
                            "genotype; it is not a genotype this suite wrote")
    try:
        return genotypes.from_json(json.loads(raw))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GenotypeError(f"{path} is not a genotype JSON file ({type(err).__name__}); run the "
                            "search again or pass GENOTYPE") from None


def resolve_genotype(spec: str, search_run: str = "",
                     results_dir: str | Path | None = None) -> tuple[genotypes.Genotype, str]:
    """``(genotype, where it came from)``: ``search_run`` wins over ``spec``."""
    if search_run:
        return genotype_of_run(search_run, results_dir), f"search run {search_run}"
    if not spec:
        raise NasError("give GENOTYPE (a name such as DARTS_V2, JSON or Genotype(...) text) or "
                       "SEARCH_RUN (an 08_nas_search run id)")
    return genotypes.parse(spec), (spec if spec in genotypes.REFERENCE else "given genotype")


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return str(device)


def search_summary(result: SearchResult) -> list[tuple[str, Any, str | None]]:
    """``(name, value, unit)`` triples an 08 run records."""
    last = result.history[-1] if result.history else {}
    device = device_name(result.device)
    unit = f"GPU-days on {device}" if result.device.startswith("cuda") else \
        f"device-days on {device} (CPU time, not GPU-days)"
    return [
        ("genotype", genotypes.to_text(result.genotype), None),
        ("genotype_json", genotypes.to_dict(result.genotype), None),
        ("search_cost_gpu_days", result.search_cost_days, unit),
        ("search_wall_s", result.wall_s, "s"),
        ("search_device", device, None),
        ("search_epochs", last.get("epoch", 0), "epochs"),
        ("search_complete", result.complete, None),
        ("search_stopped_early", last.get("stopped_early"), None),  # None, or the DARTS+ rule's reason
        ("param_free_ops", genotypes.count_parameter_free(result.genotype), "ops per cell"),
        ("search_val_acc", last.get("val_acc"), "% (search split, supernet)"),
        ("params_m", full_size_parameters(result.genotype) / 1e6,
         "M (evaluation network C=36, 20 cells, no aux)"),
    ]


def eval_summary(result: EvalResult, task: str, source: str) -> list[tuple[str, Any, str | None]]:
    """``(name, value, unit)`` triples a 09 run records (Table 4 or Table 5 columns)."""
    network = "imagenet" if task == "imagenet" else "cifar"
    size = "C=48, 14 cells" if network == "imagenet" else "C=36, 20 cells"
    last = result.history[-1] if result.history else {}
    rows: list[tuple[str, Any, str | None]] = [
        ("genotype", genotypes.to_text(result.genotype), None),
        ("genotype_source", source, None),
        ("params_m", full_size_parameters(result.genotype, network) / 1e6,
         f"M (paper-size network, {size}, no aux)"),
        ("trained_params_m", result.params_m, "M (the network trained in this run, no aux)"),
        ("epochs", last.get("epoch", 0), "epochs"),
        ("train_wall_s", result.wall_s, "s"),
    ]
    if task == "imagenet":
        rows += [("top1_error", result.test_error, "%"), ("top5_error", result.top5_error, "%")]
    else:
        rows += [("test_error", result.test_error, "%")]
    return rows
