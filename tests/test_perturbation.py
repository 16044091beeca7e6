"""Tests of the RISE insertion/deletion protocol and region removal.

References are independent of the code under test: direct forward passes of the
model, scipy's Gaussian filter for the blur, numpy's stable argsort for the pixel
order, numpy's trapezoid rule for the AUC and hand-computed curves of a linear model.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from var_utils.evaluation.perturbation import blurred, insertion_deletion, perturbation_images, remove_region


def scipy_blur(images: torch.Tensor) -> torch.Tensor:
    """Gaussian blur, σ 5, radius 5 (kernel 11), reflected borders without edge repeat."""
    array = gaussian_filter(images.double().numpy(), sigma=(0, 0, 5, 5), truncate=1.0, mode="mirror")
    return torch.from_numpy(array).to(images.dtype)


def target_probability(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images).softmax(dim=1)[torch.arange(len(targets)), targets]


@pytest.fixture
def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5)
    ).eval()


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    # Values in [1, 2): no pixel equals a zero substrate, so every change is visible.
    images = 1.0 + torch.rand(3, 3, 6, 7, generator=generator)
    attributions = torch.randn(3, 3, 6, 7, generator=generator)
    targets = torch.tensor([0, 3, 4])
    return images, attributions, targets


def linear_model(weights: list[float]) -> nn.Module:
    """Logits (w·x, 0): the probability of class 0 is sigmoid(w·x)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(len(weights), 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].weight[0] = torch.tensor(weights)
        model[1].bias.zero_()
    return model


def sigmoid(values: list[float]) -> list[float]:
    return [1.0 / (1.0 + math.exp(-v)) for v in values]


# Image [[1, 2], [3, 4]], weights [0.5, -1, 0.25, 1] (row-major), attribution order 1, 2, 3, 0.
LINEAR_IMAGE = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
LINEAR_WEIGHTS = [0.5, -1.0, 0.25, 1.0]
LINEAR_ATTRIBUTION = torch.tensor([[[[0.1, 0.4], [0.3, 0.2]]]])


@pytest.mark.parametrize(
    "curve, step, logits",
    [
        # Deletion to zeros removes the contributions -1, 0.75, 4, 0.5 in turn from 3.25.
        ("deletion", 1, [3.25, 5.25, 4.5, 0.5, 0.0]),
        ("deletion", 2, [3.25, 4.5, 0.0]),
        ("deletion", 3, [3.25, 0.5, 0.0]),
        ("deletion", 4, [3.25, 0.0]),
        # Insertion from a zero substrate adds them back in the same order.
        ("insertion", 1, [0.0, -2.0, -1.25, 2.75, 3.25]),
        ("insertion", 3, [0.0, 2.75, 3.25]),
    ],
)
def test_linear_model_curve_by_hand(curve, step, logits):
    result = insertion_deletion(
        linear_model(LINEAR_WEIGHTS),
        LINEAR_IMAGE,
        LINEAR_ATTRIBUTION,
        torch.tensor([0]),
        curve=curve,
        step=step,
        substrate=torch.zeros_like,
    )
    expected = sigmoid(logits)
    np.testing.assert_allclose(result.curves[0].numpy(), expected, rtol=1e-6)
    # Trapezoid rule on x = i / n_steps, written out by hand.
    n_steps = len(expected) - 1
    expected_auc = (sum(expected) - (expected[0] + expected[-1]) / 2) / n_steps
    assert result.auc[0].item() == pytest.approx(expected_auc, rel=1e-6)
    assert result.n_steps == n_steps and result.step == step and result.curve == curve


def test_deletion_goes_from_image_to_zeros(cnn, batch):
    images, attributions, targets = batch
    result = insertion_deletion(cnn, images, attributions, targets, curve="deletion", step=5)
    expected_start = target_probability(cnn, images, targets)
    expected_end = target_probability(cnn, torch.zeros_like(images), targets)
    torch.testing.assert_close(result.curves[:, 0], expected_start)
    torch.testing.assert_close(result.curves[:, -1], expected_end)
    assert result.curves.shape == (3, math.ceil(42 / 5) + 1)


def test_insertion_goes_from_blurred_image_to_image(cnn, batch):
    images, attributions, targets = batch
    result = insertion_deletion(cnn, images, attributions, targets, curve="insertion", step=4)
    expected_start = target_probability(cnn, scipy_blur(images), targets)
    expected_end = target_probability(cnn, images, targets)
    torch.testing.assert_close(result.curves[:, 0], expected_start)
    torch.testing.assert_close(result.curves[:, -1], expected_end)


