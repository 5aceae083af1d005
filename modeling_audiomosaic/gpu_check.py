# coding=utf-8
"""Check a GPU node: one AudioMosaic pre-training step at the paper's shape, per attention implementation.

`run_scripts/gpu_check.sh` runs this module (issue 17, point 7). On a CUDA device it builds
[`AudioMosaicForPreTraining`] (ViT-B/16, 1024x128, two masked views: view 0 time-masked, view 1 frequency-masked, as
the method does) and times the whole training step -- views, forward, backward, AdamW step -- under bf16 autocast for
each attention implementation (`eager`, `sdpa`, and `flash_attention_2` when the `flash_attn` package is importable;
the encoder dispatches on `config._attn_implementation`, switched with `model.set_attn_implementation`). It reports

* clips/s: `batch * steps / seconds` over `--steps` timed steps after `--warmup` steps, `torch.cuda.synchronize()`
  before and after the timed block;
* peak memory: `torch.cuda.max_memory_allocated()`, its counter reset before each implementation;
* model FLOPs utilisation: the step's FLOPs (counted once by `torch.utils.flop_counter.FlopCounterMode` on a small
  batch, forward + backward, eager attention so that attention appears as matmuls; per clip, times the batch) divided
  by the step time and by the card's dense bf16 peak (`PEAK_BF16_TFLOPS`, or `--peak_tflops`);
* host synchronisations: the points of one training step (views, forward, backward, AdamW) where the host waits
  for the GPU (`torch.cuda.set_sync_debug_mode("warn")`: `.item()`, `bool()`, `.nonzero()`, copies to the host, ...),
  counted with their source lines; the views and the model are written to make none;
* MAM-CLAP's teacher front end: the time of a CLAP teacher's spectrogram for one batch on the device
  (`ClapFeaturesOnDevice`, the default `ClapFeatureExtractor`: 10 s at 48 kHz, `fusion`);
* parity: the max abs difference of the encoder output (last hidden states of both views), the pooled output and the
  loss of every implementation against eager, in fp32 and in bf16 autocast (flash attention runs in bf16 only), on the
  same weights, inputs and masks; plus bf16 eager vs fp32 eager, the size of bf16 rounding itself.

Views (`--views`): `device` computes augmentation + fbank on the GPU inside the step (the `views_from_parameters` path
of `ContrastiveViewGenerator`, issue 17 point 2), `host` computes them with the CPU generator in the training process
(no DataLoader workers: the host cost per clip, not a loader's throughput), `none` feeds precomputed random features
(the model alone). For reading the numbers (issue 17; README "Checking a GPU node"): two masked ViT-B views cost
about 246 GFLOP per clip (counted), so an H100 at 40 % of its bf16 peak makes about 1,600 clips/s.

Without CUDA (and without `--cpu_smoke`) it prints a line starting ``no CUDA device:`` and exits 0. `--cpu_smoke`
runs the whole procedure on the CPU with a tiny model and batch (for CI).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
import warnings
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from NVIDIA's data sheets; matched as a case-insensitive
# substring of `torch.cuda.get_device_name()`, first match wins (so "H100 PCIe" before "H100", "L40S" before "L4").
PEAK_BF16_TFLOPS: tuple[tuple[str, str, float], ...] = (
    ("H100 NVL", "H100 NVL", 835.0),
    ("H100 PCIe", "H100 PCIe", 756.0),
    ("H100", "H100 SXM", 989.0),
    ("H200 NVL", "H200 NVL", 835.0),
    ("H200", "H200", 989.0),  # also matches GH200 (same Hopper peak)
    ("B200", "B200", 2250.0),
    ("A100", "A100", 312.0),
    ("A800", "A800", 312.0),
    ("L40S", "L40S", 362.0),
    ("L40", "L40", 181.0),
    ("L4", "L4", 121.0),
)

ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
VIEW_MODES = ("device", "host", "none")

NO_CUDA_MESSAGE = (
    "no CUDA device: torch {torch} sees no GPU (torch.cuda.is_available() is False{build}); nothing was measured. "
    "Run this on a machine with an NVIDIA GPU and a CUDA build of torch, or pass --cpu_smoke to exercise the whole "
    "procedure on the CPU with a tiny model."
)


def peak_bf16_tflops(device_name: str) -> tuple[float | None, str | None]:
    """The dense bf16 peak of a card from `PEAK_BF16_TFLOPS` and the table row's label, or `(None, None)`."""
    lowered = device_name.lower()
    for key, label, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in lowered:
            return tflops, label
    return None, None


