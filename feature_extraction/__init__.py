"""AudioMosaic feature extraction, augmentation and data loading.

* `feature_extraction_audiomosaic`: batched Kaldi filter banks and the transformers feature extractor. Self-contained
  (stdlib, numpy, torch, transformers only) so that it can be shipped next to saved models and loaded as remote code.
* `augmentation`: waveform augmentations and the contrastive view generator (pre-training); the public names of
  `augmentation_chain` (roll + gain, the waveform chain), `augmentation_views` (the view generator) and
  `augmentation_filters` (Butterworth designs).
* `random_draws`: the one generator coercion and the uniform / Bernoulli / Beta draws, shared with fine-tuning.
* The data layer, one concern per module: `audio_io` (read / decode / resample / crop audio), `skips` (skip reasons
  and counting of bad items), `labels` (label fields, vocabulary, the label-CSV reader), `records` (`DecodeOptions`
  and the record → example decoder), `sources` (local folders, manifests, CSV files), `audio_datasets` (map-style and
  streaming datasets, rank sharding), `loading` (`load_audio_dataset`, `wrap_hf_dataset`) and `stream_rows` (positions
  in a stream's records: a resumed run passes over what it trained on without decoding it).
* `collators`: pre-training views and classification batches, and the epoch-tagging dataset wrapper.
* On the accelerator (views on the device): `augmentation_device` (the view chain as batched torch operations) and
  `clap_device` (a CLAP distillation teacher's spectrogram).
"""

from .audio_datasets import AudioDataset, AudioIterableDataset, shard_for_rank
from .audio_io import decode_audio, read_audio, resample_audio, to_float32_mono
from .augmentation import (
    AUGMENTATION_PRESETS,
    ContrastiveViewGenerator,
    WaveformAugmentation,
    butterworth_bandstop_sos,
    butterworth_highpass_sos,
    roll_and_gain,
    sample_beta_gain,
)
from .collators import AudioClassificationCollator, EpochTaggedDataset, PretrainingViewsCollator
from .feature_extraction_audiomosaic import (
    FEATURE_EXTRACTOR_PRESETS,
    AudioMosaicFeatureExtractor,
    kaldi_fbank,
    kaldi_mel_banks,
    num_kaldi_frames,
)
from .labels import LabelVocabulary, build_label_vocabulary, read_label_csv
from .loading import load_audio_dataset, wrap_hf_dataset
from .records import DecodeOptions, ExampleDecoder
from .skips import AudioDecodeError, EmptyDatasetError, SkipCounter

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
    "AudioDecodeError",
    "AudioIterableDataset",
    "DecodeOptions",
    "EmptyDatasetError",
    "ExampleDecoder",
    "LabelVocabulary",
    "SkipCounter",
    "build_label_vocabulary",
    "decode_audio",
    "load_audio_dataset",
    "read_audio",
    "read_label_csv",
    "resample_audio",
    "shard_for_rank",
    "to_float32_mono",
    "wrap_hf_dataset",
]
