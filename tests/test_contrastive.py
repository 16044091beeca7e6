"""Class-discriminative alternatives to VAR against their definitions: numpy re-implementations and closed forms."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from var_utils import attribute_classes, competition_for_pixels, contrast_to_mean, refine_all
from var_utils.methods.contrastive_gradcam import pairwise_contrast_gradients
from var_utils.methods.softmax_gradient import SoftmaxGradient, softmax_gradients


def _numpy_cgi(maps: np.ndarray) -> np.ndarray:
    """CGI by loops over the classes: positive and the largest, or negative and the smallest, of the set."""
    kept = np.zeros_like(maps)
    for target in range(maps.shape[0]):
        positive_winner = (maps[target] > 0) & (maps[target] == maps.max(axis=0))
        negative_winner = (maps[target] < 0) & (maps[target] == maps.min(axis=0))
        kept[target] = np.where(positive_winner | negative_winner, maps[target], 0.0)
    return kept


@pytest.mark.parametrize("class_dim", [0, 1])
def test_competition_for_pixels_against_numpy_with_ties(class_dim):
    generator = torch.Generator().manual_seed(0)
    maps = torch.randint(-3, 4, (4, 2, 5, 5), generator=generator).double()  # small integers: many ties
    expected = _numpy_cgi(maps.numpy())
    stacked = maps if class_dim == 0 else maps.unsqueeze(0)
    result = competition_for_pixels(stacked, class_dim=class_dim)
    np.testing.assert_array_equal((result if class_dim == 0 else result[0]).numpy(), expected)


def test_competition_for_pixels_is_var_with_a_hard_argmax_on_non_negative_maps():
    # Non-negative maps without ties: the softmax at a tiny temperature is the arg-max, and τ = 0 keeps the winner.
    maps = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    hard_var = refine_all(maps, temperature=1e-6, tau=0.0)
    torch.testing.assert_close(competition_for_pixels(maps), hard_var)
    # At the paper's temperature the competition is soft: with K = 3 a runner-up can also pass 1/K + τ.
    soft_keeps = refine_all(maps) != 0
    assert (soft_keeps.sum(dim=0) > 1).any() and not ((competition_for_pixels(maps) != 0).sum(dim=0) > 1).any()


def test_competition_keeps_a_negative_value_where_it_is_the_smallest():
    maps = torch.tensor([[-2.0], [0.5], [-1.0]])
    assert competition_for_pixels(maps).flatten().tolist() == [-2.0, 0.5, 0.0]


def test_contrast_to_mean_against_numpy():
    maps = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = np.stack([maps[t].numpy() - np.delete(maps.numpy(), t, axis=0).mean(axis=0) for t in range(4)])
    np.testing.assert_allclose(contrast_to_mean(maps).numpy(), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(contrast_to_mean(maps.unsqueeze(0), class_dim=1)[0], contrast_to_mean(maps))


@pytest.mark.parametrize("function", [competition_for_pixels, contrast_to_mean])
def test_a_set_needs_two_classes(function):
    with pytest.raises(ValueError, match="at least two classes"):
        function(torch.rand(1, 4, 4))
    with pytest.raises(TypeError, match="floating-point"):
        function(torch.ones(2, 4, 4, dtype=torch.long))


# ----- softmax gradient ---------------------------------------------------------------------------------------


def test_softmax_gradient_of_a_linear_model_in_closed_form():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5)).double()
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    classes = [4, 1, 2]
    maps = attribute_classes(model, x, classes, "softmax_gradient")
    weights = model[1].weight.detach().numpy()[classes]  # ∇y_k = W_k
    for n in range(2):
        logits = model(x[n : n + 1]).detach().numpy()[0, classes]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        gradient = p[:, None] * (weights - p @ weights)
        expected = gradient.reshape(3, 3, 2, 2) * x[n].numpy()
        np.testing.assert_allclose(maps[n].numpy(), expected, rtol=1e-10, atol=1e-12)


def test_softmax_gradient_equals_autograd_of_the_set_softmax(plain_cnn, small_images):
    classes = torch.tensor([[0, 3, 1], [2, 4, 0]])
    maps = attribute_classes(plain_cnn, small_images, classes, SoftmaxGradient(multiply_by_inputs=False))
    for n in range(small_images.shape[0]):
        for k in range(classes.shape[1]):
            x = small_images[n : n + 1].clone().requires_grad_(True)
            probability = torch.softmax(plain_cnn(x)[0, classes[n]], dim=0)[k]
            (expected,) = torch.autograd.grad(probability, x)
            torch.testing.assert_close(maps[n, k], expected[0], rtol=1e-4, atol=1e-7)


def test_softmax_gradients_sum_to_zero_over_the_set():
    gradients = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    logits = torch.randn(2, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    # Σ_k p_k = 1 for every input, so Σ_k ∇p_k = 0.
    torch.testing.assert_close(softmax_gradients(gradients, logits).sum(dim=1), torch.zeros(2, 3, dtype=torch.float64))


def test_softmax_gradient_refuses_a_single_class_and_bad_settings(plain_cnn, small_images):
    with pytest.raises(ValueError, match="at least two"):
        attribute_classes(plain_cnn, small_images, [1], "softmax_gradient")
    with pytest.raises(TypeError, match="multiply_by_inputs"):
        SoftmaxGradient(multiply_by_inputs="yes")


# ----- contrastive Grad-CAM ------------------------------------------------------------------------------------


def _hand_contrastive_gradcam(model: nn.Module, image: torch.Tensor, classes: list[int], target: int) -> torch.Tensor:
    """Autograd of the explicit loss mean_Q CE({y_t, y_Q}, Q), then Grad-CAM written out."""
    captured = {}
    handle = model.relu2.register_forward_hook(lambda _m, _i, output: captured.update(a=output))
    logits = model(image.unsqueeze(0))[0]
    handle.remove()
    losses = [
        F.cross_entropy(torch.stack([logits[target], logits[q]]).unsqueeze(0), torch.tensor([1]))
        for q in classes
        if q != target
    ]
    (gradient,) = torch.autograd.grad(torch.stack(losses).mean(), captured["a"])
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = (weights * captured["a"]).sum(dim=1, keepdim=True).clamp(min=0)
    return F.interpolate(cam, size=image.shape[1:], mode="bilinear")[0].detach()


def test_contrastive_gradcam_equals_grad_cam_of_the_pairwise_contrast_loss(plain_cnn, small_images):
    classes = [3, 0, 4]
    maps = attribute_classes(plain_cnn, small_images, classes, "contrastive_gradcam", layer="relu2")
    assert maps.shape == (2, 3, 1, 10, 10)
    for n in range(2):
        for k, target in enumerate(classes):
            expected = _hand_contrastive_gradcam(plain_cnn, small_images[n], classes, target)
            torch.testing.assert_close(maps[n, k], expected, rtol=1e-4, atol=1e-6)


def test_pairwise_contrast_of_two_classes_is_the_logit_difference_gradient():
    gradients = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    logits = torch.randn(3, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    contrast = pairwise_contrast_gradients(gradients, logits)
    weight = torch.sigmoid(logits[:, 0] - logits[:, 1]).view(3, 1)
    torch.testing.assert_close(contrast[:, 0], weight * (gradients[:, 0] - gradients[:, 1]))
    torch.testing.assert_close(contrast[:, 1], (1 - weight) * (gradients[:, 1] - gradients[:, 0]))


# ----- CLRP and SGLRP --------------------------------------------------------------------------------------------


def _zennit_relevance(model: nn.Module, image: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """One zennit LRP pass (the package's default rules) from a hand-built initial relevance vector."""
    from zennit.attribution import Gradient

    from var_utils.methods.batched import default_lrp_composite

    with Gradient(model=model, composite=default_lrp_composite(model)) as attributor:
        _, relevance = attributor(image.unsqueeze(0).clone().requires_grad_(True), initial.unsqueeze(0))
    return relevance[0].detach().double()


@pytest.mark.parametrize("method", ["clrp", "sglrp"])
def test_contrastive_lrp_against_a_manual_zennit_computation(plain_cnn, small_images, method):
    classes = [1, 4, 2]
    maps = attribute_classes(plain_cnn, small_images, classes, method)
    assert maps.shape == (2, 3, 3, 10, 10)
    for n in range(2):
        logits = plain_cnn(small_images[n : n + 1]).detach()[0]
        p = torch.softmax(logits[classes], dim=0)
        for k, target in enumerate(classes):
            others = [c for c in classes if c != target]
            first, second = torch.zeros(5), torch.zeros(5)
            if method == "clrp":
                first[target] = logits[target]
                second[others] = logits[others]
            else:
                first[target] = p[k] * (1 - p[k])
                second[others] = p[k] * p[[classes.index(c) for c in others]]
            r_first = _zennit_relevance(plain_cnn, small_images[n], first).numpy()
            r_second = _zennit_relevance(plain_cnn, small_images[n], second).numpy()
            if method == "clrp":
                expected = np.maximum(0, r_first / abs(r_first.sum()) - r_second / abs(r_second.sum()))
            else:
                expected = r_first - r_second * r_first.sum() / r_second.sum()
            np.testing.assert_allclose(maps[n, k].double().numpy(), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["contrastive_gradcam", "clrp", "sglrp"])
def test_set_methods_give_k_maps_and_refuse_single_classes(plain_cnn, small_images, method):
    settings = {"layer": "relu2"} if method == "contrastive_gradcam" else {}
    assert attribute_classes(plain_cnn, small_images, [0, 1, 2, 3], method, **settings).shape[1] == 4
    with pytest.raises(ValueError, match="at least two"):
        attribute_classes(plain_cnn, small_images, [2], method, **settings)


# ----- closed forms on small dense models ------------------------------------------------------------------------
#
# Everything below is compared with formulas written out in numpy from docs/method.md §13, never with the package.
# LRP in zennit: the initial relevance vector r enters at the logits; the epsilon rule on a linear layer z = W a + b
# sends R_i = a_i Σ_j W_ji R_j / s(z_j) down, with the stabiliser s(z) = z + ε·sign(z) (sign(0) = +1); with ε = 0
# and r = e_t y_t that is a ⊙ W_t: LRP-0 of a linear layer is input × gradient.


def _softmax(values: np.ndarray) -> np.ndarray:
    exponentials = np.exp(values - values.max())
    return exponentials / exponentials.sum()


def _stabilised(z: np.ndarray, epsilon: float) -> np.ndarray:
    """Zennit's epsilon-rule denominator: z shifted away from zero by ε with z's sign (+ε at zero)."""
    return z + epsilon * np.where(z >= 0, 1.0, -1.0)


def _epsilon_composite(epsilon: float):
    """The epsilon rule on every linear layer (dense and convolution, the first included), ReLUs passed through."""
    from zennit.composites import LayerMapComposite
    from zennit.rules import Epsilon, Pass
    from zennit.types import Linear

    return LayerMapComposite(layer_map=[(nn.ReLU, Pass()), (Linear, Epsilon(epsilon=epsilon))])


def _clrp(r_target: np.ndarray, r_dual: np.ndarray) -> np.ndarray:
    """CLRP from its two relevance maps (§13): max(0, R_t / |ΣR_t| − R_d / |ΣR_d|), a map of zero sum giving 0."""

    def normalised(relevance: np.ndarray) -> np.ndarray:
        total = abs(relevance.sum())
        return relevance / total if total != 0 else np.zeros_like(relevance)

    return np.maximum(0.0, normalised(r_target) - normalised(r_dual))


def _sglrp(r_target: np.ndarray, r_others: np.ndarray) -> np.ndarray:
    """SGLRP from its two relevance maps (§13): R_t − R_o · ΣR_t / ΣR_o."""
    return r_target - r_others * r_target.sum() / r_others.sum()


# A linear model y = W x + b on 1×2×3 images (d = 6), two images; small integers so the logits are checked by hand.
LINEAR_W = np.array(
    [[1, -1, 0, 2, 0, 1], [0, 2, -1, 0, 1, -1], [-1, 0, 1, 1, -2, 0], [2, 1, 1, -1, 0, 0]], dtype=np.float64
)
LINEAR_B = np.array([0.5, -1.0, 0.0, 1.0])
LINEAR_X = np.array([[1, 2, -1, 0, 1, 3], [-1, 1, 2, -2, 0, 1]], dtype=np.float64)
LINEAR_LOGITS = np.array([[2.5, 2.0, -4.0, 4.0], [-4.5, -2.0, 1.0, 4.0]])  # W x + b, worked out by hand
LINEAR_SETS = [[0, 1, 2], [3, 0, 2]]  # one set per image


def _linear_model() -> nn.Sequential:
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4)).double().eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.from_numpy(LINEAR_W))
        model[1].bias.copy_(torch.from_numpy(LINEAR_B))
    return model


