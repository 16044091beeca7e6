"""AttnLRP for vision transformers (Achtibat et al. 2024), as gradient times input with modified backward rules.

Layer-wise relevance propagation's rules for a transformer can all be written
as changes to the backward pass, after which ``x * dy/dx`` is the relevance:

- layer norm: the identity rule on the normalisation, i.e. the standard
  deviation is detached (the layer is then linear in its input);
- GELU (the activation of torchvision's ViTs; other activations keep their
  gradient): the identity rule, the gradient
  replaced by ``gelu(x) / x`` so that ``x * gradient = gelu(x)``;
- attention: ``rule="constant"`` holds the attention probabilities constant
  (CP-LRP, the treatment the ``lxt`` package applies to torchvision ViTs);
  ``rule="uniform"`` back-propagates through the softmax with AttnLRP's
  uniform rule for the two products (gradients to queries and keys / 4, to
  values / 2);
- linear layers, residual sums and the patch embedding: the plain gradient
  (LRP's epsilon rule with epsilon -> 0), so biases, the class token and the
  position embeddings absorb their share.

With ``rule="constant"`` the relevance is conserved: it sums over the input to
the logit minus what the biases and embeddings absorb (exactly the logit for
a model without them, which the tests check). The ``lxt`` package itself was
not used: it requires ``transformers``, ``accelerate``, ``bitsandbytes`` and
``open_clip_torch`` to install, and patches ``nn.GELU``, ``nn.LayerNorm`` and
``nn.MultiheadAttention`` for the whole process; these rules act only inside
one attribution call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .._validation import check_choice
from .base import AttributionMethod, class_gradients, selected_logits
from .transformer import exposed_attention


class _IdentityRule(torch.autograd.Function):
    """``activation(x)`` forward; backward multiplies by ``activation(x) / x`` (LRP's identity rule)."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        # Where x = 0 the output is 0 too (GELU, SiLU): any finite ratio gives zero relevance there.
        ratio = torch.where(inputs == 0, torch.zeros_like(inputs), outputs / torch.where(inputs == 0, 1, inputs))
        ctx.save_for_backward(ratio)
        return outputs.clone()

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> tuple[torch.Tensor, None]:
        (ratio,) = ctx.saved_tensors
        return gradient * ratio, None


def _layer_norm_identity_rule(inputs, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = tuple(range(-len(normalized_shape), 0))
    centred = inputs - inputs.mean(dim=dims, keepdim=True)
    std = (centred.pow(2).mean(dim=dims, keepdim=True) + eps).sqrt()
    outputs = centred / std.detach()
    if weight is not None:
        outputs = outputs * weight
    if bias is not None:
        outputs = outputs + bias
    return outputs


class RelevanceRulesMode(TorchFunctionMode):
    """While active, layer norms and GELUs back-propagate by LRP's identity rules (see the module docstring).

    Attributes
    ----------
    ruled_calls : int
        How many calls were given a rule.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ruled_calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.layer_norm:
            self.ruled_calls += 1
            return _layer_norm_identity_rule(*args, **kwargs)
        if func is F.gelu:
            self.ruled_calls += 1
            inputs = args[0]
            return _IdentityRule.apply(inputs, func(*args, **kwargs).detach())
        return func(*args, **kwargs)


class AttnLRP(AttributionMethod):
    """Relevance propagation through a vision transformer, K classes from one forward pass.

    Parameters
    ----------
    rule : str, default "constant"
        The treatment of attention: ``"constant"`` (conservative, CP-LRP) or
        ``"uniform"`` (AttnLRP through the softmax).
    """

    name = "attnlrp"

    def __init__(self, rule: str = "constant") -> None:
        check_choice(rule, "rule", ("constant", "uniform"))
        self.rule = rule

    def settings(self) -> dict[str, object]:
        """``{"rule": ...}``: see :meth:`AttributionMethod.settings`."""
        return {"rule": self.rule}

    def attribute(self, model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Relevance maps (N, K, C, H, W) of ``classes``: see :meth:`AttributionMethod.attribute`."""
        inputs = inputs.detach().requires_grad_(True)
        with exposed_attention(model, self.name, rule=self.rule), RelevanceRulesMode():
            selected = selected_logits(model, inputs, classes)
        return inputs.unsqueeze(1) * class_gradients(selected, inputs)
