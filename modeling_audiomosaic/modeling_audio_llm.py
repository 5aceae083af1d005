# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""AudioMosaic audio-language model: AudioMosaic encoder -> pooled audio tokens -> projector -> causal LM (LTU style).

The audio encoder's patch tokens (time-major, `t * F' + f`, CLS dropped) are pooled to `num_audio_tokens` vectors per
clip, projected to the language model's width and written into the LM's input embeddings at the positions of the
`<audio>` placeholder tokens (`masked_scatter`, the Qwen2-Audio / LLaVA pattern). With the placeholders at the start
of the prompt this is exactly LTU's "prepend the 32 audio embeddings" (`models/modeling_ltu.py` of the original).

Imports only ``torch``, ``transformers``, ``safetensors`` and sibling modules.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.generation import GenerationMixin
from transformers.modeling_outputs import ModelOutput
from transformers.modeling_utils import PreTrainedModel
from transformers.utils import logging
from transformers.utils.generic import can_return_tuple

from .configuration_audio_llm import AudioMosaicLLMConfig
from .modeling_audiomosaic import AudioMosaicModel, load_safetensors_only

logger = logging.get_logger(__name__)

#: file written by `convert_original_checkpoint` for an LTU release (keys `audio_proj.1.weight` / `audio_proj.1.bias`)
LTU_PROJECTOR_FILE = "audio_projector.safetensors"
_LTU_PROJECTOR_KEYS = {"audio_proj.1.weight": "linear.weight", "audio_proj.1.bias": "linear.bias"}


# ----------------------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class AudioMosaicCausalLMOutputWithPast(ModelOutput):
    """Output of [`AudioMosaicForConditionalGeneration`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Next-token cross-entropy over the positions whose label is not -100 (audio placeholders, padding and,
            with `config.ignore_prompt_in_loss`, prompt tokens are excluded).
        logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, vocab_size)`):
            Language-model scores (only the last `logits_to_keep` positions when it is set).
        past_key_values (`Cache`, *optional*):
            The language model's key/value cache (the audio is in it after the first generation step).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*): the language model's hidden states.
        attentions (`tuple(torch.FloatTensor)`, *optional*): the language model's attention probabilities.
        audio_embeddings (`torch.FloatTensor` of shape `(num_clips, num_audio_tokens, text_hidden_size)`, *optional*):
            The projected audio embeddings written into the input embeddings (only when audio was encoded).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    past_key_values: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    audio_embeddings: torch.FloatTensor | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Pooling and projectors
