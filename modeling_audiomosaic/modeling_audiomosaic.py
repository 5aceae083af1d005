# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""PyTorch AudioMosaic encoder and heads (transformers-native).

AudioMosaic ("Contrastive Masked Audio Representation Learning", ICML 2026) is a ViT-B/16 over 16x16 patches of a
128-bin Kaldi log-mel spectrogram. This module reproduces the released forward exactly:

    patch conv (with bias) -> LayerNorm over patch tokens -> prepend CLS -> + learned position table -> LayerNorm
    (``norm_pre``) -> pre-LN transformer blocks (exact GELU, LayerNorm eps 1e-6) -> no final norm ->
    mean over ALL tokens (CLS included) -> ``fc_norm``.

Tokens are time-major (``index = t * F + f``, F = num_mel_bins / patch_size), unlike transformers' AST.

This file is copied next to saved models and loaded as remote code (``trust_remote_code=True``), so it imports only
``torch``, ``transformers`` and its sibling ``configuration_audiomosaic``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, ModelOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.utils import logging

from .configuration_audiomosaic import AudioMosaicConfig
from .device_checks import check_on_device

logger = logging.get_logger(__name__)

# Written into config.json by save_pretrained so that a saved folder loads with trust_remote_code=True and any
# Auto class.
AUTO_MAP = {
    "AutoConfig": "configuration_audiomosaic.AudioMosaicConfig",
    "AutoModel": "modeling_audiomosaic.AudioMosaicModel",
    "AutoModelForAudioClassification": "modeling_audiomosaic.AudioMosaicForAudioClassification",
}


# ----------------------------------------------------------------------------------------------------------------------
# Output dataclasses
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class AudioMosaicModelOutput(BaseModelOutputWithPooling):
    """Output of [`AudioMosaicModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, 1 + num_tokens, hidden_size)`):
            Tokens after the last block (CLS first). No final norm unless `config.use_final_norm`.
        pooler_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
            `fc_norm(pool(last_hidden_state))` with the pooling of `config.pooling`.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Embedding output and the output of each block (`num_hidden_layers + 1` tensors).
        attentions (`tuple(torch.FloatTensor)`, *optional*):
            Attention probabilities of each block, `(batch_size, num_heads, seq, seq)` (eager attention only).
        token_mask (`torch.BoolTensor` of shape `(batch_size, 1 + num_tokens)`, *optional*):
            Which tokens are real (not padding); `None` when every token is real.
    """

    token_mask: torch.BoolTensor | None = None


@dataclass
class AudioMosaicClassifierOutput(ModelOutput):
    """Output of [`AudioMosaicForAudioClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): classification loss when `labels` are given.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`): classification scores (before
            softmax/sigmoid).
        pooled_output (`torch.FloatTensor` of shape `(batch_size, hidden_size)`): the vector fed to the classifier.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): see [`AudioMosaicModelOutput`].
        attentions (`tuple(torch.FloatTensor)`, *optional*): see [`AudioMosaicModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    pooled_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------------
def sincos_2d_position_embedding(num_time: int, num_freq: int, dim: int, cls_token: bool = True) -> torch.Tensor:
    """MAE-style 2-D sin-cos table on the true (time, frequency) patch grid, in the encoder's time-major token order.

    Half the channels encode the time index, half the frequency index; each half is `[sin(p * w_k), cos(p * w_k)]` with
    `w_k = 1 / 10000 ** (k / (dim / 4))`. Only used as an initial value: the released models learn the table, and a
    converter copies it (the original initialised it on a swapped grid, which does not matter once trained).

    Returns:
        `(1, cls_token + num_time * num_freq, dim)` float32 tensor (the CLS row is zero).
    """
    if dim % 4 != 0:
        raise ValueError(f"sin-cos position embeddings need hidden_size divisible by 4, got {dim}.")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    t = torch.arange(num_time, dtype=torch.float64).repeat_interleave(num_freq)  # time-major order
    f = torch.arange(num_freq, dtype=torch.float64).repeat(num_time)
    out_t = t[:, None] * omega[None]
    out_f = f[:, None] * omega[None]
    table = torch.cat([out_t.sin(), out_t.cos(), out_f.sin(), out_f.cos()], dim=1).float()
    if cls_token:
        table = torch.cat([torch.zeros(1, dim), table], dim=0)
    return table.unsqueeze(0)


def drop_path(hidden_states: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (the residual branch is zeroed for a random subset of the batch)."""
    if drop_prob == 0.0 or not training:
        return hidden_states
    keep_prob = 1.0 - drop_prob
    shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
    random_tensor = hidden_states.new_empty(shape).bernoulli_(keep_prob)
    return hidden_states * random_tensor / keep_prob


class AudioMosaicDropPath(nn.Module):
    """Stochastic depth module (identity in eval mode)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return drop_path(hidden_states, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


def pool_tokens(hidden_states: torch.Tensor, pooling: str, token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pool `(B, 1 + N, D)` tokens (CLS first) into `(B, D)`.

    Args:
        hidden_states: tokens, CLS at index 0.
        pooling: `"mean"` (all tokens incl. CLS, the original AudioMosaic), `"cls"`, or `"mean_patches"` (CLS excluded).
        token_mask: optional `(B, 1 + N)` boolean mask of real tokens; padded tokens are left out of the means.
    """
    if pooling == "cls":
        return hidden_states[:, 0]
    if pooling == "mean_patches":
        hidden_states = hidden_states[:, 1:]
        token_mask = token_mask[:, 1:] if token_mask is not None else None
    elif pooling != "mean":
        raise ValueError(f"Unknown pooling {pooling!r}.")
    if token_mask is None:
        return hidden_states.mean(dim=1)
    weights = token_mask.to(hidden_states.dtype).unsqueeze(-1)
    return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def drop_all_real_mask(token_mask: torch.Tensor | None, read_on_host: bool = False) -> torch.Tensor | None:
    """`None` for a `token_mask` of real tokens only (attention and pooling then take their mask-free paths, e.g.
    flash attention), else `token_mask`. Deciding reads the mask on the host, which on an accelerator waits for the
    device: done for CPU masks and where `read_on_host` (inference, whose outputs are read anyway); in a training step
    on an accelerator, and under torch.compile / export (where a read breaks the graph and specialises it on the
    values), the mask is kept: the same values up to rounding (omit `attention_mask` for unpadded batches)."""
    if token_mask is None or torch.compiler.is_compiling():  # a read would break (and specialise) a compiled graph
        return token_mask
    if (token_mask.device.type == "cpu" or read_on_host) and bool(token_mask.all()):
        return None
    return token_mask


SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of `-sum_c t_c log softmax(z)_c`; for mixup targets `lam * y1 + (1 - lam) * y2` this equals
    `lam * CE(z, y1) + (1 - lam) * CE(z, y2)`."""
    return -(targets.to(logits.dtype) * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def infer_problem_type(logits: torch.Tensor, labels: torch.Tensor) -> str:
    """`problem_type` implied by the outputs and labels: one output -> regression, `(batch,)` integer labels ->
    single-label classification, anything else (multi-hot or soft `(batch, num_labels)` rows) -> multi-label."""
    if logits.shape[-1] == 1:
        return REGRESSION
    if labels.ndim == 1 and not labels.is_floating_point():
        return SINGLE_LABEL
    return MULTI_LABEL


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str | None = None) -> torch.Tensor:
    """Per-batch mean loss of `(batch, num_labels)` logits for `problem_type` (inferred by [`infer_problem_type`] when
    `None`), for hard or soft targets.

    * `"regression"`: MSE against `(batch,)` values;
    * `"single_label_classification"`: cross-entropy for `(batch,)` class indices, soft-target cross-entropy
      ([`soft_target_cross_entropy`]) for `(batch, num_labels)` float rows (one-hot or mixup targets);
    * `"multi_label_classification"`: binary cross-entropy with logits on multi-hot or soft `(batch, num_labels)` rows.
    """
    labels = labels.to(logits.device)
    problem_type = problem_type or infer_problem_type(logits, labels)
    if problem_type == REGRESSION:
        return nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype).view(-1))
    if problem_type == SINGLE_LABEL:
        if labels.ndim == 2 and labels.is_floating_point() and labels.shape == logits.shape:
            return soft_target_cross_entropy(logits, labels)
        if labels.ndim != 1:
            raise ValueError(
                f"single_label_classification expects labels of shape (batch,) (class indices) or "
                f"{tuple(logits.shape)} (float target rows), got {tuple(labels.shape)}."
            )
        num_labels = logits.shape[-1]
        if labels.numel() and labels.device.type != "cpu":  # no host read on an accelerator (see device_checks)
            in_range = ((labels >= 0) & (labels < num_labels)).all()
            check_on_device(in_range, f"labels must be class indices in [0, {num_labels - 1}].")
        elif labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_labels):
            raise ValueError(
                f"labels must be class indices in [0, {num_labels - 1}]; got min {int(labels.min())}, "
                f"max {int(labels.max())}."
            )
        return nn.functional.cross_entropy(logits, labels.long())
    if problem_type == MULTI_LABEL:
        if labels.shape != logits.shape:
            raise ValueError(
                f"multi_label_classification expects labels of shape {tuple(logits.shape)} (multi-hot), got "
                f"{tuple(labels.shape)}."
            )
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    raise ValueError(f"Unknown problem_type {problem_type!r}; use {REGRESSION!r}, {SINGLE_LABEL!r} or {MULTI_LABEL!r}.")


# Parameters trained without weight decay besides every tensor with at most one dimension (biases, norms, layer
# weights, temperatures): the CLS token, the position table and the MAE decoder's mask token, the exclusions of the
# original AudioMosaic pre-training and fine-tuning recipes (which follow MAE, He et al., CVPR 2022).
NO_WEIGHT_DECAY_KEYS: tuple[str, ...] = ("cls_token", "position_embeddings", "mask_token")
NORM_PRE_CHOICES = ("head", "embeddings")
# name segments that module wrappers (FSDP1, activation checkpointing, torch.compile) insert into parameter names
_WRAPPER_SEGMENTS = frozenset({"_fsdp_wrapped_module", "_checkpoint_wrapped_module", "_orig_mod"})


def no_weight_decay_names(module: nn.Module) -> set[str]:
    """Names of the parameters of `module` that an optimizer must not decay (see `NO_WEIGHT_DECAY_KEYS`)."""
    return {
        name
        for name, param in module.named_parameters()
        if param.ndim <= 1 or name.rsplit(".", 1)[-1] in NO_WEIGHT_DECAY_KEYS
    }


def encoder_layer_id(name: str, num_layers: int, norm_pre: str = "head") -> int:
    """Layer id of an AudioMosaic parameter for layer-wise lr decay (the rule of BEiT, Bao et al., ICLR 2022, used by
    MAE and the original fine-tuning recipe; a group's lr is `lr * decay ** (num_layers + 1 - id)`).

    Names are relative to a model holding the encoder under `audiomosaic.` (or to the encoder itself): the stem
    (`embeddings.*`: CLS token, position table, patch embedding) has id 0, block `k` (`layers.k.*`) has id `k + 1`,
    everything else (`fc_norm`, the final norm, heads, probe modules, pre-training heads and decoder) `num_layers + 1`.
    `norm_pre` places the stem's closing LayerNorm (`embeddings.pre_layernorm`): `"head"` (the original recipe, which
    leaves it out of the stem so it trains at the full lr) or `"embeddings"` (id 0, with the stem).
    """
    if norm_pre not in NORM_PRE_CHOICES:
        raise ValueError(f"norm_pre must be one of {NORM_PRE_CHOICES}, got {norm_pre!r}.")
    parts = [part for part in name.split(".") if part not in _WRAPPER_SEGMENTS]
    if parts[0] == "audiomosaic":
        parts = parts[1:]
    if len(parts) > 2 and parts[0] == "layers" and parts[1].isdigit():
        return int(parts[1]) + 1
    if len(parts) > 1 and parts[0] == "embeddings":
        if parts[1] == "pre_layernorm" and norm_pre == "head":
            return num_layers + 1
        return 0
    return num_layers + 1


# ----------------------------------------------------------------------------------------------------------------------
# Embeddings
# ----------------------------------------------------------------------------------------------------------------------
class AudioMosaicPatchEmbeddings(nn.Module):
    """16x16/16 convolution (with bias) over `(B, 1, T, F)` spectrograms, then a LayerNorm over the patch tokens.

    Output tokens are time-major: token `t * F' + f` covers frames `[16 t, 16 t + 16)` and mel bins `[16 f, 16 f + 16)`.
    """

    def __init__(self, config: AudioMosaicConfig) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        self.projection = nn.Conv2d(1, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_values: torch.Tensor, ids_keep: torch.LongTensor | None = None) -> torch.Tensor:
        """`(B, 1, T, F)` spectrograms -> `(B, T' * F', D)` normalised patch tokens, or only the `(B, K)` tokens of
        `ids_keep` (gathered right after the convolution; the LayerNorm is per token, so this equals gathering after
        it). The projection and the norm run inside this module's own call: FSDP2 (accelerate carves
        `get_input_embeddings()` into its own unit) gathers their weights in this module's pre-forward hook.
        """
        projection = self.projection
        embeddings = projection(input_values.to(projection.weight.dtype))  # (B, D, T', F')
        embeddings = embeddings.flatten(2).transpose(1, 2)  # (B, T' * F', D), time-major
        if ids_keep is not None:
            embeddings = torch.gather(embeddings, 1, ids_keep.unsqueeze(-1).expand(-1, -1, embeddings.shape[-1]))
        return self.norm(embeddings)


class AudioMosaicEmbeddings(nn.Module):
    """Patch embeddings + CLS token + learned position table + `norm_pre` LayerNorm.

    Inputs shorter than `config.max_length` use the first rows of the position table (the table is time-major, so this
    is exactly the position a shorter clip occupies when zero-padded to full length). Longer inputs raise an error;
    chunk long audio instead.
    """

    def __init__(self, config: AudioMosaicConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embeddings = AudioMosaicPatchEmbeddings(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.num_patches + 1, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.pre_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def check_input(self, input_values: torch.Tensor) -> torch.Tensor:
        """Validate `(B, T, F)` or `(B, 1, T, F)` spectrograms and return them as `(B, 1, T, F)`."""
        config = self.config
        if not torch.is_tensor(input_values):
            raise TypeError(f"input_values must be a torch.Tensor, got {type(input_values).__name__}.")
        if not input_values.is_floating_point():
            raise TypeError(
                f"input_values must be a floating point tensor of log-mel features, got dtype {input_values.dtype}. "
                "Use AudioMosaicFeatureExtractor to turn waveforms into features."
            )
        if input_values.ndim == 3:
            input_values = input_values.unsqueeze(1)
        if input_values.ndim != 4 or input_values.shape[1] != 1:
            raise ValueError(
                "input_values must have shape (batch, frames, mel_bins) or (batch, 1, frames, mel_bins); "
                f"got {tuple(input_values.shape)}."
            )
        _, _, frames, bins = input_values.shape
        if bins != config.num_mel_bins:
            raise ValueError(f"input_values has {bins} mel bins but the model expects {config.num_mel_bins}.")
        if frames == 0 or frames % config.patch_size != 0:
            raise ValueError(
                f"input_values has {frames} frames, which is not a positive multiple of the patch size "
                f"{config.patch_size}; pad the features (AudioMosaicFeatureExtractor pads to max_length or, with "
                "padding='longest', to a multiple of the patch size)."
            )
        if frames > config.max_length:
            raise ValueError(
                f"input_values has {frames} frames but the position table covers max_length={config.max_length}; "
                "crop or chunk longer audio."
            )
        return input_values

    def forward(self, input_values: torch.Tensor, ids_keep: torch.LongTensor | None = None) -> torch.Tensor:
        """Embed `(B, [1,] T, F)` spectrograms into `(B, 1 + N, D)` tokens (CLS first).

        With `ids_keep` (B, K) only those patch tokens are kept, right after the convolution: every later stem
        operation is per token, so this equals dropping them after `norm_pre` (the original) while never storing
        activations of dropped tokens.
        """
        input_values = self.check_input(input_values)
        batch, _, frames, bins = input_values.shape
        num_patches = (frames // self.config.patch_size) * (bins // self.config.patch_size)
        positions = self.position_embeddings[:, 1 : num_patches + 1].expand(batch, -1, -1)
        if ids_keep is not None:
            if ids_keep.ndim != 2 or ids_keep.shape[0] != batch:
                raise ValueError(f"ids_keep must have shape (batch={batch}, num_kept); got {tuple(ids_keep.shape)}.")
            ids_keep = ids_keep.to(input_values.device)
            if ids_keep.numel():  # checked on the device (no host read, no graph break under torch.compile)
                in_range = ((ids_keep >= 0) & (ids_keep < num_patches)).all()
                # under torch.compile a message formatted from the frame count would specialise the graph on it
                count = "" if torch.compiler.is_compiling() else f"{num_patches} "
                check_on_device(in_range, f"ids_keep must index the {count}patch tokens of the input.")
            positions = torch.gather(positions, 1, ids_keep.unsqueeze(-1).expand(-1, -1, positions.shape[-1]))
        patches = self.patch_embeddings(input_values, ids_keep=ids_keep) + positions
        cls_tokens = (self.cls_token + self.position_embeddings[:, :1]).expand(batch, -1, -1)
        embeddings = torch.cat((cls_tokens, patches), dim=1)
        embeddings = self.dropout(embeddings)
        return self.pre_layernorm(embeddings)


# ----------------------------------------------------------------------------------------------------------------------
# Transformer blocks
# ----------------------------------------------------------------------------------------------------------------------
def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain softmax attention. Inputs `(B, H, N, d)`; returns `(B, N, H, d)` and the `(B, H, N, N)` probabilities."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            attn_weights = attn_weights.masked_fill(~attention_mask, torch.finfo(attn_weights.dtype).min)
        else:
            attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class AudioMosaicAttention(nn.Module):
    """Bidirectional multi-head self-attention with a fused `qkv` projection (rows `[q; k; v]`, head-major)."""

    def __init__(self, config: AudioMosaicConfig) -> None:
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        self.is_causal = False  # SDPA would otherwise default to causal attention
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.proj_bias)
        self.proj_dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)

        implementation = self.config._attn_implementation
        if output_attentions and implementation != "eager":
            attention_interface: Callable = eager_attention_forward  # only eager returns the probabilities
        else:
            attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            is_causal=False,
            **kwargs,
        )
        attn_output = attn_output.reshape(batch, length, -1)
        attn_output = self.proj_dropout(self.proj(attn_output))
        return attn_output, attn_weights


class AudioMosaicMLP(nn.Module):
    """`fc1 -> activation -> fc2` (biases controlled by `config.proj_bias`)."""

    def __init__(self, config: AudioMosaicConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.proj_bias)
        self.activation_fn = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.proj_bias)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.activation_fn(self.fc1(hidden_states)))
        return self.dropout(self.fc2(hidden_states))


class AudioMosaicLayer(GradientCheckpointingLayer):
    """Pre-LN block: `x + drop_path(attn(norm1(x)))`, then `x + drop_path(mlp(norm2(x)))`."""

    def __init__(self, config: AudioMosaicConfig, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = AudioMosaicAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = AudioMosaicMLP(config)
        self.drop_path = AudioMosaicDropPath(drop_path_rate)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_output, attn_weights = self.attention(
            self.layernorm_before(hidden_states), attention_mask, output_attentions=output_attentions, **kwargs
        )
        hidden_states = hidden_states + self.drop_path(attn_output)
        hidden_states = hidden_states + self.drop_path(self.mlp(self.layernorm_after(hidden_states)))
        return hidden_states, attn_weights


class AudioMosaicPooler(nn.Module):
    """Pooling over tokens (`config.pooling`) followed by `fc_norm` (a LayerNorm, if `config.use_fc_norm`)."""

    def __init__(self, config: AudioMosaicConfig) -> None:
        super().__init__()
        self.pooling = config.pooling
        self.fc_norm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.use_fc_norm else nn.Identity()
        )

    def pool(self, hidden_states: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The pooling alone, `(B, 1 + N, D)` -> `(B, D)`: what a linear or layer probe caches."""
        return pool_tokens(hidden_states, self.pooling, token_mask)

    def forward(self, hidden_states: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc_norm(self.pool(hidden_states, token_mask))


# ----------------------------------------------------------------------------------------------------------------------
# Pre-trained model base
# ----------------------------------------------------------------------------------------------------------------------
PICKLE_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def load_safetensors_only(load_fn, pretrained_model_name_or_path, *args, **kwargs):
    """Calls `load_fn` (a `from_pretrained`) with `use_safetensors=True` unless the caller chose explicitly.

    Pickle checkpoints can run arbitrary code when unpickled; AudioMosaic checkpoints are always written as
    safetensors, so a folder that only holds `pytorch_model.bin` is refused with an error that says how to convert it
    or how to opt in (`use_safetensors=False`, which makes transformers read it with `torch.load(weights_only=True)`).
    """
    if kwargs.get("use_safetensors") is not None or pretrained_model_name_or_path is None:
        return load_fn(pretrained_model_name_or_path, *args, **kwargs)
    try:
        return load_fn(pretrained_model_name_or_path, *args, use_safetensors=True, **kwargs)
    except OSError as err:
        folder = os.fspath(pretrained_model_name_or_path)
        subfolder = kwargs.get("subfolder") or ""
        pickles = [n for n in PICKLE_WEIGHT_FILES if os.path.isfile(os.path.join(folder, subfolder, n))]
        if not pickles and "safetensors" not in str(err):
            raise
        found = f"{folder!r} holds only pickle weights ({', '.join(pickles)})" if pickles else (
            f"no safetensors weights found for {folder!r}"
        )
        raise OSError(
            f"{found}. AudioMosaic loads safetensors only by default: unpickling a file can execute code. Convert the "
            "checkpoint (run_scripts/convert_original_checkpoint.py, or load it once where you trust it and "
            "save_pretrained), or opt in explicitly with from_pretrained(..., use_safetensors=False) (transformers "
            "then reads it with torch.load(weights_only=True))."
        ) from err


class AudioMosaicPreTrainedModel(PreTrainedModel):
    """Base class: config, weight initialisation, and the shared `base_model_prefix` (`"audiomosaic"`), which lets every
    head load the encoder of any other AudioMosaic checkpoint."""

    config_class = AudioMosaicConfig
    config: AudioMosaicConfig
    base_model_prefix = "audiomosaic"
    main_input_name = "input_values"
    input_modalities = ("audio",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["AudioMosaicEmbeddings", "AudioMosaicLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _full_auto_map = AUTO_MAP  # every Auto class the saved code files can serve (heads in other files extend it)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, but weights are read from safetensors only unless the caller opts in
        to pickle files (`pytorch_model.bin`) with `use_safetensors=False`; see [`load_safetensors_only`]."""
        return load_safetensors_only(super().from_pretrained, pretrained_model_name_or_path, *args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as transformers does; when registered for remote code, `config.json` gets the full `auto_map`."""
        if getattr(self, "_auto_class", None) is not None:
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **self._full_auto_map}
        return super().save_pretrained(save_directory, *args, **kwargs)

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters an optimizer must not decay: every tensor with at most one dimension (biases,
        norms, layer weights, temperatures) and the CLS token, position table and mask token (`NO_WEIGHT_DECAY_KEYS`).

        Like timm's `model.no_weight_decay()`, but with full parameter names (the 1-D rule included), so an optimizer
        needs nothing else: both Trainers and [`~finetuning.layer_decay_param_groups`] ask this method.
        """
        return no_weight_decay_names(self)

    def get_layer_id(self, name: str, norm_pre: str = "head") -> int:
        """Layer id of parameter `name` (as in `named_parameters()`) for layer-wise lr decay: 0 for the stem, `k + 1`
        for block `k`, `num_hidden_layers + 1` for everything else; see [`encoder_layer_id`] for `norm_pre`."""
        return encoder_layer_id(name, self.config.num_hidden_layers, norm_pre)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Original initialisation: trunc-normal(0.02) Linear/Conv with zero bias, LayerNorm (1, 0), sin-cos position
        table on the true grid, CLS ~ N(0, 1e-6), classification heads ~ N(0, 2.5e-5)."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm1d)):
            if module.weight is not None:
                init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
            if getattr(module, "running_mean", None) is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)
        elif isinstance(module, AudioMosaicEmbeddings):
            init.normal_(module.cls_token, std=1e-6)
            table = sincos_2d_position_embedding(
                self.config.num_time_patches, self.config.num_freq_patches, self.config.hidden_size
            )
            init.copy_(module.position_embeddings, table.to(module.position_embeddings.dtype))
        elif isinstance(module, AudioMosaicClassificationHead):
            init.normal_(module.dense.weight, std=2.5e-5)
            init.zeros_(module.dense.bias)
        elif isinstance(module, AudioMosaicWeightedLayerSum):
            init.zeros_(module.layer_weights)
        elif isinstance(module, AudioMosaicAttentiveLayerPooling):
            init.normal_(module.attn_query, std=0.02)


# ----------------------------------------------------------------------------------------------------------------------
# Encoder
# ----------------------------------------------------------------------------------------------------------------------
class AudioMosaicModel(AudioMosaicPreTrainedModel):
    """The bare AudioMosaic encoder returning tokens and a pooled embedding.

    Example:

    ```python
    >>> import numpy as np, torch
    >>> from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicModel
    >>> from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor
    >>> fe = AudioMosaicFeatureExtractor.from_preset("speechcommands")
    >>> model = AudioMosaicModel(AudioMosaicConfig.from_preset("speechcommands", size="tiny")).eval()
    >>> inputs = fe(np.random.randn(16000).astype("float32"), sampling_rate=16000, return_tensors="pt")
    >>> model(**inputs).pooler_output.shape
    torch.Size([1, 192])
    ```
    """

    # the pre-training heads of an `AudioMosaicForPreTraining` folder are expected extras when only the encoder (or a
    # classifier) is loaded from it: do not report them (merged into every model that contains this encoder)
    _keys_to_ignore_on_load_unexpected = [
        r"^projector\.", r"^learnable_temperature\.", r"^decoder\.", r"^mae_head\.", r"^distill_head\.",
        r"^supervised_head\.",
    ]

    def __init__(self, config: AudioMosaicConfig) -> None:
        super().__init__(config)
        self.embeddings = AudioMosaicEmbeddings(config)
        rates = [
            config.drop_path_rate * i / max(config.num_hidden_layers - 1, 1) for i in range(config.num_hidden_layers)
        ]
        self.layers = nn.ModuleList([AudioMosaicLayer(config, rate) for rate in rates])
        self.layernorm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.use_final_norm else nn.Identity()
        )
        self.pooler = AudioMosaicPooler(config)
        self.post_init()

    def get_input_embeddings(self) -> AudioMosaicPatchEmbeddings:
        return self.embeddings.patch_embeddings

    def token_mask_from_attention_mask(self, attention_mask: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Turn a frame-level `(B, T)` attention mask into a token-level `(B, 1 + T' * F')` boolean mask (CLS first).

        A patch is real if any of its frames is real.
        """
        if attention_mask.ndim != 2 or attention_mask.shape[1] != num_frames:
            raise ValueError(
                f"attention_mask must have shape (batch, frames) = (batch, {num_frames}); got "
                f"{tuple(attention_mask.shape)}."
            )
        patch = self.config.patch_size
        frame_valid = attention_mask.bool().view(attention_mask.shape[0], num_frames // patch, patch).any(dim=-1)
        token_valid = frame_valid.repeat_interleave(self.config.num_freq_patches, dim=1)
        cls_valid = torch.ones_like(token_valid[:, :1])
        return torch.cat([cls_valid, token_valid], dim=1)

    def set_activation_checkpointing(self, enabled: bool = True, fraction: float | None = None) -> None:
        """Checkpoint the first `int(num_layers * fraction)` blocks (`fraction` defaults to
        `config.checkpointing_fraction`); the recipe checkpoints 8 of 12 blocks (0.7)."""
        fraction = self.config.checkpointing_fraction if fraction is None else fraction
        if enabled:
            self.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        num = int(len(self.layers) * fraction) if enabled else 0
        for index, layer in enumerate(self.layers):
            layer.gradient_checkpointing = index < num

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        ids_keep: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> AudioMosaicModelOutput | tuple:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch_size, frames, num_mel_bins)` or `(batch_size, 1, frames,
                num_mel_bins)`): normalised log-mel features from [`AudioMosaicFeatureExtractor`]. `frames` must be a
                multiple of the patch size and at most `config.max_length`.
            attention_mask (`torch.LongTensor` of shape `(batch_size, frames)`, *optional*): 1 for real frames, 0 for
                padding (as returned by the feature extractor with `padding="longest"`). Padded patches are excluded
                from attention and pooling, so a clip's output does not depend on the rest of the batch.
            ids_keep (`torch.LongTensor` of shape `(batch_size, num_kept)`, *optional*): patch indices (CLS excluded,
                time-major) to keep; the other patch tokens are dropped before the blocks (masked pre-training, token
                dropping). CLS is always kept in front. See `modeling_audiomosaic.masking`.
            output_attentions (`bool`, *optional*): return attention probabilities (computed eagerly for that call).
            output_hidden_states (`bool`, *optional*): return the embedding output and every block's output.
            return_dict (`bool`, *optional*): return an [`AudioMosaicModelOutput`] instead of a tuple.
        """
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        hidden_states = self.embeddings(input_values, ids_keep=ids_keep)
        token_mask = None
        if attention_mask is not None:
            num_frames = input_values.shape[-2]
            token_mask = self.token_mask_from_attention_mask(attention_mask.to(hidden_states.device), num_frames)
            if ids_keep is not None:
                token_mask = torch.cat([token_mask[:, :1], torch.gather(token_mask[:, 1:], 1, ids_keep)], dim=1)
        token_mask = drop_all_real_mask(token_mask, read_on_host=not self.training)
        attn_mask = None
        if token_mask is not None:  # not all real where it was read: transformers need not read it again to skip it
            attn_mask = create_bidirectional_mask(
                config=self.config, inputs_embeds=hidden_states, attention_mask=token_mask,
                allow_is_bidirectional_skip=False,
            )

        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            hidden_states, attn_weights = layer(hidden_states, attn_mask, output_attentions, **kwargs)
            if output_hidden_states:
                all_hidden_states = all_hidden_states + (hidden_states,)
            if output_attentions:
                all_attentions = all_attentions + (attn_weights,)

        sequence_output = self.layernorm(hidden_states)
        pooled_output = self.pooler(sequence_output, token_mask)
        output = AudioMosaicModelOutput(
            last_hidden_state=sequence_output,
            pooler_output=pooled_output,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
            token_mask=token_mask,
        )
        return output if return_dict else output.to_tuple()


# ----------------------------------------------------------------------------------------------------------------------
# Classification heads and probes
# ----------------------------------------------------------------------------------------------------------------------
class AudioMosaicClassificationHead(nn.Module):
    """Dropout + Linear on a pooled vector."""

    def __init__(self, config: AudioMosaicConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.dense = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.dense(self.dropout(pooled))


class AudioMosaicWeightedLayerSum(nn.Module):
    """SUPERB-style learned softmax-weighted sum of the block outputs (`L + 1` entries: every block, then the final
    output after the optional final norm, as in the original probe).

    The full model sums the token states and then pools (`forward`). The pooling (`config.pooling`) is linear, so a
    probe can cache the pooled vector of every entry (`probe_inputs`) and apply the weights to them
    (`forward_probe_inputs`): `pool(sum_i w_i B_i) = sum_i w_i pool(B_i)`.
    """

    def __init__(self, config: AudioMosaicConfig) -> None:
        super().__init__()
        self.pooling = config.pooling
        self.layer_weights = nn.Parameter(torch.zeros(config.num_hidden_layers + 1))

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        """`L + 1` token states `(B, N, D)` -> their weighted sum `(B, N, D)`."""
        weights = torch.softmax(self.layer_weights, dim=0)
        return torch.einsum("l,lbnd->bnd", weights.to(layers[0].dtype), torch.stack(layers, dim=0))

    def probe_inputs(self, layers: list[torch.Tensor], token_mask: torch.Tensor | None = None) -> torch.Tensor:
        """What a probe caches: the pooled vector of each entry, `(B, L + 1, D)`."""
        return torch.stack([pool_tokens(h, self.pooling, token_mask) for h in layers], dim=1)

    def forward_probe_inputs(self, probe_inputs: torch.Tensor) -> torch.Tensor:
        """The second half, on cached `(B, L + 1, D)` pooled vectors: their weighted sum `(B, D)`."""
        weights = torch.softmax(self.layer_weights, dim=0).to(probe_inputs.dtype)
        return torch.einsum("l,bld->bd", weights, probe_inputs)


class AudioMosaicAttentiveLayerPooling(nn.Module):
    """Attentive probe over layers: a learned query attends over per-layer pooled vectors (`L + 1` entries, each
    LayerNorm-ed then pooled), with bias-free key/value projections and `attentive_probe_heads` heads.

    Two halves: `pool_layers` (LayerNorm `i` then pool, per entry) and `attend` (the attention over the pooled
    vectors). A probe caches the pooled vectors normalised without the LayerNorms' affine (`probe_inputs`) and applies
    the affine on them (`forward_probe_inputs`): with a masked or plain mean, or the CLS token,
    `pool(LN_i(x)) = gamma_i * pool(LN(x)) + beta_i` since the pooling weights sum to one.
    """

    def __init__(self, config: AudioMosaicConfig) -> None:
        super().__init__()
        dim = config.hidden_size
        self.pooling = config.pooling
        self.num_heads = config.attentive_probe_heads
        self.head_dim = dim // self.num_heads
        self.layer_norms = nn.ModuleList(
            [nn.LayerNorm(dim, eps=config.layer_norm_eps) for _ in range(config.num_hidden_layers + 1)]
        )
        self.attn_query = nn.Parameter(torch.zeros(1, self.num_heads, 1, self.head_dim))
        self.attn_key = nn.Linear(dim, dim, bias=False)
        self.attn_value = nn.Linear(dim, dim, bias=False)

    def pool_layers(self, layers: list[torch.Tensor], token_mask: torch.Tensor | None = None) -> torch.Tensor:
        """First half: `pool(LN_i(B_i))` for each of the `L + 1` token states, `(B, L + 1, D)`."""
        return torch.stack(
            [pool_tokens(norm(h), self.pooling, token_mask) for norm, h in zip(self.layer_norms, layers)], dim=1
        )

    def attend(self, pooled: torch.Tensor) -> torch.Tensor:
        """Second half: the learned query attends over `(B, L + 1, D)` pooled vectors -> `(B, D)`."""
        batch, num_layers, dim = pooled.shape
        keys = self.attn_key(pooled).view(batch, num_layers, self.num_heads, self.head_dim).transpose(1, 2)
        values = self.attn_value(pooled).view(batch, num_layers, self.num_heads, self.head_dim).transpose(1, 2)
        scores = torch.matmul(self.attn_query, keys.transpose(-1, -2)) * self.head_dim**-0.5  # (B, H, 1, L + 1)
        out = torch.matmul(scores.softmax(dim=-1), values)  # (B, H, 1, d)
        return out.transpose(1, 2).reshape(batch, dim)

    def forward(self, layers: list[torch.Tensor], token_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.attend(self.pool_layers(layers, token_mask))

    def probe_inputs(self, layers: list[torch.Tensor], token_mask: torch.Tensor | None = None) -> torch.Tensor:
        """What a probe caches: `pool(LN(B_i))` with LayerNorm `i`'s epsilon but without its affine, `(B, L + 1, D)`."""
        return torch.stack(
            [
                pool_tokens(nn.functional.layer_norm(h, (h.shape[-1],), eps=norm.eps), self.pooling, token_mask)
                for norm, h in zip(self.layer_norms, layers)
            ],
            dim=1,
        )

    def forward_probe_inputs(self, probe_inputs: torch.Tensor) -> torch.Tensor:
        """The head on cached [`probe_inputs`]: each LayerNorm's affine, then [`attend`]."""
        norms = self.layer_norms
        pooled = probe_inputs
        if norms[0].weight is not None:
            pooled = pooled * torch.stack([norm.weight for norm in norms])
        if norms[0].bias is not None:
            pooled = pooled + torch.stack([norm.bias for norm in norms])
        return self.attend(pooled)


class AudioMosaicProbeHead(nn.Module):
    """The head of an [`AudioMosaicForAudioClassification`] on its probe inputs: the second half of the pooling ->
    `fc_norm` -> classifier. Built by [`~AudioMosaicForAudioClassification.probe_head`].

    Its sub-modules ARE the model's (`fc_norm`, `classifier`, `layer_sum` / `attentive_pooling`), so training it trains
    the model in place, loading a state dict into it (e.g. a Trainer checkpoint) updates the model, and its state dict
    holds only the head. `forward(probe_inputs)` equals the model's logits in eval mode (see
    [`~AudioMosaicForAudioClassification.probe_inputs`]).
    """

    def __init__(self, model: "AudioMosaicForAudioClassification") -> None:
        super().__init__()
        if not isinstance(getattr(model, "audiomosaic", None), AudioMosaicModel) or not hasattr(model, "classifier"):
            raise TypeError(
                f"a probe head is built from an AudioMosaicForAudioClassification, got {type(model).__name__}."
            )
        config = model.config
        self.head_type = config.classifier_head
        self.problem_type = config.problem_type  # the loss when `labels` are passed (None: inferred per call)
        self.num_hidden_layers = config.num_hidden_layers
        self.fc_norm = model.audiomosaic.pooler.fc_norm
        self.classifier = model.classifier
        if self.head_type == "weighted_sum":
            self.layer_sum = model.layer_sum
        if self.head_type == "attentive":
            self.attentive_pooling = model.attentive_pooling

    def pool(self, probe_inputs: torch.Tensor) -> torch.Tensor:
        """The pooling's second half: `(B, K, D)` probe inputs -> the `(B, D)` vector that `fc_norm` normalises."""
        if self.head_type == "weighted_sum":
            return self.layer_sum.forward_probe_inputs(probe_inputs)
        if self.head_type == "attentive":
            return self.attentive_pooling.forward_probe_inputs(probe_inputs)
        return probe_inputs[:, 0]  # linear / layer: the pooled tokens themselves

    def forward(
        self, probe_inputs: torch.Tensor, labels: torch.Tensor | None = None
    ) -> AudioMosaicClassifierOutput:
        r"""
        Args:
            probe_inputs (`torch.FloatTensor` of shape `(batch_size, K, hidden_size)`): cached
                [`~AudioMosaicForAudioClassification.probe_inputs`].
            labels (`torch.Tensor`, *optional*): as for [`AudioMosaicForAudioClassification.forward`] (or soft
                `(batch_size, num_labels)` rows); the loss is [`classification_loss`] with `problem_type`.
        """
        probe_inputs = probe_inputs.to(self.classifier.dense.weight.dtype)
        pooled = self.fc_norm(self.pool(probe_inputs))
        logits = self.classifier(pooled)
        loss = classification_loss(logits, labels, self.problem_type) if labels is not None else None
        return AudioMosaicClassifierOutput(loss=loss, logits=logits, pooled_output=pooled)

    def no_weight_decay(self) -> set[str]:
        """See [`AudioMosaicPreTrainedModel.no_weight_decay`]."""
        return no_weight_decay_names(self)

    def get_layer_id(self, name: str, norm_pre: str = "head") -> int:
        """Every parameter of the head has the top layer id, `num_hidden_layers + 1` (see [`encoder_layer_id`])."""
        return encoder_layer_id(name, self.num_hidden_layers, norm_pre)


class AudioMosaicForAudioClassification(AudioMosaicPreTrainedModel):
    """AudioMosaic with a classification head, for fine-tuning, linear probing and layer probes.

    `config.classifier_head` selects the head:

    - `"linear"`: `Linear(dropout(fc_norm(pool(last_hidden_state))))` — the released fine-tuned / linear-probe models.
    - `"layer"`: the same on the output of block `config.probe_layer`.
    - `"weighted_sum"`: on a learned softmax-weighted sum of the block outputs.
    - `"attentive"`: on a single-query attention over per-layer pooled vectors, then `fc_norm`.

    The loss follows `config.problem_type` (inferred from the labels when unset): cross-entropy for integer labels,
    binary cross-entropy with logits for multi-hot float labels (AudioSet), MSE for a single regression output (see
    [`classification_loss`]). For linear probing call [`~AudioMosaicForAudioClassification.freeze_encoder`] (it keeps
    `fc_norm` and the head trainable, as the original protocol does).

    The classifier splits in two for probing on cached embeddings: [`~AudioMosaicForAudioClassification.probe_inputs`]
    (what the frozen encoder gives a probe, computed once per clip) and
    [`~AudioMosaicForAudioClassification.probe_head`] (the second half of the pooling -> `fc_norm` -> classifier, on
    those inputs):

    | head | probe inputs per clip | why the head on them equals the full forward |
    |---|---|---|
    | `linear` | `pool(last_hidden_state)` | `fc_norm` and the Linear act on the pooled vector |
    | `layer` | `pool(B_k)` | same, for block k |
    | `weighted_sum` | `pool(B_i)`, L + 1 entries | the pooling is linear: `pool(sum_i w_i B_i) = sum_i w_i pool(B_i)` |
    | `attentive` | `pool(LN(B_i))` (no affine), L + 1 entries | `pool(LN_i(x)) = gamma_i * pool(LN(x)) + beta_i` |
    """

    accepts_loss_kwargs = False  # per-batch mean loss: Trainer divides it by GA steps (Trainer.training_step)

    def __init__(self, config: AudioMosaicConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.audiomosaic = AudioMosaicModel(config)
        self.layer_sum = AudioMosaicWeightedLayerSum(config) if config.classifier_head == "weighted_sum" else None
        self.attentive_pooling = (
            AudioMosaicAttentiveLayerPooling(config) if config.classifier_head == "attentive" else None
        )
        self.classifier = AudioMosaicClassificationHead(config)
        self.post_init()

    def freeze_encoder(self) -> None:
        """Freeze the encoder for probing; `fc_norm`, the probe modules and the classifier stay trainable."""
        for param in self.audiomosaic.parameters():
            param.requires_grad = False
        for param in self.audiomosaic.pooler.parameters():
            param.requires_grad = True

    def train(self, mode: bool = True) -> "AudioMosaicForAudioClassification":
        """Like `nn.Module.train`, but a frozen encoder stays in eval mode (no drop-path, no dropout), as in the
        original linear-probe protocol."""
        super().train(mode)
        if mode and not any(p.requires_grad for p in self.audiomosaic.layers.parameters()):
            self.audiomosaic.eval()
            self.audiomosaic.pooler.train(mode)
        return self

    def sample_token_drop(self, input_values: torch.Tensor, generator: torch.Generator | None = None):
        """Fine-tuning token drop (training mode): keep `int(T'(1 - token_drop_time))` random time columns and
        `int(F'(1 - token_drop_freq))` random bands of patches, per clip (e.g. 51 x 6 = 306 of 512 at 0.2 / 0.2)."""
        from .masking import apply_masking

        frames = input_values.shape[-2]
        grid = (frames // self.config.patch_size, self.config.num_freq_patches)
        ratios = (self.config.token_drop_time, self.config.token_drop_freq)
        return apply_masking("time_freq", grid, input_values.shape[0], ratios, generator=generator,
                             device=input_values.device).ids_keep

    def _layer_outputs(self, outputs: AudioMosaicModelOutput) -> list[torch.Tensor]:
        # Original probes read [B_0, ..., B_{L-1}, final] where final = norm(B_{L-1}) (norm is Identity in the release)
        return list(outputs.hidden_states[1:]) + [outputs.last_hidden_state]

    def probe_inputs(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        """The classifier's first half: what a probe of `config.classifier_head` caches per clip, `(batch_size, K,
        hidden_size)` with `K = 1` (`linear`, `layer`) or `num_hidden_layers + 1` (`weighted_sum`, `attentive`); see
        the class docstring. [`probe_head`] turns them into the logits of this model.

        Computed as called (no mode switch, gradients as the caller's context): call it in eval mode on a frozen
        encoder, as [`~probing.extract_probe_features`] does.
        """
        head = self.config.classifier_head
        outputs = self.audiomosaic(
            input_values, attention_mask=attention_mask, output_hidden_states=head != "linear", return_dict=True,
            **kwargs,
        )
        token_mask = outputs.token_mask
        pooler = self.audiomosaic.pooler
        if head == "linear":
            return pooler.pool(outputs.last_hidden_state, token_mask)[:, None]
        if head == "layer":
            return pooler.pool(outputs.hidden_states[1:][self.config.probe_layer], token_mask)[:, None]
        if head == "weighted_sum":
            return self.layer_sum.probe_inputs(self._layer_outputs(outputs), token_mask)
        return self.attentive_pooling.probe_inputs(self._layer_outputs(outputs), token_mask)

    def probe_head(self) -> AudioMosaicProbeHead:
        """The classifier's second half as a module on [`probe_inputs`], sharing this model's head parameters (see
        [`AudioMosaicProbeHead`]); train it on cached probe inputs to probe without running the encoder again."""
        return AudioMosaicProbeHead(self)

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        ids_keep: torch.LongTensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> AudioMosaicClassifierOutput | tuple:
        r"""
        Args:
            input_values, attention_mask, ids_keep: see [`AudioMosaicModel.forward`]. In training mode with
                `config.token_drop_time/freq > 0`, `ids_keep` is drawn by [`sample_token_drop`] when not given.
            labels (`torch.Tensor`, *optional*): `(batch_size,)` class indices (single-label; or `(batch_size,
                num_labels)` float target rows, e.g. mixup), `(batch_size, num_labels)` multi-hot floats (multi-label)
                or `(batch_size,)` floats (regression with one label); see [`classification_loss`].
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        head = self.config.classifier_head
        need_layers = head != "linear"
        if ids_keep is None and self.training and (self.config.token_drop_time > 0 or self.config.token_drop_freq > 0):
            ids_keep = self.sample_token_drop(input_values)
        outputs = self.audiomosaic(
            input_values,
            attention_mask=attention_mask,
            ids_keep=ids_keep,
            output_attentions=output_attentions,
            output_hidden_states=True if need_layers else output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        # pooling over the token states, then fc_norm ([`probe_head`] is the same head on cached [`probe_inputs`])
        pooler = self.audiomosaic.pooler
        if head == "linear":
            pooled = outputs.pooler_output
        elif head == "layer":
            pooled = pooler(outputs.hidden_states[1:][self.config.probe_layer], outputs.token_mask)
        elif head == "weighted_sum":
            pooled = pooler(self.layer_sum(self._layer_outputs(outputs)), outputs.token_mask)
        else:  # attentive
            pooled = pooler.fc_norm(self.attentive_pooling(self._layer_outputs(outputs), outputs.token_mask))
        logits = self.classifier(pooled)

        loss = self.compute_loss(logits, labels) if labels is not None else None
        output = AudioMosaicClassifierOutput(
            loss=loss,
            logits=logits,
            pooled_output=pooled,
            hidden_states=outputs.hidden_states if (output_hidden_states or self.config.output_hidden_states) else None,
            attentions=outputs.attentions,
        )
        return output if return_dict else output.to_tuple()

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[`classification_loss`] for `config.problem_type`; infers ([`infer_problem_type`]) and stores the problem
        type from the labels when it is unset."""
        if self.config.problem_type is None:
            self.config.problem_type = infer_problem_type(logits, labels)
        return classification_loss(logits, labels, self.config.problem_type)


__all__ = [
    "AUTO_MAP",
    "AudioMosaicPreTrainedModel",
    "AudioMosaicModel",
    "AudioMosaicForAudioClassification",
    "AudioMosaicModelOutput",
    "AudioMosaicClassifierOutput",
    "AudioMosaicProbeHead",
    "sincos_2d_position_embedding",
    "pool_tokens",
    "classification_loss",
    "infer_problem_type",
    "soft_target_cross_entropy",
    "encoder_layer_id",
    "no_weight_decay_names",
]
