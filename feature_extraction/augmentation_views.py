# coding=utf-8
"""Contrastive view generation for AudioMosaic pre-training: augmented log-mel views of every clip of a batch.

The original recipe builds every pre-training view of a 16 kHz mono clip as (``docs/augmentation.md``)

1. ``roll_mag_aug``: circular roll by a random offset and a gain ``Beta(10, 10) + 0.5``;
2. an audiomentations ``Compose`` (PolarityInversion, TimeStretch, AddGaussianSNR, Gain, HighPassFilter,
   BandStopFilter, PitchShift, each with its own probability);
3. subtraction of the waveform mean;
4. Kaldi fbank, pad/crop to 1024 frames, ``(x - mean) / (2 std)``.

:class:`ContrastiveViewGenerator` does steps 1-3 with :func:`~.augmentation_chain.roll_and_gain`
and :class:`~.augmentation_chain.WaveformAugmentation`, and step 4 with one call of the feature extractor's batched
tensor method (:meth:`~.feature_extraction_audiomosaic.AudioMosaicFeatureExtractor.batch_features`) for all clips x
views, returning ``(batch, num_views, max_length, num_mel_bins)``.
:meth:`ContrastiveViewGenerator.sample_view_parameters` and :meth:`ContrastiveViewGenerator.views_from_parameters`
split the same computation between the CPU (random parameters) and any device (everything else;
:mod:`.augmentation_device`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .augmentation_chain import WaveformAugmentation, roll_scale_into, sample_roll_parameters
from .augmentation_device import sample_view_parameters, views_from_parameters
from .augmentation_inputs import to_float_tensor
from .feature_extraction_audiomosaic import AudioMosaicFeatureExtractor
from .random_draws import as_generator

__all__ = ["ContrastiveViewGenerator"]


class ContrastiveViewGenerator:
    r"""Makes ``num_views`` independently augmented log-mel views of every clip of a batch (AudioMosaic pre-training).

    For every clip and view: roll + gain (like ``roll_and_gain``, if `roll_and_gain`), then the waveform chain
    (`augmentation`; its final mean removal is skipped here because Kaldi removes every frame's DC offset, which
    makes it a no-op for the features), then Kaldi fbank, pad/crop to ``max_length`` frames with the raw padding
    value and ``(x - mean) / (2 std)`` with the feature extractor's settings. The features of all clips x views come
    from **one** call of the feature extractor's batched tensor method
    (:meth:`~.feature_extraction_audiomosaic.AudioMosaicFeatureExtractor.batch_features`).

    Clips of different lengths: every view is written into one ``(batch * num_views, S)`` buffer (zero after the
    view's length), with ``S = 400 + (max_length - 1) * 160`` samples (exactly what ``max_length`` frames need) and
    ``batch_features`` gets each view's valid length, so frames that would reach into the zero padding
    are not computed and get the padding value; features of a short clip are therefore identical to
    those of the clip processed alone. A clip longer than ``S`` samples is rolled over its *whole* length and then
    cropped to its first ``S`` samples, so only the samples that reach the features are augmented (the noise RMS is
    that of the cropped part).

    Args:
        feature_extractor ([`AudioMosaicFeatureExtractor`], *optional*):
            Source of ``sampling_rate``, ``num_mel_bins``, ``max_length``, ``mean``, ``std``, ``do_normalize`` and
            ``padding_value``. Defaults to ``AudioMosaicFeatureExtractor.from_preset("audioset")``.
        augmentation ([`WaveformAugmentation`], `str`, `dict` or `None`, defaults to ``"original"``):
            The chain, a preset name, a ``to_dict()`` dict, or ``None``/``"none"`` (mean removal only).
        num_views (`int`, defaults to 2): Views per clip.
        roll_and_gain (`bool`, defaults to `True`): Apply the random roll + ``Beta(10, 10) + 0.5`` gain first.
        max_length (`int`, *optional*): Overrides the feature extractor's ``max_length`` (frames).

    Calling it returns a float32 tensor ``(batch, num_views, max_length, num_mel_bins)``; view ``v`` of clip ``b``
    is ``out[b, v]`` (the original pairs view 0 with the "time" mask and view 1 with the "freq" mask).
    """

    def __init__(
        self,
        feature_extractor: AudioMosaicFeatureExtractor | None = None,
        augmentation: WaveformAugmentation | str | dict | None = "original",
        num_views: int = 2,
        roll_and_gain: bool = True,
        max_length: int | None = None,
    ):
        if feature_extractor is None:
            feature_extractor = AudioMosaicFeatureExtractor.from_preset("audioset")
        if not isinstance(feature_extractor, AudioMosaicFeatureExtractor):
            raise TypeError(
                f"feature_extractor must be an AudioMosaicFeatureExtractor, got {type(feature_extractor).__name__}."
            )
        self.feature_extractor = feature_extractor
        sampling_rate = feature_extractor.sampling_rate
        if augmentation is None:
            augmentation = WaveformAugmentation.from_preset("none", sample_rate=sampling_rate)
        elif isinstance(augmentation, str):
            augmentation = WaveformAugmentation.from_preset(augmentation, sample_rate=sampling_rate)
        elif isinstance(augmentation, dict):
            augmentation = WaveformAugmentation.from_dict(augmentation)
        elif not isinstance(augmentation, WaveformAugmentation):
            raise TypeError(
                "augmentation must be a WaveformAugmentation, a preset name, a dict or None, got "
                f"{type(augmentation).__name__}."
            )
        if augmentation.sample_rate != sampling_rate:
            raise ValueError(
                f"augmentation.sample_rate ({augmentation.sample_rate}) differs from the feature extractor's "
                f"sampling_rate ({sampling_rate})."
            )
        self.augmentation = augmentation
        if int(num_views) != num_views or num_views < 1:
            raise ValueError(f"num_views must be a positive integer, got {num_views!r}.")
        self.num_views = int(num_views)
        self.roll_and_gain = bool(roll_and_gain)
        max_length = feature_extractor.max_length if max_length is None else max_length
        if max_length is None or int(max_length) < 1:
            raise ValueError(f"max_length must be a positive number of frames, got {max_length!r}.")
        self.max_length = int(max_length)
        self.window_size = int(sampling_rate * 25.0 * 0.001)
        self.window_shift = int(sampling_rate * 10.0 * 0.001)
        #: Samples needed for `max_length` frames; longer clips are cropped to this after the roll.
        self.num_samples = self.window_size + (self.max_length - 1) * self.window_shift

    def to_dict(self) -> dict[str, Any]:
        """Settings for logging (JSON-serialisable)."""
        fe = self.feature_extractor
        return {
            "num_views": self.num_views,
            "roll_and_gain": self.roll_and_gain,
            "max_length": self.max_length,
            "augmentation": self.augmentation.to_dict(),
            "feature_extractor": {
                "sampling_rate": fe.sampling_rate, "num_mel_bins": fe.num_mel_bins, "mean": fe.mean, "std": fe.std,
                "do_normalize": fe.do_normalize, "padding_value": fe.padding_value,
            },
        }

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(num_views={self.num_views}, roll_and_gain={self.roll_and_gain}, "
            f"max_length={self.max_length}, augmentation={self.augmentation!r})"
        )

    # -- inputs ---------------------------------------------------------------------------------------------------

    def _clips(self, waves: Any) -> list[torch.Tensor]:
        """Validated 1-D float32 CPU tensors (no copy for float32 inputs)."""
        if isinstance(waves, (torch.Tensor, np.ndarray)):
            x = to_float_tensor(waves)
            if x.dim() == 1:
                x = x.unsqueeze(0)
            if x.dim() != 2:
                raise ValueError(
                    f"waves must be a list of 1-D clips or a (batch, N) array, got shape {tuple(x.shape)}."
                )
            if x.shape[0] == 0:
                raise ValueError("waves is an empty batch (batch size 0).")
            clips = list(x.to("cpu", torch.float32).unbind(0))
        elif isinstance(waves, (list, tuple)):
            if len(waves) == 0:
                raise ValueError("waves is an empty list; pass at least one clip.")
            clips = []
            for i, clip in enumerate(waves):
                if not isinstance(clip, (torch.Tensor, np.ndarray)):
                    raise TypeError(f"clip {i} has type {type(clip).__name__}; expected a 1-D numpy array or tensor.")
                t = to_float_tensor(clip, f"clip {i}")
                if t.dim() != 1:
                    raise ValueError(f"clip {i} has shape {tuple(t.shape)}; expected a 1-D mono clip.")
                clips.append(t.to("cpu", torch.float32))
        else:
            raise TypeError(
                f"waves must be a list of 1-D clips or a (batch, N) tensor/array, got {type(waves).__name__}."
            )
        for i, clip in enumerate(clips):
            if clip.shape[0] == 0:
                raise ValueError(f"clip {i} is empty.")
            if clip.shape[0] < self.window_size:
                raise ValueError(
                    f"clip {i} has {clip.shape[0]} samples; at least {self.window_size} (one 25 ms frame) are needed."
                )
            array = clip.numpy()
            if not np.isfinite(array).all():
                raise ValueError(f"clip {i} contains {int((~np.isfinite(array)).sum())} NaN or infinite value(s).")
        return clips

    # -- main entry points ----------------------------------------------------------------------------------------

    def augment_waveforms(
        self,
        waves: Any,
        generator: torch.Generator | int | None = None,
        num_views: int | None = None,
        return_params: bool = False,
        subtract_mean: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """The augmented waveforms, before the fbank.

        `subtract_mean` overrides the chain's ``subtract_mean`` (``__call__`` passes ``False``: the fbank removes
        every frame's DC offset, so a constant offset of the waveform has no effect on the features, and skipping
        the mean removal saves a pass and avoids float rounding differences).

        Returns:
            ``(views, lengths)``: ``views`` float32 ``(batch, num_views, S)`` (zero after each view's length, ``S``
            = samples of ``max_length`` frames) and ``lengths`` long ``(batch,)`` (valid samples per clip, at most
            ``S``); with `return_params`, also a dict with the roll parameters (``shift``, ``gain``, ``(batch *
            num_views,)``; empty if the roll is disabled) and the chain's parameters (``chain``), rows ordered
            clip-major (row ``b * num_views + v``).
        """
        generator = as_generator(generator)
        views = self.num_views if num_views is None else int(num_views)
        if views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views!r}.")
        clips = self._clips(waves)
        batch = len(clips)
        rows = batch * views
        full_lengths = torch.tensor([c.shape[0] for c in clips], dtype=torch.long)
        lengths = torch.clamp(full_lengths, max=self.num_samples)
        row_full = full_lengths.repeat_interleave(views)
        row_len = lengths.repeat_interleave(views).tolist()
        width = self.num_samples
        buffer = torch.empty(rows, width, dtype=torch.float32)
        params: dict[str, Any] = {}
        # Draw order: roll parameters, chain parameters (both vectorised), then the noise of each row in row order.
        if self.roll_and_gain:
            shifts, gains = sample_roll_parameters(row_full, generator, (10, 10))
            params.update(shift=shifts, gain=gains)
        chain = self.augmentation.sample_parameters(rows, generator)
        params["chain"] = chain
        # The roll gain and the chain's polarity x gain are applied in the same pass as the roll copy.
        scale = chain["scale"] * gains if self.roll_and_gain else chain["scale"]
        scale_list = scale.tolist()
        shift_list = shifts.tolist() if self.roll_and_gain else [0] * rows
        for r in range(rows):
            length = row_len[r]
            roll_scale_into(clips[r // views], buffer[r, :length], shift_list[r], scale_list[r])
            if length < width:
                buffer[r, length:] = 0.0
        self.augmentation.apply_inplace(
            buffer, row_len, generator, params=chain, scaled=True, subtract_mean=subtract_mean
        )
        out = buffer.view(batch, views, width), lengths
        return (*out, params) if return_params else out

    def __call__(
        self,
        waves: Any,
        generator: torch.Generator | int | None = None,
        num_views: int | None = None,
        sampling_rate: int | None = None,
    ) -> torch.Tensor:
        """Computes the views of a batch.

        Args:
            waves: A list of 1-D float clips (numpy arrays or tensors, any lengths >= 400 samples) or a float
                ``(batch, N)`` / ``(N,)`` tensor or array, at the feature extractor's sampling rate (16 kHz).
            generator (`torch.Generator`, `int` or `None`): Source of randomness (``None``: torch's global generator,
                which DataLoader seeds per worker).
            num_views (`int`, *optional*): Overrides `self.num_views`.
            sampling_rate (`int`, *optional*): If given, must equal the feature extractor's sampling rate.

        Returns:
            float32 tensor ``(batch, num_views, max_length, num_mel_bins)``.

        Raises:
            TypeError: non-float input or unsupported types. ValueError: empty batch or clip, clip shorter than one
            frame, NaN/inf samples (naming the clip), wrong sampling rate.
        """
        fe = self.feature_extractor
        if sampling_rate is not None and sampling_rate != fe.sampling_rate:
            raise ValueError(
                f"The audio has sampling_rate={sampling_rate} but the views are computed at {fe.sampling_rate} Hz; "
                "resample it first."
            )
        # No waveform mean removal here: Kaldi removes each frame's mean, which makes it a no-op for the features.
        views, lengths = self.augment_waveforms(waves, generator, num_views, subtract_mean=False)
        batch, num_views, width = views.shape
        row_len = lengths.repeat_interleave(num_views)
        # fbank + padding + normalisation: the feature extractor's batched tensor path (one call for all views)
        features = fe.batch_features(views.view(batch * num_views, width), row_len, max_length=self.max_length,
                                     check_finite=False)["input_values"]
        return features.view(batch, num_views, self.max_length, int(fe.num_mel_bins))

    # -- views on the accelerator ---------------------------------------------------------------------------------

    def sample_view_parameters(
        self, lengths: Any, generator: torch.Generator | int | None = None, num_views: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Every random parameter of the views of clips with these lengths, drawn on the CPU in the host path's order.

        With :meth:`views_from_parameters` this splits `__call__` in two: the data workers (collator) draw the
        parameters from the batch's deterministic generator, the training step computes the views on the model's
        device. See :mod:`.augmentation_device`.

        Args:
            lengths: ``(batch,)`` valid samples per clip (after the collator's crop).
            generator: the batch's generator (or a seed).
            num_views (`int`, *optional*): Overrides `self.num_views`.

        Returns:
            A dict of CPU tensors (see :func:`.augmentation_device.sample_view_parameters`).
        """
        return sample_view_parameters(self, lengths, as_generator(generator), num_views)

    def views_from_parameters(
        self, waveforms: torch.Tensor, lengths: Any, parameters: dict[str, torch.Tensor],
        filter_dtype: torch.dtype = torch.float64,
    ) -> torch.Tensor:
        """The views of a batch, computed on the device of `waveforms` from :meth:`sample_view_parameters`' draw.

        On the CPU they equal `__call__`'s views of the same clips with the same generator (the tests check
        <= 1e-4); on an accelerator the noise samples come from a device generator seeded from the same stream.

        Args:
            waveforms (`torch.Tensor`): ``(batch, samples)`` float waveforms, zero after each clip's length.
            lengths: ``(batch,)`` valid samples per clip (those given to :meth:`sample_view_parameters`).
            parameters: the parameter dict (on any device).
            filter_dtype (`torch.dtype`, defaults to float64): precision of the IIR filters (the host path filters
                in float64; float32 halves their memory traffic and differs by ~1e-5 in the waveform).

        Returns:
            float32 ``(batch, num_views, max_length, num_mel_bins)`` on the device of `waveforms`.
        """
        return views_from_parameters(self, waveforms, lengths, parameters, filter_dtype=filter_dtype)

    def make_view(self, waves: Any, generator: torch.Generator | int | None = None) -> torch.Tensor:
        """One augmented view per clip: ``(batch, max_length, num_mel_bins)``."""
        return self(waves, generator, num_views=1)[:, 0]
