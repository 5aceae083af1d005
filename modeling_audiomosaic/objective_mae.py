# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""MSM-MAE objective: reconstruct the log-mel pixels of the masked patches (mean squared error).

Targets are the patches of the normalised log-mel input the encoder saw (16 x 16 = 256 pixels per patch, time-major
token order); with `norm_pix_loss` each target patch is normalised by its own mean and `sqrt(var + 1e-6)` (AudioMAE;
off in MSM-MAE). The loss is the per-patch mean of squared errors, averaged over the masked (and real, not padded)
patches only: `sum(loss * mask) / sum(mask)`.

Imports only torch and sibling modules (copied next to saved models as remote code).
"""

from __future__ import annotations

import torch

from .masking import patchify


def unpatchify(patches: torch.Tensor, grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """Inverse of `patchify`: `(B, T' F', p*p)` -> `(B, T' p, F' p)`."""
    batch = patches.shape[0]
    t, f = grid
    x = patches.reshape(batch, t, f, patch_size, patch_size).permute(0, 1, 3, 2, 4)
    return x.reshape(batch, t * patch_size, f * patch_size)


def mae_reconstruction_loss(
    prediction: torch.Tensor,
    target_patches: torch.Tensor,
    mask: torch.Tensor,
    norm_pix_loss: bool = False,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error on the masked patches.

    Args:
        prediction: `(B, L, P)` predicted pixels per patch.
        target_patches: `(B, L, P)` from `patchify` of the encoder's input.
        mask: `(B, L)` boolean, `True` where the patch was dropped (only those count).
        norm_pix_loss: normalise each target patch by its mean and `sqrt(var + 1e-6)` (unbiased variance, as MAE).
        valid: optional `(B, L)` boolean of real (not padded) patches; padded patches never count.

    Returns:
        Scalar loss (0 with a gradient path if no patch is masked).
    """
    if prediction.shape != target_patches.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target_patches.shape)} differ.")
    target = target_patches.float()
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = (prediction.float() - target).pow(2).mean(dim=-1)  # (B, L)
    weight = mask.float()
    if valid is not None:
        weight = weight * valid.float()
    return (per_patch * weight).sum() / weight.sum().clamp_min(1.0)


__all__ = ["patchify", "unpatchify", "mae_reconstruction_loss"]
