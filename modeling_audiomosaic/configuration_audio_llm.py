# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Configuration of the AudioMosaic audio-language model (LTU-style: AudioMosaic encoder + projector + causal LM).

Imports only the standard library, ``transformers`` and the sibling ``configuration_audiomosaic``.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec

from .configuration_audiomosaic import AudioMosaicConfig

PROJECTOR_TYPES = ("ltu", "mlp")
AUDIO_POOLINGS = ("ltu", "time")


class AudioMosaicLLMConfig(PreTrainedConfig):
    r"""Configuration of [`AudioMosaicForConditionalGeneration`]: an AudioMosaic audio encoder whose patch tokens are
    pooled to `num_audio_tokens` vectors, projected to the width of a causal language model and written into the
    language model's input embeddings at the positions of the `<audio>` placeholder tokens (LTU, as in the original
    repository's `models/modeling_ltu.py`).

    Args:
        audio_config (`dict` or [`AudioMosaicConfig`], *optional*):
            The audio encoder. Defaults to the released ViT-B/16 on 1024x128 inputs with the final LayerNorm that
            LTU's encoder keeps (`use_final_norm=True`) and no drop-path.
        text_config (`dict` or `PreTrainedConfig`, *optional*):
            Any causal-LM config (LLaMA, Qwen2, ...). A dict must carry its `model_type`; it is rebuilt through
            `AutoConfig.for_model`. Defaults to a LLaMA config (LTU's LLM is Vicuna/LLaMA-7B).
        audio_token (`str`, *optional*, defaults to `"<audio>"`):
            The placeholder token. The processor expands each `<audio>` of a prompt into `num_audio_tokens` copies.
        audio_token_id (`int`, *optional*):
            Id of `audio_token` in the tokenizer. Required to run the model with audio; set it from the tokenizer
            (see [`AudioMosaicProcessor`] and [`AudioMosaicForConditionalGeneration.from_pretrained_components`]).
        num_audio_tokens (`int`, *optional*, defaults to 32):
            Number of embeddings each audio clip contributes to the LM input (32 in LTU).
        projector_type (`str`, *optional*, defaults to `"ltu"`):
            `"ltu"`: pool the patch tokens to `num_audio_tokens`, divide by `ltu_hard_norm` (50), LayerNorm without
            affine parameters, Linear to the LM width (LTU's `audio_proj`; loads a converted LTU release's
            `audio_projector.safetensors`). `"mlp"`: time-ordered pooling, then Linear - GELU - Linear (LLaVA style).
        audio_pooling (`str`, *optional*):
            How the `T' x F'` patch tokens become `num_audio_tokens` vectors. `"ltu"` reproduces LTU exactly: the
            time-major tokens are reshaped as if frequency-major (`(F', T')`, CAV-MAE's layout), averaged over the
            first axis and average-pooled along the second. With 1024 frames, token `j` is then the mean of time
            patches `t ≡ j // 4 (mod 8)` and frequency groups `{2(j mod 4), 2(j mod 4) + 1}` - **not a time
            sequence** (LTU's `modeling_ltu.py`). `"time"`: mean over frequency, then average pooling of contiguous time
            spans, so token `k` covers time patches `[k T'/N, (k + 1) T'/N)` (the "fixed" variant). Defaults to
            `"ltu"` for the `"ltu"` projector and `"time"` for `"mlp"`.
        ltu_hard_norm (`float`, *optional*, defaults to 50.0):
            Divisor applied to the pooled tokens before the `"ltu"` projector's LayerNorm (LTU's "hard norm").
        ltu_shuffle_in_training (`bool`, *optional*, defaults to `False`):
            Reproduce LTU's training-mode quirk: its encoder (`mask_ratio=0`) returned the patch tokens in a random
            per-sample order during training, so each pooled token averaged random patches. Only with
            `audio_pooling="ltu"`; eval mode is never affected.
        projector_hidden_act (`str`, *optional*, defaults to `"gelu"`): activation of the `"mlp"` projector.
        audio_feature_layer (`int`, *optional*, defaults to -1):
            Encoder output used: -1 is the final output (after the encoder's final norm, as in LTU); another index
            selects `hidden_states[audio_feature_layer]` (0 = embeddings, `i` = output of block `i`).
        ignore_prompt_in_loss (`bool`, *optional*, defaults to `False`):
            When the batch carries a `prompt_mask` (from [`AudioMosaicProcessor.build_training_example`]), set the
            labels of prompt tokens to -100. LTU trained on the prompt too (`train_on_inputs: true`), hence `False`.
            Audio placeholder positions never contribute to the loss.
        tie_word_embeddings (`bool`, *optional*, defaults to `False`):
            Mirrors `text_config.tie_word_embeddings` (the language model ties its own head).

    Example:

    ```python
    >>> from transformers import Qwen2Config
    >>> from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicLLMConfig, AudioMosaicForConditionalGeneration
    >>> audio = AudioMosaicConfig.from_preset("speechcommands", size="tiny", use_final_norm=True)
    >>> text = Qwen2Config(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    ...                    num_attention_heads=4, num_key_value_heads=2)
    >>> config = AudioMosaicLLMConfig(audio_config=audio, text_config=text.to_dict(), audio_token_id=999,
    ...                               num_audio_tokens=4)
    >>> model = AudioMosaicForConditionalGeneration(config)
    ```
    """

    model_type = "audiomosaic_llm"
    sub_configs_defaults = {
        "audio_config": SubConfigSpec(
            config_class=AudioMosaicConfig, init_kwargs={"use_final_norm": True, "drop_path_rate": 0.0}
        ),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    audio_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    audio_token: str = "<audio>"
    audio_token_id: int | None = None
    num_audio_tokens: int = 32
    projector_type: str = "ltu"
    audio_pooling: str | None = None
    ltu_hard_norm: float = 50.0
    ltu_shuffle_in_training: bool = False
    projector_hidden_act: str = "gelu"
    audio_feature_layer: int = -1
    ignore_prompt_in_loss: bool = False
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        if isinstance(self.text_config, dict) and "model_type" in self.text_config:
            # rebuild through AutoConfig.for_model: works for every registered causal-LM type
            text_kwargs = dict(self.text_config)
            self.text_config = AutoConfig.for_model(text_kwargs.pop("model_type"), **text_kwargs)
        super().__post_init__(**kwargs)
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True
        self._validate_audio_llm()

    def _validate_audio_llm(self) -> None:
        if self.projector_type not in PROJECTOR_TYPES:
            raise ValueError(
                f"projector_type={self.projector_type!r} is not supported; choose one of {PROJECTOR_TYPES}."
            )
        if self.audio_pooling is not None and self.audio_pooling not in AUDIO_POOLINGS:
            raise ValueError(f"audio_pooling={self.audio_pooling!r} is not supported; choose one of {AUDIO_POOLINGS}.")
        if int(self.num_audio_tokens) < 1:
            raise ValueError(f"num_audio_tokens must be >= 1, got {self.num_audio_tokens}.")
        layers = self.audio_config.num_hidden_layers
        if not -(layers + 1) <= self.audio_feature_layer <= layers:
            raise ValueError(
                f"audio_feature_layer={self.audio_feature_layer} is out of range for an encoder with {layers} blocks "
                f"(valid: -{layers + 1} .. {layers})."
            )
        if self.ltu_hard_norm <= 0:
            raise ValueError(f"ltu_hard_norm must be > 0, got {self.ltu_hard_norm}.")
        if not self.audio_token:
            raise ValueError("audio_token must be a non-empty string.")

    @property
    def resolved_audio_pooling(self) -> str:
        """`audio_pooling`, or its default for the projector (`"ltu"` for `"ltu"`, `"time"` for `"mlp"`)."""
        if self.audio_pooling is not None:
            return self.audio_pooling
        return "ltu" if self.projector_type == "ltu" else "time"

    @property
    def audio_hidden_size(self) -> int:
        """Width of the audio encoder's tokens."""
        return self.audio_config.hidden_size

    @property
    def text_hidden_size(self) -> int:
        """Width of the language model's embeddings."""
        return self.text_config.hidden_size


__all__ = ["AudioMosaicLLMConfig", "PROJECTOR_TYPES", "AUDIO_POOLINGS"]