@dataclass
class CheckSetup:
    """Everything one check run needs, built by `build_setup`."""

    device: torch.device
    model: torch.nn.Module
    generator: Any  # ContrastiveViewGenerator
    batch_size: int
    clip_samples: int
    model_label: str
    views: str
    views_note: str | None = None
    extra: dict = field(default_factory=dict)


def _progress(start: float, message: str) -> None:
    print(f"[gpu_check {time.perf_counter() - start:6.1f}s] {message}", file=sys.stderr, flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def has_device_views(generator: Any) -> bool:
    """Whether the view generator has the device path (`sample_view_parameters` + `views_from_parameters`)."""
    return hasattr(generator, "sample_view_parameters") and hasattr(generator, "views_from_parameters")


def set_attention(model: torch.nn.Module, implementation: str) -> None:
    """Switch the encoder's attention (`config._attn_implementation`, read by every attention layer at call time)."""
    model.set_attn_implementation(implementation)
    if model.config._attn_implementation != implementation:
        raise RuntimeError(f"could not switch the attention to {implementation!r}: the model kept "
                           f"{model.config._attn_implementation!r}.")


def build_setup(args: argparse.Namespace, device: torch.device) -> CheckSetup:
    """The model (training mode, on `device`), the view generator and the resolved view mode."""
    from modeling_audiomosaic import (
        AudioMosaicConfig,
        AudioMosaicFeatureExtractor,
        AudioMosaicForPreTraining,
        ContrastiveViewGenerator,
    )

    torch.manual_seed(args.seed)
    if args.cpu_smoke:  # tiny encoder: 64 frames x 32 mel bins, 4 x 2 patches (the test suite's tiny shape)
        config = AudioMosaicConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                   max_length=64, num_mel_bins=32, projection_hidden_size=16, projection_dim=8,
                                   drop_path_rate=0.0, mask_grid=args.mask_grid)
        extractor = AudioMosaicFeatureExtractor.from_preset("audioset", num_mel_bins=32, max_length=64)
        label = "tiny test encoder (2 blocks, width 32), 64x32"
    else:  # the paper's recipe (run_scripts/recipes/pretrain_paper.yaml): ViT-B/16, 1024 x 128, drop path 0.1
        config = AudioMosaicConfig.from_preset("audioset", "base", mask_grid=args.mask_grid)
        extractor = AudioMosaicFeatureExtractor.from_preset("audioset")
        label = "ViT-B/16, 1024x128"
    model = AudioMosaicForPreTraining(config).to(device).train()
    generator = ContrastiveViewGenerator(feature_extractor=extractor, augmentation="original", num_views=2)
    # 10 s clips as in AudioSet (shorter for the tiny smoke shape); 1024 frames need 10.25 s, the rest is padding
    clip_samples = min(10 * extractor.sampling_rate, generator.num_samples)
    views, note = args.views, None
    if views == "device" and not has_device_views(generator):
        views = "none"
        note = ("ContrastiveViewGenerator has no sample_view_parameters / views_from_parameters (the device view path "
                "of issue 17 point 2 is not in this checkout): timed with precomputed features (--views none) instead")
    return CheckSetup(device=device, model=model, generator=generator, batch_size=args.batch_size,
                      clip_samples=clip_samples, model_label=label, views=views, views_note=note)


