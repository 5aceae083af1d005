#!/usr/bin/env python
"""Benchmarks that report RATIOS measured side by side in one run (this machine is noisy; absolute times are shown
for context only).

    python run_scripts/run_benchmarks.py                 # all benchmarks, a table
    python run_scripts/run_benchmarks.py --only pretrain_step --json

Each benchmark prints one JSON object: ``name``, ``ratio``, ``target``, ``passed`` and its absolute figures plus a
machine description. Variants are interleaved in bursts (A, A, B, B, A, A, ...) and the fastest call of each is
used (`fastest`: other processes and warm-up only add time).

Benchmarks:
* ``pretrain_step``: one AudioMosaic pre-training step (forward + backward, ViT-B/16, 1024x128, two views) with the
  method's masked views (time 0.6 / frequency 0.4, tokens dropped) vs two full unmasked views. Targets: >= 1.9x
  throughput, <= 0.55x memory. Memory = bytes of the activations autograd saves for the backward pass (the part of
  peak training memory that masking changes and that grows with the batch; weights, gradients and optimizer state
  are equal in both variants), counted exactly with `torch.autograd.graph.saved_tensors_hooks`, parameters excluded.
* ``pretrain_step_bf16``: the same pre-training step (masked views) under ``torch.autocast("cpu", torch.bfloat16)``
  -- what `run_pretrain.py --bf16 true --use_cpu true` runs -- vs fp32, for ViT-B/16 and for the demo model
  (`recipes/pretrain_cpu_demo.yaml`'s encoder at its batch of 128). Target: >= 1.8x for ViT-B on a CPU with AMX or
  AVX512-BF16 (the report says whether this CPU has them); at least 10 repeats (1 where bf16 falls back to torch's
  reference GEMM, see the function).
* ``features_vs_ast``: `AudioMosaicFeatureExtractor` vs transformers' `ASTFeatureExtractor` on 32 x 10 s clips
  (target >= 10x).
* ``encoder_vs_timm``: our encoder vs timm's `VisionTransformer` of the same configuration, fp32 and bf16 (>= 0.95x).
* ``encoder_vs_ast``: our encoder vs transformers' `ASTModel` at equal width, depth and ~ token count (>= 1.0x).
* ``bf16``: our bf16 inference vs our fp32 (>= 2.0x, pooled-embedding cosine >= 0.999).
* ``views``: two augmented views per clip on one core vs the original's audiomentations per-view chain (>= 5x).
* ``length_scaling``: embedding time vs clip length 1-30 s (the exponent of a log-log fit) and 10 min of audio.
* ``data_path``: host CPU per pre-training clip (decode FLAC / MP3 / WAV + collate), views on the host vs views on
  the device, one worker thread; host cores per 1,000 clips/s (target: device-view path <= 0.2x;
  `modeling_audiomosaic/data_path_benchmark.py`).

`--quick` uses ViT-small encoders and smaller batches (smoke runs); the recorded numbers use the defaults.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from modeling_audiomosaic.benchmark_timing import fastest, interleaved, machine, saved_activation_bytes
from modeling_audiomosaic.data_path_benchmark import bench_data_path


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
    best = fastest(times)
    speedup = best["full"] / best["masked"]
    memory_ratio = memory["masked"] / memory["full"]
    results.update(
        name="pretrain_step",
        ratio=round(speedup, 3),
        target=">= 1.9x throughput and <= 0.55x activation memory (masked vs full views)",
        passed=bool(speedup >= 1.9 and memory_ratio <= 0.55),
        memory_ratio=round(memory_ratio, 3),
        encoder=f"ViT-{size} 1024x128, batch {batch}, fp32, two views, forward+backward",
        seconds_per_step={k: round(v, 3) for k, v in best.items()},
        clips_per_second={k: round(batch / v, 3) for k, v in best.items()},
        saved_activation_mb={k: round(v / 2**20, 1) for k, v in memory.items()},
        weights_mb=round(weights / 2**20, 1),
        activation_mb_per_clip={k: round(v / 2**20 / batch, 1) for k, v in memory.items()},
        tokens_per_view=tokens,
        repeats=args.repeats,
    )
    return results


def _autocast_step_times(config, batch: int, repeats: int, burst: int = 2) -> dict:
    """Interleaved fastest times of one pre-training step (forward + backward, masked views) in fp32 and under bf16
    CPU autocast (as accelerate wraps the forward for ``mixed_precision="bf16"``; the backward runs outside it), on
    the same weights and inputs; plus both losses."""
    from modeling_audiomosaic import AudioMosaicForPreTraining

    torch.manual_seed(0)
    model = AudioMosaicForPreTraining(config).train()
    x = torch.randn(batch, config.pretraining_num_views, config.max_length, config.num_mel_bins)

    losses = {}

    def step(precision: str) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(x, generator=torch.Generator().manual_seed(0))
        out.loss.backward()
        model.zero_grad(set_to_none=True)
        losses[precision] = round(out.loss.item(), 5)  # same weights and masks every call (no optimizer step)

    fns = {"fp32": lambda: step("fp32"), "bf16": lambda: step("bf16")}
    best = fastest(interleaved(fns, repeats=repeats, burst=burst))
    return {"ratio": best["fp32"] / best["bf16"], "seconds_per_step": {k: round(v, 4) for k, v in best.items()},
            "clips_per_second": {k: round(batch / v, 2) for k, v in best.items()}, "loss": losses}


def _demo_pretraining_config(args):
    """The demo's pre-training config (`recipes/pretrain_cpu_demo.yaml`, parsed as run_pretrain.py does) and batch."""
    import tempfile

    from modeling_audiomosaic.pretraining_run import build_config, parse_args

    recipe = Path(__file__).resolve().parent / "recipes" / "pretrain_cpu_demo.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        model_args, _, training_args = parse_args(["--config", str(recipe), "--output_dir", tmp, "--report_to", "none"])
    batch = training_args.per_device_train_batch_size if not args.quick else 4
    return build_config(model_args), batch


