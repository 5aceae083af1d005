"""The one resampler and the one "any audio -> float32 mono" conversion: every path (feature extractor, data loader,
embedder, collators) uses the same functions, and their outputs are those of the implementations they replaced
(soxr HQ; scipy's polyphase filter with the exact rational ratio when soxr is missing; the feature extractor's dtype
rules and channel mix-down)."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from scipy.signal import resample_poly

import modeling_audiomosaic.embeddings as embeddings_module
from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicModel
from modeling_audiomosaic.embedding_inputs import as_clips
from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor, ExampleDecoder, audio_io, collators
from modeling_audiomosaic.feature_extraction import feature_extraction_audiomosaic as fe_module
from modeling_audiomosaic.feature_extraction.audio_io import (
    decode_audio,
    resample_audio,
    to_float32_array,
    to_float32_mono,
)

RATES = [(44100, 16000), (22050, 16000), (8000, 16000), (48000, 16000), (16000, 8000), (11025, 16000)]
# (rate in, rate out) -> reduced polyphase ratio (up, down) the scipy fallback must use
POLY_RATIOS = {(44100, 16000): (160, 441), (22050, 16000): (320, 441), (8000, 16000): (2, 1)}


def _wave(num_samples: int, seed: int = 0, channels: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (num_samples,) if channels is None else (num_samples, channels)
    return (0.1 * rng.standard_normal(shape)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# one resampler
# ---------------------------------------------------------------------------------------------------------------------


def test_every_path_shares_one_resampler():
    assert audio_io.resample_audio is fe_module.resample_audio
    assert embeddings_module.resample_audio is fe_module.resample_audio
    assert collators.resample_audio is fe_module.resample_audio
    assert not hasattr(fe_module, "_resample")


@pytest.mark.parametrize("rates", RATES, ids=[f"{a}->{b}" for a, b in RATES])
def test_resampler_is_soxr_hq(rates):
    orig, target = rates
    x = _wave(int(0.37 * orig), seed=orig)
    out = resample_audio(x, orig, target)
    expected = soxr.resample(x, orig, target, quality="HQ").astype(np.float32)
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, expected)
    assert abs(out.shape[0] - round(x.shape[0] * target / orig)) <= 1
    # 2-D (samples, channels): each channel as on its own
    stereo = _wave(int(0.2 * orig), seed=1, channels=2)
    both = resample_audio(stereo, orig, target)
    np.testing.assert_array_equal(both[:, 1], resample_audio(np.ascontiguousarray(stereo[:, 1]), orig, target))


@pytest.mark.parametrize("rates", list(POLY_RATIOS), ids=[f"{a}->{b}" for a, b in POLY_RATIOS])
def test_resampler_scipy_fallback_uses_the_exact_ratio(monkeypatch, rates):
    orig, target = rates
    x = _wave(int(0.37 * orig), seed=orig)
    monkeypatch.setitem(sys.modules, "soxr", None)  # `import soxr` fails
    up, down = POLY_RATIOS[rates]
    np.testing.assert_array_equal(resample_audio(x, orig, target), resample_poly(x, up, down).astype(np.float32))
    # a float rate with an exact rational value gives the same ratio
    np.testing.assert_array_equal(resample_audio(x, float(orig), target), resample_audio(x, orig, target))


def test_resampler_edge_cases():
    x = _wave(1000)
    same = resample_audio(x.astype(np.float64), 16000, 16000)
    assert same.dtype == np.float32 and np.array_equal(same, x)
    assert resample_audio(np.zeros(0, np.float32), 8000, 16000).shape == (0,)
    with pytest.raises(ValueError, match="must be positive"):
        resample_audio(x, 0, 16000)


def test_feature_extractor_data_loader_and_embedder_resample_identically(tmp_path):
    """A 44.1 kHz clip: the feature extractor (resample=True), the data loader (a file) and the embedder (an array)
    give exactly what the one resampler gives."""
    x = _wave(44100, seed=3)
    expected = resample_audio(x, 44100, 16000)
    fe = AudioMosaicFeatureExtractor.from_preset("speechcommands")
    via_fe = fe(x, sampling_rate=44100, resample=True, return_tensors="np")["input_values"]
    np.testing.assert_array_equal(via_fe, fe(expected, sampling_rate=16000, return_tensors="np")["input_values"])
    path = tmp_path / "clip.wav"
    sf.write(path, x, 44100, subtype="FLOAT")
    np.testing.assert_array_equal(decode_audio(path), expected)
    np.testing.assert_array_equal(ExampleDecoder().decode({"audio": str(path)})["audio"], expected)
    config = AudioMosaicConfig.from_preset(
        "speechcommands", hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64
    )
    embedder = embeddings_module.AudioMosaicEmbedder(AudioMosaicModel(config).eval(), fe)
    torch.testing.assert_close(embedder.embed(x, sampling_rate=44100), embedder.embed(expected), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------------
# one "any audio -> float32 mono" conversion
# ---------------------------------------------------------------------------------------------------------------------

BASE = _wave(1600, seed=5)
INT16 = np.round(BASE * 32768).astype(np.int16)
NORMALISER_TABLE = {
    "float32": (BASE, BASE),
    "float64": (BASE.astype(np.float64), BASE),
    "int16": (INT16, INT16.astype(np.float32) / 32768),
    "int32": (INT16.astype(np.int32) << 16, INT16.astype(np.float32) / 32768),
    "int8": (np.array([-128, 0, 64], np.int8), np.array([-1.0, 0.0, 0.5], np.float32)),
    "uint8": (np.array([0, 128, 192], np.uint8), np.array([-1.0, 0.0, 0.5], np.float32)),
    "half_tensor": (torch.from_numpy(BASE).half(), torch.from_numpy(BASE).half().float().numpy()),
    "list": (BASE.tolist(), BASE),
    "channels_first": (np.stack([BASE, -0.5 * BASE]), np.stack([BASE, -0.5 * BASE]).mean(axis=0, dtype=np.float32)),
    "channels_last": (np.stack([BASE, -0.5 * BASE], 1), np.stack([BASE, -0.5 * BASE]).mean(axis=0, dtype=np.float32)),
    "int16_stereo": (np.stack([INT16, INT16 // 2]), np.stack([INT16, INT16 // 2]).astype(np.float32).mean(0) / 32768),
}


@pytest.mark.parametrize("name", list(NORMALISER_TABLE))
def test_to_float32_mono_table(name):
    audio, expected = NORMALISER_TABLE[name]
    out = to_float32_mono(audio)
    assert out.dtype == np.float32 and out.ndim == 1
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    "audio, error, match",
    [
        (np.ones(100, dtype=bool), TypeError, "bool"),
        (np.ones(100, dtype=np.int64), TypeError, "int64"),
        (torch.ones(100, dtype=torch.complex64), TypeError, "complex"),
        (np.zeros((16, 8000), np.float32), ValueError, "does not look like multi-channel audio"),
        (np.zeros((2, 2, 100), np.float32), ValueError, "shape"),
    ],
    ids=["bool", "int64", "complex", "16_channels", "3d"],
)
def test_to_float32_mono_errors(audio, error, match):
    with pytest.raises(error, match=match):
        to_float32_mono(audio)


@pytest.mark.parametrize("name", ["int16", "half_tensor", "channels_first", "channels_last", "int16_stereo"])
def test_data_loader_embedder_and_feature_extractor_use_the_same_conversion(name):
    audio, _ = NORMALISER_TABLE[name]
    expected = to_float32_mono(audio)
    # data loader: an already decoded array in a record
    decoded = ExampleDecoder(min_samples=0).decode({"audio": {"array": audio, "sampling_rate": 16000}})
    np.testing.assert_array_equal(decoded["audio"], expected)
    # embedder: a clip inside a list
    np.testing.assert_array_equal(as_clips([audio])[0], expected)
    # feature extractor: a clip inside a list
    fe = AudioMosaicFeatureExtractor.from_preset("speechcommands")
    np.testing.assert_array_equal(
        fe([audio], sampling_rate=16000, return_tensors="np")["input_values"],
        fe([expected], sampling_rate=16000, return_tensors="np")["input_values"],
    )


def test_decoded_array_errors_become_skip_reasons():
    decoder = ExampleDecoder(min_samples=0)
    for audio, reason in [
        (np.ones(100, dtype=np.int64), "bad_dtype"),
        (np.zeros((16, 8000), np.float32), "undecodable"),
        (np.zeros((2, 0), np.float32), "empty"),
    ]:
        assert decoder.decode({"audio": {"array": audio, "sampling_rate": 16000}}) is None
    assert decoder.skip_counter.counts == {"bad_dtype": 1, "undecodable": 1, "empty": 1}


def test_to_float32_array_keeps_the_shape():
    out = to_float32_array(np.stack([INT16, INT16]))
    assert out.shape == (2, 1600) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], INT16.astype(np.float32) / 32768)


def test_file_decoding_mixes_down_like_the_conversion(tmp_path):
    stereo = np.stack([BASE, -0.5 * BASE], 1)
    buffer = io.BytesIO()
    sf.write(buffer, stereo, 16000, format="WAV", subtype="FLOAT")
    np.testing.assert_array_equal(decode_audio(buffer.getvalue()), to_float32_mono(stereo))


def test_pcm16_wav_fast_path_reads_the_values_libsndfile_gives(tmp_path):
    from modeling_audiomosaic.feature_extraction.audio_io import read_audio

    pcm = np.array([-32768, -1, 0, 1, 12345, 32767] * 100, dtype=np.int16)
    stereo = np.stack([pcm, pcm[::-1]], axis=1)
    for container in ("WAV", "FLAC"):
        path = tmp_path / f"clip.{container.lower()}"
        sf.write(path, stereo, 16000, format=container, subtype="PCM_16")
        data, rate = read_audio(str(path))
        expected, _ = sf.read(path, dtype="float32", always_2d=True)
        assert rate == 16000 and data.dtype == np.float32 and np.array_equal(data, expected)
        assert data[0, 0] == -1.0 and data[5, 0] == np.float32(32767 / 32768)
