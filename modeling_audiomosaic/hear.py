# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""HEAR 2021 API (hearbenchmark) for AudioMosaic.

The module follows the HEAR common API, so it can be given to the HEAR embedding runner as
`python -m heareval.embeddings.runner modeling_audiomosaic.hear --model /path/to/saved/audiomosaic`:

* `load_model(model_file_path="", **kwargs)` loads a *local* saved AudioMosaic folder (`config.json` + weights, and
  `preprocessor_config.json` if present; a file path means its folder) with `AutoModel` and returns a
  [`AudioMosaicHEARModel`] (a `torch.nn.Module`) with `sample_rate = 16000`, `scene_embedding_size` and
  `timestamp_embedding_size`. Nothing is downloaded. With an empty path a `ValueError` is raised, unless
  `random_init=True` is passed, which builds a randomly initialised model (`input_preset`, `size` and `seed` kwargs;
  for tests and pipeline checks only).
* `get_scene_embeddings(audio, model)`: `audio` is a `(n_sounds, n_samples)` float tensor at 16 kHz (HEAR resamples
  beforehand; there is no sample-rate argument). Returns `(n_sounds, scene_embedding_size)`: the clip embedding of
  [`modeling_audiomosaic.embeddings.AudioMosaicEmbedder.embed`] — per 10.24 s window (`config.max_length` frames), the
  mean over all tokens incl. CLS (the model's pooling) followed by `fc_norm`, i.e. the model's `pooler_output`;
  longer audio uses windows with 50 % overlap, averaged with weights equal to each window's number of valid frames.
* `get_timestamp_embeddings(audio, model)` returns `(embeddings (n_sounds, n_timestamps, timestamp_embedding_size),
  timestamps (n_sounds, n_timestamps))`. One embedding per 16-frame time patch (160 ms hop): the 8 frequency-patch
  tokens of that time patch **concatenated** (`8 * hidden_size` = 6144 values for ViT-B; the MSM-MAE / M2D HEAR
  convention, which keeps the frequency layout for the downstream MLP; pass `timestamp_aggregation="mean"` for
  `hidden_size` values). Timestamps are in **milliseconds**, at the centre of the audio each patch sees:
  `t_ms = 160 * t + 87.5` (patch `t` covers Kaldi frames `[16 t, 16 t + 16)`, frame `i` covers samples
  `[160 i, 160 i + 400)`, so the patch spans `[2560 t, 2560 t + 2800)` samples = `[160 t, 160 t + 175)` ms).
  `n_timestamps = ceil(F / 16)` with `F = 1 + (n_samples - 400) // 160` Kaldi frames (a partly filled last patch is
  kept, so its timestamp may lie up to ~90 ms past the end). Long audio is cut into windows of `config.max_length`
  frames with a 50 % hop (a multiple of 16 frames, so all windows share the patch grid); patches seen by two windows
  are averaged. The count depends only on `n_samples`, never on the batch.
* `timestamp_hop_ms` (a `load_model` option, default `None` = the native 160 ms grid above, unchanged): a finer,
  constant hop, e.g. `40` (HEAR's validator suggests <= 50 ms for transcription-like tasks). It uses **shifted
  inputs**, not interpolation: with `S = 160 / timestamp_hop_ms` shifts, the encoder also embeds the sound without its
  first `k * timestamp_hop_ms` ms (`k = 1 .. S - 1`), whose time patches are centred `k * timestamp_hop_ms` ms later,
  so every embedding is a real patch embedding of the audio around its timestamp (cost: `S` times the compute).
  Timestamps are `87.5 + j * timestamp_hop_ms` ms, `j = 0, 1, ...`, kept while `<= duration` (all within
  `[0, duration]`; embedding `j` comes from shift `j mod S`, time patch `j // S`, so the `j mod S == 0` entries equal
  the default embeddings). A sound shorter than 87.5 ms gets one embedding (its only patch) at `duration / 2`. The hop
  must split 160 ms into whole steps of whole samples: 5, 8, 10, 16, 20, 32, 40, 80 or 160 ms.

Options of `load_model` (all keyword arguments): `layer` (-1; an int index into `hidden_states`, or a list whose
embeddings are concatenated), `pooling`, `use_fc_norm`, `window_seconds`, `hop_seconds`, `batch_size` (windows per
forward, default 8), `device`, `timestamp_aggregation` ("concat" | "mean"), `merge` ("mean" | "center"),
`timestamp_hop_ms` (None | ms, see above), `progress` (None = automatic progress bar for long inputs).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from torch import nn

from .embeddings import AudioMosaicEmbedder, load_feature_extractor, load_model_and_feature_extractor

__all__ = ["AudioMosaicHEARModel", "load_model", "get_scene_embeddings", "get_timestamp_embeddings"]

SAMPLE_RATE = 16000


class AudioMosaicHEARModel(nn.Module):
    """HEAR wrapper around an AudioMosaic encoder and its feature extractor.

    Attributes:
        sample_rate (`int`): 16000.
        scene_embedding_size (`int`): `hidden_size` times the number of selected layers.
        timestamp_embedding_size (`int`): `8 * hidden_size` (`"concat"`) or `hidden_size` (`"mean"`), times the number
            of selected layers.
        embedder ([`AudioMosaicEmbedder`]): the windowing / pooling logic.
    """

    def __init__(
        self,
        model: nn.Module,
        feature_extractor: Any = None,
        layer: int | list[int] = -1,
        pooling: str | None = None,
        use_fc_norm: bool = True,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
        batch_size: int = 8,
        device: str | torch.device | None = None,
        timestamp_aggregation: str = "concat",
        merge: str = "mean",
        timestamp_hop_ms: float | None = None,
        progress: bool | None = None,
    ) -> None:
        super().__init__()
        if isinstance(layer, str):
            raise ValueError('HEAR needs one vector per sound: pass an int layer or a list of ints, not "all".')
        self.encoder = model
        self.embedder = AudioMosaicEmbedder(
            model,
            feature_extractor,
            layer=layer,
            pooling=pooling,
            use_fc_norm=use_fc_norm,
            window_seconds=window_seconds,
            hop_seconds=hop_seconds,
            batch_size=batch_size,
            device=device,
            frequency_pooling=timestamp_aggregation,
            merge=merge,
            progress=progress,
        )
        if self.embedder.sampling_rate != SAMPLE_RATE:
            raise ValueError(
                f"The feature extractor works at {self.embedder.sampling_rate} Hz; the AudioMosaic HEAR module "
                f"declares {SAMPLE_RATE} Hz."
            )
        self.feature_extractor = self.embedder.feature_extractor
        self.sample_rate = SAMPLE_RATE
        num_layers = len(self.embedder.layers)
        self.scene_embedding_size = self.embedder.embedding_size * num_layers
        self.timestamp_embedding_size = self.embedder.frame_embedding_size * num_layers
        self.timestamp_hop_ms, self.timestamp_shifts = self._check_hop(timestamp_hop_ms)
        self.eval()

    def _check_hop(self, hop_ms: float | None) -> tuple[float | None, int]:
        """Validate `timestamp_hop_ms`; returns it and the number of input shifts (1 for the native grid)."""
        if hop_ms is None:
            return None, 1
        patch_samples = self.embedder.patch_size * self.embedder.frame_shift  # 2560 samples = 160 ms
        is_number = isinstance(hop_ms, numbers.Real) and not isinstance(hop_ms, (bool, np.bool_))
        step = float(hop_ms) * SAMPLE_RATE / 1000.0 if is_number else float("nan")
        if not (step > 0 and abs(step - round(step)) < 1e-9 and patch_samples % round(step) == 0):
            patch_ms = 1000.0 * patch_samples / SAMPLE_RATE
            valid = [m for m in range(5, int(patch_ms) + 1) if patch_samples % (m * SAMPLE_RATE // 1000) == 0]
            raise ValueError(
                f"timestamp_hop_ms={hop_ms!r} is not supported: the hop must split the {patch_ms:g} ms time patch into "
                f"whole steps of whole samples at {SAMPLE_RATE} Hz; use one of {valid} (e.g. 40), or None for the "
                f"native {patch_ms:g} ms grid."
            )
        return float(hop_ms), patch_samples // round(step)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Scene embeddings (same as [`get_scene_embeddings`])."""
        return get_scene_embeddings(audio, self)


def load_model(model_file_path: str = "", **kwargs: Any) -> AudioMosaicHEARModel:
    """Load a saved AudioMosaic model for HEAR (see the module docstring).

    Args:
        model_file_path: a local folder saved with `save_pretrained` (or a file inside it). Empty: `ValueError`,
            unless `random_init=True`.
        **kwargs: `random_init` (bool), and with it `input_preset` ("audioset"), `size` ("base"), `seed` (0) and
            `config_kwargs` (dict, extra config fields); plus the [`AudioMosaicHEARModel`] options.
    """
    random_init = bool(kwargs.pop("random_init", False))
    input_preset = kwargs.pop("input_preset", "audioset")
    size = kwargs.pop("size", "base")
    seed = int(kwargs.pop("seed", 0))
    config_kwargs = dict(kwargs.pop("config_kwargs", None) or {})
    if model_file_path:
        model, fe = load_model_and_feature_extractor(model_file_path)
    elif random_init:
        from .configuration_audiomosaic import AudioMosaicConfig
        from .modeling_audiomosaic import AudioMosaicModel

        config = AudioMosaicConfig.from_preset(input_preset, size=size, **config_kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AudioMosaicModel(config)
        fe = load_feature_extractor(None, config)
    else:
        raise ValueError(
            "load_model needs model_file_path: a local folder with a saved AudioMosaic model (config.json + weights, "
            "e.g. a converted hanxunh/AudioMosaic-vit-b16-* release). Nothing is downloaded. Pass random_init=True "
            "to build a randomly initialised model instead (pipeline tests only)."
        )
    model.eval()
    return AudioMosaicHEARModel(model, fe, **kwargs)


def _check(audio: Any, model: Any) -> torch.Tensor:
    if not isinstance(model, AudioMosaicHEARModel):
        raise TypeError(f"model must come from load_model(), got {type(model).__name__}.")
    if isinstance(audio, np.ndarray):
        audio = torch.from_numpy(audio)
    if not torch.is_tensor(audio):
        raise TypeError(f"audio must be a torch.Tensor of shape (n_sounds, n_samples), got {type(audio).__name__}.")
    if audio.ndim != 2:
        raise ValueError(
            f"audio must have shape (n_sounds, n_samples) (mono, {SAMPLE_RATE} Hz), got {tuple(audio.shape)}."
        )
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise ValueError(f"audio is empty: shape {tuple(audio.shape)}; need at least one sound with samples.")
    if not audio.is_floating_point():
        raise TypeError(f"audio must be floating point in [-1, 1], got dtype {audio.dtype}.")
    return audio


def get_scene_embeddings(audio: torch.Tensor, model: AudioMosaicHEARModel) -> torch.Tensor:
    """`(n_sounds, scene_embedding_size)` float32 embeddings of `(n_sounds, n_samples)` 16 kHz audio, on the audio's
    device."""
    audio = _check(audio, model)
    out = model.embedder.embed(list(audio.detach().float().cpu()), sampling_rate=SAMPLE_RATE)
    if out.ndim == 3:  # several layers: concatenate
        out = out.reshape(out.shape[0], -1)
    return out.to(audio.device)


def get_timestamp_embeddings(
    audio: torch.Tensor, model: AudioMosaicHEARModel
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(embeddings (n_sounds, n_timestamps, timestamp_embedding_size), timestamps (n_sounds, n_timestamps))`, the
    timestamps in milliseconds at patch centres (`160 t + 87.5`, or every `timestamp_hop_ms` ms when the model was
    loaded with that option, see the module docstring); float32, on the audio's device."""
    audio = _check(audio, model)
    rows = list(audio.detach().float().cpu())  # a list of 1-D sounds: never read as one multi-channel clip
    if model.timestamp_hop_ms is not None:
        embeddings, timestamps = _shifted_timestamp_embeddings(rows, model)
        return embeddings.to(audio.device), timestamps.to(audio.device)
    result = model.embedder.embed_frames(rows, sampling_rate=SAMPLE_RATE)
    return _flat_layers(result.embeddings).to(audio.device), result.timestamps.to(audio.device)


def _flat_layers(embeddings: torch.Tensor) -> torch.Tensor:
    """`(n, layers, T, D) -> (n, T, layers * D)`; a 3-D tensor is returned as is."""
    if embeddings.ndim == 4:
        embeddings = embeddings.permute(0, 2, 1, 3).reshape(embeddings.shape[0], embeddings.shape[2], -1)
    return embeddings


def _shifted_timestamp_embeddings(
    rows: list[torch.Tensor], model: AudioMosaicHEARModel
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings every `model.timestamp_hop_ms` ms from shifted inputs (see the module docstring)."""
    embedder = model.embedder
    shifts = model.timestamp_shifts
    step = round(model.timestamp_hop_ms * SAMPLE_RATE / 1000.0)  # samples per timestamp hop
    n_sounds, n_samples = len(rows), int(rows[0].shape[0])
    centre = (embedder.patch_size - 1) * embedder.frame_shift / 2 + embedder.frame_window / 2  # 1400 samples
    count = int((n_samples - centre) // step) + 1 if n_samples >= centre else 0
    used = max(1, min(shifts, count))  # shifts that contribute at least one timestamp
    clips = [row[k * step :] for k in range(used) for row in rows]  # one call: all shifts batched together
    result = embedder.embed_frames(clips, sampling_rate=SAMPLE_RATE)
    frames = _flat_layers(result.embeddings)
    if count == 0:  # shorter than one patch centre: its only (padded) patch, stamped at the middle of the sound
        stamps = torch.full((n_sounds, 1), 500.0 * n_samples / SAMPLE_RATE, dtype=torch.float32)
        return frames[:n_sounds, :1].clone(), stamps
    j = torch.arange(count)
    shift, patch = j % shifts, j // shifts
    # clip index of sound i under shift k is k * n_sounds + i
    index = shift[None, :] * n_sounds + torch.arange(n_sounds)[:, None]  # (n_sounds, count)
    patches = patch[None, :].expand(n_sounds, count)
    if bool((patches >= result.lengths[index]).any()):  # pragma: no cover - excluded by the count formula
        raise RuntimeError("internal error: a timestamp falls on a padded time patch")
    embeddings = frames[index, patches]
    stamps_ms = (centre + j.double() * step) * 1000.0 / SAMPLE_RATE
    return embeddings, stamps_ms.float().expand(n_sounds, count).clone()
