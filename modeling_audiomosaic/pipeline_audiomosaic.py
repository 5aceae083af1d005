"""An audio-classification pipeline that needs no torchaudio and accepts what the feature extractor accepts.

transformers' `AudioClassificationPipeline` resamples `{"array"/"raw", "sampling_rate"}` inputs with torchaudio
(not installable everywhere; this project never depends on it) and refuses multi-channel arrays. This subclass hands
arrays to `AudioMosaicFeatureExtractor` instead, which resamples with soxr (or scipy), averages channels, scales
integer PCM and raises a clear error for empty, too short, non-finite or wrongly typed audio:

```python
import modeling_audiomosaic
from modeling_audiomosaic import AudioMosaicAudioClassificationPipeline
from transformers import pipeline

clf = pipeline("audio-classification", model="my_model", pipeline_class=AudioMosaicAudioClassificationPipeline)
clf({"array": wave_8khz, "sampling_rate": 8000})   # resampled to 16 kHz
clf(stereo_int16)                                   # (channels, samples) int16: scaled and mixed down
```

File paths, URLs and bytes are decoded by the parent class (ffmpeg), exactly as in transformers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from transformers import AudioClassificationPipeline


class AudioMosaicAudioClassificationPipeline(AudioClassificationPipeline):
    """`AudioClassificationPipeline` whose array inputs go straight to the feature extractor (see the module doc)."""

    def preprocess(self, inputs: Any):
        if isinstance(inputs, (str, bytes)):
            try:
                return super().preprocess(inputs)
            except ValueError as err:  # ffmpeg's "Malformed soundfile" does not say which input
                name = inputs if isinstance(inputs, str) else f"<{len(inputs)} bytes>"
                raise ValueError(f"Could not decode audio {name!r} (empty, corrupt or not audio): {err}") from err
        if not _handles_resampling(self.feature_extractor):
            return super().preprocess(inputs)
        sampling_rate = self.feature_extractor.sampling_rate
        if isinstance(inputs, dict):
            if "sampling_rate" not in inputs or not ("raw" in inputs or "array" in inputs):
                raise ValueError(
                    "A dict input needs a 'raw' or 'array' key with the samples and a 'sampling_rate' key; got keys "
                    f"{sorted(inputs)}."
                )
            sampling_rate = inputs["sampling_rate"]
            inputs = inputs["raw"] if inputs.get("raw") is not None else inputs["array"]
        if not isinstance(inputs, (np.ndarray, list, tuple)) and not hasattr(inputs, "detach"):
            raise TypeError(
                f"Unsupported input of type {type(inputs).__name__}: pass a file path, bytes, a numpy array / torch "
                "tensor, or a dict with 'array' and 'sampling_rate'."
            )
        if getattr(inputs, "ndim", 1) == 2:
            inputs = [inputs]  # one multi-channel clip (a bare 2-D array would be read as a batch)
        processed = self.feature_extractor(inputs, sampling_rate=sampling_rate, resample=True, return_tensors="pt")
        if processed["input_values"].shape[0] != 1:
            raise ValueError(
                f"The pipeline classifies one clip per input, got a batch of {processed['input_values'].shape[0]}; "
                "pass a list of clips to the pipeline call instead (pipe([clip_a, clip_b]))."
            )
        if self.dtype is not None:
            processed = processed.to(dtype=self.dtype)
        return processed


def _handles_resampling(feature_extractor: Any) -> bool:
    """Only feature extractors with our `resample` argument get raw arrays; any other falls back to the parent."""
    return type(feature_extractor).__name__ == "AudioMosaicFeatureExtractor"
