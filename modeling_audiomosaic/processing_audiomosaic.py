# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Processor of the AudioMosaic audio-language model: feature extractor + tokenizer + `<audio>` placeholder expansion.

Each `<audio>` marker in a prompt stands for one clip and is expanded into `num_audio_tokens` placeholder tokens, whose
input embeddings [`AudioMosaicForConditionalGeneration`] replaces with the clip's projected audio embeddings.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.tokenization_utils_base import AddedToken

#: Alpaca-style prompt of LTU (alpaca-lora's `alpaca_short` template) as a chat template; the audio markers of the
#: first user message are moved to the very front (LTU prepends the 32 audio embeddings), the rest is its instruction.
LTU_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ '<audio>' * message['content'].count('<audio>') }}"
    "### Instruction:\n{{ message['content'].replace('<audio>', '') }}\n\n### Response:\n"
    "{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] }}{{ eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)

AudioInput = np.ndarray | torch.Tensor | str | os.PathLike | Sequence[Any]


class AudioMosaicProcessor(ProcessorMixin):
    r"""Feature extractor ([`AudioMosaicFeatureExtractor`]) and tokenizer of the AudioMosaic audio-language model.

    The tokenizer gets `audio_token` as an added special token if it lacks it (grow the LM's embeddings accordingly:
    [`AudioMosaicForConditionalGeneration.from_pretrained_components`] does it when given the tokenizer).

    Args:
        feature_extractor ([`AudioMosaicFeatureExtractor`]): turns waveforms into `input_values`.
        tokenizer (`PreTrainedTokenizerBase`): the language model's tokenizer.
        chat_template (`str`, *optional*): Jinja template for [`apply_chat_template`]; defaults to the tokenizer's.
            [`LTU_CHAT_TEMPLATE`] reproduces LTU's Alpaca prompt.
        audio_token (`str`, *optional*, defaults to `"<audio>"`): the per-clip marker and placeholder token.
        num_audio_tokens (`int`, *optional*, defaults to 32): placeholders per clip (= the model's
            `config.num_audio_tokens`).
    """

    def __init__(
        self,
        feature_extractor: Any = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        audio_token: str = "<audio>",
        num_audio_tokens: int = 32,
    ) -> None:
        if tokenizer is not None and audio_token not in tokenizer.get_vocab():
            tokenizer.add_tokens([AddedToken(audio_token, special=True, normalized=False)], special_tokens=True)
        self.audio_token = audio_token
        self.audio_token_id = tokenizer.convert_tokens_to_ids(audio_token) if tokenizer is not None else None
        self.num_audio_tokens = int(num_audio_tokens)
        if self.num_audio_tokens < 1:
            raise ValueError(f"num_audio_tokens must be >= 1, got {num_audio_tokens}.")
        super().__init__(feature_extractor, tokenizer, chat_template=chat_template)

    # ------------------------------------------------------------------------------------------------ helpers
    @property
    def model_input_names(self) -> list[str]:
        names = list(self.tokenizer.model_input_names) + ["input_values", "audio_attention_mask"]
        return list(dict.fromkeys(names))

    def _clips(self, audio: AudioInput | None, sampling_rate: int | None) -> list[Any]:
        """Normalise `audio` to a list of clips (paths are decoded to mono float32 at `sampling_rate`)."""
        if audio is None:
            return []
        if isinstance(audio, (np.ndarray, torch.Tensor)):
            clips = [audio] if audio.ndim == 1 else list(audio)
        elif isinstance(audio, (str, os.PathLike)):
            clips = [audio]
        else:
            clips = list(audio)
        out = []
        for clip in clips:
            if isinstance(clip, (str, os.PathLike)):
                from .feature_extraction.audio_io import decode_audio  # lazy: only for file inputs

                clip = decode_audio(clip, sampling_rate=sampling_rate or self.feature_extractor.sampling_rate)
            out.append(clip)
        return out

    def _check_markers(self, texts: Sequence[str], num_clips: int) -> list[int]:
        counts = [text.count(self.audio_token) for text in texts]
        if sum(counts) != num_clips:
            raise ValueError(
                f"The text has {sum(counts)} {self.audio_token!r} marker(s) (per sample: {counts}) but {num_clips} "
                f"audio clip(s) were given. Write one {self.audio_token!r} per clip (it is expanded to "
                f"{self.num_audio_tokens} placeholder tokens here; do not pass pre-expanded text)."
            )
        return counts

    def expand_audio_tokens(self, text: str) -> str:
        """Replace every `<audio>` marker by `num_audio_tokens` copies of the placeholder token."""
        return text.replace(self.audio_token, self.audio_token * self.num_audio_tokens)

    def _audio_features(
        self, clips: list[Any], sampling_rate: int | None, return_tensors: str | None, audio_kwargs: dict | None
    ) -> dict[str, Any]:
        features = self.feature_extractor(
            clips, sampling_rate=sampling_rate, return_tensors=return_tensors, **(audio_kwargs or {})
        )
        data = {"input_values": features["input_values"]}
        if "attention_mask" in features:
            data["audio_attention_mask"] = features["attention_mask"]
        return data

    # ------------------------------------------------------------------------------------------------ call
    def __call__(
        self,
        text: str | list[str] | None = None,
        audio: AudioInput | None = None,
        sampling_rate: int | None = 16000,
        images: Any = None,
        videos: Any = None,
        *,
        return_tensors: str | None = None,
        padding: bool | str = False,
        truncation: bool | None = None,
        max_length: int | None = None,
        add_special_tokens: bool = True,
        audio_kwargs: dict[str, Any] | None = None,
        text_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Tokenize prompts with expanded `<audio>` markers and compute the clips' features.

        Args:
            text: one prompt or a batch; each `<audio>` marker stands for one clip (clips are taken in reading order
                over the batch).
            audio: one clip (1-D array / tensor, or a file path), a list of clips, or a 2-D `(clips, samples)` array.
            sampling_rate: sampling rate of `audio` (checked, or resampled with `audio_kwargs={"resample": True}`).
            return_tensors: `"pt"`, `"np"` or `None`.
            padding, truncation, max_length, add_special_tokens: tokenizer arguments. Truncation that would cut
                placeholders raises an error.
            audio_kwargs: extra feature-extractor arguments (e.g. `{"padding": "longest"}`, which also returns an
                `audio_attention_mask`).
            text_kwargs, **kwargs: extra tokenizer arguments.

        Returns:
            [`BatchFeature`] with `input_ids`, `attention_mask` (text), and with audio `input_values` (and
            `audio_attention_mask` when the feature extractor returns a frame mask).
        """
        if images is not None or videos is not None:
            raise ValueError(f"{type(self).__name__} handles text and audio only.")
        if text is None and audio is None:
            raise ValueError("Pass text, audio or both.")
        clips = self._clips(audio, sampling_rate)
        data: dict[str, Any] = {}
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            if not all(isinstance(sample, str) for sample in texts):
                raise ValueError("text must be a string or a list of strings.")
            counts = self._check_markers(texts, len(clips))
            encoding = self.tokenizer(
                [self.expand_audio_tokens(sample) for sample in texts],
                padding=padding,
                truncation=truncation,
                max_length=max_length,
                add_special_tokens=add_special_tokens,
                return_tensors=return_tensors,
                **{**(text_kwargs or {}), **kwargs},
            )
            for index, (ids, count) in enumerate(zip(encoding["input_ids"], counts)):
                found = int((torch.as_tensor(ids) == self.audio_token_id).sum())
                if found != count * self.num_audio_tokens:
                    raise ValueError(
                        f"Sample {index}: expected {count} x {self.num_audio_tokens} audio placeholder tokens after "
                        f"tokenization but found {found} (truncation to max_length={max_length} cut them?)."
                    )
            data.update(encoding)
        if clips:
            data.update(self._audio_features(clips, sampling_rate, return_tensors, audio_kwargs))
        return BatchFeature(data)

    # ------------------------------------------------------------------------------------------------ chat
    def apply_chat_template(
        self,
        conversation: list[dict[str, Any]] | list[list[dict[str, Any]]],
        chat_template: str | None = None,
        add_generation_prompt: bool = False,
        tokenize: bool = False,
        return_dict: bool = False,
        return_tensors: str | None = None,
        audio: AudioInput | None = None,
        sampling_rate: int | None = 16000,
        processor_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> str | list[str] | BatchFeature | Any:
        """Render conversation(s) with the chat template (this processor's, else the tokenizer's).

        Message contents may be strings or lists of parts: `{"type": "text", "text": ...}` and `{"type": "audio"}`,
        the latter rendered as the `<audio>` marker (so any text-only template works). An audio part may carry its
        clip under `"audio"` (array) or `"path"` / `"url"` (a local file); clips can also be passed as `audio`.

        Args:
            conversation: one conversation (list of `{"role", "content"}` messages) or a batch of them.
            chat_template: a template string overriding the default one.
            add_generation_prompt: append the assistant header.
            tokenize: return token ids (with `return_dict=True`, the full [`__call__`] output incl. features).
            return_tensors, processor_kwargs: passed to [`__call__`] when tokenizing.
            **kwargs: extra template variables.

        Returns:
            The prompt string(s); or, with `tokenize=True`, `input_ids` or the [`BatchFeature`].
        """
        batched = bool(conversation) and isinstance(conversation[0], (list, tuple))
        conversations = conversation if batched else [conversation]
        flat_conversations, part_clips = [], []
        for conv in conversations:
            flat = []
            for message in conv:
                content = message.get("content")
                if isinstance(content, (list, tuple)):
                    pieces = []
                    for part in content:
                        kind = part.get("type") if isinstance(part, dict) else None
                        if kind == "text":
                            pieces.append(str(part.get("text", "")))
                        elif kind == "audio":
                            pieces.append(self.audio_token)
                            clip = next((part[key] for key in ("audio", "path", "url") if key in part), None)
                            if clip is not None:
                                part_clips.append(clip)
                        else:
                            raise ValueError(f"Unsupported content part {part!r}; use 'text' or 'audio' parts.")
                    message = {**message, "content": "".join(pieces)}
                flat.append(message)
            flat_conversations.append(flat)

        template = chat_template or self.chat_template or getattr(self.tokenizer, "chat_template", None)
        if template is None:
            raise ValueError(
                "No chat template: set processor.chat_template (e.g. LTU_CHAT_TEMPLATE) or the tokenizer's."
            )
        prompts = [
            self.tokenizer.apply_chat_template(
                conv, chat_template=template, add_generation_prompt=add_generation_prompt, tokenize=False, **kwargs
            )
            for conv in flat_conversations
        ]
        if not tokenize:
            return prompts if batched else prompts[0]
        if audio is not None and part_clips:
            raise ValueError("Pass the clips either inside the audio parts or as `audio`, not both.")
        clips = part_clips if part_clips else self._clips(audio, sampling_rate)
        bos = self.tokenizer.bos_token
        call_kwargs = {"add_special_tokens": not (bos and prompts[0].startswith(bos)), **(processor_kwargs or {})}
        out = self(
            text=prompts, audio=clips or None, sampling_rate=sampling_rate, return_tensors=return_tensors,
            **call_kwargs,
        )
        return out if return_dict else out["input_ids"]

    # ------------------------------------------------------------------------------------------------ training
    def build_training_example(
        self,
        prompt: str,
        answer: str,
        audio: AudioInput | None = None,
        sampling_rate: int | None = 16000,
        mask_prompt: bool = False,
        add_eos: bool = True,
        max_length: int | None = None,
        return_tensors: str | None = None,
        audio_kwargs: dict[str, Any] | None = None,
    ) -> BatchFeature:
        """One training example: `prompt` (with `<audio>` markers) followed by `answer` (+ EOS).

        The prompt (with the tokenizer's special tokens, e.g. BOS) and the answer (without) are tokenized separately
        and concatenated, so the answer tokens are exactly those the model generates after the prompt. The sequence
        is truncated to `max_length` (LTU: `cutoff_len` 108; the EOS is kept only if it fits, as in LTU).

        Returns:
            [`BatchFeature`] with `input_ids`, `attention_mask`, `labels` (= `input_ids` with -100 on audio
            placeholders and, if `mask_prompt`, on the prompt), `prompt_mask` (1 on prompt tokens, for
            `config.ignore_prompt_in_loss`) and the clips' `input_values` (and `audio_attention_mask` if any). With
            `return_tensors="pt"`, text fields get a leading batch dimension of 1.
        """
        clips = self._clips(audio, sampling_rate)
        self._check_markers([prompt], len(clips))
        prompt_ids = list(self.tokenizer(self.expand_audio_tokens(prompt), add_special_tokens=True)["input_ids"])
        answer_ids = list(self.tokenizer(answer, add_special_tokens=False)["input_ids"])
        if add_eos and self.tokenizer.eos_token_id is not None:
            answer_ids.append(self.tokenizer.eos_token_id)
        input_ids = prompt_ids + answer_ids
        prompt_mask = [1] * len(prompt_ids) + [0] * len(answer_ids)
        if max_length is not None and len(input_ids) > max_length:
            input_ids, prompt_mask = input_ids[:max_length], prompt_mask[:max_length]
        expected = len(clips) * self.num_audio_tokens
        found = sum(token == self.audio_token_id for token in input_ids)
        if found != expected:
            raise ValueError(
                f"max_length={max_length} cuts the audio placeholders ({found} of {expected} kept); raise max_length."
            )
        labels = [
            -100 if token == self.audio_token_id or (mask_prompt and in_prompt) else token
            for token, in_prompt in zip(input_ids, prompt_mask)
        ]
        data: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": [1] * len(input_ids),
            "labels": labels,
            "prompt_mask": prompt_mask,
        }
        if return_tensors == "pt":
            data = {key: torch.tensor([value], dtype=torch.long) for key, value in data.items()}
        elif return_tensors == "np":
            data = {key: np.asarray([value], dtype=np.int64) for key, value in data.items()}
        if clips:
            data.update(self._audio_features(clips, sampling_rate, return_tensors, audio_kwargs))
        return BatchFeature(data)

    def collate_training_examples(
        self, examples: Sequence[dict[str, Any]], padding_side: str | None = None
    ) -> dict[str, torch.Tensor]:
        """Pad examples from [`build_training_example`] (`return_tensors=None`) into a batch of tensors.

        Text fields are padded on `padding_side` (default: the tokenizer's; LTU used left padding) with the pad id
        (0 when the tokenizer has none, as LTU), attention 0, labels -100 and prompt mask 0. The clips of all examples
        are stacked in order into `input_values` (they must share the frame count: the feature extractor pads to
        `max_length` by default).
        """
        side = padding_side or getattr(self.tokenizer, "padding_side", "right")
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        longest = max(len(example["input_ids"]) for example in examples)
        fills = {"input_ids": pad_id, "attention_mask": 0, "labels": -100, "prompt_mask": 0}
        batch: dict[str, torch.Tensor] = {}
        for key, fill in fills.items():
            rows = []
            for example in examples:
                values = list(example[key])
                padding = [fill] * (longest - len(values))
                rows.append(padding + values if side == "left" else values + padding)
            batch[key] = torch.tensor(rows, dtype=torch.long)
        for key in ("input_values", "audio_attention_mask"):
            clips = [torch.as_tensor(np.asarray(clip)) for example in examples for clip in example.get(key, [])]
            if clips:
                batch[key] = torch.stack(clips)
        return batch


__all__ = ["AudioMosaicProcessor", "LTU_CHAT_TEMPLATE"]
