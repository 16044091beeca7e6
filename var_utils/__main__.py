"""Command line: ``python -m var_utils demo`` (more subcommands: ``--help``)."""
from __future__ import annotations

import argparse
import sys


def _demo(arguments: argparse.Namespace) -> None:
    from .demo import run_demo

    table = run_demo(arguments.out)
    print(table.to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    print(f"\nFigures and region_attribution.csv written to {arguments.out}/")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m var_utils`` and the ``var-utils`` script."""
    parser = argparse.ArgumentParser(prog="python -m var_utils", description="VAR: class-relevant saliency maps.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the offline demo (EfficientNet-Lite0, photos) and write figures")
    demo.add_argument("--out", default="outputs", help="output folder (default: outputs)")
    demo.set_defaults(run=_demo)
    arguments = parser.parse_args(argv)
    arguments.run(arguments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
