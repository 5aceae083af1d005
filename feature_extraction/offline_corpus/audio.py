"""Signal helpers for rendering clips: decoding and resampling to 16 kHz, trimming, speed perturbation, coloured
noise, mixing at an SNR, limiting and loudest-window cropping."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

from ..feature_extraction_audiomosaic import resample_audio
from .catalogue import SR


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _decode(data: bytes | str | Path) -> np.ndarray:
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else str(data)
    x, sr = sf.read(src, dtype="float32", always_2d=True)
    return resample_audio(x.mean(axis=1), sr, SR)


def _trim(x: np.ndarray, db: float) -> np.ndarray:
    """Cut leading/trailing parts more than ``db`` below the loudest 10 ms frame."""
    if x.size < 320:
        return x
    hop = 160
    n = x.size // hop
    frames = x[: n * hop].reshape(n, hop)
    e = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    if e.max() <= 0:
        return x[:0]
    on = np.nonzero(e > e.max() * 10 ** (-db / 20))[0]
    return x[max(0, on[0] * hop - hop): min(x.size, (on[-1] + 2) * hop)]


def _speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Speed perturbation (tempo and pitch together, like Kaldi's speed perturbation)."""
    return resample_audio(x, SR * factor, SR)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Time-compress ``x`` to at most ``n`` samples (resampling; used when a word is longer than the clip)."""
    if x.size <= n:
        return x
    y = resample_audio(x, x.size, n)
    return y[:n]


def _colored_noise(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "white":
        y = white
    else:
        spec = np.fft.rfft(white)
        f = np.arange(spec.size, dtype=np.float64)
        f[0] = 1.0
        spec /= np.sqrt(f) if kind == "pink" else f
        y = np.fft.irfft(spec, n)
    y = y - y.mean()
    return (y / (np.std(y) + 1e-12)).astype(np.float32)


def _mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float, ref_power: float) -> np.ndarray:
    p_noise = float(np.mean(np.square(noise, dtype=np.float64)))
    if p_noise <= 0 or ref_power <= 0:
        return signal
    gain = np.sqrt(ref_power / (10 ** (snr_db / 10)) / p_noise)
    return (signal + gain * noise).astype(np.float32)


def _limit(x: np.ndarray, peak: float = 0.99) -> np.ndarray:
    m = float(np.max(np.abs(x))) if x.size else 0.0
    return (x * (peak / m)).astype(np.float32) if m > peak else x.astype(np.float32)


def _crop(x: np.ndarray, n: int, rng: np.random.Generator, tries: int = 3) -> np.ndarray:
    """A random ``n``-sample window of ``x`` (tiled if shorter); the loudest of ``tries`` random windows."""
    if x.size < n:
        x = np.tile(x, int(np.ceil(n / max(x.size, 1))) + 1)
    starts = rng.integers(0, x.size - n + 1, size=tries)
    best = max(starts, key=lambda s: (_rms(x[s: s + n]), -int(s)))
    return x[best: best + n].copy()
