# coding=utf-8
"""Feature extractor for AudioMosaic: batched, vectorised Kaldi filter banks in PyTorch.

This module is self-contained on purpose: it is copied next to saved models and imported as *remote code*
(``trust_remote_code=True``) in processes where the AudioMosaic packages are not importable. It therefore imports
only the standard library, ``numpy``, ``torch`` and ``transformers`` at module level; ``soxr`` / ``scipy`` are
imported lazily (inside ``try`` blocks) when resampling is requested.

Public API:

- :func:`kaldi_fbank`: a batched re-implementation of
  ``torchaudio.compliance.kaldi.fbank(wave, htk_compat=True, use_energy=False, window_type="hanning",
  num_mel_bins=128, dither=0.0, frame_shift=10)`` (``snip_edges=True``), written from the Kaldi algorithm.
- :func:`num_kaldi_frames`: number of frames Kaldi produces for a given number of samples.
- :class:`AudioMosaicFeatureExtractor`: the ``transformers`` feature extractor (pad/crop + AST normalisation).
- :data:`FEATURE_EXTRACTOR_PRESETS`: per-task ``max_length`` / ``mean`` / ``std`` (AudioSet, ESC-50, Speech Commands).
- :func:`normalize_log_mel` / :func:`normalized_padding_value`: the normalisation ``(x - mean) / (2 * std)`` and the
  value padded frames take after it; the contrastive view generator of the package imports them from here.
- :func:`resample_audio` and :func:`to_float32_mono`: the project's one resampler and one "any audio -> float32
  mono" conversion (kept here so that this file stays self-contained; the rest of the project imports them).
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
from fractions import Fraction
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import get_worker_info
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import PaddingStrategy, TensorType, logging

logger = logging.get_logger(__name__)

__all__ = [
    "AudioMosaicFeatureExtractor",
    "FEATURE_EXTRACTOR_PRESETS",
    "kaldi_fbank",
    "kaldi_mel_banks",
    "normalize_log_mel",
    "normalized_padding_value",
    "num_kaldi_frames",
]

# float32 machine epsilon; Kaldi / torchaudio floor the mel energies with it before the log.
_FLOAT32_EPS = 1.1920928955078125e-07

_WINDOW_TYPES = ("hanning", "hamming", "povey", "rectangular", "blackman")

#: Per-task settings of the original AudioMosaic recipes (``target_length`` in frames and the AST-style
#: normalisation statistics). Padded cells end up at ``(0 - mean) / (2 * std)`` after normalisation.
FEATURE_EXTRACTOR_PRESETS: dict[str, dict[str, Any]] = {
    "audioset": dict(max_length=1024, mean=-4.2677393, std=4.5689974),
    "esc50": dict(max_length=512, mean=-6.6268077, std=5.358466),
    "speechcommands": dict(max_length=128, mean=-6.845978, std=5.5654526),
}


# ---------------------------------------------------------------------------------------------------------------------
# Kaldi filter banks
# ---------------------------------------------------------------------------------------------------------------------


def _frame_geometry(sample_frequency: float, frame_length: float, frame_shift: float, round_to_power_of_two: bool):
    """Returns ``(window_size, window_shift, padded_window_size)`` in samples (Kaldi conventions)."""
    window_size = int(sample_frequency * frame_length * 0.001)
    window_shift = int(sample_frequency * frame_shift * 0.001)
    if window_size < 2 or window_shift < 1:
        raise ValueError(
            f"frame_length={frame_length} ms / frame_shift={frame_shift} ms at {sample_frequency} Hz give a window of "
            f"{window_size} samples and a shift of {window_shift} samples; need at least 2 and 1."
        )
    padded = 1 << (window_size - 1).bit_length() if round_to_power_of_two else window_size
    return window_size, window_shift, padded


def num_kaldi_frames(num_samples: int | np.ndarray | torch.Tensor, window_size: int = 400, window_shift: int = 160):
    """Number of frames Kaldi computes with ``snip_edges=True``: ``1 + (num_samples - window_size) // window_shift``.

    Args:
        num_samples (`int`, `np.ndarray` or `torch.Tensor`): Number(s) of samples.
        window_size (`int`, *optional*, defaults to 400): Frame length in samples (25 ms at 16 kHz).
        window_shift (`int`, *optional*, defaults to 160): Hop in samples (10 ms at 16 kHz).

    Returns:
        The frame count(s), same type as `num_samples`; 0 for inputs shorter than one window.
    """
    if isinstance(num_samples, torch.Tensor):
        n = num_samples.to(torch.long)
        return torch.where(n >= window_size, 1 + torch.div(n - window_size, window_shift, rounding_mode="floor"), 0)
    if isinstance(num_samples, np.ndarray):
        n = num_samples.astype(np.int64)
        return np.where(n >= window_size, 1 + (n - window_size) // window_shift, 0)
    n = int(num_samples)
    return 1 + (n - window_size) // window_shift if n >= window_size else 0


def _mel_scale(freq: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(freq, dtype=np.float64) / 700.0)


def kaldi_mel_banks(
    num_mel_bins: int = 128,
    padded_window_size: int = 512,
    sample_frequency: float = 16000.0,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
) -> np.ndarray:
    """Kaldi's triangular mel filter bank (triangles in mel space, ``mel(f) = 1127 ln(1 + f / 700)``).

    Args:
        num_mel_bins (`int`): Number of triangular filters.
        padded_window_size (`int`): FFT size; the bank covers its ``padded_window_size // 2`` lowest bins
            (bin ``k`` at ``k * sample_frequency / padded_window_size`` Hz). The Nyquist bin is not included (Kaldi
            gives it weight 0).
        sample_frequency (`float`): Sampling rate in Hz.
        low_freq (`float`): Lower edge of the first filter in Hz.
        high_freq (`float`): Upper edge of the last filter in Hz; values ``<= 0`` are offsets from the Nyquist
            frequency (Kaldi convention, ``0`` means Nyquist).

    Returns:
        `np.ndarray` of shape ``(num_mel_bins, padded_window_size // 2)`` in float64.
    """
    if num_mel_bins < 1:
        raise ValueError(f"num_mel_bins must be >= 1, got {num_mel_bins}.")
    nyquist = 0.5 * sample_frequency
    if high_freq <= 0.0:
        high_freq = high_freq + nyquist
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ValueError(
            f"Invalid mel range low_freq={low_freq}, high_freq={high_freq} for a Nyquist frequency of {nyquist} Hz."
        )
    num_fft_bins = padded_window_size // 2
    fft_bin_width = sample_frequency / padded_window_size
    mel_low = float(_mel_scale(low_freq))
    mel_high = float(_mel_scale(high_freq))
    mel_delta = (mel_high - mel_low) / (num_mel_bins + 1)

    index = np.arange(num_mel_bins, dtype=np.float64)[:, None]
    left = mel_low + index * mel_delta
    center = mel_low + (index + 1.0) * mel_delta
    right = mel_low + (index + 2.0) * mel_delta
    mel = _mel_scale(fft_bin_width * np.arange(num_fft_bins, dtype=np.float64))[None, :]
    up_slope = (mel - left) / (center - left)
    down_slope = (right - mel) / (right - center)
    return np.maximum(0.0, np.minimum(up_slope, down_slope))


def _window_function(window_type: str, window_size: int) -> np.ndarray:
    n = np.arange(window_size, dtype=np.float64)
    a = 2.0 * math.pi / (window_size - 1)
    if window_type == "hanning":
        return 0.5 - 0.5 * np.cos(a * n)
    if window_type == "hamming":
        return 0.54 - 0.46 * np.cos(a * n)
    if window_type == "povey":
        return (0.5 - 0.5 * np.cos(a * n)) ** 0.85
    if window_type == "rectangular":
        return np.ones(window_size, dtype=np.float64)
    if window_type == "blackman":
        return 0.42 - 0.5 * np.cos(a * n) + 0.08 * np.cos(2.0 * a * n)
    raise ValueError(f"Unknown window_type {window_type!r}; expected one of {_WINDOW_TYPES}.")


# The mel bank is very sparse (each FFT bin feeds at most two triangles), so it is applied as a few dense products on
# contiguous bands: filters are split into this many groups, each multiplying only the FFT bins it covers. With 128
# bins this needs ~8x fewer multiply-adds than one dense (514 x 128) product.
_MEL_GROUPS = 8


def empty_batch_float32(shape: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """An uninitialised float32 tensor of `shape` on `device`. On the CPU inside a DataLoader worker it is made in
    shared memory, as torch's `default_collate` makes its batches: a batch then reaches the training process without
    the copy torch makes of a private tensor as it sends it (a 512-clip batch of host views is 512 MiB; of the device
    path's waveforms 320 MiB)."""
    shape = tuple(int(size) for size in shape)
    numel = math.prod(shape)
    if torch.device(device).type != "cpu" or numel == 0 or get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float32, device=device)
    storage = torch.UntypedStorage._new_shared(numel * 4)  # what default_collate does in a worker
    return torch.empty(0, dtype=torch.float32).set_(storage, 0, shape)


def _no_autocast(device: torch.device):
    """Autocast off on `device` (the features are float32 in a mixed-precision step); nothing to switch off on a
    device type without autocast (e.g. ``meta``, whose shape-only tensors check that no device value is read on the
    host)."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


@functools.lru_cache(maxsize=64)
def _cached_constants(
    window_type: str,
    window_size: int,
    padded_window_size: int,
    num_mel_bins: int,
    sample_frequency: float,
    low_freq: float,
    high_freq: float,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, tuple[tuple[int, int, int, int, torch.Tensor | None], ...]]:
    """Window ``(window_size,)`` and the banded mel matrix, cached per parameters, device and dtype.

    The mel matrix is returned as groups ``(j0, j1, r0, r1, weights)``: output bins ``j0:j1`` equal
    ``power_parts[:, r0:r1] @ weights`` where ``power_parts`` is ``square(view_as_real(rfft(frame)))`` flattened to
    ``2 * (padded // 2 + 1)`` interleaved (re^2, im^2) columns, so the product also sums ``re^2 + im^2``. ``weights``
    is ``None`` for a group whose filters are all zero. The Nyquist bin has weight 0, as in Kaldi. The returned
    tensors are shared between calls and must not be modified in place.
    """
    window = torch.as_tensor(_window_function(window_type, window_size), dtype=dtype, device=device)
    banks = kaldi_mel_banks(num_mel_bins, padded_window_size, sample_frequency, low_freq, high_freq)
    rows = np.repeat(banks.T, 2, axis=0)  # (2 * (padded // 2), num_mel_bins): rows 2k, 2k + 1 are FFT bin k
    group_size = -(-num_mel_bins // _MEL_GROUPS)
    groups = []
    for j0 in range(0, num_mel_bins, group_size):
        j1 = min(j0 + group_size, num_mel_bins)
        used = np.nonzero(rows[:, j0:j1].any(axis=1))[0]
        if used.size == 0:
            groups.append((j0, j1, 0, 0, None))
            continue
        r0, r1 = int(used[0]), int(used[-1]) + 1
        weights = torch.as_tensor(np.ascontiguousarray(rows[r0:r1, j0:j1]), dtype=dtype, device=device)
        groups.append((j0, j1, r0, r1, weights))
    return window, tuple(groups)


def _frame_sums(x: torch.Tensor, num_frames: int, window_size: int, window_shift: int) -> torch.Tensor:
    """Sum of the samples of every frame, ``(B, F)`` in float64, from one pass over ``x``.

    Frames start every ``window_shift`` samples and span ``window_size`` samples, so they are unions of blocks of
    ``g = gcd(window_size, window_shift)`` samples (80 for 400/160): sum the blocks once (strided view, no copy),
    then add ``window_size / g`` consecutive block sums per frame in float64.
    """
    block = math.gcd(window_size, window_shift)
    num_blocks = ((num_frames - 1) * window_shift + window_size) // block
    blocks = x[:, : num_blocks * block].unfold(-1, block, block).sum(dim=-1).to(torch.float64)
    return blocks.unfold(-1, window_size // block, window_shift // block).sum(dim=-1)


def _plan_chunks(num_frames: Sequence[int], chunk_frames: int) -> list[list[tuple[int, int, int]]]:
    """Groups ``(clip, first_frame, end_frame)`` segments into chunks of about ``chunk_frames`` frames.

    Consecutive clips share a chunk while they fit; a clip longer than ``chunk_frames`` is split into frame ranges.
    """
    chunks: list[list[tuple[int, int, int]]] = []
    current: list[tuple[int, int, int]] = []
    filled = 0
    for clip, n in enumerate(num_frames):
        start = 0
        while start < n:
            take = min(n - start, chunk_frames - filled)
            current.append((clip, start, start + take))
            filled += take
            start += take
            if filled == chunk_frames:
                chunks.append(current)
                current, filled = [], 0
    if current:
        chunks.append(current)
    return chunks


def _fbank_into(
    waves: Sequence[torch.Tensor],
    num_frames: Sequence[int],
    out: torch.Tensor,
    *,
    window_size: int,
    window_shift: int,
    padded_window_size: int,
    window: torch.Tensor,
    mel_groups: tuple[tuple[int, int, int, int, torch.Tensor | None], ...],
    num_mel_bins: int,
    preemphasis_coefficient: float,
    remove_dc_offset: bool,
    chunk_frames: int,
    shift: float | None = None,
    scale: float | None = None,
) -> None:
    """Writes the log-mel energies of the first ``num_frames[i]`` frames of ``waves[i]`` into
    ``out[i, :num_frames[i]]``.

    ``waves`` are 1-D tensors (same dtype/device as ``out``, each at least ``window_size + (num_frames[i] - 1) *
    window_shift`` samples long; they are only read). ``out`` is a contiguous ``(B, T, num_mel_bins)`` tensor; frames
    beyond ``num_frames[i]`` are left untouched. If ``shift`` / ``scale`` are given, ``(log_mel - shift) / scale`` is
    written instead of the log-mel energies.

    Per frame (samples ``s``, mean ``m``) the windowed signal is ``w * preemph(s - m)``. Pre-emphasis is linear and
    maps the constant ``m`` to ``(1 - coeff) * m`` at every index (including index 0, where ``x[0] -= coeff * x[0]``),
    so ``preemph(s - m) = preemph(s) - (1 - coeff) * m``: each frame is read once, straight from the waveform, and
    the means come from :func:`_frame_sums`. Frames are processed in chunks of about ``chunk_frames`` frames so that
    the working buffers stay in the CPU cache; clips are never copied into a padded batch.
    """
    dtype, device = out.dtype, out.device
    coeff = preemphasis_coefficient
    num_bins = num_mel_bins
    total_frames = out.shape[1]
    chunks = _plan_chunks(num_frames, chunk_frames)
    if not chunks:
        return
    capacity = max(sum(f1 - f0 for _, f0, f1 in chunk) for chunk in chunks)
    buffer = torch.zeros(capacity, padded_window_size, dtype=dtype, device=device)  # zero tail is never written
    means_buffer = torch.empty(capacity, 1, dtype=dtype, device=device) if remove_dc_offset else None
    scratch = torch.empty(capacity, num_bins, dtype=dtype, device=device)
    out_rows = out.view(-1, num_bins)

    frames_of: dict[int, torch.Tensor] = {}
    means_of: dict[int, torch.Tensor] = {}
    for chunk in chunks:
        size = sum(f1 - f0 for _, f0, f1 in chunk)
        body = buffer[:size, :window_size]
        offset = 0
        for clip, f0, f1 in chunk:
            if clip not in frames_of:
                frames_of.clear()
                means_of.clear()
                wave = waves[clip]
                frames_of[clip] = wave.unfold(0, window_size, window_shift)  # (F, size) strided view
                if remove_dc_offset:
                    sums = _frame_sums(wave[None], num_frames[clip], window_size, window_shift)[0]
                    means_of[clip] = (sums * ((1.0 - coeff) / window_size)).to(dtype)
            frames = frames_of[clip][f0:f1]
            rows = slice(offset, offset + f1 - f0)
            if coeff != 0.0:
                torch.sub(frames[:, 1:], frames[:, :-1], alpha=coeff, out=body[rows, 1:])
                torch.mul(frames[:, 0], 1.0 - coeff, out=body[rows, 0])
            else:
                body[rows].copy_(frames)
            if remove_dc_offset:
                means_buffer[rows, 0] = means_of[clip][f0:f1]
            offset += f1 - f0
        if remove_dc_offset:
            body.sub_(means_buffer[:size])
        body.mul_(window)
        spectrum = torch.fft.rfft(buffer[:size], dim=-1)
        # (re^2, im^2) interleaved; the mel rows are duplicated accordingly, so the products give sum(M * |X|^2).
        power_parts = torch.view_as_real(spectrum).view(size, -1).square_()

        # Write straight into ``out`` when the chunk's rows are adjacent there (full rows of consecutive clips).
        first_clip, first_f0, _ = chunk[0]
        adjacent = all(
            f1 == total_frames and nxt[0] == clip + 1 and nxt[1] == 0
            for (clip, _, f1), nxt in zip(chunk[:-1], chunk[1:])
        )
        if adjacent:
            start = first_clip * total_frames + first_f0
            target = out_rows[start : start + size]
        else:
            target = scratch[:size]
        for j0, j1, r0, r1, weights in mel_groups:
            if weights is None:
                target[:, j0:j1] = 0.0
            else:
                torch.mm(power_parts[:, r0:r1], weights, out=target[:, j0:j1])
        target.clamp_min_(_FLOAT32_EPS).log_()
        if shift is not None:
            target.sub_(shift).div_(scale)
        if not adjacent:
            offset = 0
            for clip, f0, f1 in chunk:
                out[clip, f0:f1].copy_(target[offset : offset + f1 - f0])
                offset += f1 - f0


def _fbank_rows(
    x: torch.Tensor,
    out: torch.Tensor,
    *,
    window_size: int,
    window_shift: int,
    padded_window_size: int,
    window: torch.Tensor,
    mel_groups: tuple[tuple[int, int, int, int, torch.Tensor | None], ...],
    num_mel_bins: int,
    preemphasis_coefficient: float,
    remove_dc_offset: bool,
    chunk_frames: int,
    shift: float | None = None,
    scale: float | None = None,
) -> None:
    """Writes the log-mel energies of all ``out.shape[1]`` frames of every row of ``x`` (B, N) into ``out``.

    The same arithmetic as :func:`_fbank_into`, vectorised over groups of whole rows instead of looping over clips:
    a few large kernels per group, which is what an accelerator wants (:func:`_fbank_into` keeps CPU caches warm
    instead). ``x`` must hold at least ``window_size + (out.shape[1] - 1) * window_shift`` samples per row; frames
    past a clip's valid samples are computed from whatever the row holds there (the caller overwrites them).
    """
    coeff = preemphasis_coefficient
    batch, total_frames = out.shape[0], out.shape[1]
    rows_per_group = max(1, chunk_frames // max(total_frames, 1))
    for r0 in range(0, batch, rows_per_group):
        r1 = min(r0 + rows_per_group, batch)
        group = x[r0:r1]
        frames = group.unfold(-1, window_size, window_shift)[:, :total_frames]  # (g, T, size) strided view
        body = torch.zeros(r1 - r0, total_frames, padded_window_size, dtype=out.dtype, device=out.device)
        head = body[..., :window_size]
        if coeff != 0.0:
            torch.sub(frames[..., 1:], frames[..., :-1], alpha=coeff, out=head[..., 1:])
            torch.mul(frames[..., 0], 1.0 - coeff, out=head[..., 0])
        else:
            head.copy_(frames)
        if remove_dc_offset:
            sums = _frame_sums(group, total_frames, window_size, window_shift)
            head.sub_((sums * ((1.0 - coeff) / window_size)).to(out.dtype).unsqueeze(-1))
        head.mul_(window)
        spectrum = torch.fft.rfft(body.view(-1, padded_window_size), dim=-1)
        power_parts = torch.view_as_real(spectrum).reshape(spectrum.shape[0], -1).square_()
        target = out[r0:r1].view(-1, num_mel_bins)
        for j0, j1, p0, p1, weights in mel_groups:
            if weights is None:
                target[:, j0:j1] = 0.0
            else:
                target[:, j0:j1] = power_parts[:, p0:p1] @ weights
        target.clamp_min_(_FLOAT32_EPS).log_()
        if shift is not None:
            target.sub_(shift).div_(scale)


def _setup(
    waveforms: torch.Tensor | np.ndarray,
    *,
    sample_frequency: float,
    num_mel_bins: int,
    frame_length: float,
    frame_shift: float,
    low_freq: float,
    high_freq: float,
    window_type: str,
    round_to_power_of_two: bool,
    dtype: torch.dtype,
):
    """Validates the inputs of :func:`kaldi_fbank`; returns ``(x (B, N), squeeze, geometry, window, mel_groups)``."""
    x = waveforms if isinstance(waveforms, torch.Tensor) else torch.as_tensor(waveforms)
    if not x.is_floating_point():
        raise TypeError(
            f"kaldi_fbank expects floating-point waveforms, got dtype {x.dtype}; convert integer PCM to float first."
        )
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}.")
    squeeze = x.dim() == 1
    if squeeze:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise ValueError(f"kaldi_fbank expects waveforms of shape (N,) or (B, N), got shape {tuple(x.shape)}.")
    if window_type not in _WINDOW_TYPES:
        raise ValueError(f"Unknown window_type {window_type!r}; expected one of {_WINDOW_TYPES}.")
    geometry = _frame_geometry(sample_frequency, frame_length, frame_shift, round_to_power_of_two)
    window_size = geometry[0]
    if x.shape[0] == 0:
        raise ValueError("kaldi_fbank got an empty batch (B == 0).")
    if x.shape[1] < window_size:
        raise ValueError(
            f"kaldi_fbank needs at least {window_size} samples ({frame_length} ms at {sample_frequency} Hz) for one "
            f"frame, got {x.shape[1]}."
        )
    x = x.to(dtype)
    window, mel_groups = _cached_constants(
        window_type,
        window_size,
        geometry[2],
        int(num_mel_bins),
        float(sample_frequency),
        float(low_freq),
        float(high_freq),
        x.device,
        dtype,
    )
    return x, squeeze, geometry, window, mel_groups


def kaldi_fbank(
    waveforms: torch.Tensor | np.ndarray,
    lengths: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    *,
    sample_frequency: float = 16000.0,
    num_mel_bins: int = 128,
    frame_length: float = 25.0,
    frame_shift: float = 10.0,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    preemphasis_coefficient: float = 0.97,
    remove_dc_offset: bool = True,
    window_type: str = "hanning",
    round_to_power_of_two: bool = True,
    dtype: torch.dtype = torch.float32,
    chunk_frames: int = 4096,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Batched Kaldi log-mel filter banks, equal to ``torchaudio.compliance.kaldi.fbank``.

    With the default arguments this computes, for every clip of the batch, what
    ``torchaudio.compliance.kaldi.fbank(wave, htk_compat=True, sample_frequency=16000, use_energy=False,
    window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)`` computes (the AudioMosaic / AST input):

    1. frames of 25 ms (400 samples) every 10 ms (160 samples), ``snip_edges=True``, i.e.
       ``1 + (N - 400) // 160`` frames;
    2. per-frame DC removal (subtract the frame mean);
    3. pre-emphasis inside the frame: ``x[i] -= 0.97 * x[i - 1]`` for ``i > 0`` and ``x[0] -= 0.97 * x[0]``;
    4. symmetric window (Kaldi ``"hanning"``: ``0.5 - 0.5 cos(2 pi n / (N - 1))``);
    5. zero-padding to 512 samples, real FFT, power spectrum;
    6. Kaldi mel filter bank (see :func:`kaldi_mel_banks`: 20 Hz to Nyquist, triangles in mel space, Nyquist bin
       weight 0), applied as a banded matrix product (a few dense products over the FFT bins each group of filters
       covers, which skips the ~90% zero weights);
    7. ``log(max(energy, float32_eps))``.

    Dithering is not implemented (AudioMosaic uses ``dither=0``), energy is not appended (``use_energy=False``) and
    only ``snip_edges=True`` is supported. Everything is vectorised over chunks of frames from the whole batch
    (strided ``unfold`` views, ``torch.fft.rfft``, matrix products); the window and mel matrix are cached per
    device, dtype and parameters. Computation happens on the device of `waveforms`; the input is never modified.

    Args:
        waveforms (`torch.Tensor` or `np.ndarray`):
            Floating-point waveform(s) of shape ``(N,)`` or ``(B, N)``, in the scale torchaudio uses (``[-1, 1]``
            for normalised audio). Clips of different lengths can be right-padded into one tensor and described with
            `lengths`.
        lengths (sequence of `int`, `np.ndarray` or `torch.Tensor`, *optional*):
            Number of valid samples of each clip, shape ``(B,)``. When given, frames that are not entirely inside a
            clip's valid samples are not computed but set to 0, and the per-clip frame counts are returned as well.
            Kaldi frames never look beyond their own 400 samples, so the valid frames equal those of each clip
            processed alone.
        sample_frequency (`float`, *optional*, defaults to 16000): Sampling rate in Hz.
        num_mel_bins (`int`, *optional*, defaults to 128): Number of mel bins.
        frame_length (`float`, *optional*, defaults to 25.0): Frame length in milliseconds.
        frame_shift (`float`, *optional*, defaults to 10.0): Frame shift in milliseconds.
        low_freq (`float`, *optional*, defaults to 20.0): Low cut-off of the mel bank in Hz.
        high_freq (`float`, *optional*, defaults to 0.0): High cut-off in Hz (``<= 0``: offset from Nyquist).
        preemphasis_coefficient (`float`, *optional*, defaults to 0.97): Pre-emphasis coefficient.
        remove_dc_offset (`bool`, *optional*, defaults to `True`): Subtract each frame's mean.
        window_type (`str`, *optional*, defaults to `"hanning"`):
            One of ``"hanning"``, ``"hamming"``, ``"povey"``, ``"rectangular"``, ``"blackman"`` (Kaldi definitions).
        round_to_power_of_two (`bool`, *optional*, defaults to `True`): Zero-pad frames to the next power of two.
        dtype (`torch.dtype`, *optional*, defaults to `torch.float32`):
            Computation and output dtype (``torch.float32`` or ``torch.float64``).
        chunk_frames (`int`, *optional*, defaults to 4096):
            Frames processed per step (whole clips are grouped, long clips are split). Small working buffers stay in
            the CPU cache, which is about twice as fast as one whole-batch pass; the result does not depend on it.

    Returns:
        `torch.Tensor` of shape ``(B, frames, num_mel_bins)`` (``(frames, num_mel_bins)`` for a 1-D input) with
        ``frames = 1 + (N - window_size) // window_shift``. If `lengths` is given, a tuple
        ``(features, num_frames)`` where ``num_frames`` is a ``(B,)`` `torch.long` tensor (0-d for a 1-D input) with
        the number of valid frames of each clip.

    Raises:
        TypeError: if `waveforms` is not floating point or `dtype` is not float32/float64.
        ValueError: if `waveforms` is not 1-D/2-D, is shorter than one frame, or `lengths` has the wrong size.

    Example:

    ```python
    >>> wave = torch.randn(2, 16000) * 0.1  # two 1 s clips at 16 kHz
    >>> kaldi_fbank(wave).shape
    torch.Size([2, 98, 128])
    >>> feats, num_frames = kaldi_fbank(wave, lengths=[16000, 8000])
    >>> num_frames.tolist()
    [98, 48]
    ```
    """
    x, squeeze, (window_size, window_shift, padded), window, mel_groups = _setup(
        waveforms,
        sample_frequency=sample_frequency,
        num_mel_bins=num_mel_bins,
        frame_length=frame_length,
        frame_shift=frame_shift,
        low_freq=low_freq,
        high_freq=high_freq,
        window_type=window_type,
        round_to_power_of_two=round_to_power_of_two,
        dtype=dtype,
    )
    batch_size, num_samples = x.shape
    num_frames = num_kaldi_frames(num_samples, window_size, window_shift)
    if lengths is None:
        valid_frames = None
        frame_counts = [num_frames] * batch_size
    else:
        lengths_t = torch.as_tensor(lengths).reshape(-1)
        if lengths_t.numel() != batch_size:
            raise ValueError(f"lengths has {lengths_t.numel()} entries for a batch of {batch_size} waveforms.")
        lengths_t = lengths_t.to(torch.long).clamp(min=0, max=num_samples)
        valid_frames = num_kaldi_frames(lengths_t, window_size, window_shift)
        frame_counts = valid_frames.tolist()

    features = torch.empty(batch_size, num_frames, int(num_mel_bins), dtype=dtype, device=x.device)
    _fbank_into(
        x.unbind(0),
        frame_counts,
        features,
        window_size=window_size,
        window_shift=window_shift,
        padded_window_size=padded,
        window=window,
        mel_groups=mel_groups,
        num_mel_bins=int(num_mel_bins),
        preemphasis_coefficient=float(preemphasis_coefficient),
        remove_dc_offset=remove_dc_offset,
        chunk_frames=max(1, int(chunk_frames)),
    )
    if valid_frames is None:
        return features[0] if squeeze else features

    for i, n in enumerate(frame_counts):
        if n < num_frames:
            features[i, n:] = 0.0  # frames reaching into the padding are not computed
    valid_frames = valid_frames.to(x.device)
    if squeeze:
        return features[0], valid_frames[0]
    return features, valid_frames


# ---------------------------------------------------------------------------------------------------------------------
# Input conversion helpers
# ---------------------------------------------------------------------------------------------------------------------

_INT_PCM_SCALES = {
    np.dtype(np.int8): (0.0, 128.0),
    np.dtype(np.uint8): (128.0, 128.0),
    np.dtype(np.int16): (0.0, 32768.0),
    np.dtype(np.int32): (0.0, 2.0**31),
}

_MAX_CHANNELS = 8
_MAX_FLOAT_PEAK = 2.0  # float clips louder than this trigger a (one-time) 'unscaled PCM?' warning


def _is_scalar(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return True
    if isinstance(value, numbers.Number):
        return True
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return True
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        return True
    return False


def _to_numpy(clip: Any, where: str) -> np.ndarray:
    """Converts one array-like to a numpy array without changing its dtype (except torch half types)."""
    if isinstance(clip, np.ndarray):
        return clip
    if isinstance(clip, torch.Tensor):
        tensor = clip.detach()
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.to(torch.float32)
        if tensor.dtype == torch.bool or tensor.is_complex():
            raise TypeError(f"{where} has dtype {tensor.dtype}; audio must be real-valued float or integer PCM.")
        return tensor.cpu().numpy()
    if isinstance(clip, (str, bytes)):
        raise TypeError(
            f"{where} is a {type(clip).__name__}; expected an audio array (load audio files before calling the "
            "feature extractor)."
        )
    if isinstance(clip, (list, tuple)):
        try:
            array = np.asarray(clip)
        except (ValueError, TypeError) as err:
            raise TypeError(f"{where} could not be converted to a numeric array ({err}).") from err
        if array.dtype.kind in "iu":
            # Python numbers carry no PCM type: integers in a list are taken as sample values, like floats.
            array = array.astype(np.float64)
        return array
    raise TypeError(
        f"{where} has unsupported type {type(clip).__name__}; expected a numpy array, torch tensor or list of numbers."
    )


def _to_float32(array: np.ndarray, where: str) -> np.ndarray:
    """Validates the dtype and converts to float32, scaling integer PCM to [-1, 1)."""
    dtype = array.dtype
    if dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    if dtype in _INT_PCM_SCALES:
        offset, scale = _INT_PCM_SCALES[dtype]
        out = array.astype(np.float32)
        if offset:
            out -= offset
        out /= scale
        return out
    if dtype.kind in "iu":
        raise TypeError(
            f"{where} has integer dtype {dtype}; only int8, uint8, int16 and int32 PCM are understood (scaled by "
            "1/128, (x-128)/128, 1/32768 and 1/2**31). Convert other integer types to float in [-1, 1] first."
        )
    kind_names = {"b": "boolean", "c": "complex", "O": "object", "U": "string", "S": "bytes", "V": "void"}
    raise TypeError(
        f"{where} has non-numeric dtype {dtype} ({kind_names.get(dtype.kind, dtype.kind)}); audio must be real-valued "
        "float or integer PCM."
    )


def _mix_down(array: np.ndarray, where: str) -> np.ndarray:
    """Averages a ``(C, N)`` or ``(N, C)`` clip over its (shorter) channel axis."""
    channel_axis = 0 if array.shape[0] <= array.shape[1] else 1
    num_channels = array.shape[channel_axis]
    if num_channels > _MAX_CHANNELS:
        raise ValueError(
            f"{where} has shape {tuple(array.shape)}, which does not look like multi-channel audio (the shorter axis "
            f"has {num_channels} > {_MAX_CHANNELS} entries). A clip inside a list must be 1-D (mono) or 2-D with a "
            "channel axis; to pass a batch, use a list of 1-D clips or give the 2-D (batch, samples) array directly."
        )
    return array.mean(axis=channel_axis, dtype=np.float32)


def to_float32_array(clip: Any, where: str = "audio") -> np.ndarray:
    """Converts one array-like (numpy array, torch tensor, list of numbers) to float32 by this module's dtype rules:
    floats are cast, int8 / uint8 / int16 / int32 PCM is scaled to [-1, 1), anything else raises `TypeError`. The shape
    is kept. ``where`` names the input in error messages."""
    return _to_float32(_to_numpy(clip, where), where)


def to_float32_mono(clip: Any, where: str = "audio") -> np.ndarray:
    """Converts one clip of any accepted form to a 1-D float32 mono waveform: [`to_float32_array`], then a 2-D clip,
    `(channels, samples)` or `(samples, channels)`, is averaged over its shorter axis (at most 8 channels).

    This is the one "any audio -> float32 mono" conversion of the project: the data loader and the embedder use it, and
    the feature extractor applies the same helpers clip by clip.

    Raises:
        TypeError: an unsupported dtype or type.
        ValueError: more than 8 channels, or neither 1-D nor 2-D.
    """
    array = to_float32_array(clip, where)
    if array.ndim == 2 and array.size:
        array = _mix_down(array, where)
    if array.ndim != 1:
        raise ValueError(
            f"{where} has shape {tuple(array.shape)}; expected a 1-D mono clip or a 2-D (channels, samples) / "
            "(samples, channels) clip."
        )
    return array


def resample_audio(wave: Any, orig_sr: float, target_sr: float) -> np.ndarray:
    """Resamples a float waveform, 1-D or `(samples, channels)`, from `orig_sr` to `target_sr` Hz.

    Uses soxr (`quality="HQ"`) when installed, else `scipy.signal.resample_poly` with the exact rational ratio of the
    two rates. The output has `round(len * target_sr / orig_sr)` samples (+- 1) and is C-contiguous float32; equal
    rates or an empty input return the input as float32. This is the one resampler of the project: the feature
    extractor, the data loader, the embedder and the collators all call it.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"Sampling rates must be positive, got {orig_sr} -> {target_sr}.")
    if orig_sr == target_sr or wave.shape[0] == 0:
        return np.ascontiguousarray(wave)
    try:
        import soxr  # noqa: PLC0415  (optional dependency, imported lazily)
    except ImportError:
        soxr = None
    if soxr is not None:
        out = soxr.resample(np.ascontiguousarray(wave), float(orig_sr), float(target_sr), quality="HQ")
        return np.ascontiguousarray(out, dtype=np.float32)
    try:
        from scipy.signal import resample_poly  # noqa: PLC0415
    except ImportError as err:
        raise ImportError(
            "Resampling needs `soxr` (pip install soxr) or `scipy`; neither is installed. Resample the audio to "
            f"{target_sr} Hz yourself."
        ) from err
    ratio = Fraction(float(target_sr)).limit_denominator(10**6) / Fraction(float(orig_sr)).limit_denominator(10**6)
    out = resample_poly(wave, ratio.numerator, ratio.denominator, axis=0)
    return np.ascontiguousarray(out, dtype=np.float32)


def _round_up(value: int, multiple: int | None) -> int:
    if not multiple or multiple <= 1:
        return value
    return -(-value // multiple) * multiple


# ---------------------------------------------------------------------------------------------------------------------
# Normalisation and padding value
# ---------------------------------------------------------------------------------------------------------------------


def _normalization_constants(mean: float, std: float) -> tuple[float, float]:
    """``(shift, scale) = (mean, 2 * std)`` of :func:`normalize_log_mel`, as Python floats."""
    return float(mean), float(std) * 2


def normalize_log_mel(values: Any, mean: float, std: float, *, inplace: bool = False) -> Any:
    """The AST / AudioMosaic normalisation of raw log-mel values: ``(values - mean) / (2 * std)``.

    Args:
        values (`np.ndarray` or `torch.Tensor`): Raw log-mel filter-bank values.
        mean (`float`), std (`float`): Dataset statistics (see :data:`FEATURE_EXTRACTOR_PRESETS`).
        inplace (`bool`, *optional*, defaults to `False`): Normalise the tensor `values` in place and return it (two
            passes with scalar operands, in the tensor's dtype, no temporary); torch tensors only.

    Returns:
        The normalised values (a new array / tensor unless `inplace`).
    """
    if inplace:
        if not isinstance(values, torch.Tensor):
            raise TypeError(f"inplace=True needs a torch.Tensor, got {type(values).__name__}; use inplace=False.")
        shift, scale = _normalization_constants(mean, std)
        return values.sub_(shift).div_(scale)
    return (values - mean) / (std * 2)


def normalized_padding_value(padding_value: float, mean: float, std: float, do_normalize: bool = True) -> float:
    """The value padded frames hold in the features: the raw log-mel `padding_value` after normalisation.

    Padding is written in the raw log-mel domain and normalised with the rest, like the original recipe (and AST), so
    padded cells hold ``(padding_value - mean) / (2 * std)`` (about 0.467 for the AudioSet statistics and the default
    raw 0). The value is computed in float32, exactly as :func:`normalize_log_mel` computes it for float32 features;
    with ``do_normalize=False`` it is `padding_value` rounded to float32.
    """
    fill = torch.full((), float(padding_value), dtype=torch.float32)
    if do_normalize:
        normalize_log_mel(fill, mean, std, inplace=True)
    return float(fill)


# ---------------------------------------------------------------------------------------------------------------------
# Feature extractor
# ---------------------------------------------------------------------------------------------------------------------


class AudioMosaicFeatureExtractor(SequenceFeatureExtractor):
    r"""Constructs an AudioMosaic feature extractor (Kaldi log-mel filter banks, AST-style normalisation).

    It computes exactly the input of the original AudioMosaic recipes (and of transformers'
    [`ASTFeatureExtractor`] with the same `max_length` / `mean` / `std`): Kaldi fbank with 128 mel bins, 25 ms
    Hanning frames every 10 ms (see [`kaldi_fbank`]), zero-padding at the end / cropping to `max_length` frames in
    the raw log-mel domain, then normalisation `(x - mean) / (2 * std)`. Padded frames therefore take the value
    `(0 - mean) / (2 * std)` (about 0.467 for the AudioSet statistics), as in the original code. The filter banks
    of a whole batch are computed in one vectorised PyTorch call, which is much faster than the numpy path of
    `ASTFeatureExtractor`.

    Use [`~AudioMosaicFeatureExtractor.from_preset`] for the per-task settings of the paper (`"audioset"`: 1024
    frames, `"esc50"`: 512 frames, `"speechcommands"`: 128 frames, each with its own mean/std).

    Accepted audio (see `__call__`):

    - **Layouts**: a 1-D array/list/tensor is one clip; a list of clips is a batch; a 2-D numpy array or torch tensor
      is a batch of shape `(batch, samples)` (the `ASTFeatureExtractor` convention). A 2-D array *inside a list* is
      one multi-channel clip of shape `(channels, samples)` or `(samples, channels)`: it is mixed down to mono by
      averaging over the channel axis, which is taken to be the shorter axis (as the original loader averages over
      channels). If that axis has more than 8 entries an error is raised, because the clip does not look like
      multi-channel audio. So a single stereo clip must be wrapped in a list (`fe([stereo])`).
    - **Dtypes**: float16/32/64 are used as is (converted to float32; the expected scale is [-1, 1]); integer PCM is
      scaled to [-1, 1): int16 by 1/32768, int32 by 1/2**31, int8 by 1/128 and uint8 as `(x - 128) / 128` (numpy
      arrays and torch tensors of these dtypes). Other integer array types (e.g. int64), bool, complex, object and
      string data raise a `TypeError`. Plain Python lists of numbers are taken as sample values (no PCM scaling).
    - **Sampling rate**: audio must be at `sampling_rate` (16 kHz). A different `sampling_rate` argument raises a
      `ValueError` unless resampling is enabled (`resample=True` here or in `__call__`), in which case each clip is
      resampled with `soxr` (or `scipy.signal.resample_poly` if soxr is not installed). Not passing `sampling_rate`
      only logs a warning.
    - Clips must contain at least one frame (400 samples = 25 ms at 16 kHz) and only finite values.

    The original pipeline also subtracted the waveform mean before the fbank; this is omitted because Kaldi removes
    each frame's DC offset, which makes the global mean irrelevant.

    This feature extractor inherits from [`~feature_extraction_sequence_utils.SequenceFeatureExtractor`], which
    contains most of the main methods. Users should refer to this superclass for more information regarding those
    methods.

    Args:
        feature_size (`int`, *optional*, defaults to 128):
            Feature dimension of the extracted features (the number of mel bins).
        sampling_rate (`int`, *optional*, defaults to 16000):
            Sampling rate (Hz) the audio must have.
        num_mel_bins (`int`, *optional*, defaults to 128):
            Number of mel filter-bank bins.
        max_length (`int`, *optional*, defaults to 1024):
            Number of frames to pad/crop to (`padding="max_length"`) or the cap of `padding="longest"`.
        padding_value (`float`, *optional*, defaults to 0.0):
            Value written into padded frames in the raw log-mel domain, *before* normalisation (the original uses
            0.0).
        do_normalize (`bool`, *optional*, defaults to `True`):
            Whether to normalise the log-mel features as `(x - mean) / (2 * std)`.
        mean (`float`, *optional*, defaults to -4.2677393):
            Normalisation mean (AudioSet statistic by default).
        std (`float`, *optional*, defaults to 4.5689974):
            Normalisation standard deviation (AudioSet statistic by default).
        return_attention_mask (`bool`, *optional*, defaults to `False`):
            Whether `__call__` returns an `attention_mask` by default (always returned with `padding="longest"`).
        pad_to_multiple_of (`int`, *optional*, defaults to 16):
            With `padding="longest"`, the padded frame count is rounded up to a multiple of this value (the model's
            patch size).
        resample (`bool`, *optional*, defaults to `False`):
            Whether `__call__` resamples audio whose `sampling_rate` differs from `self.sampling_rate`.
    """

    model_input_names = ["input_values", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 128,
        sampling_rate: int = 16000,
        num_mel_bins: int = 128,
        max_length: int = 1024,
        padding_value: float = 0.0,
        do_normalize: bool = True,
        mean: float = -4.2677393,
        std: float = 4.5689974,
        return_attention_mask: bool = False,
        pad_to_multiple_of: int | None = 16,
        resample: bool = False,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        if std is not None and float(std) <= 0.0:
            raise ValueError(f"std must be positive, got {std}.")
        self.num_mel_bins = num_mel_bins
        self.max_length = max_length
        self.do_normalize = do_normalize
        self.mean = mean
        self.std = std
        self.pad_to_multiple_of = pad_to_multiple_of
        self.resample = resample

    # -- helpers -------------------------------------------------------------------------------------------------------

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "AudioMosaicFeatureExtractor":
        """Builds a feature extractor with the settings of one of the original tasks.

        Args:
            name (`str`): One of `FEATURE_EXTRACTOR_PRESETS` (`"audioset"`, `"esc50"`, `"speechcommands"`).
            **overrides: Any `__init__` argument, overriding the preset.

        Raises:
            ValueError: if `name` is not a known preset.
        """
        key = str(name).lower()
        if key not in FEATURE_EXTRACTOR_PRESETS:
            raise ValueError(
                f"Unknown feature extractor preset {name!r}; valid presets are: "
                f"{', '.join(sorted(FEATURE_EXTRACTOR_PRESETS))}."
            )
        kwargs = dict(FEATURE_EXTRACTOR_PRESETS[key])
        kwargs.update(overrides)
        return cls(**kwargs)

    @property
    def _frame_geometry(self) -> tuple[int, int, int]:
        return _frame_geometry(self.sampling_rate, 25.0, 10.0, True)

    def num_frames(self, num_samples: int) -> int:
        """Number of fbank frames for a clip of `num_samples` samples at `self.sampling_rate` (before padding)."""
        window_size, window_shift, _ = self._frame_geometry
        return num_kaldi_frames(int(num_samples), window_size, window_shift)

    def normalize(self, input_values: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Applies `(x - mean) / (2 * std)` (the AST / AudioMosaic convention, [`normalize_log_mel`])."""
        return normalize_log_mel(input_values, self.mean, self.std)

    def _prepare_clips(
        self, raw_speech: Any, sampling_rate: int | float | None, resample: bool
    ) -> list[np.ndarray]:
        """Turns any accepted input into a list of validated mono float32 clips at `self.sampling_rate`."""
        # -- split into clips -------------------------------------------------------------------------------------
        batch_shape = None  # shape of a bare 2-D (batch, samples) array, for the 'axes swapped?' hint
        if _is_scalar(raw_speech) and not isinstance(raw_speech, (np.ndarray, torch.Tensor)):
            raise ValueError("raw_speech is a scalar; expected a 1-D clip, a list of clips or a 2-D batch array.")
        if isinstance(raw_speech, (np.ndarray, torch.Tensor)):
            ndim = raw_speech.ndim
            if ndim == 0:
                raise ValueError("raw_speech is a scalar; expected a 1-D clip, a list of clips or a 2-D batch array.")
            if ndim > 2:
                raise ValueError(
                    f"raw_speech has {ndim} dimensions (shape {tuple(raw_speech.shape)}); expected a 1-D clip or a "
                    "2-D (batch, samples) array. Pass multi-channel clips as a list of (channels, samples) arrays."
                )
            if ndim == 2:
                batch = _to_numpy(raw_speech, "raw_speech")
                batch = _to_float32(batch, "raw_speech")
                batch_shape = tuple(batch.shape)
                clips = [(batch[i], f"clip {i}") for i in range(batch.shape[0])]
                if not clips:
                    raise ValueError("raw_speech is an empty batch (shape[0] == 0); pass at least one clip.")
                from_list = False
            else:
                clips = [(raw_speech, "clip 0")]
                from_list = False
        elif isinstance(raw_speech, (list, tuple)):
            if len(raw_speech) == 0:
                raise ValueError("raw_speech is an empty list; pass at least one clip.")
            if _is_scalar(raw_speech[0]):
                clips = [(raw_speech, "clip 0")]
                from_list = False
            else:
                clips = [(clip, f"clip {i}") for i, clip in enumerate(raw_speech)]
                from_list = True
        else:
            raise TypeError(
                f"raw_speech has unsupported type {type(raw_speech).__name__}; expected a numpy array, torch tensor, "
                "list of numbers or a list of clips."
            )

        # -- per clip: dtype, channels, emptiness, finiteness, sampling rate, length -----------------------------------
        window_size = self._frame_geometry[0]
        needs_resampling = sampling_rate is not None and sampling_rate != self.sampling_rate
        prepared = []
        for clip, where in clips:
            if from_list and _is_scalar(clip):
                raise TypeError(
                    f"{where} is a scalar ({clip!r}); a batch must contain array-like clips (a list that mixes "
                    "numbers and arrays is not valid)."
                )
            array = _to_float32(_to_numpy(clip, where), where)
            if array.size == 0:
                raise ValueError(f"{where} is empty (shape {tuple(array.shape)}).")
            if array.ndim == 2 and from_list:
                array = _mix_down(array, where)
            elif array.ndim != 1:
                raise ValueError(
                    f"{where} has shape {tuple(array.shape)}; expected a 1-D mono clip"
                    + (" or a 2-D (channels, samples) clip." if from_list else ".")
                )
            peak = float(np.abs(array).max())  # one pass: NaN / inf propagate into the peak
            if not math.isfinite(peak):
                bad = int(np.count_nonzero(~np.isfinite(array)))
                raise ValueError(f"{where} contains {bad} NaN or infinite value(s).")
            if peak > _MAX_FLOAT_PEAK:
                # not an error (loud float audio exists), but unscaled integer PCM stored as float is a common and
                # otherwise silent mistake: the features would be shifted by ~ 2 * ln(32768) = 20.8
                logger.warning_once(
                    f"A clip has peak amplitude > {_MAX_FLOAT_PEAK:g}: float audio is expected in [-1, 1]. If it is "
                    "integer PCM stored as float (e.g. int16 values), divide it by 32768 (or pass the int16 array "
                    "itself, which is scaled automatically)."
                )
            if needs_resampling:
                array = resample_audio(array, sampling_rate, self.sampling_rate)
            if array.shape[0] < window_size:
                note = f" after resampling to {self.sampling_rate} Hz" if needs_resampling else ""
                hint = ""
                if batch_shape is not None and batch_shape[0] > batch_shape[1]:
                    as_list = "`[audio]` (one multi-channel clip, mixed down to mono), " * (
                        batch_shape[1] <= _MAX_CHANNELS
                    )
                    hint = (
                        f" The 2-D array of shape {batch_shape} was read as a batch of {batch_shape[0]} clips of "
                        f"{batch_shape[1]} samples each; its axes look swapped: this looks like one clip in the "
                        f"channels-last (samples, channels) layout of soundfile.read. Pass {as_list}"
                        "`audio.mean(axis=1)` (mono), or `audio.T` if it is a batch of clips."
                    )
                raise ValueError(
                    f"{where} has {array.shape[0]} samples{note}; at least {window_size} samples (one 25 ms frame at "
                    f"{self.sampling_rate} Hz) are required.{hint}"
                )
            prepared.append(array)
        return prepared

    def _batched_features(
        self,
        clips: list[np.ndarray],
        valid_frames: np.ndarray,
        target: int,
        device: str | torch.device | None,
    ) -> torch.Tensor:
        """Fbank of all clips in one call, padded/cropped to `target` frames and normalised: `(B, target, bins)`."""
        window_size, window_shift, padded = self._frame_geometry
        compute_device = torch.device("cpu") if device is None else torch.device(device)
        waves = []
        for clip in clips:
            if not clip.flags.c_contiguous:  # e.g. negative strides, which torch.from_numpy rejects
                clip = np.ascontiguousarray(clip)
            if not clip.flags.writeable:  # torch.from_numpy warns on read-only arrays; they are never written to
                clip = clip.copy()
            waves.append(torch.from_numpy(clip).to(compute_device))
        window, mel_groups = _cached_constants(
            "hanning",
            window_size,
            padded,
            int(self.num_mel_bins),
            float(self.sampling_rate),
            20.0,
            0.0,
            compute_device,
            torch.float32,
        )
        features = torch.empty(len(clips), target, self.num_mel_bins, dtype=torch.float32, device=compute_device)
        # Normalisation is fused into the fbank loop (applied per chunk while the data is in cache). Only the first
        # `valid_frames[i]` frames are computed (cropping to `target` frames happens here).
        shift, scale = _normalization_constants(self.mean, self.std) if self.do_normalize else (None, None)
        _fbank_into(
            waves,
            valid_frames.tolist(),
            features,
            window_size=window_size,
            window_shift=window_shift,
            padded_window_size=padded,
            window=window,
            mel_groups=mel_groups,
            num_mel_bins=self.num_mel_bins,
            preemphasis_coefficient=0.97,
            remove_dc_offset=True,
            chunk_frames=4096,
            shift=shift,
            scale=scale,
        )
        # Padding is written in the raw log-mel domain and then normalised, like the original (and AST).
        fill_value = normalized_padding_value(self.padding_value, self.mean, self.std, self.do_normalize)
        for i, n in enumerate(valid_frames.tolist()):
            if n < target:
                features[i, n:] = fill_value
        return features

    def batch_features(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor | Sequence[int] | np.ndarray | None = None,
        *,
        sampling_rate: int | None = None,
        max_length: int | None = None,
        check_finite: bool = True,
        vectorized: bool | None = None,
    ) -> BatchFeature:
        """Features of a batch of waveforms held in one torch tensor, computed and returned on the tensor's device.

        The tensor counterpart of `__call__` for training loops that keep audio on an accelerator: no numpy round
        trip, no per-clip Python objects, one batched filter-bank computation, padding and normalisation on the
        device. The values equal those of `__call__(list_of_clips, padding="max_length")` for the same clips (each
        clip ``waveforms[i, :lengths[i]]``), which the tests check. Autocast is disabled inside, so the features are
        float32 even in a bf16 training step.

        Args:
            waveforms (`torch.Tensor` of shape `(batch, samples)` or `(samples,)`):
                Float waveforms at `self.sampling_rate` (any float dtype, any device), scaled to [-1, 1]; clips
                shorter than `samples` are right-padded (with anything: samples past `lengths[i]` are never read into
                a valid frame).
            lengths (`torch.Tensor` or sequence of `int` of shape `(batch,)`, *optional*):
                Valid samples per clip (default: all `samples`). Frames that reach past a clip's length get the
                padding value, exactly as `__call__` pads.
            sampling_rate (`int`, *optional*): If given, must equal `self.sampling_rate` (resample before, on the
                host, with [`resample_audio`]).
            max_length (`int`, *optional*): Frames to pad/crop to (default `self.max_length`).
            check_finite (`bool`, *optional*, defaults to `True`): Raise on NaN/inf samples (costs one device sync).
            vectorized (`bool`, *optional*): Use the row-vectorised filter banks (default: on every device but the
                CPU, where the clip-chunked loop is faster because its buffers stay in cache). Both give the same
                values.

        Returns:
            [`BatchFeature`] with `input_values` `(batch, max_length, num_mel_bins)` float32 and `attention_mask`
            `(batch, max_length)` int32 (1 for frames computed from the clip, 0 for padding), both on the device
            of `waveforms`.

        Raises:
            TypeError: not a torch tensor, or not floating point. ValueError: wrong shape, empty batch, bad
            `lengths`, a clip shorter than one frame, NaN/inf samples, wrong `sampling_rate`.
        """
        if not isinstance(waveforms, torch.Tensor):
            raise TypeError(
                f"batch_features takes a torch.Tensor of shape (batch, samples), got {type(waveforms).__name__}; "
                "use the feature extractor's __call__ for numpy arrays and lists of clips."
            )
        if not waveforms.is_floating_point():
            raise TypeError(
                f"batch_features expects floating-point waveforms in [-1, 1], got dtype {waveforms.dtype}; scale "
                "integer PCM first (int16: divide by 32768)."
            )
        if sampling_rate is not None and int(sampling_rate) != int(self.sampling_rate):
            raise ValueError(
                f"The waveforms have sampling_rate={sampling_rate} but the features are computed at "
                f"{self.sampling_rate} Hz; resample them first (e.g. with resample_audio)."
            )
        x = waveforms.unsqueeze(0) if waveforms.dim() == 1 else waveforms
        if x.dim() != 2:
            raise ValueError(f"waveforms must have shape (batch, samples) or (samples,), got {tuple(waveforms.shape)}.")
        batch, num_samples = x.shape
        if batch == 0:
            raise ValueError("waveforms is an empty batch (batch size 0).")
        window_size, window_shift, padded = self._frame_geometry
        device = x.device
        if lengths is None:
            lengths_t = torch.full((batch,), num_samples, dtype=torch.long)
        else:
            lengths_t = torch.as_tensor(lengths).reshape(-1).to("cpu", torch.long)
            if lengths_t.numel() != batch:
                raise ValueError(f"lengths has {lengths_t.numel()} entries for a batch of {batch} waveforms.")
            if bool((lengths_t > num_samples).any()):
                raise ValueError(
                    f"lengths must be <= the {num_samples} samples of the tensor, got {lengths_t.tolist()}."
                )
        short = (lengths_t < window_size).nonzero().flatten().tolist()
        if short:
            raise ValueError(
                f"clip {short[0]} has {int(lengths_t[short[0]])} samples; at least {window_size} samples (one 25 ms "
                f"frame at {self.sampling_rate} Hz) are required."
            )
        target = self.max_length if max_length is None else int(max_length)
        if target is None or target < 1:
            raise ValueError(f"max_length must be >= 1 frame, got {target!r}.")
        valid_frames = torch.clamp(num_kaldi_frames(lengths_t, window_size, window_shift), max=target)
        with _no_autocast(device):
            x = x.to(torch.float32)
            if check_finite:
                sample_index = torch.arange(num_samples, device=device)
                valid = sample_index[None, :] < lengths_t.to(device, non_blocking=True)[:, None]
                bad = (~torch.isfinite(x) & valid).any(dim=1).nonzero().flatten().tolist()
                if bad:
                    raise ValueError(f"clip {bad[0]} contains NaN or infinite value(s).")
            window, mel_groups = _cached_constants(
                "hanning", window_size, padded, int(self.num_mel_bins), float(self.sampling_rate), 20.0, 0.0,
                device, torch.float32,
            )
            shift, scale = _normalization_constants(self.mean, self.std) if self.do_normalize else (None, None)
            common = dict(
                window_size=window_size, window_shift=window_shift, padded_window_size=padded, window=window,
                mel_groups=mel_groups, num_mel_bins=int(self.num_mel_bins), preemphasis_coefficient=0.97,
                remove_dc_offset=True, shift=shift, scale=scale,
            )
            # every value is written below; in a DataLoader worker the tensor is made in shared memory
            features = empty_batch_float32((batch, target, int(self.num_mel_bins)), device)
            if vectorized is None:
                vectorized = device.type != "cpu"
            longest = int(valid_frames.max())
            if vectorized:
                # every row gets `longest` frames; rows must hold the samples those frames read (zero-extend if not)
                needed = window_size + (longest - 1) * window_shift
                rows = x if num_samples >= needed else torch.nn.functional.pad(x, (0, needed - num_samples))
                computed = features if longest == target else torch.empty_like(features[:, :longest])
                _fbank_rows(rows, computed, chunk_frames=1 << 16, **common)
                if computed is not features:
                    features[:, :longest] = computed
            else:
                _fbank_into(x.unbind(0), valid_frames.tolist(), features, chunk_frames=4096, **common)
            # a host tensor copied without blocking (a blocking copy would wait for everything queued on the device)
            mask = torch.arange(target, device=device)[None, :] < valid_frames.to(device, non_blocking=True)[:, None]
            fill = normalized_padding_value(self.padding_value, self.mean, self.std, self.do_normalize)
            features.masked_fill_(~mask[..., None], fill)
        return BatchFeature({"input_values": features, "attention_mask": mask.to(torch.int32)})

    # -- main entry point ---------------------------------------------------------------------------------------------

    def __call__(
        self,
        raw_speech: np.ndarray | torch.Tensor | list[float] | list[np.ndarray] | list[torch.Tensor] | list[list[float]],
        sampling_rate: int | None = None,
        padding: bool | str | PaddingStrategy = "max_length",
        max_length: int | None = None,
        truncation: bool = True,
        return_attention_mask: bool | None = None,
        return_tensors: str | TensorType | None = None,
        resample: bool | None = None,
        pad_to_multiple_of: int | None = None,
        device: str | torch.device | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Computes normalised Kaldi log-mel features for one clip or a batch of clips.

        Args:
            raw_speech (`np.ndarray`, `torch.Tensor`, `list[float]`, `list[np.ndarray]`, `list[torch.Tensor]`):
                One clip (1-D array/tensor or list of numbers), a list of clips, or a 2-D array/tensor of shape
                `(batch, samples)`. Clips inside a list may be 2-D multi-channel audio (`(channels, samples)` or
                `(samples, channels)`), which is averaged to mono. Integer PCM (int8/uint8/int16/int32) is scaled to
                [-1, 1); floats are expected in [-1, 1].
            sampling_rate (`int`, *optional*):
                Sampling rate of `raw_speech`. Strongly recommended; a warning is logged when it is missing (the
                audio is then assumed to be at `self.sampling_rate`).
            padding (`bool`, `str` or [`~utils.PaddingStrategy`], *optional*, defaults to `"max_length"`):
                - `"max_length"` (default, original behaviour): pad with `padding_value` at the end or crop every clip
                  to `max_length` frames.
                - `"longest"` or `True`: pad to the longest clip of the batch, rounded up to a multiple of
                  `pad_to_multiple_of` and capped at `max_length` (clips longer than `max_length` are cropped when
                  `truncation=True`). An `attention_mask` is returned unless `return_attention_mask=False`.
                - `"do_not_pad"` or `False`: no padding (cropped to `max_length` if `truncation=True`); only valid
                  when all clips have the same number of frames.
            max_length (`int`, *optional*):
                Overrides `self.max_length` (frames).
            truncation (`bool`, *optional*, defaults to `True`):
                Whether to crop clips longer than `max_length` frames. With `truncation=False` no clip is cropped:
                the batch is padded to the longest clip (at least `max_length` frames with `padding="max_length"`),
                rounded up to `pad_to_multiple_of` when it exceeds `max_length`.
            return_attention_mask (`bool`, *optional*):
                Whether to return a `(batch, frames)` int32 `attention_mask` (1 for real frames, 0 for padding).
                Defaults to `self.return_attention_mask`, and to `True` for `padding="longest"`.
            return_tensors (`str` or [`~utils.TensorType`], *optional*):
                `"pt"` for torch tensors, `"np"` for numpy arrays, `None` for lists of numpy arrays (one per clip).
            resample (`bool`, *optional*):
                Resample audio whose `sampling_rate` differs from `self.sampling_rate` (soxr, or scipy's
                `resample_poly` as a fallback). Defaults to `self.resample`.
            pad_to_multiple_of (`int`, *optional*):
                Overrides `self.pad_to_multiple_of`.
            device (`str` or `torch.device`, *optional*):
                Device on which the filter banks are computed (default CPU). With `return_tensors="pt"` the outputs
                stay on that device.

        Returns:
            [`BatchFeature`] with `input_values` of shape `(batch, frames, num_mel_bins)` (float32) and, if
            requested, `attention_mask` of shape `(batch, frames)` (int32).

        Raises:
            ValueError: wrong sampling rate (without resampling), empty input or clip, clip shorter than one frame,
                NaN/inf values, arrays with too many dimensions, clips of unequal length with `padding=False`.
            TypeError: unsupported input types or dtypes (bool, complex, object, strings, unusual integer types).
        """
        if kwargs:
            logger.warning(
                f"{self.__class__.__name__}.__call__ ignores the unsupported argument(s): {sorted(kwargs)}."
            )
        resample = self.resample if resample is None else resample
        if sampling_rate is not None:
            if sampling_rate <= 0:
                raise ValueError(f"sampling_rate must be positive, got {sampling_rate}.")
            if sampling_rate != self.sampling_rate and not resample:
                raise ValueError(
                    f"The model corresponding to this feature extractor: {self.__class__.__name__} was trained using a "
                    f"sampling rate of {self.sampling_rate} Hz, but the audio has {sampling_rate} Hz. Pass "
                    f"`resample=True` to resample it automatically, or resample it to {self.sampling_rate} Hz "
                    "beforehand."
                )
        else:
            logger.warning(
                f"It is strongly recommended to pass the `sampling_rate` argument to `{self.__class__.__name__}()`. "
                "Failing to do so can result in silent errors that might be hard to debug."
            )

        # -- padding strategy -----------------------------------------------------------------------------------------
        if padding is True:
            strategy = "longest"
        elif padding is False or padding is None:
            strategy = "do_not_pad"
        else:
            try:
                strategy = PaddingStrategy(padding).value
            except ValueError as err:
                raise ValueError(
                    f"Invalid padding {padding!r}; expected 'max_length', 'longest' (or True) or 'do_not_pad' "
                    "(or False)."
                ) from err
        max_length = self.max_length if max_length is None else max_length
        if max_length is not None:
            max_length = int(max_length)
            if max_length < 1:
                raise ValueError(f"max_length must be >= 1 frame, got {max_length}.")
        if max_length is None and (strategy == "max_length" or truncation):
            raise ValueError("max_length is None; set it (in frames) or use padding='longest' with truncation=False.")
        multiple = self.pad_to_multiple_of if pad_to_multiple_of is None else pad_to_multiple_of

        if return_tensors is not None:
            return_tensors = return_tensors.value if isinstance(return_tensors, TensorType) else str(return_tensors)
            if return_tensors not in ("pt", "np"):
                raise ValueError(f"return_tensors={return_tensors!r} is not supported; use 'pt', 'np' or None.")

        # -- waveforms → validated mono float32 clips -------------------------------------------------------------
        clips = self._prepare_clips(raw_speech, sampling_rate, resample)
        window_size, window_shift, _ = self._frame_geometry
        lengths = np.array([clip.shape[0] for clip in clips], dtype=np.int64)
        frames = num_kaldi_frames(lengths, window_size, window_shift)
        longest = int(frames.max())

        # -- target number of frames ----------------------------------------------------------------------------------
        if strategy == "max_length":
            if truncation or longest <= max_length:
                target = max_length
            else:
                target = _round_up(longest, multiple)
        elif strategy == "longest":
            target = _round_up(longest, multiple)
            if truncation:
                target = min(target, max_length)
        else:  # do_not_pad
            kept = np.minimum(frames, max_length) if truncation else frames
            if len(set(kept.tolist())) > 1:
                detail = ", ".join(f"clip {i}: {n}" for i, n in enumerate(kept.tolist()))
                raise ValueError(
                    f"padding=False / 'do_not_pad' needs clips with the same number of frames, got {detail}. Use "
                    "padding='longest' (with the returned attention_mask) or padding='max_length'."
                )
            target = int(kept[0])
        valid_frames = np.minimum(frames, target)
        if truncation and bool((frames > target).any()):
            seconds = (max(target - 1, 0) * window_shift + window_size) / self.sampling_rate
            logger.warning_once(
                f"Clips longer than {target} frames ({seconds:.2f} s) are truncated to their first {seconds:.2f} s "
                "(truncation=True). For long recordings, embed them in windows (modeling_audiomosaic."
                "AudioMosaicEmbedder) or pass truncation=False."
            )

        # -- one batched fbank call on waveforms cropped to what the target needs ----------------------------------
        features = self._batched_features(clips, valid_frames, target, device)

        # -- outputs ----------------------------------------------------------------------------------------------
        if return_attention_mask is None:
            return_attention_mask = self.return_attention_mask or strategy == "longest"
        data: dict[str, Any] = {}
        mask = None
        if return_attention_mask:
            mask = (np.arange(target)[None, :] < valid_frames[:, None]).astype(np.int32)
        if return_tensors == "pt":
            data["input_values"] = features
            if mask is not None:
                data["attention_mask"] = torch.from_numpy(mask).to(features.device)
        else:
            values = features.cpu().numpy()
            if return_tensors == "np":
                data["input_values"] = values
                if mask is not None:
                    data["attention_mask"] = mask
            else:
                data["input_values"] = list(values)
                if mask is not None:
                    data["attention_mask"] = list(mask)
        return BatchFeature(data)
