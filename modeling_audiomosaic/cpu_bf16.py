"""bf16 mixed precision on CPU: does this CPU compute bf16 natively, and what a bf16 CPU run should be told.

`--bf16 true --use_cpu true` makes transformers' Trainer hand accelerate ``mixed_precision="bf16"``, and accelerate
wraps the model's forward in ``torch.autocast("cpu", dtype=torch.bfloat16)``: matmuls, convolutions and attention run
in bf16, the weights (the optimizer's master copy), the residual stream, LayerNorms and the losses stay fp32 (the
contrastive projector and NT-Xent are kept in fp32 explicitly: `AudioMosaicForPreTraining.project`,
`objective_contrastive`). The backward pass follows the forward's dtypes.

How fast that is depends on the CPU (docs/RESULTS.md, "bf16 pre-training on CPU", has the measurements):

* **AMX-BF16 or AVX512-BF16** (Intel Cooper Lake / Sapphire Rapids and later, AMD Zen 4 and later): oneDNN's native
  bf16 kernels; this is where bf16 pays off (a ViT-B pre-training step 1.74-1.91x faster than fp32 in three runs on
  a 2-core Zen 4 with AVX512-BF16, no AMX).
* **AVX-512 without bf16 instructions**: oneDNN converts to fp32 around its kernels; expect no gain (not measured
  here). A warning is logged.
* **No AVX-512 (AVX2 only)**: torch has no oneDNN bf16 path, and the bf16 matmuls of autocast (the backward's above
  all) fall back to a reference kernel: a pre-training step ran 9-15x slower than fp32 on this project's AVX2 VM. Such
  a run is refused with an error naming the fix (``--bf16 false``), unless ``AUDIOMOSAIC_ALLOW_EMULATED_BF16=1`` is
  set (to check bf16 numerics on such a machine; the tests do).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def cpu_bf16_support() -> dict[str, bool | str]:
    """What this CPU offers bf16 autocast: ``avx512_bf16``, ``amx_bf16`` (AMX tiles), ``native`` (either of them),
    ``avx512`` (oneDNN's bf16 path exists) and torch's ``capability`` string (``AVX2``, ``AVX512``, ...).

    Read from torch's own CPU probes (`torch.cpu._is_avx512_bf16_supported`, `_is_amx_tile_supported`,
    `_is_avx512_supported`: private, so guarded), falling back to the flags of ``/proc/cpuinfo`` where torch lacks them.
    """
    flags = _cpuinfo_flags()
    avx512_bf16 = _torch_probe("_is_avx512_bf16_supported", "avx512_bf16" in flags)
    amx = _torch_probe("_is_amx_tile_supported", "amx_bf16" in flags)  # every AMX CPU so far has AMX-BF16
    capability = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "unknown"
    avx512 = _torch_probe("_is_avx512_supported", "avx512f" in flags and "avx512bw" in flags)
    return {"avx512_bf16": bool(avx512_bf16), "amx_bf16": bool(amx), "native": bool(avx512_bf16 or amx),
            "avx512": bool(avx512), "capability": str(capability)}


def _torch_probe(name: str, fallback: bool) -> bool:
    probe = getattr(torch.cpu, name, None)
    try:
        return bool(probe()) if probe is not None else fallback
    except RuntimeError:
        return fallback


def cpuinfo() -> dict[str, str]:
    """The first processor's ``key: value`` lines of ``/proc/cpuinfo`` (``model name``, ``cpu family``, ``flags``,
    ...); empty where there is no such file."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    info = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def _cpuinfo_flags() -> set[str]:
    return set(cpuinfo().get("flags", "").split())


SLOW_MESSAGE = (
    "bf16 mixed precision (--bf16 true) was requested on a CPU without native bf16 arithmetic (no AVX512-BF16 or "
    "AMX-BF16; torch CPU capability {capability}). {consequence} Pass --bf16 false on this machine; bf16 pays off on "
    "CPUs with AMX or AVX512-BF16 and on GPUs."
)
NO_AVX512 = (
    "Without AVX-512, torch runs autocast's bf16 matmuls in a reference kernel: a pre-training step took 9-15x the "
    "fp32 time on such a CPU (docs/RESULTS.md, \"bf16 pre-training on CPU\"). Set AUDIOMOSAIC_ALLOW_EMULATED_BF16=1 "
    "to run it anyway (e.g. to check bf16 numerics)."
)
AVX512_ONLY = "oneDNN emulates bf16 through fp32 on this CPU, so expect no speed-up over fp32."
ALLOW_ENV = "AUDIOMOSAIC_ALLOW_EMULATED_BF16"


def check_cpu_bf16(bf16: bool, device: torch.device | str, support: dict | None = None) -> str | None:
    """Check a run's bf16 request against the CPU it trains on (see the module docstring): `None` when the run is not
    bf16, not on the CPU, or the CPU has AVX512-BF16 / AMX-BF16; a logged warning (returned) on AVX-512 CPUs without
    bf16 instructions and on AVX2 CPUs with ``AUDIOMOSAIC_ALLOW_EMULATED_BF16=1``; otherwise raises `ValueError`.
    `support` defaults to `cpu_bf16_support()` (tests pass their own)."""
    if not bf16 or torch.device(device).type != "cpu":
        return None
    support = cpu_bf16_support() if support is None else support
    if support["native"]:
        return None
    consequence = AVX512_ONLY if support.get("avx512") else NO_AVX512
    message = SLOW_MESSAGE.format(capability=support.get("capability", "unknown"), consequence=consequence)
    if not support.get("avx512") and os.environ.get(ALLOW_ENV, "") != "1":
        raise ValueError(message)
    logger.warning(message)
    return message


__all__ = ["ALLOW_ENV", "check_cpu_bf16", "cpu_bf16_support"]
