"""The results store of the grid pointing game: what a run records with its CSV, and when it may resume.

Resuming compares an explicit JSON fingerprint (model name, grid source description, modes,
refine and metric settings, and each method's name and declared settings), never a repr.
"""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import torch
from torch import nn

from var_utils._lock import OutputLockedError, exclusive_lock
from var_utils.datasets.grids import GridDataset
from var_utils.evaluation.gpg import evaluate_grid_pointing_game, read_gpg_table
from var_utils.evaluation.gpg.runner import _check_distributed
from var_utils.evaluation.gpg.store import FINGERPRINT_FORMAT, ResultStore, settings_path, shard_files, shard_path
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


# Append-only shards: torn writes, corrupt files, shards of other runs.
KEY = ["grid", "method", "mode", "cell"]
ROWS_PER_GROUP = 4 * 2  # cells × modes


def _lines(path):
    return path.read_bytes().split(b"\n")


def test_rows_are_appended_without_rewriting_what_is_written(tmp_path):
    out = tmp_path / "gpg.csv"
    run(out, grids=make_grids(n_grids=2), batch_size=1)
    first = out.read_bytes()
    inode = out.stat().st_ino
    run(out, grids=make_grids(n_grids=4), batch_size=1)
    assert out.read_bytes().startswith(first) and out.stat().st_ino == inode
    assert len(_lines(out)) == 1 + 4 * ROWS_PER_GROUP + 1  # header, rows, final newline


@pytest.mark.parametrize("kept_rows", [0, 3, 7])
def test_a_torn_last_group_is_cut_and_recomputed(tmp_path, kept_rows):
    reference = run(tmp_path / "reference.csv")[1]
    out = tmp_path / "gpg.csv"
    run(out)
    lines = _lines(out)
    last_group_start = 1 + 3 * ROWS_PER_GROUP
    # A write killed part-way: some whole lines of the last group, then half a line.
    torn = b"\n".join(lines[: last_group_start + kept_rows]) + b"\n" + lines[last_group_start + kept_rows][:9]
    out.write_bytes(torn)
    model, table = run(out)
    assert model.images_seen == 1  # only grid 3, the torn group, is computed again
    pd.testing.assert_frame_equal(table, reference)
    assert out.read_bytes() == (tmp_path / "reference.csv").read_bytes()


def test_a_torn_header_starts_the_file_over(tmp_path):
    out = tmp_path / "gpg.csv"
    run(out)
    complete = out.read_bytes()
    out.write_bytes(complete[:7])
    model, _ = run(out)
    assert model.images_seen == 4 and out.read_bytes() == complete


def test_a_file_with_a_group_missing_rows_in_the_middle_is_refused(tmp_path):
    out = tmp_path / "gpg.csv"
    run(out)
    lines = _lines(out)
    del lines[5]
    out.write_bytes(b"\n".join(lines))
    with pytest.raises(ValueError, match="corrupt"):
        run(out)


def _fingerprint_of(out):
    recorded = json.loads(settings_path(out).read_text())
    recorded.pop("format")
    return recorded


def test_shards_of_an_earlier_distributed_run_are_resumed_and_merged(tmp_path):
    reference = run(tmp_path / "reference.csv")[1]
    out = tmp_path / "gpg.csv"
    # What rank 1 of a killed two-process run left: grids 1 and 3.
    with ResultStore(out, _fingerprint_of(tmp_path / "reference.csv"), ROWS_PER_GROUP, rank=1, world_size=2) as shard:
        shard.add(reference[reference["grid"].isin([1, 3])])
    assert shard_files(out) == [shard_path(out, 1, 2)]
    model, table = run(out)
    assert model.images_seen == 2  # grids 0 and 2 only
    pd.testing.assert_frame_equal(table, reference)
    assert shard_files(out) == [] and not shard_path(out, 1, 2).parent.exists()
    on_disk = read_gpg_table(out).sort_values(KEY).reset_index(drop=True)
    pd.testing.assert_frame_equal(on_disk, reference.sort_values(KEY).reset_index(drop=True))


def test_a_shard_with_other_settings_is_refused(tmp_path):
    run(tmp_path / "reference.csv")
    fingerprint = _fingerprint_of(tmp_path / "reference.csv")
    out = tmp_path / "gpg.csv"
    with ResultStore(out, fingerprint, ROWS_PER_GROUP, rank=1, world_size=2):
        pass
    other = {**fingerprint, "refine_settings": {**fingerprint["refine_settings"], "tau": 0.5}}
    with pytest.raises(ValueError, match=r"rank-1-of-2\.csv holds results computed with other refine_settings"):
        with ResultStore(out, other, ROWS_PER_GROUP, rank=0, world_size=2):
            pass


