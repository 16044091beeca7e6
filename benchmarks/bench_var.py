"""Benchmark: VAR maps from ``var_utils`` against the original project's code path.

Two workloads, each with K = 4 competing classes:

* one target: the VAR map of one class of the set. The ORIGINAL wrapper makes K
  per-class attribution calls (Captum objects, or its own integrated gradients)
  and then refines; OURS is ``attribute_classes`` (shared passes) plus ``refine``.
* all K targets, as the grid pointing game needs. The original wrapper is called
  once per target and recomputes all K base maps each time (K * K per-class
  calls); ours is one ``attribute_classes`` plus ``refine_all``.

Before any timing counts, the base maps and the refinement of both paths are
checked against each other. Ours and the original then run alternately in one
process and the medians are reported. Also measured: the peak memory of
integrated gradients as the number of steps grows, each call in a fresh process.

Usage::

    python benchmarks/bench_var.py --clock cpu --threads 1  # steady on a shared machine
    python benchmarks/bench_var.py --threads 2              # wall clock, 2 threads
    python benchmarks/bench_var.py --quick                  # smoke run, under a minute
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from var_utils import attribute_classes, get_method, load_model, load_photo, refine, refine_all

# Modules that move in the package reorganisation; only these lines change there.
from var_utils.datasets.fashion_mnist import load_fashion_mnist
from var_utils.datasets.grids import compose_grid
from var_utils.methods import default_gradcam_layer
from var_utils.models import FashionMNISTCNN

NUM_CLASSES = 4
TAU = 0.01
#: The original's softmax(10 * |A|) over the classes, i.e. temperature 0.1 (our default).
ORIGINAL_SOFTMAX_SCALE = 10.0
IG_STEPS = 128
ORIGINAL_IG_BATCH = 64
METHODS = ("input_x_gradient", "guided_backprop", "gradcam", "integrated_gradients", "lrp")
#: Largest difference between the two paths' maps, relative to the largest value.
TOLERANCE = 1e-4
#: Integrated gradients: torch.linspace and our float64 nodes round 8 of the 128 points differently in float32
#: (by one ulp). The gradients along the path reach 18 times the map's largest value, and this moves Lite0's maps
#: by 1.7e-4; with the same float32 points the two agree to 4e-7.
IG_TOLERANCE = 1e-3
#: M within this of the threshold 1/K + tau counts as a tie: 10 * |A| and |A| / 0.1 round differently.
TIE_WIDTH = 1e-6
MEMORY_STEPS = (64, 128, 512)

T = TypeVar("T")
PerClass = Callable[[torch.Tensor, int], torch.Tensor]


# --------------------------------------------------------------------------- the original code path


def original_integrated_gradients(model: nn.Module, n_steps: int = IG_STEPS) -> PerClass:
    """The original's own integrated gradients for one class, zero baseline.

    Parameters
    ----------
    model : nn.Module
        The classifier.
    n_steps : int
        Evenly spaced points from the baseline to the input, ends included.

    Returns
    -------
    PerClass
        ``(image, target) -> map``: the mean input gradient over the points,
        evaluated ``ORIGINAL_IG_BATCH`` points at a time, times ``image - baseline``.
    """

    def attribute(image: torch.Tensor, target: int) -> torch.Tensor:
        baseline = torch.zeros_like(image)
        alphas = torch.linspace(0, 1, n_steps).view(-1, 1, 1, 1)
        gradients = []
        for start in range(0, n_steps, ORIGINAL_IG_BATCH):
            points = baseline + alphas[start : start + ORIGINAL_IG_BATCH] * (image - baseline)
            points.requires_grad_(True)
            scores = model(points)[:, target]
            gradients.append(torch.autograd.grad(scores.sum(), points)[0])
        return torch.cat(gradients).mean(dim=0, keepdim=True) * (image - baseline)

    return attribute


def original_gradcam(model: nn.Module, layer: nn.Module) -> PerClass:
    """Captum's signed ``LayerGradCam`` at ``layer``, upsampled bilinearly to the input size."""
    from captum.attr import LayerAttribution, LayerGradCam

    explainer = LayerGradCam(model, layer)

    def attribute(image: torch.Tensor, target: int) -> torch.Tensor:
        cam = explainer.attribute(image, target=target)
        return LayerAttribution.interpolate(cam, tuple(image.shape[2:]), interpolate_mode="bilinear")

    return attribute


