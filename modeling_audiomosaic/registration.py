"""Registration of the AudioMosaic classes with transformers' Auto classes.

Two mechanisms are set up, both on ``import modeling_audiomosaic``:

1. **By import**: ``AutoConfig``/``AutoModel``/``AutoModelForAudioClassification``/``AutoFeatureExtractor`` resolve
   ``model_type == "audiomosaic"`` to our classes, so ``AutoModel.from_pretrained(folder)`` and
   ``pipeline("audio-classification", model=folder)`` work in any process that imported the package.
2. **By remote code**: ``register_for_auto_class`` makes ``save_pretrained`` copy the defining modules next to the
   weights and write an ``auto_map`` listing *every* Auto class, so the folder also loads with
   ``trust_remote_code=True`` in a process where this package is not installed.

The audio-language model (``model_type == "audiomosaic_llm"``) is registered by import only
(``AutoConfig``/``AutoModelForCausalLM``/``AutoProcessor``), see :func:`register_audio_llm_classes`.
"""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
    AutoModelForCausalLM,
    AutoModelForPreTraining,
    AutoProcessor,
)

from .configuration_audio_llm import AudioMosaicLLMConfig
from .configuration_audiomosaic import AudioMosaicConfig
from .modeling_audio_llm import AudioMosaicForConditionalGeneration
from .modeling_audiomosaic import AudioMosaicForAudioClassification, AudioMosaicModel
from .modeling_pretraining import AudioMosaicForPreTraining
from .processing_audiomosaic import AudioMosaicProcessor

_REGISTERED = False


def register_auto_classes() -> None:
    """Register AudioMosaic with the Auto classes (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    AutoConfig.register(AudioMosaicConfig.model_type, AudioMosaicConfig, exist_ok=True)
    AutoModel.register(AudioMosaicConfig, AudioMosaicModel, exist_ok=True)
    AutoModelForAudioClassification.register(AudioMosaicConfig, AudioMosaicForAudioClassification, exist_ok=True)
    AutoModelForPreTraining.register(AudioMosaicConfig, AudioMosaicForPreTraining, exist_ok=True)

    AudioMosaicConfig.register_for_auto_class("AutoConfig")
    AudioMosaicModel.register_for_auto_class("AutoModel")
    AudioMosaicForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")
    AudioMosaicForPreTraining.register_for_auto_class("AutoModelForPreTraining")

    try:  # the feature extractor lives in the subpackage `modeling_audiomosaic.feature_extraction`
        from .feature_extraction import AudioMosaicFeatureExtractor
    except ImportError:  # pragma: no cover - only when the package is installed without it
        AudioMosaicFeatureExtractor = None
    if AudioMosaicFeatureExtractor is not None:
        AutoFeatureExtractor.register(AudioMosaicConfig, AudioMosaicFeatureExtractor, exist_ok=True)
        AudioMosaicFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
        AutoFeatureExtractor.register(AudioMosaicLLMConfig, AudioMosaicFeatureExtractor, exist_ok=True)
    register_audio_llm_classes()
    _REGISTERED = True


def register_audio_llm_classes() -> None:
    """Register the audio-language model (`model_type="audiomosaic_llm"`) by import: `AutoConfig`,
    `AutoModelForCausalLM` (-> `AudioMosaicForConditionalGeneration`) and `AutoProcessor` (-> `AudioMosaicProcessor`).
    Not registered for remote code: the processor depends on `modeling_audiomosaic.feature_extraction`."""
    AutoConfig.register(AudioMosaicLLMConfig.model_type, AudioMosaicLLMConfig, exist_ok=True)
    AutoModelForCausalLM.register(AudioMosaicLLMConfig, AudioMosaicForConditionalGeneration, exist_ok=True)
    AutoProcessor.register(AudioMosaicLLMConfig, AudioMosaicProcessor, exist_ok=True)
