# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""AudioMosaic pre-training model: two masked views per clip -> shared encoder -> projector -> NT-Xent.

Imports only torch, transformers and sibling modules (copied next to saved models as remote code).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from transformers.modeling_outputs import ModelOutput

from .configuration_audiomosaic import AudioMosaicConfig
from .masking import apply_masking
from .modeling_audiomosaic import AUTO_MAP, AudioMosaicModel, AudioMosaicPreTrainedModel, pool_tokens
from .objective_contrastive import (
    LearnableTemperature,
    alignment_uniformity,
    local_intrinsic_dimension,
    nt_xent_loss,
)

PRETRAINING_AUTO_MAP = {**AUTO_MAP, "AutoModelForPreTraining": "modeling_pretraining.AudioMosaicForPreTraining"}


@dataclass
class AudioMosaicForPreTrainingOutput(ModelOutput):
    """Output of [`AudioMosaicForPreTraining`].

    Args:
        loss (`torch.FloatTensor` of shape `()`): NT-Xent loss over the (gathered) batch.
        z (`torch.FloatTensor` of shape `(num_views, batch_size, projection_dim)`): projector outputs (not normalised).
        pooled_output (`torch.FloatTensor` of shape `(num_views, batch_size, hidden_size)`): `fc_norm(pool(tokens))`.
        accuracy (`torch.FloatTensor` of shape `()`): top-1 accuracy of picking the positive among all candidates.
        alignment, uniformity (`torch.FloatTensor` of shape `()`): Wang & Isola metrics of the normalised `z`.
        lid_mean, lid_var (`torch.FloatTensor` of shape `()`): local intrinsic dimension of the pooled features.
        temperature (`torch.FloatTensor` of shape `()`): the temperature used.
        num_kept_tokens (`tuple(int)`): tokens (CLS included) each view's encoder saw.
        ids_keep (`tuple(torch.LongTensor)`): kept patch indices of each view (`None` for an unmasked view).
    """

    loss: torch.FloatTensor | None = None
    z: torch.FloatTensor | None = None
    pooled_output: torch.FloatTensor | None = None
    accuracy: torch.FloatTensor | None = None
    alignment: torch.FloatTensor | None = None
    uniformity: torch.FloatTensor | None = None
    lid_mean: torch.FloatTensor | None = None
    lid_var: torch.FloatTensor | None = None
    temperature: torch.FloatTensor | None = None
    num_kept_tokens: tuple[int, ...] | None = None
    ids_keep: tuple[torch.LongTensor | None, ...] | None = None


