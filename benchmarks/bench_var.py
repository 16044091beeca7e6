"""Benchmark: the K base maps of VAR, the original per-class loop against ``var_utils.attribute_classes``.

The ORIGINAL approach computes the maps of K classes one class at a time: a
full forward pass and a full ``.backward()`` per class, with the weights
requiring grad (so their gradients are computed too) and ``model.zero_grad()``
between classes, then reads the input's ``.grad`` (or, for Grad-CAM, the
retained gradient of the layer's output). OURS is
:func:`var_utils.attribute_classes`: one forward pass shared by the K classes
and K input-gradient backward passes with the weights frozen.

Both run in one process, alternately (ours, original, ours, original, ...),
and the median time of each is reported. Before timing, every method's maps
are checked to agree to 1e-4 (relative to the largest value); integrated
gradients timed in chunks smaller than its 32 steps is checked to 1e-4 with
one chunk of 32 (the original's batches) and to 1e-2 with the timed chunks.

Also measured: the peak memory of our integrated gradients at 32, 128 and 512
steps with a fixed ``internal_batch_size`` (against Captum's, which holds all
steps at once), each in a fresh process, and the throughput of the grid
pointing game runner.

Usage::

    python benchmarks/bench_var.py                 # full run, a few minutes on 2 cores
    python benchmarks/bench_var.py --quick         # smoke run
    python benchmarks/bench_var.py --repeats 11 --skip-memory
    python benchmarks/bench_var.py --threads 1 --clock cpu   # steadier on a shared, loaded machine
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from var_utils.fashion_mnist import FashionMNISTCNN, load_fashion_mnist  # noqa: E402
from var_utils.grids import compose_grid  # noqa: E402

from var_utils import attribute_classes, load_model, load_photo  # noqa: E402
from var_utils.methods import default_gradcam_layer  # noqa: E402
from var_utils.methods.guided import GuidedReluMode  # noqa: E402

NUM_CLASSES = 4
IG_STEPS = 32
MEMORY_STEPS = (32, 128, 512)
RELATIVE_TOLERANCE = 1e-4
#: Float32 kernels depend on the batch size: EfficientNet-Lite0's input gradients of 32 images in one pass and
#: in passes of 8 differ by ~7e-4 of the largest value (the original approach's own gradients too), so our
#: integrated gradients in chunks smaller than the steps are held to this looser tolerance.
CHUNKED_TOLERANCE = 1e-2
#: Minimum speed-up (original time / our time) per method.
TARGETS = {
    "saliency": 2.0,
    "input_x_gradient": 2.0,
    "guided_backprop": 2.0,
    "gradcam": 3.0,
    "integrated_gradients": 1.8,
}


# --------------------------------------------------------------------------- the original approach


def original_input_gradients(
    model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor, guided: bool = False
) -> torch.Tensor:
    """(N, K, C, H, W) input gradients, one full forward and one full backward per class."""
    gradients = []
    for k in range(classes.shape[1]):
        model.zero_grad()
        leaf = inputs.clone().requires_grad_(True)
        if guided:
            with GuidedReluMode():
                logits = model(leaf)
        else:
            logits = model(leaf)
        logits.gather(1, classes[:, k : k + 1]).sum().backward()
        gradients.append(leaf.grad)
    return torch.stack(gradients, dim=1)


def original_saliency(model, inputs, classes):
    return original_input_gradients(model, inputs, classes).abs()


def original_input_x_gradient(model, inputs, classes):
    return inputs.unsqueeze(1) * original_input_gradients(model, inputs, classes)


def original_guided_backprop(model, inputs, classes):
    return original_input_gradients(model, inputs, classes, guided=True)


def original_integrated_gradients(model, inputs, classes, n_steps=IG_STEPS):
    """Captum's recipe with ``internal_batch_size=None``: per class, all steps in one forward and one backward.

    Zero baseline, Gauss-Legendre nodes mapped to [0, 1] (Captum's default rule).
    """
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    alphas = torch.tensor(0.5 * (nodes + 1.0), dtype=inputs.dtype).view(-1, 1, 1, 1, 1)
    weights = torch.tensor(0.5 * weights, dtype=inputs.dtype).view(-1, 1, 1, 1, 1)
    path = (alphas * inputs).flatten(0, 1)  # (n_steps * N, C, H, W), step-major as in Captum
    step_classes = classes.repeat(n_steps, 1)
    gradients = original_input_gradients(model, path, step_classes).unflatten(0, (n_steps, inputs.shape[0]))
    return inputs.unsqueeze(1) * (weights.unsqueeze(1) * gradients).sum(dim=0)


def original_gradcam(model, inputs, classes):
    """Signed Grad-CAM at the default layer: the layer's output kept by a hook, its gradient retained."""
    layer = default_gradcam_layer(model)
    kept = []
    handle = layer.register_forward_hook(lambda _module, _inputs, output: kept.append(output))
    maps = []
    try:
        for k in range(classes.shape[1]):
            kept.clear()
            model.zero_grad()
            logits = model(inputs)
            activations = kept[0]
            activations.retain_grad()
            logits.gather(1, classes[:, k : k + 1]).sum().backward()
            channel_weights = activations.grad.mean(dim=(2, 3), keepdim=True)
            cam = (channel_weights * activations).sum(dim=1, keepdim=True)
            maps.append(F.interpolate(cam, size=tuple(inputs.shape[2:]), mode="bilinear").detach())
    finally:
        handle.remove()
    return torch.stack(maps, dim=1)


ORIGINAL = {
    "saliency": original_saliency,
    "input_x_gradient": original_input_x_gradient,
    "guided_backprop": original_guided_backprop,
    "gradcam": original_gradcam,
    "integrated_gradients": original_integrated_gradients,
}


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One model and input: (N, C, H, W) images with an (N, K) class set each."""

    label: str
    model: nn.Module
    inputs: torch.Tensor
    classes: torch.Tensor
    methods: tuple[str, ...]


def lite0_case() -> Case:
    model = load_model("efficientnet_lite0")
    photo = model.preprocess(load_photo("chelsea"))
    with torch.no_grad():
        top = model(photo).topk(NUM_CLASSES, dim=1).indices
    return Case("efficientnet_lite0 1x3x224x224", model, photo, top, tuple(TARGETS))


def fashion_model() -> tuple[nn.Module, str]:
    """The trained Fashion-MNIST CNN, or a random one (same timings) when its weights are missing."""
    try:
        return load_model("fashion_mnist_cnn"), "trained"
    except FileNotFoundError:
        return FashionMNISTCNN().eval(), "random weights: data/fashion_mnist_cnn.safetensors is missing"


def fashion_grids(num_grids: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(num_grids, 1, 56, 56) 2x2 grids of test images of four distinct classes, and their (num_grids, 4) labels."""
    images, labels = load_fashion_mnist()
    rng = np.random.default_rng(seed)
    grid_labels = torch.tensor(np.stack([rng.choice(10, NUM_CLASSES, replace=False) for _ in range(num_grids)]))
    by_class = [torch.nonzero(labels == c).flatten() for c in range(10)]
    picks = torch.tensor([[by_class[c][rng.integers(len(by_class[c]))] for c in row] for row in grid_labels.tolist()])
    return compose_grid(images[picks]), grid_labels


def fashion_cases(model: nn.Module, batch: int) -> list[Case]:
    grids, labels = fashion_grids(batch)
    single = Case("fashion_mnist_cnn 1x1x56x56", model, grids[:1], labels[:1], tuple(TARGETS))
    # Integrated gradients of a batch is batch x 32 steps x 5 passes: too slow for the default run.
    methods = tuple(name for name in TARGETS if name != "integrated_gradients")
    return [single, Case(f"fashion_mnist_cnn {batch}x1x56x56", model, grids, labels, methods)]


# --------------------------------------------------------------------------- timing


def method_settings(method: str, internal_batch_size: int) -> dict:
    if method == "integrated_gradients":
        return {"n_steps": IG_STEPS, "internal_batch_size": internal_batch_size}
    return {}


def ours_call(case: Case, method: str, internal_batch_size: int) -> Callable[[], torch.Tensor]:
    settings = method_settings(method, internal_batch_size)
    return lambda: attribute_classes(case.model, case.inputs, case.classes, method, **settings)


def original_call(case: Case, method: str) -> Callable[[], torch.Tensor]:
    return lambda: ORIGINAL[method](case.model, case.inputs, case.classes)


def check_same_maps(
    ours: torch.Tensor, original: torch.Tensor, what: str, tolerance: float = RELATIVE_TOLERANCE
) -> float:
    """Largest difference relative to the largest value; raises if above ``tolerance``."""
    if ours.shape != original.shape:
        raise AssertionError(f"{what}: ours has shape {tuple(ours.shape)}, the original {tuple(original.shape)}.")
    error = ((ours - original).abs().max() / original.abs().max()).item()
    if not error <= tolerance:
        raise AssertionError(f"{what}: maps differ by {error:.2e} (relative), above {tolerance:.0e}.")
    return error


#: Wall-clock time, or the CPU time of this process (all its threads): steadier on a loaded machine.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def seconds(function: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    start = clock()
    function()
    return clock() - start


def alternate(
    ours: Callable, original: Callable, warmup: int, repeats: int, clock: Callable[[], float]
) -> tuple[float, float]:
    """Median seconds of ``ours`` and ``original``, run alternately after ``warmup`` untimed rounds."""
    times: dict[str, list[float]] = {"ours": [], "original": []}
    for round_index in range(warmup + repeats):
        for key, function in (("ours", ours), ("original", original)):
            elapsed = seconds(function, clock)
            if round_index >= warmup:
                times[key].append(elapsed)
    return statistics.median(times["ours"]), statistics.median(times["original"])


@dataclass
class Row:
    method: str
    case: str
    repeats: int
    original_ms: float
    ours_ms: float
    error: float

    @property
    def ratio(self) -> float:
        return self.original_ms / self.ours_ms

    @property
    def passed(self) -> bool:
        return self.ratio >= TARGETS[self.method]


def time_case(case: Case, args: argparse.Namespace) -> list[Row]:
    rows = []
    for method in case.methods:
        ours, original = ours_call(case, method, args.ig_batch), original_call(case, method)
        what = f"{method} on {case.label}"
        # The equality check is the first warm-up round; slow cases get no other.
        reference = original()
        if method == "integrated_gradients" and args.ig_batch < IG_STEPS * len(case.inputs):
            # Same batches as the original (all steps in one pass) for the exact comparison.
            check_same_maps(ours_call(case, method, IG_STEPS * len(case.inputs))(), reference, what)
            error = check_same_maps(ours(), reference, what, CHUNKED_TOLERANCE)
        else:
            error = check_same_maps(ours(), reference, what)
        is_slow = method == "integrated_gradients" and type(case.model).__name__ == "EfficientNet"
        repeats, warmup = (args.ig_repeats, 0) if is_slow else (args.repeats, max(0, args.warmup - 1))
        ours_s, original_s = alternate(ours, original, warmup, repeats, CLOCKS[args.clock])
        rows.append(Row(method, case.label, repeats, original_s * 1e3, ours_s * 1e3, error))
        print(f"  {method:<22} {case.label:<32} done", flush=True)
    return rows


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'method':<22} {'model, input':<32} {'reps':>4} {'original ms':>12} {'ours ms':>10} {'ratio':>7} "
        f"{'target':>7} {'max rel diff':>12}  result"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.method:<22} {row.case:<32} {row.repeats:>4} {row.original_ms:>12.1f} {row.ours_ms:>10.1f} "
            f"{row.ratio:>6.2f}x {TARGETS[row.method]:>6.1f}x {row.error:>12.1e}  {'pass' if row.passed else 'FAIL'}"
        )


