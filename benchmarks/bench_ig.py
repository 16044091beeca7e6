"""Benchmark: integrated gradients at equal accuracy, ours against the original project's code path.

The original computes integrated gradients one target class per call: 128 evenly
spaced points from the zero baseline to the image, ends included, input
gradients in batches of 64 with ``torch.autograd.grad``, and their plain mean
times ``x − baseline``. Ours is one ``attribute_classes`` call for all classes
of a grid, each chunk of path points sharing one forward pass, with the rule and
numbers of steps that ``benchmarks/ig_accuracy.py`` found to reach the original's
completeness error (defaults: ``riemann_graded``, LITE0_STEPS and FASHION_STEPS).

Two workloads per grid, timed with ``time.perf_counter`` (medians):

* all K = 4 targets (the grid pointing game): the original called once per
  label, against one call of ours for the four labels;
* one target: one call of the original, against one call of ours for that class.

Usage::

    python benchmarks/bench_ig.py                 # under 2 minutes on one thread
    python benchmarks/bench_ig.py --quick         # Fashion-MNIST only, under a minute
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from var_utils import attribute_classes, load_model
from var_utils.evaluation.gpg import GPG_INTEGRATED_GRADIENTS, fashion_mnist_grids, photo_grids
from var_utils.methods import IntegratedGradients, attribution_mode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_var import IG_STEPS as ORIGINAL_STEPS
from bench_var import ORIGINAL_IG_BATCH as ORIGINAL_BATCH
from bench_var import original_integrated_gradients as original_path

#: Largest difference between ours with the original's rule and the original's maps, relative to their largest value.
TOLERANCE = 1e-4
#: Our steps at the original's median accuracy (benchmarks/ig_accuracy.py): the grid pointing game's defaults.
LITE0_STEPS = GPG_INTEGRATED_GRADIENTS["photos"]["n_steps"]
FASHION_STEPS = GPG_INTEGRATED_GRADIENTS["fashion_mnist"]["n_steps"]


def original_integrated_gradients(
    model: nn.Module, image: torch.Tensor, target: int, n_steps: int = ORIGINAL_STEPS
) -> torch.Tensor:
    """The original's integrated gradients of one class, zero baseline (``bench_var.py``'s code path).

    Parameters
    ----------
    model : nn.Module
        The classifier as loaded (eval mode, parameters requiring grad, as the original uses it).
    image : torch.Tensor
        (1, C, H, W) normalised image.
    target : int
        The class.
    n_steps : int, default 128
        Evenly spaced points, both ends included (the original's 128; fewer only to warm up).

    Returns
    -------
    torch.Tensor
        (1, C, H, W): the mean input gradient over ``linspace(0, 1, n_steps)`` times ``image − baseline``.
    """
    return original_path(model, n_steps)(image, target)


def timed(call: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def one_class(model: nn.Module, image: torch.Tensor, target: int, method: IntegratedGradients) -> torch.Tensor:
    """Our map of one class (``attribute_classes`` asks for at least two classes to compete)."""
    with attribution_mode(model):
        return method.attribute(model, image, torch.tensor([[target]]))


def check_original_path(model: nn.Module, image: torch.Tensor, labels: list[int]) -> float:
    """Ours with the original's rule and steps against the original's maps; the relative difference."""
    ours = attribute_classes(model, image, labels, IntegratedGradients(ORIGINAL_STEPS, rule="riemann_endpoints"))
    original = torch.stack([original_integrated_gradients(model, image, c) for c in labels], dim=1)
    difference = ((ours - original).abs().max() / original.abs().max()).item()
    if not difference <= TOLERANCE:
        raise AssertionError(f"ours with the original's rule differs from the original by {difference:.1e}")
    return difference


def bench_model(
    title: str,
    model: nn.Module,
    grids: list[tuple[torch.Tensor, list[int]]],
    method: IntegratedGradients,
    repeats: int,
    original_rounds: int,
) -> dict[str, float]:
    """Median seconds of both workloads on ``grids``, both paths; prints them.

    Every grid gets one untimed warm-up of each path (a call of ours, and one
    batch of the original's points), ``original_rounds`` timed rounds of the original (its K
    calls, each also one sample of the one-target workload), and ``repeats``
    timed calls of ours for K classes and for one class.
    """
    original_all, original_one, ours_all, ours_one = [], [], [], []
    for image, labels in grids:
        attribute_classes(model, image, labels, method)
        original_integrated_gradients(model, image, labels[0], n_steps=ORIGINAL_BATCH)
        for _ in range(original_rounds):
            calls = [timed(lambda x=image, c=c: original_integrated_gradients(model, x, c)) for c in labels]
            original_one += calls
            original_all.append(sum(calls))
        for _ in range(repeats):
            ours_all.append(timed(lambda x=image, k=labels: attribute_classes(model, x, k, method)))
            ours_one.append(timed(lambda x=image, c=labels[0]: one_class(model, x, c, method)))
    result = {
        "original_all": statistics.median(original_all),
        "ours_all": statistics.median(ours_all),
        "original_one": statistics.median(original_one),
        "ours_one": statistics.median(ours_one),
    }
    print(
        f"{title}: all {len(grids[0][1])} targets: original {result['original_all']:.3f} s, ours "
        f"{result['ours_all']:.3f} s, {result['original_all'] / result['ours_all']:.2f}x; one target: original "
        f"{result['original_one']:.3f} s, ours {result['ours_one']:.3f} s, "
        f"{result['original_one'] / result['ours_one']:.2f}x  "
        f"({len(original_all)} original rounds, {len(ours_all)} calls of ours)",
        flush=True,
    )
    return result


def main() -> None:
    """Parse the options, check the original's code path, time both workloads."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rule", default="riemann_graded", help="our rule (default riemann_graded)")
    parser.add_argument("--lite0-steps", type=int, default=LITE0_STEPS, help=f"our steps on Lite0 ({LITE0_STEPS})")
    parser.add_argument(
        "--fashion-steps", type=int, default=FASHION_STEPS, help=f"our steps on the CNN ({FASHION_STEPS})"
    )
    parser.add_argument("--chunk", type=int, default=16, help="our internal_batch_size (default 16, the library's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--lite0-grids", type=int, default=1, help="Quad-Photos grids on Lite0 (0 leaves it out)")
    parser.add_argument("--fashion-grids", type=int, default=4, help="Fashion-MNIST grids")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of ours per grid and workload")
    parser.add_argument("--original-rounds", type=int, default=1, help="timed rounds of the original per grid")
    parser.add_argument("--quick", action="store_true", help="Fashion-MNIST only, 2 grids")
    args = parser.parse_args()
    if args.quick:
        args.lite0_grids, args.fashion_grids = 0, 2
    for name in ("lite0_steps", "fashion_steps", "chunk", "threads", "fashion_grids", "repeats", "original_rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    torch.set_num_threads(args.threads)
    lite0_method = IntegratedGradients(n_steps=args.lite0_steps, rule=args.rule, internal_batch_size=args.chunk)
    fashion_method = IntegratedGradients(n_steps=args.fashion_steps, rule=args.rule, internal_batch_size=args.chunk)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, torch "
        f"{torch.__version__}, {torch.get_num_threads()} thread(s), Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f}\n"
        f"original: {ORIGINAL_STEPS} evenly spaced steps, batches of {ORIGINAL_BATCH}, one call per target; "
        f"ours: one call for all classes, {args.rule}, {args.lite0_steps} steps on Lite0 and {args.fashion_steps} "
        f"on the Fashion-MNIST CNN, chunks of {lite0_method.internal_batch_size}",
        flush=True,
    )
    started = time.perf_counter()
    fashion = load_model("fashion_mnist_cnn")
    # The first grids of the paper protocol whose four labels are distinct, so that K = 4.
    fashion_set = fashion_mnist_grids(n_grids=20 * args.fashion_grids)
    fashion_grids = [
        (fashion_set[i].image.unsqueeze(0), list(fashion_set[i].labels))
        for i in range(len(fashion_set))
        if len(set(fashion_set[i].labels)) == 4
    ][: args.fashion_grids]
    difference = check_original_path(fashion, *fashion_grids[0])
    print(
        f"check: ours with riemann_endpoints, {ORIGINAL_STEPS} steps, against the original's maps on a "
        f"Fashion-MNIST grid: {difference:.1e} of the largest value",
        flush=True,
    )
    bench_model(
        "Fashion-MNIST CNN, 56x56 grid", fashion, fashion_grids, fashion_method, args.repeats, args.original_rounds
    )
    if args.lite0_grids:
        lite0 = load_model("efficientnet_lite0")
        photos = photo_grids(lite0, n_grids=args.lite0_grids)
        lite0_grids = [(photos[i].image.unsqueeze(0), list(photos[i].labels)) for i in range(len(photos))]
        bench_model(
            "EfficientNet-Lite0, 224x224 Quad-Photos grid",
            lite0,
            lite0_grids,
            lite0_method,
            args.repeats,
            args.original_rounds,
        )
    print(f"runtime {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
