"""Dense building blocks shared by the neural recommenders, initialised from the model's seed.

``torch.nn.Linear`` draws its initial weights from torch's global generator, which would make a
model's start depend on whatever ran before it. The layers here draw from the generator the model
owns, so ``seed=`` alone fixes a model (what the plain-versus-secure comparison relies on).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from secagg.errors import ParameterError

__all__ = ["MLP", "seeded_linear"]


def seeded_linear(in_features: int, out_features: int, generator: torch.Generator) -> nn.Linear:
    """A ``nn.Linear`` with PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) init, seeded.

    Args:
        in_features: input width.
        out_features: output width.
        generator: the model's generator.

    Returns:
        The layer; weight shape ``(out_features, in_features)``, bias ``(out_features,)``.
    """
    layer = nn.Linear(in_features, out_features)
    bound = 1.0 / math.sqrt(in_features)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


class MLP(nn.Module):
    """A stack of ``Linear`` layers with ReLU between them (TorchRec ``MLP`` style named part).

    Maps ``(..., in_features)`` to ``(..., layer_sizes[-1])``.
    """

    def __init__(
        self,
        in_features: int,
        layer_sizes: Sequence[int],
        *,
        generator: torch.Generator,
        final_activation: bool = True,
    ) -> None:
        """Build the stack.

        Args:
            in_features: input width.
            layer_sizes: output width of each layer, first to last (at least one).
            generator: the model's generator, for the initial weights.
            final_activation: whether a ReLU follows the last layer too.

        Raises:
            ParameterError: no layers, or a non-positive width.
        """
        super().__init__()
        if not layer_sizes or any(size < 1 for size in layer_sizes) or in_features < 1:
            raise ParameterError(f"MLP needs positive widths, got {in_features} -> {layer_sizes}")
        layers: list[nn.Module] = []
        width = in_features
        for index, size in enumerate(layer_sizes):
            layers.append(seeded_linear(width, size, generator))
            if final_activation or index < len(layer_sizes) - 1:
                layers.append(nn.ReLU())
            width = size
        self.layers = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, inputs: Tensor) -> Tensor:
        """Apply the stack to ``(..., in_features)`` inputs."""
        result: Tensor = self.layers(inputs)
        return result