def bench_pretrain_step_bf16(args) -> dict:
    """bf16 autocast vs fp32 pre-training step on this CPU: ViT-B/16 1024x128 (batch `--batch_size`) and the demo
    model (its recipe's batch). At least 10 repeats, except on a CPU without AVX-512, where bf16 runs in torch's
    reference GEMM (9-15x slower than fp32, `modeling_audiomosaic.cpu_bf16`): one call per variant after a warm-up,
    not 20 minutes of them. `--quick`: ViT-tiny with 2 blocks and the demo model at batch 4, `--repeats` as given."""
    from modeling_audiomosaic import AudioMosaicConfig
    from modeling_audiomosaic.cpu_bf16 import cpu_bf16_support

    support = cpu_bf16_support()
    slow = not support["native"] and not support["avx512"]
    repeats, burst = (args.repeats, 2) if args.quick else ((1, 1) if slow else (max(args.repeats, 10), 2))
    size = "tiny" if args.quick else "base"
    overrides = {"num_hidden_layers": 2} if args.quick else {}
    vit_config = AudioMosaicConfig.from_preset("audioset", size, drop_path_rate=0.0, masking_mode="tf", **overrides)
    demo_config, demo_batch = _demo_pretraining_config(args)
    vit = _autocast_step_times(vit_config, args.batch_size, repeats, burst)
    demo = _autocast_step_times(demo_config, demo_batch, repeats, burst)
    return {
        "name": "pretrain_step_bf16",
        "ratio": round(vit["ratio"], 3),
        "target": ">= 1.8x fp32 step time for ViT-B (bf16 autocast, CPU with AMX / AVX512-BF16)",
        "passed": bool(vit["ratio"] >= 1.8),
        "demo_ratio": round(demo["ratio"], 3),
        "vit": {k: v for k, v in vit.items() if k != "ratio"},
        "demo": {k: v for k, v in demo.items() if k != "ratio"},
        "cpu_bf16_support": support,
        "note": None if support["native"] else "this CPU has no AVX512-BF16 / AMX-BF16: bf16 is emulated"
        + (" by torch's reference GEMM (no AVX-512): timed once per variant after a warm-up" if slow else ""),
        "encoder": f"ViT-{size}/16{' (2 blocks)' if args.quick else ''} 1024x128, batch {args.batch_size}, two "
        "masked views (tf), forward+backward; demo: "
        f"{demo_config.num_hidden_layers} blocks x {demo_config.hidden_size}, {demo_config.max_length}x"
        f"{demo_config.num_mel_bins}, batch {demo_batch}",
        "repeats": repeats,
        "burst": burst,
    }


