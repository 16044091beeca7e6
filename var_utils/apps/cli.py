"""Command line: ``python -m var_utils`` and its subcommands (``--help`` lists them)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .._lock import OutputLockedError
from ..datasets.grids import GRID_PROTOCOLS
from ..engine import MAP_MODES, MODES
from ..evaluation.gpg import (
    DEFAULT_MODELS,
    GPG_INTEGRATED_GRADIENTS,
    GPG_METRICS,
    GRID_SOURCES,
    evaluate_grid_pointing_game,
    grid_source,
    summarize,
)
from ..evaluation.gpg.distributed import DEVICES, OtherRankFailedError, launched_process_group, process_group
from ..evaluation.metrics import BINARIZATIONS
from ..methods import METHODS
from ..methods.integrated_gradients import INTEGRATION_RULES
from ..models import MODELS, load_model
from .explain import OUTPUT_FORMATS, plan_explanations, run_explanations

GPG_DEFAULT_METHODS = "gradcam,saliency,input_x_gradient,guided_backprop,integrated_gradients"
#: The paper's shuffle seed of the grid protocols.
DEFAULT_SEED = 42


def _demo(arguments: argparse.Namespace) -> None:
    from .demo import run_demo

    table = run_demo(arguments.out)
    print(table.to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    print(f"\nFigures and region_attribution.csv written to {arguments.out}/")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _names_from(choices: Sequence[str], kind: str) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of names, each one of ``choices``."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {kind}(s) {unknown}; expected a comma-separated list from {sorted(choices)}"
            )
        if len(set(names)) != len(names):
            raise argparse.ArgumentTypeError(f"a {kind} is named twice in {names}")
        return names

    return parse


_method_names = _names_from(METHODS, "method")
_mode_names = _names_from(MODES, "mode")


def _format_summary(summary, metrics: Sequence[str] = GPG_METRICS) -> str:
    shown = summary[["method", "mode", "n"]].copy()
    for metric in metrics:
        pairs = zip(summary[f"{metric}_mean"], summary[f"{metric}_se"])
        shown[metric] = [f"{mean:.3f} ± {error:.3f}" for mean, error in pairs]
    return shown.to_string(index=False)


def _print_saved(shown, out: Path) -> None:
    print(shown.to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    print(f"\nSummary written to {out}")


def _refine_settings(arguments: argparse.Namespace) -> dict:
    """The refine options given on the command line; unset ones fall back to refine_all's defaults."""
    given = {"tau": arguments.tau, "temperature": arguments.temperature, "normalize": arguments.normalize}
    return {key: value for key, value in given.items() if value is not None}


def _add_refine_options(add: Callable) -> None:
    """``--tau``, ``--temperature`` and ``--normalize`` (VAR's settings) for a subcommand's ``add_argument``."""
    add("--tau", type=float, default=None, help="VAR threshold tau (default: refine_all's, 0.01)")
    add("--temperature", type=float, default=None, help="VAR softmax temperature (default: refine_all's, 0.1)")
    add("--normalize", choices=("joint",), default=None, help="scale the K maps jointly before the softmax")


def _run_launched(arguments: argparse.Namespace, compute: Callable):
    """``compute(arguments, device)`` in this process's share of the run (``torchrun`` or not); (table, rank).

    Bad settings, a locked output and a failed rank become argparse errors (exit status 2, one line).
    """
    try:
        with launched_process_group(arguments.device) as device:
            return compute(arguments, device), process_group()[0]
    except (ValueError, TypeError, OSError, OutputLockedError, OtherRankFailedError) as error:
        arguments.error(str(error))


def _gpg(arguments: argparse.Namespace) -> None:
    """One rank's share of the run (one process, or each process of ``torchrun``); rank 0 prints the summary."""
    if arguments.source == "imagenet" and arguments.root is None:
        arguments.error("--source imagenet needs --root DIR (the ImageNet validation set)")
    table, rank = _run_launched(arguments, _gpg_table)
    if rank == 0:
        print(_format_summary(summarize(table)))
        print(f"\n{len(table)} rows in {_gpg_out(arguments)}")


