"""Tests of the VAR refinement (``refine``, ``refine_all``, ``class_distribution``).

Independent references: softmaxes written out with ``math.exp`` for small
hand-computed cases, and a numpy float64 re-implementation of docs/method.md#1-the-refinement
for the randomised property tests.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from var_utils.refine import class_distribution, refine, refine_all

SEEDS = (0, 1)


# ---------------------------------------------------------------- references
def numpy_distribution(maps: np.ndarray, temperature: float, use_abs: bool, joint: bool) -> np.ndarray:
    """M = softmax over axis 0 of s(A)/t, written from the definition (float64)."""
    maps = maps.astype(np.float64)
    scores = np.abs(maps) if use_abs else maps.copy()
    if joint:
        scale = np.abs(maps).max()
        scores = scores / (scale if scale > 0 else 1.0)
    exps = np.exp((scores - scores.max(axis=0, keepdims=True)) / temperature)
    return exps / exps.sum(axis=0, keepdims=True)


def numpy_var(maps: np.ndarray, tau: float, temperature: float, use_abs: bool, joint: bool):
    """V_k = A_k M_k 1[M_k - 1/K > tau] for every k, and the margin M_k - 1/K - tau."""
    dist = numpy_distribution(maps, temperature, use_abs, joint)
    margin = dist - 1.0 / maps.shape[0] - tau
    return np.where(margin > 0, maps * dist, 0.0), margin


def random_maps(seed: int, num_classes: int, dtype: torch.dtype, shape=(3, 6, 5)) -> torch.Tensor:
    """Maps with both signs and scales spread over two orders of magnitude."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(num_classes, *shape, generator=generator, dtype=torch.float64)
    scales = torch.exp(torch.randn(num_classes, *shape, generator=generator, dtype=torch.float64))
    return (0.1 * values * scales).to(dtype)


def assert_matches_reference(actual: torch.Tensor, expected: np.ndarray, margin: np.ndarray) -> None:
    """Compare away from the threshold (where float32 vs float64 may decide differently)."""
    clear = np.abs(margin) > 1e-4
    assert clear.mean() > 0.95
    rtol = 1e-5 if actual.dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(actual.double().numpy()[clear], expected[clear], rtol=rtol, atol=1e-7)