def make_view_source(setup: CheckSetup, seed: int) -> Callable[[int], torch.Tensor]:
    """`source(step) -> (batch, 2, frames, mel)` features on the device for the chosen view mode (no autograd)."""
    device, gen, batch = setup.device, setup.generator, setup.batch_size
    rng = torch.Generator().manual_seed(seed)
    waves = 0.1 * torch.randn(batch, setup.clip_samples, generator=rng)  # white noise: every augmentation applies
    if device.type == "cuda":
        waves = waves.pin_memory()
    lengths = torch.full((batch,), setup.clip_samples, dtype=torch.long)
    if setup.views == "none":
        mel = int(gen.feature_extractor.num_mel_bins)
        features = torch.randn(batch, gen.num_views, gen.max_length, mel, generator=rng).to(device)
        return lambda step: features
    if setup.views == "host":
        def host(step: int) -> torch.Tensor:
            return gen(waves, generator=seed + step).to(device, non_blocking=True)
        return host

    def on_device(step: int) -> torch.Tensor:
        params = gen.sample_view_parameters(lengths, torch.Generator().manual_seed(seed + step))
        return gen.views_from_parameters(waves.to(device, non_blocking=True), lengths, params)
    return on_device


def count_step_flops(model: torch.nn.Module, features: torch.Tensor, precision: str) -> tuple[float, tuple]:
    """FLOPs of one forward + backward on `features` (eager attention, so attention is counted as its matmuls) and
    the tokens each view kept. Gradients are cleared afterwards."""
    from torch.utils.flop_counter import FlopCounterMode

    set_attention(model, "eager")
    with FlopCounterMode(display=False) as counter:
        with _autocast(features.device, precision):
            out = model(features)
        out.loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops()), tuple(int(n) for n in out.num_kept_tokens)


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def attention_parity(model: torch.nn.Module, features: torch.Tensor, implementations: list[str]) -> dict:
    """Max abs differences vs eager of the encoder output (last hidden states, both views), pooled output and loss,
    in fp32 and in bf16 autocast, on the same weights, inputs and masks (eval mode, `apply_masking=True`)."""
    device = features.device
    was_training = model.training
    model.eval()
    outputs: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    failures: dict[str, str] = {}
    for precision in ("fp32", "bf16"):
        for impl in implementations:
            if impl == "flash_attention_2" and precision == "fp32":
                continue  # flash attention has no fp32 kernel
            try:
                set_attention(model, impl)
                masks = torch.Generator(device=device).manual_seed(0)
                with torch.no_grad(), _autocast(device, precision):
                    out = model(features, apply_masking=True, generator=masks, output_hidden_states=True)
            except Exception as error:  # a broken back-end must not cost the rest of a GPU session; eager must work
                if impl == "eager":
                    raise
                failures[f"{precision} {impl}"] = _error_text(error)
                continue
            outputs[(precision, impl)] = (out.hidden_states[-1].float(), out.pooled_output.float(), out.loss.float())
            del out
    model.train(was_training)
    report: dict[str, Any] = {"errors": failures} if failures else {}

    def compare(a, b) -> dict[str, float]:
        return {"encoder_max_abs": _max_abs(a[0], b[0]), "pooled_max_abs": _max_abs(a[1], b[1]),
                "loss_abs": _max_abs(a[2], b[2])}

    for precision in ("fp32", "bf16"):
        reference = outputs[(precision, "eager")]
        report[precision] = {f"{impl}_vs_eager": compare(outputs[(precision, impl)], reference)
                             for impl in implementations if impl != "eager" and (precision, impl) in outputs}
    report["bf16_eager_vs_fp32_eager"] = compare(outputs[("bf16", "eager")], outputs[("fp32", "eager")])
    return report


def time_implementation(setup: CheckSetup, optimizer: torch.optim.Optimizer, source: Callable[[int], torch.Tensor],
                        impl: str, args: argparse.Namespace) -> dict:
    """Clips/s and peak memory of `--steps` training steps (after `--warmup`) with attention `impl`."""
    model, device, batch = setup.model, setup.device, setup.batch_size
    set_attention(model, impl)
    model.train()

    def step(index: int) -> None:
        with torch.no_grad():
            features = source(index)
        with _autocast(device, args.precision):
            out = model(features)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        for index in range(args.warmup):
            step(index)
        _sync(device)
        start = time.perf_counter()
        for index in range(args.steps):
            step(args.warmup + index)
        _sync(device)
        seconds = (time.perf_counter() - start) / args.steps
    except torch.OutOfMemoryError:
        optimizer.zero_grad(set_to_none=True)
        return {"error": f"out of memory at batch {batch}: pass a smaller --batch_size"}
    result = {"batch_size": batch, "seconds_per_step": seconds, "clips_per_second": batch / seconds}
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result


