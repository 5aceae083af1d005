# coding=utf-8
"""A CLAP distillation teacher's input features on the accelerator (MAM-CLAP with views on the device).

transformers' `ClapFeatureExtractor` computes its log-mel spectrogram in numpy, one frame at a time: about 35 ms of
one host thread per 10 s clip at 48 kHz, ~5x the cost of both contrastive views, and its ``input_features`` (4 x 1001
x 64 float32 with ``truncation="fusion"``) are 1 MB per clip to copy to the device. With views on the device the host
side keeps only what is cheap and random, and the spectrogram runs batched on the model's device:

* in the DataLoader worker, :meth:`ClapFeaturesOnDevice.plan` resamples the student's crop to the teacher's rate
  (the project's one resampler), applies the extractor's padding (``repeatpad`` / ``repeat`` / ``pad``) and
  ``rand_trunc`` window, and draws the extractor's random choices (the ``rand_trunc`` offset, the three ``fusion``
  chunk offsets, the clip marked ``is_longer`` when none is) from a `numpy.random.RandomState`, in the extractor's
  own order: given the same seed, the same draws as `ClapFeatureExtractor` makes from numpy's global generator;
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

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_constants": {}}  # device tensors stay in the process that built them

    def num_frames(self, samples: int) -> int:
        """Frames of the extractor's centred spectrogram of `samples` samples."""
        return 1 + (samples + 2 * (self.n_fft // 2) - self.n_fft) // self.hop

    # ------------------------------------------------------------------------------------------------------- host
    def plan(self, waves: list[np.ndarray], rng: np.random.RandomState,
             sampling_rate: int = TARGET_SAMPLING_RATE) -> dict[str, Any]:
        """The host part for a batch of 1-D float32 clips at `sampling_rate`: ``{"teacher_waveforms": (B, N)
        float32 (zero after each clip), "teacher_plan": HostTensors}``, with the random draws of
        `ClapFeatureExtractor.__call__` made from `rng` in its order."""
        if sampling_rate != self.sampling_rate:
            waves = [resample_audio(wave, sampling_rate, self.sampling_rate) for wave in waves]
        prepared, kinds, offsets, longer = [], [], [], []
        for wave in waves:
            wave = np.asarray(wave, dtype=np.float32)
            chunks = (0, 0, 0)
            if wave.shape[0] > self.max_samples:
                if self.truncation == "rand_trunc":
                    start = rng.randint(0, wave.shape[0] - self.max_samples + 1)
                    wave, kind, is_longer = wave[start : start + self.max_samples], SINGLE, True
                elif self.num_frames(wave.shape[0]) == self.chunk_frames:  # fusion, under one hop longer: whole clip
                    kind, is_longer = FUSION_COPIES, False
                else:
                    chunks = self._fusion_offsets(self.num_frames(wave.shape[0]), rng)
                    kind, is_longer = FUSION_CHUNKS, True
            else:
                if wave.shape[0] < self.max_samples:
                    if self.padding == "repeat":
                        wave = np.tile(wave, int(self.max_samples / len(wave)) + 1)[: self.max_samples]
                    if self.padding == "repeatpad":
                        wave = np.tile(wave, int(self.max_samples / len(wave)))
                    wave = np.pad(wave, (0, self.max_samples - wave.shape[0]))
                kind, is_longer = (FUSION_COPIES if self.truncation == "fusion" else SINGLE), False
            prepared.append(wave)
            kinds.append(kind)
            offsets.append(chunks)
            longer.append(is_longer)
        if self.truncation == "fusion" and not any(longer):  # the extractor marks one clip at random
            longer[rng.randint(0, len(longer))] = True
        padded, lengths = padded_rows(prepared)
        plan = {"kind": torch.tensor(kinds, dtype=torch.long), "chunks": torch.tensor(offsets, dtype=torch.long),
                "is_longer": torch.tensor(longer, dtype=torch.bool), "lengths": lengths}
        return {"teacher_waveforms": padded, "teacher_plan": HostTensors(plan)}

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


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64

