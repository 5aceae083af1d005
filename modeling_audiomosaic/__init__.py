"""AudioMosaic for transformers: config, encoder, heads; registers the Auto classes on import.

```python
import modeling_audiomosaic  # registers "audiomosaic" with AutoConfig / AutoModel / AutoModelForAudioClassification
from transformers import AutoModel, pipeline
```

The converter of the original checkpoints is not imported here (transformers keeps its converters out of
``__init__``): ``from modeling_audiomosaic.convert_original_checkpoint import convert_original_checkpoint``.

The data side (feature extractor, augmentation, datasets, collators) is the subpackage
``modeling_audiomosaic.feature_extraction`` (the repository's ``feature_extraction/`` folder); its public names are
also importable from here, resolved on first use (PEP 562 module ``__getattr__``):

```python
from modeling_audiomosaic import AudioMosaicFeatureExtractor, DecodeOptions, load_audio_dataset
```
"""

from .configuration_audio_llm import AudioMosaicLLMConfig
from .configuration_audiomosaic import CLASSIFIER_HEADS, INPUT_PRESETS, POOLING_MODES, SIZE_PRESETS, AudioMosaicConfig
from .embeddings import AudioMosaicEmbedder, FrameEmbeddings, get_audio_embeddings
from .labels import LABEL_FILES, LABELS_DIR, load_label_file
from .masking import MASKING_STRATEGIES, MaskingOutput, apply_masking, register_masking_strategy
from .modeling_audio_llm import (
    AudioMosaicAudioProjector,
    AudioMosaicCausalLMOutputWithPast,
    AudioMosaicForConditionalGeneration,
    AudioMosaicLLMPreTrainedModel,
    answer_alignment_loss,
    pool_audio_tokens,
)
from .modeling_audiomosaic import (
    AudioMosaicClassifierOutput,
    AudioMosaicForAudioClassification,
    AudioMosaicModel,
    AudioMosaicModelOutput,
    AudioMosaicPreTrainedModel,
    AudioMosaicProbeHead,
    classification_loss,
    pool_tokens,
    sincos_2d_position_embedding,
)
from .modeling_pretraining import AudioMosaicForPreTraining, AudioMosaicForPreTrainingOutput
from .objective_contrastive import nt_xent_loss
from .pipeline_audiomosaic import AudioMosaicAudioClassificationPipeline
from .processing_audiomosaic import LTU_CHAT_TEMPLATE, AudioMosaicProcessor
from .registration import register_audio_llm_classes, register_auto_classes

register_auto_classes()

__version__ = "0.1.0"

# the public names of `modeling_audiomosaic.feature_extraction`, importable from this package (resolved on first use;
# tests/test_imports.py checks that this list is that subpackage's `__all__`)
_DATA_API_NAMES = (
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
)


def __getattr__(name: str):
    """The data-side names (`_DATA_API_NAMES`) come from `modeling_audiomosaic.feature_extraction` on first use."""
    if name in _DATA_API_NAMES:
        from . import feature_extraction

        value = getattr(feature_extraction, name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_DATA_API_NAMES))


__all__ = [
    "AudioMosaicConfig",
    "AudioMosaicModel",
    "AudioMosaicForAudioClassification",
    "AudioMosaicPreTrainedModel",
    "AudioMosaicProbeHead",
    "classification_loss",
    "AudioMosaicForPreTraining",
    "AudioMosaicForPreTrainingOutput",
    "MASKING_STRATEGIES",
    "MaskingOutput",
    "apply_masking",
    "register_masking_strategy",
    "nt_xent_loss",
    "AudioMosaicModelOutput",
    "AudioMosaicClassifierOutput",
    "INPUT_PRESETS",
    "SIZE_PRESETS",
    "POOLING_MODES",
    "CLASSIFIER_HEADS",
    "LABELS_DIR",
    "LABEL_FILES",
    "load_label_file",
    "pool_tokens",
    "sincos_2d_position_embedding",
    "register_auto_classes",
    "register_audio_llm_classes",
    "AudioMosaicLLMConfig",
    "AudioMosaicForConditionalGeneration",
    "AudioMosaicLLMPreTrainedModel",
    "AudioMosaicAudioProjector",
    "AudioMosaicCausalLMOutputWithPast",
    "AudioMosaicProcessor",
    "LTU_CHAT_TEMPLATE",
    "answer_alignment_loss",
    "pool_audio_tokens",
    "AudioMosaicAudioClassificationPipeline",
    "AudioMosaicEmbedder",
    "FrameEmbeddings",
    "get_audio_embeddings",
    *_DATA_API_NAMES,
]
