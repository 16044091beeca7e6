"""B-cos contribution maps ``W(x)^T x``, batched, for any number of input channels."""

from __future__ import annotations

import torch
from torch import nn

from .base import AttributionMethod, class_gradients, selected_logits


class BcosContribution(AttributionMethod):
    """The contribution map of a B-cos network (Böhle et al. 2022): ``x_enc * dy/dx_enc`` in explanation mode.

    In explanation mode the network's dynamic weights ``W(x)`` and its norm
    statistics are detached, so ``y = W(x)^T x_enc`` is linear in the encoded
    input ``x_enc = [u, 1 - u]`` and this product is exactly each pixel's
    contribution: summed over the image it gives the logit minus the logit
    layer's bias. The two encoded channels of each image channel are added,
    so maps have the image's channels. Unlike the ``bcos`` package's
    ``explain()``, any batch size and any number of channels work, and all K
    classes share one forward pass.
    """

    name = "bcos"

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Contribution maps (N, K, C, H, W) of ``classes``: see :meth:`AttributionMethod.attribute`."""
        needed = ("explanation_mode", "encode", "network")
        if not all(callable(getattr(model, attribute, None)) for attribute in needed):
            raise ValueError(
                f"Method 'bcos' needs a B-cos network (var_utils.models.BcosClassifier, e.g. 'fashion_mnist_bcos' "
                f"or 'bcos_resnet50'), got {type(model).__name__}."
            )
        encoded = model.encode(inputs).detach().requires_grad_(True)
        with model.explanation_mode():
            selected = selected_logits(model.network, encoded, classes)
            contributions = encoded.unsqueeze(1) * class_gradients(selected, encoded)
        channels = inputs.shape[1]
        return contributions[:, :, :channels] + contributions[:, :, channels:]
