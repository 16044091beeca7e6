"""The results store of the grid pointing game: what a run records with its CSV, and when it may resume.

Resuming compares an explicit JSON fingerprint (model name, grid source description, modes,
refine and metric settings, and each method's name and declared settings), never a repr.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from var_utils.datasets.grids import GridDataset
from var_utils.evaluation.gpg import evaluate_grid_pointing_game
from var_utils.evaluation.gpg.store import FINGERPRINT_FORMAT, settings_path
from var_utils.methods import get_method

N_CLASSES = 6


class CountingCNN(nn.Module):
    """A small seeded CNN that counts the images it sees (to tell computed grids from resumed ones)."""

    def __init__(self, name: str = "counting_cnn") -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, N_CLASSES))
        self.name = name
        self.images_seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images_seen += x.shape[0]
        return self.head(self.body(x))

    def gradcam_layer(self) -> nn.Module:
        return self.body[-1]


def make_grids(n_grids: int = 4, description: dict | None = None) -> GridDataset:
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(4 * n_grids, 1, 4, 4, generator=generator)
    labels = torch.arange(4 * n_grids) % N_CLASSES
    groups = [tuple(range(4 * g, 4 * g + 4)) for g in range(n_grids)]
    return GridDataset(images, labels, groups, description=description or {"source": "test", "seed": 0})


def run(out, model=None, grids=None, methods=None, **kwargs):
    model = model or CountingCNN()
    table = evaluate_grid_pointing_game(
        model, grids or make_grids(), methods or {"gradcam": {}}, out=out, progress=False, **kwargs
    )
    return model, table


def test_settings_file_records_an_explicit_fingerprint(tmp_path):
    out = tmp_path / "gpg.csv"
    run(out, methods={"gradcam": {}, "ig": {"method": "integrated_gradients", "n_steps": 8}})
    recorded = json.loads(settings_path(out).read_text())
    assert recorded == {
        "format": FINGERPRINT_FORMAT,
        "model": "counting_cnn",
        "source": {"source": "test", "seed": 0},
        "modes": ["base", "var"],
        "refine_settings": {"tau": 0.01, "temperature": 0.1, "use_abs": True, "normalize": None},
        "metric_settings": {"binarization": "positive", "top_fraction": 0.25, "max_fraction": 0.5},
        "methods": {
            "gradcam": {"method": "gradcam", "settings": {"layer": None, "relu": False}},
            "ig": {
                "method": "integrated_gradients",
                "settings": {"n_steps": 8, "baseline": None, "rule": "gausslegendre"},
            },
        },
    }


@pytest.mark.parametrize(
    "second_run, match",
    [
        ({"model": CountingCNN(name="another_cnn")}, "model"),
        ({"grids": make_grids(description={"source": "test", "seed": 1})}, "source"),
        ({"methods": {"gradcam": {"relu": True}}}, r"methods\['gradcam'\]"),
        ({"refine_settings": {"normalize": "joint"}}, "refine_settings"),
    ],
)
def test_resume_refuses_another_model_source_method_or_setting(tmp_path, second_run, match):
    out = tmp_path / "gpg.csv"
    run(out)
    with pytest.raises(ValueError, match=match):
        run(out, **second_run)


def test_performance_settings_do_not_block_resuming(tmp_path):
    out = tmp_path / "gpg.csv"
    run(out, methods={"integrated_gradients": {"n_steps": 8, "internal_batch_size": 4}})
    model, table = run(out, methods={"integrated_gradients": {"n_steps": 8, "internal_batch_size": 2}})
    assert model.images_seen == 0 and len(table) == 4 * 4 * 2
    with pytest.raises(ValueError, match="integrated_gradients"):
        run(out, methods={"integrated_gradients": {"n_steps": 16}})


def test_more_grids_extend_a_run(tmp_path):
    out = tmp_path / "gpg.csv"
    run(out, grids=make_grids(n_grids=2))
    model, table = run(out, grids=make_grids(n_grids=4))
    assert sorted(table["grid"].unique()) == [0, 1, 2, 3]
    assert model.images_seen == 2  # one forward pass of the two new grids (Grad-CAM)


def _saliency(inputs: torch.Tensor, targets: torch.Tensor, model: nn.Module) -> torch.Tensor:
    inputs = inputs.detach().requires_grad_(True)
    logits = model(inputs).gather(1, targets[:, None]).sum()
    return torch.autograd.grad(logits, inputs)[0].abs()


def test_a_callable_needs_a_name_to_be_recorded(tmp_path):
    model = CountingCNN()

    def saliency(inputs, targets):
        return _saliency(inputs, targets, model)

    out = tmp_path / "gpg.csv"
    with pytest.raises(ValueError, match="name="):
        run(out, model=model, methods={"mine": {"method": saliency}})
    assert not out.exists() and not settings_path(out).exists()
    in_memory = evaluate_grid_pointing_game(model, make_grids(), {"mine": {"method": saliency}}, progress=False)
    run(out, model=model, methods={"mine": {"method": saliency, "name": "abs_gradient_v1"}})
    seen = model.images_seen
    _, resumed = run(out, model=model, methods={"mine": {"method": saliency, "name": "abs_gradient_v1"}})
    assert model.images_seen == seen  # nothing recomputed
    resumed_scores = torch.tensor(resumed["region_attribution"].to_numpy())
    torch.testing.assert_close(resumed_scores, torch.tensor(in_memory["region_attribution"].to_numpy()))
    recorded = json.loads(settings_path(out).read_text())["methods"]["mine"]
    assert recorded == {
        "method": "callable",
        "name": "abs_gradient_v1",
        "settings": {"function": saliency.__qualname__},
    }
    with pytest.raises(ValueError, match=r"methods\['mine'\]"):
        run(out, model=model, methods={"mine": {"method": saliency, "name": "abs_gradient_v2"}})


def test_settings_file_of_an_older_version_is_refused(tmp_path):
    out = tmp_path / "gpg.csv"
    run(out)
    old = {"modes": ["base", "var"], "methods": {"gradcam": "GradCAM(layer=None, relu=False)"}}
    settings_path(out).write_text(json.dumps(old))
    with pytest.raises(ValueError, match="older version"):
        run(out)


def test_tensor_settings_are_recorded_by_content():
    first = get_method("integrated_gradients", baseline=torch.full((1, 1, 1), 0.5)).fingerprint()
    same = get_method("integrated_gradients", baseline=torch.full((1, 1, 1), 0.5)).fingerprint()
    other = get_method("integrated_gradients", baseline=torch.full((1, 1, 1), 0.25)).fingerprint()
    assert first == same != other
    assert first["settings"]["baseline"]["tensor"] == [1, 1, 1]
    assert json.loads(json.dumps(first)) == first


def test_a_captum_object_needs_a_name_too():
    from captum.attr import Saliency

    model = CountingCNN()
    with pytest.raises(ValueError, match="name="):
        get_method(Saliency(model)).fingerprint()
    assert get_method(Saliency(model), name="captum_saliency", abs=True).fingerprint() == {
        "method": "captum",
        "name": "captum_saliency",
        "settings": {"attribution": "Saliency", "abs": True},
    }
