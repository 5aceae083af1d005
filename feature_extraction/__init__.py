"""AudioMosaic feature extraction, augmentation and data loading.

* `feature_extraction_audiomosaic`: batched Kaldi filter banks and the transformers feature extractor. Self-contained
  (stdlib, numpy, torch, transformers only) so that it can be shipped next to saved models and loaded as remote code.
* `augmentation`: waveform augmentations and the contrastive view generator (pre-training); the public names of
  `augmentation_chain` (roll + gain, the waveform chain), `augmentation_views` (the view generator) and
  `augmentation_filters` (Butterworth designs).
* `random_draws`: the one generator coercion and the uniform / Bernoulli / Beta draws, shared with fine-tuning.
* `data`: audio datasets from local files, manifests, parquet, webdataset or `datasets` (streaming), with skip counting.
* `collators`: pre-training collator and dataset wrappers.
"""

from .augmentation import (
    AUGMENTATION_PRESETS,
    ContrastiveViewGenerator,
    WaveformAugmentation,
    butterworth_bandstop_sos,
    butterworth_highpass_sos,
    roll_and_gain,
    sample_beta_gain,
)
from .collators import EpochTaggedDataset, PretrainingViewsCollator
from .data import (
    AudioClassificationCollator,
    AudioDataset,
    AudioIterableDataset,
    LabelVocabulary,
    SkipCounter,
    build_label_vocabulary,
    decode_audio,
    load_audio_dataset,
    shard_for_rank,
)
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
    "AUGMENTATION_PRESETS",
    "ContrastiveViewGenerator",
    "WaveformAugmentation",
    "butterworth_bandstop_sos",
    "butterworth_highpass_sos",
    "roll_and_gain",
    "sample_beta_gain",
    "EpochTaggedDataset",
    "PretrainingViewsCollator",
    "AudioClassificationCollator",
    "AudioDataset",
    "AudioIterableDataset",
    "LabelVocabulary",
    "SkipCounter",
    "build_label_vocabulary",
    "decode_audio",
    "load_audio_dataset",
    "shard_for_rank",
]
