"""Gradient-based maps: saliency, input × gradient and SmoothGrad."""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_positive_int
from .base import AttributionMethod, class_gradients, selected_logits


def input_gradients(model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Gradients of the K class logits with respect to the inputs: one forward, K backward passes.

    Parameters
    ----------
    model : nn.Module
        Classifier returning logits (N, num_classes).
    inputs : torch.Tensor
        Images (N, C, H, W).
    classes : torch.Tensor
        (N, K) class indices, one row per image.

    Returns
    -------
    torch.Tensor
        (N, K, C, H, W) gradients of each row's K logits.
    """
    inputs = inputs.detach().requires_grad_(True)
    return class_gradients(selected_logits(model, inputs, classes), inputs)


class Saliency(AttributionMethod):
    """Gradient of the class logit with respect to the input (Simonyan et al. 2014).

    Parameters
    ----------
    abs : bool, default True
        Return ``|∇|`` (Captum's default) instead of the signed gradient.
    """

    name = "saliency"

    def __init__(self, abs: bool = True) -> None:
        self.abs = abs

    def settings(self) -> dict[str, object]:
        """``{"abs": ...}``: see :meth:`AttributionMethod.settings`."""
        return {"abs": self.abs}

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Saliency maps (N, K, C, H, W) of ``classes``: see :meth:`AttributionMethod.attribute`."""
        gradients = input_gradients(model, inputs, classes)
        return gradients.abs() if self.abs else gradients


class InputXGradient(AttributionMethod):
    """Input times its gradient, ``x ⊙ ∇f_c(x)`` (Shrikumar et al. 2016)."""

    name = "input_x_gradient"

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Input × gradient maps (N, K, C, H, W) of ``classes``: see :meth:`AttributionMethod.attribute`."""
        return inputs.unsqueeze(1) * input_gradients(model, inputs, classes)


class SmoothGrad(AttributionMethod):
    """Saliency averaged over noisy copies of the input (Smilkov et al. 2017).

    Parameters
    ----------
    n_samples : int, default 10
        Number of noisy copies; all are run in one forward pass.
    noise_level : float, default 0.15
        Standard deviation of the Gaussian noise as a fraction of each image's
        value range (``max − min``); the paper suggests 0.1–0.2.
    abs : bool, default True
        Average ``|∇|`` (as Captum's ``NoiseTunnel(Saliency)``) or the signed gradient.
    seed : int, default 0
        Seed of the noise (drawn in float32 from a CPU generator), so maps are
        reproducible, on every device and in every precision.
    """

    name = "smoothgrad"

    def __init__(self, n_samples: int = 10, noise_level: float = 0.15, abs: bool = True, seed: int = 0) -> None:
        self.n_samples = check_positive_int(n_samples, "n_samples")
        if not 0 <= noise_level < float("inf"):
            raise ValueError(f"`noise_level` must be a finite number >= 0, got {noise_level}.")
        self.noise_level = float(noise_level)
        self.abs = abs
        self.seed = seed

    def settings(self) -> dict[str, object]:
        """``n_samples``, ``noise_level``, ``abs`` and ``seed``: see :meth:`AttributionMethod.settings`."""
        return {"n_samples": self.n_samples, "noise_level": self.noise_level, "abs": self.abs, "seed": self.seed}

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """SmoothGrad maps (N, K, C, H, W) of ``classes``: see :meth:`AttributionMethod.attribute`."""
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        # Drawn in float32 whatever the inputs' dtype: the CPU generator draws other numbers for float64, so
        # one seed gives the same noise (and maps) on every device and in every precision.
        noise = torch.randn((self.n_samples, *inputs.shape), generator=generator, dtype=torch.float32)
        value_range = (inputs.amax(dim=(1, 2, 3)) - inputs.amin(dim=(1, 2, 3))).view(1, -1, 1, 1, 1)
        noisy = (inputs.unsqueeze(0) + noise.to(inputs) * self.noise_level * value_range).flatten(0, 1)
        gradients = input_gradients(model, noisy, classes.repeat(self.n_samples, 1))
        if self.abs:
            gradients = gradients.abs()
        return gradients.unflatten(0, (self.n_samples, inputs.shape[0])).mean(dim=0)
