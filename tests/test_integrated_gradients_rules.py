"""Quadrature rules of integrated gradients, checked against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from var_utils import attribute_classes
from var_utils.methods.integrated_gradients import (
    GRADED_SCALE,
    INTEGRATION_RULES,
    IntegratedGradients,
    graded_edges,
    integration_points,
)

STEPS = (2, 3, 7, 16, 128)


@pytest.mark.parametrize("rule", INTEGRATION_RULES)
@pytest.mark.parametrize("n_steps", STEPS)
def test_nodes_lie_in_unit_interval_and_weights_sum_to_one(rule, n_steps):
    alphas, weights = integration_points(n_steps, rule)
    assert alphas.shape == weights.shape == (n_steps,)
    assert np.all((alphas >= 0.0) & (alphas <= 1.0))
    assert np.all(np.diff(alphas) > 0)
    assert np.all(weights > 0)
    assert math.isclose(weights.sum(), 1.0, rel_tol=0, abs_tol=1e-13)


def monomial_sum(rule: str, n_steps: int, degree: int) -> float:
    alphas, weights = integration_points(n_steps, rule)
    return float(weights @ alphas**degree)


@pytest.mark.parametrize("n_steps", [1, 2, 5, 8])
def test_gauss_legendre_is_exact_up_to_degree_2n_minus_1(n_steps):
    for degree in range(2 * n_steps):
        assert monomial_sum("gausslegendre", n_steps, degree) == pytest.approx(1 / (degree + 1), abs=1e-13)
    # Degree 2n is not exact: the error is (n!)⁴ / ((2n + 1) ((2n)!)²), at least 3e-10 here.
    miss = math.factorial(n_steps) ** 4 / ((2 * n_steps + 1) * math.factorial(2 * n_steps) ** 2)
    assert 1 / (2 * n_steps + 1) - monomial_sum("gausslegendre", n_steps, 2 * n_steps) == pytest.approx(miss, rel=1e-3)


@pytest.mark.parametrize("n_steps", STEPS)
def test_riemann_rules_on_monomials_match_their_closed_forms(n_steps):
    n = n_steps
    # ∫ α dα = 1/2; the left and right sums miss it by ∓1/(2n), the others are exact.
    assert monomial_sum("riemann_left", n, 1) == pytest.approx((n - 1) / (2 * n), abs=1e-14)
    assert monomial_sum("riemann_right", n, 1) == pytest.approx((n + 1) / (2 * n), abs=1e-14)
    for rule in ("riemann_middle", "riemann_trapezoid", "riemann_endpoints", "riemann_graded"):
        assert monomial_sum(rule, n, 0) == pytest.approx(1.0, abs=1e-14)
        assert monomial_sum(rule, n, 1) == pytest.approx(0.5, abs=1e-14)
    # ∫ α² dα = 1/3: midpoint 1/3 − 1/(12 n²), trapezoid 1/3 + 1/(6 (n−1)²),
    # the original's plain mean over linspace(0, 1, n): Σ j² / ((n−1)² n) = (2n − 1) / (6 (n − 1)).
    assert monomial_sum("riemann_middle", n, 2) == pytest.approx(1 / 3 - 1 / (12 * n**2), abs=1e-14)
    assert monomial_sum("riemann_trapezoid", n, 2) == pytest.approx(1 / 3 + 1 / (6 * (n - 1) ** 2), abs=1e-14)
    assert monomial_sum("riemann_endpoints", n, 2) == pytest.approx((2 * n - 1) / (6 * (n - 1)), abs=1e-14)


@pytest.mark.parametrize("n_steps", STEPS)
def test_original_rule_is_the_mean_over_torch_linspace(n_steps):
    alphas, weights = integration_points(n_steps, "riemann_endpoints")
    expected = torch.linspace(0, 1, n_steps, dtype=torch.float64).numpy()
    np.testing.assert_allclose(alphas, expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(weights, np.full(n_steps, 1 / n_steps))


@pytest.mark.parametrize("n_panels", [1, 4, 33])
@pytest.mark.parametrize("scale", [GRADED_SCALE, 0.5, 3.0])
def test_graded_edges_grow_geometrically(n_panels, scale):
    edges = graded_edges(n_panels, scale)
    assert edges[0] == 0.0 and edges[-1] == 1.0
    # (e_j + scale) is a geometric sequence from scale to 1 + scale.
    ratios = (edges[1:] + scale) / (edges[:-1] + scale)
    np.testing.assert_allclose(ratios, ((1 + scale) / scale) ** (1 / n_panels), rtol=1e-12)


@pytest.mark.parametrize("n_steps", STEPS)
def test_graded_rule_is_the_midpoint_rule_on_its_panels(n_steps):
    alphas, weights = integration_points(n_steps, "riemann_graded")
    widths = np.diff(graded_edges(n_steps))
    np.testing.assert_allclose(weights, widths, rtol=1e-14)
    # The midpoint rule misses ∫ α² over a panel of width h by exactly h³/12.
    assert monomial_sum("riemann_graded", n_steps, 2) == pytest.approx(1 / 3 - np.sum(widths**3) / 12, abs=1e-14)


def test_graded_rule_resolves_a_steep_start_with_fewer_points():
    """∫ λ exp(−λ α) dα = 1 − exp(−λ) with λ = 100: a logit that changes within 1 % of the path."""
    rate = 100.0
    exact = 1 - math.exp(-rate)

    def error(rule: str, n_steps: int) -> float:
        alphas, weights = integration_points(n_steps, rule)
        return abs(weights @ (rate * np.exp(-rate * alphas)) - exact)

    # The midpoint rule with step h gives exact · (λh/2) / sinh(λh/2).
    half = rate / 64 / 2
    assert error("riemann_middle", 64) == pytest.approx(exact * (1 - half / math.sinh(half)), rel=1e-10)
    assert error("riemann_graded", 16) < error("riemann_middle", 64) / 5


class Quadratic(nn.Module):
    """``f_c(x) = Σ_i a_c x_i² + w_{c,i} x_i``: the path derivative is linear in α."""

    def __init__(self, num_pixels: int, num_classes: int = 3) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.a = nn.Parameter(torch.tensor([0.5, -1.0, 2.0][:num_classes], dtype=torch.float64))
        self.w = nn.Parameter(torch.randn(num_classes, num_pixels, generator=generator, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return (flat**2).sum(dim=1, keepdim=True) * self.a + flat @ self.w.T


@pytest.mark.parametrize(
    "rule", ["gausslegendre", "riemann_middle", "riemann_trapezoid", "riemann_endpoints", "riemann_graded"]
)
@pytest.mark.parametrize("baseline", [None, 0.25])
def test_integrated_gradients_of_a_quadratic_model_match_the_closed_form(rule, baseline):
    x = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = Quadratic(9).eval()
    maps = attribute_classes(model, x, [0, 1, 2], "integrated_gradients", n_steps=5, rule=rule, baseline=baseline)
    b = 0.0 if baseline is None else baseline
    weights = model.w.detach().view(3, 1, 3, 3)
    for c in range(3):
        # IG_i = (x_i − b) ∫ (2 a (b + α (x_i − b)) + w_i) dα = (x_i − b) (a (x_i + b) + w_i).
        expected = (x - b) * (model.a[c].item() * (x + b) + weights[c])
        torch.testing.assert_close(maps[:, c], expected, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        difference = model(x) - model(torch.full_like(x, b))
    torch.testing.assert_close(maps.sum(dim=(2, 3, 4)), difference, rtol=1e-12, atol=1e-12)


class Cubic(nn.Module):
    """``f(x) = Σ_i x_i³``, one class."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x**3).flatten(1).sum(dim=1, keepdim=True)