def count_host_syncs(setup: CheckSetup, optimizer: torch.optim.Optimizer, source: Callable[[int], torch.Tensor],
                     args: argparse.Namespace) -> dict | None:
    """The host synchronisations of one training step on CUDA (SDPA attention, after one untimed step that builds the
    optimizer state and the cached constants), counted by torch's sync debug mode: ``{"count": n, "sites":
    {"file:line": n, ...}}`` (the ten most frequent); None off CUDA (the mode exists for CUDA only). A lower bound:
    the mode reports the synchronising calls torch knows of, not a non-blocking copy from pageable host memory."""
    device = setup.device
    if device.type != "cuda":
        return None
    set_attention(setup.model, "sdpa")  # the same step whatever the parity check left set
    setup.model.train()

    def step(index: int) -> None:
        with torch.no_grad():
            features = source(index)
        with _autocast(device, args.precision):
            out = setup.model(features)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(20_000)
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step(20_001)
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sync_sites(caught)


def time_clap_teacher(setup: CheckSetup, repeats: int = 3) -> float:
    """Seconds for a CLAP teacher's ``input_features`` of one batch of 10.24 s clips on the device (the fastest of
    `repeats` after a warm-up call), from its host plan and the student's 16 kHz crops, resampled to 48 kHz on the
    device as in training (`ClapFeaturesOnDevice`)."""
    import numpy as np  # noqa: PLC0415
    from transformers import ClapFeatureExtractor  # noqa: PLC0415

    from .feature_extraction.clap_device import ClapFeaturesOnDevice  # noqa: PLC0415

    front_end = ClapFeaturesOnDevice(ClapFeatureExtractor())
    clips = torch.randn(setup.batch_size, 163840, generator=torch.Generator().manual_seed(0)) * 0.1
    host = front_end.plan(list(clips.numpy()), np.random.RandomState(0), waveforms=False)
    crops = clips.to(setup.device)
    return _fastest_seconds(lambda index: front_end(front_end.teacher_waveforms(crops, host["teacher_plan"]),
                                                    host["teacher_plan"]), setup.device, repeats)


def _fastest_seconds(call: Callable[[int], Any], device: torch.device, repeats: int) -> float:
    """The fastest of `repeats` timed ``call(index)``s after one warm-up call, the device synchronised around each."""
    best = float("inf")
    for index in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        call(index)
        _sync(device)
        if index:
            best = min(best, time.perf_counter() - start)
    return best


def sync_sites(caught: list[warnings.WarningMessage]) -> dict:
    """``{"count", "sites"}`` of the synchronisation warnings among `caught` (torch's sync debug mode words them
    "called a synchronizing CUDA operation")."""
    sites = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message))
    return {"count": sum(sites.values()), "sites": dict(sites.most_common(10))}


def time_views(setup: CheckSetup, source: Callable[[int], torch.Tensor], repeats: int) -> float | None:
    """Seconds to make one batch of views (the fastest of `repeats`, after one warm-up call), or None for `none`."""
    if setup.views == "none":
        return None
    with torch.no_grad():
        return _fastest_seconds(lambda index: source(10_000 + index), setup.device, repeats)


def available_implementations(requested: list[str], device: torch.device) -> tuple[list[str], dict[str, str]]:
    """The requested implementations that can run here, and why the others cannot."""
    from transformers.utils import is_flash_attn_2_available

    usable, skipped = [], {}
    for impl in requested:
        if impl == "flash_attention_2" and (device.type != "cuda" or not is_flash_attn_2_available()):
            skipped[impl] = ("needs a CUDA device and the flash_attn package (pip install flash-attn)"
                             if device.type == "cuda" else "CUDA only")
        else:
            usable.append(impl)
    return usable, skipped


def _versions() -> dict[str, str | None]:
    import transformers

    try:
        import flash_attn  # noqa: F401  (version only)
        flash = getattr(flash_attn, "__version__", "installed")
    except (ImportError, OSError, RuntimeError):  # absent, or built against another torch / CUDA
        flash = None
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
            "flash_attn": flash, "python": platform.python_version()}


