"""Colour augmentation of streamed ImageNet training images: the recipes the ImageNet tables inherit.

* ``fb_resnet`` (Table 2). He et al. §3.4 use "the standard color augmentation in [21]" and
  DenseNet trains ImageNet with fb.resnet.torch, whose ``ColorJitter{0.4, 0.4, 0.4}`` changes
  brightness, contrast and saturation by a factor drawn from ``[0.6, 1.4]`` each, in random order,
  and whose ``Lighting(0.1, pca.eigval, pca.eigvec)`` adds AlexNet's PCA noise: per image,
  ``alpha ~ N(0, 0.1^2)`` per component and ``rgb_i = sum_j eigvec[i, j] alpha_j eigval[j]`` added
  to every pixel of channel ``i`` (images in [0, 1]).
* ``darts`` (Table 5). DARTS's ``train_imagenet.py``:
  ``ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2)``, no lighting noise.
* ``none``.

Where the work happens: the jitter runs in the loader's workers on the uint8 crop (torchvision's
``ColorJitter``, random order included). Like DARTS's PIL pipeline, it clamps to [0, 255] and
rounds down after each adjustment; fb.resnet.torch jitters float images without clamping, which
differs only at saturated pixels. The lighting coefficients are drawn in the worker with the crop
(so they depend on ``(seed, epoch, image)`` only) and added on the device, batched, before
normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torchvision.transforms.v2 import ColorJitter

from optnb.data.errors import DataError

#: AlexNet's ImageNet RGB principal components, as fb.resnet.torch states them (images in [0, 1])
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
              (-0.5808, -0.0045, -0.8140),
              (-0.5836, -0.6948, 0.4203))


@dataclass(frozen=True)
class ColorAugmentation:
    """One colour recipe: jitter strengths (0 = off) and the lighting noise's standard deviation."""

    name: str
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    lighting: float = 0.0
    source: str = ""

    @property
    def jitters(self) -> bool:
        return any((self.brightness, self.contrast, self.saturation, self.hue))

    def jitter(self) -> ColorJitter | None:
        """The worker-side transform (``torchvision.transforms.v2.ColorJitter``), or None."""
        if not self.jitters:
            return None
        from torchvision.transforms import v2  # deferred: torchvision is slow to import

        return v2.ColorJitter(brightness=self.brightness or None, contrast=self.contrast or None,
                              saturation=self.saturation or None, hue=self.hue or None)

    def draw_lighting(self) -> torch.Tensor:
        """One image's PCA coefficients ``alpha`` (float32 [3]) from the current RNG."""
        return torch.randn(3) * self.lighting


COLOR_AUGMENTATIONS: dict[str, ColorAugmentation] = {
    "none": ColorAugmentation("none", source="no colour augmentation"),
    "fb_resnet": ColorAugmentation(
        "fb_resnet", brightness=0.4, contrast=0.4, saturation=0.4, lighting=0.1,
        source="fb.resnet.torch (DenseNet's ImageNet code; He et al. §3.4): "
               "ColorJitter{brightness=0.4, contrast=0.4, saturation=0.4}, Lighting(0.1, pca)"),
    "darts": ColorAugmentation(
        "darts", brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2,
        source="DARTS train_imagenet.py: ColorJitter(brightness=0.4, contrast=0.4, "
               "saturation=0.4, hue=0.2)"),
}


def get(name: str) -> ColorAugmentation:
    """The colour recipe called ``name``; an unknown name is one line listing the valid ones."""
    if name not in COLOR_AUGMENTATIONS:
        raise DataError(f"unknown colour augmentation {name!r}; valid: {', '.join(COLOR_AUGMENTATIONS)}")
    return COLOR_AUGMENTATIONS[name]


def lighting_offsets(alpha: torch.Tensor) -> torch.Tensor:
    """Per-image RGB offsets ``[B, 3]`` (images in [0, 1]) of PCA coefficients ``alpha [B, 3]``:
    ``rgb_i = sum_j eigvec[i, j] * alpha_j * eigval[j]``."""
    eigval = torch.tensor(PCA_EIGVAL, dtype=alpha.dtype, device=alpha.device)
    eigvec = torch.tensor(PCA_EIGVEC, dtype=alpha.dtype, device=alpha.device)
    return (alpha * eigval) @ eigvec.T


def add_lighting(images: torch.Tensor, alpha: torch.Tensor, scale: float = 255.0) -> torch.Tensor:
    """Add the lighting noise in place to float ``images [B, 3, H, W]`` whose range is
    ``[0, scale]``."""
    return images.add_(lighting_offsets(alpha.to(images.device, images.dtype)).mul_(scale)[:, :, None, None])
