# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Audio inputs of [`~modeling_audiomosaic.embeddings.AudioMosaicEmbedder`]: layouts, dtypes and channels.

Layout rule (the same conventions as `AudioMosaicFeatureExtractor`, plus a guard against swapped axes):

* a 1-D array / tensor / list of numbers is **one mono clip**;
* a list or tuple is a **batch of clips** of any lengths; each clip is 1-D (mono) or 2-D multi-channel audio in
  either layout, `(channels, samples)` or `(samples, channels)`: the channel axis is the shorter one and must have at
  most `MAX_CHANNELS` (8) entries; channels are averaged (mixed down) to mono;
* a bare 2-D array / tensor of shape `(A, B)` is read as follows:

  - `B <= 8 < A`: **one clip in the channels-last layout** `(samples, channels)` that `soundfile.read` returns
    (`(N, 1)` is mono, `(N, 2)` stereo), mixed down to mono;
  - `A <= 8` and `B <= 8`: **ambiguous** (neither axis is plausibly the samples): `ValueError`;
  - `B` shorter than one 25 ms frame while `A > B` (e.g. `(N, 16)`): looks like swapped axes (or more than 8
    channels): `ValueError`;
  - otherwise: a **batch** `(num_clips, num_samples)` (so a bare `(2, N)` array is two clips, as in the feature
    extractor and the HEAR API; pass one channels-first clip as `[stereo]` to have it mixed down).

Every error says how to pass the data unambiguously (a list of 1-D clips is always unambiguous).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .feature_extraction.audio_io import to_float32_array, to_float32_mono

__all__ = ["MAX_CHANNELS", "as_clips"]

MAX_CHANNELS = 8
"""Largest channel count accepted for multi-channel clips (the feature extractor's limit, which mixes them down)."""

_HOW_TO_PASS = (
    "Pass one mono clip as a 1-D array, a batch as a list of 1-D clips (or a (num_clips, num_samples) array), and a "
    "multi-channel clip inside a list, e.g. `[stereo]` with stereo of shape (channels, samples) or (samples, "
    "channels) (channels are averaged)."
)


def _checked(array: np.ndarray, where: str) -> np.ndarray:
    if array.ndim != 1:
        raise ValueError(f"{where} has shape {tuple(array.shape)}; expected a 1-D mono waveform. {_HOW_TO_PASS}")
    if array.size == 0:
        raise ValueError(f"{where} is empty (0 samples); audio must contain at least one sample.")
    if not np.isfinite(array).all():
        raise ValueError(f"{where} contains NaN or infinite values.")
    return array


def _list_clip(clip: Any, where: str) -> np.ndarray:
    """One clip of a list: 1-D, or 2-D multi-channel in either layout (channel axis = the shorter one)."""
    array = to_float32_array(clip, where)
    if array.ndim == 2 and array.size:
        array = to_float32_mono(array, where)
    return _checked(array, where)


def _bare_2d(array: np.ndarray, min_samples: int) -> list[np.ndarray]:
    """A bare 2-D array: one channels-last clip, a batch of rows, or an error (see the module docstring)."""
    rows, cols = array.shape
    shape = tuple(array.shape)
    if rows == 0:
        raise ValueError(f"audio has 0 clips (shape {shape}).")
    if cols == 0:
        raise ValueError(f"audio is empty (shape {shape}); audio must contain at least one sample.")
    if rows <= MAX_CHANNELS and cols <= MAX_CHANNELS:
        raise ValueError(
            f"audio has shape {shape}: both axes have at most {MAX_CHANNELS} entries, so it is ambiguous whether it "
            f"is a batch of {rows} clips of {cols} samples, or one clip with {min(shape)} channels. {_HOW_TO_PASS}"
        )
    if cols <= MAX_CHANNELS:  # soundfile's (samples, channels) layout, e.g. (N, 1) or (N, 2)
        return [_checked(to_float32_mono(array, "audio"), "audio")]
    if cols < min_samples and rows > cols:
        raise ValueError(
            f"audio has shape {shape}: as a (num_clips, num_samples) batch it would be {rows} clips of {cols} samples "
            f"each (shorter than one 25 ms frame = {min_samples} samples), and {cols} > {MAX_CHANNELS} is too many "
            f"channels for a (samples, channels) clip; its axes look swapped. Pass `audio.T` if it is a batch of "
            f"clips, or `audio.mean(axis=1)` if it is one multi-channel clip. {_HOW_TO_PASS}"
        )
    return [_checked(row, f"audio[{i}]") for i, row in enumerate(array)]


def as_clips(audio: Any, min_samples: int = 400) -> list[np.ndarray]:
    """Split `audio` into mono float32 clips following the layout rule of the module docstring.

    Args:
        audio: numpy array, torch tensor, list of numbers, or list / tuple of clips.
        min_samples: samples of one 25 ms frame at the input sampling rate (for the swapped-axes check).
    """
    if torch.is_tensor(audio) or isinstance(audio, np.ndarray):
        if audio.ndim == 1:
            return [_checked(to_float32_array(audio, "audio"), "audio")]
        if audio.ndim == 2:
            return _bare_2d(to_float32_array(audio, "audio"), int(min_samples))
        raise ValueError(
            f"audio has shape {tuple(audio.shape)}; expected (num_samples,) for one clip, (num_clips, num_samples) "
            f"for a batch or (num_samples, channels) for one multi-channel clip. {_HOW_TO_PASS}"
        )
    if isinstance(audio, (list, tuple)):
        if len(audio) == 0:
            raise ValueError("audio is an empty list; pass at least one clip.")
        if all(isinstance(x, (int, float, np.number)) and not isinstance(x, bool) for x in audio):
            return [_checked(np.asarray(audio, dtype=np.float32), "audio")]
        return [_list_clip(clip, f"audio[{i}]") for i, clip in enumerate(audio)]
    raise TypeError(
        f"audio has unsupported type {type(audio).__name__}; expected a numpy array, a torch tensor, a list of numbers "
        "or a list of clips."
    )
