"""Integrated Gradients with the K classes sharing every interpolation step's forward pass."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._validation import check_choice, check_positive, check_positive_int
from .base import AttributionMethod, class_gradients, selected_logits

INTEGRATION_RULES = (
    "gausslegendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "riemann_endpoints",
    "riemann_graded",
)

#: Scale of the ``riemann_graded`` rule: its panel edges are evenly spaced in ``log(alpha + GRADED_SCALE)``.
#: Chosen among 0.001, 0.003, 0.01, 0.03 and 0.1 on single photos with EfficientNet-Lite0 (benchmarks/README.md).
GRADED_SCALE = 0.01

#: Rules that place a point at both ends of the path, so they need at least two points.
_RULES_WITH_ENDPOINTS = ("riemann_trapezoid", "riemann_endpoints")


def graded_edges(n_panels: int, scale: float = GRADED_SCALE) -> np.ndarray:
    """Edges of ``n_panels`` panels of [0, 1] that grow geometrically away from the baseline.

    The edges are ``e_j = scale · ((1 + 1/scale)^(j/n) − 1)`` for ``j = 0 … n``:
    evenly spaced in ``log(alpha + scale)``, so ``e_j + scale`` grows by the factor
    ``(1 + 1/scale)^(1/n)`` from panel to panel. Panels near ``alpha = 0``
    (low-contrast images) are narrow and those near the input wide.

    Parameters
    ----------
    n_panels : int
        Number of panels, at least 1.
    scale : float, default GRADED_SCALE
        Where the grading levels off: panels are about ``log(1 + 1/scale) · (alpha + scale) / n``
        wide, so a smaller scale packs more of them near 0.

    Returns
    -------
    numpy.ndarray
        (n_panels + 1,) increasing edges from 0.0 to 1.0.

    Raises
    ------
    ValueError, TypeError
        ``n_panels`` is not an int >= 1, or ``scale`` is not a finite number > 0.

    Examples
    --------
    >>> graded_edges(2, scale=1.0)
    array([0.        , 0.41421356, 1.        ])
    """
    n_panels = check_positive_int(n_panels, "n_panels")
    scale = check_positive(scale, "scale")
    edges = scale * np.expm1(np.log1p(1.0 / scale) * np.arange(n_panels + 1) / n_panels)
    edges[[0, -1]] = 0.0, 1.0
    return edges


def integration_points(n_steps: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes ``alphas`` in [0, 1] and their ``weights`` for ``n_steps`` points.

    * ``gausslegendre`` (Captum's default) maps Legendre nodes from [−1, 1] to
      [0, 1]; it integrates polynomials of degree ``2 n − 1`` exactly.
    * ``riemann_left``, ``riemann_right`` and ``riemann_middle`` split [0, 1]
      into ``n`` equal steps and take each step's left end, right end or middle
      (the middle rule is exact for degree 1, the others for degree 0).
    * ``riemann_trapezoid`` takes ``linspace(0, 1, n)`` with the two ends at half
      weight (degree 1).
    * ``riemann_endpoints`` is the rule of the original VAR project:
      ``linspace(0, 1, n)``, both ends included, every point weighted ``1/n``
      (a plain mean of the gradients). It is exact for degree 1 by symmetry but,
      unlike the trapezoid, its error shrinks only as ``1/n``.
    * ``riemann_graded`` takes the middle of each of ``n`` panels whose widths
      grow geometrically from the baseline to the input (see
      :func:`graded_edges`), weighted by the panel's width (degree 1). On the
      models measured in ``benchmarks/ig_accuracy.py`` the logits change
      fastest on the low-contrast images near a zero baseline, and this rule
      puts most of its points there.

    Parameters
    ----------
    n_steps : int
        Number of quadrature points, at least 1 (2 for ``riemann_trapezoid``
        and ``riemann_endpoints``).
    rule : str
        One of :data:`INTEGRATION_RULES`.

    Returns
    -------
    alphas : numpy.ndarray
        (n_steps,) increasing interpolation coefficients in [0, 1].
    weights : numpy.ndarray
        (n_steps,) positive quadrature weights; they sum to 1.

    Raises
    ------
    ValueError
        An unknown ``rule``, ``n_steps < 1``, or ``n_steps < 2`` for a rule with
        points at both ends.
    TypeError
        ``n_steps`` is not an int.

    Examples
    --------
    >>> integration_points(2, "riemann_middle")
    (array([0.25, 0.75]), array([0.5, 0.5]))
    >>> integration_points(3, "riemann_endpoints")
    (array([0. , 0.5, 1. ]), array([0.33333333, 0.33333333, 0.33333333]))
    """
    n_steps = check_positive_int(n_steps, "n_steps")
    check_choice(rule, "rule", INTEGRATION_RULES)
    if rule in _RULES_WITH_ENDPOINTS and n_steps < 2:
        raise ValueError(f"`n_steps` must be >= 2 for the {rule} rule, got {n_steps}.")
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n_steps)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    if rule == "riemann_trapezoid":
        weights = np.full(n_steps, 1.0 / (n_steps - 1))
        weights[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, n_steps), weights
    if rule == "riemann_endpoints":
        return np.linspace(0.0, 1.0, n_steps), np.full(n_steps, 1.0 / n_steps)
    if rule == "riemann_graded":
        edges = graded_edges(n_steps)
        return 0.5 * (edges[:-1] + edges[1:]), np.diff(edges)
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
        Quadrature rule, one of :data:`INTEGRATION_RULES` (see
        :func:`integration_points`). ``"riemann_endpoints"`` reproduces the
        original VAR project's integrated gradients (128 steps there).
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
        integration_points(n_steps, rule)  # checks n_steps and rule, and that they go together
        self.n_steps = n_steps
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
