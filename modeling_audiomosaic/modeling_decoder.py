# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""The light transformer decoder of the masked-modelling objectives (MSM-MAE pixels, MAM-CLAP teacher features).

The encoder sees only the visible patches; the decoder embeds them to its own width, puts a learned mask token at every
dropped position, adds fixed sin-cos positions (1-D over the token index as MSM-MAE, or 2-D on the (time, frequency)
grid) and runs `decoder_num_hidden_layers` pre-LN blocks (the encoder's block, at the decoder's width). Prediction heads
(pixels, teacher features) live with their objectives.

Imports only torch, transformers and sibling modules (copied next to saved models as remote code).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask

from .configuration_audiomosaic import AudioMosaicConfig
from .modeling_audiomosaic import AudioMosaicLayer, drop_all_real_mask, sincos_2d_position_embedding


def sincos_1d_position_embedding(num_positions: int, dim: int, cls_token: bool = True) -> torch.Tensor:
    """1-D sin-cos table over token indices `0..num_positions-1` (`[sin(p w_k), cos(p w_k)]`, `w_k = 1e4^(-k/(d/2))`).

    Returns `(1, cls_token + num_positions, dim)` float32 (the CLS row is zero).
    """
    if dim % 2 != 0:
        raise ValueError(f"1-D sin-cos position embeddings need an even width, got {dim}.")
    half = dim // 2
    omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64) / half)
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] * omega[None]
    table = torch.cat([angles.sin(), angles.cos()], dim=1).float()
    if cls_token:
        table = torch.cat([torch.zeros(1, dim), table], dim=0)
    return table.unsqueeze(0)


def decoder_config(config: AudioMosaicConfig) -> AudioMosaicConfig:
    """A copy of `config` with the encoder sizes replaced by the decoder's (used to build the decoder blocks)."""
    dec = copy.deepcopy(config)
    dec.hidden_size = config.decoder_hidden_size
    dec.num_hidden_layers = config.decoder_num_hidden_layers
    dec.num_attention_heads = config.decoder_num_attention_heads
    dec.intermediate_size = config.decoder_intermediate_size
    dec.drop_path_rate = 0.0
    return dec


class AudioMosaicDecoder(nn.Module):
    """MAE decoder: visible tokens + mask tokens at the dropped positions -> `(B, L, decoder_hidden_size)` per patch."""

    def __init__(self, config: AudioMosaicConfig) -> None:
        super().__init__()
        self.config = decoder_config(config)
        width = config.decoder_hidden_size
        self.decoder_embed = nn.Linear(config.hidden_size, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self._position_config = (config.decoder_position_embedding, config.num_time_patches, config.num_freq_patches,
                                 config.num_patches, width)
        # fixed, rebuilt from the config (not saved): `from_pretrained` creates it empty, and the pre-trained model's
        # `_init_weights` fills it with `position_table()`
        self.register_buffer("position_embeddings", self.position_table(), persistent=False)
        self.layers = nn.ModuleList([AudioMosaicLayer(self.config) for _ in range(config.decoder_num_hidden_layers)])
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)

    def position_table(self) -> torch.Tensor:
        """The fixed sin-cos position table `(1, L, decoder_hidden_size)` of the config (1-D or 2-D)."""
        kind, time_patches, freq_patches, num_patches, width = self._position_config
        if kind == "2d":
            return sincos_2d_position_embedding(time_patches, freq_patches, width)
        return sincos_1d_position_embedding(num_patches, width)

    def forward(
        self,
        hidden_states: torch.Tensor,
        ids_keep: torch.LongTensor | None,
        num_patches: int,
        token_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            hidden_states: encoder output `(B, 1 + K, D)` (CLS first, then the kept patches in `ids_keep` order).
            ids_keep: `(B, K)` kept patch indices (`None`: every patch was kept, `K = num_patches`).
            num_patches: `L`, the patches of the full input (a shorter input uses the leading position rows).
            token_mask: optional `(B, 1 + L)` boolean mask of real (not padded) tokens over the FULL grid.

        Returns:
            `(B, L, decoder_hidden_size)`: one vector per patch, in token order (CLS dropped).
        """
        if num_patches + 1 > self.position_embeddings.shape[1]:
            raise ValueError(
                f"the decoder's position table covers {self.position_embeddings.shape[1] - 1} patches; "
                f"got {num_patches}."
            )
        x = self.decoder_embed(hidden_states)
        # the residual stream in the parameters' dtype, as the encoder's (and timm's MAE decoder, whose float32 mask
        # tokens and positions promote it): float32 under autocast, bf16 only where the parameters are (FSDP2's
        # mixed precision, a bf16 model)
        x = x.to(torch.promote_types(x.dtype, self.mask_token.dtype))
        cls, visible = x[:, :1], x[:, 1:]
        batch, width = x.shape[0], x.shape[-1]
        if ids_keep is None:
            if visible.shape[1] != num_patches:
                raise ValueError(f"without ids_keep the encoder output must hold {num_patches} patch tokens.")
            patches = visible
        else:
            patches = self.mask_token.to(x.dtype).expand(batch, num_patches, width)
            patches = patches.scatter(1, ids_keep[..., None].expand(-1, -1, width), visible)
        x = torch.cat([cls, patches], dim=1) + self.position_embeddings[:, : num_patches + 1].to(x.dtype)
        attn_mask = None
        token_mask = drop_all_real_mask(token_mask, read_on_host=not self.training)  # no host read in training
        if token_mask is not None:
            attn_mask = create_bidirectional_mask(
                config=self.config, inputs_embeds=x, attention_mask=token_mask, allow_is_bidirectional_skip=False
            )
        for layer in self.layers:
            x, _ = layer(x, attn_mask)
        return self.norm(x)[:, 1:]


__all__ = ["AudioMosaicDecoder", "decoder_config", "sincos_1d_position_embedding"]
