"""Notebook 05 (``05_hbnet_agdnet``): its parameter spec and per-profile sizes.

``optnb.experiments.profiles.NOTEBOOK_SPECS["05_hbnet_agdnet"]`` points at :data:`NB05`.
"""

from __future__ import annotations

from typing import Any

from optnb.models.cifar_resnet import HB_BOUNDARIES
from optnb.models.errors import ModelOptionError
from optnb.specs import PROFILES, Param, boolean, choice, number

__all__ = ["NB05", "NB05_SIZES", "nb05_sizes"]

NB05: dict[str, Param] = {
    "BETA": number(0.0, 1.0, help="HBNet momentum beta for the drawings and the beta != 0 check"),
    "HB_BOUNDARY": choice(*HB_BOUNDARIES, help="HBNet momentum at stage boundaries"),
    "INCLUDE_IMAGENET": boolean(help="add the Table 2 models to the size table (meta device)"),
}

#: model pairs and batch for the special-case checks, by profile (the size table is always full:
#: it is counted on the meta device and costs no arithmetic).
NB05_SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"hb_pair": ("resnet20", "hbnet20"), "agd_pair": ("densenet22", "agdnet22"),
              "batch": 2},
    "quick": {"hb_pair": ("resnet56", "hbnet56"), "agd_pair": ("densenet40", "agdnet40"),
              "batch": 8},
    "paper": {"hb_pair": ("resnet110", "hbnet110"), "agd_pair": ("densenet52", "agdnet52"),
              "batch": 16},
}


def nb05_sizes(profile: str) -> dict[str, Any]:
    """The sizes of notebook 05 for ``profile`` (``smoke`` | ``quick`` | ``paper``)."""
    if profile not in NB05_SIZES:
        raise ModelOptionError(
            f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}"
        )
    return dict(NB05_SIZES[profile])
