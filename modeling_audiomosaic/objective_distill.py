# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""MAM-CLAP objective: regress a frozen teacher's patch features at masked AND visible positions.

MAM-CLAP (Xin, Peng, Lu, arXiv 2401.15953) has no public code; what is known is that a decoder with mask tokens predicts
one representation per patch for both the visible (Y_v) and the masked (Y_m) positions, the targets come from a frozen
CLAP audio encoder run on the full clip, and the loss is `d(Y_m, T_m) + d(Y_v, T_v)`. Everything else here is a
documented, configurable default (see `docs/compared_systems.md`, section MAM-CLAP, and the config docstring):

* the teacher's feature map is brought to the student's patch grid by `alignment="bilinear"` (resize the teacher's
  `(time, freq)` map to `(T', F')`, default) or `"pool"` (average-pool the student's predictions to the teacher's grid;
  a teacher cell then counts as masked in proportion to the masked student patches it covers);
* distance `"l2"` = mean squared error of L2-normalised vectors (default) or `"cosine"` = `2 - 2 cos`;
* separate weights for the masked and visible terms (default 1.0 each).

`DistillationTeacher` wraps any frozen model returning hidden states into a `(B, time, freq, D)` map: AudioMosaic
checkpoints (patch tokens on their grid), transformers' CLAP audio tower (`ClapAudioModel`,
`ClapAudioModelWithProjection` or `ClapModel`, whose `last_hidden_state` is `(B, D, freq, time)`), or any sequence
model given its token grid.