# ---------------------------------------------------------------- hand-computed cases
def softmax_by_hand(values: list[float], temperature: float) -> list[float]:
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def test_two_classes_by_hand():
    maps = torch.tensor([[1.0, -0.2, 0.3, 0.0, -0.5], [0.1, 0.9, -0.3, 0.0, 0.45]], dtype=torch.float64)
    expected = np.zeros((2, 5))
    for element in range(5):
        a, b = maps[0, element].item(), maps[1, element].item()
        m = softmax_by_hand([abs(a), abs(b)], 0.1)
        for k, value in enumerate((a, b)):
            expected[k, element] = value * m[k] if m[k] - 0.5 > 0.01 else 0.0
    # Written out: element 0 -> class 0 wins, element 1 -> class 1, ties (2, 3) -> nobody.
    assert expected[0, 0] == pytest.approx(1.0 / (1.0 + math.exp(-9.0)))
    assert expected[1, 1] == pytest.approx(0.9 / (1.0 + math.exp(-7.0)))
    assert expected[0, 4] < 0 and expected[1, 4] == 0.0
    np.testing.assert_allclose(refine_all(maps).numpy(), expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(refine(maps, 0).numpy(), expected[0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(refine(maps, 1).numpy(), expected[1], rtol=1e-12, atol=0)


@pytest.mark.parametrize("use_abs", [True, False])
@pytest.mark.parametrize("temperature, tau", [(0.1, 0.01), (0.5, 0.05), (2.0, 0.0)])
def test_three_classes_by_hand(use_abs, temperature, tau):
    columns = [(0.8, -0.9, 0.1), (0.2, 0.25, -0.3), (-1.0, 0.0, 0.5), (0.05, 0.05, 0.05)]
    maps = torch.tensor(columns, dtype=torch.float64).T.contiguous()
    expected = np.zeros((3, len(columns)))
    for element, column in enumerate(columns):
        scores = [abs(v) if use_abs else v for v in column]
        m = softmax_by_hand(scores, temperature)
        for k in range(3):
            expected[k, element] = column[k] * m[k] if m[k] - 1.0 / 3.0 > tau else 0.0
    result = refine_all(maps, tau=tau, temperature=temperature, use_abs=use_abs)
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-12, atol=1e-300)
    for k in range(3):
        np.testing.assert_allclose(
            refine(maps, k, tau=tau, temperature=temperature, use_abs=use_abs).numpy(), expected[k], rtol=1e-12
        )
    distribution = class_distribution(maps, temperature=temperature, use_abs=use_abs)
    hand = [softmax_by_hand([abs(v) if use_abs else v for v in c], temperature) for c in columns]
    np.testing.assert_allclose(distribution.numpy(), np.array(hand).T, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_classes", [2, 4])
def test_tie_sits_exactly_on_the_threshold(dtype, num_classes):
    # Equal maps give M = 1/K exactly (a power of two), so M - 1/K == tau = 0: strict -> zero.
    maps = torch.full((num_classes, 3), 0.3, dtype=dtype)
    assert torch.equal(refine_all(maps, tau=0.0), torch.zeros_like(maps))
    kept = refine_all(maps, tau=-1e-6)
    torch.testing.assert_close(kept, maps / num_classes)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_margin_equal_to_tau_is_dropped(dtype):
    maps = torch.tensor([[0.5, 0.4], [0.25, 0.1]], dtype=dtype)
    share = class_distribution(maps, temperature=0.25)[0, 0]
    assert share.item() == pytest.approx(1.0 / (1.0 + math.exp(-1.0)), rel=1e-6)
    tau = float(share - 0.5)
    assert refine(maps, 0, tau=tau, temperature=0.25)[0] == 0
    just_below = math.nextafter(tau, -1.0) if dtype == torch.float64 else tau - 1e-6
    assert refine(maps, 0, tau=just_below, temperature=0.25)[0] == pytest.approx(0.5 * share.item())


# ---------------------------------------------------------------- properties
CONFIGS = [
    dict(tau=0.01, temperature=0.1, use_abs=True, normalize=None),
    dict(tau=0.0, temperature=0.05, use_abs=False, normalize=None),
    dict(tau=0.05, temperature=0.2, use_abs=True, normalize="joint"),
    dict(tau=-0.1, temperature=1.0, use_abs=False, normalize="joint"),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_classes", [2, 3, 4, 5])
def test_matches_numpy_reference(num_classes, dtype, config, seed):
    maps = random_maps(seed, num_classes, dtype)
    expected, margin = numpy_var(
        maps.double().numpy(), config["tau"], config["temperature"], config["use_abs"], config["normalize"] == "joint"
    )
    result = refine_all(maps, **config)
    assert result.dtype == dtype and result.shape == maps.shape
    assert_matches_reference(result, expected, margin)
    for k in range(num_classes):
        assert torch.equal(refine(maps, k, **config), result[k])
    # Exactly zero where the mask is off; sign of A kept where it is on.
    assert torch.all(result[torch.from_numpy(margin < -1e-4)] == 0)
    on = torch.from_numpy(margin > 1e-4)
    assert torch.equal(torch.sign(result[on]), torch.sign(maps[on]))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_classes", [3, 4, 5])
def test_invariant_to_order_of_other_classes(num_classes, dtype, seed):
    maps = random_maps(seed, num_classes, dtype)
    target = 1
    others = [k for k in range(num_classes) if k != target]
    for permutation in (others[::-1], others[1:] + others[:1]):
        order = [target] + permutation
        torch.testing.assert_close(refine(maps[order], 0), refine(maps, target), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("normalize", [None, "joint"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("num_classes", [2, 5])
def test_batched_equals_per_sample_loop(num_classes, dtype, normalize):
    # Samples of very different scales: "joint" must normalise each one on its own.
    batch = torch.stack([random_maps(seed, num_classes, dtype) * 10.0**seed for seed in range(3)])
    batched = refine_all(batch, normalize=normalize, class_dim=1)
    looped = torch.stack([refine_all(sample, normalize=normalize) for sample in batch])
    # Vectorised float32 kernels may differ in the last bit; any mask flip would exceed this.
    torch.testing.assert_close(batched, looped, rtol=1e-6, atol=1e-12)
    target = refine(batch, num_classes - 1, normalize=normalize, class_dim=1)
    torch.testing.assert_close(target, looped[:, num_classes - 1], rtol=1e-6, atol=1e-12)


def test_joint_normalisation_by_hand():
    maps = torch.tensor([[2.0, -4.0], [1.0, 3.0]], dtype=torch.float64)
    joint_max = 4.0
    expected = np.zeros((2, 2))
    for element in range(2):
        column = [maps[0, element].item(), maps[1, element].item()]
        m = softmax_by_hand([abs(v) / joint_max for v in column], 0.1)
        for k in range(2):
            expected[k, element] = column[k] * m[k] if m[k] - 0.5 > 0.01 else 0.0
    np.testing.assert_allclose(refine_all(maps, normalize="joint").numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("scale", [1e-3, 0.37, 25.0])
@pytest.mark.parametrize("num_classes", [2, 4])
def test_joint_normalisation_is_scale_invariant(num_classes, scale):
    maps = random_maps(3, num_classes, torch.float64)
    mask = refine_all(maps, normalize="joint") != 0
    torch.testing.assert_close(refine_all(maps * scale, normalize="joint"), refine_all(maps, normalize="joint") * scale)
    assert torch.equal(refine_all(maps * scale, normalize="joint") != 0, mask)
    # Without normalisation the softmax sharpness (hence the mask) depends on the scale.
    assert not torch.equal(refine_all(maps * scale, normalize=None) != 0, refine_all(maps, normalize=None) != 0)


def test_signed_maps_compete_without_abs():
    # A large negative map wins with use_abs (|-1| > |0.5|) but loses on the signed values.
    maps = torch.tensor([[-1.0], [0.5]])
    assert refine(maps, 0, use_abs=True).item() < -0.99
    assert refine(maps, 0, use_abs=False).item() == 0.0
    assert refine(maps, 1, use_abs=False).item() == pytest.approx(0.5 / (1.0 + math.exp(-15.0)))


@pytest.mark.parametrize("normalize", [None, "joint"])
@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_all_zero_maps_give_zeros(num_classes, normalize):
    maps = torch.zeros(num_classes, 2, 4, 4)
    result = refine_all(maps, normalize=normalize)
    assert torch.equal(result, torch.zeros_like(maps))
    torch.testing.assert_close(class_distribution(maps, normalize=normalize), torch.full_like(maps, 1 / num_classes))


def test_list_input_is_stacked_on_dim_zero():
    first, second = torch.tensor([1.0, -0.1]), torch.tensor([0.2, 0.8])
    torch.testing.assert_close(refine([first, second], 1), refine(torch.stack([first, second]), 1), rtol=0, atol=0)
    assert refine((first, second), 0)[0].item() == pytest.approx(1.0 / (1.0 + math.exp(-8.0)))


def test_distribution_sums_to_one_over_class_dim():
    maps = random_maps(0, 4, torch.float64).unsqueeze(0).repeat(2, 1, 1, 1, 1)
    total = class_distribution(maps, class_dim=1).sum(dim=1)
    torch.testing.assert_close(total, torch.ones_like(total))


# ---------------------------------------------------------------- bad input
GOOD = torch.rand(3, 4)
BAD_INPUTS = [
    (dict(maps=torch.rand(1, 4)), ValueError, "maps"),
    (dict(maps=[torch.rand(4), torch.rand(5)]), ValueError, "maps"),
    (dict(maps=torch.tensor([[1.0, float("nan")], [0.0, 1.0]])), ValueError, "maps"),
    (dict(maps=torch.tensor([[1.0, float("inf")], [0.0, 1.0]])), ValueError, "maps"),
    (dict(maps=torch.ones(2, 3, dtype=torch.int64)), TypeError, "maps"),
    (dict(maps="not maps"), TypeError, "maps"),
    (dict(maps=[torch.rand(2), 1.0]), TypeError, "maps"),
    (dict(tau=float("nan")), ValueError, "tau"),
    (dict(tau="0.01"), TypeError, "tau"),
    (dict(temperature=0.0), ValueError, "temperature"),
    (dict(temperature=-1.0), ValueError, "temperature"),
    (dict(temperature=float("inf")), ValueError, "temperature"),
    (dict(temperature="hot"), TypeError, "temperature"),
    (dict(normalize="max"), ValueError, "normalize"),
    (dict(target_index=3), ValueError, "target_index"),
    (dict(target_index=-1), ValueError, "target_index"),
    (dict(target_index=1.0), TypeError, "target_index"),
    (dict(target_index=True), TypeError, "target_index"),
    (dict(class_dim=2), ValueError, "class_dim"),
    (dict(maps=torch.rand(4, 1), class_dim=1), ValueError, "maps"),
]


@pytest.mark.parametrize("kwargs, error, name", BAD_INPUTS)
def test_bad_input_raises_naming_the_argument(kwargs, error, name):
    arguments = dict(maps=GOOD, target_index=0) | kwargs
    with pytest.raises(error, match=f"`{name}`"):
        refine(**arguments)
    if "target_index" not in kwargs:
        arguments.pop("target_index")
        with pytest.raises(error, match=f"`{name}`"):
            refine_all(**arguments)
