"""bf16 mixed precision on CPU: does this CPU compute bf16 natively, and what a bf16 CPU run should be told.

`--bf16 true --use_cpu true` makes transformers' Trainer hand accelerate ``mixed_precision="bf16"``, and accelerate
wraps the model's forward in ``torch.autocast("cpu", dtype=torch.bfloat16)``: matmuls, convolutions and attention run
in bf16, the weights (the optimizer's master copy), the residual stream, LayerNorms and the losses stay fp32 (the
contrastive projector and NT-Xent are kept in fp32 explicitly: `AudioMosaicForPreTraining.project`,
`objective_contrastive`). The backward pass follows the forward's dtypes.

oneDNN runs those bf16 kernels fast only on CPUs with AVX512-BF16 or AMX-BF16 (Intel Cooper Lake / Sapphire Rapids
and later, AMD Zen 4 and later); on others (AVX2, plain AVX-512) it converts to fp32 and back around every kernel, so
bf16 autocast computes the same thing *slower* than fp32. Training still works (the numerics are the same), so such a
run is not refused: `warn_if_cpu_bf16_is_emulated` logs a warning with the measured cost and the fix (docs/RESULTS.md,
"bf16 pre-training on CPU", has the ratios of both kinds of CPU).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def cpu_bf16_support() -> dict[str, bool | str]:
    """What this CPU offers bf16 autocast: ``avx512_bf16``, ``amx_bf16`` (AMX tiles), ``native`` (either of them) and
    torch's ``capability`` string (``AVX2``, ``AVX512``, ...).

    Read from torch's own CPU probes (`torch.cpu._is_avx512_bf16_supported`, `torch.cpu._is_amx_tile_supported`:
    private, so guarded), falling back to the flags of ``/proc/cpuinfo`` where torch lacks them.
    """
    flags = _cpuinfo_flags()
    avx512_bf16 = _torch_probe("_is_avx512_bf16_supported", "avx512_bf16" in flags)
    amx = _torch_probe("_is_amx_tile_supported", "amx_bf16" in flags)  # every AMX CPU so far has AMX-BF16
    capability = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "unknown"
    return {"avx512_bf16": bool(avx512_bf16), "amx_bf16": bool(amx), "native": bool(avx512_bf16 or amx),
            "capability": str(capability)}


def _torch_probe(name: str, fallback: bool) -> bool:
    probe = getattr(torch.cpu, name, None)
    try:
        return bool(probe()) if probe is not None else fallback
    except RuntimeError:
        return fallback


def _cpuinfo_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


EMULATED_MESSAGE = (
    "bf16 mixed precision was requested on a CPU without native bf16 arithmetic (no AVX512-BF16 or AMX-BF16; torch "
    "CPU capability {capability}): bf16 autocast is emulated through fp32 here, so training gives the same results "
    "but runs SLOWER than fp32 (a ViT-B pre-training step took {slowdown} the fp32 time on such a CPU, docs/RESULTS.md "
    "\"bf16 pre-training on CPU\"). Drop --bf16 (or pass --bf16 false) on this machine; bf16 pays off on CPUs with "
    "AMX or AVX512-BF16 and on GPUs."
)


def warn_if_cpu_bf16_is_emulated(bf16: bool, device: torch.device | str, support: dict | None = None) -> str | None:
    """Log (and return) a warning when a run asks for bf16 autocast on a CPU that only emulates bf16; `None` when the
    run is not bf16, not on the CPU, or the CPU has AVX512-BF16 / AMX-BF16. `support` defaults to
    `cpu_bf16_support()` (tests pass their own)."""
    if not bf16 or torch.device(device).type != "cpu":
        return None
    support = cpu_bf16_support() if support is None else support
    if support["native"]:
        return None
    message = EMULATED_MESSAGE.format(capability=support.get("capability", "unknown"), slowdown=EMULATED_SLOWDOWN)
    logger.warning(message)
    return message


# measured by `python run_scripts/run_benchmarks.py --only pretrain_step_bf16` on the AVX2 VM (docs/RESULTS.md)
EMULATED_SLOWDOWN = "about 2x"

__all__ = ["EMULATED_MESSAGE", "cpu_bf16_support", "warn_if_cpu_bf16_is_emulated"]