def measure_matmul_tflops(device: torch.device, size: int = 8192, repeats: int = 100) -> float:
    """Dense bf16 matrix-product throughput of this device (TFLOP/s, ``size``³ products, after 3 warm-ups): what the
    card reaches in practice, often below its specification's peak (MFU is reported against both)."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync(device)
    begin = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - begin) / 1e12


def run_check(args: argparse.Namespace) -> dict:
    """The whole check; returns the JSON-able report.

    A failing phase does not lose the others: each failure is recorded under ``errors`` (and a failure outside the
    guarded phases stops the check with what was measured so far), so one short GPU session always yields a report.
    """
    start = time.perf_counter()
    device = torch.device("cpu") if args.cpu_smoke else torch.device("cuda")
    device_name = "cpu (smoke)" if args.cpu_smoke else torch.cuda.get_device_name(device)
    report: dict[str, Any] = {
        "name": "gpu_check", "device": device_name, **_versions(), "model": None, "tokens_per_view": [],
        "precision": args.precision, "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
        "mask_grid": args.mask_grid, "checkpointed_blocks": None, "views": args.views, "views_requested": args.views,
        "views_note": None, "views_seconds_per_batch": None, "gflop_per_clip": None, "peak_tflops": None,
        "peak_tflops_source": None, "matmul_tflops": None, "host_syncs_per_step": None,
        "clap_teacher_seconds_per_batch": None, "variants": {}, "parity": None, "errors": {},
    }
    try:
        _run_phases(args, device, report, start)
    except Exception as error:  # keep what was measured: report it with the error
        report["errors"]["check"] = _error_text(error)
        _progress(start, f"stopped: {report['errors']['check']}")
    report["wall_seconds"] = time.perf_counter() - start
    _progress(start, "done")
    return report


def _run_phases(args: argparse.Namespace, device: torch.device, report: dict, start: float) -> None:
    """`run_check`'s phases, filling ``report`` as they finish."""
    _progress(start, f"device {report['device']}; building the model")
    setup = build_setup(args, device)
    model = setup.model
    layers = model.audiomosaic.layers
    checkpointed = sum(bool(getattr(layer, "gradient_checkpointing", False)) for layer in layers)
    report.update(model=setup.model_label, batch_size=setup.batch_size, views=setup.views,
                  checkpointed_blocks=f"{checkpointed}/{len(layers)}")
    if setup.views_note:
        _progress(start, setup.views_note)
    implementations, skipped = available_implementations(args.attention, device)
    mel = int(setup.generator.feature_extractor.num_mel_bins)
    probe = torch.randn(min(args.batch_size, args.parity_batch), 2, setup.generator.max_length, mel,
                        generator=torch.Generator().manual_seed(args.seed)).to(device)

    _progress(start, f"counting the step's FLOPs (batch {probe.shape[0]}, forward + backward)")
    flops_per_clip = None
    try:
        flops, tokens = count_step_flops(model, probe, args.precision)
        flops_per_clip = flops / probe.shape[0]
        report.update(gflop_per_clip=flops_per_clip / 1e9, tokens_per_view=list(tokens))
        _progress(start, f"{flops_per_clip / 1e9:.1f} GFLOP per clip; tokens per view {tokens}")
    except Exception as error:  # no MFU then, but the timings are still worth having
        report["errors"]["flop_count"] = _error_text(error)
        _progress(start, f"FLOP count failed: {report['errors']['flop_count']}")

    if not args.skip_parity:
        # eager is the reference, compared also when only other implementations are timed
        compared = ["eager"] + [impl for impl in implementations if impl != "eager"]
        _progress(start, f"parity of {', '.join(compared)} (batch {probe.shape[0]}, fp32 and bf16)")
        try:
            report["parity"] = attention_parity(model, probe, compared)
        except Exception as error:
            report["errors"]["parity"] = _error_text(error)
            _progress(start, f"parity failed: {report['errors']['parity']}")
    del probe

    if device.type == "cuda":
        try:
            report["matmul_tflops"] = measure_matmul_tflops(device)
            _progress(start, f"bf16 matrix products: {report['matmul_tflops']:.0f} TFLOP/s")
        except Exception as error:
            report["errors"]["matmul"] = _error_text(error)
    source = make_view_source(setup, args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, weight_decay=0.05)  # the paper recipe's optimiser
    if setup.views != "none":
        _progress(start, f"timing the {setup.views} views alone")
        try:
            report["views_seconds_per_batch"] = time_views(setup, source, repeats=3)
        except Exception as error:  # the step is still worth timing on precomputed features
            setup.views_note = f"--views {setup.views} failed ({_error_text(error)}): timed with --views none instead"
            _progress(start, setup.views_note)
            setup.views = "none"
            source = make_view_source(setup, args.seed)
    report.update(views=setup.views, views_note=setup.views_note)
    try:
        report["clap_teacher_seconds_per_batch"] = time_clap_teacher(setup)
    except Exception as error:
        report["errors"]["clap_teacher"] = _error_text(error)
    try:
        report["host_syncs_per_step"] = count_host_syncs(setup, optimizer, source, args)
        if report["host_syncs_per_step"] is not None:
            _progress(start, f"host synchronisations in one step: {report['host_syncs_per_step']}")
    except Exception as error:
        report["errors"]["host_syncs"] = _error_text(error)
    peak, peak_label = (args.peak_tflops, "--peak_tflops") if args.peak_tflops else peak_bf16_tflops(report["device"])
    report.update(peak_tflops=peak, peak_tflops_source=peak_label)
    variants = report["variants"]
    for impl in implementations:
        _progress(start, f"timing {impl}: {args.warmup} warm-up + {args.steps} steps at batch {setup.batch_size}")
        try:
            result = time_implementation(setup, optimizer, source, impl, args)
        except Exception as error:  # e.g. a flash_attn build that does not match this torch: report, go on
            optimizer.zero_grad(set_to_none=True)
            result = {"error": _error_text(error)}
            if isinstance(error, torch.cuda.OutOfMemoryError):
                result["error"] = (f"out of memory at batch {setup.batch_size}: rerun with --batch_size "
                                   f"{max(setup.batch_size // 2, 1)} ({result['error'][:200]})")
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        if "seconds_per_step" in result and flops_per_clip:
            achieved = flops_per_clip * setup.batch_size / result["seconds_per_step"] / 1e12  # TFLOP/s
            result["tflops"] = achieved
            if peak:
                result["mfu"] = achieved / peak
            if report["matmul_tflops"]:
                result["mfu_of_matmul"] = achieved / report["matmul_tflops"]
        variants[impl] = result
        _progress(start, f"{impl}: {_summary(result)}")
    variants.update({impl: {"skipped": reason} for impl, reason in skipped.items()})


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]


