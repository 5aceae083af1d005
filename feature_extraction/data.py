"""Audio data layer for AudioMosaic pre-training and fine-tuning.

Every source yields the same example format::

    {"audio": np.ndarray  # float32, mono, 16 kHz, 1-D
     "labels": list[str | int] | None,
     "id": str,
     "group": str | None}

Sources (see [`load_audio_dataset`]):

* ``dataset_name=...``: anything `datasets.load_dataset` accepts -- a Hub repository ("org/repo"), a local dataset
  folder, or a packaged builder ("parquet", "webdataset", ...) with ``data_files``. All go through one code path.
* ``path=...`` (local, type auto-detected or given with ``source_type``):
  ``"folder"`` (audio files, recursive, label = parent folder name), ``"manifest"`` (AudioSet/AST-style JSON
  ``{"data": [{"wav": path, "labels": "mid1,mid2"}]}``, a top-level list, or JSON lines), ``"csv"`` (path/label
  columns), ``"parquet"`` (an audio bytes column: struct ``{bytes, path}`` or plain binary) and ``"webdataset"``
  (``.tar`` shards with ``key.wav|flac|ogg|mp3|opus`` members and optional ``key.json``/``key.cls``/``key.txt``
  labels). Local parquet and webdataset sources are read by `datasets`' own builders.

Decoding never uses `datasets`' ``Audio`` feature. In datasets 5.x that feature decodes (and even *encodes*) through
torchcodec, which cannot be loaded with CPU torch 2.13 (reference notes §1.6, §12). What works here, verified with
datasets 5.2.0 and no torchcodec installed:

* Parquet written without HF metadata has a plain struct column ``audio: {bytes: binary, path: string}``; it is read
  as-is, in both map-style and streaming mode.
* Parquet/Hub datasets whose metadata declares ``Audio`` load fine, but iterating them raises ``ImportError``
  (torchcodec).
  ``cast_column(col, Audio(decode=False))`` works for `Dataset` and `IterableDataset` (no torchcodec call on the read
  path) and returns ``{"bytes", "path"}`` dicts; this module applies it to every top-level ``Audio`` column.
  (``IterableDataset.decode(False)`` works too, but also disables ``Json`` decoding, so it is not used.)
* The ``webdataset`` builder infers ``Audio`` for ``.wav`` members and its inference fails outright when examples
  have different member types (``.wav`` here, ``.flac`` there). Explicit ``features=`` (see [`webdataset_features`])
  with ``Value("binary")`` audio fields and ``Json()`` for ``.json`` avoid both; missing members become ``None`` and
  undeclared members are dropped.
* The ``audiofolder`` builder fails even with ``Audio(decode=False)`` (its generator *encodes* through torchcodec). It
  works with ``load_kwargs={"features": Features({"audio": Value("string"), "label": ClassLabel(names=[...])})}``
  (the column then holds file paths). Local folders are scanned by this module instead.
* Audio is decoded with soundfile (wav/flac/ogg/mp3 in the bundled libsndfile), mixed to mono (mean over channels) and
  resampled with soxr (fallback ``scipy.signal.resample_poly``).

Bad items never stop a run: missing, undecodable, empty, non-finite or too short (< 400 samples at 16 kHz, one fbank
window) items are skipped and counted per reason in a [`SkipCounter`] (``dataset.skip_counter``), with a
``logging.warning`` for the first few. Counts are per process (each DataLoader worker counts its own).

Sharding rule (reference notes §12) -- see [`shard_for_rank`]: under ``Trainer`` or ``accelerator.prepare`` do *not*
shard yourself (accelerate either dispatches batches from rank 0 or shards the dataset itself); call
``datasets.distributed.split_dataset_by_node`` (via ``shard_for_rank``) only for a hand-written loop whose DataLoader
is not prepared by accelerate.

`datasets` is imported lazily, so importing this module only needs numpy, soundfile and torch.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import logging
import math
import os
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import soundfile as sf
import torch.utils.data

from .feature_extraction_audiomosaic import _to_float32, _to_numpy  # noqa: E402  (one set of dtype rules)

logger = logging.getLogger(__name__)

TARGET_SAMPLING_RATE = 16000
"""Sampling rate of every decoded example (AudioMosaic's fbank runs at 16 kHz)."""

MIN_NUM_SAMPLES = 400
"""Default minimum length after resampling: one 25 ms Kaldi window at 16 kHz (shorter clips give no fbank frame)."""

RECENT_SKIPS_KEPT = 1024
"""How many ids of the latest skipped items a [`SkipCounter`] keeps in ``recent_ids``."""

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")
"""File extensions collected by the ``"folder"`` source (all readable by soundfile >= 0.12)."""

WEBDATASET_AUDIO_FIELDS: tuple[str, ...] = ("wav", "flac", "ogg", "mp3", "opus")
"""WebDataset member extensions read as audio (first non-empty one wins)."""

WEBDATASET_LABEL_FIELDS: tuple[str, ...] = ("json", "cls", "txt")
"""WebDataset member extensions read as labels, in priority order."""

SOURCE_TYPES: tuple[str, ...] = ("folder", "manifest", "csv", "parquet", "webdataset", "hub")

SKIP_REASONS: tuple[str, ...] = (
    "missing_audio",  # the audio field is empty / None
    "missing_file",  # a path that does not exist
    "undecodable",  # soundfile could not read the bytes / file
    "empty",  # zero bytes or zero samples
    "non_finite",  # NaN or inf samples
    "bad_dtype",  # a decoded array of bool / complex / unknown integer dtype
    "too_short",  # fewer than `min_samples` samples after resampling
    "bad_label",  # the label field could not be interpreted
    "error",  # anything else (unexpected exception while preparing the example)
)

_AUTO = "auto"
_DEFAULT_AUDIO_KEYS = ("audio", "wav", "path", "filename", "file", "audio_path")
_DEFAULT_LABEL_KEYS = ("labels", "label")
_DEFAULT_ID_KEYS = ("id", "__key__")

PathLike = Union[str, os.PathLike]  # noqa: UP007 (a runtime alias)
Example = dict[str, Any]


class AudioDecodeError(ValueError):
    """An item could not be turned into a usable waveform. ``reason`` is one of [`SKIP_REASONS`]."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"[{reason}] {message}")
        self.reason = reason


class EmptyDatasetError(ValueError):
    """A source contains no items, or no item could be decoded."""


def _require_datasets():
    try:
        import datasets  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "This feature needs the `datasets` package "
            "(pip install 'datasets>=5.2,<6', or the package's [train] extra)."
        ) from err
    return datasets


# ---------------------------------------------------------------------------------------------------------------------
# Waveform decoding
# ---------------------------------------------------------------------------------------------------------------------


def resample_audio(wave: np.ndarray, orig_sr: float, target_sr: float = TARGET_SAMPLING_RATE) -> np.ndarray:
    """Resample a 1-D (or ``(samples, channels)``) float waveform from ``orig_sr`` to ``target_sr``.

    Uses soxr (``quality="HQ"``) when installed, else ``scipy.signal.resample_poly`` with the reduced integer ratio.
    The output length is ``round(len * target_sr / orig_sr)`` (± 1). Returns float32.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sampling rates must be positive, got {orig_sr} -> {target_sr}")
    if orig_sr == target_sr or wave.shape[0] == 0:
        return np.ascontiguousarray(wave)
    try:
        import soxr
    except ImportError:
        soxr = None
    if soxr is not None:
        out = soxr.resample(np.ascontiguousarray(wave), float(orig_sr), float(target_sr))
    else:  # pragma: no cover - soxr is a dependency; the fallback is exercised by a test that hides soxr
        from scipy.signal import resample_poly

        up, down = int(round(target_sr)), int(round(orig_sr))
        g = math.gcd(up, down)
        out = resample_poly(wave, up // g, down // g, axis=0)
    return np.ascontiguousarray(out, dtype=np.float32)


def _open_remote(path: str) -> bytes:
    """Read a remote file (``hf://``, ``https://``, ``zip://…::…``) through datasets' streaming-aware ``xopen``."""
    try:
        from datasets.utils.file_utils import xopen

        with xopen(path, "rb") as f:
            return f.read()
    except ImportError:  # pragma: no cover
        import fsspec

        with fsspec.open(path, "rb") as f:
            return f.read()


def read_audio(source: Any) -> tuple[np.ndarray, int]:
    """Read ``source`` with soundfile, without any conversion except to float32.

    ``source`` may be a path (str / PathLike; remote URLs are opened with datasets' ``xopen``), encoded bytes,
    a ``{"bytes": ..., "path": ...}`` dict (bytes preferred), a ``{"array": ..., "sampling_rate": ...}`` dict or an
    ``(array, sampling_rate)`` tuple. Returns ``(samples, channels)`` float32 and the sampling rate.

    Raises:
        AudioDecodeError: with reason ``missing_audio``, ``missing_file``, ``empty`` or ``undecodable``.
    """
    if source is None:
        raise AudioDecodeError("missing_audio", "no audio given")
    # decoded arrays (e.g. from a datasets Audio feature that does decode, or user data)
    if isinstance(source, tuple) and len(source) == 2 and not isinstance(source[0], (str, bytes)):
        array, sr = source
        return _as_2d(_array_to_float32(array)), int(sr)
    if isinstance(source, Mapping):
        if source.get("bytes"):
            return read_audio(bytes(source["bytes"]))
        if source.get("array") is not None:
            if source.get("sampling_rate") is None:
                raise AudioDecodeError("undecodable", "an 'array' needs a 'sampling_rate'")
            return _as_2d(_array_to_float32(source["array"])), int(source["sampling_rate"])
        if source.get("path"):
            return read_audio(source["path"])
        if source.get("bytes") is not None:  # b"" and no path
            raise AudioDecodeError("empty", "zero-byte audio")
        raise AudioDecodeError("missing_audio", f"audio dict without bytes, array or path (keys {sorted(source)})")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) == 0:
            raise AudioDecodeError("empty", "zero-byte audio")
        return _sf_read(io.BytesIO(data), "<bytes>")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not path:
            raise AudioDecodeError("missing_audio", "empty path")
        if os.path.exists(path):
            if os.path.getsize(path) == 0:
                raise AudioDecodeError("empty", f"zero-byte file {path}")
            return _sf_read(path, path)
        if "://" in path or "::" in path:
            try:
                data = _open_remote(path)
            except FileNotFoundError as err:
                raise AudioDecodeError("missing_file", f"{path}: {err}") from err
            return read_audio(data)
        raise AudioDecodeError("missing_file", f"no such file: {path}")
    if isinstance(source, np.ndarray):
        raise AudioDecodeError("undecodable", "a bare array has no sampling rate; pass (array, sampling_rate)")
    raise AudioDecodeError("undecodable", f"unsupported audio value of type {type(source).__name__}")


def _array_to_float32(array: Any) -> np.ndarray:
    """A decoded audio array (numpy, torch or list) as float32 by the feature extractor's rules: integer PCM
    (int8/uint8/int16/int32) scaled to [-1, 1), floats cast, bool / complex / other integer types refused."""
    try:
        return _to_float32(_to_numpy(array, "audio array"), "audio array")
    except TypeError as err:
        raise AudioDecodeError("bad_dtype", str(err)) from err


def _as_2d(array: np.ndarray) -> np.ndarray:
    if array.ndim == 1:
        return array[:, None]
    if array.ndim == 2:
        # (channels, samples) arrays from torch-style loaders have few rows and many columns
        return array.T if array.shape[0] < array.shape[1] and array.shape[0] <= 8 else array
    raise AudioDecodeError("undecodable", f"audio array with {array.ndim} dimensions")


def _sf_read(file: Any, name: str) -> tuple[np.ndarray, int]:
    try:
        data, sr = sf.read(file, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError / RuntimeError / TypeError / ValueError
        detail = getattr(err, "error_string", None) or str(err)
        raise AudioDecodeError("undecodable", f"{name}: {type(err).__name__}: {detail}") from err
    return data, int(sr)


def decode_audio(
    source: Any,
    sampling_rate: int = TARGET_SAMPLING_RATE,
    *,
    min_samples: int = 0,
) -> np.ndarray:
    """Decode ``source`` (see [`read_audio`]) to a mono float32 waveform at ``sampling_rate``.

    Steps: soundfile read → mean over channels → resample (soxr) → checks. A 0-sample or 0-byte item raises
    ``AudioDecodeError("empty")``, NaN/inf ``"non_finite"``, fewer than ``min_samples`` samples after resampling
    ``"too_short"``; unreadable data ``"undecodable"``.
    """
    data, sr = read_audio(source)
    if data.shape[0] == 0 or data.size == 0:
        raise AudioDecodeError("empty", "zero samples")
    wave = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if not np.isfinite(wave).all():
        raise AudioDecodeError("non_finite", "NaN or inf samples")
    if sr != sampling_rate:
        wave = resample_audio(wave, sr, sampling_rate)
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if wave.shape[0] < max(int(min_samples), 1):
        raise AudioDecodeError("too_short", f"{wave.shape[0]} samples at {sampling_rate} Hz (< {min_samples})")
    if not np.isfinite(wave).all():
        raise AudioDecodeError("non_finite", "NaN or inf samples after resampling")
    return wave


def crop_start(length: int, num_samples: int, mode: str = "random", rng: np.random.Generator | None = None) -> int:
    """Where a crop of ``num_samples`` out of ``length`` (> ``num_samples``) samples starts, for ``mode`` ``"random"``
    (uniform, drawn from ``rng`` or a fresh unseeded generator), ``"start"`` or ``"center"``."""
    if mode == "random":
        rng = rng if rng is not None else np.random.default_rng()
        return int(rng.integers(0, length - num_samples + 1))
    if mode == "start":
        return 0
    if mode == "center":
        return (length - num_samples) // 2
    raise ValueError(f"crop mode must be 'random', 'start' or 'center', got {mode!r}")


def crop_or_pad(
    wave: np.ndarray,
    num_samples: int,
    *,
    mode: str = "random",
    rng: np.random.Generator | None = None,
    pad: bool = False,
) -> np.ndarray:
    """Crop ``wave`` to at most ``num_samples`` samples and optionally zero-pad it (at the end) to exactly that.

    Args:
        mode: where to cut a longer clip: ``"random"`` (uniform start drawn from ``rng``), ``"start"`` or ``"center"``.
        rng: numpy Generator for ``"random"`` (a fresh unseeded one if ``None``).
        pad: zero-pad shorter clips. Off by default: AudioMosaic pads *fbank frames* with raw zeros in the feature
            extractor, which is not the same as padding the waveform with zeros.
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    n = wave.shape[0]
    if n > num_samples:
        start = crop_start(n, num_samples, mode, rng)
        wave = wave[start : start + num_samples]
    elif n < num_samples and pad:
        wave = np.pad(wave, (0, num_samples - n))
    return np.ascontiguousarray(wave, dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# Skip statistics
# ---------------------------------------------------------------------------------------------------------------------


class SkipCounter:
    """Counts decoded and skipped items, per skip reason, with a few example ids per reason.

    The first ``max_warnings`` skips are logged with ``logging.warning`` (then one notice that further skips are only
    counted); every ``summary_every`` skips a summary line is logged. ``summary()`` / ``log()`` / ``as_dict()``
    report the totals. Thread-safe; picklable (each DataLoader worker then counts in its own copy).
    """

    def __init__(
        self,
        name: str = "audio",
        *,
        max_warnings: int = 5,
        max_examples: int = 5,
        summary_every: int | None = 1000,
        log: logging.Logger | None = None,
    ):
        self.name = name
        self.max_warnings = max_warnings
        self.max_examples = max_examples
        self.summary_every = summary_every
        self.logger = log or logger
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}
        self.num_ok = 0
        self._num_warned = 0
        self._lock = threading.Lock()
        # ids of the latest skips, newest last: a caller that notes `num_skipped` before a decode can read which items
        # it skipped (the last `num_skipped` increase entries), as `EpochTaggedDataset` does to report them per example
        self.recent_ids: deque[str] = deque(maxlen=RECENT_SKIPS_KEPT)

    # pickling (DataLoader workers): a Lock cannot be pickled
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        if "recent_ids" not in state:  # pickled by an older version
            self.recent_ids = deque(maxlen=RECENT_SKIPS_KEPT)

    @property
    def num_skipped(self) -> int:
        return sum(self.counts.values())

    @property
    def num_seen(self) -> int:
        return self.num_ok + self.num_skipped

    def record_ok(self) -> None:
        with self._lock:
            self.num_ok += 1

    def record_skip(self, reason: str, example_id: str | None, detail: str = "") -> None:
        """Count one skipped item and warn about the first few."""
        with self._lock:
            self.counts[reason] += 1
            self.recent_ids.append(str(example_id))
            ids = self.examples.setdefault(reason, [])
            if len(ids) < self.max_examples:
                ids.append(str(example_id))
            warn = self._num_warned < self.max_warnings
            if warn:
                self._num_warned += 1
            last_warning = warn and self._num_warned == self.max_warnings
            periodic = bool(self.summary_every) and self.num_skipped % self.summary_every == 0
        if warn:
            self.logger.warning("%s: skipping item %s (%s): %s", self.name, example_id, reason, detail)
            if last_warning:
                self.logger.warning("%s: further skipped items are only counted (see .skip_counter)", self.name)
        if periodic:
            self.logger.warning(self.summary())

    def as_dict(self) -> dict[str, Any]:
        """Totals as a plain dict (for logging to trackers): ok, skipped, per-reason counts and example ids."""
        with self._lock:
            return {
                "ok": self.num_ok,
                "skipped": sum(self.counts.values()),
                "by_reason": dict(self.counts),
                "examples": {k: list(v) for k, v in self.examples.items()},
            }

    def summary(self) -> str:
        d = self.as_dict()
        seen = d["ok"] + d["skipped"]
        if not d["skipped"]:
            return f"{self.name}: {d['ok']} items decoded, none skipped"
        share = 100.0 * d["skipped"] / max(seen, 1)
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(d["by_reason"].items()))
        examples = "; ".join(f"{k}: {v}" for k, v in sorted(d["examples"].items()))
        return f"{self.name}: skipped {d['skipped']} of {seen} items ({share:.1f}%): {reasons} (e.g. {examples})"

    def log(self, log: logging.Logger | None = None, level: int = logging.INFO) -> None:
        (log or self.logger).log(level, self.summary())

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.examples.clear()
            self.recent_ids.clear()
            self.num_ok = 0
            self._num_warned = 0

    def merge(self, other: SkipCounter) -> SkipCounter:
        """Add another counter's totals (e.g. gathered from workers or ranks) into this one; returns self."""
        d = other.as_dict()
        with self._lock:
            self.num_ok += d["ok"]
            self.counts.update(d["by_reason"])
            for k, ids in d["examples"].items():
                mine = self.examples.setdefault(k, [])
                mine.extend(ids[: max(0, self.max_examples - len(mine))])
        return self

    def __repr__(self) -> str:
        return f"SkipCounter({self.summary()})"


# ---------------------------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------------------------


def normalize_labels(
    value: Any,
    *,
    delimiter: str | None = ",",
    class_names: Sequence[str] | None = None,
    json_keys: Sequence[str] = _DEFAULT_LABEL_KEYS,
) -> list[str | int | float] | None:
    """Turn a raw label field into a list of labels (or ``None`` when there is no label information).

    * ``str``: split on ``delimiter`` (AudioSet manifests: ``"mid1,mid2"``), whitespace stripped, empties dropped;
      ``delimiter=None`` keeps the string whole.
    * ``int`` (e.g. a ``ClassLabel`` or a WebDataset ``.cls``): ``[class_names[i]]`` when ``class_names`` are given
      (``-1``, ClassLabel's "no label", gives ``None``), else ``[i]``.
    * lists / arrays: each element normalised and concatenated.
    * dicts (WebDataset ``.json``): the first of ``json_keys`` present.
    """
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8")
    if isinstance(value, str):
        parts = value.split(delimiter) if delimiter else [value]
        return [p.strip() for p in parts if p.strip()]
    if isinstance(value, Mapping):
        for key in json_keys:
            if key in value:
                return normalize_labels(value[key], delimiter=delimiter, class_names=class_names, json_keys=json_keys)
        return None
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        i = int(value)
        if class_names is not None:
            if i < 0:
                return None
            return [class_names[i]]
        return [i]
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        return (
            normalize_labels(int(value), delimiter=delimiter, class_names=class_names)
            if float(value).is_integer()
            else [float(value)]
        )
    if isinstance(value, (list, tuple, np.ndarray)):
        out: list = []
        for item in value:
            sub = normalize_labels(item, delimiter=delimiter, class_names=class_names, json_keys=json_keys)
            if sub:
                out.extend(sub)
        return out
    raise TypeError(f"cannot interpret a label of type {type(value).__name__}: {value!r}")


@dataclass
class LabelVocabulary:
    """Label strings ↔ ids, with single-label (class id) or multi-label (multi-hot) encoding.

    ``labels[i]`` is the key of class ``i`` (e.g. an AudioSet mid); ``display_names`` optionally holds readable names
    (used by [`config_kwargs`] for ``id2label``).
    """

    labels: list[str]
    multi_label: bool = False
    display_names: list[str] | None = None
    label2id: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.labels = [str(label) for label in self.labels]
        self.label2id = {}
        for i, label in enumerate(self.labels):
            if label in self.label2id:
                raise ValueError(f"duplicate label {label!r} in the vocabulary")
            self.label2id[label] = i
        if self.display_names is not None and len(self.display_names) != len(self.labels):
            raise ValueError("display_names must have one entry per label")

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def _id(self, label: str | int, unknown: str) -> int | None:
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            i = int(label)
            if 0 <= i < self.num_labels:
                return i
            key = str(i)
        else:
            key = str(label)
        if key in self.label2id:
            return self.label2id[key]
        if unknown == "ignore":
            return None
        raise KeyError(f"label {label!r} is not in the vocabulary of {self.num_labels} labels")

    def encode(self, labels: Sequence[str | int] | str | int | None, *, unknown: str = "error") -> int | np.ndarray:
        """Single-label: the class id (exactly one label required). Multi-label: a float32 multi-hot vector
        (``None`` → all zeros). ``unknown="ignore"`` drops labels missing from the vocabulary (multi-label only)."""
        if labels is None:
            labels = []
        elif isinstance(labels, (str, int, np.integer)):
            labels = [labels]
        if self.multi_label:
            vec = np.zeros(self.num_labels, dtype=np.float32)
            for label in labels:
                i = self._id(label, unknown)
                if i is not None:
                    vec[i] = 1.0
            return vec
        if len(labels) != 1:
            raise ValueError(f"a single-label vocabulary needs exactly one label per example, got {list(labels)!r}")
        return self._id(labels[0], "error")

    def decode(self, encoded: int | Sequence[float] | np.ndarray, threshold: float = 0.5) -> list[str]:
        """Inverse of [`encode`]: a class id or a multi-hot/score vector (entries > ``threshold``) → labels."""
        if np.ndim(encoded) == 0:
            return [self.labels[int(encoded)]]
        return [self.labels[i] for i in np.flatnonzero(np.asarray(encoded) > threshold)]

    def config_kwargs(self) -> dict[str, Any]:
        """``num_labels``, ``id2label``, ``label2id`` and ``problem_type`` for ``AutoConfig``/``from_pretrained``."""
        names = self.display_names or self.labels
        return {
            "num_labels": self.num_labels,
            "id2label": dict(enumerate(names)),
            "label2id": {name: i for i, name in enumerate(names)},
            "problem_type": "multi_label_classification" if self.multi_label else "single_label_classification",
        }

    @classmethod
    def from_class_labels_csv(
        cls,
        path: PathLike,
        *,
        key_column: str = "mid",
        name_column: str | None = "display_name",
        index_column: str | None = "index",
        multi_label: bool = True,
    ) -> LabelVocabulary:
        """Read an AST/AudioSet ``class_labels_indices.csv`` (columns ``index,mid,display_name``)."""
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise EmptyDatasetError(f"{path} has no rows")
        _check_columns(rows[0].keys(), [key_column, name_column, index_column], str(path))
        if index_column:
            rows.sort(key=lambda r: int(r[index_column]))
        names = [r[name_column] for r in rows] if name_column else None
        return cls([r[key_column] for r in rows], multi_label=multi_label, display_names=names)


def build_label_vocabulary(
    source: Iterable[Any],
    *,
    multi_label: bool | None = None,
    labels: Sequence[str] | None = None,
    sort: bool = True,
) -> LabelVocabulary:
    """Collect the labels of ``source`` into a [`LabelVocabulary`].

    ``source`` may be an [`AudioDataset`] / [`AudioIterableDataset`] (labels are read without decoding audio, via
    ``iter_labels()``), an iterable of examples (dicts with ``"labels"``), or an iterable of label lists/strings.
    ``multi_label=None`` chooses multi-label if any example has zero or several labels. With a fixed ``labels`` list
    (e.g. the 527 AudioSet mids) only ``multi_label`` is inferred and unknown labels raise ``KeyError``.
    Integer labels without names give the vocabulary ``["0", ..., str(max)]`` (ids used as is).
    """
    if hasattr(source, "iter_labels"):
        items: Iterable[Any] = source.iter_labels()
    else:
        items = source
    seen: dict[str, None] = {}
    max_int = -1
    any_multi = False
    count = 0
    for item in items:
        count += 1
        if isinstance(item, Mapping):
            item = item.get("labels")
        if item is None:
            lab = []
        elif isinstance(item, (str, int, np.integer)):
            lab = [item]
        else:
            lab = list(item)
        if len(lab) != 1:
            any_multi = True
        for label in lab:
            if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
                max_int = max(max_int, int(label))
            else:
                seen.setdefault(str(label), None)
    if count == 0:
        raise EmptyDatasetError("cannot build a label vocabulary from an empty source")
    if multi_label is None:
        multi_label = any_multi
    if labels is not None:
        vocab = LabelVocabulary(list(labels), multi_label=multi_label)
        missing = [label for label in seen if label not in vocab.label2id]
        if missing:
            raise KeyError(f"{len(missing)} labels are not in the given label list, e.g. {missing[:5]}")
        return vocab
    if seen and max_int >= 0:
        raise ValueError("mixed integer and string labels: pass an explicit `labels` list")
    if max_int >= 0:
        return LabelVocabulary([str(i) for i in range(max_int + 1)], multi_label=multi_label)
    if not seen:
        raise EmptyDatasetError("no labels found in the source")
    names = sorted(seen) if sort else list(seen)
    return LabelVocabulary(names, multi_label=multi_label)


# ---------------------------------------------------------------------------------------------------------------------
# Record → example
# ---------------------------------------------------------------------------------------------------------------------


def _check_columns(available: Iterable[str], requested: Iterable[str | None], where: str) -> None:
    available = list(available)
    for name in requested:
        if name is not None and name not in available:
            raise ValueError(f"column {name!r} not found in {where}; available columns: {available}")


class ExampleDecoder:
    """Turns one raw record (a dict from a `datasets` dataset or a manifest) into an example, or ``None`` if bad.

    Also usable as a batched ``datasets.map`` function (``__call__``): bad rows are dropped from the output batch.
    Picklable (it travels to DataLoader workers); the crop generator is re-seeded per worker from ``crop_seed``.

    Args:
        audio_column: the audio field, or a tuple of candidate fields (first non-empty wins; WebDataset).
        label_column: the label field, a tuple of candidates (first non-``None`` wins), or ``None`` (no labels).
        id_column: the id field; without it the id is the audio path, else a hash of the audio bytes.
        group_column: an optional grouping field (speaker, recording, fold...). ``group_fn(id)`` is used otherwise.
        class_names: names for integer labels (a ``ClassLabel`` feature); see [`normalize_labels`].
    """

    def __init__(
        self,
        *,
        audio_column: str | Sequence[str] = "audio",
        label_column: str | Sequence[str] | None = None,
        id_column: str | None = None,
        group_column: str | None = None,
        group_fn: Callable[[str], str | None] | None = None,
        label_delimiter: str | None = ",",
        class_names: Sequence[str] | None = None,
        json_label_keys: Sequence[str] = _DEFAULT_LABEL_KEYS,
        sampling_rate: int = TARGET_SAMPLING_RATE,
        min_samples: int = MIN_NUM_SAMPLES,
        max_seconds: float | None = None,
        crop: str = "random",
        pad: bool = False,
        crop_seed: int | np.random.Generator | None = None,
        skip_counter: SkipCounter | None = None,
    ):
        self.audio_columns = (audio_column,) if isinstance(audio_column, str) else tuple(audio_column)
        if label_column is None:
            self.label_columns: tuple[str, ...] = ()
        else:
            self.label_columns = (label_column,) if isinstance(label_column, str) else tuple(label_column)
        self.id_column = id_column
        self.group_column = group_column
        self.group_fn = group_fn
        self.label_delimiter = label_delimiter
        self.class_names = list(class_names) if class_names is not None else None
        self.json_label_keys = tuple(json_label_keys)
        self.sampling_rate = int(sampling_rate)
        self.min_samples = int(min_samples)
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        self.max_samples = None if max_seconds is None else int(round(max_seconds * self.sampling_rate))
        if crop not in ("random", "start", "center"):
            raise ValueError(f"crop must be 'random', 'start' or 'center', got {crop!r}")
        self.crop = crop
        self.pad = pad
        self.crop_seed = crop_seed
        self.skip_counter = skip_counter if skip_counter is not None else SkipCounter()
        self._rng: np.random.Generator | None = None
        self._rng_owner: tuple[int, int | None] | None = None

    @property
    def output_columns(self) -> list[str]:
        return ["audio", "labels", "id", "group"]

    def _crop_rng(self) -> np.random.Generator:
        if isinstance(self.crop_seed, np.random.Generator):
            return self.crop_seed
        info = torch.utils.data.get_worker_info()
        owner = (os.getpid(), None if info is None else info.id)
        if self._rng is None or self._rng_owner != owner:
            if self.crop_seed is None:
                self._rng = np.random.default_rng()
            else:
                entropy = [int(self.crop_seed)] + ([] if info is None else [int(info.id) + 1])
                self._rng = np.random.default_rng(np.random.SeedSequence(entropy))
            self._rng_owner = owner
        return self._rng

    def _audio_value(self, record: Mapping[str, Any]) -> Any:
        for col in self.audio_columns:
            value = record.get(col)
            if value is None:
                continue
            if (
                isinstance(value, Mapping)
                and not value.get("bytes")
                and not value.get("path")
                and value.get("array") is None
            ):
                continue
            return value
        return None

    def example_id(self, record: Mapping[str, Any]) -> str:
        """The id of a record: ``id_column``, else the audio path, else ``sha1:`` of the audio bytes."""
        if self.id_column is not None and record.get(self.id_column) is not None:
            return str(record[self.id_column])
        value = self._audio_value(record)
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
        if isinstance(value, Mapping):
            if value.get("path"):
                return str(value["path"])
            value = value.get("bytes")
        if isinstance(value, (bytes, bytearray, memoryview)):
            return "sha1:" + hashlib.sha1(bytes(value)).hexdigest()[:16]
        return "<unknown>"

    def labels_of(self, record: Mapping[str, Any]) -> list | None:
        """The normalised labels of a record (no audio decoding)."""
        for col in self.label_columns:
            value = record.get(col)
            if value is None:
                continue
            labels = normalize_labels(
                value, delimiter=self.label_delimiter, class_names=self.class_names, json_keys=self.json_label_keys
            )
            if labels is not None:
                return labels
        return None

    def group_of(self, record: Mapping[str, Any], example_id: str) -> str | None:
        if self.group_column is not None:
            value = record.get(self.group_column)
            return None if value is None else str(value)
        if self.group_fn is not None:
            return self.group_fn(example_id)
        return None

    def _read_window(self, value: Any) -> tuple[np.ndarray, int] | None:
        """For a file (path or encoded bytes) much longer than ``max_seconds``: read only the crop window.

        A 1 h file would otherwise be decoded whole (230 MB of float32 per mono hour) to keep 10 s. The window start is
        drawn in source samples (``crop`` mode, same generator); the window has a small margin so that resampling sees
        real neighbours, and is cut to ``max_samples`` after resampling. Returns ``(samples, channels), rate`` or
        ``None`` to use the whole-file path (short files, arrays, remote paths, unreadable headers: the normal path
        then reports the error).
        """
        source = value
        if isinstance(value, Mapping):
            source = value.get("bytes") or value.get("path")
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = io.BytesIO(bytes(source))
        elif isinstance(source, (str, os.PathLike)):
            source = os.fspath(source)
            if not os.path.isfile(source) or os.path.getsize(source) == 0:
                return None
        else:
            return None
        try:
            info = sf.info(source)
            rate, frames = int(info.samplerate), int(info.frames)
            margin = 64
            need = int(math.ceil(self.max_samples * rate / self.sampling_rate)) + margin
            if rate <= 0 or frames < 2 * need:
                return None
            start = crop_start(frames, need, self.crop, self._crop_rng() if self.crop == "random" else None)
            if isinstance(source, io.BytesIO):
                source.seek(0)
            data, rate = sf.read(source, start=start, frames=need, dtype="float32", always_2d=True)
        except Exception:  # anything odd: the whole-file path decides (and counts) what is wrong
            return None
        return data, int(rate)

    def decode(self, record: Mapping[str, Any]) -> Example | None:
        """Decode one record; returns ``None`` (and counts the reason) for a bad item. Never raises on bad data."""
        example_id = "<unknown>"
        try:
            example_id = self.example_id(record)
            value = self._audio_value(record)
            if value is None:
                raise AudioDecodeError("missing_audio", f"no audio in fields {list(self.audio_columns)}")
            window = self._read_window(value) if self.max_samples is not None else None
            source = window if window is not None else value
            wave = decode_audio(source, self.sampling_rate, min_samples=self.min_samples)
            try:
                labels = self.labels_of(record)
            except Exception as err:
                raise AudioDecodeError("bad_label", f"{type(err).__name__}: {err}") from err
            group = self.group_of(record, example_id)
            if window is not None:  # already positioned: cut the resampler's margin off the end
                wave = crop_or_pad(wave, self.max_samples, mode="start", pad=self.pad)
            elif self.max_samples is not None:
                rng = self._crop_rng() if self.crop == "random" and wave.shape[0] > self.max_samples else None
                wave = crop_or_pad(wave, self.max_samples, mode=self.crop, rng=rng, pad=self.pad)
        except AudioDecodeError as err:
            self.skip_counter.record_skip(err.reason, example_id, str(err))
            return None
        except Exception as err:  # never let one item kill the run
            self.skip_counter.record_skip("error", example_id, f"{type(err).__name__}: {err}")
            return None
        self.skip_counter.record_ok()
        return {"audio": wave, "labels": labels, "id": example_id, "group": group}

    def __call__(self, batch: Mapping[str, list]) -> dict[str, list]:
        """Batched ``datasets.map`` function: decodes every row and drops the bad ones."""
        keys = list(batch.keys())
        size = len(batch[keys[0]]) if keys else 0
        out: dict[str, list] = {name: [] for name in self.output_columns}
        # bad items dropped since the previous emitted row, and their ids (so streams can report skips)
        out["num_skipped"] = []
        out["skipped_ids"] = []
        pending: list[str] = list(getattr(self, "_pending_skip_ids", []))
        for i in range(size):
            example = self.decode({k: batch[k][i] for k in keys})
            if example is None:
                pending.append(self.skip_counter.recent_ids[-1])  # `decode` recorded exactly this one skip
                continue
            for name in self.output_columns:
                out[name].append(example[name])
            out["num_skipped"].append(len(pending))
            out["skipped_ids"].append(pending)
            pending = []
        self._pending_skip_ids = pending
        return out


# ---------------------------------------------------------------------------------------------------------------------
# Dataset wrappers
# ---------------------------------------------------------------------------------------------------------------------


class AudioDataset(torch.utils.data.Dataset):
    """Map-style audio dataset: a `datasets.Dataset` of raw records decoded on access by an [`ExampleDecoder`].

    * ``len(ds)`` counts raw items (bad ones included: they are only known once decoded).
    * ``ds[i]`` returns example ``i``; if it is bad it is counted and the next good item is returned instead
      (``i+1, i+2, ...``, at most ``max_retries`` bad items in a row, then ``EmptyDatasetError``). Known-bad indices
      are remembered, so batch shapes and epoch lengths stay fixed (as the original's retry loop).
      [`get_with_skips`] also returns the ids of the bad items passed over (known-bad ones included).
    * ``iter(ds)`` yields only the good examples, in order; [`filter_valid`] decodes everything once and returns a
      dataset restricted to the good items (exact lengths, e.g. for evaluation).
    * ``skip_counter`` holds the statistics; ``raw`` is the underlying `datasets.Dataset`.
    """

    def __init__(self, raw: Any, decoder: ExampleDecoder, *, max_retries: int = 10, name: str = "audio"):
        self.raw = raw
        self.decoder = decoder
        self.max_retries = max_retries
        self.name = name
        self._bad: dict[int, str] = {}  # known-bad index -> its id (in this process)

    @property
    def skip_counter(self) -> SkipCounter:
        return self.decoder.skip_counter

    def __len__(self) -> int:
        return len(self.raw)

    def get(self, index: int) -> Example | None:
        """Example ``index`` or ``None`` if it is bad (no substitution)."""
        example = self.decoder.decode(self.raw[int(index)])
        if example is None:
            self._bad[int(index)] = self.skip_counter.recent_ids[-1]  # `decode` recorded exactly this one skip
        return example

    def __getitem__(self, index: int) -> Example:
        return self.get_with_skips(index)[0]

    def get_with_skips(self, index: int) -> tuple[Example, list[str]]:
        """``(ds[index], ids of the bad items passed over to produce it)``. Every pass over a bad item is listed,
        also over one already known to be bad (which `skip_counter` does not count again), so the list does not depend
        on which process decoded what before."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        index = int(index) % n
        failures = 0
        skipped: list[str] = []
        for step in range(n):
            j = (index + step) % n
            if j in self._bad:
                skipped.append(self._bad[j])
                continue
            example = self.get(j)
            if example is not None:
                return example, skipped
            skipped.append(self._bad[j])
            failures += 1
            if failures > self.max_retries:
                break
        raise EmptyDatasetError(
            f"{self.name}: no decodable item found from index {index} ({failures} bad in a row); "
            f"{self.skip_counter.summary()}"
        )

    def __iter__(self) -> Iterator[Example]:
        yielded = 0
        for i, record in enumerate(self.raw):
            example = self.decoder.decode(record)
            if example is None:
                self._bad[i] = self.skip_counter.recent_ids[-1]
                continue
            yielded += 1
            yield example
        if yielded == 0 and len(self) > 0:
            raise EmptyDatasetError(f"{self.name}: no item could be decoded; {self.skip_counter.summary()}")

    def iter_labels(self) -> Iterator[list | None]:
        """Labels of every raw item, without decoding audio (for [`build_label_vocabulary`])."""
        for record in self.raw:
            yield self.decoder.labels_of(record)

    def _derive(self, raw: Any) -> AudioDataset:
        return AudioDataset(raw, self.decoder, max_retries=self.max_retries, name=self.name)

    def select(self, indices: Iterable[int]) -> AudioDataset:
        return self._derive(self.raw.select(list(indices)))

    def shuffle(self, seed: int | None = None) -> AudioDataset:
        """A shuffled view (index mapping only; a sampler's shuffling is usually enough for training)."""
        return self._derive(self.raw.shuffle(seed=seed))

    def shard(self, num_shards: int, index: int, contiguous: bool = True) -> AudioDataset:
        return self._derive(self.raw.shard(num_shards=num_shards, index=index, contiguous=contiguous))

    def filter_valid(self) -> AudioDataset:
        """Decode every item once; return the dataset restricted to the good ones (bad ones are counted)."""
        good = []
        for i in range(len(self)):
            if i not in self._bad and self.get(i) is not None:
                good.append(i)
        if not good:
            raise EmptyDatasetError(f"{self.name}: no item could be decoded; {self.skip_counter.summary()}")
        return self.select(good)

    def to_iterable_dataset(self, num_shards: int = 1) -> AudioIterableDataset:
        """The streaming variant of this dataset (``num_shards`` shards for ranks / DataLoader workers)."""
        return AudioIterableDataset(self.raw.to_iterable_dataset(num_shards=num_shards), self.decoder, name=self.name)

    def __repr__(self) -> str:
        return f"AudioDataset(name={self.name!r}, num_items={len(self)}, {self.skip_counter.summary()})"


class AudioIterableDataset(torch.utils.data.IterableDataset):
    """Streaming audio dataset: a `datasets.IterableDataset` of raw records plus an [`ExampleDecoder`].

    Shuffling, repetition and sharding act on the *raw* records (so the shuffle buffer holds encoded bytes, not
    decoded waveforms); decoding runs as a batched ``map`` that drops bad items. ``hf_dataset`` is that decoded
    `datasets.IterableDataset`: pass it (not this wrapper) to ``Trainer``/``accelerator.prepare`` with
    ``dispatch_batches=False`` so that accelerate can give whole shards to each rank (it only does so for a
    `datasets.IterableDataset`; any other iterable is read in full by every rank and sliced). The skip counter is
    shared with ``hf_dataset`` in the same process.
    """

    def __init__(
        self,
        raw: Any,
        decoder: ExampleDecoder,
        *,
        name: str = "audio",
        decode_batch_size: int = 8,
        raise_if_empty: bool = True,
    ):
        self.raw = raw
        self.decoder = decoder
        self.name = name
        self.decode_batch_size = decode_batch_size
        self.raise_if_empty = raise_if_empty
        self._epoch = 0
        # built now (map is lazy) so that set_epoch reaches persistent DataLoader workers through datasets' shared
        # epoch counter
        columns = raw.column_names
        self._hf = raw.map(
            decoder, batched=True, batch_size=decode_batch_size, remove_columns=list(columns) if columns else None
        )

    @property
    def skip_counter(self) -> SkipCounter:
        return self.decoder.skip_counter

    @property
    def hf_dataset(self) -> Any:
        """The decoded `datasets.IterableDataset` (columns ``audio``, ``labels``, ``id``, ``group``)."""
        return self._hf

    @property
    def n_shards(self) -> int:
        return self.raw.n_shards

    num_shards = n_shards

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Re-seed the shuffle for a new epoch (``seed + epoch``); Trainer/accelerate call this."""
        self._epoch = int(epoch)
        self._hf.set_epoch(self._epoch)

    def __iter__(self) -> Iterator[Example]:
        yielded = 0
        seen_before = self.skip_counter.num_seen
        for example in self.hf_dataset:
            yielded += 1
            yield example
        if yielded == 0 and self.raise_if_empty and self.skip_counter.num_seen > seen_before:
            raise EmptyDatasetError(f"{self.name}: no item could be decoded; {self.skip_counter.summary()}")

    def iter_labels(self) -> Iterator[list | None]:
        """Labels of every raw item, without decoding audio (for [`build_label_vocabulary`])."""
        for record in self.raw:
            yield self.decoder.labels_of(record)

    def _derive(self, raw: Any) -> AudioIterableDataset:
        new = AudioIterableDataset(
            raw,
            self.decoder,
            name=self.name,
            decode_batch_size=self.decode_batch_size,
            raise_if_empty=self.raise_if_empty,
        )
        new.set_epoch(self._epoch)
        return new

    def shuffle(self, seed: int | None = None, buffer_size: int = 1000) -> AudioIterableDataset:
        """Shuffle the shard order and, through a buffer of ``buffer_size`` raw records, the examples."""
        return self._derive(self.raw.shuffle(seed=seed, buffer_size=buffer_size))

    def repeat(self, num_times: int | None = None) -> AudioIterableDataset:
        """Repeat ``num_times`` times (``None``: forever -- keeps ranks stepping with ``max_steps``)."""
        if not hasattr(self.raw, "repeat"):  # pragma: no cover - datasets < 3.4
            raise NotImplementedError("this datasets version has no IterableDataset.repeat")
        return self._derive(self.raw.repeat(num_times))

    def shard(self, num_shards: int, index: int, contiguous: bool = True) -> AudioIterableDataset:
        return self._derive(self.raw.shard(num_shards=num_shards, index=index, contiguous=contiguous))

    def take(self, n: int) -> AudioIterableDataset:
        """The first ``n`` *raw* records (bad ones among them are still dropped)."""
        return self._derive(self.raw.take(n))

    def __repr__(self) -> str:
        return f"AudioIterableDataset(name={self.name!r}, n_shards={self.n_shards}, {self.skip_counter.summary()})"


# ---------------------------------------------------------------------------------------------------------------------
# Distributed sharding
# ---------------------------------------------------------------------------------------------------------------------


def get_rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised torch.distributed group, else ``RANK``/``WORLD_SIZE``, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def shard_for_rank(
    ds: Any,
    rank: int | None = None,
    world_size: int | None = None,
    *,
    used_with_accelerate_prepare: bool,
    strategy: str = "auto",
) -> Any:
    """Give this rank its part of ``ds`` -- unless accelerate will do it (no double sharding).

    The rule (reference notes §12):

    * ``used_with_accelerate_prepare=True`` -- the DataLoader goes through ``Trainer`` or ``accelerator.prepare``:
      ``ds`` is returned unchanged. For an iterable dataset accelerate either dispatches batches from rank 0
      (``dispatch_batches=True``, its default) or, with ``dispatch_batches=False``, calls ``ds.shard(world, rank)``
      itself when ``ds`` is a `datasets.IterableDataset` with ``n_shards >= world_size`` (else it wraps it in
      ``IterableDatasetShard``); for a map-style dataset its DistributedSampler splits the indices. Sharding here too
      would leave each rank ``1/world²`` of the data.
    * ``used_with_accelerate_prepare=False`` -- a hand-written loop with a plain DataLoader: the dataset is split with
      ``datasets.distributed.split_dataset_by_node(ds, rank, world_size, strategy=...)``. ``"auto"`` gives whole
      shards to each rank when ``n_shards % world_size == 0``, else every ``world_size``-th example (each rank then
      reads everything). Shuffle with the same seed on every rank. Uneven per-rank counts can hang collectives: use
      ``max_steps`` with ``.repeat(None)`` and ``drop_last``.

    Works on [`AudioDataset`], [`AudioIterableDataset`], `datasets.Dataset` and `datasets.IterableDataset`.
    ``rank``/``world_size`` default to [`get_rank_and_world_size`].
    """
    if rank is None or world_size is None:
        env_rank, env_world = get_rank_and_world_size()
        rank = env_rank if rank is None else rank
        world_size = env_world if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid rank {rank} for world_size {world_size}")
    if used_with_accelerate_prepare or world_size == 1:
        return ds
    datasets = _require_datasets()
    from datasets.distributed import split_dataset_by_node

    if isinstance(ds, (AudioDataset, AudioIterableDataset)):
        return ds._derive(split_dataset_by_node(ds.raw, rank=rank, world_size=world_size, strategy=strategy))
    if isinstance(ds, (datasets.Dataset, datasets.IterableDataset)):
        return split_dataset_by_node(ds, rank=rank, world_size=world_size, strategy=strategy)
    raise TypeError(f"cannot shard a {type(ds).__name__}; expected an Audio(Iterable)Dataset or a datasets dataset")


# ---------------------------------------------------------------------------------------------------------------------
# Local sources
# ---------------------------------------------------------------------------------------------------------------------


def _has_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def _expand(path_or_paths: PathLike | Sequence[PathLike], suffixes: Sequence[str]) -> list[str]:
    """Files with one of ``suffixes`` under a directory (recursive), matching a glob, or listed explicitly."""
    items = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    files: list[str] = []
    for item in items:
        p = os.fspath(item)
        if _has_glob(p):
            matches = sorted(glob.glob(p, recursive=True))
            if not matches:
                raise FileNotFoundError(f"no file matches {p!r}")
            files.extend(m for m in matches if os.path.isfile(m))
        elif os.path.isdir(p):
            files.extend(sorted(str(f) for f in Path(p).rglob("*") if f.is_file() and f.suffix.lower() in suffixes))
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise FileNotFoundError(f"{p!r} does not exist (to load a Hub dataset, pass dataset_name=...)")
    return files


_SUFFIX_TO_SOURCE = {
    ".json": "manifest",
    ".jsonl": "manifest",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".tar": "webdataset",
    **{ext: "folder" for ext in AUDIO_EXTENSIONS},
}


def detect_source_type(path: PathLike | Sequence[PathLike]) -> str:
    """Guess the local source type of a path, glob or list of paths (one of [`SOURCE_TYPES`] except ``"hub"``).

    Files: ``.json``/``.jsonl`` → manifest, ``.csv``/``.tsv`` → csv, ``.parquet`` → parquet, ``.tar`` → webdataset,
    audio files → folder. Directories: audio files inside (recursive) → folder, else parquet files → parquet, else
    ``.tar`` files → webdataset.
    """
    items = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not items:
        raise EmptyDatasetError("no path given")
    kinds = set()
    for item in items:
        p = os.fspath(item)
        if os.path.isdir(p):
            found: Counter[str] = Counter()
            for f in Path(p).rglob("*"):  # stops at the first audio file (large folders)
                suffix = f.suffix.lower()
                if suffix in AUDIO_EXTENSIONS and f.is_file():
                    found[suffix] += 1
                    break
                if f.is_file():
                    found[suffix] += 1
            if any(ext in found for ext in AUDIO_EXTENSIONS):
                kinds.add("folder")
            elif ".parquet" in found:
                kinds.add("parquet")
            elif ".tar" in found:
                kinds.add("webdataset")
            else:
                raise EmptyDatasetError(
                    f"no audio, parquet or .tar files under {p!r} (found extensions {dict(found) or 'none'}); "
                    f"audio extensions: {AUDIO_EXTENSIONS}"
                )
            continue
        files = _expand(p, tuple(_SUFFIX_TO_SOURCE))
        for f in files:
            suffix = Path(f).suffix.lower()
            if suffix not in _SUFFIX_TO_SOURCE:
                raise ValueError(f"cannot tell the source type of {f!r}; pass source_type= (one of {SOURCE_TYPES})")
            kinds.add(_SUFFIX_TO_SOURCE[suffix])
    if len(kinds) != 1:
        raise ValueError(f"paths of several source types {sorted(kinds)}; load them separately")
    return kinds.pop()


def scan_audio_folder(
    path: PathLike | Sequence[PathLike],
    *,
    folder_labels: bool = True,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
) -> list[dict[str, Any]]:
    """Records ``{"audio": path, "labels": [parent folder] | None, "id": relative path, "group": None}`` for the
    audio files under ``path`` (recursive, sorted). Files directly in the root folder get no label."""
    items = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    exts = tuple(e.lower() for e in extensions)
    records = []
    for item in items:
        root = Path(os.fspath(item))
        if root.is_dir():
            files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in exts)
        else:
            files = [Path(f) for f in _expand(item, exts)]
            root = None
        for f in files:
            rel = f.relative_to(root).as_posix() if root is not None else f.as_posix()
            label = None
            if folder_labels and (root is None or f.parent != root):
                label = [f.parent.name]
            records.append({"audio": str(f), "labels": label, "id": rel, "group": None})
    return records


def _pick(
    columns: Sequence[str], requested: str | None, defaults: Sequence[str], what: str, where: str, required: bool
):
    if requested is None:
        return None
    if requested != _AUTO:
        _check_columns(columns, [requested], where)
        return requested
    for name in defaults:
        if name in columns:
            return name
    if required:
        raise ValueError(
            f"no {what} column found in {where} (tried {list(defaults)}); available columns: {list(columns)}; "
            f"pass {what}_column=..."
        )
    return None


def _table_records(
    rows: list[Mapping[str, Any]],
    base_dir: Path,
    where: str,
    *,
    audio_column: str,
    label_column: str | None,
    id_column: str | None,
    group_column: str | None,
    label_delimiter: str | None,
) -> list[dict[str, Any]]:
    columns = list(rows[0].keys()) if rows else []
    audio_col = _pick(columns, audio_column, ("wav",) + _DEFAULT_AUDIO_KEYS, "audio", where, True)
    label_col = _pick(columns, label_column, _DEFAULT_LABEL_KEYS, "label", where, False)
    id_col = _pick(columns, id_column, ("id",), "id", where, False)
    group_col = _pick(columns, group_column, (), "group", where, False)
    records = []
    for i, row in enumerate(rows):
        raw_path = row.get(audio_col)
        if raw_path in (None, ""):
            audio = None
        else:
            raw_path = str(raw_path)
            is_remote = "://" in raw_path
            audio = raw_path if (is_remote or os.path.isabs(raw_path)) else str(base_dir / raw_path)
        labels = None
        if label_col is not None:
            try:
                labels = normalize_labels(row.get(label_col), delimiter=label_delimiter)
            except TypeError:
                labels = None
        example_id = row.get(id_col) if id_col else None
        records.append(
            {
                "audio": audio,
                "labels": labels,
                "id": str(example_id) if example_id is not None else (str(raw_path) if raw_path else f"{where}#{i}"),
                "group": None if group_col is None or row.get(group_col) is None else str(row.get(group_col)),
            }
        )
    return records


def read_manifest(
    path: PathLike,
    *,
    audio_column: str = _AUTO,
    label_column: str | None = _AUTO,
    id_column: str | None = _AUTO,
    group_column: str | None = None,
    label_delimiter: str | None = ",",
) -> list[dict[str, Any]]:
    """Records from an AudioSet/AST-style JSON manifest ``{"data": [{"wav": ..., "labels": "m1,m2"}]}``, a
    top-level JSON list, or JSON lines (``.jsonl``). Relative paths are resolved against the manifest's folder.
    ``"auto"`` columns: audio ``wav``/``audio``/``path``/..., labels ``labels``/``label``, id ``id`` (else the path
    as written)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        obj = json.loads(text)
        if isinstance(obj, Mapping):
            if "data" not in obj:
                raise ValueError(f"{path}: a JSON manifest object needs a 'data' list; keys: {list(obj.keys())}")
            rows = obj["data"]
        else:
            rows = obj
    if not isinstance(rows, list) or not rows:
        raise EmptyDatasetError(f"manifest {path} has no entries")
    return _table_records(
        rows,
        path.parent,
        str(path),
        audio_column=audio_column,
        label_column=label_column,
        id_column=id_column,
        group_column=group_column,
        label_delimiter=label_delimiter,
    )


def read_csv_manifest(
    path: PathLike,
    *,
    audio_column: str = _AUTO,
    label_column: str | None = _AUTO,
    id_column: str | None = _AUTO,
    group_column: str | None = None,
    label_delimiter: str | None = ",",
    delimiter: str | None = None,
) -> list[dict[str, Any]]:
    """Records from a CSV/TSV file with a header row (``"auto"`` audio column: ``path``/``wav``/``filename``/...,
    label ``labels``/``label``). Relative paths are resolved against the file's folder. Labels are split on
    ``label_delimiter`` (quote multi-label cells: ``"m1,m2"``)."""
    path = Path(path)
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter=delimiter))
    if not rows:
        raise EmptyDatasetError(f"CSV file {path} has no rows")
    return _table_records(
        rows,
        path.parent,
        str(path),
        audio_column=audio_column,
        label_column=label_column,
        id_column=id_column,
        group_column=group_column,
        label_delimiter=label_delimiter,
    )


def webdataset_features(
    audio_fields: Sequence[str] = WEBDATASET_AUDIO_FIELDS,
    *,
    json_field: bool = True,
    cls_field: bool = True,
    txt_field: bool = True,
    extra: Mapping[str, Any] | None = None,
):
    """Explicit ``datasets.Features`` for the ``webdataset`` builder that keep audio members as raw bytes.

    ``__key__``/``__url__`` strings, ``Value("binary")`` for each audio extension, ``Json()`` for ``.json``,
    ``Value("int64")`` for ``.cls`` and ``Value("string")`` for ``.txt``. Members an example lacks become ``None``;
    members not declared here are dropped (add them with ``extra``).
    """
    datasets = _require_datasets()
    from datasets import Features, Value

    feats: dict[str, Any] = {"__key__": Value("string"), "__url__": Value("string")}
    for name in audio_fields:
        feats[name] = Value("binary")
    if json_field:
        feats["json"] = datasets.Json()
    if cls_field:
        feats["cls"] = Value("int64")
    if txt_field:
        feats["txt"] = Value("string")
    feats.update(extra or {})
    return Features(feats)


# ---------------------------------------------------------------------------------------------------------------------
# datasets-backed sources
# ---------------------------------------------------------------------------------------------------------------------


def _disable_audio_decoding(ds: Any) -> Any:
    """Cast every top-level ``Audio`` column to ``Audio(decode=False)`` (no torchcodec needed on that path)."""
    import datasets

    features = getattr(ds, "features", None)
    if not features:
        return ds
    for name, feature in features.items():
        if isinstance(feature, datasets.Audio) and feature.decode:
            ds = ds.cast_column(name, datasets.Audio(sampling_rate=None, decode=False))
    return ds


def _class_names(feature: Any) -> list[str] | None:
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        return list(inner.names)
    return None


def wrap_hf_dataset(
    ds: Any,
    *,
    audio_column: str | Sequence[str] = _AUTO,
    label_column: str | Sequence[str] | None = _AUTO,
    id_column: str | None = _AUTO,
    group_column: str | None = None,
    group_fn: Callable[[str], str | None] | None = None,
    label_delimiter: str | None = ",",
    decode_class_labels: bool = True,
    json_label_keys: Sequence[str] = _DEFAULT_LABEL_KEYS,
    sampling_rate: int = TARGET_SAMPLING_RATE,
    min_samples: int = MIN_NUM_SAMPLES,
    max_seconds: float | None = None,
    crop: str = "random",
    pad: bool = False,
    crop_seed: int | np.random.Generator | None = None,
    skip_counter: SkipCounter | None = None,
    max_retries: int = 10,
    name: str = "audio",
) -> AudioDataset | AudioIterableDataset:
    """Wrap a `datasets.Dataset` / `datasets.IterableDataset` of audio records as an [`AudioDataset`] /
    [`AudioIterableDataset`].

    ``Audio`` columns are cast to ``Audio(decode=False)`` first. ``"auto"`` columns:

    * audio: WebDataset-like data (a ``__key__`` column) → the present members of [`WEBDATASET_AUDIO_FIELDS`]; else
      ``audio`` if present; else the first ``Audio``, ``{bytes, path}`` struct or binary column.
    * labels: WebDataset → ``json`` (key ``labels``/``label``), ``cls``, ``txt``; else ``labels`` or ``label`` if
      present; else no labels. ``ClassLabel`` ids become names when ``decode_class_labels``.
    * id: ``id`` or ``__key__`` if present; else the audio path; else a hash of the audio bytes.

    Unknown explicit columns raise ``ValueError`` listing the available columns.
    """
    datasets = _require_datasets()
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        raise ValueError(f"got a dict of splits {list(ds.keys())}; pass split=... to select one")
    if not isinstance(ds, (datasets.Dataset, datasets.IterableDataset)):
        raise TypeError(f"expected a datasets.Dataset or datasets.IterableDataset, got {type(ds).__name__}")
    if isinstance(ds, datasets.IterableDataset) and ds.features is None and hasattr(ds, "_resolve_features"):
        ds = ds._resolve_features()  # peeks at the first example to learn the columns
    ds = _disable_audio_decoding(ds)
    features = ds.features or {}
    columns = list(ds.column_names or features.keys())
    where = f"the dataset (split {getattr(ds, 'split', None)})"
    is_wds = "__key__" in columns and any(c in columns for c in WEBDATASET_AUDIO_FIELDS)

    if audio_column == _AUTO:
        if is_wds:
            audio_cols: str | tuple[str, ...] = tuple(c for c in WEBDATASET_AUDIO_FIELDS if c in columns)
        elif "audio" in columns:
            audio_cols = "audio"
        else:
            audio_cols = None
            for col in columns:
                feat = features.get(col)
                if (
                    isinstance(feat, datasets.Audio)
                    or (isinstance(feat, Mapping) and "bytes" in feat)
                    or (isinstance(feat, datasets.Value) and feat.dtype in ("binary", "large_binary"))
                ):
                    audio_cols = col
                    break
            if audio_cols is None:
                raise ValueError(f"no audio column found in {where}; available columns: {columns}; pass audio_column=")
    else:
        audio_cols = (audio_column,) if isinstance(audio_column, str) else tuple(audio_column)
        _check_columns(columns, audio_cols, where)

    if label_column == _AUTO:
        if is_wds:
            label_cols: tuple[str, ...] | None = tuple(c for c in WEBDATASET_LABEL_FIELDS if c in columns)
        else:
            label_cols = tuple(c for c in _DEFAULT_LABEL_KEYS if c in columns)[:1]
        label_cols = label_cols or None
    elif label_column is None:
        label_cols = None
    else:
        label_cols = (label_column,) if isinstance(label_column, str) else tuple(label_column)
        _check_columns(columns, label_cols, where)

    if id_column == _AUTO:
        id_col = next((c for c in _DEFAULT_ID_KEYS if c in columns), None)
    else:
        id_col = id_column
        _check_columns(columns, [id_col], where)
    _check_columns(columns, [group_column], where)

    class_names = None
    if decode_class_labels and label_cols:
        for col in label_cols:
            class_names = class_names or _class_names(features.get(col))

    decoder = ExampleDecoder(
        audio_column=audio_cols,
        label_column=label_cols,
        id_column=id_col,
        group_column=group_column,
        group_fn=group_fn,
        label_delimiter=label_delimiter,
        class_names=class_names,
        json_label_keys=json_label_keys,
        sampling_rate=sampling_rate,
        min_samples=min_samples,
        max_seconds=max_seconds,
        crop=crop,
        pad=pad,
        crop_seed=crop_seed,
        skip_counter=skip_counter if skip_counter is not None else SkipCounter(name),
    )
    if isinstance(ds, datasets.IterableDataset):
        return AudioIterableDataset(ds, decoder, name=name)
    return AudioDataset(ds, decoder, max_retries=max_retries, name=name)


def _load_with_datasets(
    name: str,
    *,
    split: str,
    streaming: bool,
    config_name: str | None,
    data_files: Any,
    data_dir: str | None,
    revision: str | None,
    token: str | bool | None,
    cache_dir: str | None,
    load_kwargs: Mapping[str, Any] | None,
) -> Any:
    """``datasets.load_dataset`` for Hub repos, local dataset folders and packaged builders alike."""
    datasets = _require_datasets()
    kwargs = dict(load_kwargs or {})
    if name == "webdataset" and "features" not in kwargs:
        kwargs["features"] = webdataset_features()  # inference would pick Audio (torchcodec) or fail on mixed members
    for key, value in (
        ("data_files", data_files),
        ("data_dir", data_dir),
        ("revision", revision),
        ("token", token),
        ("cache_dir", cache_dir),
    ):
        if value is not None:
            kwargs[key] = value
    try:
        ds = datasets.load_dataset(name, config_name, split=split, streaming=streaming, **kwargs)
    except ImportError as err:
        if "torchcodec" in str(err):
            raise ImportError(
                f"loading {name!r} needs torchcodec because its builder encodes audio (e.g. 'audiofolder'). Pass "
                "explicit non-Audio features, e.g. "
                "load_kwargs={'features': Features({'audio': Value('string'), ...})}, "
                "or load local files with path=..."
            ) from err
        raise
    except Exception as err:
        if "torchcodec" in repr(getattr(err, "__cause__", None)):
            raise ImportError(
                f"loading {name!r} failed because its builder encodes audio through torchcodec; pass explicit "
                "non-Audio features with load_kwargs={'features': ...} or load local files with path=..."
            ) from err
        raise
    return ds


def load_audio_dataset(
    path: PathLike | Sequence[PathLike] | None = None,
    *,
    dataset_name: str | None = None,
    source_type: str = _AUTO,
    split: str = "train",
    streaming: bool = False,
    config_name: str | None = None,
    data_files: Any = None,
    data_dir: str | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | None = None,
    load_kwargs: Mapping[str, Any] | None = None,
    audio_column: str | Sequence[str] = _AUTO,
    label_column: str | Sequence[str] | None = _AUTO,
    id_column: str | None = _AUTO,
    group_column: str | None = None,
    group_fn: Callable[[str], str | None] | None = None,
    label_delimiter: str | None = ",",
    decode_class_labels: bool = True,
    folder_labels: bool = True,
    json_label_keys: Sequence[str] = _DEFAULT_LABEL_KEYS,
    sampling_rate: int = TARGET_SAMPLING_RATE,
    min_samples: int = MIN_NUM_SAMPLES,
    max_seconds: float | None = None,
    crop: str = "random",
    pad: bool = False,
    crop_seed: int | np.random.Generator | None = None,
    num_shards: int | None = None,
    skip_counter: SkipCounter | None = None,
    max_retries: int = 10,
) -> AudioDataset | AudioIterableDataset:
    """Load audio examples ``{"audio", "labels", "id", "group"}`` from a local source or through `datasets`.

    Give exactly one of:

    * ``dataset_name``: passed to ``datasets.load_dataset(dataset_name, config_name, split=..., streaming=...,
      data_files=..., ...)`` -- a Hub id (``"org/repo"``), a local dataset folder, or a builder such as
      ``"parquet"``/``"webdataset"`` with ``data_files``; ``load_kwargs`` are forwarded (e.g. ``features=``).
      ``"webdataset"`` gets [`webdataset_features`] unless ``features`` is given; for a Hub repository stored as
      WebDataset shards pass ``load_kwargs={"features": webdataset_features()}`` yourself (feature inference picks
      ``Audio`` and fails when examples carry different member types).
    * ``path``: a local file, folder, glob or list of them; ``source_type`` ``"auto"`` (see [`detect_source_type`]),
      ``"folder"``, ``"manifest"``, ``"csv"``, ``"parquet"``, ``"webdataset"`` or ``"hub"`` (= ``dataset_name=path``).
      Parquet and WebDataset files are read with the same ``load_dataset`` call (``data_files={split: files}``);
      folder/manifest/CSV records become an in-memory `datasets.Dataset` (``split`` is then ignored).

    Args:
        streaming: ``False`` → [`AudioDataset`] (map-style); ``True`` → [`AudioIterableDataset`]. For local
            folder/manifest/CSV sources the stream has ``num_shards`` shards (default ``min(#items, 64)``).
        audio_column / label_column / id_column / group_column: field names (``"auto"``: see [`wrap_hf_dataset`],
            [`read_manifest`], [`read_csv_manifest`]); ``label_column=None`` gives ``labels=None``.
        label_delimiter: splits string labels (``"m1,m2"`` → ``["m1", "m2"]``); ``None`` keeps them whole.
        folder_labels: folder source: label = parent folder name.
        sampling_rate / min_samples: output rate and the minimum length (shorter items are skipped).
        max_seconds / crop / pad / crop_seed: crop longer clips to ``max_seconds`` (``"random"`` start from a
            numpy Generator seeded with ``crop_seed`` (mixed with the DataLoader worker id), ``"start"`` or
            ``"center"``); ``pad=True`` also zero-pads shorter ones.
        skip_counter: share one [`SkipCounter`] between datasets (a new one by default).
        max_retries: map-style: consecutive bad items tolerated when substituting a bad index.

    Raises:
        ValueError: unknown ``source_type``, both/neither of ``path``/``dataset_name``, unknown columns (the message
            lists the available ones).
        EmptyDatasetError: a source without items.
        FileNotFoundError: a missing local path.
    """
    if (path is None) == (dataset_name is None):
        raise ValueError("give exactly one of `path` (local files) or `dataset_name` (datasets.load_dataset)")
    if source_type != _AUTO and source_type not in SOURCE_TYPES:
        raise ValueError(f"unknown source_type {source_type!r}; expected 'auto' or one of {SOURCE_TYPES}")
    common = dict(
        group_fn=group_fn,
        label_delimiter=label_delimiter,
        sampling_rate=sampling_rate,
        min_samples=min_samples,
        max_seconds=max_seconds,
        crop=crop,
        pad=pad,
        crop_seed=crop_seed,
    )
    load_args = dict(
        split=split,
        streaming=streaming,
        config_name=config_name,
        data_dir=data_dir,
        revision=revision,
        token=token,
        cache_dir=os.fspath(cache_dir) if cache_dir is not None else None,
        load_kwargs=load_kwargs,
    )
    wrap_args = dict(
        audio_column=audio_column,
        label_column=label_column,
        id_column=id_column,
        group_column=group_column,
        decode_class_labels=decode_class_labels,
        json_label_keys=json_label_keys,
        skip_counter=skip_counter,
        max_retries=max_retries,
        **common,
    )

    if dataset_name is not None:
        if source_type not in (_AUTO, "hub"):
            raise ValueError(f"source_type={source_type!r} needs `path`, not `dataset_name`")
        ds = _load_with_datasets(dataset_name, data_files=data_files, **load_args)
        return wrap_hf_dataset(ds, name=str(dataset_name), **wrap_args)

    kind = detect_source_type(path) if source_type == _AUTO else source_type
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else f"{len(list(path))} paths"
    if kind == "hub":
        ds = _load_with_datasets(os.fspath(path), data_files=data_files, **load_args)
        return wrap_hf_dataset(ds, name=name, **wrap_args)
    if kind in ("parquet", "webdataset"):
        suffix = ".parquet" if kind == "parquet" else ".tar"
        files = _expand(path, (suffix,))
        if not files:
            raise EmptyDatasetError(f"no {suffix} files in {name}")
        ds = _load_with_datasets(kind, data_files={split: files}, **load_args)
        return wrap_hf_dataset(ds, name=name, **wrap_args)

    # folder / manifest / csv → records → in-memory datasets.Dataset
    if kind == "folder":
        records = scan_audio_folder(path, folder_labels=folder_labels)
    elif kind in ("manifest", "csv"):
        reader = read_manifest if kind == "manifest" else read_csv_manifest
        files = _expand(path, (".json", ".jsonl") if kind == "manifest" else (".csv", ".tsv"))
        records = []
        for f in files:
            records.extend(
                reader(
                    f,
                    audio_column=audio_column if isinstance(audio_column, str) else audio_column[0],
                    label_column=label_column
                    if label_column is None or isinstance(label_column, str)
                    else label_column[0],
                    id_column=id_column,
                    group_column=group_column,
                    label_delimiter=label_delimiter,
                )
            )
    else:  # pragma: no cover - guarded above
        raise ValueError(f"unknown source_type {kind!r}")
    if not records:
        raise EmptyDatasetError(f"no audio items found in {name} (source type {kind!r})")
    return _records_to_dataset(
        records,
        streaming=streaming,
        num_shards=num_shards,
        name=name,
        skip_counter=skip_counter,
        max_retries=max_retries,
        **common,
    )


def _records_to_dataset(
    records: list[dict[str, Any]],
    *,
    streaming: bool,
    num_shards: int | None,
    name: str,
    skip_counter: SkipCounter | None,
    max_retries: int,
    **decoder_kwargs: Any,
) -> AudioDataset | AudioIterableDataset:
    datasets = _require_datasets()
    from datasets import Features, List, Value

    decoder_kwargs.pop("label_delimiter", None)  # the records' labels are already split
    features = Features(
        {"audio": Value("string"), "labels": List(Value("string")), "id": Value("string"), "group": Value("string")}
    )
    columns = {key: [r[key] for r in records] for key in ("audio", "labels", "id", "group")}
    values = [x for labels in columns["labels"] if labels for x in labels]
    if values and all(isinstance(x, int) and not isinstance(x, bool) for x in values):
        features["labels"] = List(Value("int64"))
    else:  # strings (or a mix, stored as strings)
        columns["labels"] = [None if labels is None else [str(x) for x in labels] for labels in columns["labels"]]
    raw = datasets.Dataset.from_dict(columns, features=features)
    decoder = ExampleDecoder(
        audio_column="audio",
        label_column="labels",
        id_column="id",
        group_column="group" if any(g is not None for g in columns["group"]) else None,
        label_delimiter=None,  # already split
        skip_counter=skip_counter if skip_counter is not None else SkipCounter(name),
        **decoder_kwargs,
    )
    dataset = AudioDataset(raw, decoder, max_retries=max_retries, name=name)
    if streaming:
        shards = num_shards if num_shards is not None else min(len(records), 64)
        return dataset.to_iterable_dataset(num_shards=max(1, min(shards, len(records))))
    return dataset


# ---------------------------------------------------------------------------------------------------------------------
# Collation
# ---------------------------------------------------------------------------------------------------------------------


class AudioClassificationCollator:
    """Batch examples for classification: ``feature_extractor(waves, sampling_rate=..., return_tensors=...)`` plus
    ``labels`` encoded with a [`LabelVocabulary`].

    ``feature_extractor`` is any callable with that signature (e.g. ``AudioMosaicFeatureExtractor``); extra keyword
    arguments go in ``extractor_kwargs`` (e.g. ``{"padding": "longest"}``). Labels: ``int64`` class ids for a
    single-label vocabulary, ``float32`` multi-hot rows for a multi-label one; no ``labels`` key without a
    vocabulary. ``return_ids=True`` adds the example ids (a list) under ``"ids"`` -- not for ``Trainer``, whose
    model call would receive it. Picklable (DataLoader workers).
    """

    def __init__(
        self,
        feature_extractor: Callable[..., Any],
        vocabulary: LabelVocabulary | None = None,
        *,
        sampling_rate: int = TARGET_SAMPLING_RATE,
        return_tensors: str = "pt",
        extractor_kwargs: Mapping[str, Any] | None = None,
        unknown_labels: str = "error",
        return_ids: bool = False,
    ):
        self.feature_extractor = feature_extractor
        self.vocabulary = vocabulary
        self.sampling_rate = sampling_rate
        self.return_tensors = return_tensors
        self.extractor_kwargs = dict(extractor_kwargs or {})
        self.unknown_labels = unknown_labels
        self.return_ids = return_ids

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> Any:
        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        waves = [np.asarray(ex["audio"], dtype=np.float32) for ex in examples]
        batch = self.feature_extractor(
            waves, sampling_rate=self.sampling_rate, return_tensors=self.return_tensors, **self.extractor_kwargs
        )
        if self.vocabulary is not None:
            encoded = []
            for ex in examples:
                try:
                    encoded.append(self.vocabulary.encode(ex.get("labels"), unknown=self.unknown_labels))
                except (KeyError, ValueError) as err:
                    raise type(err)(f"example {ex.get('id')!r}: {err}") from err
            if self.vocabulary.multi_label:
                labels = np.stack(encoded).astype(np.float32)
            else:
                labels = np.asarray(encoded, dtype=np.int64)
            if self.return_tensors == "pt":
                import torch

                labels = torch.from_numpy(labels)
            batch["labels"] = labels
        if self.return_ids:
            batch["ids"] = [ex.get("id") for ex in examples]
        return batch


def collate_for_classification(
    examples: Sequence[Mapping[str, Any]],
    feature_extractor: Callable[..., Any],
    vocabulary: LabelVocabulary | None = None,
    **kwargs: Any,
) -> Any:
    """Functional form of [`AudioClassificationCollator`] (same keyword arguments)."""
    return AudioClassificationCollator(feature_extractor, vocabulary, **kwargs)(examples)


__all__ = [
    "AUDIO_EXTENSIONS",
    "MIN_NUM_SAMPLES",
    "SKIP_REASONS",
    "SOURCE_TYPES",
    "TARGET_SAMPLING_RATE",
    "AudioClassificationCollator",
    "AudioDataset",
    "AudioDecodeError",
    "AudioIterableDataset",
    "EmptyDatasetError",
    "ExampleDecoder",
    "LabelVocabulary",
    "SkipCounter",
    "build_label_vocabulary",
    "collate_for_classification",
    "crop_or_pad",
    "crop_start",
    "decode_audio",
    "detect_source_type",
    "get_rank_and_world_size",
    "load_audio_dataset",
    "normalize_labels",
    "read_audio",
    "read_csv_manifest",
    "read_manifest",
    "resample_audio",
    "scan_audio_folder",
    "shard_for_rank",
    "webdataset_features",
    "wrap_hf_dataset",
]
