#!/usr/bin/env python
"""Convert an original AudioMosaic checkpoint (released folder or raw training checkpoint) to a native folder.

Usage:
    python run_scripts/convert_original_checkpoint.py SRC DST [--model_class CLASS] [--dry-run] [--release NAME]
        [--probe_layer K] [--drop_extra_heads] [--overwrite] [--json]

SRC is a released folder (``config.json`` with ``model_class`` + constructor kwargs + ``audio_preprocessing``, and
``model.safetensors``; or the LTU folder with ``extra_weights.bin``) or a checkpoint file (``.safetensors``, or a torch
file read with ``weights_only=True``). DST receives ``config.json``, ``model.safetensors``,
``preprocessor_config.json``, the model code files (for ``trust_remote_code=True``) and ``README.md``. With
``--dry-run`` the key mapping is printed and nothing is written (DST may be omitted). See
``modeling_audiomosaic.convert_original_checkpoint``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from modeling_audiomosaic.convert_original_checkpoint import (
    LTU_CLASSES,
    MODEL_CLASS_ALIASES,
    ORIGINAL_CLASSES,
    convert_original_checkpoint,
    format_conversion_summary,
)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description="Convert an original AudioMosaic checkpoint to a transformers-native folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("src", type=Path, help="released folder or checkpoint file (.safetensors/.pt/.pth/.bin)")
    parser.add_argument("dst", type=Path, nargs="?", default=None, help="output folder (optional with --dry-run)")
    choices = sorted(ORIGINAL_CLASSES) + list(LTU_CLASSES) + sorted(MODEL_CLASS_ALIASES)
    parser.add_argument("--model_class", "--model-class", default=None, metavar="CLASS",
                        help=f"force the original class (default: the release's, else inferred); one of {choices} "
                             "or AudioMosaicForAudioClassification")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="print the key mapping (original -> native, shapes) and write nothing")
    parser.add_argument("--release", default=None, metavar="NAME",
                        help="release name for the model card (default: recognised from SRC when possible)")
    parser.add_argument("--probe_layer", "--probe-layer", type=int, default=None,
                        help="block read by an AudioMosaicLayerProbe whose config does not give it")
    parser.add_argument("--drop_extra_heads", "--drop-extra-heads", action="store_true",
                        help="leave out a pre-training checkpoint's logit_bias / online_classifier (no native twin)")
    parser.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty DST")
    parser.add_argument("--json", action="store_true", help="print the full summary as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the conversion; returns the exit code (errors are reported on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dst is None and not args.dry_run:
        parser.error("DST is required unless --dry-run is given.")
    if not args.src.exists():
        parser.error(f"SRC {args.src} does not exist.")
    try:
        summary = convert_original_checkpoint(
            args.src, args.dst, model_class=args.model_class, dry_run=args.dry_run, release_name=args.release,
            probe_layer=args.probe_layer, drop_extra_heads=args.drop_extra_heads, overwrite=args.overwrite,
        )
    except (KeyError, ValueError, FileNotFoundError, FileExistsError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2) if args.json else format_conversion_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