def test_a_merge_interrupted_after_writing_the_table_keeps_each_row_once(tmp_path):
    reference = run(tmp_path / "reference.csv")[1]
    fingerprint = _fingerprint_of(tmp_path / "reference.csv")
    out = tmp_path / "gpg.csv"
    for rank in (0, 1):
        with ResultStore(out, fingerprint, ROWS_PER_GROUP, rank=rank, world_size=2) as shard:
            shard.add(reference[reference["grid"] % 2 == rank])
    with ResultStore(out, fingerprint, ROWS_PER_GROUP, rank=0, world_size=2) as store:
        store.merge()
    # As if the merge had died before deleting the shards: the same rows are in `out` and in a shard.
    with ResultStore(out, fingerprint, ROWS_PER_GROUP, rank=1, world_size=2) as shard:
        shard.add(reference[reference["grid"] == 1])
    model, table = run(out)
    assert model.images_seen == 0
    pd.testing.assert_frame_equal(table, reference)
    assert len(read_gpg_table(out)) == len(reference)


def test_a_locked_output_is_refused_in_process(tmp_path):
    out = tmp_path / "gpg.csv"
    with exclusive_lock(out):
        with pytest.raises(OutputLockedError, match=rf"gpg.csv is being written by process {os.getpid()}"):
            run(out)
    run(out)


def test_grids_loaded_by_worker_processes_give_the_same_table(tmp_path):
    _, in_process = run(None, batch_size=3)
    _, with_workers = run(None, batch_size=3, workers=2)
    pd.testing.assert_frame_equal(with_workers, in_process)
    with pytest.raises(ValueError, match="`workers` must be >= 0"):
        run(None, workers=-1)


def test_a_distributed_run_needs_an_output_and_a_dataset():
    with pytest.raises(ValueError, match="needs `out`"):
        _check_distributed(2, None, make_grids())
    with pytest.raises(TypeError, match="needs `grids` as a Dataset"):
        _check_distributed(2, "gpg.csv", [(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4))])
    _check_distributed(1, None, [])


def test_a_file_of_an_earlier_version_with_interleaved_groups_resumes(tmp_path):
    out = tmp_path / "gpg.csv"
    _, reference = run(out)
    # Earlier versions wrote a batch mode by mode, so one (grid, method)'s rows were not adjacent.
    read_gpg_table(out).sort_values(["mode", "grid"], kind="stable").to_csv(out, index=False)
    model, table = run(out)
    assert model.images_seen == 0
    pd.testing.assert_frame_equal(table, reference)


@pytest.mark.parametrize("name", ["NA", "01", "null", 'a,b "quoted"'])
def test_method_names_survive_the_csv(tmp_path, name):
    out = tmp_path / "gpg.csv"
    _, first = run(out, methods={name: {"method": "gradcam"}})
    model, resumed = run(out, methods={name: {"method": "gradcam"}})
    assert model.images_seen == 0 and set(resumed["method"]) == {name} and len(resumed) == 4 * ROWS_PER_GROUP
    pd.testing.assert_frame_equal(resumed, first)


@pytest.mark.parametrize("name", ["two\nlines", "", " "])
def test_method_names_must_be_one_line_of_text(name):
    with pytest.raises(ValueError, match="one line"):
        run(None, methods={name: {"method": "gradcam"}})


def test_a_description_with_tuples_resumes(tmp_path):
    out = tmp_path / "gpg.csv"
    grids = make_grids(description={"source": "test", "grid": (2, 2)})
    run(out, grids=grids)
    model, _ = run(out, grids=grids)
    assert model.images_seen == 0


def test_merge_refuses_while_a_shard_is_written_and_changes_nothing(tmp_path):
    reference = run(tmp_path / "reference.csv")[1]
    fingerprint = _fingerprint_of(tmp_path / "reference.csv")
    out = tmp_path / "gpg.csv"
    with ResultStore(out, fingerprint, ROWS_PER_GROUP, rank=1, world_size=2) as shard:
        shard.add(reference[reference["grid"] % 2 == 1])
    with exclusive_lock(shard_path(out, 1, 2)):
        with ResultStore(out, fingerprint, ROWS_PER_GROUP, rank=0, world_size=2) as store:
            store.add(reference[reference["grid"] % 2 == 0])
            with pytest.raises(OutputLockedError, match="rank-1-of-2.csv is being written"):
                store.merge()
    assert not out.exists() and len(shard_files(out)) == 2