def _model_and_grids(arguments: argparse.Namespace, device: torch.device | None = None):
    """The chosen (or the source's default) model on ``device``, and the grids of ``--source``."""
    model = load_model(arguments.model or DEFAULT_MODELS[arguments.source]).to(device or "cpu")
    grids = grid_source(
        arguments.source,
        model,
        n_grids=arguments.grids,
        protocol=arguments.protocol,
        seed=arguments.seed,
        root=arguments.root,
    )
    return model, grids


def _gpg_methods(arguments: argparse.Namespace, source: str | None = None) -> dict:
    """The chosen methods; integrated gradients with the source's default rule and steps unless told otherwise."""
    integrated_gradients = dict(GPG_INTEGRATED_GRADIENTS[source or arguments.source])
    if arguments.n_steps is not None:
        integrated_gradients["n_steps"] = arguments.n_steps
    if arguments.ig_rule is not None:
        integrated_gradients["rule"] = arguments.ig_rule
    return {name: integrated_gradients if name == "integrated_gradients" else {} for name in arguments.methods}


def _add_ig_options(add: Callable) -> None:
    """``--n-steps`` and ``--ig-rule`` (integrated gradients) for a grid pointing game subcommand."""
    steps = ", ".join(f"{source} {settings['n_steps']}" for source, settings in GPG_INTEGRATED_GRADIENTS.items())
    add("--n-steps", type=_positive_int, default=None, help=f"integrated gradients steps (default: {steps})")
    add("--ig-rule", choices=INTEGRATION_RULES, default=None, help="quadrature rule (default: riemann_graded)")


def _gpg_out(arguments: argparse.Namespace) -> Path:
    return arguments.out or Path("results") / f"gpg_{arguments.source}.csv"


def _scoring_settings(arguments: argparse.Namespace) -> dict:
    """The modes, refine and metric settings given on the command line of gpg or coco."""
    refine_settings = _refine_settings(arguments)
    if arguments.signed:
        refine_settings["use_abs"] = False
    return {
        "modes": arguments.modes,
        "refine_settings": refine_settings,
        "metric_settings": {} if arguments.binarization is None else {"binarization": arguments.binarization},
    }


def _gpg_table(arguments: argparse.Namespace, device: torch.device):
    model, grids = _model_and_grids(arguments, device)
    return evaluate_grid_pointing_game(
        model,
        grids,
        _gpg_methods(arguments),
        **_scoring_settings(arguments),
        batch_size=arguments.batch_size,
        out=_gpg_out(arguments),
        progress=not arguments.no_progress,
        workers=arguments.workers,
    )


def _add_gpg_parser(commands) -> None:
    gpg = commands.add_parser(
        "gpg",
        help="grid pointing game: base vs VAR localisation on 2x2 grids",
        description="Grid pointing game: base vs VAR localisation on 2x2 grids. Rerunning with the same --out resumes. "
        "Under torchrun (e.g. torchrun --standalone --nproc-per-node 2 -m var_utils gpg ...) every process computes "
        "its share of the grids into its own shard of --out, and rank 0 merges them.",
    )
    add = gpg.add_argument
    add("--source", choices=GRID_SOURCES, default="fashion_mnist", help="grid source (default: fashion_mnist)")
    add("--methods", type=_method_names, default=GPG_DEFAULT_METHODS, help=f"comma-separated; {GPG_DEFAULT_METHODS}")
    add("--grids", type=_positive_int, default=None, help="number of grids (default: all)")
    add("--protocol", choices=GRID_PROTOCOLS, default="paper", help="grid protocol (default: paper)")
    add("--seed", type=int, default=DEFAULT_SEED, help=f"shuffle seed (default: {DEFAULT_SEED})")
    add("--batch-size", type=_positive_int, default=16, help="grids per attribution call (default: 16)")
    add("--out", type=Path, default=None, help="results CSV (default: results/gpg_SOURCE.csv)")
    add("--root", type=Path, default=None, help="dataset folder: required for imagenet; Fashion-MNIST's data folder")
    add("--model", choices=MODELS, default=None, help="default: fashion_mnist_cnn or (photos, imagenet) Lite0")
    _add_ig_options(add)
    _add_scoring_options(add, "grids")
    gpg.set_defaults(run=_gpg, error=gpg.error)


