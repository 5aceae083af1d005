# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Embeddings of variable-length audio with an AudioMosaic encoder: clip embeddings and time-stamped frame embeddings.

The encoder sees at most `config.max_length` frames (1024 = 10.24 s for the AudioSet models). This module turns audio
of *any* length into embeddings:

```python
from modeling_audiomosaic import AudioMosaicEmbedder, get_audio_embeddings

embedder = AudioMosaicEmbedder.from_pretrained("path/to/saved/audiomosaic")  # local folder, no hub download
clip = embedder.embed([wave_a, wave_b], sampling_rate=16000)  # (2, hidden_size)
frames = embedder.embed_frames(wave_a, sampling_rate=16000)  # FrameEmbeddings: (1, T, hidden_size), ms timestamps

vectors = get_audio_embeddings("path/to/saved/audiomosaic", [wave_a, wave_b], 16000, layer="all")  # (2, L + 1, D)
```

How a clip is processed
-----------------------
All lengths below are in *frames* of the Kaldi front end (25 ms window, 10 ms hop: a clip of `N` samples at 16 kHz has
`F = 1 + (N - 400) // 160` frames; a clip shorter than one 400-sample frame is zero-padded to 400 samples).

* **Windows.** `window_frames = W` (default `config.max_length`; `window_seconds` converts with 100 frames/s, rounded
  down to a multiple of the patch size) and `hop_frames = H` (default `W // 2`, i.e. 50 % overlap; `hop_seconds` is
  rounded to a multiple of the patch size, so the 16-frame time patches of all windows lie on one common grid).
  A clip with `F <= W` is one window of `F` frames. A longer clip is cut into `K = 1 + ceil((F - W) / H)` windows
  starting at frames `0, H, 2H, ...`; every window is full except the last, which holds the remaining `F - (K-1) H`
  frames (more than `W - H`), so no audio is dropped.
* **Padding and masking.** The features of each window are computed from its own slice of the waveform (frame `i`
  covers samples `[160 i, 160 i + 400)`, so this equals slicing the features of the whole clip, while never holding
  the features of a long clip in memory). Windows are sorted by length and run in batches of `batch_size`; in a batch,
  shorter windows are padded (the feature extractor's `padding="longest"`: raw-zero log-mel padding, normalised) and
  the frame `attention_mask` is passed to the model, which removes padded patches from attention and pooling. A
  window's output therefore does not depend on the other windows or clips it is batched with (up to float rounding,
  ~1e-6), and a 0.5 s clip's embedding does not depend on padding. A window whose frame count is not a multiple of the
  patch size still has one partly padded last time patch (the model counts a patch as real if any of its frames is),
  exactly as when the clip is embedded alone.
* **Window embedding.** `pool(tokens of the chosen layer)` with `pooling` (`"mean"`: all tokens incl. CLS, the
  original AudioMosaic pooling; `"cls"`; `"mean_patches"`: patch tokens only), over real tokens only, then the model's
  `fc_norm` LayerNorm if `use_fc_norm=True` (default). With `layer=-1`, the model's pooling and `use_fc_norm=True`, a
  window embedding is exactly the model's `pooler_output`. `fc_norm` was trained on the last layer's pooled output;
  for intermediate layers `use_fc_norm=False` gives the raw pooled features (usually preferable for layer sweeps
  followed by a standardising probe).
* **Clip embedding.** The mean of the window embeddings weighted by each window's number of valid frames:
  `e = sum_k F_k e_k / sum_k F_k` (a clip of one window: its window embedding).
* **Frame (timestamp) embeddings.** One vector per 16-frame time patch: the frequency-patch tokens of that time patch
  (8 for 128 mel bins) averaged (`frequency_pooling="mean"`, `D` values) or concatenated (`"concat"`, `8 D` values,
  the MSM-MAE convention), CLS unused, no `fc_norm`. Time patch `t` of the clip (global index, continuing across
  windows) covers frames `[16 t, 16 t + 16)`; patches covered by several overlapping windows are merged with
  `merge="mean"` (average over the windows that contain the patch, the default) or `merge="center"` (taken from the
  window whose centre is closest, i.e. the one that gives the patch most context). A clip of `F` frames has
  `ceil(F / 16)` time patches (the last one may be partly padded).
