"""Timing and memory helpers shared by the benchmarks (`run_scripts/run_benchmarks.py` and the library's benchmark
modules): variants measured side by side in interleaved bursts, the fastest call reported, and the bytes of the
activations autograd saves. See `docs/RESULTS.md` ("Measurement method") for why bursts and the fastest call."""

from __future__ import annotations

import os
import platform
import time

import torch

from .cpu_bf16 import cpuinfo

__all__ = ["fastest", "interleaved", "machine", "saved_activation_bytes"]


def machine() -> dict:
    """What a benchmark ran on: the CPU's model name and family / model numbers (``/proc/cpuinfo``; the processor
    architecture where that is missing), its torch capability (``AVX2``, ``AVX512``, ...), cores, threads, versions."""
    info = cpuinfo()
    family = f" (family {info['cpu family']} model {info['model']})" if "cpu family" in info and "model" in info else ""
    return {
        "cpu": (info.get("model name") or platform.processor() or platform.machine()) + family,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def interleaved(fns: dict, repeats: int, warmup: int = 1, burst: int = 2) -> dict[str, list[float]]:
    """Run each callable `warmup` times, then `repeats` rounds of all of them in turn, each variant `burst` times back
    to back per round; return every call's time.

    Bursts measure the steady state a data pipeline sees: the first call after another variant (or after the CPU sat
    idle) pays a warm-up cost -- measured ~40 ms per call on this VM, single-threaded too, so not thread-pool wake-up
    but vCPU / cache warm-up -- which is 2x for a 50 ms feature-extraction batch and ~5 % for a 0.8 s ViT forward.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            for _ in range(burst):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return times


def fastest(times: dict[str, list[float]]) -> dict[str, float]:
    """The statistic every benchmark reports: each variant's fastest call (the timeit convention -- on a shared
    machine other processes and warm-up only ever add time)."""
    return {name: min(values) for name, values in times.items()}


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
