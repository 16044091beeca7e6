"""Benchmark: the grid pointing game runner's throughput, 1 and 2 processes, and what a full Quad-ImageNet run costs.

1. Per method, one process: grids per second of ``evaluate_grid_pointing_game``
   (base and VAR maps, scored) with EfficientNet-Lite0 on Quad-Photos grids
   (224×224: the size of a Quad-ImageNet grid for this model) and with the
   Fashion-MNIST CNN. From the measured seconds per grid, the script estimates
   the full Quad-ImageNet run (12,500 grids) per method in device-hours on
   the device it ran on: an estimate, since real ImageNet grids also cost JPEG
   decoding (overlapped by ``--workers``).
2. One process against two: the command line run (``python -m var_utils gpg``
   and ``torchrun --standalone --nproc-per-node 2 -m var_utils gpg``) on
   Quad-FashionMNIST, with results written to disk as a user runs it. Each
   configuration runs twice, on a few grids and on many; the difference
   removes start-up (imports, model loading, process group) from the
   throughput, which is printed with the ratio 2 processes / 1 process.
3. With ``--store``: the results store's share of a 2,500-grid run's time
   (appending each batch, resuming, reading back), four gradient methods.

Usage::

    python benchmarks/bench_gpg.py                  # 1 and 2 on the CPU
    python benchmarks/bench_gpg.py --store          # also 3
    python benchmarks/bench_gpg.py --device cuda    # 1 on a GPU (GPU-hours)
    python benchmarks/bench_gpg.py --quick          # smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from var_utils import load_model
from var_utils.evaluation.gpg import (
    DEFAULT_MODELS,
    GPG_INTEGRATED_GRADIENTS,
    evaluate_grid_pointing_game,
    fashion_mnist_grids,
    photo_grids,
)
from var_utils.evaluation.gpg import store as store_module

QUAD_IMAGENET_GRIDS = 12_500
METHODS = ("gradcam", "saliency", "input_x_gradient", "guided_backprop", "integrated_gradients")
STORE_METHODS = ("gradcam", "saliency", "input_x_gradient", "guided_backprop")


def _methods(names, integrated_gradients: dict) -> dict:
    return {name: (integrated_gradients if name == "integrated_gradients" else {}) for name in names}


def per_method_throughput(
    model_name: str, grids, integrated_gradients: dict, device: torch.device, batch_size: int
) -> dict:
    """Seconds per grid of each method (one warm-up batch first, then the whole set once)."""
    model = load_model(model_name).to(device)
    seconds = {}
    for name, settings in _methods(METHODS, integrated_gradients).items():
        run = {name: settings}
        evaluate_grid_pointing_game(model, torch.utils.data.Subset(grids, range(batch_size)), run, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        evaluate_grid_pointing_game(model, grids, run, batch_size=batch_size, progress=False, grid=(2, 2))
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds[name] = (time.perf_counter() - start) / len(grids)
    return seconds


def _cli_seconds(launcher: list[str], n_grids: int, threads: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        command = [
            *launcher,
            "gpg",
            "--grids",
            str(n_grids),
            "--no-progress",
            "--out",
            str(Path(folder) / "gpg.csv"),
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        return time.perf_counter() - start


def process_scaling(small: int, large: int) -> list[tuple[str, float]]:
    """Grids per second of the command line, start-up removed, for each launch configuration."""
    python = [sys.executable, "-m", "var_utils"]
    torchrun = [
        str(Path(sys.executable).parent / "torchrun"),
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "var_utils",
    ]
    configurations = [
        ("1 process, 1 thread", python, 1),
        ("1 process, 2 threads", python, 2),
        ("2 processes (torchrun), 1 thread each", torchrun, 1),
    ]
    rates = []
    for label, launcher, threads in configurations:
        short = _cli_seconds(launcher, small, threads)
        long = _cli_seconds(launcher, large, threads)
        rates.append((label, (large - small) / (long - short)))
        print(f"   {label:<40} {small} grids {short:6.1f} s, {large} grids {long:6.1f} s", flush=True)
    return rates


def store_share(n_grids: int) -> tuple[float, float]:
    """(store seconds, run seconds) of a run with four gradient methods, with ``out``."""
    spent = [0.0]
    originals = {}
    for name in ("__enter__", "completed", "add", "close_shard", "merge", "table"):
        originals[name] = getattr(store_module.ResultStore, name)

        def timed(*arguments, _function=originals[name], **keywords):
            start = time.perf_counter()
            try:
                return _function(*arguments, **keywords)
            finally:
                spent[0] += time.perf_counter() - start

        setattr(store_module.ResultStore, name, timed)
    try:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            evaluate_grid_pointing_game(
                load_model("fashion_mnist_cnn"),
                fashion_mnist_grids(n_grids=n_grids),
                _methods(STORE_METHODS, {}),
                out=Path(folder) / "gpg.csv",
                progress=False,
            )
            total = time.perf_counter() - start
    finally:
        for name, function in originals.items():
            setattr(store_module.ResultStore, name, function)
    return spent[0], total


def main() -> None:
    """Run the parts chosen on the command line and print their measurements."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of part 1 (default: 1)")
    parser.add_argument("--store", action="store_true", help="also measure the results store's share (part 3)")
    parser.add_argument("--quick", action="store_true", help="few grids: a smoke run")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    device = torch.device(arguments.device)
    hardware = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {hardware}, {os.cpu_count()} cores, {arguments.threads} thread(s) in part 1")

    photos = photo_grids(load_model("efficientnet_lite0"), n_grids=8 if arguments.quick else 24)
    fashion = fashion_mnist_grids(n_grids=32 if arguments.quick else 256)
    unit = "GPU" if device.type == "cuda" else "CPU"
    print(f"\n1. One process on {device}: seconds per grid; the full Quad-ImageNet run ({QUAD_IMAGENET_GRIDS:,} grids)")
    print(f"   {'model':<20} {'method':<34} {'s/grid':>9} {'grids/s':>9} {'estimate, ' + unit + '-hours':>22}")
    for source, grids in (("photos", photos), ("fashion_mnist", fashion)):
        model_name, integrated_gradients = DEFAULT_MODELS[source], GPG_INTEGRATED_GRADIENTS[source]
        seconds = per_method_throughput(model_name, grids, integrated_gradients, device, batch_size=8)
        for method, value in seconds.items():
            steps = integrated_gradients["n_steps"]
            label = f"{method} ({steps} steps)" if method == "integrated_gradients" else method
            hours = f"{value * QUAD_IMAGENET_GRIDS / 3600:.2f}" if model_name == "efficientnet_lite0" else "-"
            print(f"   {model_name:<20} {label:<34} {value:9.4f} {1 / value:9.1f} {hours:>22}")

    if device.type == "cpu":
        small, large = (8, 40) if arguments.quick else (40, 400)
        print("\n2. Command line on Quad-FashionMNIST (its default methods and steps), start-up removed")
        rates = process_scaling(small, large)
        for label, rate in rates:
            print(f"   {label:<40} {rate:6.1f} grids/s")
        print(f"   2 processes / 1 process with 1 thread: {rates[2][1] / rates[0][1]:.2f}×")
        print(f"   2 processes / 1 process with 2 threads: {rates[2][1] / rates[1][1]:.2f}×")

    if arguments.store:
        n_grids = 250 if arguments.quick else 2500
        spent, total = store_share(n_grids)
        print(
            f"\n3. Results store, {n_grids} Fashion-MNIST grids, {len(STORE_METHODS)} methods: "
            f"{spent:.2f} s of {total:.1f} s ({spent / total:.1%})"
        )


if __name__ == "__main__":
    main()
