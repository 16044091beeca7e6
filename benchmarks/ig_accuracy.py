"""Completeness error of integrated gradients against the number of steps, per quadrature rule.

For a class c, image x and baseline b, the sum of an integrated-gradients map over
all pixels is ``Σ_s w_s g(α_s)``, where ``g(α) = d/dα f_c(b + α (x − b))`` is the
derivative of the logit along the path, and completeness asks for
``f_c(x) − f_c(b)``. This script measures the relative completeness error

    |Σ_s w_s g(α_s) − (f_c(x) − f_c(b))| / |f_c(x) − f_c(b)|

for the original project's rule (``riemann_endpoints``: 128 evenly spaced points,
ends included, equal weights) and for ours, at several numbers of steps, on the
grids of the grid pointing game with their K = 4 labels (distinct labels of a
grid once each). ``g`` of every class comes from one forward-mode pass
(``torch.func.jvp`` with tangent ``x − b``) per node, and each node of the union
of all rules' nodes is evaluated once per grid. Before that, the script checks
that the package's ``IntegratedGradients`` maps sum to the same ``Σ w g``.

Usage::

    python benchmarks/ig_accuracy.py                  # the study, about 14 minutes on one thread
    python benchmarks/ig_accuracy.py --quick          # smoke run, under a minute
    python benchmarks/ig_accuracy.py --lite0-grids 70 # every Quad-Photos grid (3 times as long on Lite0)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import jvp

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from var_utils import attribute_classes, load_model
from var_utils._io import atomic_output_path
from var_utils.evaluation.gpg import fashion_mnist_grids, photo_grids
from var_utils.methods import IntegratedGradients
from var_utils.methods.integrated_gradients import integration_points

ORIGINAL_RULE = "riemann_endpoints"
ORIGINAL_STEPS = 128
#: Rule -> numbers of steps, per model. The Riemann steps are chosen so that their nodes nest: the
#: trapezoid at 2^k + 1 points and the middle rule at 2^k points all lie on linspace(0, 1, 2^m + 1).
PLANS: dict[str, dict[str, tuple[int, ...]]] = {
    "efficientnet_lite0": {
        ORIGINAL_RULE: (5, 9, 17, 33, 128),
        "riemann_trapezoid": (5, 9, 17, 33, 128),
        "riemann_middle": (4, 8, 16),
        "gausslegendre": (32, 64),
        "riemann_graded": (8, 16, 24, 32),
    },
    "fashion_mnist_cnn": {
        ORIGINAL_RULE: (5, 9, 17, 33, 65, 128, 129),
        "riemann_trapezoid": (5, 9, 17, 33, 65, 128, 129),
        "riemann_middle": (4, 8, 16, 32, 64),
        "gausslegendre": (4, 8, 16, 32, 64),
        "riemann_graded": (4, 8, 16, 32, 64),
    },
}
#: Nodes that coincide within this are evaluated once (float64 nodes of different rules).
NODE_MATCH = 1e-12
#: Forward-mode batch of path points.
JVP_BATCH = 16


@dataclass
class Case:
    """One grid and its distinct labels."""

    image: torch.Tensor
    classes: list[int]


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lite0-grids", type=int, default=24, help="Quad-Photos grids on Lite0, spread over all 70")
    parser.add_argument("--fashion-grids", type=int, default=100, help="Fashion-MNIST grids (paper protocol)")
    parser.add_argument(
        "--min-difference",
        type=float,
        default=0.1,
        help="leave out (grid, class) pairs with |f(x) - f(b)| below this (their relative error is ill-posed)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "ig_accuracy.csv")
    parser.add_argument("--quick", action="store_true", help="1 Lite0 and 5 Fashion-MNIST grids")
    args = parser.parse_args()
    if args.quick:
        args.lite0_grids, args.fashion_grids = 1, 5
    for name in ("lite0_grids", "fashion_grids", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def lite0_cases(model: nn.Module, n_grids: int) -> list[Case]:
    """``n_grids`` Quad-Photos grids spread evenly over all of them (they reuse eight photos)."""
    grids = photo_grids(model)
    picks = np.unique(np.linspace(0, len(grids) - 1, min(n_grids, len(grids))).round().astype(int))
    return [Case(grids[i].image.unsqueeze(0), sorted(set(grids[i].labels))) for i in picks]


def fashion_cases(n_grids: int) -> list[Case]:
    """The first ``n_grids`` Fashion-MNIST grids of the paper protocol (seed 42)."""
    grids = fashion_mnist_grids(n_grids=n_grids)
    return [Case(grids[i].image.unsqueeze(0), sorted(set(grids[i].labels))) for i in range(len(grids))]


def rule_points(plan: dict[str, tuple[int, ...]]) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """Nodes and weights of every (rule, steps) of ``plan``, from the package."""
    points = {(rule, n): integration_points(n, rule) for rule, steps in plan.items() for n in steps}
    # The original's rule, written out independently: equal weights on torch.linspace(0, 1, n).
    for (rule, n), (alphas, weights) in points.items():
        if rule == ORIGINAL_RULE:
            assert np.allclose(alphas, torch.linspace(0, 1, n, dtype=torch.float64).numpy(), rtol=0, atol=1e-15)
            assert np.all(weights == 1.0 / n)
    return points


def union_of_nodes(points: dict) -> np.ndarray:
    """Sorted distinct nodes of all rules (nodes closer than NODE_MATCH merged)."""
    nodes = np.sort(np.concatenate([alphas for alphas, _ in points.values()]))
    return nodes[np.concatenate([[True], np.diff(nodes) > NODE_MATCH])]


def node_index(nodes: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Positions of ``alphas`` in ``nodes``."""
    index = np.clip(np.searchsorted(nodes, alphas - NODE_MATCH), 0, len(nodes) - 1)
    if not np.all(np.abs(nodes[index] - alphas) <= NODE_MATCH):
        raise AssertionError("a rule's node is missing from the union of nodes")
    return index