@pytest.mark.parametrize("curve", ["deletion", "insertion"])
@pytest.mark.parametrize("step", [1, 4, 5, 41, 42, 100])
def test_changed_pixels_follow_the_attribution_order(batch, curve, step):
    images, attributions, _ = batch
    num_pixels = 6 * 7
    sequence = perturbation_images(images, attributions, curve=curve, step=step)
    start = images if curve == "deletion" else scipy_blur(images)
    end = torch.zeros_like(images) if curve == "deletion" else images
    assert sequence.shape == (3, math.ceil(num_pixels / step) + 1, 3, 6, 7)
    # Stable descending order of the channel-summed attribution (ties keep row-major order).
    order = np.argsort(-attributions.sum(dim=1).flatten(1).numpy(), axis=1, kind="stable")
    for sample in range(3):
        previous = torch.zeros(num_pixels, dtype=torch.bool)
        for index, image in enumerate(sequence[sample]):
            changed = ~torch.isclose(image, start[sample], atol=1e-6).all(dim=0).flatten()
            count = min(index * step, num_pixels)
            assert int(changed.sum()) == count
            assert set(np.flatnonzero(changed.numpy())) == set(order[sample, :count])
            assert bool((changed | ~previous).all()), "pixels changed earlier must stay changed"
            torch.testing.assert_close(image.flatten(1)[:, changed], end[sample].flatten(1)[:, changed])
            previous = changed


