"""Vision-transformer methods against independent references.

References: torchvision's own logits (explicit attention), pytorch-grad-cam's
GradCAM with a token reshape (token Grad-CAM), a hand-written forward pass of
the transformer that returns its attention probabilities, plus numpy
matrix products (attention Grad-CAM and both rollouts), per-module backward
hooks on the GELUs (guided backprop), and exact conservation on a model
without biases (AttnLRP).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VisionTransformer

from var_utils import attribute_classes, load_model
from var_utils.methods import AttentionGradCAM, AttnLRP, GradCAM
from var_utils.methods.transformer import exposed_attention

CLASSES = [0, 2, 4]


def tiny_vit(num_layers: int = 2, seed: int = 0) -> VisionTransformer:
    """An 8-pixel ViT with 4-pixel patches (2x2 patch grid), random weights everywhere (even the head)."""
    torch.manual_seed(seed)
    model = VisionTransformer(
        image_size=8, patch_size=4, num_layers=num_layers, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=5
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
    return model.double().eval()


def images(count: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(count, 3, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def hand_forward(model: VisionTransformer, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The ViT written out with einsum from its parameters, returning each block's attention probabilities."""
    batch = x.shape[0]
    width = model.hidden_dim
    tokens = model.conv_proj(x).flatten(2).transpose(1, 2)
    tokens = torch.cat([model.class_token.expand(batch, -1, -1), tokens], dim=1) + model.encoder.pos_embedding
    attentions = []
    for block in model.encoder.layers:
        attention_module = block.self_attention
        heads = attention_module.num_heads
        normed = F.layer_norm(tokens, (width,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
        weight, bias = attention_module.in_proj_weight, attention_module.in_proj_bias
        q, k, v = (
            torch.einsum("ntd,ed->nte", normed, weight[i * width : (i + 1) * width]) + bias[i * width : (i + 1) * width]
            for i in range(3)
        )
        q, k, v = (part.reshape(batch, -1, heads, width // heads) for part in (q, k, v))
        scores = torch.einsum("nthd,nshd->nhts", q, k) / math.sqrt(width // heads)
        attention = scores.softmax(dim=-1)
        attentions.append(attention)
        mixed = torch.einsum("nhts,nshd->nthd", attention, v).reshape(batch, -1, width)
        tokens = tokens + attention_module.out_proj(mixed)
        normed = F.layer_norm(tokens, (width,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
        tokens = tokens + block.mlp[3](F.gelu(block.mlp[0](normed)))
    final = F.layer_norm(tokens[:, 0], (width,), model.encoder.ln.weight, model.encoder.ln.bias, model.encoder.ln.eps)
    return model.heads.head(final), attentions


def hand_attention_gradients(model, x, classes):
    """Per class: the gradients of the logit with respect to each block's attention (N, h, T, T), all paths included."""
    per_class = []
    for c in classes:
        logits, attentions = hand_forward(model, x)
        per_class.append(torch.autograd.grad(logits[:, c].sum(), attentions))
    return attentions, per_class


def upsample(patch_map: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling by OpenCV (half-pixel centres, as torch's align_corners=False)."""
    return cv2.resize(patch_map, (size, size), interpolation=cv2.INTER_LINEAR)


def test_hand_forward_is_the_model():
    model, x = tiny_vit(), images()
    logits, _ = hand_forward(model, x)
    torch.testing.assert_close(logits, model(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rule", ["gradient", "constant", "uniform"])
def test_explicit_attention_reproduces_torchvision_logits(rule):
    model, x = tiny_vit(), images()
    reference = model(x)
    with exposed_attention(model, "test", rule=rule) as blocks:
        logits = model(x)
    torch.testing.assert_close(logits, reference, rtol=1e-10, atol=1e-10)
    assert len(blocks) == 2 and blocks[0].weights.shape == (3, 2, 5, 5)
    # The swap is undone: the blocks use torchvision's module again.
    assert all(isinstance(block.self_attention, nn.MultiheadAttention) for block in model.encoder.layers)


def test_explicit_attention_matches_the_shipped_vit_with_gradients_enabled():
    model = load_model("fashion_mnist_vit")
    x = torch.randn(4, 1, 56, 56, generator=torch.Generator().manual_seed(0), requires_grad=True)
    reference = model(x)
    with exposed_attention(model, "test"):
        logits = model(x)
    assert (logits - reference).abs().max().item() <= 1e-5


def test_token_gradcam_equals_pytorch_grad_cam():
    from pytorch_grad_cam import GradCAM as ReferenceGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = tiny_vit().float()
    x = images().float()

    def tokens_to_maps(tokens):
        return tokens[:, 1:, :].reshape(tokens.shape[0], 2, 2, -1).permute(0, 3, 1, 2)

    reference_cam = ReferenceGradCAM(model, [model.encoder.layers[-1].ln_1], reshape_transform=tokens_to_maps)
    ours = attribute_classes(model, x, CLASSES, GradCAM(relu=True))[:, :, 0].numpy()
    for k, c in enumerate(CLASSES):
        reference = reference_cam(input_tensor=x, targets=[ClassifierOutputTarget(c)] * 3)
        for n in range(3):
            if ours[n, k].max() <= 0:  # pytorch-grad-cam returns zeros for an all-negative map, as would min-max here.
                assert np.allclose(reference[n], 0, atol=1e-6)
                continue
            scaled = (ours[n, k] - ours[n, k].min()) / (ours[n, k].max() - ours[n, k].min())
            np.testing.assert_allclose(scaled, reference[n], atol=1e-5)


def test_gradcam_defaults_to_the_last_blocks_input_norm():
    model, x = tiny_vit(), images()
    default = attribute_classes(model, x, CLASSES, "gradcam")
    explicit = attribute_classes(model, x, CLASSES, "gradcam", layer="encoder.layers.encoder_layer_1.ln_1")
    torch.testing.assert_close(default, explicit)
    assert default.shape == (3, 3, 1, 8, 8)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_attention_gradcam_against_a_hand_computation(num_layers):
    model, x = tiny_vit(num_layers), images()
    attentions, gradients = hand_attention_gradients(model, x, CLASSES)
    ours = attribute_classes(model, x, CLASSES, "attention_gradcam")
    assert (ours.amax(dim=(2, 3, 4)) == 1).sum() >= 3  # several maps are not all clamped to zero
    last = attentions[-1].detach().numpy()
    for k in range(len(CLASSES)):
        gradient = gradients[k][-1].numpy()
        for n in range(3):
            weights = gradient[n, :, 0, 1:].mean(axis=1)
            cam = np.maximum((weights[:, None] * last[n, :, 0, 1:]).mean(axis=0), 0)
            span = cam.max() - cam.min()
            cam = (cam - cam.min()) / span if span > 0 else np.zeros_like(cam)
            expected = upsample(cam.reshape(2, 2), 8)
            np.testing.assert_allclose(ours[n, k, 0].numpy(), expected, atol=1e-10)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_attention_rollout_against_numpy(num_layers):
    model, x = tiny_vit(num_layers), images()
    _, attentions = hand_forward(model, x)
    ours = attribute_classes(model, x, CLASSES, "attention_rollout")
    for n in range(3):
        rollout = np.eye(5)
        for attention in attentions:
            mixing = attention[n].detach().numpy().mean(axis=0) + np.eye(5)
            mixing /= mixing.sum(axis=1, keepdims=True)
            rollout = mixing @ rollout
        expected = upsample(rollout[0, 1:].reshape(2, 2), 8)
        for k in range(len(CLASSES)):  # no gradient: every class gets the same map
            np.testing.assert_allclose(ours[n, k, 0].numpy(), expected, atol=1e-10)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_gradient_rollout_against_numpy(num_layers):
    model, x = tiny_vit(num_layers), images()
    attentions, gradients = hand_attention_gradients(model, x, CLASSES)
    ours = attribute_classes(model, x, CLASSES, "gradient_rollout")
    for k in range(len(CLASSES)):
        for n in range(3):
            relevance = np.eye(5)
            for attention, gradient in zip(attentions, gradients[k]):
                weighted = np.maximum(gradient[n].numpy() * attention[n].detach().numpy(), 0).mean(axis=0)
                relevance = relevance + weighted @ relevance
            expected = upsample(relevance[0, 1:].reshape(2, 2), 8)
            np.testing.assert_allclose(ours[n, k, 0].numpy(), expected, atol=1e-10)


def test_guided_backprop_clamps_the_gradient_leaving_every_gelu_like_a_backward_hook():
    model, x = tiny_vit(), images()
    ours = attribute_classes(model, x, CLASSES, "guided_backprop")
    gelus = [module for module in model.modules() if isinstance(module, nn.GELU)]
    assert len(gelus) == 2
    handles = [
        gelu.register_full_backward_hook(lambda module, grad_in, grad_out: (grad_in[0].clamp(min=0),)) for gelu in gelus
    ]
    try:
        for k, c in enumerate(CLASSES):
            leaf = x.clone().requires_grad_(True)
            model(leaf)[:, c].sum().backward()
            torch.testing.assert_close(ours[:, k], leaf.grad)
    finally:
        for handle in handles:
            handle.remove()
    # The rule changes the map: it is not the plain gradient.
    assert not torch.allclose(ours, attribute_classes(model, x, CLASSES, "saliency", abs=False))


def without_biases(model: VisionTransformer) -> VisionTransformer:
    """Zero every additive constant: biases, class token and position embeddings."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias") or name in ("class_token", "encoder.pos_embedding"):
                parameter.zero_()
    return model


@pytest.mark.parametrize("num_layers", [1, 2])
def test_attnlrp_conserves_relevance_on_a_model_without_biases(num_layers):
    model, x = without_biases(tiny_vit(num_layers)), images()
    relevance = attribute_classes(model, x, CLASSES, "attnlrp")
    logits = model(x)[:, CLASSES]
    torch.testing.assert_close(relevance.sum(dim=(2, 3, 4)), logits.detach(), rtol=1e-9, atol=1e-9)


def test_attnlrp_biases_absorb_relevance_and_the_uniform_rule_differs():
    model, x = tiny_vit(), images()
    relevance = attribute_classes(model, x, CLASSES, "attnlrp")
    logits = model(x)[:, CLASSES].detach()
    assert (relevance.sum(dim=(2, 3, 4)) - logits).abs().max() > 1e-3
    uniform = attribute_classes(model, x, CLASSES, AttnLRP(rule="uniform"))
    assert torch.isfinite(uniform).all() and not torch.allclose(uniform, relevance)


def test_attnlrp_layer_norm_and_gelu_rules_are_the_identity_rule():
    """One GELU behind a layer norm without affine parameters: relevance = GELU output, exactly."""
    from var_utils.methods.attnlrp import RelevanceRulesMode

    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    with RelevanceRulesMode() as mode:
        output = F.gelu(F.layer_norm(x, (6,)))
    (gradient,) = torch.autograd.grad(output.sum(), x)
    assert mode.ruled_calls == 2
    torch.testing.assert_close((x * gradient).sum(dim=1), output.sum(dim=1).detach())


@pytest.mark.parametrize(
    "method", ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "gradcam", "attnlrp"]
)
def test_every_class_of_a_set_matches_its_own_single_class_call(method):
    model, x = tiny_vit(), images()
    together = attribute_classes(model, x, CLASSES, method)
    for k, c in enumerate(CLASSES):
        alone = attribute_classes(model, x, [c, (c + 1) % 5], method)[:, 0]
        torch.testing.assert_close(together[:, k], alone)


@pytest.mark.parametrize("method", ["attention_gradcam", "attention_rollout", "gradient_rollout", "attnlrp"])
def test_transformer_methods_on_a_cnn_raise_naming_model_and_method(method):
    model = load_model("fashion_mnist_cnn")
    with pytest.raises(ValueError, match="FashionMNISTCNN") as error:
        attribute_classes(model, torch.randn(1, 1, 28, 28), [0, 1], method)
    assert method in str(error.value)


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda m: attribute_classes(m, torch.randn(1, 1, 28, 28), [0, 1], "gradcam"), "56x56"),
        (lambda m: attribute_classes(m, torch.randn(1, 1, 56, 56), [0, 1], "gradcam", layer="encoder.nope"), "nope"),
        (lambda m: attribute_classes(m, torch.randn(1, 1, 56, 56), [0, 1], AttentionGradCAM(block=4)), "block"),
        (lambda m: attribute_classes(m, torch.randn(1, 1, 56, 56), [0, 1], "bcos"), "B-cos"),
        (lambda m: AttnLRP(rule="softmax"), "rule"),
    ],
)
def test_bad_input_on_the_vit_raises_clearly(call, fragment):
    with pytest.raises(ValueError, match=fragment):
        call(load_model("fashion_mnist_vit"))


def test_vit_b_16_plumbing_offline():
    torch.manual_seed(0)
    model = load_model("vit_b_16", weights=None)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(x)
        with exposed_attention(model, "test") as blocks:
            logits = model(x)
    assert len(blocks) == 12 and blocks[-1].weights.shape == (1, 12, 197, 197)
    assert (logits - reference).abs().max().item() <= 1e-4
    maps = attribute_classes(model, x, [1, 2], "attention_gradcam")
    assert maps.shape == (1, 2, 1, 224, 224) and torch.isfinite(maps).all()


@pytest.mark.parametrize("average", [True, False])
def test_explicit_attention_weights_equal_torch_multihead_attention(average):
    from var_utils.methods.transformer import ExplicitAttention

    model = tiny_vit()
    attention = model.encoder.layers[0].self_attention
    tokens = torch.randn(3, 5, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    expected_output, expected_weights = attention(
        tokens, tokens, tokens, need_weights=True, average_attn_weights=average
    )
    output, weights = ExplicitAttention(attention)(
        tokens, tokens, tokens, need_weights=True, average_attn_weights=average
    )
    torch.testing.assert_close(output, expected_output)
    torch.testing.assert_close(weights, expected_weights)
    with pytest.raises(ValueError, match="masks"):
        ExplicitAttention(attention)(tokens, tokens, tokens, attn_mask=torch.zeros(5, 5, dtype=torch.bool))


@pytest.mark.parametrize("model_name", ["fashion_mnist_vit", "fashion_mnist_bcos"])
@pytest.mark.parametrize("method", ["lrp", "deeplift"])
def test_rule_based_methods_refuse_models_they_have_no_rules_for(model_name, method):
    model = load_model(model_name)
    size = model.input_size
    with pytest.raises(ValueError, match=f"{method}.*no propagation rule.*{type(model).__name__}"):
        attribute_classes(model, torch.randn(1, 1, size, size), [0, 1], method)


def test_rollout_refuses_an_unknown_step():
    from var_utils.methods.attention import rollout

    with pytest.raises(ValueError, match="step"):
        rollout([torch.eye(3)], "sum")