* **Timestamps.** In milliseconds, at the centre of the audio a patch sees: patch `t` spans samples
  `[16 t * 160, 16 t * 160 + 15 * 160 + 400)`, so its centre is
  `1000 * (16 * 160 * t + (15 * 160 + 400) / 2) / 16000 = 160 t + 87.5` ms (the mean of its 16 frame centres
  `10 i + 12.5` ms). Spacing is 160 ms. The last timestamp may lie up to ~90 ms past the end of the audio when the
  last patch is partly padded.

Layers: `layer` indexes `hidden_states` (`0` = embedding output, `k` = output of block `k`, `-1` = the last block, for
which the model's `last_hidden_state` is used, i.e. after the final norm when `config.use_final_norm` — identical to
`hidden_states[-1]` for the released models). `layer="all"` gives all `num_hidden_layers + 1` entries and a list gives
those entries; results then have a layer axis right after the clip axis.

Determinism: the model is put in eval mode for the call (its mode is restored afterwards) and runs under
`torch.no_grad()`; no randomness is involved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from transformers.utils import logging as hf_logging

from .embedding_inputs import as_clips
from .feature_extraction.audio_io import resample_audio
from .modeling_audiomosaic import pool_tokens

__all__ = [
    "AudioMosaicEmbedder",
    "FrameEmbeddings",
    "get_audio_embeddings",
    "load_feature_extractor",
    "load_model_and_feature_extractor",
    "plan_windows",
    "patch_timestamps_ms",
]

POOLINGS = ("mean", "cls", "mean_patches")
FREQUENCY_POOLINGS = ("mean", "concat")
MERGES = ("mean", "center")

AUTO_PROGRESS_MIN_WINDOWS = 64
"""`progress=None` shows a progress bar when a call has at least this many windows (about 5.5 min of audio with the
default 10.24 s windows and 50 % hop)."""

# Kaldi front end of AudioMosaic (AudioMosaicFeatureExtractor): 25 ms frames every 10 ms.
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0


