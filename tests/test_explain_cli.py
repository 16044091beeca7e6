"""Tests of ``python -m var_utils explain``: outputs, failures, class options, resuming and atomic writes.

Independent references: the model's logits through a direct softmax, a direct
``attribute_classes`` call, ``refine_all`` applied to the stored base maps, the kept
share summed by hand with numpy, ``hashlib`` on the file's bytes, and the file
system (output folders, modification times, no temporary files).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
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
from var_utils.datasets.photos import decode_image

GOOD = ("cat.jpg", "Coffee.PNG", "grey.png", "rgba.png", "sub/astronaut.webp")
BAD = ("corrupt.jpg", "fake.png")
K_AUTO = 4  # top-3 predictions and the least probable class


def _save(photo: str, path: Path, mode: str = "RGB", size: int = 160) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(var_utils.load_photo(photo)).convert(mode)
    image.thumbnail((size, size))
    image.save(path, format="PNG" if path.suffix.lower() not in (".jpg", ".webp") else None)


def _small(path: Path, photo: str = "chelsea") -> Path:
    """A 40-pixel PNG (whatever the name): enough for the model, fast to explain."""
    _save(photo, path, size=40)
    return path


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


def _lines_of(text: str, path: Path) -> list[str]:
    """The lines of ``text`` that report on ``path``: ``PATH: ...`` or ``failed: PATH: ...``."""
    return [line for line in text.splitlines() if line.removeprefix("failed: ").startswith(f"{path}: ")]


def _exits_2(capsys, *arguments) -> str:
    """Run expecting an argparse error; its message."""
    with pytest.raises(SystemExit) as exit_info:
        _run(*arguments)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


# ------------------------------------------------------------------ the first run
def test_failures_are_reported_by_path_and_give_status_1(first_run, folders):
    status, stdout, stderr, out = first_run
    assert status == 1
    for name in BAD:
        expected = f"ValueError: '{name}' is not a readable image file"
        for lines in (_lines_of(stderr, folders / "photos" / name), _lines_of(stdout, folders / "photos" / name)):
            assert len(lines) == 1 and expected in lines[0]
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


def test_stored_base_maps_are_a_direct_attribution_of_the_predicted_classes(first_run, folders, lite0):
    *_, out = first_run
    for name in GOOD:
        inputs = model_input(lite0, var_utils.load_image(folders / "photos" / name))
        with torch.no_grad():
            probabilities = torch.softmax(lite0(inputs).double(), dim=1)[0]
        classes = probabilities.argsort(descending=True)[:3].tolist() + [int(probabilities.argmin())]
        direct = var_utils.attribute_classes(lite0, inputs, classes, "gradcam")[0].numpy()
        with np.load(out / "photos" / name / "maps.npz") as maps:
            assert maps["class_ids"].tolist() == classes
            np.testing.assert_allclose(maps["gradcam_base"], direct, rtol=0, atol=1e-5)


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
    photos, out = folders / "photos", tmp_path / "out"
    images = [photos / name for name in ("cat.jpg", "grey.png", "rgba.png")]
    save_maps, calls = explain._save_maps, []

    def interrupt_second(path, *arguments):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        save_maps(path, *arguments)

    monkeypatch.setattr(explain, "_save_maps", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
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


def test_an_interrupted_recompute_is_not_taken_for_the_old_settings(tmp_path, capsys, monkeypatch):
    image, out = _small(tmp_path / "a.png"), tmp_path / "out"
    assert _run(image, "--out", out) == 0
    figure = out / "a.png" / "figure.png"
    first_figure = figure.stat().st_mtime_ns

    def interrupt(*arguments):
        raise KeyboardInterrupt

    monkeypatch.setattr(explain, "_save_maps", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _run(image, "--out", out, "--tau", "0.3")
    monkeypatch.undo()
    assert figure.stat().st_mtime_ns != first_figure  # the figure of tau 0.3 was written
    assert not (out / "a.png" / "record.json").exists() and not (out / "explanations.csv").exists()
    capsys.readouterr()
    assert _run(image, "--out", out) == 0
    assert "1 explained, 0 already done (skipped)" in capsys.readouterr().out
    assert json.loads((out / "a.png" / "record.json").read_text())["fingerprint"]["refine_settings"]["tau"] == 0.01
    with np.load(out / "a.png" / "maps.npz") as maps:
        np.testing.assert_allclose(maps["gradcam_var"], _refined(maps["gradcam_base"], tau=0.01), atol=1e-6)
    assert {row["tau"] for row in _read_csv(out / "explanations.csv")} == {"0.01"}


def test_an_image_edited_on_disk_is_recomputed(tmp_path, capsys):
    image, out = _small(tmp_path / "a.png"), tmp_path / "out"
    assert _run(image, "--out", out, "--format", "npz") == 0
    _small(image, "coffee")
    capsys.readouterr()
    assert _run(image, "--out", out, "--format", "npz") == 0
    assert "1 explained, 0 already done (skipped)" in capsys.readouterr().out
    record = json.loads((out / "a.png" / "record.json").read_text())
    assert record["source_sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()


def test_the_hash_and_the_maps_come_from_one_read_of_the_file(tmp_path, monkeypatch, lite0):
    image, out = _small(tmp_path / "a.png"), tmp_path / "out"
    first, rewritten = image.read_bytes(), _small(tmp_path / "b.png", "coffee").read_bytes()
    read_bytes, reads = Path.read_bytes, []

    def rewritten_after_one_read(path: Path) -> bytes:  # as if another program saved the file meanwhile
        if path != image:
            return read_bytes(path)
        reads.append(path)
        return first if len(reads) == 1 else rewritten

    monkeypatch.setattr(Path, "read_bytes", rewritten_after_one_read)
    assert _run(image, "--out", out, "--format", "npz") == 0
    monkeypatch.undo()
    assert len(reads) == 1
    assert json.loads((out / "a.png" / "record.json").read_text())["source_sha256"] == hashlib.sha256(first).hexdigest()
    with np.load(out / "a.png" / "maps.npz") as maps:
        base, classes = maps["gradcam_base"], maps["class_ids"].tolist()
    inputs = model_input(lite0, decode_image(first))
    np.testing.assert_allclose(base, var_utils.attribute_classes(lite0, inputs, classes, "gradcam")[0], atol=1e-5)


def test_a_corrupt_record_is_recomputed(tmp_path, capsys):
    image, out = _small(tmp_path / "a.png"), tmp_path / "out"
    assert _run(image, "--out", out, "--format", "npz") == 0
    record = out / "a.png" / "record.json"
    for content in ("{", "[]", '{"outputs": [1]}'):
        record.write_text(content)
        capsys.readouterr()
        assert _run(image, "--out", out, "--format", "npz") == 0
        assert "1 explained, 0 already done (skipped), 0 failed" in capsys.readouterr().out
        assert json.loads(record.read_text())["outputs"] == ["maps.npz"]


def test_outputs_of_other_formats_and_a_stale_table_are_removed(tmp_path, capsys):
    image, out = _small(tmp_path / "a.png"), tmp_path / "out"
    table, removed = out / "explanations.csv", f"Removed the stale table {out / 'explanations.csv'}"

    def run(*options) -> str:
        capsys.readouterr()
        assert _run(image, "--out", out, "--tau", "0.3", *options) == 0
        return capsys.readouterr().out

    assert _run(image, "--out", out) == 0  # tau 0.01: figure.png, maps.npz, explanations.csv
    report = run("--format", "npz")
    assert {path.name for path in (out / "a.png").iterdir()} == {"maps.npz", "record.json"}
    assert not table.exists() and removed in report
    report = run("--format", "npz,csv")  # the table changes no image's outputs: nothing recomputed
    assert "0 explained, 1 already done (skipped)" in report and removed not in report
    assert {row["tau"] for row in _read_csv(table)} == {"0.3"}
    report = run("--format", "npz")  # nothing recomputed: the table still matches the records
    assert table.is_file() and removed not in report
    report = run("--format", "png")
    assert "1 explained" in report and removed in report and not table.exists()
    assert {path.name for path in (out / "a.png").iterdir()} == {"figure.png", "record.json"}
    assert not list(out.rglob("*.part"))


def test_a_file_reached_twice_is_explained_once(tmp_path, capsys):
    folder = tmp_path / "img"
    _small(folder / "ok.png")
    (folder / "sub").mkdir()
    again = folder / "sub" / ".." / "ok.png"
    for paths, expected in (((folder, folder / "ok.png", again), "img/ok.png"), ((again, folder), "ok.png")):
        out = tmp_path / expected.replace("/", "_")
        assert _run(*paths, "--out", out, "--format", "npz") == 0
        assert "1 explained, 0 already done (skipped), 0 failed" in capsys.readouterr().out
        assert [path.parent.relative_to(out).as_posix() for path in out.rglob("record.json")] == [expected]


def test_file_names_that_are_not_utf8_are_shown_escaped(tmp_path, capsys):
    folder = tmp_path / "in"
    good, bad = folder / os.fsdecode(b"caf\xe9.png"), folder / os.fsdecode(b"bad\xff.png")
    try:
        _small(good)
        bad.write_text("not an image\n")
    except (OSError, UnicodeError):
        pytest.skip("this file system only takes UTF-8 file names")
    out = tmp_path / "out"
    assert _run(folder, "--out", out, "--format", "npz,csv") == 1
    shown_good, shown_bad = f"{folder}{os.sep}caf\\xe9.png", f"{folder}{os.sep}bad\\xff.png"
    captured = capsys.readouterr()
    expected = "ValueError: 'bad\\xff.png' is not a readable image file"
    for lines in (_lines_of(captured.err, shown_bad), _lines_of(captured.out, shown_bad)):
        assert len(lines) == 1 and expected in lines[0]
    assert "1 explained, 0 already done (skipped), 1 failed" in captured.out
    assert [row["image"] for row in _read_csv(out / "explanations.csv")] == [shown_good] * K_AUTO
    record = json.loads((out / "in" / good.name / "record.json").read_text(encoding="utf-8"))
    assert {record["image"], *(row["image"] for row in record["rows"])} == {shown_good}


def test_any_error_of_one_image_is_reported_and_the_others_go_on(tmp_path, capsys, monkeypatch):
    folder, out = tmp_path / "mixed", tmp_path / "out"
    for name in ("a.png", "boom.png", "d.png"):
        _small(folder / name)
    _save("coffee", folder / "big.png", size=600)  # 600 x 400 pixels: over twice the limit below
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 60_000)  # above the model's 224 x 224 crop
    decode_image = explain.decode_image

    def decode(data: bytes, name: str):
        if "boom" in name:
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nsecond line")
        return decode_image(data, name)

    monkeypatch.setattr(explain, "decode_image", decode)
    assert _run(folder, "--out", out, "--format", "npz,csv") == 1
    captured = capsys.readouterr()
    boom = "RuntimeError: CUDA error: an illegal memory access was encountered"
    assert _lines_of(captured.err, folder / "boom.png") == [f"{folder / 'boom.png'}: {boom}"]
    assert _lines_of(captured.out, folder / "boom.png") == [f"failed: {folder / 'boom.png'}: {boom}"]
    for lines in (_lines_of(captured.err, folder / "big.png"), _lines_of(captured.out, folder / "big.png")):
        assert len(lines) == 1 and "decompression bomb" in lines[0]
    assert "2 explained, 0 already done (skipped), 2 failed" in captured.out
    assert {row["image"] for row in _read_csv(out / "explanations.csv")} == {
        str(folder / n) for n in ("a.png", "d.png")
    }


# ------------------------------------------------------------------ argparse errors before any image
@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the model is loaded."""

    def unexpected(*arguments, **settings):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(explain, "load_model", unexpected)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (("photos", "--out", "taken"), "`out` 'taken' must be a folder, but '{root}/taken' exists and is not one."),
        (("photos", "--out", "taken/sub"), "`out` 'taken/sub' must be a folder, but '{root}/taken' exists"),
        (("photos", "--out", "."), "'photos' lie(s) in the output folder '.'"),
        (("photos", "photos/a.png", "--out", "photos"), "'photos', 'photos/a.png' lie(s) in the output folder"),
        (("notes", "photos/a.png", "--out", "out"), None),  # a file given itself is taken: no error
        (("notes", "--out", "out"), "No image found in 'notes'"),
        (("photos", "--out", "out", "--classes", " , "), "`classes` must name at least one item"),
        (("photos", "--out", "out", "--format", "npz,gif"), "unknown format(s) ['gif']"),
    ],
)
def test_cheap_errors_come_before_the_model_is_loaded(tmp_path, capsys, monkeypatch, no_model, arguments, message):
    _small(tmp_path / "photos" / "a.png")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("no image\n")
    (tmp_path / "taken").write_text("a file\n")
    monkeypatch.chdir(tmp_path)
    if message is None:
        with pytest.raises(AssertionError, match="the model was loaded"):
            _run(*arguments)
        return
    assert message.format(root=tmp_path) in _exits_2(capsys, *arguments)
    assert not (tmp_path / "out").exists()


def test_a_model_that_cannot_be_loaded_is_an_argparse_error(tmp_path, capsys, monkeypatch):
    def offline(name):
        raise RuntimeError(f"The weights of {name} could not be downloaded (no network).")

    monkeypatch.setattr(explain, "load_model", offline)
    error = _exits_2(capsys, _small(tmp_path / "a.png"), "--out", tmp_path / "out")
    assert "The weights of efficientnet_lite0 could not be downloaded (no network)." in error


def test_top_k_of_all_the_classes_is_an_argparse_error(folders, tmp_path, capsys):
    error = _exits_2(
        capsys, folders / "good", "--out", tmp_path / "out", "--model", "fashion_mnist_cnn", "--top-k", "10"
    )
    assert "`top_k` must be < 10, the model's number of classes; got 10." in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("given", ["explanations.csv", "explanations.csv/a.png"])
def test_an_output_folder_named_like_the_table_is_an_argparse_error(tmp_path, capsys, given):
    image = _small(tmp_path / given)
    path = tmp_path / "explanations.csv" if given.endswith("/a.png") else image
    error = _exits_2(capsys, path, "--out", tmp_path / "out")
    assert f"'{image}' would be explained in the output folder '{given}', which clashes with the table" in error
