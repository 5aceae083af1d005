#!/usr/bin/env python
"""Check a GPU node: throughput, peak memory, MFU and attention parity of an AudioMosaic pre-training step.

    bash run_scripts/gpu_check.sh                               # the usual entry point (this script, via $PYTHON)
    python run_scripts/gpu_check.py --markdown docs/RESULTS.md  # the same, appending a block to RESULTS
    python run_scripts/gpu_check.py --cpu_smoke                 # the whole procedure on the CPU, tiny model

The procedure lives in `modeling_audiomosaic/gpu_check.py` (README "Checking a GPU node"). Without a CUDA device it
prints "no CUDA device: ..." and exits 0.
"""

from __future__ import annotations

import sys

try:
    from modeling_audiomosaic.gpu_check import main
except ModuleNotFoundError as error:  # a fresh GPU node: the package (or one of its needs) is not in this interpreter
    sys.exit(f"gpu_check: {sys.executable} cannot import {error.name!r} ({error}). Install the package with its "
             "dependencies into this interpreter (`pip install -e .` in the checkout), or set PYTHON to the "
             "interpreter that has it.")

if __name__ == "__main__":
    sys.exit(main())