Imports only torch, transformers and sibling modules (copied next to saved models as remote code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class DistillationTeacher(nn.Module):
    """A frozen teacher producing a `(batch, time, freq, dim)` feature map (time-major, like the student's grid).

    Args:
        model: the teacher (its parameters are frozen and it is kept in eval mode).
        layer: hidden state used as the target (`-1`: the last; CLAP supports only `-1`, its stages differ in shape).
        grid: for generic sequence models, the token grid `(time, freq)` of their patch tokens.
        num_prefix_tokens: for generic sequence models, leading non-patch tokens to drop (CLS, distillation tokens).
        freq_major: for generic sequence models whose tokens are frequency-major (AST: `index = f * T + t`).

    Inputs: AudioMosaic teachers read the student's spectrogram (`input_values`, the unmasked view); other teachers
    need their own inputs (`teacher_inputs`, e.g. `ClapFeatureExtractor` output, built by the pre-training collator).
    """

    def __init__(
        self,
        model: nn.Module,
        layer: int = -1,
        grid: tuple[int, int] | None = None,
        num_prefix_tokens: int = 0,
        freq_major: bool = False,
    ) -> None:
        super().__init__()
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type == "audiomosaic":
            self.kind = "audiomosaic"
            model = getattr(model, "base_model", model)
        elif model_type in ("clap", "clap_audio_model"):
            self.kind = "clap"
            model = getattr(model, "audio_model", model)
            if layer != -1:
                raise ValueError("a CLAP teacher supports only distill_teacher_layer=-1 (its stages differ in shape).")
        elif grid is not None:
            self.kind = "sequence"
        else:
            raise ValueError(
                f"cannot read a feature map from a {type(model).__name__} teacher (model_type={model_type!r}): give "
                "grid=(time, freq) (and num_prefix_tokens / freq_major) for a sequence model."
            )
        self.model = model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.layer = int(layer)
        self.grid = tuple(grid) if grid is not None else None
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.freq_major = bool(freq_major)

    def train(self, mode: bool = True) -> "DistillationTeacher":
        return super().train(False)  # always frozen

    @property
    def feature_dim(self) -> int:
        """Width of the teacher's features (the student's `distill_teacher_hidden_size`)."""
        config = self.model.config
        if self.kind == "clap":
            return int(config.patch_embeds_hidden_size * 2 ** (len(config.depths) - 1))
        return int(config.hidden_size)

    @property
    def needs_own_inputs(self) -> bool:
        """Whether the teacher needs `teacher_inputs` (it cannot read the student's spectrogram)."""
        return self.kind != "audiomosaic"

    @torch.no_grad()
    def forward(self, input_values: torch.Tensor | None = None, teacher_inputs: dict | None = None) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        if teacher_inputs:
            inputs = {k: v.to(dtype) if torch.is_floating_point(v) else v for k, v in teacher_inputs.items()}
        elif self.kind == "audiomosaic":
            if input_values is None:
                raise ValueError("an AudioMosaic teacher needs input_values (the unmasked spectrogram).")
            inputs = {"input_values": input_values.to(dtype)}
        else:
            raise ValueError(
                f"a {self.kind} teacher needs teacher_inputs (its own features); give the pre-training collator a "
                "teacher_feature_extractor."
            )
        if self.kind == "clap":
            fused = bool(getattr(self.model.config, "enable_fusion", False))
            out = (_eager_forward if fused else _forward)(self.model, inputs)
            return out.last_hidden_state.permute(0, 3, 2, 1).float()  # (B, D, freq, time) -> (B, time, freq, D)
        out = self.model(**inputs, output_hidden_states=self.layer != -1, return_dict=True)
        tokens = out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer]
        if self.kind == "audiomosaic":
            config = self.model.config
            frames = inputs["input_values"].shape[-2]
            grid = (frames // config.patch_size, config.num_mel_bins // config.patch_size)
            prefix = 1
        else:
            grid, prefix = self.grid, self.num_prefix_tokens
        tokens = tokens[:, prefix:]
        if tokens.shape[1] != grid[0] * grid[1]:
            raise ValueError(f"teacher gave {tokens.shape[1]} patch tokens for a {grid} grid.")
        if self.freq_major:
            return tokens.reshape(tokens.shape[0], grid[1], grid[0], -1).transpose(1, 2).float()
        return tokens.reshape(tokens.shape[0], grid[0], grid[1], -1).float()


def _forward(model: nn.Module, inputs: dict) -> Any:
    return model(**inputs, return_dict=True)


# A CLAP teacher with feature fusion runs eagerly under torch.compile: its forward selects the clips marked `is_longer`
# with `torch.where` (a data-dependent size), which broke the compiled step into 5 graphs and recompiled it as that
# count changed between batches; eager, next to the masking's break, the step keeps its 2 graphs and never
# recompiles (`tests/test_clap_device.py`).
_eager_forward = torch.compiler.disable(_forward)


@dataclass
class DistillationLossOutput:
    loss: torch.Tensor
    loss_masked: torch.Tensor
    loss_visible: torch.Tensor


def feature_distance(prediction: torch.Tensor, target: torch.Tensor, distance: str = "l2") -> torch.Tensor:
    """Per-position distance over the last axis: `"l2"` = mean squared error of L2-normalised vectors, `"cosine"` =
    `2 - 2 cos` (the two differ by the factor `1 / dim`)."""
    if distance == "l2":
        return (F.normalize(prediction.float(), dim=-1) - F.normalize(target.float(), dim=-1)).pow(2).mean(dim=-1)
    if distance == "cosine":
        return 2.0 - 2.0 * F.cosine_similarity(prediction.float(), target.float(), dim=-1)
    raise ValueError(f"distance must be 'l2' or 'cosine', got {distance!r}.")


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (values * weights).sum() / weights.sum().clamp_min(1e-6)


def distillation_loss(
    prediction: torch.Tensor,
    teacher_map: torch.Tensor,
    grid: tuple[int, int],
    mask: torch.Tensor,
    alignment: str = "bilinear",
    distance: str = "l2",
    masked_weight: float = 1.0,
    visible_weight: float = 1.0,
    valid: torch.Tensor | None = None,
) -> DistillationLossOutput:
    """`masked_weight * d(Y_m, T_m) + visible_weight * d(Y_v, T_v)`, each a mean over its positions.

    Args:
        prediction: `(B, L, D)` student predictions per patch (token order, `L = T' F'`).
        teacher_map: `(B, Ht, Wt, D)` teacher features (time, freq).
        grid: the student's `(T', F')`.
        mask: `(B, L)` boolean, `True` for masked patches.
        alignment: `"bilinear"` (teacher -> student grid) or `"pool"` (student -> teacher grid).
        valid: optional `(B, L)` boolean of real (not padded) patches.
    """
    batch, length, dim = prediction.shape
    if length != grid[0] * grid[1]:
        raise ValueError(f"prediction has {length} patches for a {grid} grid.")
    if teacher_map.ndim != 4 or teacher_map.shape[0] != batch or teacher_map.shape[-1] != dim:
        raise ValueError(
            f"teacher map {tuple(teacher_map.shape)} does not match predictions {tuple(prediction.shape)}: expected "
            f"(batch, time, freq, {dim})."
        )
    masked = mask.float()
    real = valid.float() if valid is not None else torch.ones_like(masked)
    if alignment == "bilinear":
        target = F.interpolate(teacher_map.permute(0, 3, 1, 2).float(), size=tuple(grid), mode="bilinear",
                               align_corners=False)
        target = target.permute(0, 2, 3, 1).reshape(batch, length, dim)
        pred, w_masked, w_visible = prediction, masked * real, (1.0 - masked) * real
    elif alignment == "pool":
        size = tuple(teacher_map.shape[1:3])
        pred = F.adaptive_avg_pool2d(prediction.transpose(1, 2).reshape(batch, dim, *grid).float(), size)
        pred = pred.flatten(2).transpose(1, 2)
        target = teacher_map.reshape(batch, -1, dim)
        frac_masked = F.adaptive_avg_pool2d((masked * real).reshape(batch, 1, *grid), size).flatten(1)
        frac_real = F.adaptive_avg_pool2d(real.reshape(batch, 1, *grid), size).flatten(1)
        w_masked, w_visible = frac_masked, frac_real - frac_masked
    else:
        raise ValueError(f"alignment must be 'bilinear' or 'pool', got {alignment!r}.")
    d = feature_distance(pred, target, distance)
    loss_masked = _weighted_mean(d, w_masked)
    loss_visible = _weighted_mean(d, w_visible)
    return DistillationLossOutput(
        loss=masked_weight * loss_masked + visible_weight * loss_visible,
        loss_masked=loss_masked,
        loss_visible=loss_visible,
    )


__all__ = ["DistillationTeacher", "DistillationLossOutput", "distillation_loss", "feature_distance"]