def test_ties_are_broken_in_row_major_order():
    images = torch.ones(1, 1, 2, 3)
    sequence = perturbation_images(images, torch.zeros(1, 1, 2, 3), step=2, steps=[0, 1, 2, 3])
    expected = torch.tensor(
        [
            [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
            [[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]],
            [[0.0, 0.0, 0.0], [0.0, 1.0, 1.0]],
            [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
        ]
    )
    torch.testing.assert_close(sequence[0, :, 0], expected)


def test_many_ties_follow_a_stable_sort():
    # Three attribution levels over 64x64 pixels: an unstable sort would shuffle the ties.
    attributions = torch.randint(0, 3, (1, 1, 64, 64), generator=torch.Generator().manual_seed(4)).float()
    order = np.argsort(-attributions.flatten().numpy(), kind="stable")
    steps = [1, 700, 1500, 3000]
    sequence = perturbation_images(torch.ones(1, 1, 64, 64), attributions, step=1, steps=steps)
    for image, count in zip(sequence[0], steps):
        assert set(np.flatnonzero(image.flatten().numpy() == 0)) == set(order[:count])


@pytest.mark.parametrize("curve", ["deletion", "insertion"])
@pytest.mark.parametrize("step", [3, 10])
def test_auc_is_the_trapezoid_of_the_curve(cnn, batch, curve, step):
    images, attributions, targets = batch
    result = insertion_deletion(cnn, images, attributions, targets, curve=curve, step=step)
    curves = result.curves.double().numpy()
    expected = np.trapezoid(curves, x=np.linspace(0.0, 1.0, curves.shape[1]), axis=1)
    np.testing.assert_allclose(result.auc.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(result.fractions.numpy(), np.linspace(0.0, 1.0, curves.shape[1]), atol=1e-7)


def test_curves_equal_probabilities_of_the_built_images(cnn, batch):
    images, attributions, targets = batch
    result = insertion_deletion(cnn, images, attributions, targets, curve="insertion", step=6, batch_size=5)
    sequence = perturbation_images(images, attributions, curve="insertion", step=6)
    for sample in range(3):
        repeated = targets[sample].repeat(sequence.shape[1])
        expected = target_probability(cnn, sequence[sample], repeated)
        torch.testing.assert_close(result.curves[sample], expected)


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_batch_size_does_not_change_curves(cnn, batch, batch_size):
    images, attributions, targets = batch
    reference = torch.stack(
        [
            insertion_deletion(cnn, images[i : i + 1], attributions[i : i + 1], targets[i : i + 1], step=5).curves[0]
            for i in range(3)
        ]
    )
    result = insertion_deletion(cnn, images, attributions, targets, step=5, batch_size=batch_size)
    torch.testing.assert_close(result.curves, reference)


@pytest.mark.parametrize("shape", ["full", "one_channel", "no_channel"])
def test_attribution_layouts_are_summed_over_channels(cnn, batch, shape):
    images, attributions, targets = batch
    summed = attributions.sum(dim=1)
    layouts = {"full": attributions, "one_channel": summed.unsqueeze(1), "no_channel": summed}
    # The summed map sorts differently from any single channel: the layouts must agree.
    expected = insertion_deletion(cnn, images, layouts["full"], targets, step=3).curves
    result = insertion_deletion(cnn, images, layouts[shape], targets, step=3).curves
    torch.testing.assert_close(result, expected)
    by_first_channel = insertion_deletion(cnn, images, attributions[:, :1], targets, step=3).curves
    assert not torch.allclose(by_first_channel, expected)


def test_default_step_gives_about_100_steps(cnn):
    images = torch.rand(1, 3, 20, 20)
    result = insertion_deletion(cnn, images, torch.rand(1, 3, 20, 20), torch.tensor([1]))
    assert result.step == 4 and result.n_steps == 100


def test_blurred_matches_scipy_gaussian_filter():
    images = torch.rand(2, 3, 13, 9, dtype=torch.float64)
    torch.testing.assert_close(blurred(images), scipy_blur(images))


def test_inputs_are_not_modified(cnn, batch):
    images, attributions, targets = batch
    copies = images.clone(), attributions.clone()
    insertion_deletion(cnn, images, attributions, targets, curve="deletion", step=7)
    torch.testing.assert_close(images, copies[0], rtol=0, atol=0)
    torch.testing.assert_close(attributions, copies[1], rtol=0, atol=0)


BAD_ARGUMENTS = [
    ({"step": 0}, ValueError, "step"),
    ({"step": -3}, ValueError, "step"),
    ({"step": 1.5}, TypeError, "step"),
    ({"curve": "erase"}, ValueError, "curve"),
    ({"attributions": torch.rand(3, 3, 6, 6)}, ValueError, "attributions"),
    ({"attributions": torch.rand(2, 3, 6, 7)}, ValueError, "attributions"),
    ({"attributions": torch.rand(3, 2, 6, 7)}, ValueError, "attributions"),
    ({"attributions": torch.full((3, 1, 6, 7), float("nan"))}, ValueError, "attributions"),
    ({"targets": torch.tensor([0, 1])}, ValueError, "targets"),
    ({"targets": torch.tensor([[0, 1, 2]])}, ValueError, "targets"),
    ({"targets": torch.tensor([0.0, 1.0, 2.0])}, TypeError, "targets"),
    ({"targets": torch.tensor([0, 1, 5])}, ValueError, "targets"),
    ({"targets": torch.tensor([0, -1, 2])}, ValueError, "targets"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"substrate": lambda x: x[:, :1]}, ValueError, "substrate"),
    ({"inputs": torch.rand(3, 6, 7)}, ValueError, "inputs"),
]


@pytest.mark.parametrize("override, error, name", BAD_ARGUMENTS)
def test_bad_input_raises(cnn, batch, override, error, name):
    images, attributions, targets = batch
    arguments = {"inputs": images, "attributions": attributions, "targets": targets, **override}
    with pytest.raises(error, match=name):
        insertion_deletion(cnn, **arguments)


@pytest.mark.parametrize("steps", [[-1], [10], [0.5]])
def test_perturbation_images_rejects_bad_steps(batch, steps):
    images, attributions, _ = batch
    with pytest.raises(ValueError, match="steps"):
        perturbation_images(images, attributions, step=5, steps=steps)


def test_blur_needs_images_larger_than_the_kernel_radius():
    with pytest.raises(ValueError, match="inputs"):
        blurred(torch.rand(1, 3, 5, 8))


# ---------------------------------------------------------------- remove_region


@pytest.fixture
def region_case() -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.rand(2, 3, 8, 9, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(2, 8, 9, dtype=torch.bool)
    mask[0, 1:4, 2:6] = True
    mask[1, 5:, :3] = True
    return images, mask


def expected_removal(images: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    result = images.clone()
    for n in range(images.shape[0]):
        if how == "zeros":
            fill = torch.zeros_like(images[n])
        elif how == "grey":
            fill = torch.full_like(images[n], float(images[n].double().mean()))
        else:
            fill = scipy_blur(images[n : n + 1])[0]
        rows, cols = torch.nonzero(mask[n], as_tuple=True)
        result[n][:, rows, cols] = fill[:, rows, cols]
    return result


@pytest.mark.parametrize("how", ["blur", "grey", "zeros"])
@pytest.mark.parametrize("layout", ["bool", "float_0_1", "with_channel"])
def test_remove_region_changes_only_the_region(region_case, how, layout):
    images, mask = region_case
    given = {"bool": mask, "float_0_1": mask.float(), "with_channel": mask.unsqueeze(1)}[layout]
    result = remove_region(images, given, how=how)
    torch.testing.assert_close(result, expected_removal(images, mask, how))


def test_remove_region_with_one_mask_for_all_images(region_case):
    images, mask = region_case
    result = remove_region(images, mask[0], how="zeros")
    torch.testing.assert_close(result, expected_removal(images, mask[0].expand(2, 8, 9), "zeros"))


def test_empty_region_leaves_images_unchanged(region_case):
    images, mask = region_case
    torch.testing.assert_close(remove_region(images, torch.zeros_like(mask)), images, rtol=0, atol=0)


@pytest.mark.parametrize(
    "mask, how, name",
    [
        (torch.zeros(2, 8, 8, dtype=torch.bool), "blur", "mask"),
        (torch.zeros(3, 8, 9, dtype=torch.bool), "blur", "mask"),
        (torch.full((2, 8, 9), 0.5), "blur", "mask"),
        (torch.zeros(2, 8, 9, dtype=torch.bool), "noise", "how"),
    ],
)
def test_remove_region_bad_input_raises(region_case, mask, how, name):
    images, _ = region_case
    with pytest.raises(ValueError, match=name):
        remove_region(images, mask, how=how)


def test_old_keyword_mode_still_works_with_a_warning(cnn):
    images, attributions = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    targets = torch.tensor([1])
    expected = insertion_deletion(cnn, images, attributions, targets, curve="insertion", step=8)
    with pytest.warns(FutureWarning, match="`curve`"):
        result = insertion_deletion(cnn, images, attributions, targets, mode="insertion", step=8)
    torch.testing.assert_close(result.curves, expected.curves)
    with pytest.raises(TypeError, match="`curve` only"):
        insertion_deletion(cnn, images, attributions, targets, mode="insertion", curve="insertion")
