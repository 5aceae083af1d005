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

File paths, URLs and bytes are decoded with ffmpeg exactly as in transformers (mono, at the feature extractor's
rate), by [`decode_audio_bytes`], which adds three checks the parent lacks:

* an undecodable input raises `ValueError("Could not decode audio '<path>' (empty, corrupt or not audio): ...")`;
* a file that decodes to fewer samples than one 25 ms analysis frame (400 samples at 16 kHz, the feature extractor's
  minimum) raises a `ValueError` that says it is too short and what the minimum is (not "could not decode");
* a file that decodes **short of the length its header declares** (a truncated download or copy: ffmpeg silently
  decodes the prefix) logs a warning naming the file with the declared and decoded durations. The prefix is still
  classified, as a partial recording can be useful; treat the warning as an error in strict settings. The declared
  length is read with soundfile from formats whose header states it exactly (FLAC STREAMINFO total samples,
  WAV / AIFF / CAF / W64 / RF64 data chunk sizes); for other formats (MP3, Ogg, ...) no check is made.
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
from transformers import AudioClassificationPipeline
from transformers.utils import logging

logger = logging.get_logger(__name__)

# soundfile formats whose header gives the exact number of frames (others are estimated or read from the end).
_EXACT_LENGTH_FORMATS = frozenset({"FLAC", "WAV", "WAVEX", "W64", "RF64", "AIFF", "CAF"})
# decoded audio may fall short of the declared length by this much (resampling edges) before a warning
_TRUNCATION_TOLERANCE_S = 0.02
_TRUNCATION_TOLERANCE_FRACTION = 0.01


class AudioMosaicAudioClassificationPipeline(AudioClassificationPipeline):
    """`AudioClassificationPipeline` whose array inputs go straight to the feature extractor (see the module doc)."""

    def preprocess(self, inputs: Any):
        if isinstance(inputs, (str, bytes)):
            payload, name = _read_payload(inputs)
            inputs = decode_audio_bytes(
                payload, self.feature_extractor.sampling_rate, name, _min_samples(self.feature_extractor)
            )
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


def decode_audio_bytes(
    payload: bytes, sampling_rate: int, name: str | None = None, min_samples: int | None = None
) -> np.ndarray:
    """Decode an audio file's bytes with ffmpeg (transformers' `ffmpeg_read`: mono float32 at `sampling_rate`).

    Args:
        payload: the file's bytes.
        sampling_rate: output rate (the feature extractor's).
        name: how errors and warnings name the input (a path or URL); default `<N bytes>`.
        min_samples: decoded audio shorter than this raises a "too short" `ValueError` (`None`: no check).

    Raises:
        ValueError: undecodable input ("Could not decode audio ..."), or fewer than `min_samples` samples.

    Logs a warning when the audio decodes short of the length its header declares (see the module docstring).
    """
    from transformers.pipelines.audio_classification import ffmpeg_read

    name = repr(name) if name is not None else f"<{len(payload)} bytes>"
    try:
        audio = ffmpeg_read(payload, sampling_rate)
    except ValueError as err:  # ffmpeg's "Malformed soundfile" does not say which input
        if "ffmpeg was not found" in str(err):
            raise
        raise ValueError(f"Could not decode audio {name} (empty, corrupt or not audio): {err}") from err
    decoded_s = audio.shape[0] / sampling_rate
    declared = declared_length(payload)
    if declared is not None:
        frames, rate = declared
        declared_s = frames / rate
        if decoded_s < declared_s - max(_TRUNCATION_TOLERANCE_S, _TRUNCATION_TOLERANCE_FRACTION * declared_s):
            logger.warning(
                f"Audio {name} looks truncated: its header declares {declared_s:.3f} s ({frames} samples at {rate} "
                f"Hz) but only {decoded_s:.3f} s ({100 * decoded_s / declared_s:.0f} %) could be decoded; the decoded "
                "prefix is classified. Re-download or re-encode the file if this is unexpected."
            )
    if min_samples is not None and audio.shape[0] < min_samples:
        raise ValueError(
            f"Audio {name} is too short: it decodes to {audio.shape[0]} samples ({1000 * decoded_s:.1f} ms) at "
            f"{sampling_rate} Hz, but the filter bank needs at least {min_samples} samples "
            f"({1000 * min_samples / sampling_rate:g} ms, one 25 ms analysis frame). Use a longer recording or pad "
            "it with silence."
        )
    return audio


def declared_length(payload: bytes) -> tuple[int, int] | None:
    """`(frames, sampling_rate)` that the file header declares, for formats whose header states the exact length
    (FLAC STREAMINFO, WAV-family and AIFF/CAF data chunks); `None` when unknown or soundfile cannot parse it.

    libsndfile clips a WAV data chunk that runs past the end of the file to the bytes present (and logs
    `data : <declared> (should be <present>)`); the declared size is recovered from that log.
    """
    try:
        import soundfile as sf

        info = sf.info(io.BytesIO(payload))
    except Exception:  # noqa: BLE001 - unknown or broken header: no check
        return None
    if info.format not in _EXACT_LENGTH_FORMATS or info.samplerate <= 0 or not 0 < info.frames < 2**62:
        return None
    frames = int(info.frames)
    log = info.extra_info or ""
    chunk = re.search(r"^data\s*:\s*(\d+)\s*\(should be \d+\)", log, re.MULTILINE)
    align = re.search(r"Block Align\s*:\s*(\d+)", log)
    if chunk and align and int(align.group(1)) > 0:
        frames = max(frames, int(chunk.group(1)) // int(align.group(1)))
    return frames, int(info.samplerate)


def _read_payload(inputs: str | bytes) -> tuple[bytes, str | None]:
    """The bytes of a local path, an http(s) URL (fetched as transformers does) or bytes, and a name for messages."""
    if isinstance(inputs, bytes):
        return inputs, None
    if inputs.startswith(("http://", "https://")):
        from transformers.pipelines import audio_classification as parent

        client = getattr(parent, "httpx", None)
        if client is not None:
            return client.get(inputs, follow_redirects=True).content, inputs
        from urllib.request import urlopen  # pragma: no cover - transformers versions without httpx

        with urlopen(inputs) as response:  # pragma: no cover
            return response.read(), inputs
    with open(inputs, "rb") as handle:
        return handle.read(), inputs


def _min_samples(feature_extractor: Any) -> int | None:
    """Samples of one analysis frame (the fewest an `AudioMosaicFeatureExtractor` accepts); `None` for others."""
    geometry = getattr(feature_extractor, "_frame_geometry", None)
    return int(geometry[0]) if _handles_resampling(feature_extractor) and geometry else None


def _handles_resampling(feature_extractor: Any) -> bool:
    """Only feature extractors with our `resample` argument get raw arrays; any other falls back to the parent."""
    return type(feature_extractor).__name__ == "AudioMosaicFeatureExtractor"
