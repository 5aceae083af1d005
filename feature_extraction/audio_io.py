"""Audio I/O: read any audio value, mix it to mono, resample it to 16 kHz, crop it.

Decoding never uses `datasets`' ``Audio`` feature (in datasets 5.x it decodes through torchcodec, which cannot be
loaded with CPU torch builds). Files and encoded bytes are read with soundfile (wav/flac/ogg/mp3 in the bundled
libsndfile), already decoded arrays go through the feature extractor's dtype rules, channels are averaged and the
result is resampled with the project's one resampler.

Encoded FLAC and PCM WAV *bytes* (parquet / WebDataset shards, streamed datasets) are decoded with `miniaudio`
(dr_flac / dr_wav) when it is installed (the optional ``[audio]`` extra): one thread, 10 s clips at 32-48 kHz,
3.4 ms instead of 5.7 ms per FLAC clip and 0.2 ms instead of 1.3 ms per WAV clip, with identical samples (measured
with ``audioset_shards.time_decoders``; see [`BYTES_DECODER`]). MP3 stays with soundfile: libsndfile's mpg123 is as
fast as dr_mp3 on these clips (7.5 vs 7.8 ms per 10 s clip) and exact, where dr_mp3's float output is rounded to 16
bits and clipped to [-1, 1]; PyAV (FFmpeg) is slower for every format. Anything miniaudio cannot read goes to
soundfile, so bad items are classified exactly as before.

The resampler ([`resample_audio`]) and the "any audio -> float32 mono" conversion ([`to_float32_mono`]) are defined in
`feature_extraction_audiomosaic.py`, which must stay self-contained (it is copied next to saved models as remote
code); this module re-exports them so that every path of the project uses the same two functions.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import soundfile as sf

from .feature_extraction_audiomosaic import resample_audio, to_float32_array, to_float32_mono
from .skips import AudioDecodeError

TARGET_SAMPLING_RATE = 16000
"""Sampling rate of every decoded example (AudioMosaic's fbank runs at 16 kHz)."""

MIN_NUM_SAMPLES = 400
"""Default minimum length after resampling: one 25 ms Kaldi window at 16 kHz (shorter clips give no fbank frame)."""

CROP_MODES: tuple[str, ...] = ("random", "start", "center")
"""Where a crop of a longer clip starts: uniformly at random, at the start or in the centre."""

WINDOW_MARGIN = 64
"""Extra source samples read around a crop window so that resampling sees real neighbours at the window edges."""

DECODER_ENV = "AUDIOMOSAIC_AUDIO_DECODER"
"""Environment variable choosing the decoder of encoded bytes: ``auto`` (default: miniaudio if installed) or
``soundfile`` (always soundfile)."""


def _load_miniaudio():
    if os.environ.get(DECODER_ENV, "auto").strip().lower() == "soundfile":
        return None
    try:
        import miniaudio
    except ImportError:
        return None
    return miniaudio


_MINIAUDIO = _load_miniaudio()
BYTES_DECODER = "miniaudio" if _MINIAUDIO is not None else "soundfile"
"""The decoder of FLAC and PCM WAV bytes in this process (chosen at import, see [`DECODER_ENV`]); MP3 and other
formats always go to soundfile."""


def _fast_read_bytes(data: bytes) -> tuple[np.ndarray, int] | None:
    """FLAC and 16/24/32-bit PCM WAV bytes through miniaudio's own readers: ``(samples, channels)`` float32 and the
    rate, or ``None`` (not installed, another format or WAV encoding, or anything it cannot read: soundfile then
    decides). dr_wav scales 8-bit and companded WAVs and clamps float WAVs differently from libsndfile, so those go to
    soundfile."""
    if _MINIAUDIO is None:
        return None
    if data[:4] == b"fLaC":
        reader = _MINIAUDIO.flac_read_f32
    elif (
        data[:4] == b"RIFF" and data[8:12] == b"WAVE" and data[12:16] == b"fmt " and len(data) > 36
        and int.from_bytes(data[20:22], "little") == 1  # WAVE_FORMAT_PCM
        and int.from_bytes(data[34:36], "little") in (16, 24, 32)
    ):
        reader = _MINIAUDIO.wav_read_f32
    else:
        return None
    try:
        decoded = reader(data)
    except Exception:  # miniaudio.DecodeError and friends: soundfile reads it or reports why not
        return None
    channels, rate = int(decoded.nchannels), int(decoded.sample_rate)
    if decoded.num_frames <= 0 or channels <= 0 or rate <= 0:
        return None
    samples = np.frombuffer(decoded.samples, dtype=np.float32)  # a writable view of miniaudio's array('f')
    return samples.reshape(-1, channels), rate


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


def _decoded_array(array: Any) -> np.ndarray:
    """An already decoded audio array (numpy, torch or list) as a ``(samples, 1)`` float32 mono column, through
    [`to_float32_mono`]: integer PCM (int8/uint8/int16/int32) scaled to [-1, 1), floats cast, a 2-D clip averaged over
    its shorter (channel) axis; bool / complex / other integer dtypes are ``bad_dtype``, other shapes ``undecodable``.
    """
    try:
        array = to_float32_array(array, "audio array")
    except TypeError as err:
        raise AudioDecodeError("bad_dtype", str(err)) from err
    if array.size == 0:
        raise AudioDecodeError("empty", "zero samples")
    try:
        mono = to_float32_mono(array, "audio array")
    except ValueError as err:
        raise AudioDecodeError("undecodable", str(err)) from err
    return mono[:, None]


#: Uncompressed containers whose 16-bit PCM is read as int16 and scaled in numpy: libsndfile's own int -> float
#: conversion costs 1.5 ms per 10 s of 48 kHz audio, the int16 read + one numpy multiply 0.15 ms, with identical
#: values (both compute ``x / 32768`` exactly in float32). Compressed formats gain nothing (decoding dominates).
_PCM16_FAST_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "AIFF"})
_PCM16_SCALE = np.float32(1.0 / 32768.0)