def _add_scoring_options(add: Callable, units: str) -> None:
    """Modes, refine, binarisation, device, workers and progress options shared by gpg and coco."""
    modes = ",".join(MAP_MODES)
    add("--modes", type=_mode_names, default=modes, help=f"comma-separated from {','.join(MODES)} (default: {modes})")
    _add_refine_options(add)
    add("--signed", action="store_true", help="compare signed maps in the softmax instead of |A|")
    add("--binarization", choices=BINARIZATIONS, default=None, help="for precision/recall/F1/IoU (default: positive)")
    add("--device", choices=DEVICES, default="cpu", help="cuda: each process uses the GPU of its local rank")
    add("--workers", type=_non_negative_int, default=0, help=f"DataLoader processes that load {units} (default: 0)")
    add("--no-progress", action="store_true", help="hide the progress bar")


COCO_DEFAULT_METHODS = "gradcam,guided_backprop"


def _coco_out(arguments: argparse.Namespace) -> Path:
    return arguments.out or Path("results") / "coco_objects.csv"


def _coco_table(arguments: argparse.Namespace, device: torch.device):
    from ..datasets.coco_objects import coco_object_images
    from ..evaluation.coco import evaluate_coco_objects

    model = load_model(arguments.model).to(device)
    objects = coco_object_images(
        model,
        arguments.root,
        annotations=arguments.annotations,
        images=arguments.images,
        min_area=arguments.min_area,
        n_images=arguments.n_images,
    )
    return evaluate_coco_objects(
        model,
        objects,
        _gpg_methods(arguments, "imagenet"),
        class_rule=arguments.class_rule,
        **_scoring_settings(arguments),
        batch_size=arguments.batch_size,
        out=_coco_out(arguments),
        progress=not arguments.no_progress,
        workers=arguments.workers,
    )


def _coco(arguments: argparse.Namespace) -> None:
    from ..evaluation.coco import COCO_METRICS, summarize_objects

    if arguments.root is None and (arguments.annotations is None or arguments.images is None):
        arguments.error("give --root DIR (a COCO 2017 tree), or both --annotations FILE and --images DIR")
    table, rank = _run_launched(arguments, _coco_table)
    if table.empty:
        arguments.error("no object could be scored with these methods (see docs/method.md, section 14)")
    if rank == 0:
        print(_format_summary(summarize_objects(table), COCO_METRICS))
        print(f"\n{len(table)} rows ({table['image'].nunique()} images) in {_coco_out(arguments)}")


def _add_coco_parser(commands) -> None:
    from ..datasets.coco_objects import DEFAULT_MIN_AREA
    from ..evaluation.coco import CLASS_RULES

    parser = commands.add_parser(
        "coco",
        help="objects in COCO images: base vs VAR maps scored against the objects' boxes",
        description="COCO images holding objects of two or more ImageNet-mapped categories (each object at least "
        "--min-area of the image): per object, energy in box, pointing and binarised precision/recall/F1/IoU of "
        "base and VAR maps. Rerunning with the same --out resumes; torchrun shares the images among processes.",
    )
    add = parser.add_argument
    add("--root", type=Path, default=None, help="COCO 2017 tree: annotations/instances_val2017.json and val2017/")
    add("--annotations", type=Path, default=None, help="instances JSON (default: ROOT/annotations/...val2017.json)")
    add("--images", type=Path, default=None, help="image folder (default: ROOT/val2017)")
    add("--model", choices=MODELS, default="efficientnet_lite0", help="an ImageNet model (default: efficientnet_lite0)")
    add("--methods", type=_method_names, default=COCO_DEFAULT_METHODS, help=f"comma-separated; {COCO_DEFAULT_METHODS}")
    add("--out", type=Path, default=None, help="results CSV (default: results/coco_objects.csv)")
    add("--min-area", type=float, default=DEFAULT_MIN_AREA, help=f"smallest object area share ({DEFAULT_MIN_AREA})")
    add("--class-rule", choices=CLASS_RULES, default="top", help="top: one class per category; all: every class")
    add("--n-images", type=_positive_int, default=None, help="evaluate the first N selected images (default: all)")
    add("--batch-size", type=_positive_int, default=8, help="images per attribution call (default: 8)")
    _add_ig_options(add)
    _add_scoring_options(add, "images")
    parser.set_defaults(run=_coco, error=parser.error)