def bench_features_vs_ast(args) -> dict:
    from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor

    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(160000).astype(np.float32) * 0.1 for _ in range(32)]
    ours = AudioMosaicFeatureExtractor.from_preset("audioset")
    ast = _ast_feature_extractor()
    fns = {
        "ours": lambda: ours(clips, sampling_rate=16000, return_tensors="pt"),
        "ast": lambda: ast(clips, sampling_rate=16000, return_tensors="pt"),
    }
    times = interleaved(fns, repeats=args.repeats)
    best = fastest(times)
    diff = float((fns["ours"]()["input_values"] - fns["ast"]()["input_values"]).abs().max())
    ratio = best["ast"] / best["ours"]
    return {
        "name": "features_vs_ast",
        "ratio": round(ratio, 2),
        "target": ">= 10x",
        "passed": bool(ratio >= 10),
        "seconds_per_batch": {k: round(v, 4) for k, v in best.items()},
        "clips": "32 x 10 s, 16 kHz",
        "max_abs_diff": diff,
        "repeats": args.repeats,
    }


def _inference_call(module: torch.nn.Module, inputs: torch.Tensor):
    """A callable that runs `module(inputs)` under `torch.inference_mode()` (what every forward benchmark times)."""

    def call():
        with torch.inference_mode():
            return module(inputs)

    return call


def _encoder_pair_times(ours, theirs, x, repeats, dtype):
    """Interleaved forward times (no grad) of two encoders on the same input, in `dtype` (bf16 via autocast-free
    weight casting, as inference users do: `model.to(torch.bfloat16)`)."""
    x = x.to(dtype)
    fns = {"ours": _inference_call(ours.to(dtype).eval(), x), "theirs": _inference_call(theirs.to(dtype).eval(), x)}
    return fastest(interleaved(fns, repeats=repeats))


def _size(args) -> str:
    return "small" if args.quick else "base"


def _encoder_config(args):
    from modeling_audiomosaic import AudioMosaicConfig

    return AudioMosaicConfig.from_preset("audioset", _size(args), drop_path_rate=0.0)


def _timm_reference(config) -> torch.nn.Module:
    """timm's VisionTransformer built like the original encoder.

    timm comes from its reference folder, torchvision is stubbed.
    """
    from modeling_audiomosaic.timm_reference import OriginalAudioMosaicReference

    return OriginalAudioMosaicReference(frames=1024, mel_bins=128, dim=config.hidden_size,
                                        depth=config.num_hidden_layers, heads=config.num_attention_heads,
                                        mlp_ratio=config.intermediate_size / config.hidden_size)


def _ast_feature_extractor():
    from transformers import ASTFeatureExtractor

    return ASTFeatureExtractor(sampling_rate=16000, num_mel_bins=128, max_length=1024, mean=-4.2677393,
                               std=4.5689974, do_normalize=True)


