"""AudioMosaic feature extraction: batched Kaldi filter banks and the transformers feature extractor.

`feature_extraction_audiomosaic.py` is self-contained (stdlib, numpy, torch, transformers only) so that it can be
shipped next to saved models and loaded as remote code.
"""

from .feature_extraction_audiomosaic import (
    FEATURE_EXTRACTOR_PRESETS,
    AudioMosaicFeatureExtractor,
    kaldi_fbank,
    kaldi_mel_banks,
    num_kaldi_frames,
)


__all__ = [
    "AudioMosaicFeatureExtractor",
    "FEATURE_EXTRACTOR_PRESETS",
    "kaldi_fbank",
    "kaldi_mel_banks",
    "num_kaldi_frames",
]
