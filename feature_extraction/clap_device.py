# coding=utf-8
"""A CLAP distillation teacher's input features on the accelerator (MAM-CLAP with views on the device).

transformers' `ClapFeatureExtractor` computes its log-mel spectrogram in numpy, one frame at a time: about 35 ms of
one host thread per 10 s clip at 48 kHz, ~5x the cost of both contrastive views, and its ``input_features`` (4 x 1001
x 64 float32 with ``truncation="fusion"``) are 1 MB per clip to copy to the device. With views on the device the host
side keeps only what is cheap and random, and the spectrogram runs batched on the model's device:

* in the DataLoader worker, :meth:`ClapFeaturesOnDevice.plan` draws the extractor's random choices (the
  ``rand_trunc`` offset, the three ``fusion`` chunk offsets, the clip marked ``is_longer`` when none is) from a
  `numpy.random.RandomState`, in the extractor's own order (given the same seed, the same draws as
  `ClapFeatureExtractor` makes from numpy's global generator), and describes the extractor's padding (``repeatpad`` /
  ``repeat`` / ``pad``) and ``rand_trunc`` window of each clip at the teacher's rate;
* in the training step, :meth:`ClapFeaturesOnDevice.teacher_waveforms` resamples the student's crops, already on the
  device for the views, to the teacher's rate and lays them out as the plan says. The resampling is the project's one
  resampler (`resample_audio`, soxr): for an integer ratio (16 -> 48 kHz) it is a linear, shift-invariant filter, so
  its impulse response, measured from it once, applied as an FFT convolution gives its output (within 1e-6; checked
  when the object is made, else the workers resample and send the teacher's waveforms, 2 MB per 10 s clip);
* in the training step, :meth:`ClapFeaturesOnDevice.__call__` computes the extractor's spectrogram (centred,
  reflect-padded, periodic Hann window, power spectrum, HTK or Slaney mel filters, ``10 log10`` with a 1e-10 floor)
  in float64, rounding the STFT through complex64 as transformers' `spectrogram` stores it, and assembles the
  ``fusion`` stacks (a bilinear shrink of the whole clip + three chunks) or the single spectrograms.

On the CPU the result equals `ClapFeatureExtractor`'s for the same seed (test: ``tests/test_clap_device.py``). float64
is the extractor's own precision; GPUs with weak float64 (consumer cards) can pass ``dtype=torch.float32``, which
changes only the values near the -100 dB floor noticeably.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .audio_io import TARGET_SAMPLING_RATE, resample_audio
from .augmentation_device import HostTensors, _to_device, padded_rows
from .feature_extraction_audiomosaic import _no_autocast

__all__ = ["ClapFeaturesOnDevice", "is_clap_feature_extractor"]

#: How a clip's spectrogram becomes its ``input_features`` rows (``plan["kind"]``).
SINGLE, FUSION_COPIES, FUSION_CHUNKS = 0, 1, 2

#: Elements of the complex STFT computed at once (bounds the temporary buffers: ~512 MB of complex128).
_STFT_ELEMENTS = 1 << 25

_EXTRACTOR_FIELDS = ("mel_filters", "mel_filters_slaney", "nb_max_samples", "hop_length", "fft_window_size",
                     "truncation", "padding", "sampling_rate")


def is_clap_feature_extractor(extractor: Any) -> bool:
    """Whether `extractor` is transformers' `ClapFeatureExtractor` (or a subclass), whose features this module
    computes on the device."""
    return any(cls.__name__ == "ClapFeatureExtractor" for cls in type(extractor).__mro__) and all(
        hasattr(extractor, name) for name in _EXTRACTOR_FIELDS
    )


class ClapFeaturesOnDevice:
    """`ClapFeatureExtractor`'s ``input_features`` / ``is_longer``, planned on the host and computed on any device.

    Args:
        extractor: the teacher's `ClapFeatureExtractor` (its filters, window, lengths, truncation and padding).
        dtype: precision of the spectrogram (float64: the extractor's own).

    Picklable (the collator that holds it goes to the DataLoader workers); the device constants are built once per
    device and dtype in the process that computes.
    """

    def __init__(self, extractor: Any, dtype: torch.dtype = torch.float64) -> None:
        if not is_clap_feature_extractor(extractor):
            raise TypeError(f"ClapFeaturesOnDevice needs a ClapFeatureExtractor, got {type(extractor).__name__}.")
        self.truncation = str(extractor.truncation)
        if self.truncation not in ("fusion", "rand_trunc"):
            raise ValueError(
                f"ClapFeatureExtractor truncation={self.truncation!r}: only 'fusion' and 'rand_trunc' exist."
            )
        self.padding = extractor.padding
        self.max_samples = int(extractor.nb_max_samples)
        self.hop = int(extractor.hop_length)
        self.n_fft = int(extractor.fft_window_size)
        self.sampling_rate = int(extractor.sampling_rate)
        filters = extractor.mel_filters if self.truncation == "fusion" else extractor.mel_filters_slaney
        self.mel_filters = np.asarray(filters, dtype=np.float64)  # (frequency bins, mel)
        self.num_mel = int(self.mel_filters.shape[1])
        if self.truncation == "fusion" and self.num_mel != 64:
            # the extractor shrinks long clips to 64 columns whatever its feature_size: its stack fails otherwise
            raise ValueError(
                f"ClapFeatureExtractor truncation='fusion' works with feature_size=64 only (it shrinks long clips to "
                f"64 mel columns), this one has {self.num_mel}: use feature_size=64 or truncation='rand_trunc'."
            )
        from transformers.audio_utils import window_function  # noqa: PLC0415  (the extractor's own window)

        self.window = np.asarray(window_function(self.n_fft, "hann"), dtype=np.float64)
        self.chunk_frames = self.max_samples // self.hop + 1
        self.dtype = dtype
        self._constants: dict[tuple[str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}
        self._kernels: dict[tuple[int, str], torch.Tensor] = {}  # (factor, device) -> the resampler's filter
        self._measured: dict[int, tuple[int, np.ndarray] | None] = {}  # source rate -> `resampling_kernel`

    def resampling_kernel(self, sampling_rate: int) -> tuple[int, np.ndarray] | None:
        """``(factor, impulse response)`` of `resample_audio` from ``sampling_rate`` to the teacher's rate when the
        teacher's rate is an integer multiple of it and the resampler is that filter (checked on a random clip: its
        output within 1e-6, and ``factor`` times as long); else ``None``. Measured once per rate (the collator
        asks when it is made, the training step when it first resamples)."""
        sampling_rate = int(sampling_rate)
        if sampling_rate not in self._measured:
            self._measured[sampling_rate] = self._measure_kernel(sampling_rate)
        return self._measured[sampling_rate]

    def _measure_kernel(self, sampling_rate: int) -> tuple[int, np.ndarray] | None:
        if self.sampling_rate % int(sampling_rate):
            return None
        factor = self.sampling_rate // int(sampling_rate)
        if factor == 1:
            return 1, np.ones(1)
        probe = np.zeros(8192, dtype=np.float32)
        probe[4096] = 1.0
        response = resample_audio(probe, sampling_rate, self.sampling_rate).astype(np.float64)
        centre = factor * 4096
        if response.shape[0] != factor * probe.shape[0]:
            return None
        support = np.nonzero(np.abs(response) > 1e-12 * np.abs(response).max())[0]
        half = int(max(centre - support.min(), support.max() - centre))
        if half >= centre - factor:  # not a short filter around the impulse
            return None
        kernel = response[centre - half : centre + half + 1]
        clip = np.random.default_rng(0).standard_normal(3001).astype(np.float32) * 0.1
        expected = resample_audio(clip, sampling_rate, self.sampling_rate).astype(np.float64)
        got = _upsample(torch.from_numpy(clip)[None], factor, torch.from_numpy(kernel), torch.float64)[0].numpy()
        if expected.shape != got.shape or float(np.abs(expected - got).max()) > 1e-6:
            return None
        return factor, kernel

    def teacher_waveforms(self, waveforms: torch.Tensor, plan: Any) -> torch.Tensor:
        """The teacher's input waveforms ``(B, max(plan lengths))`` float32 on ``waveforms``' device, from the
        student's crops ``(B, W)`` (zero after each clip, e.g. the batch's ``waveforms`` for the views) and a
        :meth:`plan` made without waveforms: resampled to the teacher's rate, cut and padded as `plan` says."""
        factor = int(plan["factor"])
        device = waveforms.device
        key = (factor, str(device))
        if key not in self._kernels:
            measured = self.resampling_kernel(self.sampling_rate // factor) if factor else None
            if measured is None:
                raise ValueError(
                    f"the teacher's waveforms at {self.sampling_rate} Hz cannot be made on the device from the "
                    "student's crops (no integer ratio, or the resampler is not a fixed filter there): plan with "
                    "waveforms=True and pass its teacher_waveforms"
                )
            self._kernels[key] = _to_device(torch.from_numpy(measured[1]), device, self.dtype)
        kernel = self._kernels[key]
        lengths = plan["lengths"]
        width = int(lengths.max())
        start, period, valid = (_to_device(plan[name], device) for name in ("start", "period", "valid"))
        out = torch.empty(waveforms.shape[0], width, dtype=torch.float32, device=device)
        rows = max(1, _STFT_ELEMENTS // (factor * waveforms.shape[1] + kernel.numel()))
        positions = torch.arange(width, device=device)
        with torch.no_grad(), _no_autocast(device):
            for first in range(0, waveforms.shape[0], rows):
                part = slice(first, first + rows)
                resampled = _upsample(waveforms[part], factor, kernel, self.dtype).to(torch.float32)
                index = start[part, None] + torch.remainder(positions[None, :], period[part, None])
                index = index.clamp(max=resampled.shape[1] - 1)
                keep = positions[None, :] < valid[part, None]
                out[part] = torch.where(keep, resampled.gather(1, index), torch.zeros((), device=device))
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_constants": {}, "_kernels": {}}  # device tensors stay where they were built

    def num_frames(self, samples: int) -> int:
        """Frames of the extractor's centred spectrogram of `samples` samples."""
        return 1 + (samples + 2 * (self.n_fft // 2) - self.n_fft) // self.hop

    # ------------------------------------------------------------------------------------------------------- host
    def plan(self, waves: list[np.ndarray], rng: np.random.RandomState,
             sampling_rate: int = TARGET_SAMPLING_RATE, waveforms: bool = True) -> dict[str, Any]:
        """The host part for a batch of 1-D float32 clips at `sampling_rate`: ``{"teacher_plan": HostTensors}``, with
        the random draws of `ClapFeatureExtractor.__call__` made from `rng` in its order, and where each clip's
        waveform at the teacher's rate starts, repeats and ends (``start``, ``period``, ``valid``, ``lengths``).

        With ``waveforms`` (needed when `resampling_kernel` is ``None``) also ``"teacher_waveforms"``: ``(B, N)``
        float32, zero after each clip, resampled here; without, `teacher_waveforms` makes them on the device from the
        student's crops."""
        factor = self.sampling_rate // sampling_rate if self.sampling_rate % sampling_rate == 0 else 0
        if waveforms or not factor:
            resampled = [np.asarray(resample_audio(w, sampling_rate, self.sampling_rate), dtype=np.float32)
                         for w in waves]
            sizes = [w.shape[0] for w in resampled]
        else:  # `resample_audio` gives `factor` samples per sample at an integer ratio (`resampling_kernel`)
            resampled, sizes = None, [factor * len(w) for w in waves]
        layout, kinds, offsets, longer = [], [], [], []
        for size in sizes:
            chunks, start, period, valid, length = (0, 0, 0), 0, size, size, size
            if size > self.max_samples:
                if self.truncation == "rand_trunc":
                    start = rng.randint(0, size - self.max_samples + 1)
                    valid = length = self.max_samples
                    kind, is_longer = SINGLE, True
                elif self.num_frames(size) == self.chunk_frames:  # fusion, under one hop longer: whole clip
                    kind, is_longer = FUSION_COPIES, False
                else:
                    chunks = self._fusion_offsets(self.num_frames(size), rng)
                    kind, is_longer = FUSION_CHUNKS, True
            else:
                if size < self.max_samples:  # the extractor's padding: tiles of the clip, then zeros
                    if self.padding == "repeat":
                        valid = self.max_samples
                    elif self.padding == "repeatpad":
                        valid = size * int(self.max_samples / size)
                    length = self.max_samples
                kind, is_longer = (FUSION_COPIES if self.truncation == "fusion" else SINGLE), False
            layout.append((start, period, valid, length))
            kinds.append(kind)
            offsets.append(chunks)
            longer.append(is_longer)
        if self.truncation == "fusion" and not any(longer):  # the extractor marks one clip at random
            longer[rng.randint(0, len(longer))] = True
        start, period, valid, lengths = (torch.tensor(column, dtype=torch.long) for column in zip(*layout))
        plan = {"kind": torch.tensor(kinds, dtype=torch.long), "chunks": torch.tensor(offsets, dtype=torch.long),
                "is_longer": torch.tensor(longer, dtype=torch.bool), "lengths": lengths, "start": start,
                "period": period, "valid": valid, "factor": torch.tensor(factor, dtype=torch.long)}
        out: dict[str, Any] = {"teacher_plan": HostTensors(plan)}
        if resampled is not None:
            out["teacher_waveforms"] = _laid_out(resampled, plan)
        return out

    def _fusion_offsets(self, total_frames: int, rng: np.random.RandomState) -> tuple[int, int, int]:
        """The three chunk starts `ClapFeatureExtractor._random_mel_fusion` draws (front, middle, back third)."""
        ranges = np.array_split(list(range(0, total_frames - self.chunk_frames + 1)), 3)
        ranges = [part if len(part) else [0] for part in ranges]
        return tuple(int(rng.choice(part)) for part in ranges)

    # ----------------------------------------------------------------------------------------------------- device
    def _device_constants(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (str(device), self.dtype)
        if key not in self._constants:
            self._constants[key] = (
                _to_device(torch.from_numpy(self.window), device, self.dtype),
                _to_device(torch.from_numpy(self.mel_filters), device, self.dtype),
            )
        return self._constants[key]

    def log_mel(self, waves: torch.Tensor) -> torch.Tensor:
        """The extractor's log-mel spectrogram of equal-length clips ``(R, samples)``: ``(R, frames, mel)`` float32."""
        window, filters = self._device_constants(waves.device)
        bins = self.n_fft // 2 + 1
        rows = max(1, _STFT_ELEMENTS // (self.num_frames(waves.shape[1]) * bins))
        out = []
        for part in waves.split(rows):
            spectrum = torch.stft(part.to(self.dtype), self.n_fft, self.hop, window=window, center=True,
                                  pad_mode="reflect", onesided=True, return_complex=True)  # (r, bins, frames)
            # transformers' `spectrogram` stores the STFT as complex64 and takes its magnitude in float64
            power = spectrum.to(torch.complex64).to(_complex_of(self.dtype)).abs().square()
            mel = torch.matmul(power.transpose(1, 2), filters).clamp_min(1e-10)  # (r, frames, mel)
            out.append((10.0 * torch.log10(mel)).to(torch.float32))
        return torch.cat(out)

    def __call__(self, waves: torch.Tensor, plan: Any) -> dict[str, torch.Tensor]:
        """``{"input_features": (B, 4 | 1, frames, mel) float32, "is_longer": (B, 1) bool}`` on ``waves``' device,
        from the host part's ``teacher_waveforms`` (moved to the device) and ``teacher_plan``. No device value is
        read on the host: the plan's tensors stay there (`HostTensors`)."""
        lengths = plan["lengths"].tolist()
        kinds = plan["kind"].tolist()
        chunks = plan["chunks"].tolist()
        device = waves.device
        mels: list[torch.Tensor | None] = [None] * len(lengths)
        with torch.no_grad(), _no_autocast(device):
            for length in sorted(set(lengths)):  # one batched spectrogram per clip length
                rows = [i for i, n in enumerate(lengths) if n == length]
                index = _to_device(torch.tensor(rows, dtype=torch.long), device)
                for i, mel in zip(rows, self.log_mel(waves.index_select(0, index)[:, :length]).unbind(0)):
                    mels[i] = mel
            features = []
            for mel, kind, (front, middle, back) in zip(mels, kinds, chunks):
                if kind == SINGLE:
                    features.append(mel[None])
                elif kind == FUSION_COPIES:
                    features.append(mel.expand(4, *mel.shape))
                else:
                    size = self.chunk_frames
                    shrunk = torch.nn.functional.interpolate(mel[None, None], size=[size, 64], mode="bilinear",
                                                             align_corners=False)[0, 0]
                    features.append(torch.stack([shrunk, mel[front : front + size], mel[middle : middle + size],
                                                 mel[back : back + size]]))
            input_features = torch.stack(features)
        is_longer = _to_device(plan["is_longer"][:, None], device)
        return {"input_features": input_features, "is_longer": is_longer}


def _laid_out(waves: list[np.ndarray], plan: dict[str, torch.Tensor]) -> torch.Tensor:
    """The extractor's layout of each clip (`ClapFeaturesOnDevice.plan`) on the host: ``(B, max length)`` float32 in
    shared memory in a DataLoader worker (`padded_rows`)."""
    rows = []
    for wave, start, period, valid, length in zip(waves, *(plan[k].tolist() for k in ("start", "period", "valid",
                                                                                      "lengths"))):
        if valid > period:  # tiles of the clip
            wave = np.tile(wave, -(-valid // period))
        row = np.zeros(length, dtype=np.float32)
        row[: min(valid, length)] = wave[start : start + min(valid, length)]
        rows.append(row)
    return padded_rows(rows)[0]


def _upsample(waveforms: torch.Tensor, factor: int, kernel: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``factor`` x upsampling of ``(R, W)`` rows by an odd-length impulse response ``kernel`` centred on each input
    sample (zero outside the rows, as the resampler does): ``(R, factor * W)`` in ``dtype`` (FFT convolution)."""
    rows, width = waveforms.shape
    if factor == 1:
        return waveforms.to(dtype)
    half = (kernel.numel() - 1) // 2
    stuffed = torch.zeros(rows, factor * width, dtype=dtype, device=waveforms.device)
    stuffed[:, ::factor] = waveforms.to(dtype)
    size = factor * width + kernel.numel() - 1
    spectrum = torch.fft.rfft(stuffed, n=size) * torch.fft.rfft(kernel.to(dtype), n=size)
    return torch.fft.irfft(spectrum, n=size)[:, half : half + factor * width]


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64

