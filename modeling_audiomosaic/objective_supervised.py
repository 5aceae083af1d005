# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""SupMAM objective: a supervised branch on the pooled encoder features, weighted by λ_cls (`supervised_weight`).

SupMAM (arXiv 2401.15953) adds a classification branch on the encoder's pooled output trained with the clip labels
(AudioSet, BCE) next to the self-supervised objective; AudioMosaic's original code has the same idea as an "online
classifier". It works with any objective here. Unlabelled clips can share a batch: their label rows are -100
(ignored), so a partly labelled pool trains the branch on its labelled part only.

Imports only torch and sibling modules (copied next to saved models as remote code).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .device_checks import check_on_device

IGNORE_INDEX = -100


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor, loss_type: str = "bce") -> torch.Tensor:
    """Classification loss of the supervised branch, ignoring unlabelled clips.

    Args:
        logits: `(B, C)`.
        labels: `"ce"`: `(B,)` class indices, `-100` = unlabelled; `"bce"`: `(B, C)` multi-hot floats, a row with any
            negative entry (e.g. all `-100`) = unlabelled.
        loss_type: `"bce"` (multi-label) or `"ce"` (single-label).

    Returns:
        Mean loss over the labelled clips (0, still connected to `logits`, if none is labelled).
    """
    if loss_type == "ce":
        if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
            raise ValueError(f"'ce' labels must be class indices of shape ({logits.shape[0]},), got "
                             f"{tuple(labels.shape)}.")
        labels = labels.long()
        keep = labels != IGNORE_INDEX
        in_range = (labels >= 0) & (labels < logits.shape[1])
        check_on_device((in_range | ~keep).all(), f"'ce' labels must be in [0, {logits.shape[1]}) or {IGNORE_INDEX}.")
        # the sum over the labelled rows / their count (>= 1): no boolean indexing, which reads the count on the host
        total = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum")
        return total / keep.sum().clamp_min(1)
    if loss_type == "bce":
        if labels.shape != logits.shape:
            raise ValueError(
                f"'bce' labels must be multi-hot of shape {tuple(logits.shape)}, got {tuple(labels.shape)}."
            )
        keep = (labels >= 0).all(dim=1, keepdim=True)
        targets = torch.where(keep, labels.float(), 0.0)  # unlabelled rows: any finite target, weighted out below
        per_entry = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
        total = torch.where(keep, per_entry, 0.0).sum()
        return total / (keep.sum() * logits.shape[1]).clamp_min(1)
    raise ValueError(f"loss_type must be 'bce' or 'ce', got {loss_type!r}.")


__all__ = ["IGNORE_INDEX", "supervised_loss"]