class BatchNorm1dNoBias(nn.BatchNorm1d):
    """BatchNorm1d whose bias stays at 0 (kept in the state dict, never trained), as the original projector's last BN."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bias.requires_grad = False


def build_projector(config: AudioMosaicConfig) -> nn.Sequential:
    """SimCLR projector: Linear -> BN -> ReLU -> Linear -> BN(no bias); 768 -> 512 -> 128 for the base model.

    The module indices (`projector.0/1/3/4`) match the original state-dict keys.
    """
    return nn.Sequential(
        nn.Linear(config.hidden_size, config.projection_hidden_size, bias=False),
        nn.BatchNorm1d(config.projection_hidden_size),
        nn.ReLU(inplace=True),
        nn.Linear(config.projection_hidden_size, config.projection_dim, bias=False),
        BatchNorm1dNoBias(config.projection_dim),
    )


class AudioMosaicForPreTraining(AudioMosaicPreTrainedModel):
    """AudioMosaic contrastive pre-training: each clip gives `num_views` spectrograms (differently augmented waveforms);
    view `v` is masked by `config.view_masking_specs()[v]` (training mode, or `apply_masking=True`), the dropped patch
    tokens never enter the encoder, and the projected mean-pooled embeddings of the two views of a clip are pulled
    together against every other view in the (all-gathered) batch.

    The encoder lives under `self.audiomosaic` (the shared `base_model_prefix`), so a checkpoint of this model loads
    into [`AudioMosaicModel`] and [`AudioMosaicForAudioClassification`] (the pretrained `fc_norm` included).
    """

    accepts_loss_kwargs = False  # per-batch mean loss; do not let Trainer rescale it by num_items_in_batch
    _full_auto_map = PRETRAINING_AUTO_MAP

    def __init__(self, config: AudioMosaicConfig) -> None:
        super().__init__(config)
        if config.objective != "contrastive":
            raise ValueError(f"objective={config.objective!r} is not supported yet (only 'contrastive').")
        self.audiomosaic = AudioMosaicModel(config)
        self.projector = build_projector(config)
        self.learnable_temperature = LearnableTemperature(config.temperature) if config.learnable_temperature else None
        self.post_init()

    def get_temperature(self) -> torch.Tensor:
        if self.learnable_temperature is not None:
            return self.learnable_temperature()
        return torch.tensor(self.config.temperature)

    def _split_views(self, input_values: torch.Tensor) -> list[torch.Tensor]:
        num_views = len(self.config.view_masking_specs())
        if input_values.ndim == 4 and input_values.shape[1] == num_views:
            return list(input_values.unbind(dim=1))
        if input_values.ndim == 3 or (input_values.ndim == 4 and input_values.shape[1] == 1):
            return [input_values] * num_views  # one spectrogram for all views: views differ only by their masks
        raise ValueError(
            f"input_values must be (batch, {num_views} views, frames, mel_bins) or one spectrogram per clip "
            f"(batch, frames, mel_bins); got {tuple(input_values.shape)}."
        )

    def mask_view(self, spec: torch.Tensor, view: int, generator: torch.Generator | None = None):
        """Draw view `view`'s mask for spectrograms `spec` (B, T, F) → `MaskingOutput` (or `None` if unmasked)."""
        strategy, ratio = self.config.view_masking_specs()[view]
        if strategy == "none":
            return None
        frames = spec.shape[-2]
        grid = (frames // self.config.patch_size, self.config.num_freq_patches)
        return apply_masking(strategy, grid, spec.shape[0], ratio, generator=generator, device=spec.device)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        ids_keep: list[torch.LongTensor | None] | None = None,
        apply_masking: bool | None = None,
        generator: torch.Generator | None = None,
        return_loss: bool = True,
        return_dict: bool | None = None,
        **kwargs,
    ) -> AudioMosaicForPreTrainingOutput | tuple:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch_size, num_views, frames, num_mel_bins)`): the views'
                normalised log-mel features (e.g. from `feature_extraction.ContrastiveViewGenerator`); a
                `(batch_size, frames, num_mel_bins)` tensor is used for every view.
            attention_mask (`torch.LongTensor` of shape `(batch_size, frames)`, *optional*): frame padding mask.
            ids_keep (`list` of `torch.LongTensor`, *optional*): explicit kept patch indices per view (overrides the
                configured masking; `None` entries mean no masking).
            apply_masking (`bool`, *optional*): mask even in eval mode (default: mask only in training mode, as the
                original).
            generator (`torch.Generator`, *optional*): source of randomness for the masks.
            return_loss (`bool`, defaults to `True`): compute the NT-Xent loss and metrics.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        views = self._split_views(input_values)
        masking = self.training if apply_masking is None else apply_masking
        if ids_keep is not None and len(ids_keep) != len(views):
            raise ValueError(f"ids_keep has {len(ids_keep)} entries for {len(views)} views.")

        zs, pooled, features, kept, kept_ids = [], [], [], [], []
        for view, spec in enumerate(views):
            if ids_keep is not None:
                ids = ids_keep[view]
            else:
                mask = self.mask_view(spec, view, generator) if masking else None
                ids = mask.ids_keep if mask is not None else None
            out = self.audiomosaic(spec, attention_mask=attention_mask, ids_keep=ids, return_dict=True)
            feature = pool_tokens(out.last_hidden_state, self.config.pooling, out.token_mask)
            normed = self.audiomosaic.pooler.fc_norm(feature)
            zs.append(self.projector(normed))
            pooled.append(normed)
            features.append(feature)
            kept.append(out.last_hidden_state.shape[1])
            kept_ids.append(ids)
        z = torch.stack(zs)
        output = AudioMosaicForPreTrainingOutput(
            z=z, pooled_output=torch.stack(pooled), num_kept_tokens=tuple(kept), ids_keep=tuple(kept_ids)
        )
        if return_loss:
            if len(views) != 2:
                raise ValueError(f"the contrastive objective needs exactly 2 views, got {len(views)}.")
            temperature = self.get_temperature().to(z.device)
            result = nt_xent_loss(z[0], z[1], temperature, gather_distributed=self.config.gather_distributed)
            output.loss = result.loss
            output.accuracy = result.accuracy
            output.temperature = temperature.detach()
            output.alignment, output.uniformity = alignment_uniformity(z[0], z[1])
            output.lid_mean, output.lid_var = local_intrinsic_dimension(torch.cat(features).detach())
        return output if return_dict else output.to_tuple()


__all__ = ["AudioMosaicForPreTraining", "AudioMosaicForPreTrainingOutput", "BatchNorm1dNoBias", "build_projector"]
