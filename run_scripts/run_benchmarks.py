#!/usr/bin/env python
"""Benchmarks that report RATIOS measured side by side in one run (this machine is noisy; absolute times are shown
for context only).

    python run_scripts/run_benchmarks.py                 # all benchmarks, a table
    python run_scripts/run_benchmarks.py --only pretrain_step --json

Each benchmark prints one JSON object: ``name``, ``ratio``, ``target``, ``passed`` and its absolute figures plus a
machine description. Variants are interleaved (A, B, A, B, ...) and the median of the repeats is used.

Benchmarks:
* ``pretrain_step``: one AudioMosaic pre-training step (forward + backward, ViT-B/16, 1024x128, two views) with the
  method's masked views (time 0.6 / frequency 0.4, tokens dropped) vs two full unmasked views. Targets: >= 1.9x
  throughput, <= 0.55x memory. Memory = bytes of the activations autograd saves for the backward pass (the part of
  peak training memory that masking changes and that grows with the batch; weights, gradients and optimizer state
  are equal in both variants), counted exactly with `torch.autograd.graph.saved_tensors_hooks`, parameters excluded.
* ``features_vs_ast``: `AudioMosaicFeatureExtractor` vs transformers' `ASTFeatureExtractor` on 32 x 10 s clips
  (target >= 10x).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def interleaved(fns: dict, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run each callable `warmup` times, then `repeats` rounds of all of them in turn; return the times."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def saved_activation_bytes(fn, model: torch.nn.Module | None = None) -> int:
    """Bytes of the activations autograd saves during `fn()`: every saved tensor's storage counted once, the model's
    own parameters (saved by Linear/Conv for their backward, but not activations) excluded."""
    seen, total = set(), 0
    params = set()
    if model is not None:
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(tensor):
        nonlocal total
        try:
            key = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        except RuntimeError:
            key = (id(tensor), tensor.numel() * tensor.element_size())
        if key[0] in params:
            return tensor
        if key not in seen:
            seen.add(key)
            total += key[1]
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def bench_pretrain_step(args) -> dict:
    from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicForPreTraining

    torch.manual_seed(0)
    size = "base" if not args.quick else "small"
    results = {}
    config_masked = AudioMosaicConfig.from_preset("audioset", size, drop_path_rate=0.0, masking_mode="tf")
    config_full = AudioMosaicConfig.from_preset("audioset", size, drop_path_rate=0.0, masking_mode="none")
    model = AudioMosaicForPreTraining(config_masked).train()
    batch = args.batch_size
    x = torch.randn(batch, 2, 1024, 128)

    def step(mode):
        model.config = config_masked if mode == "masked" else config_full
        model.audiomosaic.config = model.config
        out = model(x, generator=torch.Generator().manual_seed(0))
        out.loss.backward()
        model.zero_grad(set_to_none=True)
        return out

    fns = {"masked": lambda: step("masked"), "full": lambda: step("full")}
    times = interleaved(fns, repeats=args.repeats)
    memory = {name: saved_activation_bytes(fn, model) for name, fn in fns.items()}
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    tokens = {"masked": list(step("masked").num_kept_tokens), "full": list(step("full").num_kept_tokens)}
    median = {name: statistics.median(t) for name, t in times.items()}
    speedup = median["full"] / median["masked"]
    memory_ratio = memory["masked"] / memory["full"]
    results.update(
        name="pretrain_step",
        ratio=round(speedup, 3),
        target=">= 1.9x throughput and <= 0.55x activation memory (masked vs full views)",
        passed=bool(speedup >= 1.9 and memory_ratio <= 0.55),
        memory_ratio=round(memory_ratio, 3),
        encoder=f"ViT-{size} 1024x128, batch {batch}, fp32, two views, forward+backward",
        seconds_per_step={k: round(v, 3) for k, v in median.items()},
        clips_per_second={k: round(batch / v, 3) for k, v in median.items()},
        saved_activation_mb={k: round(v / 2**20, 1) for k, v in memory.items()},
        weights_mb=round(weights / 2**20, 1),
        activation_mb_per_clip={k: round(v / 2**20 / batch, 1) for k, v in memory.items()},
        tokens_per_view=tokens,
        repeats=args.repeats,
    )
    return results


def bench_features_vs_ast(args) -> dict:
    from transformers import ASTFeatureExtractor

    from feature_extraction import AudioMosaicFeatureExtractor

    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(160000).astype(np.float32) * 0.1 for _ in range(32)]
    ours = AudioMosaicFeatureExtractor.from_preset("audioset")
    ast = ASTFeatureExtractor(sampling_rate=16000, num_mel_bins=128, max_length=1024, mean=-4.2677393,
                              std=4.5689974, do_normalize=True)
    fns = {
        "ours": lambda: ours(clips, sampling_rate=16000, return_tensors="pt"),
        "ast": lambda: ast(clips, sampling_rate=16000, return_tensors="pt"),
    }
    times = interleaved(fns, repeats=args.repeats)
    median = {name: statistics.median(t) for name, t in times.items()}
    diff = float((fns["ours"]()["input_values"] - fns["ast"]()["input_values"]).abs().max())
    ratio = median["ast"] / median["ours"]
    return {
        "name": "features_vs_ast",
        "ratio": round(ratio, 2),
        "target": ">= 10x",
        "passed": bool(ratio >= 10),
        "seconds_per_batch": {k: round(v, 4) for k, v in median.items()},
        "clips": "32 x 10 s, 16 kHz",
        "max_abs_diff": diff,
        "repeats": args.repeats,
    }


BENCHMARKS = {
    "pretrain_step": bench_pretrain_step,
    "features_vs_ast": bench_features_vs_ast,
}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only these (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smaller encoder (smoke runs)")
    args = parser.parse_args(argv)
    results = []
    for name in args.only or list(BENCHMARKS):
        result = BENCHMARKS[name](args)
        result["machine"] = machine()
        results.append(result)
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            status = "PASS" if result["passed"] else "FAIL"
            print(f"{name:18s} ratio {result['ratio']:>7} [{status}] target {result['target']}")
            print("    " + json.dumps({k: v for k, v in result.items() if k not in ("name", "machine")}), flush=True)
    return results


if __name__ == "__main__":
    main()