@pytest.mark.parametrize("n_steps", [2, 4, 128])
def test_original_rule_misses_completeness_on_a_cubic_model_by_its_closed_form(n_steps):
    """Zero baseline: g(α) = 3 α² Σ x³, and the plain mean over linspace(0, 1, n) of 3 α² is (2n − 1) / (2 (n − 1))."""
    x = torch.randn(1, 1, 2, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    maps = IntegratedGradients(n_steps=n_steps, rule="riemann_endpoints").attribute(Cubic(), x, torch.tensor([[0]]))
    expected = (x**3).sum() * (2 * n_steps - 1) / (2 * (n_steps - 1))
    torch.testing.assert_close(maps.sum(), expected, rtol=1e-12, atol=1e-12)
    # Gauss–Legendre with two points is exact for the quadratic g.
    exact = IntegratedGradients(n_steps=2, rule="gausslegendre").attribute(Cubic(), x, torch.tensor([[0]]))
    torch.testing.assert_close(exact.sum(), (x**3).sum(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: integration_points(0, "riemann_graded"), ValueError, "`n_steps`"),
        (lambda: integration_points(2.0, "riemann_graded"), TypeError, "`n_steps`"),
        (lambda: integration_points(1, "riemann_endpoints"), ValueError, "`n_steps`"),
        (lambda: integration_points(1, "riemann_trapezoid"), ValueError, "`n_steps`"),
        (lambda: integration_points(4, "simpson"), ValueError, "`rule`"),
        (lambda: graded_edges(0), ValueError, "`n_panels`"),
        (lambda: graded_edges(4, scale=0.0), ValueError, "`scale`"),
        (lambda: graded_edges(4, scale="small"), TypeError, "`scale`"),
        (lambda: IntegratedGradients(n_steps=1, rule="riemann_endpoints"), ValueError, "`n_steps`"),
        (lambda: IntegratedGradients(rule="graded"), ValueError, "`rule`"),
    ],
)
def test_bad_arguments_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
