"""Fashion-MNIST loader, shipped CNN and training helpers.

References are independent of the code under test: the IDX files parsed by
hand with numpy, torchvision's own class list, the dataset's known balance
(1,000 test / 6,000 training images per class), closed-form normalisation.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torchvision.datasets import FashionMNIST

import var_utils.apps.train_fashion_mnist as train_fm
import var_utils.datasets.fashion_mnist as fm
from var_utils._io import atomic_output_path
from var_utils.datasets.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    gunzip_atomic,
    load_fashion_mnist,
    normalize_fashion_mnist,
)
from var_utils.evaluation.metrics import accuracy
from var_utils.models import (
    FASHION_MNIST_BCOS_WEIGHTS,
    FASHION_MNIST_CNN_WEIGHTS,
    FASHION_MNIST_VIT_WEIGHTS,
    FashionMNISTCNN,
    load_fashion_mnist_cnn,
    load_model,
    upscale_to_vit,
)

RAW_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_idx(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file by its spec: big-endian magic (0x08 = ubyte, ndim), then the dims."""
    raw = gzip.decompress(path.read_bytes())
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    assert (zero, dtype_code) == (0, 0x08)
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an uncompressed ubyte IDX file by hand."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def test_split() -> tuple[torch.Tensor, torch.Tensor]:
    return load_fashion_mnist(train=False)


@pytest.fixture(scope="session")
def shipped_model() -> FashionMNISTCNN:
    return load_fashion_mnist_cnn()


# --- the shipped CNN ---------------------------------------------------------------------------


def test_shipped_cnn_reaches_90_percent_on_the_full_test_set(shipped_model, test_split):
    images, labels = test_split
    with torch.no_grad():
        predictions = torch.cat([shipped_model(batch).argmax(1) for batch in images.split(2000)])
    assert len(predictions) == 10_000
    assert (predictions == labels).float().mean().item() >= 0.90


@pytest.mark.parametrize(
    "name, minimum, prepare", [("fashion_mnist_vit", 0.88, upscale_to_vit), ("fashion_mnist_bcos", 0.87, None)]
)
def test_shipped_vit_and_bcos_reach_their_accuracy_at_their_input_size(test_split, name, minimum, prepare):
    images, labels = test_split
    model = load_model(name)
    if prepare is not None:
        images = prepare(images)
    assert images.shape[-1] == model.input_size
    assert accuracy(model, images, labels) >= minimum


@pytest.mark.parametrize("path", [FASHION_MNIST_VIT_WEIGHTS, FASHION_MNIST_BCOS_WEIGHTS])
def test_shipped_vit_and_bcos_weights_are_at_most_5_mb_of_float32(path):
    assert path.stat().st_size <= 5 * 1000**2
    tensors = load_file(str(path))
    # Batch norms also count their updates (int64); every parameter and statistic is float32.
    assert all(tensor.dtype == torch.float32 for name, tensor in tensors.items() if "num_batches" not in name)


def test_upscaling_for_the_vit_doubles_the_side_bilinearly():
    image = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]]).expand(1, 1, 2, 2)
    image = torch.nn.functional.pad(image, (0, 26, 0, 26))
    upscaled = upscale_to_vit(image)
    assert upscaled.shape == (1, 1, 56, 56)
    # Half-pixel centres: output pixel 1 sits at input coordinate 0.25 between input pixels 0 and 1.
    assert upscaled[0, 0, 0, 1].item() == pytest.approx(0.25)


def test_shipped_weights_are_small_float32_and_load_in_eval_mode(shipped_model):
    assert FASHION_MNIST_CNN_WEIGHTS.stat().st_size <= 2 * 1024**2
    tensors = load_file(str(FASHION_MNIST_CNN_WEIGHTS))
    assert all(tensor.dtype == torch.float32 for tensor in tensors.values())
    assert sum(tensor.numel() for tensor in tensors.values()) * 4 <= 2 * 1024**2
    assert not shipped_model.training