@dataclass
class FrameEmbeddings:
    """Time-stamped embeddings of a batch of clips (returned by [`AudioMosaicEmbedder.embed_frames`]).

    Args:
        embeddings (`torch.FloatTensor`): `(num_clips, num_frames, dim)` for one layer, `(num_clips, num_layers,
            num_frames, dim)` for several; clips shorter than the longest are zero-padded at the end (see `lengths`).
            `dim` is `hidden_size` (`frequency_pooling="mean"`) or `num_freq_patches * hidden_size` (`"concat"`).
        timestamps (`torch.FloatTensor` of shape `(num_clips, num_frames)`): centre of each time patch in
            milliseconds (`160 t + 87.5` at 16 kHz), the same for every clip.
        lengths (`torch.LongTensor` of shape `(num_clips,)`): number of valid frames (time patches) of each clip.
    """

    embeddings: torch.Tensor
    timestamps: torch.Tensor
    lengths: torch.Tensor

    def __iter__(self):  # allows `embeddings, timestamps, lengths = embedder.embed_frames(...)`
        return iter((self.embeddings, self.timestamps, self.lengths))

    def unbatch(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One `(embeddings, timestamps)` pair per clip, without padding."""
        out = []
        for i, n in enumerate(self.lengths.tolist()):
            emb = self.embeddings[i, ..., :n, :]
            out.append((emb, self.timestamps[i, :n]))
        return out


# ----------------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------------
def plan_windows(num_frames: int, window_frames: int, hop_frames: int) -> list[tuple[int, int]]:
    """Windows `(start_frame, valid_frames)` covering `num_frames` frames (see the module docstring).

    One window when `num_frames <= window_frames`; otherwise windows start every `hop_frames` frames and the last one
    holds the remaining frames, so every frame is in at least one window.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}.")
    if not 1 <= hop_frames <= window_frames:
        raise ValueError(f"hop_frames must be in [1, window_frames={window_frames}], got {hop_frames}.")
    if num_frames <= window_frames:
        return [(0, num_frames)]
    count = 1 + -(-(num_frames - window_frames) // hop_frames)
    return [(k * hop_frames, min(window_frames, num_frames - k * hop_frames)) for k in range(count)]


def patch_timestamps_ms(
    num_patches: int,
    patch_size: int = 16,
    sampling_rate: int = 16000,
    frame_length_ms: float = FRAME_LENGTH_MS,
    frame_shift_ms: float = FRAME_SHIFT_MS,
) -> np.ndarray:
    """Centres (ms) of time patches `0 .. num_patches - 1`: patch `t` spans samples
    `[t P s, t P s + (P - 1) s + w)` (`P` frames per patch, hop `s`, window `w` samples), so its centre is
    `1000 * (t P s + ((P - 1) s + w) / 2) / sr` — `160 t + 87.5` ms for the AudioMosaic front end."""
    shift = int(round(sampling_rate * frame_shift_ms / 1000.0))
    window = int(round(sampling_rate * frame_length_ms / 1000.0))
    t = np.arange(num_patches, dtype=np.float64)
    return 1000.0 * (t * patch_size * shift + ((patch_size - 1) * shift + window) / 2.0) / sampling_rate


def _encoder_of(model: nn.Module) -> nn.Module:
    """The bare AudioMosaic encoder of an AudioMosaic model (the model itself, or its `audiomosaic` sub-module)."""
    encoder = getattr(model, "audiomosaic", model)
    if not (hasattr(encoder, "embeddings") and hasattr(encoder, "layers") and hasattr(encoder, "pooler")):
        raise TypeError(
            f"{type(model).__name__} is not an AudioMosaic model (expected AudioMosaicModel or a model with an "
            "`audiomosaic` encoder)."
        )
    return encoder


def load_feature_extractor(path: str | os.PathLike | None = None, config: Any = None):
    """The feature extractor saved in the local folder `path` (`preprocessor_config.json`); without one, the
    `AudioMosaicFeatureExtractor` preset whose `max_length` matches `config.max_length` (1024: AudioSet, 512: ESC-50,
    128: Speech Commands; other lengths: AudioSet statistics with that `max_length`)."""
    if path is not None and os.path.isfile(os.path.join(str(path), "preprocessor_config.json")):
        from transformers import AutoFeatureExtractor

        from . import register_auto_classes

        register_auto_classes()
        return AutoFeatureExtractor.from_pretrained(str(path), local_files_only=True)
    from .feature_extraction import FEATURE_EXTRACTOR_PRESETS, AudioMosaicFeatureExtractor

    max_length = int(getattr(config, "max_length", 1024)) if config is not None else 1024
    for name, preset in FEATURE_EXTRACTOR_PRESETS.items():
        if preset["max_length"] == max_length:
            return AudioMosaicFeatureExtractor.from_preset(name)
    return AudioMosaicFeatureExtractor.from_preset("audioset", max_length=max_length)


def load_model_and_feature_extractor(path: str | os.PathLike, **model_kwargs: Any):
    """Load an AudioMosaic encoder (`AutoModel`, so the encoder of a classifier or pre-training checkpoint works too)
    and its feature extractor from a *local* folder (no hub download; a file path means its folder)."""
    from transformers import AutoModel

    from . import register_auto_classes

    register_auto_classes()
    path = os.fspath(path)
    if os.path.isfile(path):
        path = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{path!r} is not a local folder with a saved AudioMosaic model (config.json + weights). Hub downloads are "
            "not performed: save or download the model to a folder first."
        )
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"{path!r} has no config.json; it is not a saved AudioMosaic model folder.")
    model = AutoModel.from_pretrained(path, local_files_only=True, **model_kwargs)
    return model, load_feature_extractor(path, model.config)


