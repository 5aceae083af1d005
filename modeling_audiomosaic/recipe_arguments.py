"""Command-line arguments with a YAML recipe: ``--config recipe.yaml`` gives the defaults, flags override them.

Used by run_scripts/run_pretrain.py and run_audio_classification.py (recipes in run_scripts/recipes/).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from transformers import HfArgumentParser


def parse_with_recipe(dataclass_types: tuple, argv: list[str] | None = None, defaults: dict[str, Any] | None = None):
    """Parse ``argv`` into ``dataclass_types`` with `HfArgumentParser`; ``--config recipe.yaml`` sets defaults.

    Unknown recipe keys raise a ``ValueError`` naming them (a typo must not be silently ignored). ``--help`` lists
    ``--config`` with the dataclasses' flags.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types)
    known = {action.dest for action in parser._actions}
    # listed in --help only: the recipe is read below, before the dataclass flags are parsed
    parser.add_argument("--config", default=argparse.SUPPRESS, metavar="RECIPE_YAML",
                        help="YAML recipe: its keys set the defaults of the other flags, which override them")
    if defaults:
        parser.set_defaults(**defaults)
    if "--config" in argv:
        index = argv.index("--config")
        recipe_path = argv[index + 1]
        del argv[index : index + 2]
        import yaml  # pyyaml: the `train` extra

        with open(recipe_path, encoding="utf-8") as handle:
            recipe = yaml.safe_load(handle) or {}
        unknown = sorted(set(recipe) - known)
        if unknown:
            raise ValueError(f"{recipe_path}: unknown option(s) {unknown}")
        parser.set_defaults(**recipe)
    return parser.parse_args_into_dataclasses(args=argv)