def test_shipped_cnn_class_maps_localise_the_cells_of_2x2_grids(shipped_model, test_split):
    images, labels = test_split
    # Grids of four consecutive test images with distinct labels, cells in row-major order.
    starts = [start for start in range(0, 400, 4) if len(set(labels[start : start + 4].tolist())) == 4]
    cells = images[[start + offset for start in starts for offset in range(4)], 0].reshape(len(starts), 2, 2, 28, 28)
    grids = cells.permute(0, 1, 3, 2, 4).reshape(len(starts), 1, 56, 56)
    captured = []
    shipped_model.gradcam_layer().register_forward_hook(lambda module, inputs, output: captured.append(output))
    with torch.no_grad():
        shipped_model(grids)
    # Closed form for ReLU -> global average pool -> linear: Grad-CAM equals the class activation map.
    maps = torch.einsum("kc,nchw->nkhw", shipped_model.classifier.weight, captured[0]).clamp(min=0)
    shares = []
    for grid, start in enumerate(starts):
        for cell in range(4):
            row, col = divmod(cell, 2)
            class_map = maps[grid, labels[start + cell]]
            shares.append(class_map[7 * row : 7 * row + 7, 7 * col : 7 * col + 7].sum() / class_map.sum())
    assert len(starts) >= 40
    assert torch.stack(shares).mean() >= 0.45  # chance: 0.25


@pytest.mark.parametrize(
    "shape, feature_size",
    [((1, 1, 28, 28), 7), ((4, 1, 28, 28), 7), ((2, 1, 56, 56), 14), ((1, 1, 84, 84), 21)],
)
def test_any_input_size_gives_10_logits_and_a_fine_gradcam_map(shape, feature_size):
    model = FashionMNISTCNN().eval()
    captured = []
    model.gradcam_layer().register_forward_hook(lambda module, inputs, output: captured.append(output))
    logits = model(torch.randn(shape))
    assert logits.shape == (shape[0], 10)
    assert captured[0].shape[-2:] == (feature_size, feature_size)


def test_gradcam_layer_is_the_last_activation_before_pooling():
    model = FashionMNISTCNN().eval()
    order = []
    for module in model.modules():
        if not list(module.children()):
            module.register_forward_hook(lambda module, inputs, output: order.append(module))
    model(torch.randn(1, 1, 28, 28))
    layer = model.gradcam_layer()
    assert isinstance(layer, nn.ReLU)
    assert layer is [module for module in order if isinstance(module, (nn.ReLU, nn.Conv2d))][-1]


@pytest.mark.parametrize("size", [28, 56])
def test_relus_are_separate_non_inplace_modules_each_called_once(size):
    model = FashionMNISTCNN().eval()
    relus = [module for module in model.modules() if isinstance(module, nn.ReLU)]
    calls = {id(relu): 0 for relu in relus}
    for relu in relus:
        relu.register_forward_hook(lambda module, inputs, output: calls.__setitem__(id(module), calls[id(module)] + 1))
    model(torch.randn(2, 1, size, size))
    convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    assert len(relus) == len(convs)  # one activation per conv layer
    assert all(not relu.inplace for relu in relus)
    assert list(calls.values()) == [1] * len(relus)


def test_missing_weights_raise_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(FileNotFoundError, match="train_fashion_mnist") as error:
        load_fashion_mnist_cnn(missing)
    assert str(missing) in str(error.value)


def test_weights_path_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="weights_path"):
        load_fashion_mnist_cnn(3)