def bench_encoder_vs_timm(args) -> dict:
    """Our encoder vs timm's VisionTransformer of the same configuration (the original's base class), fp32 and bf16."""
    from modeling_audiomosaic import AudioMosaicModel

    config = _encoder_config(args)
    torch.manual_seed(0)
    ours = AudioMosaicModel(config)
    theirs = _timm_reference(config)
    x = torch.randn(args.batch_size, 1024, 128)
    results, ratios = {}, {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        best = _encoder_pair_times(ours, theirs, x, args.repeats, dtype)
        results[name] = {k: round(v, 4) for k, v in best.items()}
        ratios[name] = round(best["theirs"] / best["ours"], 3)
    return {
        "name": "encoder_vs_timm",
        "ratio": min(ratios.values()),
        "target": ">= 0.95x timm VisionTransformer speed, fp32 and bf16",
        "passed": bool(min(ratios.values()) >= 0.95),
        "ratio_by_dtype": ratios,
        "seconds_per_forward": results,
        "encoder": f"ViT-{_size(args)}/16 1024x128 (513 tokens), batch {args.batch_size}, inference_mode, SDPA both",
        "repeats": args.repeats,
    }


def bench_encoder_vs_ast(args) -> dict:
    """Our encoder vs transformers' ASTModel at equal hidden size, depth, heads and (almost) token count."""
    from transformers import ASTConfig, ASTModel

    from modeling_audiomosaic import AudioMosaicModel

    config = _encoder_config(args)
    torch.manual_seed(0)
    ours = AudioMosaicModel(config)
    # strides 16 x 16 (no overlap): 64 x 8 = 512 patches + CLS + distillation token = 514 tokens (ours: 513)
    ast_config = ASTConfig(hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
                           num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
                           max_length=1024, num_mel_bins=128, frequency_stride=16, time_stride=16, patch_size=16,
                           attn_implementation="sdpa")
    theirs = ASTModel(ast_config)
    x = torch.randn(args.batch_size, 1024, 128)
    best = _encoder_pair_times(ours, theirs, x, args.repeats, torch.float32)
    ratio = best["theirs"] / best["ours"]
    return {
        "name": "encoder_vs_ast",
        "per_block_ms": _block_part_times(ours, theirs, args),
        "ratio": round(ratio, 3),
        "target": ">= 1.0x transformers ASTModel speed",
        "passed": bool(ratio >= 1.0),
        "seconds_per_forward": {k: round(v, 4) for k, v in best.items()},
        "tokens": {"ours": 513, "ast": 514},
        "encoder": f"ViT-{_size(args)}/16, 1024x128, batch {args.batch_size}, fp32, SDPA both",
        "repeats": args.repeats,
    }


def _block_part_times(ours, ast, args) -> dict[str, dict[str, float]]:
    """Where the two encoders differ: the first block, its attention and its MLP, each timed alone (fastest of
    `3 * repeats` bursts, ms) on hidden states of the encoders' token counts (513 / 514)."""
    torch.manual_seed(0)
    x_ours = torch.randn(args.batch_size, 513, ours.config.hidden_size)
    x_ast = torch.randn(args.batch_size, 514, ours.config.hidden_size)
    ours_block, ast_block = ours.layers[0].eval(), ast.layers[0].eval()
    parts = {
        "block": (ours_block, ast_block), "attention": (ours_block.attention, ast_block.attention),
        "mlp": (ours_block.mlp, ast_block.mlp),
    }

    fns = {}
    for part, (mine, theirs) in parts.items():
        fns[f"{part}/ours"] = _inference_call(mine, x_ours)
        fns[f"{part}/ast"] = _inference_call(theirs, x_ast)
    best = fastest(interleaved(fns, repeats=3 * args.repeats, burst=3))
    return {part: {"ours": round(1000 * best[f"{part}/ours"], 2), "ast": round(1000 * best[f"{part}/ast"], 2),
                   "ratio": round(best[f"{part}/ast"] / best[f"{part}/ours"], 3)} for part in parts}


def bench_bf16(args) -> dict:
    """Our bf16 inference vs our fp32 inference, and how close the embeddings stay."""
    from modeling_audiomosaic import AudioMosaicModel

    config = _encoder_config(args)
    torch.manual_seed(0)
    fp32 = AudioMosaicModel(config).eval()
    bf16 = AudioMosaicModel(config).eval()
    bf16.load_state_dict(fp32.state_dict())
    bf16 = bf16.to(torch.bfloat16)
    x = torch.randn(args.batch_size, 1024, 128)

    fns = {"fp32": _inference_call(fp32, x), "bf16": _inference_call(bf16, x.to(torch.bfloat16))}
    times = interleaved(fns, repeats=args.repeats)
    best = fastest(times)
    cosine = torch.nn.functional.cosine_similarity(fns["fp32"]().pooler_output.float(),
                                                   fns["bf16"]().pooler_output.float(), dim=-1)
    ratio = best["fp32"] / best["bf16"]
    return {
        "name": "bf16",
        "ratio": round(ratio, 3),
        "target": ">= 2.0x fp32 speed with embedding cosine >= 0.999",
        "passed": bool(ratio >= 2.0 and float(cosine.min()) >= 0.999),
        "min_cosine": round(float(cosine.min()), 5),
        "seconds_per_forward": {k: round(v, 4) for k, v in best.items()},
        "cpu_bf16_support": _cpu_bf16_flags(),
        "encoder": f"ViT-{_size(args)}/16 1024x128, batch {args.batch_size}, inference_mode, weights cast to bf16",
        "repeats": args.repeats,
    }


def _cpu_bf16_flags() -> list[str]:
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return []
    return sorted(f for f in flags if "bf16" in f or f.startswith("amx"))



def bench_views(args) -> dict:
    """Two augmented log-mel views per 10 s clip, clips/s on ONE core: our batched `ContrastiveViewGenerator` vs the
    original's per-view chain (np.roll + Beta gain, an audiomentations Compose, mean removal, one Kaldi fbank per view).

    * headline `ratio`: the released chain (all 7 transforms: PolarityInversion, TimeStretch 0.7-1.3 p 0.7,
      AddGaussianSNR, Gain, HighPassFilter, BandStopFilter, PitchShift p 0.6) vs ours with the `original_speed` preset
      (the same 5 filters/gains + a resampling speed change p 0.7 standing in for stretch + pitch shift);
    * `ratio_same_transforms`: the 5 transforms both implement (no stretch / pitch) vs our `original` preset;
    * `ratio_vs_numpy_fbank_chain`: the same 5 transforms with transformers' numpy fbank (`ASTFeatureExtractor`)
      per view.

    Every baseline's fbank is OUR `kaldi_fbank` kernel called on one view at a time unless stated (the original's
    torchaudio fbank is not installable here), which makes the baselines faster than the original code.
    """
    from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor
    from modeling_audiomosaic.feature_extraction.augmentation import ContrastiveViewGenerator
    from modeling_audiomosaic.feature_extraction.feature_extraction_audiomosaic import kaldi_fbank
    from modeling_audiomosaic.reference_packages import import_audiomentations

    A = import_audiomentations()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fe = AudioMosaicFeatureExtractor.from_preset("audioset")
        ours = ContrastiveViewGenerator(fe, augmentation="original")
        ours_speed = ContrastiveViewGenerator(fe, augmentation="original_speed")
        fbank_only = ContrastiveViewGenerator(fe, augmentation=None, roll_and_gain=False)
        same5 = A.Compose([A.PolarityInversion(p=0.5), A.AddGaussianSNR(p=0.5), A.Gain(p=0.3),
                           A.HighPassFilter(p=0.3), A.BandStopFilter(p=0.5)])
        released = A.Compose([A.PolarityInversion(p=0.5), A.TimeStretch(min_rate=0.7, max_rate=1.3, p=0.7),
                              A.AddGaussianSNR(p=0.5), A.Gain(p=0.3), A.HighPassFilter(p=0.3),
                              A.BandStopFilter(p=0.5), A.PitchShift(p=0.6)])
        ast = _ast_feature_extractor()
        rng = np.random.default_rng(0)
        batch = 16 if not args.quick else 4
        clips = [(0.1 * rng.standard_normal(160000)).astype(np.float32) for _ in range(batch)]
        generator = torch.Generator().manual_seed(0)

        def augmented_views(chain):
            for clip in clips:
                for _ in range(2):
                    wave = np.roll(clip, rng.integers(0, len(clip))) * (rng.beta(10, 10) + 0.5)
                    wave = chain(samples=wave.astype(np.float32), sample_rate=16000)
                    yield np.ascontiguousarray(wave - wave.mean(), dtype=np.float32)

        def per_view_chain(chain):
            def run():
                views = []
                for wave in augmented_views(chain):
                    feats = kaldi_fbank(torch.from_numpy(wave), num_mel_bins=128)
                    feats = torch.nn.functional.pad(feats, (0, 0, 0, max(0, 1024 - feats.shape[0])))[:1024]
                    views.append((feats + 4.2677393) / (2 * 4.5689974))
                return torch.stack(views)

            return run

        def same5_numpy_fbank():
            return [ast(w, sampling_rate=16000, return_tensors="pt")["input_values"] for w in augmented_views(same5)]

        fns = {
            "ours_original": lambda: ours(clips, generator=generator),
            "ours_original_speed": lambda: ours_speed(clips, generator=generator),
            "ours_fbank_only": lambda: fbank_only(clips, generator=generator),
            "released_chain": per_view_chain(released),
            "same5_chain": per_view_chain(same5),
            "same5_chain_numpy_fbank": same5_numpy_fbank,
        }
        times = interleaved(fns, repeats=args.repeats)
    finally:
        torch.set_num_threads(threads)
    best = fastest(times)
    ratio = best["released_chain"] / best["ours_original_speed"]
    return {
        "name": "views",
        "ratio": round(ratio, 2),
        "target": ">= 5x clips/s per core vs the original-style per-view chain",
        "passed": bool(ratio >= 5),
        "ratio_same_transforms": round(best["same5_chain"] / best["ours_original"], 2),
        "ratio_vs_numpy_fbank_chain": round(best["same5_chain_numpy_fbank"] / best["ours_original"], 2),
        "clips_per_second_per_core": {k: round(batch / v, 2) for k, v in best.items()},
        "ms_per_view": {k: round(1000 * v / (2 * batch), 2) for k, v in best.items()},
        "clips": f"{batch} x 10 s, 2 views each, 1 thread",
        "baseline": f"audiomentations {getattr(A, '__version__', '?')} per view (see the docstring); fbank per view "
        "with our kaldi_fbank kernel (torchaudio is not installable here) unless `numpy_fbank`",
        "repeats": args.repeats,
    }


def bench_length_scaling(args) -> dict:
    """Encoder time vs clip length (1-30 s; > 10.24 s in 50 %-overlapping windows) and chunked embedding of 10 min."""
    from modeling_audiomosaic import AudioMosaicModel
    from modeling_audiomosaic.embeddings import AudioMosaicEmbedder
    from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor

    config = _encoder_config(args)
    torch.manual_seed(0)
    model = AudioMosaicModel(config).eval()
    fe = AudioMosaicFeatureExtractor.from_preset("audioset")
    embedder = AudioMosaicEmbedder(model, fe, batch_size=8)
    rng = np.random.default_rng(0)
    lengths = [1, 2, 5, 10, 20, 30]
    clips = {s: (0.1 * rng.standard_normal(16000 * s)).astype(np.float32) for s in lengths}
    fns = {f"{s}s": (lambda c=clips[s]: embedder.embed(c)) for s in lengths}
    times = interleaved(fns, repeats=args.repeats)
    best = fastest(times)
    secs = np.array([best[f"{s}s"] for s in lengths])
    exponent = float(np.polyfit(np.log(lengths), np.log(secs), 1)[0])
    long_seconds = 600 if not args.quick else 60
    long_clip = (0.1 * rng.standard_normal(16000 * long_seconds)).astype(np.float32)
    flat = AudioMosaicEmbedder(model, fe, batch_size=8, hop_seconds=10.24)  # no overlap for the long clip
    start = time.perf_counter()
    embedding = flat.embed(long_clip)
    long_time = time.perf_counter() - start
    return {
        "name": "length_scaling",
        "ratio": round(exponent, 3),
        "target": "report the exponent of time ~ length^k (1-30 s); ~1 means linear (windows), 2 quadratic",
        "passed": bool(exponent < 1.3),
        "seconds": {f"{s}s": round(best[f"{s}s"], 4) for s in lengths},
        "seconds_per_audio_second": {f"{s}s": round(best[f"{s}s"] / s, 4) for s in lengths},
        "long_clip": {"seconds_of_audio": long_seconds, "embed_seconds": round(long_time, 2),
                      "real_time_factor": round(long_time / long_seconds, 4), "embedding_shape": list(embedding.shape),
                      "windows": "10.24 s, no overlap, 8 per forward"},
        "encoder": f"ViT-{_size(args)}/16, AudioMosaicEmbedder (windows of 1024 frames, hop 512 frames)",
        "repeats": args.repeats,
    }


BENCHMARKS = {
    "pretrain_step": bench_pretrain_step,
    "pretrain_step_bf16": bench_pretrain_step_bf16,
    "features_vs_ast": bench_features_vs_ast,
    "encoder_vs_timm": bench_encoder_vs_timm,
    "encoder_vs_ast": bench_encoder_vs_ast,
    "bf16": bench_bf16,
    "views": bench_views,
    "length_scaling": bench_length_scaling,
    "data_path": bench_data_path,
}


def profile_encoders(args, dtype: torch.dtype = torch.float32, row_limit: int = 10) -> dict[str, str]:
    """torch.profiler op tables (self CPU time) of one forward of our encoder and of timm's `VisionTransformer` of the
    same configuration: the evidence behind `encoder_vs_timm` (same kernels, same counts)."""
    from torch.profiler import ProfilerActivity, profile

    from modeling_audiomosaic import AudioMosaicModel

    config = _encoder_config(args)
    models = {"ours": AudioMosaicModel(config), "timm": _timm_reference(config)}
    x = torch.randn(args.batch_size, 1024, 128, dtype=dtype)
    tables = {}
    for name, model in models.items():
        model = model.to(dtype).eval()
        with torch.inference_mode():
            model(x)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                model(x)
        tables[name] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit)
    return tables


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only these (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smaller encoder (smoke runs)")
    parser.add_argument("--profile_encoders", choices=["fp32", "bf16"], default=None,
                        help="print torch.profiler op tables of our encoder and timm's ViT, then exit")
    args = parser.parse_args(argv)
    if args.profile_encoders:
        dtype = torch.bfloat16 if args.profile_encoders == "bf16" else torch.float32
        for name, table in profile_encoders(args, dtype).items():
            print(f"== {name} ({args.profile_encoders})\n{table}")
        return []
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
