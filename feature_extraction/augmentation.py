# coding=utf-8
"""Waveform augmentations and contrastive view generation for AudioMosaic pre-training (``docs/augmentation.md``).

The public names, gathered from the modules that implement them:

- :mod:`.augmentation_chain`: :func:`roll_and_gain` (the original ``roll_mag_aug``),
  :func:`sample_beta_gain`, :class:`WaveformAugmentation` (the random augmentation chain) and
  :data:`AUGMENTATION_PRESETS`.
- :mod:`.augmentation_views`: :class:`ContrastiveViewGenerator` (augmented log-mel views of every
  clip of a batch, with one batched fbank call).
- :mod:`.augmentation_filters`: :func:`butterworth_highpass_sos` /
  :func:`butterworth_bandstop_sos` (vectorised Butterworth designs, same filters as ``scipy.signal.butter``).

Input validation lives in :mod:`.augmentation_inputs`, and every random draw (generator coercion,
uniform, Bernoulli and Beta numbers, shared with fine-tuning) in :mod:`.random_draws`.
"""

from .augmentation_chain import AUGMENTATION_PRESETS, WaveformAugmentation, roll_and_gain, sample_beta_gain
from .augmentation_filters import butterworth_bandstop_sos, butterworth_highpass_sos
from .augmentation_views import ContrastiveViewGenerator

__all__ = [
    "AUGMENTATION_PRESETS",
    "ContrastiveViewGenerator",
    "WaveformAugmentation",
    "butterworth_bandstop_sos",
    "butterworth_highpass_sos",
    "roll_and_gain",
    "sample_beta_gain",
]
