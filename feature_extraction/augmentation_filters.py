# coding=utf-8
"""Butterworth filter design, vectorised over cut-off frequencies, for the high-pass and band-stop augmentations.

:func:`butterworth_highpass_sos` / :func:`butterworth_bandstop_sos` give the same filters as ``scipy.signal.butter``
(bilinear transform with frequency pre-warping) for many cut-offs at once, as second-order sections;
:func:`sos_steady_state` gives the initial state of ``scipy.signal.sosfilt`` that starts a filter without a transient.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["butterworth_bandstop_sos", "butterworth_highpass_sos", "sos_steady_state"]


def _prototype_poles(order: int) -> np.ndarray:
    """Poles of the analog Butterworth low-pass prototype (cut-off 1 rad/s), left half-plane."""
    m = np.arange(-order + 1, order, 2, dtype=np.float64)
    return -np.exp(1j * np.pi * m / (2 * order))


def _prewarp(freq_hz: np.ndarray, sample_rate: float) -> np.ndarray:
    return 2.0 * sample_rate * np.tan(np.pi * freq_hz / sample_rate)


def _bilinear(poles: np.ndarray, sample_rate: float) -> np.ndarray:
    fs2 = 2.0 * sample_rate
    return (fs2 + poles) / (fs2 - poles)


def butterworth_highpass_sos(cutoff_hz: Any, order: int, sample_rate: float = 16000.0) -> np.ndarray:
    """Digital Butterworth high-pass filters as second-order sections, for many cut-offs at once.

    Same filter as ``scipy.signal.butter(order, cutoff, "highpass", fs=sample_rate, output="sos")`` (bilinear
    transform with frequency pre-warping); the overall gain is spread over the sections (each has gain 1 at Nyquist)
    instead of being put in the first one, which leaves the cascade unchanged.

    Args:
        cutoff_hz: Cut-off frequency/frequencies in Hz, scalar or shape ``(B,)``; must be in ``(0, sample_rate / 2)``.
        order (`int`): Filter order (roll-off ``6 * order`` dB/octave).
        sample_rate (`float`): Sampling rate in Hz.

    Returns:
        `np.ndarray` float64 of shape ``(B, ceil(order / 2), 6)`` (rows ``[b0, b1, b2, 1, a1, a2]``).
    """
    order = int(order)
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}.")
    fc = np.atleast_1d(np.asarray(cutoff_hz, dtype=np.float64))
    if fc.ndim != 1 or not np.all((fc > 0) & (fc < sample_rate / 2)):
        raise ValueError(f"cutoff_hz must be in (0, {sample_rate / 2}) Hz, got {cutoff_hz!r}.")
    proto = _prototype_poles(order)
    proto = proto[proto.imag > -1e-12]  # upper half-plane poles and the real pole (odd order)
    proto = proto[np.argsort(-proto.imag)]  # complex ones first, the real one (if any) last
    warped = _prewarp(fc, sample_rate)[:, None]
    digital = _bilinear(warped / proto[None, :], sample_rate)  # (B, sections)
    sos = np.zeros((fc.shape[0], proto.shape[0], 6), dtype=np.float64)
    is_real = np.abs(proto.imag) < 1e-12
    # complex-conjugate pole pair, double zero at z = 1: (1 - z^-1)^2 / (1 - 2 Re p z^-1 + |p|^2 z^-2)
    a1 = np.where(is_real, -digital.real, -2.0 * digital.real)
    a2 = np.where(is_real, 0.0, np.abs(digital) ** 2)
    b = np.where(is_real[:, None], np.array([1.0, -1.0, 0.0]), np.array([1.0, -2.0, 1.0]))  # (sections, 3)
    # unit gain at Nyquist (z = -1) per section: H(-1) = (b0 - b1 + b2) g / (1 - a1 + a2)
    gain = (1.0 - a1 + a2) / (b[:, 0] - b[:, 1] + b[:, 2])[None, :]
    sos[..., :3] = b[None, :, :] * gain[..., None]
    sos[..., 3] = 1.0
    sos[..., 4] = a1
    sos[..., 5] = a2
    return sos


def butterworth_bandstop_sos(low_hz: Any, high_hz: Any, order: int, sample_rate: float = 16000.0) -> np.ndarray:
    """Digital Butterworth band-stop filters as second-order sections, for many bands at once.

    Same filter as ``scipy.signal.butter(order, [low, high], "bandstop", fs=sample_rate, output="sos")`` (a
    ``2 * order``-pole filter); each section has gain 1 at DC.

    Args:
        low_hz, high_hz: Band edges in Hz, scalars or shape ``(B,)``, ``0 < low < high < sample_rate / 2``.
        order (`int`): Order of the low-pass prototype (what ``scipy.signal.butter`` calls ``N``).
        sample_rate (`float`): Sampling rate in Hz.

    Returns:
        `np.ndarray` float64 of shape ``(B, order, 6)``.
    """
    order = int(order)
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}.")
    low, high = np.broadcast_arrays(
        np.atleast_1d(np.asarray(low_hz, dtype=np.float64)), np.atleast_1d(np.asarray(high_hz, dtype=np.float64))
    )
    if low.ndim != 1 or not np.all((low > 0) & (low < high) & (high < sample_rate / 2)):
        raise ValueError(
            f"Band edges must satisfy 0 < low < high < {sample_rate / 2} Hz, got low={low_hz!r}, high={high_hz!r}."
        )
    proto = _prototype_poles(order)
    proto = proto[proto.imag > -1e-12]
    proto = proto[np.argsort(-proto.imag)]
    wl, wh = _prewarp(low, sample_rate), _prewarp(high, sample_rate)
    w0 = np.sqrt(wl * wh)[:, None]
    bw = (wh - wl)[:, None]
    q = (bw / 2.0) / proto[None, :]  # (B, P)
    root = np.sqrt(q * q - w0 * w0 + 0j)
    r1, r2 = q + root, q - root  # the two band-stop poles made from each prototype pole
    d1, d2 = _bilinear(r1, sample_rate), _bilinear(r2, sample_rate)
    is_real = np.abs(proto.imag) < 1e-12
    sections = []
    # a real prototype pole (odd order) gives one section with poles (d1, d2); a complex one gives two sections,
    # (d1, conj d1) and (d2, conj d2) (the conjugate prototype pole, not listed, supplies the conjugates).
    for k in range(proto.shape[0]):
        if is_real[k]:
            sections.append((-(d1[:, k] + d2[:, k]).real, (d1[:, k] * d2[:, k]).real))
        else:
            sections.append((-2.0 * d1[:, k].real, np.abs(d1[:, k]) ** 2))
            sections.append((-2.0 * d2[:, k].real, np.abs(d2[:, k]) ** 2))
    a1 = np.stack([s[0] for s in sections], axis=1)  # (B, order)
    a2 = np.stack([s[1] for s in sections], axis=1)
    # zeros at +-j w0 (analog) -> e^{+-j w0d}: numerator 1 - 2 cos(w0d) z^-1 + z^-2; unit gain at DC per section
    cos0 = np.cos(2.0 * np.arctan(w0 / (2.0 * sample_rate)))  # (B, 1)
    b1 = -2.0 * cos0
    gain = (1.0 + a1 + a2) / (2.0 + b1)
    sos = np.empty((low.shape[0], a1.shape[1], 6), dtype=np.float64)
    sos[..., 0] = gain
    sos[..., 1] = gain * b1
    sos[..., 2] = gain
    sos[..., 3] = 1.0
    sos[..., 4] = a1
    sos[..., 5] = a2
    return sos


def sos_steady_state(sos: np.ndarray) -> np.ndarray:
    """Initial states of ``scipy.signal.sosfilt`` (transposed direct form II) for a unit step at steady state.

    Equals ``scipy.signal.sosfilt_zi(sos)``: the state the cascade has after a constant input of 1 forever, so that
    filtering starts without a transient (audiomentations uses ``sosfilt_zi(sos) * samples[0]``). Shape
    ``(sections, 2)``.
    """
    b, a = sos[:, :3], sos[:, 3:]
    zi = np.empty((sos.shape[0], 2), dtype=np.float64)
    level = 1.0  # steady-state input level of the current section
    for k in range(sos.shape[0]):
        gain = b[k].sum() / a[k].sum()
        out = gain * level
        zi[k, 1] = (b[k, 2] - a[k, 2] * gain) * level
        zi[k, 0] = (b[k, 1] - a[k, 1] * gain) * level + zi[k, 1]
        level = out
    return zi
