"""Integrated Gradients with the K classes sharing every interpolation step's forward pass."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._validation import check_choice, check_positive_int
from .base import AttributionMethod, class_gradients, selected_logits

INTEGRATION_RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def integration_points(n_steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes ``alphas`` in [0, 1] and their ``weights`` for ``n_steps`` points.

    ``gausslegendre`` (Captum's default) maps Legendre nodes from [−1, 1] to [0, 1];
    the Riemann rules use equal steps.

    Parameters
    ----------
    n_steps : int
        Number of quadrature points.
    rule : str
        One of :data:`INTEGRATION_RULES`.

    Returns
    -------
    alphas : numpy.ndarray
        (n_steps,) interpolation coefficients in [0, 1].
    weights : numpy.ndarray
        (n_steps,) quadrature weights; they sum to 1.

    Raises
    ------
    ValueError
        ``riemann_trapezoid`` with ``n_steps < 2``.

    Examples
    --------
    >>> integration_points(2, "riemann_middle")
    (array([0.25, 0.75]), array([0.5, 0.5]))
    """
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n_steps)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    if rule == "riemann_trapezoid":
        if n_steps < 2:
            raise ValueError("`n_steps` must be >= 2 for the riemann_trapezoid rule.")
        weights = np.full(n_steps, 1.0 / (n_steps - 1))
        weights[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, n_steps), weights
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[rule]
    return (np.arange(n_steps) + offset) / n_steps, np.full(n_steps, 1.0 / n_steps)


class IntegratedGradients(AttributionMethod):
    """Integrated Gradients (Sundararajan et al. 2017) of K classes at once.

    ``IG_c(x) = (x − b) ⊙ Σ_s w_s ∇f_c(b + α_s (x − b))``. The interpolated
    images are processed in chunks of at most ``internal_batch_size`` images;
    each chunk's forward pass is shared by the K classes, so peak memory does
    not grow with ``n_steps``.

    Parameters
    ----------
    n_steps : int, default 64
        Number of interpolation points.
    baseline : torch.Tensor, float or None, default None
        ``None`` (zeros), a number, or a tensor broadcastable to the inputs.
    rule : str, default "gausslegendre"
        Quadrature rule, one of :data:`INTEGRATION_RULES`.
    internal_batch_size : int, default 16
        Most interpolated images held at once (a performance setting: it does
        not change the maps).
    """

    name = "integrated_gradients"
    performance_settings = ("internal_batch_size",)

    def __init__(
        self,
        n_steps: int = 64,
        baseline: torch.Tensor | float | None = None,
        rule: str = "gausslegendre",
        internal_batch_size: int = 16,
    ) -> None:
        self.n_steps = check_positive_int(n_steps, "n_steps")
        check_choice(rule, "rule", INTEGRATION_RULES)
        if baseline is not None and not isinstance(baseline, (int, float, torch.Tensor)):
            raise TypeError(f"`baseline` must be None, a number or a tensor, got {type(baseline).__name__}.")
        self.baseline = baseline
        self.rule = rule
        self.internal_batch_size = check_positive_int(internal_batch_size, "internal_batch_size")

    def _baselines(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.baseline is None:
            return torch.zeros_like(inputs)
        baseline = torch.as_tensor(self.baseline, dtype=inputs.dtype, device=inputs.device)
        try:
            return torch.broadcast_to(baseline, inputs.shape)
        except RuntimeError:
            raise ValueError(
                f"`baseline` of shape {tuple(baseline.shape)} does not broadcast to the inputs' shape "
                f"{tuple(inputs.shape)}."
            ) from None

    def settings(self) -> dict[str, object]:
        """``n_steps``, ``baseline``, ``rule`` and ``internal_batch_size``: see :meth:`AttributionMethod.settings`."""
        return {
            "n_steps": self.n_steps,
            "baseline": self.baseline,
            "rule": self.rule,
            "internal_batch_size": self.internal_batch_size,
        }

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Integrated Gradients maps (N, K, C, H, W) of ``classes``: see :meth:`AttributionMethod.attribute`."""
        baselines = self._baselines(inputs)
        alphas, weights = integration_points(self.n_steps, self.rule)
        alphas = torch.as_tensor(alphas, dtype=inputs.dtype, device=inputs.device)
        weights = torch.as_tensor(weights, dtype=inputs.dtype, device=inputs.device)
        num_images = inputs.shape[0]
        # Every (image, step) pair is one interpolated image; walk them in chunks.
        image_of = torch.arange(num_images, device=inputs.device).repeat_interleave(self.n_steps)
        step_of = torch.arange(self.n_steps, device=inputs.device).repeat(num_images)
        summed = inputs.new_zeros((num_images, classes.shape[1], *inputs.shape[1:]))
        for start in range(0, image_of.numel(), self.internal_batch_size):
            images = image_of[start : start + self.internal_batch_size]
            steps = step_of[start : start + self.internal_batch_size]
            path = baselines[images] + alphas[steps].view(-1, 1, 1, 1) * (inputs[images] - baselines[images])
            path.requires_grad_(True)
            gradients = class_gradients(selected_logits(model, path, classes[images]), path)
            summed.index_add_(0, images, gradients * weights[steps].view(-1, 1, 1, 1, 1))
        return (inputs - baselines).unsqueeze(1) * summed
