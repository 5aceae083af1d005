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

logger = logging.get_logger(__name__)

# Written into config.json by save_pretrained so that a saved folder loads with trust_remote_code=True and any Auto class.
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
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`): classification scores (before softmax/sigmoid).
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

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        embeddings = self.projection(input_values)  # (B, D, T', F')
        embeddings = embeddings.flatten(2).transpose(1, 2)  # (B, T' * F', D), time-major
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
        projection = self.patch_embeddings.projection
        patches = projection(input_values.to(projection.weight.dtype)).flatten(2).transpose(1, 2)  # (B, L, D)
        batch, num_patches, dim = patches.shape
        positions = self.position_embeddings[:, 1 : num_patches + 1].expand(batch, -1, -1)
        if ids_keep is not None:
            if ids_keep.ndim != 2 or ids_keep.shape[0] != batch:
                raise ValueError(f"ids_keep must have shape (batch={batch}, num_kept); got {tuple(ids_keep.shape)}.")
            ids_keep = ids_keep.to(patches.device)
            checkable = not torch.compiler.is_compiling()  # a data-dependent check would break the compiled graph
            if checkable and ids_keep.numel() and (int(ids_keep.min()) < 0 or int(ids_keep.max()) >= num_patches):
                raise ValueError(f"ids_keep must index the {num_patches} patch tokens of the input.")
            index = ids_keep.unsqueeze(-1).expand(-1, -1, dim)
            patches = torch.gather(patches, 1, index)
            positions = torch.gather(positions, 1, index)
        patches = self.patch_embeddings.norm(patches) + positions
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

    def forward(self, hidden_states: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc_norm(pool_tokens(hidden_states, self.pooling, token_mask))


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
    >>> from feature_extraction import AudioMosaicFeatureExtractor
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
        if token_mask is not None and bool(token_mask.all()):
            token_mask = None
        attn_mask = None
        if token_mask is not None:
            attn_mask = create_bidirectional_mask(
                config=self.config, inputs_embeds=hidden_states, attention_mask=token_mask
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
    output after the optional final norm, as in the original probe)."""

    def __init__(self, config: AudioMosaicConfig) -> None:
        super().__init__()
        self.layer_weights = nn.Parameter(torch.zeros(config.num_hidden_layers + 1))

    def forward(self, layers: list[torch.Tensor]) -> torch.Tensor:
        weights = torch.softmax(self.layer_weights, dim=0)
        return torch.einsum("l,lbnd->bnd", weights.to(layers[0].dtype), torch.stack(layers, dim=0))


class AudioMosaicAttentiveLayerPooling(nn.Module):
    """Attentive probe over layers: a learned query attends over per-layer pooled vectors (`L + 1` entries, each
    LayerNorm-ed then pooled), with bias-free key/value projections and `attentive_probe_heads` heads."""

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

    def forward(self, layers: list[torch.Tensor], token_mask: torch.Tensor | None = None) -> torch.Tensor:
        pooled = torch.stack(
            [pool_tokens(norm(h), self.pooling, token_mask) for norm, h in zip(self.layer_norms, layers)], dim=1
        )  # (B, L + 1, D)
        batch, num_layers, dim = pooled.shape
        keys = self.attn_key(pooled).view(batch, num_layers, self.num_heads, self.head_dim).transpose(1, 2)
        values = self.attn_value(pooled).view(batch, num_layers, self.num_heads, self.head_dim).transpose(1, 2)
        scores = torch.matmul(self.attn_query, keys.transpose(-1, -2)) * self.head_dim**-0.5  # (B, H, 1, L + 1)
        out = torch.matmul(scores.softmax(dim=-1), values)  # (B, H, 1, d)
        return out.transpose(1, 2).reshape(batch, dim)


class AudioMosaicForAudioClassification(AudioMosaicPreTrainedModel):
    """AudioMosaic with a classification head, for fine-tuning, linear probing and layer probes.

    `config.classifier_head` selects the head:

    - `"linear"`: `Linear(dropout(fc_norm(pool(last_hidden_state))))` — the released fine-tuned / linear-probe models.
    - `"layer"`: the same on the output of block `config.probe_layer`.
    - `"weighted_sum"`: on a learned softmax-weighted sum of the block outputs.
    - `"attentive"`: on a single-query attention over per-layer pooled vectors, then `fc_norm`.

    The loss follows `config.problem_type` (inferred from the labels when unset): cross-entropy for integer labels,
    binary cross-entropy with logits for multi-hot float labels (AudioSet), MSE for a single regression output. For
    linear probing call [`~AudioMosaicForAudioClassification.freeze_encoder`] (it keeps `fc_norm` and the head
    trainable, as the original protocol does).
    """

    accepts_loss_kwargs = False  # the loss is a per-batch mean; see transformers_notes pitfall 4

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
            labels (`torch.Tensor`, *optional*): `(batch_size,)` class indices (single-label), `(batch_size,
                num_labels)` multi-hot floats (multi-label) or `(batch_size,)` floats (regression with one label).
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
        """Loss for `config.problem_type`; infers and stores the problem type from the labels when it is unset."""
        problem_type = self.config.problem_type
        if problem_type is None:
            if self.num_labels == 1:
                problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int) and labels.ndim == 1:
                problem_type = "single_label_classification"
            else:
                problem_type = "multi_label_classification"
            self.config.problem_type = problem_type
        labels = labels.to(logits.device)
        if problem_type == "regression":
            return nn.functional.mse_loss(logits.squeeze(-1), labels.to(logits.dtype).view(-1))
        if problem_type == "single_label_classification":
            if labels.ndim != 1:
                raise ValueError(
                    f"single_label_classification expects labels of shape (batch,), got {tuple(labels.shape)}."
                )
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_labels):
                raise ValueError(
                    f"labels must be class indices in [0, {self.num_labels - 1}]; got min {int(labels.min())}, "
                    f"max {int(labels.max())}."
                )
            return nn.functional.cross_entropy(logits, labels.long())
        if problem_type == "multi_label_classification":
            if labels.shape != logits.shape:
                raise ValueError(
                    f"multi_label_classification expects labels of shape {tuple(logits.shape)} (multi-hot), got "
                    f"{tuple(labels.shape)}."
                )
            return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        raise ValueError(f"Unknown problem_type {problem_type!r}.")


__all__ = [
    "AUTO_MAP",
    "AudioMosaicPreTrainedModel",
    "AudioMosaicModel",
    "AudioMosaicForAudioClassification",
    "AudioMosaicModelOutput",
    "AudioMosaicClassifierOutput",
    "sincos_2d_position_embedding",
    "pool_tokens",
]