# ----------------------------------------------------------------------------------------------------------------------
def pool_audio_tokens(
    patch_tokens: torch.Tensor,
    grid: tuple[int, int],
    num_tokens: int,
    mode: str = "ltu",
) -> torch.Tensor:
    """Pool the encoder's time-major patch tokens `(B, T' * F', D)` (CLS removed) to `(B, num_tokens, D)`.

    Args:
        patch_tokens: tokens in the encoder's order, token `t * F' + f` for time patch `t` and frequency group `f`.
        grid: `(T', F')`, the number of time and frequency patches.
        num_tokens: number of output tokens `N`.
        mode: `"ltu"` reproduces LTU (the original's `models/modeling_ltu.py`): `reshape(B, F', T', D)` (CAV-MAE's
            frequency-major reading of the sequence), mean over the first axis, then average pooling of the second
            axis to `N` (`avg_pool2d` with kernel `(T' / N, 1)`; 64 -> 32 for 1024 frames). Because AudioMosaic's
            tokens are time-major, the groups are *not* time spans: for the 64 x 8 grid, output `j` averages time
            patches `t ≡ j // 4 (mod 8)` and frequency groups `{2 (j mod 4), 2 (j mod 4) + 1}`. `"time"`: mean over
            frequency, then average pooling of contiguous time spans (output `k` covers `[k T' / N, (k + 1) T' / N)`).

    When `N` does not divide the pooled length, adaptive average pooling is used (identical to the fixed kernel when
    it divides).
    """
    batch, length, dim = patch_tokens.shape
    num_time, num_freq = grid
    if length != num_time * num_freq:
        raise ValueError(f"expected {num_time} x {num_freq} = {num_time * num_freq} patch tokens, got {length}.")
    if mode == "ltu":
        sequence = patch_tokens.reshape(batch, num_freq, num_time, dim).mean(dim=1)
    elif mode == "time":
        sequence = patch_tokens.reshape(batch, num_time, num_freq, dim).mean(dim=2)
    else:
        raise ValueError(f"Unknown audio pooling {mode!r}; expected 'ltu' or 'time'.")
    steps = sequence.shape[1]
    if steps < num_tokens:
        raise ValueError(
            f"the audio input has {num_time} time patches, fewer than num_audio_tokens={num_tokens}; use longer "
            "inputs (pad to the feature extractor's max_length) or fewer audio tokens."
        )
    if steps % num_tokens == 0:
        return sequence.reshape(batch, num_tokens, steps // num_tokens, dim).mean(dim=2)
    pooled = nn.functional.adaptive_avg_pool1d(sequence.transpose(1, 2), num_tokens)
    return pooled.transpose(1, 2)


class AudioMosaicAudioProjector(nn.Module):
    """Pools the encoder's patch tokens to `config.num_audio_tokens` vectors and projects them to the LM width.

    - `projector_type="ltu"`: `linear(norm(pooled / ltu_hard_norm))` with `norm` a LayerNorm without affine
      parameters (eps 1e-5, torch's default, as in LTU's `audio_proj = Sequential(LayerNorm(768, elementwise_affine=
      False), Linear(768, 4096))`). Parameters: `linear.weight`, `linear.bias`.
    - `projector_type="mlp"`: `linear_2(act(linear_1(pooled)))` (LLaVA's 2-layer MLP).
    """

    def __init__(self, config: AudioMosaicLLMConfig) -> None:
        super().__init__()
        self.projector_type = config.projector_type
        self.pooling = config.resolved_audio_pooling
        self.num_audio_tokens = int(config.num_audio_tokens)
        self.shuffle_in_training = bool(config.ltu_shuffle_in_training) and self.pooling == "ltu"
        audio_dim, text_dim = config.audio_hidden_size, config.text_hidden_size
        if self.projector_type == "ltu":
            self.hard_norm = float(config.ltu_hard_norm)
            self.norm = nn.LayerNorm(audio_dim, elementwise_affine=False)
            self.linear = nn.Linear(audio_dim, text_dim)
        else:
            self.linear_1 = nn.Linear(audio_dim, text_dim)
            self.act = ACT2FN[config.projector_hidden_act]
            self.linear_2 = nn.Linear(text_dim, text_dim)

    def pool(self, patch_tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """`(B, T' F', D)` patch tokens -> `(B, num_audio_tokens, D)` (see [`pool_audio_tokens`])."""
        if self.training and self.shuffle_in_training:  # LTU's training-mode random token order (mask_ratio=0)
            order = torch.rand(patch_tokens.shape[:2], device=patch_tokens.device).argsort(dim=1)
            patch_tokens = torch.gather(patch_tokens, 1, order.unsqueeze(-1).expand_as(patch_tokens))
        return pool_audio_tokens(patch_tokens, grid, self.num_audio_tokens, self.pooling)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """`(B, N, D_audio)` pooled tokens -> `(B, N, D_text)`."""
        if self.projector_type == "ltu":
            pooled = pooled.to(self.linear.weight.dtype)
            return self.linear(self.norm(pooled / self.hard_norm))
        pooled = pooled.to(self.linear_1.weight.dtype)
        return self.linear_2(self.act(self.linear_1(pooled)))

    def forward(self, patch_tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return self.project(self.pool(patch_tokens, grid))


def answer_alignment_loss(
    audio_embeddings: torch.Tensor,
    answer_ids: torch.LongTensor,
    embedding_matrix: torch.Tensor,
    candidate_ids: torch.LongTensor,
    temperature: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Align projected audio tokens with the LM's input embeddings of the answer's tokens, without running the LM.

    Audio slot `k` of a clip whose answer has tokens `a_0 .. a_{m-1}` targets token `a_{k mod m}` (the answer
    spelled out, repeated over the slots). Each slot is classified among `candidate_ids` (e.g. every token of every
    training answer) by its squared distance to their embeddings, scaled by the candidates' mean squared norm:
    `logits_c = -||x - e_c||^2 / (temperature * mean_c ||e_c||^2)`. The loss is minimal near `x = e_target`, so the
    audio tokens land *on* the LM's word embeddings (where an instruction-tuned LM can read and copy them) rather than
    drifting in norm as with a dot-product classifier. A cheap warm start for the projector (a classification-style
    stage 0 before LTU's stages); it needs only the embedding matrix.

    Args:
        audio_embeddings: `(B, N, H)` projector outputs.
        answer_ids: `(B, M)` answer token ids, right-padded with -100 (at least one real token per row).
        embedding_matrix: `(V, H)` the LM's input embeddings.
        candidate_ids: `(C,)` token ids the slots are classified among; must contain every answer token.
        temperature: softmax temperature (relative to the mean squared candidate norm).

    Returns:
        `(loss, predicted)`: the mean cross-entropy over slots, and `(B, N)` the nearest candidate's token id per slot.
    """
    if audio_embeddings.ndim != 3 or answer_ids.ndim != 2 or answer_ids.shape[0] != audio_embeddings.shape[0]:
        raise ValueError(
            f"expected audio_embeddings (B, N, H) and answer_ids (B, M); got {tuple(audio_embeddings.shape)} and "
            f"{tuple(answer_ids.shape)}."
        )
    lengths = (answer_ids != -100).sum(dim=1)
    if bool((lengths == 0).any()):
        raise ValueError("every answer needs at least one token (a row of answer_ids is all padding).")
    candidate_ids = candidate_ids.to(answer_ids.device)
    position = torch.full((int(embedding_matrix.shape[0]),), -1, dtype=torch.long, device=answer_ids.device)
    position[candidate_ids] = torch.arange(candidate_ids.numel(), device=answer_ids.device)
    num_slots = audio_embeddings.shape[1]
    slot = torch.arange(num_slots, device=answer_ids.device).unsqueeze(0) % lengths.unsqueeze(1)  # (B, N)
    targets = position[torch.gather(answer_ids.clamp(min=0), 1, slot)]
    if bool((targets < 0).any()):
        raise ValueError("candidate_ids must contain every answer token id.")
    candidates = embedding_matrix[candidate_ids].to(audio_embeddings.dtype)  # (C, H)
    scale = temperature * candidates.pow(2).sum(dim=-1).mean()
    distances = torch.cdist(audio_embeddings.reshape(-1, audio_embeddings.shape[-1]), candidates).pow(2)
    logits = -distances / scale
    loss = nn.functional.cross_entropy(logits, targets.reshape(-1))
    predicted = candidate_ids[logits.argmax(dim=-1)].reshape(audio_embeddings.shape[:2])
    return loss, predicted


# ----------------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------------
class AudioMosaicLLMPreTrainedModel(PreTrainedModel):
    """Base class of the AudioMosaic audio-language model (config class, attention/parallelism flags)."""

    config_class = AudioMosaicLLMConfig
    config: AudioMosaicLLMConfig

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained` reading safetensors only unless `use_safetensors=False` is passed."""
        return load_safetensors_only(super().from_pretrained, pretrained_model_name_or_path, *args, **kwargs)
    # No wrapper attribute holds "the base model": the audio tower, projector and full causal LM are direct children.
    base_model_prefix = "audiomosaic_llm"
    main_input_name = "input_ids"
    input_modalities = ("audio", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["AudioMosaicEmbeddings", "AudioMosaicLayer"]  # the LM's own entries are added by post_init
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True


class AudioMosaicForConditionalGeneration(AudioMosaicLLMPreTrainedModel, GenerationMixin):
    """AudioMosaic audio encoder + audio projector + any causal language model (LTU, `models/modeling_ltu.py`).

    Each audio clip gives `config.num_audio_tokens` embeddings that replace the `<audio>` placeholder tokens of
    `input_ids` (one run of `num_audio_tokens` placeholders per clip, in order; [`AudioMosaicProcessor`] expands each
    `<audio>` marker). The loss is the language model's next-token cross-entropy with audio placeholders (and padding,
    and prompt tokens if `config.ignore_prompt_in_loss` and a `prompt_mask` is given) set to -100.

    Children: `audio_tower` ([`AudioMosaicModel`]), `audio_projector` ([`AudioMosaicAudioProjector`]) and
    `language_model` (`AutoModelForCausalLM.from_config(config.text_config)`, including its LM head). For LoRA on the
    language model only, target e.g. `r".*language_model.*\\.(q_proj|v_proj)"` (a regex: a list of suffixes would also
    match other modules), with `modules_to_save=["audio_projector"]`.

    Example:

    ```python
    >>> model = AudioMosaicForConditionalGeneration.from_pretrained_components(
    ...     "converted/ltu-encoder", "local/llama", tokenizer=processor.tokenizer,
    ...     projector_path="converted/ltu-encoder")  # loads audio_projector.safetensors into the "ltu" projector
    >>> inputs = processor(text="<audio>What is the sound?", audio=wave, sampling_rate=16000, return_tensors="pt")
    >>> model.generate(**inputs, max_new_tokens=20)
    ```
    """

    def __init__(self, config: AudioMosaicLLMConfig) -> None:
        super().__init__(config)
        self.audio_tower = AudioMosaicModel(config.audio_config)
        self.audio_projector = AudioMosaicAudioProjector(config)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()

    # ------------------------------------------------------------------------------------------ delegation
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module | None:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.language_model.set_output_embeddings(new_embeddings)

    def get_decoder(self) -> nn.Module:
        return self.language_model.get_decoder()

    def set_decoder(self, decoder: nn.Module) -> None:
        self.language_model.set_decoder(decoder)

    # ------------------------------------------------------------------------------------------ audio
    def _require_audio_token_id(self) -> int:
        if self.config.audio_token_id is None:
            raise ValueError(
                "config.audio_token_id is not set. Set it to the tokenizer's id of "
                f"{self.config.audio_token!r} (AudioMosaicProcessor.audio_token_id)."
            )
        return int(self.config.audio_token_id)

    def get_audio_features(
        self, input_values: torch.Tensor, audio_attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encode clips and return their projected audio embeddings.

        Args:
            input_values (`torch.FloatTensor` of shape `(num_clips, frames, num_mel_bins)`): log-mel features from
                the feature extractor (`frames` a multiple of the patch size, at most the encoder's `max_length`).
            audio_attention_mask (`torch.LongTensor` of shape `(num_clips, frames)`, *optional*): frame mask for
                clips padded to a common length; padded patches are excluded from the encoder's attention (the
                pooling still averages over the full grid, as LTU does with its fixed 1024-frame inputs).

        Returns:
            `torch.FloatTensor` of shape `(num_clips, num_audio_tokens, text_hidden_size)`.
        """
        return self.audio_projector.project(self.get_pooled_audio_tokens(input_values, audio_attention_mask))

    def get_pooled_audio_tokens(
        self, input_values: torch.Tensor, audio_attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The encoder's tokens (block `config.audio_feature_layer`) pooled to `(num_clips, num_audio_tokens,
        audio_hidden_size)`, before the projector's learned layers (what [`get_audio_features`] projects). With a
        frozen encoder these can be computed once and cached, e.g. for [`answer_alignment_loss`]."""
        audio_config = self.config.audio_config
        layer = self.config.audio_feature_layer
        outputs = self.audio_tower(
            input_values, attention_mask=audio_attention_mask, output_hidden_states=layer != -1, return_dict=True
        )
        tokens = outputs.last_hidden_state if layer == -1 else outputs.hidden_states[layer]
        patch_tokens = tokens[:, 1:]  # drop CLS
        grid = (input_values.shape[-2] // audio_config.patch_size, audio_config.num_freq_patches)
        return self.audio_projector.pool(patch_tokens, grid)

    def get_placeholder_mask(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor
    ) -> torch.BoolTensor:
        """`(B, L)` boolean mask of the audio placeholder positions, from `input_ids` or, without them, by comparing
        `inputs_embeds` with the placeholder's embedding."""
        token_id = self._require_audio_token_id()
        if input_ids is not None:
            return input_ids == token_id
        placeholder = self.get_input_embeddings()(torch.tensor(token_id, device=inputs_embeds.device))
        return (inputs_embeds == placeholder.to(inputs_embeds.dtype)).all(dim=-1)

    def merge_audio_embeddings(
        self, inputs_embeds: torch.Tensor, placeholder_mask: torch.BoolTensor, audio_embeddings: torch.Tensor
    ) -> torch.Tensor:
        """Write `audio_embeddings` (num_clips, N, H) into the placeholder positions of `inputs_embeds` (B, L, H), in
        reading order (batch row, then position). Raises `ValueError` when the counts differ."""
        num_placeholders = int(placeholder_mask.sum())
        num_clips, num_tokens = audio_embeddings.shape[:2]
        if num_placeholders != num_clips * num_tokens:
            raise ValueError(
                f"The input has {num_placeholders} audio placeholder tokens ({self.config.audio_token!r}, id "
                f"{self.config.audio_token_id}) but the audio gives {num_clips} clip(s) x {num_tokens} tokens = "
                f"{num_clips * num_tokens} embeddings. Each clip needs exactly num_audio_tokens={num_tokens} "
                "placeholders (AudioMosaicProcessor expands every `<audio>` marker) and one clip per marker."
            )
        mask = placeholder_mask.unsqueeze(-1).to(inputs_embeds.device)
        audio_embeddings = audio_embeddings.to(inputs_embeds.device, inputs_embeds.dtype)
        return inputs_embeds.masked_scatter(mask, audio_embeddings)

    def build_inputs_embeds(
        self,
        input_ids: torch.LongTensor,
        input_values: torch.Tensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The LM input embeddings with the audio embeddings written into the placeholder positions (what `forward`
        feeds the language model at the first step)."""
        inputs_embeds = self.get_input_embeddings()(input_ids)
        if input_values is None:
            return inputs_embeds
        audio_embeddings = self.get_audio_features(input_values, audio_attention_mask)
        return self.merge_audio_embeddings(inputs_embeds, self.get_placeholder_mask(input_ids, inputs_embeds),
                                           audio_embeddings)

    def mask_labels(
        self,
        labels: torch.LongTensor,
        placeholder_mask: torch.BoolTensor | None,
        attention_mask: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
    ) -> torch.LongTensor:
        """Copy of `labels` with -100 on audio placeholders, on padding (`attention_mask == 0`) and, with
        `config.ignore_prompt_in_loss`, on prompt tokens (`prompt_mask == 1`)."""
        labels = labels.clone()
        if placeholder_mask is not None:
            labels = labels.masked_fill(placeholder_mask.to(labels.device), -100)
        if attention_mask is not None and attention_mask.ndim == 2 and attention_mask.shape == labels.shape:
            labels = labels.masked_fill(attention_mask.to(labels.device) == 0, -100)
        if self.config.ignore_prompt_in_loss and prompt_mask is not None:
            labels = labels.masked_fill(prompt_mask.to(labels.device).bool(), -100)
        return labels

    # ------------------------------------------------------------------------------------------ forward
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        input_values: torch.FloatTensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        prompt_mask: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        cache: Cache | None = None,
        **kwargs: Any,
    ) -> AudioMosaicCausalLMOutputWithPast:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
                Token ids with `num_audio_tokens` consecutive `<audio>` placeholders per clip.
            attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*): text mask.
            input_values (`torch.FloatTensor` of shape `(num_clips, frames, num_mel_bins)`, *optional*):
                Log-mel features of the clips, in the order of their placeholders (row-major over the batch). Encoded
                only when the input holds placeholders or no cache has been filled yet: in cached generation the
                audio lives in the KV cache after the first step.
            audio_attention_mask (`torch.LongTensor` of shape `(num_clips, frames)`, *optional*): frame mask of
                `input_values` (the feature extractor's `attention_mask` with `padding="longest"`).
            labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                Target ids (usually `input_ids`; the shift happens inside). Placeholder and padding positions are
                forced to -100.
            prompt_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
                1 on prompt tokens (from the processor's training helper); their labels are set to -100 when
                `config.ignore_prompt_in_loss`.
            past_key_values / cache (`Cache`, *optional*): the KV cache, under either name (transformers >= 5.25
                calls it `cache` and deprecates `past_key_values`); handed to the language model under the name its
                `forward` takes.
            position_ids, inputs_embeds, use_cache, logits_to_keep, **kwargs:
                passed to the language model (e.g. `num_items_in_batch`, `output_hidden_states`).
        """
        if cache is not None:
            if past_key_values is not None and past_key_values is not cache:
                raise ValueError("Pass the KV cache as `cache` or as `past_key_values`, not both.")
            past_key_values = cache
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)

        placeholder_mask = None
        if self.config.audio_token_id is not None:
            placeholder_mask = self.get_placeholder_mask(input_ids, inputs_embeds)
        elif input_values is not None:
            self._require_audio_token_id()  # raises a clear error
        num_placeholders = int(placeholder_mask.sum()) if placeholder_mask is not None else 0
        cache_filled = past_key_values is not None and past_key_values.get_seq_length() > 0

        audio_embeddings = None
        if input_values is not None and (num_placeholders > 0 or not cache_filled):
            audio_embeddings = self.get_audio_features(input_values, audio_attention_mask)
            inputs_embeds = self.merge_audio_embeddings(inputs_embeds, placeholder_mask, audio_embeddings)
        elif num_placeholders > 0 and not cache_filled:
            raise ValueError(
                f"The input has {num_placeholders} audio placeholder tokens ({self.config.audio_token!r}) but no "
                "input_values were given: pass the audio features (one clip per run of num_audio_tokens="
                f"{self.config.num_audio_tokens} placeholders)."
            )

        if labels is not None:
            labels = self.mask_labels(labels, placeholder_mask, attention_mask, prompt_mask)

        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            return_dict=True,
            **{self._language_model_cache_argument: past_key_values},
            **kwargs,
        )
        return AudioMosaicCausalLMOutputWithPast(
            loss=outputs.loss,
            logits=outputs.logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            audio_embeddings=audio_embeddings,
        )

    @property
    def _language_model_cache_argument(self) -> str:
        """`"cache"` if the language model's `forward` takes it (transformers >= 5.25), else `"past_key_values"`."""
        parameters = inspect.signature(self.language_model.forward).parameters
        return "cache" if "cache" in parameters else "past_key_values"

    def prepare_inputs_for_generation(
        self, input_ids: torch.LongTensor, *args: Any, is_first_iteration: bool | None = False, **kwargs: Any
    ) -> dict[str, Any]:
        """Standard preparation; the audio (`input_values`, `audio_attention_mask`) is passed only at the first step
        (prefill) when a cache is used: afterwards it is in the KV cache and the new tokens hold no placeholders."""
        model_inputs = super().prepare_inputs_for_generation(
            input_ids, *args, is_first_iteration=is_first_iteration, **kwargs
        )
        if not is_first_iteration and kwargs.get("use_cache", True):
            model_inputs.pop("input_values", None)
            model_inputs.pop("audio_attention_mask", None)
        return model_inputs

    # ------------------------------------------------------------------------------------------ building / loading
    def load_audio_projector(self, path: str | os.PathLike) -> None:
        """Load a converted LTU release's `audio_projector.safetensors` (keys `audio_proj.1.weight` / `.bias`) into
        the `"ltu"` projector. `path` is the file or the folder holding it. Keys already named like this module's
        (`linear.weight`, optionally prefixed by `audio_projector.`) are accepted too."""
        from safetensors.torch import load_file

        if self.config.projector_type != "ltu":
            raise ValueError(f"LTU projector weights need projector_type='ltu', not {self.config.projector_type!r}.")
        path = Path(path)
        if path.is_dir():
            path = path / LTU_PROJECTOR_FILE
        if not path.is_file():
            raise FileNotFoundError(f"No audio projector weights at {path}.")
        state: dict[str, torch.Tensor] = {}
        for key, value in load_file(str(path)).items():
            name = _LTU_PROJECTOR_KEYS.get(key, key.removeprefix("audio_projector."))
            state[name] = value
        expected = {name: tuple(param.shape) for name, param in self.audio_projector.state_dict().items()}
        if set(state) != set(expected):
            raise ValueError(f"{path} holds keys {sorted(state)}; expected {sorted(_LTU_PROJECTOR_KEYS)}.")
        wrong = [
            f"{name} has shape {tuple(state[name].shape)}, needs {shape}"
            for name, shape in sorted(expected.items(), reverse=True)  # weight first
            if tuple(state[name].shape) != shape
        ]
        if wrong:
            raise ValueError(
                f"{path}: {'; '.join(wrong)} (this model's projector maps audio width {self.config.audio_hidden_size} "
                f"-> LM width {self.config.text_hidden_size})."
            )
        self.audio_projector.load_state_dict(state, strict=True)

    @classmethod
    def from_pretrained_components(
        cls,
        audio_path: str | os.PathLike,
        lm_path: str | os.PathLike,
        *,
        tokenizer: Any = None,
        projector_path: str | os.PathLike | None = None,
        final_norm_from_fc_norm: bool = False,
        audio_kwargs: dict[str, Any] | None = None,
        lm_kwargs: dict[str, Any] | None = None,
        **config_kwargs: Any,
    ) -> "AudioMosaicForConditionalGeneration":
        """Build the model from a local AudioMosaic folder and a local causal-LM folder (no random init of either).

        Args:
            audio_path: folder of any AudioMosaic model (`AudioMosaicModel.from_pretrained` reads the encoder of heads
                too). For LTU use the converted LTU encoder (it keeps the final norm, `use_final_norm=True`).
            lm_path: folder of a causal LM (`AutoModelForCausalLM.from_pretrained`).
            tokenizer: optional tokenizer holding the audio token (e.g. `AudioMosaicProcessor(...).tokenizer`): sets
                `audio_token_id` and grows the LM's embeddings if the tokenizer is larger than its vocabulary.
            projector_path: optional LTU `audio_projector.safetensors` (or its folder) loaded into the `"ltu"`
                projector; otherwise the projector is freshly initialised.
            final_norm_from_fc_norm: LTU's encoder initialisation from a pre-training checkpoint (`main_ltu.py`):
                build the encoder with a final norm (`use_final_norm=True`) initialised from the checkpoint's
                post-pooling `fc_norm`.
            audio_kwargs, lm_kwargs: extra `from_pretrained` arguments (e.g. `{"drop_path_rate": 0.0}`, `dtype`).
            **config_kwargs: [`AudioMosaicLLMConfig`] fields (`num_audio_tokens`, `projector_type`, ...).
        """
        audio_kwargs = dict(audio_kwargs or {})
        if final_norm_from_fc_norm:
            audio_kwargs.setdefault("use_final_norm", True)
        audio_tower = AudioMosaicModel.from_pretrained(audio_path, **audio_kwargs)
        if final_norm_from_fc_norm:
            final_norm, fc_norm = audio_tower.layernorm, audio_tower.pooler.fc_norm
            if not (isinstance(final_norm, nn.LayerNorm) and isinstance(fc_norm, nn.LayerNorm)):
                raise ValueError("final_norm_from_fc_norm needs use_final_norm=True and use_fc_norm=True.")
            with torch.no_grad():
                final_norm.weight.copy_(fc_norm.weight)
                final_norm.bias.copy_(fc_norm.bias)
        language_model = AutoModelForCausalLM.from_pretrained(lm_path, **(lm_kwargs or {}))
        audio_token = config_kwargs.get("audio_token", "<audio>")
        if tokenizer is not None:
            token_id = tokenizer.convert_tokens_to_ids(audio_token)
            if token_id is None or (token_id == tokenizer.unk_token_id and audio_token != tokenizer.unk_token):
                raise ValueError(
                    f"The tokenizer has no {audio_token!r} token; build AudioMosaicProcessor(feature_extractor, "
                    "tokenizer), which adds it, and pass processor.tokenizer."
                )
            config_kwargs.setdefault("audio_token_id", int(token_id))
            if len(tokenizer) > language_model.get_input_embeddings().num_embeddings:
                language_model.resize_token_embeddings(len(tokenizer))
        config = AudioMosaicLLMConfig(
            audio_config=audio_tower.config, text_config=language_model.config, **config_kwargs
        )
        with torch.device("meta"):  # skeleton only: both sub-models are replaced by the loaded ones
            model = cls(config)
        model.audio_tower = audio_tower
        model.language_model = language_model
        projector = AudioMosaicAudioProjector(config)
        projector.apply(model._init_weights)
        model.audio_projector = projector.to(device=language_model.device, dtype=language_model.dtype)
        if language_model.can_generate():
            model.generation_config = language_model.generation_config
        model.name_or_path = str(lm_path)
        if projector_path is not None:
            model.load_audio_projector(projector_path)
        return model


__all__ = [
    "AudioMosaicForConditionalGeneration",
    "AudioMosaicLLMPreTrainedModel",
    "AudioMosaicAudioProjector",
    "AudioMosaicCausalLMOutputWithPast",
    "pool_audio_tokens",
    "answer_alignment_loss",
    "LTU_PROJECTOR_FILE",
]