@torch.no_grad()
def path_derivatives(model: nn.Module, case: Case, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``g(α)`` of the case's classes at every node, and ``f(x) − f(b)``, zero baseline.

    Returns
    -------
    derivatives : numpy.ndarray
        (len(nodes), K) float64.
    difference : numpy.ndarray
        (K,) float64.
    """
    image, classes = case.image, case.classes
    derivatives = []
    for start in range(0, len(nodes), JVP_BATCH):
        alphas = torch.as_tensor(nodes[start : start + JVP_BATCH], dtype=image.dtype).view(-1, 1, 1, 1)
        path = (alphas * image).contiguous()
        tangent = image.expand_as(path).contiguous()
        _, directional = jvp(model, (path,), (tangent,))
        derivatives.append(directional[:, classes].double())
    ends = model(torch.cat([image, torch.zeros_like(image)]))[:, classes].double()
    return torch.cat(derivatives).numpy(), (ends[0] - ends[1]).numpy()


def check_against_package(model: nn.Module, case: Case, nodes: np.ndarray, derivatives: np.ndarray, points) -> str:
    """The package's IG maps must sum to Σ w g (float32 tolerance); returns a line for the log."""
    lines = []
    for rule, n_steps in ((ORIGINAL_RULE, 5), ("riemann_graded", 8)):
        maps = attribute_classes(model, case.image, case.classes, IntegratedGradients(n_steps=n_steps, rule=rule))
        package_sums = maps.sum(dim=(2, 3, 4))[0].double().numpy()
        alphas, weights = points[(rule, n_steps)]
        terms = weights[:, None] * derivatives[node_index(nodes, alphas)]
        ours = terms.sum(axis=0)
        # Both are float32: reverse-mode gradients summed over ~1e5 pixels against forward-mode derivatives, with
        # g reaching hundreds on Lite0 (2e-4 of f(x) - f(b) seen); allow 1e-3 of Σ w |g| (at least 1e-3).
        tolerance = 1e-3 * np.maximum(np.abs(terms).sum(axis=0), 1.0)
        if not np.all(np.abs(package_sums - ours) <= tolerance):
            raise AssertionError(f"{rule}, {n_steps} steps: package {package_sums} against Σ w g {ours}")
        lines.append(f"{rule}/{n_steps}: max |Δ| {np.abs(package_sums - ours).max():.1e}")
    return "; ".join(lines)


def study(model_name: str, model: nn.Module, cases: list[Case]) -> pd.DataFrame:
    """Relative completeness errors of every (rule, steps) of the model's plan on every (case, class)."""
    points = rule_points(PLANS[model_name])
    nodes = union_of_nodes(points)
    print(
        f"{model_name}: {len(cases)} grids, {sum(len(c.classes) for c in cases)} (grid, class) pairs, "
        f"{len(nodes)} path points per grid",
        flush=True,
    )
    rows = []
    start = time.perf_counter()
    for number, case in enumerate(cases):
        derivatives, difference = path_derivatives(model, case, nodes)
        if number < 2:
            print(
                f"  check against IntegratedGradients on grid {number}: "
                f"{check_against_package(model, case, nodes, derivatives, points)}",
                flush=True,
            )
        for (rule, n_steps), (alphas, weights) in points.items():
            totals = weights @ derivatives[node_index(nodes, alphas)]
            errors = np.abs(totals - difference) / np.abs(difference)
            rows += [
                dict(model=model_name, rule=rule, steps=n_steps, grid=number, cls=c, difference=d, error=e)
                for c, d, e in zip(case.classes, difference, errors)
            ]
        if (number + 1) % max(1, len(cases) // 5) == 0:
            print(f"  {number + 1}/{len(cases)} grids, {time.perf_counter() - start:.0f} s", flush=True)
    return pd.DataFrame(rows)


def summarize(errors: pd.DataFrame, min_difference: float) -> pd.DataFrame:
    """Median, mean and 90th percentile of the relative error per (model, rule, steps).

    Pairs whose logit difference ``|f(x) − f(b)|`` is below ``min_difference``
    are left out: dividing by a near-zero difference makes any rule's error huge.
    """
    kept = errors[errors.difference.abs() >= min_difference]
    grouped = kept.groupby(["model", "rule", "steps"])["error"]
    summary = grouped.agg(
        cases="count", median="median", mean="mean", p90=lambda e: float(np.quantile(e, 0.9))
    ).reset_index()
    return summary


def fewest_from_which(steps: pd.Series, ok: pd.Series) -> str:
    """The fewest steps from which every larger number tried is also ``ok`` ("none" if the largest is not)."""
    found = "none"
    for n_steps, good in sorted(zip(steps, ok), reverse=True):
        if not good:
            break
        found = str(n_steps)
    return found


def fewest_steps(summary: pd.DataFrame) -> list[str]:
    """Per model and rule: the fewest steps whose median (and p90) stay at most the original's at 128."""
    lines = []
    for model_name, table in summary.groupby("model", sort=False):
        reference = table[(table.rule == ORIGINAL_RULE) & (table.steps == ORIGINAL_STEPS)].iloc[0]
        lines.append(
            f"{model_name}: original ({ORIGINAL_RULE}, {ORIGINAL_STEPS}) median {reference['median']:.4f}, "
            f"p90 {reference.p90:.4f}"
        )
        for rule, rows in table.groupby("rule", sort=False):
            median_ok = rows["median"] <= reference["median"]
            both_ok = median_ok & (rows.p90 <= reference.p90)
            lines.append(
                f"  {rule:18s} median: {fewest_from_which(rows.steps, median_ok)}; median and p90: "
                f"{fewest_from_which(rows.steps, both_ok)} (tried {', '.join(map(str, sorted(rows.steps)))})"
            )
    return lines


def main() -> None:
    """Run the study and write the summary."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} logical cores, "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    frames = []
    lite0 = load_model("efficientnet_lite0")
    frames.append(study("efficientnet_lite0", lite0, lite0_cases(lite0, args.lite0_grids)))
    fashion = load_model("fashion_mnist_cnn")
    frames.append(study("fashion_mnist_cnn", fashion, fashion_cases(args.fashion_grids)))
    errors = pd.concat(frames, ignore_index=True)
    pairs = errors.drop_duplicates(["model", "grid", "cls"])
    for model_name, table in pairs.groupby("model", sort=False):
        small = int((table.difference.abs() < args.min_difference).sum())
        print(
            f"{model_name}: {small} of {len(table)} (grid, class) pairs left out, |f(x) - f(b)| < {args.min_difference}"
        )
    summary = summarize(errors, args.min_difference)
    with atomic_output_path(args.out) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.6g")
    with pd.option_context("display.width", 160, "display.max_rows", 200):
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print("\nFewest steps from which the error stays at most the original's at 128 steps:")
    print("\n".join(fewest_steps(summary)))
    print(f"\nwrote {args.out}; runtime {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
