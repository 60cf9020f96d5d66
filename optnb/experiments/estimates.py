"""Rough cost of a planned run (seconds), for ``optnb reproduce --dry-run``.

smoke: measured on the shared 2-core CPU machine (a full ``optnb reproduce --profile smoke
--jobs 2``, papermill time plus ~20 s of process start-up per run). paper: one H100/H200-class
GPU, from the speed targets in ``docs/performance.md`` (CIFAR epoch times, NAS search and
evaluation hours) times the paper's schedules (300 CIFAR epochs, 50 search epochs, 600
evaluation epochs; ImageNet ~90 epochs, loader-bound). quick: a tenth of paper, at least a
minute. No GPU number here was measured yet: replace them with measurements.
"""

from __future__ import annotations

from optnb.experiments import beyond, beyond_nas
from optnb.experiments.targets import NB_CIFAR, NB_EVALUATE, NB_IMAGENET, NB_SEARCH, Target

ESTIMATE_BASIS = {
    "smoke": "2-core CPU, smoke sizes",
    "quick": "one H100/H200-class GPU, ~1/10 of the paper's schedules",
    "paper": "one H100/H200-class GPU, the paper's schedules",
}
_SMOKE_S = {"theory": 45.0, NB_CIFAR: 55.0, NB_IMAGENET: 60.0, NB_SEARCH: 200.0,
            NB_EVALUATE: 80.0}
_CIFAR_EPOCH_S = {  # docs/performance.md targets; HB +10 %, AGD +20 %
    "resnet56": 3.0, "hbnet56": 3.3, "resnet110": 6.0, "hbnet110": 6.6,
    "densenet40": 8.0, "agdnet40": 9.6, "densenet52": 12.0, "agdnet52": 14.4,
    "admmnet56": 6.0,  # two streams through ResNet-56's weights: twice its multiply-adds
}
_IMAGENET_H = {  # ~90 epochs, JPEG-decoding-bound on one GPU
    "resnet34": 10.0, "hbnet34": 10.5, "resnet50": 14.0, "hbnet50": 14.5,
    "resnet101": 22.0, "hbnet101": 23.0, "densenet121": 18.0, "agdnet121": 19.0,
}
_SEARCH_H = {"darts_1st": 1.5, "darts_2nd": 3.75, "hb": 1.1, "hb_init": 1.1, "agd": 1.6}
_EVALUATE_H = 6.0  # 600 epochs, 20 cells, C = 36
_TRANSFER_H = 48.0  # ImageNet mobile setting, 250 epochs
_QUICK_FRACTION = 0.1


def estimate_run_s(profile: str, notebook: str, target: Target | None) -> float:
    """Seconds one run is expected to take (see ``ESTIMATE_BASIS``)."""
    if profile == "smoke":
        return _SMOKE_S.get(notebook, _SMOKE_S["theory"])
    if target is None:  # theory notebooks do not scale with the profile much
        return 60.0
    row = (beyond.variant(target.row).model if target.table == beyond.TABLE.name
           else beyond_nas.variant(target.row).search if target.table == beyond_nas.TABLE.name
           else target.row)
    if notebook == NB_CIFAR:
        seconds = 300 * _CIFAR_EPOCH_S.get(row, 10.0)
    elif notebook == NB_IMAGENET:
        seconds = 3600 * _IMAGENET_H.get(row, 15.0)
    elif notebook == NB_SEARCH:
        seconds = 3600 * _SEARCH_H.get(row, 1.5)
    elif target.role == "transfer":
        seconds = 3600 * _TRANSFER_H
    else:
        seconds = 3600 * _EVALUATE_H
    return seconds if profile == "paper" else max(60.0, _QUICK_FRACTION * seconds)


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