def _linear_inputs() -> torch.Tensor:
    return torch.from_numpy(LINEAR_X).view(2, 1, 2, 3)


def test_linear_model_fixture_matches_the_hand_logits():
    np.testing.assert_array_equal(_linear_model()(_linear_inputs()).detach().numpy(), LINEAR_LOGITS)


def test_lrp_epsilon_zero_on_a_linear_layer_is_input_times_gradient():
    # The premise of the closed forms below: LRP-0 with the logit as initial relevance gives x ⊙ W_t.
    maps = attribute_classes(_linear_model(), _linear_inputs(), [0, 3], "lrp", composite=_epsilon_composite(0.0))
    expected = LINEAR_X[:, None, :] * LINEAR_W[[0, 3]][None]
    np.testing.assert_allclose(maps.numpy().reshape(2, 2, 6), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("epsilon", [0.0, 0.25])
@pytest.mark.parametrize("method", ["clrp", "sglrp"])
def test_contrastive_lrp_of_a_linear_model_with_the_epsilon_rule_in_closed_form(method, epsilon):
    # One linear layer under the epsilon rule: initial relevance r gives R = x ⊙ Σ_j W_j r_j / s(y_j).
    classes = torch.tensor(LINEAR_SETS)
    maps = attribute_classes(_linear_model(), _linear_inputs(), classes, method, composite=_epsilon_composite(epsilon))
    assert maps.shape == (2, 3, 1, 2, 3)
    for n, class_set in enumerate(LINEAR_SETS):
        y = LINEAR_LOGITS[n]
        p = _softmax(y[class_set])
        for k, target in enumerate(class_set):
            others = [j for j in class_set if j != target]

            def relevance(initial: dict[int, float], n=n, y=y) -> np.ndarray:
                return LINEAR_X[n] * sum(LINEAR_W[j] * r / _stabilised(y[j], epsilon) for j, r in initial.items())

            if method == "clrp":  # target logit vs the dual: the logits of the set's other classes
                expected = _clrp(relevance({target: y[target]}), relevance({j: y[j] for j in others}))
            else:  # the softmax gradient over the set: p_t (1 − p_t) at t, p_t p_j at the others
                own = p[k] * (1 - p[k])
                expected = _sglrp(
                    relevance({target: own}), relevance({j: p[k] * p[class_set.index(j)] for j in others})
                )
            np.testing.assert_allclose(maps[n, k].numpy().ravel(), expected, rtol=1e-10, atol=1e-12)
    if method == "clrp" and epsilon == 0.0:
        # With LRP-0 the target's map is input × gradient, so CLRP is built from x ⊙ W_t: spelled out once.
        x, w = LINEAR_X[0], LINEAR_W
        by_hand = np.maximum(0, x * w[0] / abs(x @ w[0]) - x * (w[1] + w[2]) / abs(x @ (w[1] + w[2])))
        np.testing.assert_allclose(maps[0, 0].numpy().ravel(), by_hand, rtol=1e-10, atol=1e-12)


# A two-layer ReLU network y = W2 relu(W1 x + b1) + b2 on one 1×2×2 image (d = 4, 3 hidden units, 5 classes).
RELU_W1 = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, -1]], dtype=np.float64)
RELU_B1 = np.array([-1.0, 0.0, 3.0])
RELU_W2 = np.array([[1, 0, -1], [0, 2, 1], [-1, 1, 2], [2, -1, 0], [1, 1, 1]], dtype=np.float64)
RELU_B2 = np.array([1.0, -3.0, 0.0, -2.0, 1.0])
RELU_X = np.array([1.0, -2.0, 3.0, 1.0])
# By hand: W1 x + b1 = (4 − 1, −1 + 0, −2 + 3) = (3, −1, 1), so the middle unit is off; its W2 column is not zero,
# so a missing ReLU mask changes every gradient. y = W2 (3, 0, 1) + b2 = (2, 1, −1, 6, 4) + b2.
RELU_PRE = np.array([3.0, -1.0, 1.0])
RELU_MASK = np.array([1.0, 0.0, 1.0])
RELU_HIDDEN = RELU_PRE * RELU_MASK
RELU_LOGITS = np.array([3.0, -2.0, -1.0, 4.0, 5.0])


