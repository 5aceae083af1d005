"""AudioMosaic's objective: NT-Xent (SimCLR) between two views, with negatives gathered across processes.

For view embeddings ``z0, z1`` (B, d) on rank ``r`` of ``W`` processes, L2-normalised, and the gathered ``Z0, Z1``
(m = B W rows, rank r at rows ``[rB, rB + B)``):

    logits = [[z0 Z1ᵀ, z0 Z0ᵀ without self], [z1 Z0ᵀ, z1 Z1ᵀ without self]] / τ      (2B, 2m - 1)
    labels = rB + arange(B), twice                                                      (the other view of the clip)
    loss   = mean cross-entropy over the 2B rows

Each anchor has one positive and 2m - 2 negatives. Gradients flow through the gathered negatives
(``distributed.gather_with_grad``), so with DDP averaging the update equals the single-process update on the global
batch.

The loss is computed in fp32 even under bf16/fp16 autocast (``torch.autocast(..., enabled=False)``): autocast would run
the ``z @ Zᵀ`` matmuls in bf16, whose 8-bit mantissa rounds a cosine near 1 by up to 2⁻⁹, i.e. ±0.02 on a logit
after the division by τ = 0.1 -- the size of the gaps between a positive and the hardest negatives late in training.
The matmuls are (2B × 2m × d), negligible next to the encoder (docs/RESULTS.md, "bf16 pre-training on CPU").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import gather_no_grad, gather_with_grad, rank, sum_with_grad


@dataclass
class ContrastiveLossOutput:
    """NT-Xent result: ``loss`` (scalar), top-1 ``accuracy`` of picking the positive (scalar, no grad), ``logits``."""

    loss: torch.Tensor
    accuracy: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor


def nt_xent_loss(
    z0: torch.Tensor, z1: torch.Tensor, temperature: float | torch.Tensor = 0.1, gather_distributed: bool = True
) -> ContrastiveLossOutput:
    """NT-Xent between two views. ``z0``/``z1``: (B, d) projector outputs (normalised here).

    See the module docstring.
    """
    if z0.shape != z1.shape or z0.ndim != 2:
        raise ValueError(f"z0 and z1 must both be (batch, dim); got {tuple(z0.shape)} and {tuple(z1.shape)}.")
    with torch.autocast(device_type=z0.device.type, enabled=False):  # fp32 logits under autocast (docstring)
        return _nt_xent_fp32(z0.float(), z1.float(), temperature, gather_distributed)


def _nt_xent_fp32(
    z0: torch.Tensor, z1: torch.Tensor, temperature: float | torch.Tensor, gather_distributed: bool
) -> ContrastiveLossOutput:
    """`nt_xent_loss` on fp32 inputs, outside autocast."""
    batch = z0.shape[0]
    z0 = F.normalize(z0, dim=-1)
    z1 = F.normalize(z1, dim=-1)
    if gather_distributed:
        all0, all1 = gather_with_grad(z0), gather_with_grad(z1)
        offset = rank() * batch
    else:
        all0, all1, offset = z0, z1, 0
    m = all0.shape[0]
    labels = torch.arange(batch, device=z0.device) + offset
    # every column but each row's own one, as a gather (static shapes: torch.compile traces it in one graph)
    others = torch.arange(m - 1, device=z0.device)[None, :].expand(batch, -1)
    others = others + (others >= labels[:, None]).long()  # (B, m - 1)
    l00 = (z0 @ all0.T / temperature).gather(1, others)
    l11 = (z1 @ all1.T / temperature).gather(1, others)
    l01 = z0 @ all1.T / temperature
    l10 = z1 @ all0.T / temperature
    logits = torch.cat([torch.cat([l01, l00], dim=1), torch.cat([l10, l11], dim=1)], dim=0)
    targets = torch.cat([labels, labels])
    loss = F.cross_entropy(logits, targets)
    with torch.no_grad():
        accuracy = (logits.argmax(dim=1) == targets).float().mean()
    return ContrastiveLossOutput(loss=loss, accuracy=accuracy, logits=logits, labels=targets)


class LearnableTemperature(nn.Module):
    """τ = 1 / exp(s), clamped to [min_tau, max_tau], with s initialised to log(1 / init_tau) (CLIP style).

    ``logit_scale`` has shape ``(1,)``, not ``()``: FSDP2's `fully_shard` refuses 0-dim parameters (the original
    checkpoints' 0-dim ``logit_scale`` is reshaped by the converter, `conversion_keys.native_tensor`). `forward`
    returns a 0-dim τ.
    """

    def __init__(self, init_tau: float = 0.07, min_tau: float = 0.01, max_tau: float = 1.0) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.full((1,), math.log(1.0 / init_tau)))
        self.min_tau, self.max_tau = min_tau, max_tau

    def forward(self) -> torch.Tensor:
        return (1.0 / self.logit_scale.exp()).clamp(self.min_tau, self.max_tau).reshape(())


@torch.no_grad()
def alignment_uniformity(z0: torch.Tensor, z1: torch.Tensor, t: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Wang & Isola's metrics on L2-normalised embeddings (lower is better for both):
    alignment = E ||z0 - z1||² (this process's clips), uniformity = log E exp(-t ||zi - zj||²) over the distinct
    pairs of all processes' views.

    Each process computes its own rows against all gathered rows (``(2B, N)``, with ``N`` the global number of view
    rows) and the sums are all-reduced: every distinct pair counted twice, the same mean as over all ``N (N - 1) / 2``
    pairs, without the ``(N, N)`` distance matrix (at 512 clips on each of 12 processes: 50 MB instead of ~1.2 GB of
    temporaries on every GPU, every step). Squared distances of unit vectors as ``2 - 2 cos``.
    """
    z0 = F.normalize(z0.float(), dim=-1)
    z1 = F.normalize(z1.float(), dim=-1)
    alignment = (z0 - z1).pow(2).sum(dim=1).mean()
    local = torch.cat([z0, z1])
    everything = gather_no_grad(local)
    n = everything.shape[0]
    if n < 2:
        return alignment, torch.zeros((), device=local.device)
    with torch.autocast(device_type=local.device.type, enabled=False):  # fp32 cosines, as the loss's logits
        sq = (2.0 - 2.0 * local @ everything.T).clamp_min(0.0)
    kernel = sq.mul(-t).exp().sum(dim=1, keepdim=True) - 1.0  # each row's own pair (distance 0) left out
    total = sum_with_grad(kernel.sum().reshape(1))  # under no_grad: a plain all-reduce of one number
    return alignment, (total[0] / (n * (n - 1))).log()


