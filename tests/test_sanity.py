"""Tests of the model parameter randomisation test (cascading, top-down).

Independent references: Quantus ``MPRT`` (layer order, randomised models and
Spearman/SSIM similarities), scipy's ``spearmanr``, scikit-image's SSIM, the SSIM
formula written out for a single window, and freshly constructed layers seeded by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch
from quantus.functions.similarity_func import correlation_spearman
from quantus.functions.similarity_func import ssim as quantus_ssim
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

from var_utils.evaluation.sanity import (
    FALLBACK_INIT_STD,
    cascading_randomization,
    randomizable_layers,
    randomization_similarity,
    spearman,
    ssim,
)


class Gain(nn.Module):
    """A layer with its own parameter and no ``reset_parameters``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


class Shuffled(nn.Module):
    """Registers its layers in another order than the forward pass uses them."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(8, 3)
        self.unused = nn.Linear(2, 2)
        self.act = nn.ReLU()
        self.body = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2))
        self.gain = Gain(2)
        self.pool = nn.AdaptiveAvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.gain(self.body(x)))
        return self.head(self.pool(x).flatten(1))


FORWARD_ORDER = ["body.0", "body.1", "gain", "head"]
REGISTRATION_ORDER = ["head", "unused", "body.0", "body.1", "gain"]


def trained_shuffled() -> Shuffled:
    """A Shuffled model whose parameters all differ from any re-initialisation."""
    torch.manual_seed(5)
    model = Shuffled()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(0.5, 1.5)
        model.body[1].running_mean.uniform_(-0.5, 0.5)
        model.body[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def tiny_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 3),
    )
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def input_x_gradient(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Channel-summed gradient × input, (N, 1, H, W)."""
    inputs = inputs.clone().requires_grad_()
    model(inputs).gather(1, targets[:, None]).sum().backward()
    return (inputs.grad * inputs).sum(dim=1, keepdim=True).detach()