def _sf_read(file: Any, name: str) -> tuple[np.ndarray, int]:
    try:
        with sf.SoundFile(file) as handle:
            if handle.subtype == "PCM_16" and handle.format in _PCM16_FAST_FORMATS:
                pcm = handle.read(dtype="int16", always_2d=True)
                data = np.multiply(pcm, _PCM16_SCALE, dtype=np.float32)
            else:
                data = handle.read(dtype="float32", always_2d=True)
            sr = handle.samplerate
    except Exception as err:  # soundfile raises LibsndfileError / RuntimeError / TypeError / ValueError
        detail = getattr(err, "error_string", None) or str(err)
        raise AudioDecodeError("undecodable", f"{name}: {type(err).__name__}: {detail}") from err
    return data, int(sr)


def read_audio(source: Any) -> tuple[np.ndarray, int]:
    """Read ``source`` without resampling: a ``(samples, channels)`` float32 array and its sampling rate.

    ``source`` may be a path (str / PathLike; remote URLs are opened with datasets' ``xopen``), encoded bytes,
    a ``{"bytes": ..., "path": ...}`` dict (bytes preferred), a ``{"array": ..., "sampling_rate": ...}`` dict or an
    ``(array, sampling_rate)`` tuple. Files and bytes are read with soundfile (all their channels; FLAC and PCM WAV
    bytes with miniaudio when installed, see the module docstring); decoded arrays are mixed to mono by
    [`to_float32_mono`] and returned as one channel.

    Raises:
        AudioDecodeError: with reason ``missing_audio``, ``missing_file``, ``empty``, ``bad_dtype`` or
            ``undecodable``.
    """
    if source is None:
        raise AudioDecodeError("missing_audio", "no audio given")
    # decoded arrays (e.g. from a datasets Audio feature that does decode, or user data)
    if isinstance(source, tuple) and len(source) == 2 and not isinstance(source[0], (str, bytes)):
        array, sr = source
        return _decoded_array(array), int(sr)
    if isinstance(source, Mapping):
        if source.get("bytes"):
            return read_audio(bytes(source["bytes"]))
        if source.get("array") is not None:
            if source.get("sampling_rate") is None:
                raise AudioDecodeError("undecodable", "an 'array' needs a 'sampling_rate'")
            return _decoded_array(source["array"]), int(source["sampling_rate"])
        if source.get("path"):
            return read_audio(source["path"])
        if source.get("bytes") is not None:  # b"" and no path
            raise AudioDecodeError("empty", "zero-byte audio")
        raise AudioDecodeError("missing_audio", f"audio dict without bytes, array or path (keys {sorted(source)})")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) == 0:
            raise AudioDecodeError("empty", "zero-byte audio")
        fast = _fast_read_bytes(data)
        if fast is not None:
            return fast
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


def decode_audio(
    source: Any,
    sampling_rate: int = TARGET_SAMPLING_RATE,
    *,
    min_samples: int = 0,
) -> np.ndarray:
    """Decode ``source`` (see [`read_audio`]) to a mono float32 waveform at ``sampling_rate``.

    Steps: read → mean over channels → resample ([`resample_audio`]) → checks. A 0-sample or 0-byte item raises
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


def read_crop_window(
    value: Any,
    num_samples: int,
    sampling_rate: int,
    *,
    mode: str = "random",
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, int] | None:
    """For a file (path or encoded bytes) much longer than ``num_samples`` output samples: read only a crop window.

    A 1 h file would otherwise be decoded whole (230 MB of float32 per mono hour) to keep 10 s. The window start is
    drawn in source samples (``mode`` as in [`crop_start`], from ``rng``); the window is [`WINDOW_MARGIN`] samples
    longer so that resampling sees real neighbours; cut it to ``num_samples`` after resampling. Returns
    ``(samples, channels), rate`` or ``None`` to use the whole-file path (short files, arrays, remote paths,
    unreadable headers: the whole-file path then reports the error).
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
        need = int(math.ceil(num_samples * rate / sampling_rate)) + WINDOW_MARGIN
        if rate <= 0 or frames < 2 * need:
            return None
        start = crop_start(frames, need, mode, rng)
        if isinstance(source, io.BytesIO):
            source.seek(0)
        data, rate = sf.read(source, start=start, frames=need, dtype="float32", always_2d=True)
    except Exception:  # anything odd: the whole-file path decides (and counts) what is wrong
        return None
    return data, int(rate)


__all__ = [
    "BYTES_DECODER",
    "CROP_MODES",
    "DECODER_ENV",
    "MIN_NUM_SAMPLES",
    "TARGET_SAMPLING_RATE",
    "WINDOW_MARGIN",
    "crop_or_pad",
    "crop_start",
    "decode_audio",
    "read_audio",
    "read_crop_window",
    "resample_audio",
    "to_float32_array",
    "to_float32_mono",
]