@torch.no_grad()
def local_intrinsic_dimension(features: torch.Tensor, k: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Method-of-moments LID of each row against the gathered rows (monitoring only, as in the original):
    ``m = mean(a[1:k])``, ``lid = m / (a[k] - m)`` with ``a`` the sorted distances (``a[0]`` = self). Returns mean and
    variance over rows.

    Only the ``k + 1`` nearest distances of each row are selected (``topk``), not all ``N`` of all processes' rows
    sorted: at 512 clips on each of 64 processes a full sort would add ~0.5 GB of int64 indices every step."""
    features = features.float()
    reference = gather_no_grad(features)
    k = min(k, reference.shape[0] - 1)
    if k < 2:
        zero = torch.zeros((), device=features.device)
        return zero, zero
    with torch.autocast(device_type=features.device.type, enabled=False):
        # centred first: cdist's matrix-product form (|x|^2 + |y|^2 - 2 x.y) loses the small distances of features
        # that share a large offset (pooled residual-stream features do: LID off by 3e-4 at offset / spread 30)
        shift = reference.mean(dim=0, keepdim=True)
        dist = torch.cdist(features - shift, reference - shift).topk(k + 1, dim=1, largest=False, sorted=True).values
    m = dist[:, 1:k].mean(dim=1)
    lid = m / (dist[:, k] - m).clamp_min(1e-12)
    return lid.mean(), lid.var(unbiased=False)
