"""Weight initialisation of Section 8: He et al. [81] for convolutions, Xavier [80] for the FC.

BatchNorm starts as the identity (weight 1, bias 0); biases start at zero. The He initialisation
uses ``fan_out`` and the ReLU gain, as in the DenseNet code whose training strategy Section 8
adopts (and as torchvision's ResNet does).
"""

from __future__ import annotations

from torch import nn

__all__ = ["init_weights"]


def init_weights(model: nn.Module) -> nn.Module:
    """Initialise ``model`` in place as in Section 8 and return it."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            if module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model
