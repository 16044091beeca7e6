"""Insertion / deletion curves (RISE protocol) and region removal.

Insertion and deletion (Petsiuk et al. 2018, "RISE") change an image ``step``
pixels at a time, in order of decreasing attribution, and record the model's
softmax probability of the target class after every step:

- **deletion** starts from the image and replaces its most relevant pixels by a
  substrate (zeros by default): a faithful map makes the probability drop fast
  (low AUC is good);
- **insertion** starts from a blurred copy (Gaussian, kernel 11, σ 5) and puts
  back the original pixels: a faithful map makes the probability rise fast
  (high AUC is good).

The pixel order is the channel-summed attribution sorted in decreasing order;
ties keep row-major pixel order (stable sort), so the order is deterministic.
A "pixel" is a spatial position: all its channels change together.

Substrates live in the space of ``inputs``: zeros on ImageNet-normalised
inputs are the dataset's mean colour, not black.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from .._validation import (
    channel_summed_maps,
    check_choice,
    check_classes_in_range,
    check_images,
    check_logits,
    check_positive,
    check_positive_int,
    check_targets,
    check_tensor,
    renamed_keywords,
)

#: The two RISE curves. (The evaluation's map kinds are :data:`var_utils.MAP_MODES`.)
PERTURBATION_CURVES = ("deletion", "insertion")
REMOVAL_FILLS = ("blur", "grey", "zeros")
BLUR_KERNEL_SIZE = 11
BLUR_SIGMA = 5.0
DEFAULT_NUM_STEPS = 100

Substrate = Callable[[torch.Tensor], torch.Tensor]


def blurred(inputs: torch.Tensor, *, kernel_size: int = BLUR_KERNEL_SIZE, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Gaussian-blurred copy of a batch of images (the RISE insertion substrate).

    Parameters
    ----------
    inputs : torch.Tensor
        Images, shape (N, C, H, W), with H and W larger than ``kernel_size // 2``.
    kernel_size : int, default 11
        Odd side of the square kernel.
    sigma : float, default 5.0
        Standard deviation of the Gaussian, in pixels.

    Returns
    -------
    torch.Tensor
        The blurred images, same shape; borders are reflected (torchvision's
        ``gaussian_blur``).
    """
    inputs = check_images(inputs)
    kernel_size = check_positive_int(kernel_size, "kernel_size")
    sigma = check_positive(sigma, "sigma")
    if kernel_size % 2 == 0:
        raise ValueError(f"`kernel_size` must be odd, got {kernel_size}.")
    if min(inputs.shape[2:]) <= kernel_size // 2:
        raise ValueError(
            f"`inputs` must be larger than {kernel_size // 2} pixels on each side to blur them with a "
            f"{kernel_size}x{kernel_size} kernel (reflected borders), got shape {tuple(inputs.shape)}."
        )
    return gaussian_blur(inputs, [kernel_size, kernel_size], [sigma, sigma])


def _substrate(inputs: torch.Tensor, curve: str, substrate: Substrate | None) -> torch.Tensor:
    if substrate is None:
        return torch.zeros_like(inputs) if curve == "deletion" else blurred(inputs)
    if not callable(substrate):
        raise TypeError(f"`substrate` must be a callable images -> images or None, got {type(substrate).__name__}.")
    background = check_tensor(substrate(inputs), "substrate(inputs)")
    if background.shape != inputs.shape:
        raise ValueError(
            f"`substrate(inputs)` must have the shape of the inputs {tuple(inputs.shape)}, "
            f"got {tuple(background.shape)}."
        )
    return background.to(inputs)


def _resolve_step(step: int | None, num_pixels: int) -> int:
    if step is None:
        return math.ceil(num_pixels / DEFAULT_NUM_STEPS)
    return check_positive_int(step, "step")


