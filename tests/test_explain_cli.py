"""Tests of ``python -m var_utils explain``: outputs, failures, class options, resuming and atomic writes.

Independent references: the model's logits through a direct softmax, ``refine_all``
applied to the stored base maps, the kept share summed by hand with numpy, and the
file system (output folders, modification times, no temporary files).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import var_utils
from var_utils.apps import explain
from var_utils.apps.cli import main
from var_utils.apps.explanation import model_input

GOOD = ("cat.jpg", "Coffee.PNG", "grey.png", "rgba.png", "sub/astronaut.webp")
BAD = ("corrupt.jpg", "fake.png")
K_AUTO = 4  # top-3 predictions and the least probable class


def _save(photo: str, path: Path, mode: str = "RGB", size: int = 160) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(var_utils.load_photo(photo)).convert(mode)
    image.thumbnail((size, size))
    image.save(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    """``photos/``: five good images of four kinds, a corrupt one, a text file named .png and notes.txt;
    ``good/``: two good images."""
    root = tmp_path_factory.mktemp("explain")
    photos, good = root / "photos", root / "good"
    _save("chelsea", photos / "cat.jpg")
    _save("coffee", photos / "Coffee.PNG")
    _save("camera", photos / "grey.png", mode="L")
    _save("rocket", photos / "rgba.png", mode="RGBA")
    _save("astronaut", photos / "sub" / "astronaut.webp")
    (photos / "corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(2000))
    (photos / "fake.png").write_text("not an image\n")
    (photos / "notes.txt").write_text("ignored\n")
    _save("chelsea", good / "cat.jpg")
    _save("coffee", good / "sub" / "coffee.png")
    return root


@pytest.fixture(scope="module")
def first_run(folders, tmp_path_factory):
    """One in-process run on ``photos/`` with the defaults (module fixtures cannot use capsys)."""
    out = tmp_path_factory.mktemp("first") / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = _run(folders / "photos", "--out", out)
    return status, stdout.getvalue(), stderr.getvalue(), out


def _run(*arguments) -> int:
    return main(["explain", *map(str, arguments), "--no-progress"])


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _mtimes(out: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()}


def _refined(base: np.ndarray, **settings) -> np.ndarray:
    return var_utils.refine_all(torch.from_numpy(base), class_dim=0, **settings).numpy()


# ------------------------------------------------------------------ the first run
def test_failures_are_reported_by_path_and_give_status_1(first_run):
    status, stdout, stderr, out = first_run
    assert status == 1
    for name in BAD:
        assert f"{name}: " in stderr and "not a readable image" in stderr
    assert "notes.txt" not in stderr
    assert "5 explained, 0 already done (skipped), 2 failed, 1 non-image file(s) ignored." in stdout
    assert str(out) in stdout and str(out / "explanations.csv") in stdout


def test_one_folder_per_good_image_mirroring_its_path(first_run):
    *_, out = first_run
    folders = sorted(path.parent.relative_to(out).as_posix() for path in out.rglob("record.json"))
    assert folders == sorted(f"photos/{name}" for name in GOOD)
    for name in GOOD:
        assert {p.name for p in (out / "photos" / name).iterdir()} == {"figure.png", "maps.npz", "record.json"}
    for name in BAD:
        assert not (out / "photos" / name / "record.json").exists()
    assert not list(out.rglob("*.part"))


def test_maps_have_the_input_size_and_var_is_refine_all_of_the_stored_base_maps(first_run):
    *_, out = first_run
    for name in GOOD:
        with np.load(out / "photos" / name / "maps.npz") as maps:
            assert maps["gradcam_base"].shape == (K_AUTO, 1, 224, 224)
            assert maps["gradcam_base"].dtype == maps["gradcam_var"].dtype == np.float32
            assert maps["class_ids"].shape == maps["class_names"].shape == maps["probabilities"].shape == (K_AUTO,)
            np.testing.assert_allclose(
                maps["gradcam_var"], _refined(maps["gradcam_base"], tau=0.01, temperature=0.1), atol=1e-6
            )


def test_table_rows_probabilities_and_kept_share(first_run, folders, lite0):
    *_, out = first_run
    rows = _read_csv(out / "explanations.csv")
    assert len(rows) == len(GOOD) * K_AUTO * 1
    assert [row["image"] for row in rows[::K_AUTO]] == [str(folders / "photos" / name) for name in sorted(GOOD)]
    for name in GOOD:
        path = folders / "photos" / name
        image_rows = [row for row in rows if row["image"] == str(path)]
        with torch.no_grad():
            direct = torch.softmax(lite0(model_input(lite0, var_utils.load_image(path))).double(), dim=1)[0]
        with np.load(out / "photos" / name / "maps.npz") as maps:
            base, var, class_ids = maps["gradcam_base"], maps["gradcam_var"], maps["class_ids"]
        assert class_ids.tolist() == direct.argsort(descending=True)[:3].tolist() + [int(direct.argmin())]
        for rank, row in enumerate(image_rows):
            class_id = int(row["class_id"])
            assert (int(row["rank"]), class_id, row["method"]) == (rank, class_ids[rank], "gradcam")
            assert row["class_name"] == lite0.class_names[class_id]
            assert float(row["probability"]) == pytest.approx(float(direct[class_id]), rel=1e-9, abs=1e-15)
            positive = np.clip(base[rank], 0, None).sum(dtype=np.float64)
            expected = np.clip(var[rank], 0, None).sum(dtype=np.float64) / positive if positive > 0 else None
            stored = float(row["kept_share"]) if row["kept_share"] else None  # empty: no positive base attribution
            assert stored == (None if expected is None else pytest.approx(expected))
            assert float(row["base_max"]) == pytest.approx(float(base[rank].max()))
            assert float(row["var_max"]) == pytest.approx(float(var[rank].max()))
            settings = (row["model"], row["tau"], row["temperature"], row["normalize"])
            assert settings == ("efficientnet_lite0", "0.01", "0.1", "")


# ------------------------------------------------------------------ exit status, class options
def test_subprocess_exit_status_and_stderr(folders, tmp_path):
    photos = folders / "photos"
    command = [sys.executable, "-m", "var_utils", "explain", str(photos / "cat.jpg"), str(photos / "fake.png")]
    command += [str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "out"), "--format", "npz,csv", "--no-progress"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert f"{photos / 'fake.png'}: " in result.stderr and f"{tmp_path / 'missing.jpg'}: " in result.stderr
    assert "does not exist" in result.stderr
    assert "1 explained, 0 already done (skipped), 2 failed" in result.stdout
    assert (tmp_path / "out" / "cat.jpg" / "maps.npz").is_file()
    assert not (tmp_path / "out" / "cat.jpg" / "figure.png").exists()


def test_only_good_images_give_status_0_and_files_go_to_their_name(folders, tmp_path, capsys):
    good = folders / "good"
    assert _run(good / "cat.jpg", good / "sub" / "coffee.png", "--out", tmp_path, "--format", "npz") == 0
    assert sorted(p.parent.name for p in tmp_path.rglob("record.json")) == ["cat.jpg", "coffee.png"]
    assert not (tmp_path / "explanations.csv").exists()
    assert "2 explained, 0 already done (skipped), 0 failed, 0 non-image file(s) ignored." in capsys.readouterr().out


@pytest.mark.parametrize(
    "classes, message",
    [
        ("Egyptian cat,285", "repeated: ['Egyptian cat']"),
        ("tabby,expresso", "'expresso' is not a class name of this model. Did you mean 'espresso'"),
        ("tabby,1000", "Class index 1000 is out of range"),
        ("tabby", "at least two classes"),
    ],
)
def test_bad_class_lists_are_argparse_errors_before_any_image(folders, tmp_path, capsys, classes, message):
    with pytest.raises(SystemExit) as exit_info:
        _run(folders / "good", "--out", tmp_path / "out", "--classes", classes)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_colliding_output_folders_are_an_argparse_error_naming_both(folders, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run(folders / "photos" / "cat.jpg", folders / "good" / "cat.jpg", "--out", tmp_path)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert str(folders / "photos" / "cat.jpg") in error and str(folders / "good" / "cat.jpg") in error


def test_named_classes_and_a_method_that_cannot_run(folders, tmp_path, capsys):
    cat = folders / "good" / "cat.jpg"
    assert _run(cat, "--out", tmp_path, "--classes", "tabby,espresso", "--format", "npz,csv") == 0
    with np.load(tmp_path / "cat.jpg" / "maps.npz") as maps:
        assert maps["class_ids"].tolist() == [281, 967]
        assert maps["class_names"].tolist() == ["tabby", "espresso"]
    assert [row["class_name"] for row in _read_csv(tmp_path / "explanations.csv")] == ["tabby", "espresso"]
    capsys.readouterr()
    assert _run(cat, "--out", tmp_path / "other", "--method", "attention_rollout") == 1
    assert f"{cat}: " in capsys.readouterr().err


def test_fashion_mnist_model_with_two_methods(folders, tmp_path):
    good = folders / "good"
    assert _run(good, "--out", tmp_path, "--model", "fashion_mnist_cnn", "--method", "gradcam,saliency") == 0
    with np.load(tmp_path / "good" / "cat.jpg" / "maps.npz") as maps:
        for method in ("gradcam", "saliency"):
            assert maps[f"{method}_base"].shape == maps[f"{method}_var"].shape == (K_AUTO, 1, 28, 28)
            np.testing.assert_allclose(maps[f"{method}_var"], _refined(maps[f"{method}_base"]), atol=1e-6)
    rows = _read_csv(tmp_path / "explanations.csv")
    assert len(rows) == 2 * K_AUTO * 2
    assert {row["method"] for row in rows} == {"gradcam", "saliency"}
    assert (tmp_path / "good" / "sub" / "coffee.png" / "figure.png").is_file()


# ------------------------------------------------------------------ resuming
def test_a_rerun_skips_everything_and_new_settings_recompute(folders, tmp_path, capsys):
    good, out = folders / "good", tmp_path / "out"
    assert _run(good, "--out", out) == 0
    before = _mtimes(out)
    capsys.readouterr()
    assert _run(good, "--out", out) == 0
    assert "0 explained, 2 already done (skipped)" in capsys.readouterr().out
    assert _mtimes(out) == before
    assert _run(good, "--out", out, "--tau", "0.2") == 0
    assert "2 explained, 0 already done (skipped)" in capsys.readouterr().out
    changed = _mtimes(out)
    assert all(changed[path] != before[path] for path in before if path.name in ("maps.npz", "record.json"))
    record = json.loads((out / "good" / "cat.jpg" / "record.json").read_text())
    assert record["fingerprint"]["refine_settings"]["tau"] == 0.2
    with np.load(out / "good" / "cat.jpg" / "maps.npz") as maps:
        np.testing.assert_allclose(maps["gradcam_var"], _refined(maps["gradcam_base"], tau=0.2), atol=1e-6)
    assert {row["tau"] for row in _read_csv(out / "explanations.csv")} == {"0.2"}


def test_an_interrupted_run_resumes_only_the_missing_images(folders, tmp_path, capsys, monkeypatch):
    class Interrupted(Exception):
        pass

    photos, out = folders / "photos", tmp_path / "out"
    images = [photos / name for name in ("cat.jpg", "grey.png", "rgba.png")]
    save_maps, calls = explain._save_maps, []

    def interrupt_second(path, *arguments):
        calls.append(path)
        if len(calls) == 2:
            raise Interrupted
        save_maps(path, *arguments)

    monkeypatch.setattr(explain, "_save_maps", interrupt_second)
    with pytest.raises(Interrupted):
        _run(*images, "--out", out)
    monkeypatch.undo()
    assert (out / "grey.png" / "figure.png").is_file() and not (out / "grey.png" / "record.json").exists()
    done_first = _mtimes(out / "cat.jpg")
    capsys.readouterr()
    assert _run(*images, "--out", out) == 0
    assert "2 explained, 1 already done (skipped)" in capsys.readouterr().out
    assert _mtimes(out / "cat.jpg") == done_first
    (out / "rgba.png" / "record.json").unlink()
    assert _run(*images, "--out", out) == 0
    assert "1 explained, 2 already done (skipped)" in capsys.readouterr().out
    assert len(_read_csv(out / "explanations.csv")) == 3 * K_AUTO
    assert not list(out.rglob("*.part"))


def test_outputs_inside_a_searched_folder_are_not_explained_again(folders, tmp_path, capsys):
    good = tmp_path / "good"
    _save("chelsea", good / "cat.jpg")
    assert _run(good, "--out", good / "out", "--format", "png") == 0
    capsys.readouterr()
    assert _run(good, "--out", good / "out", "--format", "png") == 0
    assert "0 explained, 1 already done (skipped), 0 failed, 0 non-image file(s) ignored." in capsys.readouterr().out
