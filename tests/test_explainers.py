"""VarExplainer and competing_classes against the wrappers, the engine and quantus.MPRT."""

from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch
from quantus.functions.similarity_func import correlation_spearman
from torch import nn

from var_utils import ClassSpecificAttributionWrapper, attribute_classes
from var_utils.evaluation.sanity import randomization_similarity
from var_utils.explainers import VarExplainer, competing_classes


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 5),
    ).eval()


@pytest.fixture(scope="module")
def case():
    model = small_cnn()
    inputs = torch.randn(4, 3, 10, 10, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 3, 4, 1])
    return model, inputs, targets


def test_competing_classes_puts_target_first_then_top_others(case):
    model, inputs, targets = case
    sets = competing_classes(model, inputs, targets, set_size=3)
    logits = model(inputs).detach()
    for row, target, scores in zip(sets.tolist(), targets.tolist(), logits):
        others = [c for c in scores.argsort(descending=True).tolist() if c != target][:2]
        assert row == [target, *others]


@pytest.mark.parametrize("method", ["gradcam", "input_x_gradient", "guided_backprop"])
def test_var_mode_equals_the_wrapper_image_by_image(case, method):
    model, inputs, targets = case
    sets = competing_classes(model, inputs, targets, set_size=3)
    extra = {"layer": "2"} if method == "gradcam" else {}
    maps = VarExplainer(method, sets, mode="var", **extra)(model, inputs, targets)
    for n in range(inputs.shape[0]):
        wrapper = ClassSpecificAttributionWrapper(method, model, sets[n].tolist(), **extra)
        torch.testing.assert_close(maps[n], wrapper.attribute(inputs[n], int(targets[n]))[0])


def test_base_mode_equals_the_engine(case):
    model, inputs, targets = case
    sets = competing_classes(model, inputs, targets, set_size=2)
    maps = VarExplainer("saliency", sets, mode="base")(model, inputs, targets)
    expected = attribute_classes(model, inputs, sets, "saliency")[:, 0]
    torch.testing.assert_close(maps, expected)


def test_explainer_rejects_bad_input(case):
    model, inputs, targets = case
    sets = competing_classes(model, inputs, targets)  # 4 of the 5 classes

    def missing(row):
        return (set(range(5)) - set(row)).pop()

    with pytest.raises(ValueError, match="mode"):
        VarExplainer("saliency", sets, mode="both")
    with pytest.raises(ValueError, match="class_sets"):
        VarExplainer("saliency", sets[0])
    with pytest.raises(ValueError, match="class set"):
        VarExplainer("saliency", sets)(model, inputs, torch.tensor([missing(row) for row in sets.tolist()]))
    with pytest.raises(ValueError, match="images"):
        VarExplainer("saliency", sets)(model, inputs[:2], targets[:2])
    with pytest.raises(ValueError, match="set_size"):
        competing_classes(model, inputs, targets, set_size=1)


def test_var_sanity_check_matches_quantus_mprt(case):
    """One setting of the VAR sanity check cross-checked against quantus.MPRT (same explain function)."""
    model, inputs, targets = case
    sets = competing_classes(model, inputs, targets, set_size=3)
    explainer = VarExplainer("input_x_gradient", sets, mode="var", refine_settings={"normalize": "joint"})

    def explain_numpy(model, inputs, targets, **kwargs):
        maps = explainer(model, torch.as_tensor(inputs), torch.as_tensor(targets))
        return maps.sum(dim=1, keepdim=True).numpy()

    metric = quantus.MPRT(
        layer_order="top_down",
        seed=7,
        normalise=False,
        abs=False,
        similarity_func=correlation_spearman,
        disable_warnings=True,
    )
    expected = metric(
        model=model, x_batch=inputs.numpy(), y_batch=targets.numpy(), explain_func=explain_numpy, batch_size=8
    )
    expected.pop("original")
    ours = randomization_similarity(model, explainer, inputs, targets, seed=8)  # quantus seeds with seed + 1
    assert list(ours["layer"].unique()) == list(expected)
    for layer, scores in expected.items():
        values = ours.loc[ours["layer"] == layer].sort_values("sample")["spearman_signed"].to_numpy()
        finite = np.isfinite(values)
        np.testing.assert_allclose(values[finite], np.asarray(scores)[finite], rtol=1e-5, atol=1e-6)
        assert finite.sum() >= 2, "the comparison must cover real numbers"


def test_numpy_inputs_as_quantus_passes_them_give_numpy_maps(case):
    model, inputs, targets = case
    explainer = VarExplainer("input_x_gradient", competing_classes(model, inputs, targets, set_size=3))
    maps = explainer(model, inputs.numpy(), targets.numpy())
    assert isinstance(maps, np.ndarray) and maps.dtype == np.float32
    np.testing.assert_array_equal(maps, explainer(model, inputs, targets).numpy())
    # Passed to a Quantus metric as it is: the same scores as through an explicit numpy wrapper.
    metric = quantus.Sparseness(disable_warnings=True)
    direct = metric(model=model, x_batch=inputs.numpy(), y_batch=targets.numpy(), explain_func=explainer)

    def wrapped(model, inputs, targets, **kwargs):
        return explainer(model, torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()

    via_wrapper = metric(model=model, x_batch=inputs.numpy(), y_batch=targets.numpy(), explain_func=wrapped)
    np.testing.assert_allclose(direct, via_wrapper)
    assert np.isfinite(direct).all()