def _summary(result: dict) -> str:
    if "clips_per_second" not in result:
        return result.get("error") or result.get("skipped", "")
    text = f"{result['clips_per_second']:.1f} clips/s, {result['seconds_per_step'] * 1e3:.1f} ms/step"
    if "peak_memory_gib" in result:
        text += f", peak {result['peak_memory_gib']:.2f} GiB"
    return text


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:.1f} %"


def format_table(report: dict) -> str:
    """The human-readable table of a report."""
    lines = [f"AudioMosaic pre-training step on {report['device']}: {report['model']}, tokens per view "
             f"{report['tokens_per_view']}, batch {report['batch_size']}, {report['precision']}, views "
             f"{report['views']}, {_fmt(report['gflop_per_clip'], '.4g')} GFLOP per clip, peak "
             f"{_fmt(report['peak_tflops'], '.0f')} TFLOP/s ({report['peak_tflops_source'] or 'unknown card'}), "
             f"bf16 matrix products {_fmt(report['matmul_tflops'], '.0f')} TFLOP/s",
             f"{'attention':<20}{'clips/s':>10}{'ms/step':>10}{'peak GiB':>10}{'MFU':>8}"]
    for impl, result in report["variants"].items():
        if "clips_per_second" not in result:
            lines.append(f"{impl:<20}{result.get('error') or 'skipped: ' + result['skipped']}")
            continue
        lines.append(f"{impl:<20}{result['clips_per_second']:>10.1f}{result['seconds_per_step'] * 1e3:>10.1f}"
                     f"{_fmt(result.get('peak_memory_gib'), '.2f'):>10}{_percent(result.get('mfu')):>8}")
    if report["views_seconds_per_batch"] is not None:
        lines.append(f"views alone ({report['views']}): {report['views_seconds_per_batch'] * 1e3:.1f} ms per batch")
    if report["host_syncs_per_step"] is not None:
        lines.append(f"host synchronisations in one step: {_syncs_text(report['host_syncs_per_step'])}")
    if report["clap_teacher_seconds_per_batch"] is not None:
        lines.append(f"CLAP teacher spectrogram: {_clap_text(report)}")
    if report["parity"]:
        lines.append(f"{'parity (max abs)':<36}{'encoder':>10}{'pooled':>10}{'loss':>10}")
        for name, row in _parity_rows(report["parity"]):
            lines.append(f"{name:<36}{row['encoder_max_abs']:>10.2e}{row['pooled_max_abs']:>10.2e}"
                         f"{row['loss_abs']:>10.2e}")
        lines += [f"{name}: failed: {text}" for name, text in report["parity"].get("errors", {}).items()]
    if report["views_note"]:
        lines.append(f"note: {report['views_note']}")
    lines += [f"error ({phase}): {text}" for phase, text in report["errors"].items()]
    return "\n".join(lines)