def input_x_gradient_numpy(model, inputs, targets, **kwargs) -> np.ndarray:
    return input_x_gradient(model, torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()


def own_state(model: nn.Module, layer: str) -> dict[str, torch.Tensor]:
    module = dict(model.named_modules())[layer]
    return {**dict(module.named_parameters(recurse=False)), **dict(module.named_buffers(recurse=False))}


def same_state(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


# ---------------------------------------------------------------- layers and randomisation


def test_layers_in_forward_order_skip_unused_modules():
    model = trained_shuffled()
    assert randomizable_layers(model, torch.rand(2, 1, 4, 4)) == FORWARD_ORDER
    assert randomizable_layers(model) == REGISTRATION_ORDER


def test_listing_layers_does_not_touch_model_in_train_mode():
    model = trained_shuffled().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    randomizable_layers(model, 5.0 + torch.rand(4, 1, 4, 4))
    assert model.training and all(m.training for m in model.modules())
    assert same_state(before, model.state_dict()), "a train-mode pass would update batch-norm statistics"


def test_cascade_randomises_exactly_the_layers_from_the_top_down():
    model = trained_shuffled()
    original = {layer: own_state(model, layer) for layer in FORWARD_ORDER + ["unused"]}
    steps = list(cascading_randomization(model, seed=3, example_input=torch.rand(1, 1, 4, 4)))
    assert [name for name, _ in steps] == FORWARD_ORDER[::-1]
    for index, (_, randomized) in enumerate(steps, start=1):
        randomized_layers = set(FORWARD_ORDER[-index:])
        for layer, state in original.items():
            changed = not same_state(state, own_state(randomized, layer))
            assert changed == (layer in randomized_layers), (index, layer)


def test_reinitialisation_matches_fresh_layers_seeded_by_hand():
    model = trained_shuffled()
    seed = 11
    *_, (_, randomized) = cascading_randomization(model, seed=seed, example_input=torch.rand(1, 1, 4, 4))
    torch.manual_seed(seed)
    fresh_conv = nn.Conv2d(1, 2, 3, padding=1)  # its constructor calls reset_parameters
    torch.manual_seed(seed)
    fresh_head = nn.Linear(8, 3)
    torch.manual_seed(seed)
    fresh_gain = torch.empty(1, 2, 1, 1).normal_(0.0, FALLBACK_INIT_STD)
    torch.testing.assert_close(randomized.body[0].weight, fresh_conv.weight, rtol=0, atol=0)
    torch.testing.assert_close(randomized.body[0].bias, fresh_conv.bias, rtol=0, atol=0)
    torch.testing.assert_close(randomized.head.weight, fresh_head.weight, rtol=0, atol=0)
    torch.testing.assert_close(randomized.gain.gain, fresh_gain, rtol=0, atol=0)
    norm = randomized.body[1]
    assert torch.equal(norm.weight, torch.ones(2)) and torch.equal(norm.bias, torch.zeros(2))
    assert torch.equal(norm.running_mean, torch.zeros(2)) and torch.equal(norm.running_var, torch.ones(2))


def test_callers_model_and_global_rng_are_untouched():
    model = trained_shuffled()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    example = torch.rand(1, 1, 4, 4)
    rng_before = torch.get_rng_state()
    for _, randomized in cascading_randomization(model, seed=1, example_input=example):
        assert randomized is not model and not randomized.training
    assert same_state(before, model.state_dict())
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_same_seed_same_models_other_seed_other_models():
    model = trained_shuffled()

    def states(seed: int) -> list[dict[str, torch.Tensor]]:
        return [m.state_dict() for _, m in cascading_randomization(model, seed=seed)]

    first, again, other = states(4), states(4), states(5)
    assert all(same_state(a, b) for a, b in zip(first, again))
    assert not any(same_state(a, b) for a, b in zip(first, other))


def test_selected_steps_are_full_cascades_and_copies_are_independent():
    model = trained_shuffled()
    example = torch.rand(1, 1, 4, 4)
    everything = dict(cascading_randomization(model, seed=2, example_input=example))
    selected = list(cascading_randomization(model, ["gain", "body.0"], seed=2, example_input=example))
    assert [name for name, _ in selected] == ["gain", "body.0"]  # top-down whatever the given order
    for name, randomized in selected:
        assert same_state(randomized.state_dict(), everything[name].state_dict())
    # Editing a yielded copy must not leak into later steps.
    steps = cascading_randomization(model, seed=2, example_input=example)
    _, first = next(steps)
    expected_head = first.head.weight.detach().clone()
    with torch.no_grad():
        first.head.weight.fill_(123.0)
    _, second = next(steps)
    assert torch.equal(second.head.weight, expected_head)


@pytest.mark.parametrize(
    "layer_names, error, pattern",
    [
        (["head", "classifier"], ValueError, r"classifier.*body\.0"),
        ("nope", ValueError, "nope"),
        ([], ValueError, "layer_names"),
        (["unused"], ValueError, "unused"),  # never called by the forward pass
    ],
)
def test_bad_layer_names_raise_eagerly(layer_names, error, pattern):
    with pytest.raises(error, match=pattern):
        cascading_randomization(trained_shuffled(), layer_names, example_input=torch.rand(1, 1, 4, 4))


def test_bad_seed_and_model_raise():
    with pytest.raises(TypeError, match="seed"):
        cascading_randomization(trained_shuffled(), seed=1.5)
    with pytest.raises(TypeError, match="model"):
        randomizable_layers(lambda x: x)


# ---------------------------------------------------------------- similarities


def ssim_single_window(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """SSIM of one 7x7 window with sample (N - 1) statistics, as in Wang et al. 2004."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mean_a, mean_b = a.mean(), b.mean()
    var_a, var_b = a.var(ddof=1), b.var(ddof=1)
    cov = ((a - mean_a) * (b - mean_b)).sum() / (a.size - 1)
    return ((2 * mean_a * mean_b + c1) * (2 * cov + c2)) / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2))


def test_ssim_matches_the_formula_on_one_window():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 7)), rng.normal(size=(7, 7))
    data_range = max(a.max(), b.max()) - min(a.min(), b.min())
    assert ssim(a, b) == pytest.approx(ssim_single_window(a, b, data_range), rel=1e-9)


@pytest.mark.parametrize("shape, window", [((16, 12), 7), ((5, 9), 5), ((6, 6), 5), ((3, 4), 3)])
def test_ssim_matches_scikit_image(shape, window):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=shape), rng.normal(size=shape) + 0.5 * rng.normal(size=shape)
    data_range = max(a.max(), b.max()) - min(a.min(), b.min())
    expected = structural_similarity(a, b, data_range=data_range, win_size=window)
    assert ssim(torch.from_numpy(a), b) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (np.eye(8), np.eye(8), 1.0),
        (np.full((4, 4), 2.0), np.full((4, 4), 2.0), 1.0),  # empty data range: identical constant maps
    ],
)
def test_ssim_of_identical_maps_is_one(a, b, expected):
    assert ssim(a, b) == expected


@pytest.mark.parametrize(
    "a, b", [(np.zeros((4, 4)), np.zeros((4, 5))), (np.zeros(9), np.zeros(9)), (np.zeros((2, 5)), np.zeros((2, 5)))]
)
def test_ssim_rejects_bad_shapes(a, b):
    with pytest.raises(ValueError, match="`a`"):
        ssim(a, b)


@pytest.mark.parametrize(
    "a, b, absolute, expected",
    [
        ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], False, -1.0),
        ([1.0, 2.0, 3.0], [-3.0, -2.0, -1.0], True, -1.0),
        # |a| ranks (3, 1, 2) against (1, 2, 3): 1 - 6 * (4 + 1 + 1) / (3 * 8) = -0.5.
        ([-3.0, 1.0, 2.0], [1.0, 2.0, 3.0], True, -0.5),
        ([-3.0, 1.0, 2.0], [1.0, 2.0, 3.0], False, 1.0),
    ],
)
def test_spearman_hand_cases(a, b, absolute, expected):
    assert spearman(np.array(a), np.array(b), absolute) == pytest.approx(expected)


@pytest.mark.parametrize("absolute", [False, True])
def test_spearman_matches_scipy_with_ties(absolute):
    rng = np.random.default_rng(2)
    a = rng.integers(-3, 4, size=(6, 6)).astype(float)  # many ties, mixed signs
    b = a + rng.integers(-2, 3, size=(6, 6))
    transform = np.abs if absolute else (lambda x: x)
    expected = spearmanr(transform(a).ravel(), transform(b).ravel())[0]
    assert spearman(a, torch.from_numpy(b), absolute=absolute) == pytest.approx(expected, rel=1e-12)


def test_spearman_of_a_constant_map_is_nan():
    assert np.isnan(spearman(np.ones((3, 3)), np.arange(9.0).reshape(3, 3)))
    assert np.isnan(spearman(np.array([-2.0, 2.0]), np.array([1.0, 3.0]), absolute=True))


def test_similarities_reject_mismatched_or_non_finite_maps():
    with pytest.raises(ValueError, match="same shape"):
        spearman(np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match="`b`"):
        spearman(np.zeros(4), np.array([0.0, np.nan, 1.0, 2.0]))


# ---------------------------------------------------------------- against quantus.MPRT


@pytest.fixture(scope="module")
def mprt_case():
    model = tiny_cnn()
    generator = torch.Generator().manual_seed(3)
    inputs = torch.randn(5, 3, 12, 12, generator=generator)
    targets = torch.tensor([0, 1, 2, 0, 1])
    # Quantus seeds every layer with its seed + 1.
    table = randomization_similarity(model, input_x_gradient, inputs, targets, seed=8)
    return model, inputs, targets, table


def quantus_mprt(model, inputs, targets, **options) -> dict[str, list[float]]:
    metric = quantus.MPRT(layer_order="top_down", seed=7, normalise=False, disable_warnings=True, **options)
    scores = metric(
        model=model,
        x_batch=inputs.numpy(),
        y_batch=targets.numpy(),
        explain_func=input_x_gradient_numpy,
        batch_size=8,
    )
    scores.pop("original")
    return scores


def ssim_of_2d_maps(a: np.ndarray, b: np.ndarray, batched: bool = True, **kwargs) -> list[float]:
    """Quantus flattens the maps before its similarity function: restore (12, 12)."""
    return np.asarray(quantus_ssim(a.reshape(-1, 12, 12), b.reshape(-1, 12, 12), batched=True))


@pytest.mark.parametrize(
    "column, options",
    [
        ("spearman_signed", {"similarity_func": correlation_spearman, "abs": False}),
        ("spearman_abs", {"similarity_func": correlation_spearman, "abs": True}),
        ("ssim", {"similarity_func": ssim_of_2d_maps, "abs": False}),
    ],
)
def test_similarities_match_quantus_mprt(mprt_case, column, options):
    model, inputs, targets, table = mprt_case
    expected = quantus_mprt(model, inputs, targets, **options)
    assert list(table["layer"].unique()) == list(expected)  # same top-down layer order
    for layer, scores in expected.items():
        ours = table.loc[table["layer"] == layer].sort_values("sample")[column].to_numpy()
        np.testing.assert_allclose(ours, scores, rtol=1e-5, atol=1e-6)


def test_similarity_table_layout(mprt_case):
    _, _, _, table = mprt_case
    assert list(table.columns) == ["step", "layer", "sample", "ssim", "spearman_abs", "spearman_signed"]
    assert len(table) == 4 * 5
    assert table["step"].tolist() == [step for step in range(1, 5) for _ in range(5)]
    assert table["sample"].tolist() == list(range(5)) * 4
    assert table["layer"].tolist() == [layer for layer in ["7", "3", "1", "0"] for _ in range(5)]


def test_a_map_that_ignores_the_model_stays_identical():
    def input_map(model, inputs, targets):
        return inputs.sum(dim=1)

    inputs = torch.randn(2, 3, 8, 8)
    table = randomization_similarity(tiny_cnn(), input_map, inputs, torch.tensor([0, 1]), layer_names=["3"])
    assert table["layer"].tolist() == ["3", "3"]
    np.testing.assert_allclose(table[["ssim", "spearman_abs", "spearman_signed"]].to_numpy(), 1.0)


def test_randomization_similarity_leaves_the_model_untouched(mprt_case):
    model = tiny_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _, inputs, targets, _ = mprt_case
    randomization_similarity(model, input_x_gradient, inputs, targets, layer_names=["0"])
    assert same_state(before, model.state_dict())


@pytest.mark.parametrize(
    "explain, targets, error, pattern",
    [
        (lambda m, x, y: x[:, :, :4], torch.tensor([0, 1]), ValueError, "explain"),
        (lambda m, x, y: x[:1], torch.tensor([0, 1]), ValueError, "explain"),
        (input_x_gradient, torch.tensor([0]), ValueError, "targets"),
        ("gradient", torch.tensor([0, 1]), TypeError, "explain"),
    ],
)
def test_randomization_similarity_bad_input(explain, targets, error, pattern):
    with pytest.raises(error, match=pattern):
        randomization_similarity(tiny_cnn(), explain, torch.randn(2, 3, 8, 8), targets)