def _explain(arguments: argparse.Namespace) -> int:
    """Plan (any error there, model loading included, is an argparse error: no image was touched), then run."""
    try:
        plan = plan_explanations(
            arguments.paths,
            arguments.out,
            arguments.model,
            methods=arguments.method,
            classes=arguments.classes,
            top_k=arguments.top_k,
            refine_settings=_refine_settings(arguments),
            n_steps=arguments.n_steps,
            formats=arguments.format,
        )
    except (TypeError, ValueError, RuntimeError, OSError) as error:
        arguments.error(str(error))
    summary = run_explanations(plan, progress=not arguments.no_progress)
    print(summary.report())
    return summary.exit_status


def _seed_suffix(arguments: argparse.Namespace) -> str:
    """``_seedN`` for a non-default shuffle seed, so that default output names keep the seed-42 results."""
    return "" if arguments.seed == DEFAULT_SEED else f"_seed{arguments.seed}"


def _add_source_options(add: Callable) -> None:
    """``--seed`` and ``--root`` of the Fashion-MNIST grid sources, for a subcommand's ``add_argument``."""
    add("--seed", type=int, default=DEFAULT_SEED, help=f"Fashion-MNIST shuffle seed (default: {DEFAULT_SEED})")
    add("--root", type=Path, default=None, help="Fashion-MNIST's data folder (default: the usual places)")


def _binarizations(arguments: argparse.Namespace) -> None:
    from ..evaluation.gpg.architectures import save_summary
    from ..evaluation.gpg.binarization import binarization_comparison, summarize_binarizations
    from ..evaluation.gpg.runner import build_methods, run_settings
    from ..refine import check_refine_settings

    model, grids = _model_and_grids(arguments)
    methods = _gpg_methods(arguments)
    table = binarization_comparison(
        model,
        grids,
        methods,
        arguments.binarizations,
        modes=arguments.modes,
        batch_size=arguments.batch_size,
        progress=not arguments.no_progress,
    )
    summary = summarize_binarizations(table)
    out = arguments.out or Path("results") / f"binarizations_{arguments.source}{_seed_suffix(arguments)}.csv"
    settings = run_settings(
        model,
        grids,
        build_methods(methods),
        arguments.modes,
        refine_settings=check_refine_settings(None),
        binarizations=arguments.binarizations,
    )
    save_summary(summary, out, settings)
    _print_saved(
        summary[["binarization", "method", "mode", "precision_mean", "recall_mean", "f1_mean", "iou_mean"]], out
    )


