"""Contrastive LRP against the other classes of the set: CLRP (Gu et al. 2018) and SGLRP (Iwana et al. 2019).

Both propagate two initial relevances through the same zennit rules as ``lrp``
(each image repeated once per class of its set, both in one batched pass) and
combine the two relevance maps:

* CLRP: the target's logit gives ``R_t``, the logits of the other classes of the
  set give the dual ``R_d``; ``R = max(0, R_t / |ΣR_t| − R_d / |ΣR_d|)``.
* SGLRP: the softmax gradient over the set is the initial relevance: ``p_t (1 − p_t)``
  at the target gives ``R_t``, ``p_t p_j`` at every other class j gives ``R_o``;
  ``R = R_t − R_o · ΣR_t / ΣR_o``.

Sums run over a map's channels and pixels (``docs/method.md``, section 13).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_classes_in_range, check_logits
from .base import AttributionMethod
from .batched import count_module_calls, default_lrp_composite, match_input_size, refuse_modules_without_rules


def _map_sums(maps: torch.Tensor) -> torch.Tensor:
    return maps.flatten(1).sum(dim=1).view(-1, *([1] * (maps.dim() - 1)))


def _safe_divide(maps: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
    """``maps / sums`` per row, zero where a row's sum is zero (no relevance to normalise)."""
    return torch.where(sums != 0, maps / torch.where(sums != 0, sums, torch.ones_like(sums)), torch.zeros_like(maps))


class _SetLRP(AttributionMethod):
    """LRP with two initial relevances per (image, class of the set), combined by :meth:`combine`."""

    compares_classes = True

    def __init__(self, composite=None) -> None:
        self.composite = composite

    def settings(self) -> dict[str, object]:
        """``{"composite": ...}``: see :meth:`AttributionMethod.settings`."""
        return {"composite": self.composite}

    def initial_relevances(
        self, logits: torch.Tensor, targets: torch.Tensor, sets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The target's and the contrast's initial relevance vectors (M, num_classes) for M rows."""
        raise NotImplementedError

    def combine(self, target: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
        """The map of each row from its two relevance maps (M, C, H, W)."""
        raise NotImplementedError

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Maps (N, K, C, H, W) of ``classes``, each against its set: see :meth:`AttributionMethod.attribute`."""
        from zennit.attribution import Gradient

        logits, _ = count_module_calls(model, inputs)
        check_classes_in_range(classes, check_logits(logits, inputs.shape[0]).shape[1])
        if self.composite is None:
            refuse_modules_without_rules(self.name, model)
        num_images, num_classes = classes.shape
        rows = inputs.detach().repeat_interleave(num_classes, dim=0)
        targets = classes.flatten().to(inputs.device)
        sets = classes.to(inputs.device).repeat_interleave(num_classes, dim=0)
        composite = self.composite if self.composite is not None else default_lrp_composite(model)

        def two_relevances(output: torch.Tensor) -> torch.Tensor:
            first, contrast = self.initial_relevances(output[: len(rows)].detach(), targets, sets)
            return torch.cat([first, contrast]).to(output.dtype)

        with Gradient(model=model, composite=composite) as attributor:
            _, relevance = attributor(torch.cat([rows, rows]).requires_grad_(True), two_relevances)
        relevance = match_input_size(relevance.detach(), torch.cat([rows, rows]))
        maps = self.combine(relevance[: len(rows)], relevance[len(rows) :])
        return maps.unflatten(0, (num_images, num_classes))


class CLRP(_SetLRP):
    """Contrastive LRP: the target's normalised relevance minus that of the other classes of the set, clamped at zero.

    Parameters
    ----------
    composite : zennit.core.Composite, optional
        The rules; default those of ``lrp`` (:func:`~var_utils.methods.batched.default_lrp_composite`).
    """

    name = "clrp"

    def initial_relevances(
        self, logits: torch.Tensor, targets: torch.Tensor, sets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The target's logit, and the logits of the set's other classes (the dual), as initial relevance."""
        target = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
        in_set = torch.zeros_like(logits).scatter_(1, sets, 1.0)
        return target * logits, (in_set - target) * logits

    def combine(self, target: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
        """``max(0, R_t / |ΣR_t| − R_d / |ΣR_d|)``."""
        normalised = _safe_divide(target, _map_sums(target).abs()) - _safe_divide(contrast, _map_sums(contrast).abs())
        return normalised.clamp(min=0)


class SGLRP(_SetLRP):
    """Softmax-gradient LRP: the softmax gradient over the set as initial relevance.

    Parameters
    ----------
    composite : zennit.core.Composite, optional
        The rules; default those of ``lrp``.
    """

    name = "sglrp"

    def initial_relevances(
        self, logits: torch.Tensor, targets: torch.Tensor, sets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``p_t (1 − p_t)`` at the target and ``p_t p_j`` at the set's other classes, ``p`` the set's softmax."""
        set_probabilities = torch.softmax(logits.gather(1, sets), dim=1)
        probabilities = torch.zeros_like(logits).scatter_(1, sets, set_probabilities)
        target_probability = probabilities.gather(1, targets.view(-1, 1))
        target = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
        return target * target_probability * (1 - target_probability), (1 - target) * target_probability * probabilities

    def combine(self, target: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
        """``R_t − R_o · ΣR_t / ΣR_o`` (``R_t`` alone where ``ΣR_o`` is zero)."""
        return target - _safe_divide(contrast, _map_sums(contrast)) * _map_sums(target)