def _relu_net() -> nn.Sequential:
    """The network with its first layer as a 2×2 convolution over the whole 2×2 image.

    That is exactly W1 x + b1 on the flattened image, and the ReLU's output (N, 3, 1, 1) is a 4-D layer for Grad-CAM.
    """
    model = nn.Sequential(
        OrderedDict(conv=nn.Conv2d(1, 3, 2), relu=nn.ReLU(), flatten=nn.Flatten(), fc=nn.Linear(3, 5))
    ).double()
    with torch.no_grad():
        model.conv.weight.copy_(torch.from_numpy(RELU_W1).view(3, 1, 2, 2))
        model.conv.bias.copy_(torch.from_numpy(RELU_B1))
        model.fc.weight.copy_(torch.from_numpy(RELU_W2))
        model.fc.bias.copy_(torch.from_numpy(RELU_B2))
    return model.eval()


def _relu_input() -> torch.Tensor:
    return torch.from_numpy(RELU_X).view(1, 1, 2, 2)


def test_relu_net_fixture_matches_the_hand_activations():
    model, x = _relu_net(), _relu_input()
    np.testing.assert_array_equal(model[:2](x).detach().numpy().ravel(), RELU_HIDDEN)
    np.testing.assert_array_equal(model(x).detach().numpy()[0], RELU_LOGITS)