def _add_binarizations_parser(commands) -> None:
    parser = commands.add_parser(
        "binarizations",
        help="precision/recall/F1/IoU of the grid pointing game under each binarisation",
        description="Grid pointing game scored under several binarisations of the maps (the same base maps for "
        "all), summarised per binarisation, method and mode.",
    )
    add = parser.add_argument
    add("--source", choices=("fashion_mnist", "photos"), default="photos", help="grid source (default: photos)")
    add("--protocol", choices=GRID_PROTOCOLS, default="paper", help="Fashion-MNIST grid protocol (default: paper)")
    _add_source_options(add)
    add("--grids", type=_positive_int, default=None, help="number of grids (default: all)")
    add("--methods", type=_method_names, default="gradcam", help="comma-separated (default: gradcam)")
    _add_ig_options(add)
    add("--modes", type=_mode_names, default=",".join(MAP_MODES), help="comma-separated (default: base,var)")
    choices = ",".join(BINARIZATIONS)
    add("--binarizations", type=_names_from(BINARIZATIONS, "binarization"), default=choices, help=f"default: {choices}")
    add("--model", choices=MODELS, default=None, help="default: fashion_mnist_cnn or (photos) Lite0")
    add("--batch-size", type=_positive_int, default=16, help="grids per attribution call (default: 16)")
    add("--out", type=Path, default=None, help="summary CSV (default: results/binarizations_SOURCE.csv)")
    add("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=_binarizations)


def _add_explain_parser(commands) -> None:
    parser = commands.add_parser(
        "explain",
        help="explain your own image files and folders: base vs VAR maps per image",
        description="Base and VAR maps of image files and folders (searched recursively), one output folder per "
        "image (figure.png, maps.npz, record.json) and explanations.csv. Rerunning with the same settings skips "
        "the images already done; recomputing an image removes its outputs of other formats and a stale "
        "explanations.csv. The exit status is 1 if an image failed (the others are still explained).",
    )
    add = parser.add_argument
    formats = ",".join(OUTPUT_FORMATS)
    add("paths", nargs="+", type=Path, metavar="PATH", help="image files and folders")
    add("--out", type=Path, required=True, metavar="DIR", help="output folder (one subfolder per image)")
    add("--model", choices=MODELS, default="efficientnet_lite0", help="default: efficientnet_lite0")
    add("--method", type=_method_names, default="gradcam", help="comma-separated method names (default: gradcam)")
    add("--classes", default="auto", help="auto (top-k predictions + least probable) or ids/names, e.g. tabby,285")
    add("--top-k", type=_positive_int, default=3, help="top predictions in the automatic class set (default: 3)")
    _add_refine_options(add)
    add("--n-steps", type=_positive_int, default=32, help="integrated gradients steps (default: 32)")
    format_names = _names_from(OUTPUT_FORMATS, "format")
    add("--format", type=format_names, default=formats, help=f"comma-separated subset of {formats} (default: all)")
    add("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=_explain, error=parser.error)


def _contrastive(arguments: argparse.Namespace) -> None:
    from ..evaluation.gpg.contrastive import CONTRASTIVE_METHODS, CONTRASTIVE_REFERENCES, contrastive_evaluation

    model, grids = _model_and_grids(arguments)
    name = arguments.source if arguments.source == "photos" else f"{arguments.source}_{arguments.protocol}"
    # A subset of the grids must not overwrite the results of all of them.
    name += ("" if arguments.grids is None else f"_{arguments.grids}grids") + _seed_suffix(arguments)
    # Each contrastive method is compared with VAR on the method it refines, so that method runs too.
    chosen = [*arguments.methods, *(CONTRASTIVE_REFERENCES.get(method) for method in arguments.methods)]
    methods = {method: CONTRASTIVE_METHODS[method] for method in CONTRASTIVE_METHODS if method in chosen}
    results = contrastive_evaluation(
        model,
        grids,
        methods,
        batch_size=arguments.batch_size,
        out=arguments.cells or Path("outputs") / f"contrastive_{name}_cells.csv",
        progress=not arguments.no_progress,
    )
    paths = results.save(arguments.out_dir / f"contrastive_{name}")
    print(_format_summary(results.summary))
    print("\nWritten: " + ", ".join(str(path) for path in paths))


def _add_contrastive_parser(commands) -> None:
    from ..evaluation.gpg.contrastive import CONTRASTIVE_METHODS

    parser = commands.add_parser(
        "contrastive",
        help="grid pointing game of VAR against the class-discriminative methods",
        description="Grid pointing game of base maps, VAR (paper and joint), CGI, contrast to the mean and the "
        "class-discriminative methods (softmax gradient, contrastive Grad-CAM, CLRP, SGLRP), with a paired "
        "grid-by-grid comparison against VAR. Rerunning with the same cells file resumes.",
    )
    add = parser.add_argument
    names = ",".join(CONTRASTIVE_METHODS)
    add("--source", choices=("fashion_mnist", "photos"), default="fashion_mnist", help="default: fashion_mnist")
    add("--protocol", choices=GRID_PROTOCOLS, default="paper", help="Fashion-MNIST grid protocol (default: paper)")
    _add_source_options(add)
    add("--grids", type=_positive_int, default=None, help="number of grids (default: all)")
    add("--methods", type=_names_from(CONTRASTIVE_METHODS, "method"), default=names, help=f"default: {names}")
    add("--model", choices=MODELS, default=None, help="default: fashion_mnist_cnn or (photos) Lite0")
    add("--batch-size", type=_positive_int, default=16, help="grids per attribution call (default: 16)")
    add("--cells", type=Path, default=None, help="per-cell CSV (default: outputs/contrastive_NAME_cells.csv)")
    parser.epilog = (
        "A class-discriminative method also runs the method whose VAR maps it is compared with (e.g. "
        "softmax_gradient adds input_x_gradient). With --grids N the outputs are named contrastive_NAME_Ngrids, "
        "with --seed S other than 42 contrastive_NAME_seedS."
    )
    add("--out-dir", type=Path, default=Path("results"), help="folder of the summary and comparison CSVs")
    add("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=_contrastive)


def _architectures(arguments: argparse.Namespace) -> None:
    from ..evaluation.gpg.architectures import compare_architectures, comparison_fingerprint, save_summary

    table = compare_architectures(
        arguments.models,
        protocol=arguments.protocol,
        n_grids=arguments.grids,
        batch_size=arguments.batch_size,
        progress=not arguments.no_progress,
    )
    out = arguments.out or Path("results") / f"gpg_architectures_{arguments.protocol}.csv"
    save_summary(table, out, comparison_fingerprint(arguments.models, arguments.protocol, arguments.grids))
    _print_saved(table[["model", "setting", "method", "n", "region_attribution_mean", "pointing_mean"]], out)


def _add_architectures_parser(commands) -> None:
    from ..evaluation.gpg.architectures import ARCHITECTURE_METHODS

    parser = commands.add_parser(
        "architectures",
        help="grid pointing game on the Fashion-MNIST CNN, ViT and B-cos network",
        description="Grid pointing game on Quad-FashionMNIST for the CNN, the ViT and the B-cos network, each with "
        "its methods: base maps vs VAR (paper setting and normalize='joint'), summarised per method.",
    )
    add = parser.add_argument
    names = ",".join(ARCHITECTURE_METHODS)
    models = _names_from(ARCHITECTURE_METHODS, "model")
    add("--models", type=models, default=list(ARCHITECTURE_METHODS), help=f"default: {names}")
    add("--protocol", choices=GRID_PROTOCOLS, default="paper", help="grid protocol (default: paper)")
    add("--grids", type=_positive_int, default=None, help="grids per model (default: all)")
    add("--batch-size", type=_positive_int, default=16, help="grids per attribution call (default: 16)")
    add("--out", type=Path, default=None, help="summary CSV (default: results/gpg_architectures_PROTOCOL.csv)")
    add("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(run=_architectures)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m var_utils`` and the ``var-utils`` script.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0, or 1 when ``explain`` could not explain an image
        (argparse exits with 2 on bad arguments).
    """
    parser = argparse.ArgumentParser(prog="python -m var_utils", description="VAR: class-relevant saliency maps.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the offline demo (EfficientNet-Lite0, photos) and write figures")
    demo.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    demo.set_defaults(run=_demo)
    _add_explain_parser(commands)
    _add_gpg_parser(commands)
    _add_coco_parser(commands)
    _add_contrastive_parser(commands)
    _add_binarizations_parser(commands)
    _add_architectures_parser(commands)
    arguments = parser.parse_args(argv)
    status = arguments.run(arguments)
    return 0 if status is None else status