def _clap_text(report: dict) -> str:
    seconds = report["clap_teacher_seconds_per_batch"]
    per_clip = seconds * 1e3 / report["batch_size"]
    return f"{seconds * 1e3:.1f} ms per batch of {report['batch_size']} ({per_clip:.2f} ms per clip)"


def _syncs_text(syncs: dict) -> str:
    sites = ", ".join(f"{site} ×{n}" for site, n in syncs["sites"].items())
    return f"{syncs['count']}" + (f" ({sites})" if sites else "")


def _parity_rows(parity: dict) -> list[tuple[str, dict]]:
    rows = [(f"{precision} {name.replace('_vs_', ' vs ')}", row)
            for precision in ("fp32", "bf16") for name, row in parity[precision].items()]
    return rows + [("bf16 eager vs fp32 eager", parity["bf16_eager_vs_fp32_eager"])]


def format_markdown(report: dict, command: str) -> str:
    """A block ready to paste into docs/RESULTS.md."""
    date = time.strftime("%Y-%m-%d", time.gmtime())
    versions = (f"torch {report['torch']}, CUDA {report['cuda']}, transformers {report['transformers']}, "
                f"flash-attn {report['flash_attn'] or 'not installed'}")
    tokens = " + ".join(map(str, report["tokens_per_view"]))
    lines = [f"#### GPU check: {report['device']} ({date})", "",
             f"`{command}` ({versions}). {report['model']}, two masked views ({tokens} tokens), "
             f"{report['precision']} autocast, AdamW, batch {report['batch_size']}, views {report['views']}, "
             f"{report['warmup']} warm-up + {report['steps']} timed steps; {_fmt(report['gflop_per_clip'], '.4g')} "
             "GFLOP per clip (forward + backward, counted); MFU against the card's "
             f"{_fmt(report['peak_tflops'], '.0f')} TFLOP/s dense bf16 peak, and against the "
             f"{_fmt(report['matmul_tflops'], '.0f')} TFLOP/s its bf16 matrix products reached here. Settings: mask "
             f"grid `{report['mask_grid']}`, activation checkpointing of {report['checkpointed_blocks'] or '-'} "
             "blocks, eager PyTorch (no torch.compile)"
             + ("; the views' random parameters are drawn on the host inside the timed step (data workers do it in "
                "training)." if report["views"] == "device" else "."),
             "", "| attention | clips/s | ms/step | peak memory (GiB) | MFU (spec) | MFU (matmul) |",
             "|---|---|---|---|---|---|"]
    for impl, result in report["variants"].items():
        if "clips_per_second" not in result:
            lines.append(f"| {impl} | {result.get('error') or 'skipped: ' + result['skipped']} | | | | |")
            continue
        lines.append(f"| {impl} | {result['clips_per_second']:.0f} | {result['seconds_per_step'] * 1e3:.1f} | "
                     f"{_fmt(result.get('peak_memory_gib'), '.1f')} | {_percent(result.get('mfu'))} | "
                     f"{_percent(result.get('mfu_of_matmul'))} |")
    if report["views_seconds_per_batch"] is not None:
        lines += ["", f"Views alone ({report['views']}): {report['views_seconds_per_batch'] * 1e3:.1f} ms per batch."]
    if report["host_syncs_per_step"] is not None:
        lines += ["", "Host synchronisations in one step (SDPA, after a warm-up step; torch's sync debug mode, a lower "
                  f"bound): {_syncs_text(report['host_syncs_per_step'])}."]
    if report["clap_teacher_seconds_per_batch"] is not None:
        lines += ["", f"MAM-CLAP teacher spectrogram on the device (`ClapFeaturesOnDevice`): {_clap_text(report)}."]
    if report["parity"]:
        lines += ["", "| parity (max abs difference) | encoder output | pooled | loss |", "|---|---|---|---|"]
        lines += [f"| {name} | {row['encoder_max_abs']:.1e} | {row['pooled_max_abs']:.1e} | {row['loss_abs']:.1e} |"
                  for name, row in _parity_rows(report["parity"])]
        lines += [f"| {name} | failed: {text} | | |" for name, text in report["parity"].get("errors", {}).items()]
    if report["views_note"]:
        lines += ["", f"Note: {report['views_note']}."]
    lines += [f"Error ({phase}): {text}" for phase, text in report["errors"].items()]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run_scripts/gpu_check.sh",
        description="Throughput, peak memory, MFU and attention parity of an AudioMosaic pre-training step on a GPU.")
    parser.add_argument("--batch_size", type=int, default=None, help="clips per step (default 128; 4 with --cpu_smoke)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 10; 2 with --cpu_smoke)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; 1 with --cpu_smoke)")
    parser.add_argument("--attention", nargs="+", choices=ATTENTION_IMPLEMENTATIONS,
                        default=list(ATTENTION_IMPLEMENTATIONS),
                        help="attention implementations to time (flash_attention_2 is skipped without flash_attn); "
                             "the FLOP count and the parity check use eager as their reference in any case")
    parser.add_argument("--views", choices=VIEW_MODES, default="device",
                        help="where the two augmented views are made: on the device inside the step, on the host "
                             "(CPU generator), or none (precomputed random features)")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="autocast dtype of the step")
    parser.add_argument("--mask_grid", choices=("true", "original"), default="true",
                        help="masking grid: the paper's (201 + 257 tokens) or the released code's (193 + 305)")
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="the card's dense bf16 peak in TFLOP/s (default: from the table by device name); MFU "
                             "is always against this bf16 peak, also with --precision fp32")
    parser.add_argument("--parity_batch", type=int, default=8, help="clips of the parity check and FLOP count")
    parser.add_argument("--skip_parity", action="store_true", help="skip the eager/SDPA/flash parity check")
    parser.add_argument("--markdown", nargs="?", const="-", default=None, metavar="PATH",
                        help="also print a markdown block for docs/RESULTS.md, or append it to PATH")
    parser.add_argument("--cpu_smoke", action="store_true",
                        help="run the whole procedure on the CPU with a tiny model and batch (tests the code path)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    defaults = {"batch_size": (4, 128), "steps": (2, 10), "warmup": (1, 3)}
    for name, (smoke, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.cpu_smoke else full)
    for name in ("batch_size", "steps", "parity_batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Command line of `run_scripts/gpu_check.sh`; returns the exit status (0 also when there is no CUDA device)."""
    args = parse_args(argv)
    if not args.cpu_smoke and not torch.cuda.is_available():
        build = "" if torch.version.cuda else "; this torch build has no CUDA support"
        print(NO_CUDA_MESSAGE.format(torch=torch.__version__, build=build), flush=True)
        return 0
    report = run_check(args)
    print(format_table(report))
    if args.markdown:
        command = "bash run_scripts/gpu_check.sh " + " ".join(sys.argv[1:] if argv is None else argv)
        block = format_markdown(report, command.strip())
        if args.markdown == "-":
            print(block)
        else:
            with Path(args.markdown).open("a", encoding="utf-8") as handle:
                handle.write("\n" + block)
            print(f"markdown block appended to {args.markdown}")
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