# --- data ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("train, size", [(False, 10_000), (True, 60_000)])
def test_loader_shapes_dtypes_and_balanced_labels(train, size):
    images, labels = load_fashion_mnist(train=train)
    assert images.shape == (size, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (size,) and labels.dtype == torch.int64
    assert torch.bincount(labels, minlength=10).tolist() == [size // 10] * 10


def test_debian_files_are_copied_and_normalised_like_the_raw_pixels(tmp_path, test_split):
    images, labels = load_fashion_mnist(tmp_path, train=False)
    raw_dir = tmp_path / "FashionMNIST" / "raw"
    assert sorted(path.name for path in raw_dir.iterdir()) == sorted(RAW_NAMES)
    pixels = read_idx(fm.DEBIAN_DATASET_DIR / "t10k-images-idx3-ubyte.gz")
    expected = (torch.from_numpy(pixels.astype(np.float32)) / 255.0 - 0.2860) / 0.3530
    torch.testing.assert_close(images[:, 0], expected)
    assert labels.tolist() == read_idx(fm.DEBIAN_DATASET_DIR / "t10k-labels-idx1-ubyte.gz").tolist()
    torch.testing.assert_close(images, test_split[0])


def test_files_already_in_root_win_over_other_sources(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DATASET_DIR", tmp_path / "no_debian")
    raw_dir = tmp_path / "FashionMNIST" / "raw"
    raw_dir.mkdir(parents=True)
    pixels = np.array([[[0, 255], [51, 102]], [[255, 255], [0, 0]], [[1, 2], [3, 4]]])
    for split in ("train", "t10k"):
        write_idx(raw_dir / f"{split}-images-idx3-ubyte", pixels)
        write_idx(raw_dir / f"{split}-labels-idx1-ubyte", np.array([9, 0, 4]))
    images, labels = load_fashion_mnist(tmp_path)
    assert labels.tolist() == [9, 0, 4]
    torch.testing.assert_close(images[0, 0], torch.tensor([[-0.2860, 0.7140], [-0.0860, 0.1140]]) / 0.3530)


def test_default_root_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("VAR_UTILS_DATA", str(tmp_path))
    assert fm.default_data_root() == tmp_path
    monkeypatch.delenv("VAR_UTILS_DATA")
    assert fm.default_data_root() == Path.home() / ".cache" / "var_utils"


def test_no_source_raises_an_error_saying_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DATASET_DIR", tmp_path / "no_debian")
    monkeypatch.setattr(FashionMNIST, "mirrors", ["http://127.0.0.1:9/"])  # refused at once, offline or not
    with pytest.raises(RuntimeError, match="apt-get install dataset-fashion-mnist") as error:
        load_fashion_mnist(tmp_path / "empty")
    message = str(error.value)
    assert str(tmp_path / "empty" / "FashionMNIST" / "raw") in message and "internet" in message


def test_class_names_match_torchvision():
    assert list(FASHION_MNIST_CLASSES) == FashionMNIST.classes


@pytest.mark.parametrize(
    "pixels, expected",
    [(0.2860, 0.0), (1.0, (1.0 - 0.2860) / 0.3530), (0.0, -0.2860 / 0.3530)],
)
def test_normalize_closed_form(pixels, expected):
    assert normalize_fashion_mnist(torch.tensor([pixels])).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "call, error, fragment",
    [
        (lambda: normalize_fashion_mnist([0.5]), TypeError, "images"),
        (lambda: normalize_fashion_mnist(torch.tensor([1])), TypeError, "floating-point"),
        (lambda: load_fashion_mnist(root=5), TypeError, "root"),
        (lambda: load_fashion_mnist(train="yes"), TypeError, "train"),
    ],
)
def test_bad_arguments(call, error, fragment):
    with pytest.raises(error, match=fragment):
        call()


# --- atomic writes -------------------------------------------------------------------------------


def test_gunzip_atomic_writes_the_decompressed_bytes(tmp_path):
    source = tmp_path / "data.gz"
    content = bytes(range(256)) * 100
    source.write_bytes(gzip.compress(content))
    gunzip_atomic(source, tmp_path / "out" / "data")
    assert (tmp_path / "out" / "data").read_bytes() == content
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["data"]


def test_interrupted_gunzip_leaves_no_partial_file(tmp_path):
    source = tmp_path / "truncated.gz"
    source.write_bytes(gzip.compress(bytes(range(256)) * 1000)[:500])
    out_dir = tmp_path / "out"
    with pytest.raises(EOFError):
        gunzip_atomic(source, out_dir / "data")
    assert list(out_dir.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["weights.bin"]


# --- training script -----------------------------------------------------------------------------


def test_accuracy_counts_matching_argmax():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 4.0], [1.0, 2.0], [0.0, -1.0]])
    model = nn.Identity()
    assert accuracy(model, logits, torch.tensor([0, 1, 1, 0, 0]), batch_size=2) == pytest.approx(3 / 5)