def original_per_class(method: str, model: nn.Module) -> PerClass:
    """The base method the original wrapper calls once per class, built once as in its constructor."""
    from captum.attr import LRP, GuidedBackprop, InputXGradient

    if method == "integrated_gradients":
        return original_integrated_gradients(model)
    if method == "gradcam":
        return original_gradcam(model, default_gradcam_layer(model))
    explainer = {"input_x_gradient": InputXGradient, "guided_backprop": GuidedBackprop, "lrp": LRP}[method](model)
    return lambda image, target: explainer.attribute(image, target=target)


@dataclass
class OriginalWrapper:
    """The original ``ClassSpecificAttributionWrapper``: every call recomputes all K base maps.

    Attributes
    ----------
    per_class : PerClass
        The base method, called once per class.
    class_indices : list of int
        The K competing classes.
    tau : float
        Threshold on ``M - 1/K``.
    """

    per_class: PerClass
    class_indices: list[int]
    tau: float = TAU

    def base_maps(self, image: torch.Tensor) -> torch.Tensor:
        """(K, 1, C', H, W): one per-class call for each class of the set."""
        return torch.stack([self.per_class(image, index).detach() for index in self.class_indices])

    def attribute(self, image: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
        """VAR map (1, C', H, W) of ``target`` and the base maps it came from (kept for the checks)."""
        maps = self.base_maps(image)
        weights = torch.softmax(ORIGINAL_SOFTMAX_SCALE * maps.abs(), dim=0)
        k = self.class_indices.index(target)
        keep = weights[k] - 1.0 / len(self.class_indices) > self.tau
        return maps[k] * weights[k] * keep, maps


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One image (1, C, H, W) and its K competing classes."""

    name: str
    description: str
    model: nn.Module
    image: torch.Tensor
    classes: list[int]


def lite0_case() -> Case:
    """EfficientNet-Lite0 on the ``chelsea`` photo, its top 4 classes competing."""
    model = load_model("efficientnet_lite0")
    image = model.preprocess(load_photo("chelsea"))
    with torch.no_grad():
        classes = model(image).topk(NUM_CLASSES, dim=1).indices[0].tolist()
    return Case("efficientnet_lite0", "photo 'chelsea', 1x3x224x224, top-4 classes", model, image, classes)


def fashion_model() -> tuple[nn.Module, str]:
    """The trained Fashion-MNIST CNN, or random weights (same timings) when the weights file is missing."""
    try:
        return load_model("fashion_mnist_cnn"), "trained weights"
    except FileNotFoundError:
        return (
            FashionMNISTCNN().eval(),
            "random weights: var_utils/models/data/fashion_mnist_cnn.safetensors is missing",
        )


def fashion_case(seed: int = 0) -> Case:
    """A 2x2 grid of Fashion-MNIST test images of four distinct classes; the cells' labels compete."""
    model, weights = fashion_model()
    images, labels = load_fashion_mnist()
    rng = np.random.default_rng(seed)
    classes = rng.choice(10, NUM_CLASSES, replace=False).tolist()
    cells = [rng.choice(torch.nonzero(labels == c).flatten().numpy()) for c in classes]
    grid = compose_grid(images[cells]).unsqueeze(0)
    return Case("fashion_mnist_cnn", f"one 2x2 grid, 1x1x56x56, the cells' labels ({weights})", model, grid, classes)


def captum_lrp_problem(case: Case) -> str | None:
    """Why Captum's LRP cannot explain the case's model, or None when it runs."""
    from captum.attr import LRP

    try:
        LRP(case.model).attribute(case.image, target=case.classes[0])
    except (TypeError, RuntimeError, AssertionError) as error:
        first_sentence = " ".join(str(error).split()).split(". ")[0]
        return f"{type(error).__name__}: {first_sentence}"
    return None


# --------------------------------------------------------------------------- one method on one case


@dataclass
class Contest:
    """Ours against the original for one method on one case.

    Attributes
    ----------
    case : Case
        Model, image and class set.
    method : str
        A name from ``METHODS``.
    ours : AttributionMethod
        Our method, from ``get_method``.
    original : OriginalWrapper
        The original wrapper around its per-class base method.
    """

    case: Case
    method: str
    ours: object
    original: OriginalWrapper

    @property
    def class_tensor(self) -> torch.Tensor:
        """The class set as a (1, K) tensor, as ``attribute_classes`` takes it."""
        return torch.tensor([self.case.classes])


def ours_ig_settings(n_steps: int, ig_batch: int | None) -> dict:
    """Our integrated gradients on the original's points: ``n_steps`` evenly spaced, ends included.

    Our IG has no equal-weight rule over those points; the trapezoid rule uses
    them with other weights (see :func:`to_original_rule`).
    """
    settings = {"n_steps": n_steps, "rule": "riemann_trapezoid"}
    return settings if ig_batch is None else {**settings, "internal_batch_size": ig_batch}


def ours_ig_chunk(ig_batch: int | None) -> int:
    """Our IG's ``internal_batch_size``: ``ig_batch``, or the library's default."""
    return get_method("integrated_gradients", **ours_ig_settings(IG_STEPS, ig_batch)).internal_batch_size


def make_contest(case: Case, method: str, ig_batch: int | None) -> Contest:
    """Build both sides once, outside any timing (the original builds its Captum object in its constructor)."""
    settings = ours_ig_settings(IG_STEPS, ig_batch) if method == "integrated_gradients" else {}
    original = OriginalWrapper(original_per_class(method, case.model), case.classes)
    return Contest(case, method, get_method(method, **settings), original)


def ours_base_maps(contest: Contest) -> torch.Tensor:
    """(1, K, C', H, W) base maps from shared passes."""
    return attribute_classes(contest.case.model, contest.case.image, contest.class_tensor, contest.ours)


def ours_one_target(contest: Contest) -> torch.Tensor:
    """VAR map of the first class of the set."""
    return refine(ours_base_maps(contest), 0, tau=TAU, class_dim=1)


def ours_all_targets(contest: Contest) -> tuple[torch.Tensor, torch.Tensor]:
    """VAR maps of every class of the set, and the base maps (kept for the checks)."""
    maps = ours_base_maps(contest)
    return refine_all(maps, tau=TAU, class_dim=1), maps


@dataclass
class Round:
    """Times (seconds) and outputs of one round: ours one target, the original wrapper per target, ours all."""

    ours_one: float
    original_calls: list[float]
    ours_all: float
    ours_var: torch.Tensor
    ours_maps: torch.Tensor
    original_var: torch.Tensor
    original_maps: torch.Tensor


#: Wall-clock time, or the CPU time of this process (all its threads): steadier on a loaded machine.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(function: Callable[[], T], clock: Callable[[], float]) -> tuple[float, T]:
    """Seconds ``function`` took on ``clock``, and its result."""
    start = clock()
    result = function()
    return clock() - start, result


def run_round(contest: Contest, clock: Callable[[], float]) -> Round:
    """One round, alternating: ours (one target), the original (its wrapper once per target), ours (all targets).

    The original's all-targets workload is its K wrapper calls, each of which
    is also one sample of its one-target workload.
    """
    ours_one, _ = timed(lambda: ours_one_target(contest), clock)
    calls = [
        timed(lambda t=target: contest.original.attribute(contest.case.image, t), clock)
        for target in contest.case.classes
    ]
    ours_all, (ours_var, ours_maps) = timed(lambda: ours_all_targets(contest), clock)
    times, outputs = zip(*calls)
    original_var = torch.stack([var for var, _ in outputs])
    return Round(ours_one, list(times), ours_all, ours_var, ours_maps, original_var, outputs[0][1])


# --------------------------------------------------------------------------- checks


def relative_difference(ours: torch.Tensor, original: torch.Tensor) -> float:
    """Largest absolute difference relative to the original's largest absolute value."""
    if ours.shape != original.shape:
        raise AssertionError(f"ours has shape {tuple(ours.shape)}, the original {tuple(original.shape)}.")
    return ((ours - original).abs().max() / original.abs().max()).item()


def require(error: float, tolerance: float, what: str) -> None:
    """Stop the benchmark when the two paths disagree."""
    if not error <= tolerance:
        raise AssertionError(f"{what}: maps differ by {error:.2e} of the largest value, above {tolerance:.0e}.")


def to_original_rule(contest: Contest, maps: torch.Tensor) -> torch.Tensor:
    """Our trapezoid-rule IG maps rewritten to the original's equal weights over the same points.

    With ``g_i`` the gradients at the n points and a zero baseline, the
    trapezoid rule gives ``T = x (sum g_i - (g_0 + g_n-1) / 2) / (n - 1)`` and
    the original ``O = x sum g_i / n``, so ``O = (n - 1) / n T + x (g_0 + g_n-1) / (2 n)``.
    """
    case, classes = contest.case, contest.class_tensor
    at_input = attribute_classes(case.model, case.image, classes, "input_x_gradient")
    gradient_at_baseline = attribute_classes(case.model, torch.zeros_like(case.image), classes, "saliency", abs=False)
    endpoints = at_input + case.image.unsqueeze(1) * gradient_at_baseline
    return (IG_STEPS - 1) / IG_STEPS * maps + endpoints / (2 * IG_STEPS)


def check_base(contest: Contest, ours_maps: torch.Tensor, original_maps: torch.Tensor) -> tuple[float | None, str]:
    """Compare the base maps; returns the difference (None when not comparable) and a note."""
    ours, original = ours_maps[0], original_maps[:, 0]
    what = f"{contest.method} on {contest.case.name}"
    if contest.method == "lrp":
        return None, "maps not compared: the original runs Captum's LRP (epsilon rule), ours zennit's EpsilonPlusFlat"
    if contest.method == "integrated_gradients":
        error = relative_difference(to_original_rule(contest, ours_maps)[0], original)
        require(error, IG_TOLERANCE, what)
        return error, (
            f"ours uses the trapezoid rule on the original's {IG_STEPS} points; the base check rewrites it to the "
            f"original's equal weights (exact algebra) and allows {IG_TOLERANCE:.0e} for float32 rounding of the "
            f"points; unrewritten, the base maps differ by {relative_difference(ours, original):.1e}"
        )
    error = relative_difference(ours, original)
    if contest.method == "guided_backprop" and error > TOLERANCE:
        return None, guided_note(contest, original)
    require(error, TOLERANCE, what)
    return error, ""


def guided_note(contest: Contest, original: torch.Tensor) -> str:
    """Explain (after checking it) why Captum's guided backprop differs from ours: it is the plain gradient here."""
    case = contest.case
    plain = attribute_classes(case.model, case.image, contest.class_tensor, "saliency", abs=False)[0]
    error = relative_difference(plain, original)
    require(error, TOLERANCE, f"guided_backprop on {case.name}: neither ours nor the plain gradient")
    relus = sum(isinstance(module, nn.ReLU) for module in case.model.modules())
    return (
        f"maps differ by design: Captum's GuidedBackprop only changes nn.ReLU modules and this model has {relus}, "
        f"so the original's maps are the plain gradient (equal to our saliency with abs=False to {error:.1e}); "
        "ours applies the guided rule at every ReLU-family call (ReLU6 here)"
    )


def check_refine(original_maps: torch.Tensor, original_var: torch.Tensor) -> float:
    """Our ``refine_all`` on the original's base maps against the original wrapper's VAR maps.

    Elements whose M lies within ``TIE_WIDTH`` of the threshold are left out.
    """
    ours = refine_all(original_maps, tau=TAU, class_dim=0)
    weights = torch.softmax(ORIGINAL_SOFTMAX_SCALE * original_maps.abs(), dim=0)
    tie = (weights - 1.0 / NUM_CLASSES - TAU).abs() <= TIE_WIDTH
    error = relative_difference(ours.masked_fill(tie, 0), original_var.masked_fill(tie, 0))
    require(error, TOLERANCE, "refinement")
    return error


def flipped(ours_var: torch.Tensor, original_var: torch.Tensor) -> int:
    """Elements kept by one path's VAR map and dropped by the other's (the timed outputs)."""
    return ((ours_var[0] != 0) != (original_var[:, 0] != 0)).sum().item()


# --------------------------------------------------------------------------- timing


@dataclass
class Result:
    """Medians (ms) of both workloads for one method on one case, with the checks."""

    case: str
    method: str
    rounds: int
    one_original: float
    one_ours: float
    all_original: float
    all_ours: float
    base: float | None
    refined: float
    flips: int
    note: str = ""


@dataclass
class Settings:
    """Rounds and clock of a run."""

    warmup: int
    repeats: int
    clock: Callable[[], float]


def measure(contest: Contest, settings: Settings) -> Result:
    """Check the first round's maps, then take medians over the timed rounds.

    The first round is the check and the first warm-up round; with no warm-up
    (``settings.warmup == 0``) it is also the first timed round.
    """
    first = run_round(contest, settings.clock)
    base, note = check_base(contest, first.ours_maps, first.original_maps)
    refined = check_refine(first.original_maps, first.original_var)
    flips = flipped(first.ours_var, first.original_var)
    for _ in range(settings.warmup - 1):
        run_round(contest, settings.clock)
    rounds = [first] if settings.warmup == 0 else []
    rounds += [run_round(contest, settings.clock) for _ in range(settings.repeats - len(rounds))]
    return Result(
        contest.case.name,
        contest.method,
        len(rounds),
        1e3 * statistics.median(s for r in rounds for s in r.original_calls),
        1e3 * statistics.median(r.ours_one for r in rounds),
        1e3 * statistics.median(sum(r.original_calls) for r in rounds),
        1e3 * statistics.median(r.ours_all for r in rounds),
        base,
        refined,
        flips,
        note,
    )


def contest_settings(contest: Contest, args: argparse.Namespace) -> Settings:
    """Integrated gradients on Lite0 takes minutes per round: it gets ``--ig-repeats`` rounds and no warm-up."""
    clock = CLOCKS[args.clock]
    if contest.method == "integrated_gradients" and contest.case.name == "efficientnet_lite0":
        return Settings(0, args.ig_repeats, clock)
    return Settings(args.warmup, args.repeats, clock)


def contests(case: Case, args: argparse.Namespace) -> tuple[list[Contest], list[str]]:
    """The methods to time on ``case``, and a line for each one left out."""
    skipped, chosen = [], []
    for method in METHODS:
        if method == "integrated_gradients" and case.name == "efficientnet_lite0" and args.ig_repeats == 0:
            skipped.append(f"{method} on {case.name}: left out (--ig-repeats 0; --quick sets it)")
        elif method == "lrp" and (problem := captum_lrp_problem(case)):
            skipped.append(f"{method} on {case.name}: left out, Captum's LRP does not run on this model ({problem})")
        else:
            chosen.append(make_contest(case, method, args.ig_batch))
    return chosen, skipped


# --------------------------------------------------------------------------- output


def ratio(original: float, ours: float) -> str:
    """Original time over ours, e.g. ``3.90x``."""
    return f"{original / ours:.2f}x"


def check_cells(result: Result) -> tuple[str, str, str]:
    """The check columns: base maps, refinement and flipped elements."""
    base = "n/a" if result.base is None else f"{result.base:.1e}"
    return base, f"{result.refined:.1e}", str(result.flips)


#: Column titles of the plain-text table.
COLUMNS = (
    "model", "method", "rounds", "original", "ours", "ratio", "original", "ours", "ratio", "base", "refine", "flipped",
    "note",
)  # fmt: skip


def print_table(results: list[Result]) -> None:
    """The plain-text table, with numbered notes under it."""
    widths = "{:<19} {:<21} {:>6}  {:>10} {:>9} {:>7}  {:>10} {:>9} {:>7}  {:>8} {:>8} {:>7}  {}"
    groups = f"{'':<48}{'one target (ms)':^29}  {f'all {NUM_CLASSES} targets (ms)':^29}  {'checks':^26}"
    header = widths.format(*COLUMNS)
    print(groups)
    print(header)
    print("-" * len(header))
    notes = []
    for result in results:
        marker = ""
        if result.note:
            notes.append(result.note)
            marker = f"[{len(notes)}]"
        print(
            widths.format(
                result.case,
                result.method,
                result.rounds,
                f"{result.one_original:.1f}",
                f"{result.one_ours:.1f}",
                ratio(result.one_original, result.one_ours),
                f"{result.all_original:.1f}",
                f"{result.all_ours:.1f}",
                ratio(result.all_original, result.all_ours),
                *check_cells(result),
                marker,
            )
        )
    for number, note in enumerate(notes, start=1):
        print(f"[{number}] {note}")


def print_markdown(results: list[Result]) -> None:
    """The same table in markdown, for the README."""
    print(
        f"| model | method | one target: original ms | ours ms | ratio | all {NUM_CLASSES} targets: original ms "
        "| ours ms | ratio |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r.case} | {r.method} | {r.one_original:.1f} | {r.one_ours:.1f} | {ratio(r.one_original, r.one_ours)} "
            f"| {r.all_original:.1f} | {r.all_ours:.1f} | {ratio(r.all_original, r.all_ours)} |"
        )


# --------------------------------------------------------------------------- peak memory of integrated gradients


def process_memory_kb(name: str) -> int:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process in kB, from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise OSError(f"{name} not in /proc/self/status")


def reset_peak_rss() -> None:
    """Reset this process's peak resident size (``VmHWM``) to the current one (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def ig_peak_increase_mb(case: Case, implementation: str, n_steps: int, ig_batch: int | None, threads: int) -> float:
    """In a fresh process: peak resident memory of the K base maps of integrated gradients above the memory before.

    A forward pass first loads the kernels and the thread pool; then the peak
    is reset to the current resident size, so earlier peaks (imports, loading)
    cannot hide the call's own.
    """
    torch.set_num_threads(threads)
    with torch.no_grad():
        case.model(case.image)
    reset_peak_rss()
    before = process_memory_kb("VmRSS")
    if implementation == "ours":
        settings = ours_ig_settings(n_steps, ig_batch)
        attribute_classes(case.model, case.image, case.classes, "integrated_gradients", **settings)
    else:
        OriginalWrapper(original_integrated_gradients(case.model, n_steps), case.classes).base_maps(case.image)
    return (process_memory_kb("VmHWM") - before) / 1024


def memory_available() -> bool:
    """Whether the peak resident size can be reset and read (Linux)."""
    try:
        reset_peak_rss()
        process_memory_kb("VmHWM")
    except OSError:
        return False
    return True


def measure_memory(case: Case, ig_batch: int | None) -> None:
    """Peak memory of ours and the original's integrated gradients at ``MEMORY_STEPS``, one fresh process each."""
    print(
        f"\nPeak memory of the {NUM_CLASSES} base maps of integrated gradients on {case.name} ({case.description}), "
        "each call in a fresh process"
    )
    if not memory_available():
        print("  skipped: /proc/self/clear_refs and VmHWM (Linux) are needed to reset and read the peak.")
        return
    # glibc keeps freed blocks for reuse, so a loop over chunks creeps up with fragmentation. A fixed mmap
    # threshold (read by each child at start) returns every large tensor to the system when it is freed.
    saved = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    try:
        print_memory_table(case, ig_batch)
    finally:
        if saved is None:
            del os.environ["MALLOC_MMAP_THRESHOLD_"]
        else:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = saved


def print_memory_table(case: Case, ig_batch: int | None) -> None:
    """One row per implementation: the peak increase at each number of steps and the last over the first."""
    context = multiprocessing.get_context("spawn")
    rows = (
        ("ours", f"ours, K classes per chunk of {ours_ig_chunk(ig_batch)} points"),
        ("original", f"original, one class at a time, batches of {ORIGINAL_IG_BATCH} points"),
    )
    steps = " ".join(f"{f'{s} steps':>11}" for s in MEMORY_STEPS)
    print(f"{'implementation':<52} {steps} {f'{MEMORY_STEPS[-1]}/{MEMORY_STEPS[0]}':>8}")
    for implementation, label in rows:
        peaks = []
        for n_steps in MEMORY_STEPS:
            with context.Pool(1) as pool:
                arguments = (case, implementation, n_steps, ig_batch, torch.get_num_threads())
                peaks.append(pool.apply(ig_peak_increase_mb, arguments))
        cells = " ".join(f"{peak:>8.1f} MB" for peak in peaks)
        print(f"{label:<52} {cells} {peaks[-1] / peaks[0]:>7.2f}x")


# --------------------------------------------------------------------------- main


def cpu_model() -> str:
    """The CPU's model name."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def print_header(args: argparse.Namespace) -> None:
    """Machine, versions and settings of the run."""
    import captum

    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores); torch threads: {torch.get_num_threads()}")
    print(f"Python {platform.python_version()}, torch {torch.__version__}, captum {captum.__version__}")
    print(f"load average at start: {load_average()}")
    print(
        f"clock: {args.clock}; rounds: {args.warmup} untimed (the first one checks the maps) + {args.repeats} timed, "
        f"integrated gradients on Lite0: {args.ig_repeats} (the check round timed too); ours and the original "
        "alternate; medians"
    )
    print(
        f"K = {NUM_CLASSES}, tau = {TAU}, softmax(10 |A|); integrated gradients: {IG_STEPS} steps, original in "
        f"batches of {ORIGINAL_IG_BATCH}, ours (trapezoid rule) in chunks of {ours_ig_chunk(args.ig_batch)}"
    )
    print(
        f"checks: base = base maps, refine = our refine_all on the original's base maps, both as the largest "
        f"difference over the largest value (limit {TOLERANCE:.0e}, integrated gradients {IG_TOLERANCE:.0e}); "
        "flipped = elements one path's VAR map keeps and the other's drops\n"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per method (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first, the check included (default 1)")
    parser.add_argument(
        "--ig-repeats",
        type=int,
        default=1,
        help="rounds of integrated gradients on Lite0, minutes each (default 1; 0 leaves it out)",
    )
    parser.add_argument("--ig-batch", type=int, default=None, help="our internal_batch_size (default: the library's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="wall-clock time, or this process's CPU time (steadier on a shared machine, best with --threads 1)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 timed rounds, no IG on Lite0, no memory")
    parser.add_argument("--skip-memory", action="store_true", help="leave out the peak memory measurement")
    parser.add_argument("--markdown", action="store_true", help="also print the table in markdown")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.ig_repeats, args.skip_memory = 2, 0, True
    for name, least in (("repeats", 1), ("warmup", 1), ("ig_repeats", 0), ("ig_batch", 1), ("threads", 1)):
        value = getattr(args, name)
        if value is not None and value < least:
            parser.error(f"--{name.replace('_', '-')} must be >= {least}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning, module="captum")
    print_header(args)
    cases = [lite0_case(), fashion_case()]
    results, skipped = [], []
    for case in cases:
        print(f"{case.name}: {case.description}, classes {case.classes}")
        chosen, left_out = contests(case, args)
        skipped += left_out
        for contest in chosen:
            start = time.perf_counter()
            results.append(measure(contest, contest_settings(contest, args)))
            print(f"  {contest.method:<21} done in {time.perf_counter() - start:.0f} s", flush=True)
    print()
    print_table(results)
    for line in skipped:
        print(f"- {line}")
    if args.markdown:
        print()
        print_markdown(results)
    print(f"\nload average at the end: {load_average()}")
    if not args.skip_memory:
        measure_memory(cases[1], args.ig_batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