# ----------------------------------------------------------------------------------------------------------------------
# Embedder
# ----------------------------------------------------------------------------------------------------------------------
class AudioMosaicEmbedder:
    """Clip and frame embeddings of audio of any length with an AudioMosaic encoder (see the module docstring).

    Args:
        model: an `AudioMosaicModel` (or any AudioMosaic model with an `audiomosaic` encoder, e.g. a classifier).
        feature_extractor: its `AudioMosaicFeatureExtractor` (same normalisation statistics as the model's training).
            Default: the preset matching `config.max_length` (see [`load_feature_extractor`]).
        layer: `-1` (default, last block), an index into `hidden_states` (`0` = embedding output), `"all"` (every
            entry, `num_hidden_layers + 1`) or a list of indices.
        pooling: window pooling, `"mean"` (all tokens incl. CLS), `"cls"` or `"mean_patches"`; default
            `config.pooling`.
        use_fc_norm: apply the model's `fc_norm` LayerNorm to pooled window vectors (default `True`; a no-op for
            models without `fc_norm`). Frame embeddings never use it.
        window_seconds: window length in seconds (100 frames/s, rounded down to a multiple of the patch size); default
            `config.max_length` frames (10.24 s for the AudioSet models). Must not exceed `config.max_length`.
        hop_seconds: hop between windows of long clips (rounded to a multiple of the patch size, at least one patch);
            default half a window (50 % overlap). Must not exceed the window.
        batch_size: windows per forward pass (bounds memory: activations of `batch_size` windows, plus the
            outputs).
        device: device to run on; the model is moved there. Default: the model's device.
        frequency_pooling: frame embeddings per time patch: `"mean"` over the frequency-patch tokens (`D` values) or
            `"concat"` (`num_freq_patches * D` values).
        merge: frames covered by several windows: `"mean"` (average) or `"center"` (from the window whose centre is
            closest).
        progress: show a progress bar (transformers' `logging.tqdm`, on stderr, over the windows of a call):
            `True` always, `False` never, `None` (default) when a call has at least `AUTO_PROGRESS_MIN_WINDOWS` (64)
            windows. `transformers.utils.logging.disable_progress_bar()` turns it off globally.

    Input layouts: see [`modeling_audiomosaic.embedding_inputs`] (1-D = one clip; list = batch of clips, 2-D clips in a
    list are multi-channel and mixed down; a bare 2-D array is a `(num_clips, num_samples)` batch, except the
    `(num_samples, channels)` layout of `soundfile.read` with at most 8 channels, which is one clip mixed down;
    ambiguous or swapped-looking shapes raise a `ValueError` that says how to pass the data).
    """

    def __init__(
        self,
        model: nn.Module,
        feature_extractor: Any = None,
        layer: int | str | Sequence[int] = -1,
        pooling: str | None = None,
        use_fc_norm: bool = True,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
        batch_size: int = 8,
        device: str | torch.device | None = None,
        frequency_pooling: str = "mean",
        merge: str = "mean",
        progress: bool | None = None,
    ) -> None:
        self.model = model
        self.encoder = _encoder_of(model)
        config = self.encoder.config
        self.config = config
        self.feature_extractor = feature_extractor if feature_extractor is not None else load_feature_extractor(
            None, config
        )
        fe = self.feature_extractor
        if int(getattr(fe, "num_mel_bins", config.num_mel_bins)) != config.num_mel_bins:
            raise ValueError(
                f"The feature extractor computes {fe.num_mel_bins} mel bins but the model expects "
                f"{config.num_mel_bins}."
            )
        self.sampling_rate = int(fe.sampling_rate)
        self.frame_shift = int(round(self.sampling_rate * FRAME_SHIFT_MS / 1000.0))  # 160 samples
        self.frame_window = int(round(self.sampling_rate * FRAME_LENGTH_MS / 1000.0))  # 400 samples
        self.patch_size = int(config.patch_size)
        self.num_freq_patches = int(config.num_mel_bins // config.patch_size)
        self.num_layers = int(config.num_hidden_layers)

        patch = self.patch_size
        if window_seconds is None:
            window_frames = int(config.max_length)
        else:
            if window_seconds <= 0:
                raise ValueError(f"window_seconds must be positive, got {window_seconds}.")
            window_frames = int(round(window_seconds * 1000.0 / FRAME_SHIFT_MS, 6)) // patch * patch
            if window_frames < patch:
                raise ValueError(
                    f"window_seconds={window_seconds} is shorter than one patch ({patch} frames = "
                    f"{patch * FRAME_SHIFT_MS / 1000:.2f} s)."
                )
        if window_frames > config.max_length:
            raise ValueError(
                f"window_seconds={window_seconds} gives {window_frames} frames, more than the model's max_length="
                f"{config.max_length} frames ({config.max_length * FRAME_SHIFT_MS / 1000:.2f} s)."
            )
        if hop_seconds is None:
            hop_frames = max(patch, window_frames // 2 // patch * patch)
        else:
            if hop_seconds <= 0:
                raise ValueError(f"hop_seconds must be positive, got {hop_seconds}.")
            hop_frames = max(patch, int(round(hop_seconds * 1000.0 / FRAME_SHIFT_MS / patch)) * patch)
            if hop_frames > window_frames:
                raise ValueError(
                    f"hop_seconds={hop_seconds} ({hop_frames} frames) is longer than the window ({window_frames} "
                    "frames): audio between windows would be skipped."
                )
        self.window_frames = window_frames
        self.hop_frames = hop_frames

        self.layers, self.single_layer = self._resolve_layers(layer)
        pooling = config.pooling if pooling is None else pooling
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r} is not supported; choose one of {POOLINGS}.")
        self.pooling = pooling
        self.use_fc_norm = bool(use_fc_norm)
        if frequency_pooling not in FREQUENCY_POOLINGS:
            raise ValueError(
                f"frequency_pooling={frequency_pooling!r} is not supported; choose one of {FREQUENCY_POOLINGS}."
            )
        self.frequency_pooling = frequency_pooling
        if merge not in MERGES:
            raise ValueError(f"merge={merge!r} is not supported; choose one of {MERGES}.")
        self.merge = merge
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.batch_size = int(batch_size)
        if progress is not None and not isinstance(progress, bool):
            raise TypeError(f"progress must be True, False or None (automatic), got {progress!r}.")
        self.progress = progress
        if device is not None:
            self.model.to(device)
        self.device = next(self.encoder.parameters()).device

    # -- construction --------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, model_kwargs: dict | None = None, **kwargs: Any):
        """Load the encoder and feature extractor from a local folder (see
        [`load_model_and_feature_extractor`]) and build an embedder with `kwargs`."""
        model, fe = load_model_and_feature_extractor(path, **(model_kwargs or {}))
        return cls(model, fe, **kwargs)

    def _resolve_layers(self, layer: int | str | Sequence[int]) -> tuple[list[int], bool]:
        count = self.num_layers + 1
        if isinstance(layer, str):
            if layer != "all":
                raise ValueError(f'layer must be an int, a list of ints or "all", got {layer!r}.')
            return list(range(count)), False
        single = isinstance(layer, (int, np.integer))
        indices = [layer] if single else list(layer)
        if not indices:
            raise ValueError("layer is an empty list.")
        resolved = []
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                raise TypeError(f"layer indices must be ints, got {index!r}.")
            if not -count <= index < count:
                raise ValueError(
                    f"layer={index} is out of range: hidden_states has {count} entries (0 = embeddings, "
                    f"{count - 1} = last block); use -{count}..{count - 1}."
                )
            resolved.append(int(index) % count)
        return resolved, single

    # -- public properties ---------------------------------------------------------------------------------------------
    @property
    def embedding_size(self) -> int:
        """Size of one clip embedding vector (per layer)."""
        return int(self.config.hidden_size)

    @property
    def frame_embedding_size(self) -> int:
        """Size of one frame embedding vector (per layer)."""
        dim = int(self.config.hidden_size)
        return dim * self.num_freq_patches if self.frequency_pooling == "concat" else dim

    @property
    def patch_duration_ms(self) -> float:
        """Spacing of frame embeddings in ms (160 ms)."""
        return 1000.0 * self.patch_size * self.frame_shift / self.sampling_rate

    def num_frames(self, num_samples: int) -> int:
        """Kaldi frames of a clip with `num_samples` samples (clips shorter than one frame count as one frame)."""
        return 1 + (max(int(num_samples), self.frame_window) - self.frame_window) // self.frame_shift

    def num_time_patches(self, num_samples: int) -> int:
        """Number of frame embeddings (time patches) of a clip with `num_samples` samples: `ceil(frames / 16)`."""
        return -(-self.num_frames(num_samples) // self.patch_size)

    def timestamps_ms(self, num_patches: int) -> np.ndarray:
        """Centres in ms of time patches `0 .. num_patches - 1` (`160 t + 87.5` at 16 kHz)."""
        return patch_timestamps_ms(
            num_patches, self.patch_size, self.sampling_rate, FRAME_LENGTH_MS, FRAME_SHIFT_MS
        )

    # -- internals -----------------------------------------------------------------------------------------------------
    def _prepare(self, audio: Any, sampling_rate: int | None) -> list[np.ndarray]:
        sr = self.sampling_rate if sampling_rate is None else int(sampling_rate)
        if sr <= 0:
            raise ValueError(f"sampling_rate must be positive, got {sampling_rate}.")
        clips = as_clips(audio, min_samples=-(-self.frame_window * sr // self.sampling_rate))
        if sr != self.sampling_rate:
            clips = [resample_audio(clip, sr, self.sampling_rate) for clip in clips]
        out = []
        for clip in clips:
            if clip.shape[0] < self.frame_window:  # shorter than one 25 ms frame: zero-pad to one frame
                clip = np.concatenate([clip, np.zeros(self.frame_window - clip.shape[0], dtype=np.float32)])
            out.append(np.ascontiguousarray(clip, dtype=np.float32))
        return out

    def _windows(self, clips: list[np.ndarray]) -> list[tuple[int, int, int]]:
        """All windows `(clip_index, start_frame, valid_frames)`, sorted by decreasing length (stable) so that batches
        hold windows of similar lengths (little padding)."""
        windows = []
        for index, clip in enumerate(clips):
            frames = self.num_frames(clip.shape[0])
            windows.extend((index, start, valid) for start, valid in plan_windows(frames, self.window_frames,
                                                                                   self.hop_frames))
        return sorted(windows, key=lambda w: -w[2])

    def _run_windows(self, clips: list[np.ndarray], windows: list[tuple[int, int, int]]):
        """Yield `(batch_windows, layer_tokens, token_mask)` per batch: `layer_tokens` is a list (one per selected
        layer) of `(b, 1 + T' * F', D)` tensors and `token_mask` a `(b, 1 + T' * F')` bool tensor or `None`."""
        fe = self.feature_extractor
        last = self.num_layers
        need_hidden = any(k != last for k in self.layers)
        show = self.progress if self.progress is not None else len(windows) >= AUTO_PROGRESS_MIN_WINDOWS
        bar = hf_logging.tqdm(total=len(windows), disable=not show, desc="AudioMosaic windows", unit="window")
        try:
            for begin in range(0, len(windows), self.batch_size):
                batch = windows[begin : begin + self.batch_size]
                slices = []
                for clip_index, start, valid in batch:
                    first = start * self.frame_shift
                    end = first + (valid - 1) * self.frame_shift + self.frame_window
                    slices.append(clips[clip_index][first:end])
                inputs = fe(
                    slices,
                    sampling_rate=self.sampling_rate,
                    padding="longest",
                    max_length=self.window_frames,
                    truncation=True,
                    pad_to_multiple_of=self.patch_size,
                    return_attention_mask=True,
                    return_tensors="pt",
                )
                input_values = inputs["input_values"].to(self.device)
                attention_mask = inputs["attention_mask"].to(self.device)
                if bool(attention_mask.all()):
                    attention_mask = None
                outputs = self.encoder(
                    input_values=input_values,
                    attention_mask=attention_mask,
                    output_hidden_states=need_hidden,
                    return_dict=True,
                )
                tokens = [
                    outputs.last_hidden_state if k == last else outputs.hidden_states[k] for k in self.layers
                ]
                bar.update(len(batch))
                yield batch, tokens, outputs.token_mask
        finally:
            bar.close()

    def _window_vectors(self, tokens: list[torch.Tensor], token_mask: torch.Tensor | None) -> torch.Tensor:
        """`(b, num_selected_layers, D)` window embeddings."""
        fc_norm = self.encoder.pooler.fc_norm if self.use_fc_norm else None
        vectors = []
        for hidden in tokens:
            pooled = pool_tokens(hidden, self.pooling, token_mask)
            if fc_norm is not None:
                pooled = fc_norm(pooled)
            vectors.append(pooled)
        return torch.stack(vectors, dim=1)

    class _EvalMode:
        """Eval mode + `no_grad` for the call; every sub-module's own training flag is restored afterwards."""

        def __init__(self, model: nn.Module) -> None:
            self.model = model

        def __enter__(self):
            self.modes = [(module, module.training) for module in self.model.modules()]
            self.model.eval()
            self.grad = torch.no_grad()
            self.grad.__enter__()
            return self

        def __exit__(self, *exc):
            self.grad.__exit__(*exc)
            for module, mode in self.modes:
                module.training = mode
            return False

    # -- public API ----------------------------------------------------------------------------------------------------
    def embed(self, audio: Any, sampling_rate: int | None = 16000) -> torch.Tensor:
        """Clip embeddings of audio of any length.

        Args:
            audio: one clip (1-D numpy array / tensor / list of numbers), a batch `(num_clips, num_samples)`, or a list
                of clips of different lengths (1-D, or 2-D multi-channel in either layout: mixed down). A bare
                `(num_samples, channels)` array with at most 8 channels (`soundfile.read`'s layout, e.g. `(N, 1)` or
                `(N, 2)`) is one clip, mixed down; ambiguous shapes raise (see [`embedding_inputs`]). Float audio in
                [-1, 1] (int16/int32/int8/uint8 PCM is scaled).
            sampling_rate: sampling rate of `audio`; other rates than the feature extractor's (16 kHz) are
                resampled (soxr, or scipy as a fallback).

        Returns:
            float32 CPU tensor `(num_clips, D)` for a single `layer`, `(num_clips, num_layers, D)` for `"all"` or a
            list (a single 1-D clip gives `num_clips = 1`).
        """
        clips = self._prepare(audio, sampling_rate)
        windows = self._windows(clips)
        dim = self.embedding_size
        num_layers = len(self.layers)
        sums = torch.zeros(len(clips), num_layers, dim, dtype=torch.float64)
        weights = torch.zeros(len(clips), dtype=torch.float64)
        # Window results are stored and summed per clip in window order, so the result is independent of batching.
        per_window: dict[tuple[int, int], torch.Tensor] = {}
        with self._EvalMode(self.model):
            for batch, tokens, token_mask in self._run_windows(clips, windows):
                vectors = self._window_vectors(tokens, token_mask).to("cpu", torch.float64)
                for (clip_index, start, valid), vector in zip(batch, vectors):
                    per_window[(clip_index, start)] = vector * valid
                    weights[clip_index] += valid
        for (clip_index, _start), weighted in sorted(per_window.items()):
            sums[clip_index] += weighted
        out = (sums / weights[:, None, None]).float()
        return out[:, 0] if self.single_layer else out

    __call__ = embed

    def embed_frames(self, audio: Any, sampling_rate: int | None = 16000) -> FrameEmbeddings:
        """Time-stamped frame embeddings (one per 160 ms time patch) of audio of any length.

        Args: as [`embed`].

        Returns:
            [`FrameEmbeddings`] with `embeddings` `(num_clips, T, dim)` (or `(num_clips, num_layers, T, dim)`),
            `timestamps` `(num_clips, T)` in ms (`160 t + 87.5`), `lengths` `(num_clips,)`; `T` is the largest
            `ceil(frames / 16)` of the clips, shorter clips are zero-padded.
        """
        clips = self._prepare(audio, sampling_rate)
        windows = self._windows(clips)
        patch = self.patch_size
        dim = self.frame_embedding_size
        num_layers = len(self.layers)
        lengths = [self.num_time_patches(clip.shape[0]) for clip in clips]
        total = max(lengths)
        sums = [torch.zeros(num_layers, n, dim, dtype=torch.float64) for n in lengths]
        counts = [torch.zeros(n, dtype=torch.float64) for n in lengths]
        owners = self._owners(clips) if self.merge == "center" else None
        with self._EvalMode(self.model):
            for batch, tokens, _token_mask in self._run_windows(clips, windows):
                stacked = torch.stack(tokens, dim=1)[:, :, 1:]  # (b, layers, T' * F', D), CLS dropped
                b, _, n_tokens, hidden = stacked.shape
                grid = stacked.reshape(b, num_layers, n_tokens // self.num_freq_patches, self.num_freq_patches, hidden)
                if self.frequency_pooling == "mean":
                    frames = grid.mean(dim=3)
                else:
                    frames = grid.reshape(b, num_layers, grid.shape[2], self.num_freq_patches * hidden)
                frames = frames.to("cpu", torch.float64)
                for (clip_index, start, valid), window_out in zip(batch, frames):
                    first = start // patch
                    count = -(-valid // patch)
                    piece = window_out[:, :count]
                    if owners is None:
                        sums[clip_index][:, first : first + count] += piece
                        counts[clip_index][first : first + count] += 1
                    else:
                        own = owners[clip_index][first : first + count] == start
                        index = torch.nonzero(own).squeeze(1)
                        sums[clip_index][:, first + index] = piece[:, index]
                        counts[clip_index][first + index] = 1
        embeddings = torch.zeros(len(clips), num_layers, total, dim, dtype=torch.float32)
        for i, (s, c) in enumerate(zip(sums, counts)):
            if bool((c == 0).any()):  # pragma: no cover - every patch is in some window by construction
                raise RuntimeError("internal error: a time patch was not covered by any window")
            embeddings[i, :, : lengths[i]] = (s / c[None, :, None]).float()
        if self.single_layer:
            embeddings = embeddings[:, 0]
        stamps = torch.from_numpy(self.timestamps_ms(total)).float().expand(len(clips), total).clone()
        return FrameEmbeddings(embeddings, stamps, torch.tensor(lengths, dtype=torch.long))

    def _owners(self, clips: list[np.ndarray]) -> list[torch.Tensor]:
        """For `merge="center"`: per clip and time patch, the start frame of the window whose centre (over its valid
        frames) is closest to the patch centre (ties: the earlier window)."""
        patch = self.patch_size
        owners = []
        for clip in clips:
            frames = self.num_frames(clip.shape[0])
            plan = plan_windows(frames, self.window_frames, self.hop_frames)
            n = -(-frames // patch)
            centres = torch.arange(n, dtype=torch.float64) * patch + patch / 2
            best = torch.full((n,), float("inf"), dtype=torch.float64)
            owner = torch.full((n,), -1, dtype=torch.long)
            for start, valid in plan:
                first, count = start // patch, -(-valid // patch)
                sel = slice(first, first + count)
                distance = (centres[sel] - (start + valid / 2)).abs()
                better = distance < best[sel]
                best[sel] = torch.where(better, distance, best[sel])
                owner[sel] = torch.where(better, torch.full_like(owner[sel], start), owner[sel])
            owners.append(owner)
        return owners


def get_audio_embeddings(
    model_or_path: nn.Module | str | os.PathLike,
    audio: Any,
    sampling_rate: int = 16000,
    feature_extractor: Any = None,
    frames: bool = False,
    **kwargs: Any,
) -> torch.Tensor | FrameEmbeddings:
    """One-call embeddings: `AudioMosaicEmbedder(model, feature_extractor, **kwargs).embed(audio, sampling_rate)`.

    Args:
        model_or_path: an AudioMosaic model, or a local folder with a saved one (loaded with `AutoModel`, no hub
            download; the folder's `preprocessor_config.json` gives the feature extractor). Loading happens on every
            call: build an [`AudioMosaicEmbedder`] once to embed many batches.
        audio, sampling_rate: see [`AudioMosaicEmbedder.embed`].
        feature_extractor: overrides the folder's / default feature extractor.
        frames: return [`AudioMosaicEmbedder.embed_frames`] instead of clip embeddings.
        **kwargs: [`AudioMosaicEmbedder`] options (`layer`, `pooling`, `use_fc_norm`, `window_seconds`, `hop_seconds`,
            `batch_size`, `device`, `frequency_pooling`, `merge`, `progress`).
    """
    if isinstance(model_or_path, nn.Module):
        model, fe = model_or_path, feature_extractor
    else:
        model, loaded_fe = load_model_and_feature_extractor(model_or_path)
        fe = feature_extractor if feature_extractor is not None else loaded_fe
    embedder = AudioMosaicEmbedder(model, fe, **kwargs)
    return embedder.embed_frames(audio, sampling_rate) if frames else embedder.embed(audio, sampling_rate)
