#!/usr/bin/env bash
# Check a GPU node (issue 17, point 7): an AudioMosaic pre-training step (ViT-B/16, 1024x128, two masked views, bf16
# autocast, AdamW) per attention implementation (eager, sdpa, flash_attention_2 if flash_attn is importable): clips/s,
# peak memory, model FLOPs utilisation, and the eager/SDPA/flash parity of the encoder output and the loss.
#   bash run_scripts/gpu_check.sh                           # defaults: batch 128, views on the device
#   bash run_scripts/gpu_check.sh --markdown docs/RESULTS.md  # also append a ready-to-paste block to that file
#   bash run_scripts/gpu_check.sh --cpu_smoke               # the whole procedure on the CPU, tiny model (CI)
# Output: a table, then one JSON line (the last line). Progress goes to stderr. Without a CUDA device (and without
# --cpu_smoke) it prints "no CUDA device: ..." and exits 0. PYTHON picks the interpreter (default: python, else
# python3). A phase that fails (FLOP count, parity, one attention implementation) is reported and the rest goes on.
# The code is modeling_audiomosaic/gpu_check.py (`--help` lists every flag), run through run_scripts/gpu_check.py
# (a script path, not `python -m`, so that a checkout in the working directory cannot shadow the installed package).
set -euo pipefail
PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
exec "$PYTHON" "$(dirname "${BASH_SOURCE[0]}")/gpu_check.py" "$@"