@pytest.mark.parametrize(
    "arch, name", [("cnn", "fashion_mnist_cnn"), ("vit", "fashion_mnist_vit"), ("bcos", "fashion_mnist_bcos")]
)
def test_training_script_saves_loadable_weights_deterministically(tmp_path, monkeypatch, capsys, arch, name):
    generator = torch.Generator().manual_seed(0)
    tiny = (torch.randn(32, 1, 28, 28, generator=generator), torch.randint(0, 10, (32,), generator=generator))
    monkeypatch.setattr(train_fm, "load_fashion_mnist", lambda root, train: tiny)
    # Record the global switch instead of flipping it for the rest of the test session.
    switches = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms", switches.append)
    weights = []
    for run in ("a", "b"):
        out = tmp_path / f"{run}.safetensors"
        train_fm.main(["--arch", arch, "--epochs", "1", "--batch-size", "16", "--out", str(out)])
        assert not load_model(name, weights=out).training
        weights.append(load_file(str(out)))
    assert capsys.readouterr().out.count("test accuracy") == 2
    assert switches == [True, True]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.safetensors", "b.safetensors"]


def test_training_script_rejects_zero_epochs(tmp_path):
    with pytest.raises(SystemExit):
        train_fm.main(["--epochs", "0", "--out", str(tmp_path / "cnn.safetensors")])


def test_random_placement_puts_one_resized_square_per_image_on_the_blank_background():
    from var_utils.apps.train_fashion_mnist import random_flip_and_placement

    blank = normalize_fashion_mnist(torch.tensor(0.0)).item()
    sizes = set()
    for seed in range(6):
        images = torch.full((5, 1, 56, 56), 2.0)
        placed = random_flip_and_placement(images, torch.Generator().manual_seed(seed))
        assert placed.shape == images.shape
        covered = (placed != blank).flatten(1).sum(dim=1)
        side = round(covered[0].item() ** 0.5)
        assert 28 <= side <= 56 and (covered == side * side).all()  # one size per batch, a full square each
        rows = (placed[:, 0] != blank).any(dim=2)
        assert (rows.sum(dim=1) == side).all()  # contiguous squares inside the canvas
        assert torch.allclose(placed[placed != blank], torch.tensor(2.0))
        sizes.add(side)
    assert len(sizes) > 1


def test_cutmix_pastes_one_box_of_the_next_image_and_mixes_the_labels_by_its_area():
    from var_utils.apps.train_fashion_mnist import cutmix

    for seed in range(8):
        images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 56, 56).clone()
        labels = torch.tensor([0, 3, 5, 9])
        mixed, targets = cutmix(images, labels, torch.Generator().manual_seed(seed), 10)
        assert targets.shape == (4, 10)
        torch.testing.assert_close(targets.sum(dim=1), torch.ones(4))
        for index in range(4):
            other = (index - 1) % 4  # each image receives the box of the image before it (roll by one)
            pasted = (mixed[index] == other).float().mean().item()
            assert ((mixed[index] == index) | (mixed[index] == other)).all()
            assert targets[index, labels[other]].item() == pytest.approx(pasted)
            assert targets[index, labels[index]].item() == pytest.approx(1 - pasted)