@dataclass(frozen=True)
class _PerturbationPath:
    """Everything needed to build the image of any sample at any step."""

    start: torch.Tensor  # (N, C, H, W): the image at step 0
    end: torch.Tensor  # (N, C, H, W): the image once every pixel has changed
    ranks: torch.Tensor  # (N, H*W): position of each pixel in the perturbation order
    step: int
    num_steps: int

    def images(self, samples: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """Images of ``samples[i]`` after ``steps[i]`` steps, shape (len(samples), C, H, W)."""
        changed_count = (steps * self.step).clamp(max=self.ranks.shape[1])
        changed = self.ranks[samples] < changed_count[:, None]
        changed = changed.view(len(samples), 1, *self.start.shape[2:])
        return torch.where(changed, self.end[samples], self.start[samples])


def pixel_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Rank of every pixel by decreasing score, per image; ties keep row-major order (stable sort).

    Parameters
    ----------
    scores : torch.Tensor
        (N, H, W) or (N, P) pixel scores.

    Returns
    -------
    torch.Tensor
        (N, P) int64: 0 for each image's highest-scoring pixel.

    Examples
    --------
    >>> pixel_ranks(torch.tensor([[[0.1, 0.9], [0.5, 0.9]]]))
    tensor([[3, 0, 2, 1]])
    """
    order = torch.sort(scores.flatten(1), dim=1, descending=True, stable=True).indices
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def _perturbation_path(
    inputs: torch.Tensor, attributions: object, curve: str, step: int | None, substrate: Substrate | None
) -> _PerturbationPath:
    inputs = check_images(inputs)
    maps = channel_summed_maps(attributions, inputs).to(inputs.device)
    check_choice(curve, "curve", PERTURBATION_CURVES)
    num_pixels = maps[0].numel()
    step = _resolve_step(step, num_pixels)
    background = _substrate(inputs, curve, substrate)
    start, end = (inputs, background) if curve == "deletion" else (background, inputs)
    return _PerturbationPath(start, end, pixel_ranks(maps), step, math.ceil(num_pixels / step))


@renamed_keywords(mode="curve")
def perturbation_images(
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    *,
    curve: str = "deletion",
    step: int | None = None,
    substrate: Substrate | None = None,
    steps: Sequence[int] | None = None,
) -> torch.Tensor:
    """The perturbed images that :func:`insertion_deletion` feeds to the model.

    After step ``i`` exactly ``min(i * step, H * W)`` pixels (the most relevant
    ones) have changed. Meant for inspection and plots: it holds all requested
    images in memory.

    Parameters
    ----------
    inputs, attributions, curve, step, substrate
        As in :func:`insertion_deletion`.
    steps : sequence of int, optional
        Step indices in ``0 .. n_steps`` to build; all of them by default.

    Returns
    -------
    torch.Tensor
        Shape (N, len(steps), C, H, W).

    Examples
    --------
    >>> images = torch.ones(1, 1, 2, 2)
    >>> relevance = torch.tensor([[[[0.1, 0.9], [0.5, 0.0]]]])
    >>> perturbation_images(images, relevance, step=1, steps=[2])[0, 0, 0]
    tensor([[1., 0.],
            [0., 1.]])
    """
    path = _perturbation_path(inputs, attributions, curve, step, substrate)
    requested = list(range(path.num_steps + 1) if steps is None else steps)
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= path.num_steps for i in requested):
        raise ValueError(f"`steps` must be a sequence of int step indices in 0..{path.num_steps}, got {requested}.")
    step_indices = torch.tensor(requested, dtype=torch.long, device=path.ranks.device)
    num_images, num_steps = inputs.shape[0], step_indices.numel()
    samples = torch.arange(num_images, device=step_indices.device).repeat_interleave(num_steps)
    images = path.images(samples, step_indices.repeat(num_images))
    return images.view(num_images, num_steps, *inputs.shape[1:])


@dataclass(frozen=True)
class PerturbationCurves:
    """Result of :func:`insertion_deletion`.

    Attributes
    ----------
    curves : torch.Tensor
        Target-class probability after each step, shape (N, n_steps + 1);
        column 0 is the unperturbed start (image or substrate).
    auc : torch.Tensor
        Area under each curve, shape (N,): trapezoid rule on the x-axis
        ``i / n_steps`` in [0, 1] (RISE's normalisation by the number of steps).
    curve : str
        "deletion" or "insertion".
    step : int
        Pixels changed per step.
    """

    curves: torch.Tensor
    auc: torch.Tensor
    curve: str
    step: int

    @property
    def n_steps(self) -> int:
        """Number of perturbation steps (``ceil(H * W / step)``)."""
        return self.curves.shape[1] - 1

    @property
    def fractions(self) -> torch.Tensor:
        """The x-axis of the curves: ``i / n_steps`` for i = 0 … n_steps."""
        return torch.linspace(0.0, 1.0, self.n_steps + 1, dtype=self.curves.dtype)


@renamed_keywords(mode="curve")
def insertion_deletion(
    model: nn.Module,
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    targets: torch.Tensor,
    *,
    curve: str = "deletion",
    step: int | None = None,
    substrate: Substrate | None = None,
    batch_size: int = 64,
) -> PerturbationCurves:
    """Deletion or insertion curve of each image (RISE protocol).

    Parameters
    ----------
    model : nn.Module
        Classifier returning logits (N, num_classes); put it in eval mode
        yourself. It runs under ``torch.no_grad``.
    inputs : torch.Tensor
        Images (N, C, H, W), on the model's device.
    attributions : torch.Tensor
        Maps (N, C', H, W) with C' = C or 1, or (N, H, W); summed over channels
        to order the pixels (decreasing; ties in row-major order).
    targets : torch.Tensor
        Class index per image, integer tensor (N,).
    curve : {"deletion", "insertion"}, default "deletion"
        Deletion goes from the image to the substrate, insertion from the
        substrate to the image. Formerly ``mode``.
    step : int, optional
        Pixels (spatial positions) changed per step; the curve has
        ``n_steps + 1`` points with ``n_steps = ceil(H * W / step)``, the last
        step possibly partial. Default ``ceil(H * W / 100)``, about 100 steps
        (RISE used ``step = 224`` on 224x224 images).
    substrate : callable, optional
        ``substrate(inputs) -> images`` of the inputs' shape: what deleted
        pixels become (deletion) or where insertion starts. Default: zeros for
        deletion, :func:`blurred` (kernel 11, σ 5) for insertion.
    batch_size : int, default 64
        Perturbed images per forward pass; images of different samples and
        steps share a batch.

    Returns
    -------
    PerturbationCurves
        ``curves`` (N, n_steps + 1) of softmax probabilities of the targets and
        ``auc`` (N,), both float tensors on the CPU.

    Examples
    --------
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> images, relevance = torch.rand(1, 1, 2, 2), torch.rand(1, 1, 2, 2)
    >>> result = insertion_deletion(model, images, relevance, torch.tensor([0]), step=1)
    >>> result.curves.shape, result.auc.shape
    (torch.Size([1, 5]), torch.Size([1]))
    """
    path = _perturbation_path(inputs, attributions, curve, step, substrate)
    targets = check_targets(targets, inputs.shape[0]).to(inputs.device)
    batch_size = check_positive_int(batch_size, "batch_size")
    num_points = path.num_steps + 1
    samples = torch.arange(inputs.shape[0], device=inputs.device).repeat_interleave(num_points)
    steps = torch.arange(num_points, device=inputs.device).repeat(inputs.shape[0])
    probabilities = []
    with torch.no_grad():
        for chunk in torch.arange(samples.numel(), device=inputs.device).split(batch_size):
            logits = check_logits(model(path.images(samples[chunk], steps[chunk])), chunk.numel())
            check_classes_in_range(targets, logits.shape[1], "targets")
            chunk_targets = targets[samples[chunk]].unsqueeze(1)
            probabilities.append(logits.softmax(dim=1).gather(1, chunk_targets).squeeze(1).cpu())
    curves = torch.cat(probabilities).view(inputs.shape[0], num_points)
    auc = torch.trapezoid(curves, dx=1.0 / path.num_steps, dim=1)
    return PerturbationCurves(curves=curves, auc=auc, curve=curve, step=path.step)


def _region_mask(mask: object, inputs: torch.Tensor) -> torch.Tensor:
    mask = check_tensor(mask, "mask")
    num_images, _, height, width = inputs.shape
    if mask.dim() == 2:
        mask = mask.expand(num_images, height, width)
    if mask.dim() == 4 and mask.shape[1] == 1:
        mask = mask.squeeze(1)
    if tuple(mask.shape) != (num_images, height, width):
        raise ValueError(
            f"`mask` must have shape (H, W), (N, H, W) or (N, 1, H, W) matching the inputs "
            f"(N={num_images}, H={height}, W={width}), got shape {tuple(mask.shape)}."
        )
    if mask.dtype != torch.bool:
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError("`mask` must be boolean or hold only 0 and 1.")
        mask = mask != 0
    return mask.to(inputs.device).unsqueeze(1)


def remove_region(inputs: torch.Tensor, mask: torch.Tensor, *, how: str = "blur") -> torch.Tensor:
    """Replace only the masked pixels of each image ("actionable features").

    Parameters
    ----------
    inputs : torch.Tensor
        Images (N, C, H, W).
    mask : torch.Tensor
        Region to remove: boolean or 0/1, shape (H, W) (same region for every
        image), (N, H, W) or (N, 1, H, W). All channels of a masked pixel change.
    how : {"blur", "grey", "zeros"}, default "blur"
        What the region becomes: the :func:`blurred` image (kernel 11, σ 5),
        one flat value per image equal to its mean over all channels and
        pixels (grey when the inputs are unnormalised RGB), or zeros (the
        dataset mean colour on normalised inputs).

    Returns
    -------
    torch.Tensor
        New images; pixels outside the mask are unchanged.

    Examples
    --------
    >>> images = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])
    >>> remove_region(images, torch.tensor([[True, False], [False, False]]), how="grey")
    tensor([[[[4., 3.],
              [5., 7.]]]])
    """
    inputs = check_images(inputs)
    check_choice(how, "how", REMOVAL_FILLS)
    region = _region_mask(mask, inputs)
    if how == "blur":
        fill = blurred(inputs)
    elif how == "grey":
        fill = inputs.mean(dim=(1, 2, 3), keepdim=True).expand_as(inputs)
    else:
        fill = torch.zeros_like(inputs)
    return torch.where(region, fill, inputs)
