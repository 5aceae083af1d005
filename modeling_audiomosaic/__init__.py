"""AudioMosaic for transformers: config, encoder, heads; registers the Auto classes on import.

```python
import modeling_audiomosaic  # registers "audiomosaic" with AutoConfig / AutoModel / AutoModelForAudioClassification
from transformers import AutoModel, pipeline
```

The converter of the original checkpoints is not imported here (transformers keeps its converters out of
``__init__``): ``from modeling_audiomosaic.convert_original_checkpoint import convert_original_checkpoint``.
"""

from .configuration_audiomosaic import CLASSIFIER_HEADS, INPUT_PRESETS, POOLING_MODES, SIZE_PRESETS, AudioMosaicConfig
from .modeling_audiomosaic import (
    AudioMosaicClassifierOutput,
    AudioMosaicForAudioClassification,
    AudioMosaicModel,
    AudioMosaicModelOutput,
    AudioMosaicPreTrainedModel,
    pool_tokens,
    sincos_2d_position_embedding,
)
from .masking import MASKING_STRATEGIES, MaskingOutput, apply_masking, register_masking_strategy
from .modeling_pretraining import AudioMosaicForPreTraining, AudioMosaicForPreTrainingOutput
from .objective_contrastive import nt_xent_loss
from .configuration_audio_llm import AudioMosaicLLMConfig
from .modeling_audio_llm import (
    AudioMosaicAudioProjector,
    AudioMosaicCausalLMOutputWithPast,
    AudioMosaicForConditionalGeneration,
    AudioMosaicLLMPreTrainedModel,
    answer_alignment_loss,
    pool_audio_tokens,
)
from .processing_audiomosaic import LTU_CHAT_TEMPLATE, AudioMosaicProcessor
from .registration import register_audio_llm_classes, register_auto_classes
from .labels import LABEL_FILES, LABELS_DIR, load_label_file
from .pipeline_audiomosaic import AudioMosaicAudioClassificationPipeline
from .embeddings import AudioMosaicEmbedder, FrameEmbeddings, get_audio_embeddings

register_auto_classes()

__version__ = "0.1.0"

__all__ = [
    "AudioMosaicConfig",
    "AudioMosaicModel",
    "AudioMosaicForAudioClassification",
    "AudioMosaicPreTrainedModel",
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
]