# --------------------------------------------------------------------------- peak memory of integrated gradients


def process_memory_kb(field: str) -> int:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process in kB, from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> None:
    """Reset this process's peak resident size (``VmHWM``) to the current one (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def ig_peak_increase_mb(
    model: nn.Module,
    inputs: torch.Tensor,
    classes: torch.Tensor,
    implementation: str,
    n_steps: int,
    internal_batch_size: int | None,
    threads: int,
) -> float:
    """Run in a fresh process: peak resident memory of one K-class IG call above the memory before it, in MB.

    A baseline forward pass first loads the kernels and the thread pool; then
    the peak ("high-water mark") is reset to the current resident size through
    ``/proc/self/clear_refs``, so earlier peaks (imports, model loading) cannot hide the call's own.
    """
    torch.set_num_threads(threads)
    with torch.no_grad():
        model(inputs)
    reset_peak_rss()
    before = process_memory_kb("VmRSS")
    if implementation == "ours":
        attribute_classes(
            model, inputs, classes, "integrated_gradients", n_steps=n_steps, internal_batch_size=internal_batch_size
        )
    else:
        from captum.attr import IntegratedGradients

        explainer = IntegratedGradients(model)
        for target in classes[0].tolist():
            explainer.attribute(inputs, target=target, n_steps=n_steps, internal_batch_size=internal_batch_size)
    return (process_memory_kb("VmHWM") - before) / 1024


def memory_available() -> bool:
    try:
        reset_peak_rss()
        process_memory_kb("VmHWM")
    except OSError:
        return False
    return True


def measure_memory(case: Case, internal_batch_size: int) -> None:
    print(f"\nPeak memory of integrated gradients (K = {NUM_CLASSES}) on {case.label}, each call in a fresh process")
    if not memory_available():
        print("  skipped: /proc/self/clear_refs and VmHWM (Linux) are needed to reset and read the peak.")
        return
    context = multiprocessing.get_context("spawn")
    # glibc keeps freed blocks for reuse, so the peak RSS of a loop over chunks creeps up with fragmentation
    # (~10 % over 16 chunks here). A fixed mmap threshold (read by each child at start) returns every large
    # tensor to the system when it is freed, so the peak tracks the tensors alive at once.
    saved_threshold = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    try:
        measure_memory_table(context, case, internal_batch_size)
    finally:
        if saved_threshold is None:
            del os.environ["MALLOC_MMAP_THRESHOLD_"]
        else:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = saved_threshold


def measure_memory_table(context, case: Case, internal_batch_size: int) -> None:
    implementations = (
        ("ours", f"var_utils, internal_batch_size={internal_batch_size}", internal_batch_size),
        ("captum", "Captum, one call per class, internal_batch_size=None", None),
    )
    print(f"{'implementation':<54} " + " ".join(f"{f'{s} steps':>11}" for s in MEMORY_STEPS) + f" {'512/32':>7}")
    for implementation, description, batch_size in implementations:
        peaks = []
        for n_steps in MEMORY_STEPS:
            with context.Pool(1) as pool:
                peaks.append(
                    pool.apply(
                        ig_peak_increase_mb,
                        (
                            case.model,
                            case.inputs,
                            case.classes,
                            implementation,
                            n_steps,
                            batch_size,
                            torch.get_num_threads(),
                        ),
                    )
                )
        ratio = peaks[-1] / peaks[0]
        if implementation == "ours":
            verdict = ("pass" if abs(ratio - 1) <= 0.10 else "FAIL") + " (target: within 10 %)"
        else:
            verdict = "(grows)"
        print(f"{description:<54} " + " ".join(f"{peak:>8.1f} MB" for peak in peaks) + f" {ratio:>6.2f}x  {verdict}")


# --------------------------------------------------------------------------- grid pointing game throughput


def measure_gpg(model: nn.Module, num_grids: int, internal_batch_size: int, clock: str) -> None:
    print(
        f"\nGrid pointing game runner on {num_grids} Fashion-MNIST 2x2 grids (base and VAR maps, batch_size=16, "
        f"one run per method, {clock} clock)"
    )
    try:
        from var_utils.gpg import evaluate_grid_pointing_game, fashion_mnist_grids
    except ImportError as error:
        print(f"  skipped: var_utils.gpg.evaluate_grid_pointing_game is not available ({error}).")
        return
    grids = fashion_mnist_grids(n_grids=num_grids)
    for method in TARGETS:
        settings = method_settings(method, internal_batch_size)
        elapsed = seconds(
            lambda: evaluate_grid_pointing_game(model, grids, {method: settings}, progress=False), CLOCKS[clock]
        )
        print(f"  {method:<22} {num_grids / elapsed:>8.1f} grids/s")


# --------------------------------------------------------------------------- main


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per method (default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds before them (default 2)")
    parser.add_argument(
        "--ig-repeats",
        type=int,
        default=3,
        help="timed rounds of integrated gradients on EfficientNet-Lite0 (default 3); the check "
        "run is its only warm-up",
    )
    parser.add_argument("--ig-batch", type=int, default=8, help="our internal_batch_size for integrated gradients")
    parser.add_argument("--grid-batch", type=int, default=16, help="grids in the batched Fashion-MNIST case")
    parser.add_argument("--gpg-grids", type=int, default=32, help="grids for the grid pointing game throughput")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="wall-clock time, or this process's CPU time (steadier on a shared machine with --threads 1)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 warm-up, 2 timed rounds, smaller batches")
    parser.add_argument("--skip-memory", action="store_true", help="skip the peak memory measurement")
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.repeats, args.ig_repeats, args.grid_batch, args.gpg_grids = 1, 2, 1, 4, 16
    for name in ("repeats", "ig_repeats", "ig_batch", "grid_batch", "gpg_grids"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(
        f"torch {torch.__version__}, torch threads: {torch.get_num_threads()}, CPU: {cpu_model()} "
        f"({os.cpu_count()} logical cores), load average {load}"
    )
    print(
        f"K = {NUM_CLASSES} classes; integrated gradients: {IG_STEPS} steps, ours with internal_batch_size="
        f"{args.ig_batch}; {args.warmup} warm-up (the equality check included) + {args.repeats} timed rounds, "
        f"alternating ours / original; {args.clock} clock, medians\n"
    )

    fashion, weights_note = fashion_model()
    print(f"Fashion-MNIST CNN: {weights_note}")
    cases = [lite0_case(), *fashion_cases(fashion, args.grid_batch)]
    rows = [row for case in cases for row in time_case(case, args)]
    print()
    print_table(rows)
    if args.ig_batch < IG_STEPS:
        print(
            f"\nintegrated_gradients: ours with internal_batch_size={IG_STEPS} (the original's batches) matches the "
            f"original to {RELATIVE_TOLERANCE:.0e}; timed with {args.ig_batch}, it matches to "
            f"{CHUNKED_TOLERANCE:.0e} (float32 kernels depend on the batch size)."
        )
    failed = [f"{row.method} on {row.case}" for row in rows if not row.passed]
    missed = f"; missed: {', '.join(failed)}" if failed else ""
    print(f"\n{len(rows) - len(failed)}/{len(rows)} speed-up targets met{missed}")

    if not args.skip_memory:
        measure_memory(cases[1], args.ig_batch)
    measure_gpg(fashion, args.gpg_grids, args.ig_batch, args.clock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