# In [3, 0, 2] the dual of class 0 has ΣR_d = x · (∇y_3 + ∇y_2) = 0 under LRP-0: CLRP's zero-sum case.
RELU_SETS = [[3, 0, 2], [4, 1], [0, 1, 2, 3, 4]]


@pytest.mark.parametrize("multiply_by_inputs", [True, False])
@pytest.mark.parametrize("class_set", RELU_SETS)
def test_softmax_gradient_of_a_relu_net_in_closed_form(class_set, multiply_by_inputs):
    # ∇y_k = W1ᵀ diag(mask) W2[k]; ∇p_t = p_t (∇y_t − Σ_j p_j ∇y_j) over the set.
    maps = attribute_classes(
        _relu_net(), _relu_input(), class_set, "softmax_gradient", multiply_by_inputs=multiply_by_inputs
    )
    logit_gradients = np.stack([RELU_W1.T @ (RELU_MASK * RELU_W2[k]) for k in class_set])
    p = _softmax(RELU_LOGITS[class_set])
    expected = p[:, None] * (logit_gradients - p @ logit_gradients)
    if multiply_by_inputs:
        expected = expected * RELU_X
    assert maps.shape == (1, len(class_set), 1, 2, 2)
    np.testing.assert_allclose(maps[0].numpy().reshape(len(class_set), 4), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("class_set", RELU_SETS)
def test_contrastive_gradcam_of_a_relu_net_in_closed_form(class_set, relu):
    # At the ReLU's 1×1 output a = relu(W1 x + b1) the logit gradients are the rows of W2, so the channel weights
    # are mean_Q σ(y_t − y_Q) (W2_t − W2_Q), the map is their product with a (clamped when relu), and the
    # bilinear upsampling of a 1×1 map is that constant everywhere.
    maps = attribute_classes(_relu_net(), _relu_input(), class_set, "contrastive_gradcam", layer="relu", relu=relu)
    y = RELU_LOGITS
    for k, target in enumerate(class_set):
        others = [q for q in class_set if q != target]
        weights = np.mean([(RELU_W2[target] - RELU_W2[q]) / (1 + np.exp(y[q] - y[target])) for q in others], axis=0)
        value = weights @ RELU_HIDDEN
        expected = max(value, 0.0) if relu else value
        np.testing.assert_allclose(maps[0, k].numpy(), np.full((1, 2, 2), expected), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("epsilon", [0.0, 0.25])
@pytest.mark.parametrize("method", ["clrp", "sglrp"])
@pytest.mark.parametrize("class_set", RELU_SETS)
def test_contrastive_lrp_of_a_relu_net_with_the_epsilon_rule_in_closed_form(class_set, method, epsilon):
    # Epsilon rule on both layers (the ReLU passes relevance through; an off unit has a = 0, so no relevance):
    # R_hidden = a ⊙ W2ᵀ (r / s(y)), R_input = x ⊙ W1ᵀ (R_hidden / s(W1 x + b1)). With ε = 0, a / z is the mask
    # and R_input = x ⊙ Σ_j (r_j / y_j) ∇y_j: for r = e_t y_t, input × gradient of the target logit.
    maps = attribute_classes(_relu_net(), _relu_input(), class_set, method, composite=_epsilon_composite(epsilon))
    y = RELU_LOGITS
    p = _softmax(y[class_set])

    def relevance(initial: dict[int, float]) -> np.ndarray:
        upper = np.zeros(5)
        for j, r in initial.items():
            upper[j] = r / _stabilised(y[j], epsilon)
        hidden = RELU_HIDDEN * (RELU_W2.T @ upper)
        return RELU_X * (RELU_W1.T @ (hidden / _stabilised(RELU_PRE, epsilon)))

    for k, target in enumerate(class_set):
        others = [j for j in class_set if j != target]
        if method == "clrp":
            expected = _clrp(relevance({target: y[target]}), relevance({j: y[j] for j in others}))
        else:
            own = p[k] * (1 - p[k])
            expected = _sglrp(relevance({target: own}), relevance({j: p[k] * p[class_set.index(j)] for j in others}))
        np.testing.assert_allclose(maps[0, k].numpy().ravel(), expected, rtol=1e-10, atol=1e-12)
    if method == "clrp" and epsilon == 0.0 and class_set == [4, 1]:
        # The same from the explicit input × gradient of each logit: ∇y = W1ᵀ diag(mask) W2[k].
        gradient = {k: RELU_X * (RELU_W1.T @ (RELU_MASK * RELU_W2[k])) for k in (4, 1)}
        by_hand = _clrp(gradient[4], gradient[1])
        np.testing.assert_allclose(maps[0, 0].numpy().ravel(), by_hand, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["clrp", "sglrp"])
@pytest.mark.parametrize("model_name", ["linear", "relu_net"])
def test_default_rules_on_a_dense_first_layer_give_uniform_contrastive_lrp_maps(model_name, method):
    # The default composite is zennit's EpsilonPlusFlat: its first linear layer (here the only Linear, or the
    # whole-image convolution) gets the Flat rule, which spreads the relevance R reaching it evenly over the
    # d inputs: every element gets ΣR / (d + ε). Later dense layers get the epsilon rule (ε = 1e-6), ReLUs pass.
    # Both maps of a row are then constant, so CLRP is max(0, sign ΣR_t − sign ΣR_d) / d and SGLRP is exactly 0:
    # on such models these methods carry no spatial information (a property of the rules, not a bug).
    if model_name == "linear":
        model, inputs, sets, logits, d = _linear_model(), _linear_inputs(), LINEAR_SETS, LINEAR_LOGITS, 6

        def into_first_layer(initial: dict[int, float]) -> float:  # nothing above the first layer
            return sum(initial.values())

    else:
        # W2 a = (2, 1, −1, 6, 4): only class 2 pulls the sums below zero.
        model, inputs, sets, logits, d = _relu_net(), _relu_input(), [[2, 0]], RELU_LOGITS[None], 4

        def into_first_layer(initial: dict[int, float]) -> float:  # Σ_h a_h Σ_j W2_jh r_j / s(y_j): fc, ε rule
            return sum(RELU_HIDDEN @ RELU_W2[j] * r / _stabilised(RELU_LOGITS[j], 1e-6) for j, r in initial.items())

    maps = attribute_classes(model, inputs, torch.tensor(sets), method)
    for n, class_set in enumerate(sets):
        y = logits[n]
        for k, target in enumerate(class_set):
            if method == "sglrp":
                expected = 0.0
            else:
                dual = {j: y[j] for j in class_set if j != target}
                signs = np.sign(into_first_layer({target: y[target]})), np.sign(into_first_layer(dual))
                expected = max(0.0, signs[0] - signs[1]) / d
            np.testing.assert_allclose(maps[n, k].numpy(), np.full(maps.shape[2:], expected), rtol=1e-10, atol=1e-12)
    if method == "clrp":
        assert (maps > 0).any() and (maps == 0).any()  # the sets were chosen so that both cases occur


@pytest.mark.parametrize("count", [2, 3, 5])
@pytest.mark.parametrize("method", ["softmax_gradient", "contrastive_gradcam", "clrp", "sglrp"])
def test_set_methods_give_one_map_per_class_in_set_order(plain_cnn, small_images, method, count):
    # K maps for K classes, and map k belongs to class k of the set: reversing the set reverses the maps.
    settings = {"layer": "relu2"} if method == "contrastive_gradcam" else {}
    classes = [4, 0, 2, 1, 3][:count]
    maps = attribute_classes(plain_cnn, small_images, classes, method, **settings)
    assert maps.shape == (2, count, 1 if method == "contrastive_gradcam" else 3, 10, 10)
    reversed_maps = attribute_classes(plain_cnn, small_images, classes[::-1], method, **settings)
    torch.testing.assert_close(reversed_maps, maps.flip(1), rtol=1e-4, atol=1e-6)
