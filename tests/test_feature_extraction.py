"""Tests for modeling_audiomosaic.feature_extraction (Kaldi fbank + AudioMosaicFeatureExtractor)."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from transformers import ASTFeatureExtractor

from modeling_audiomosaic.feature_extraction import (
    FEATURE_EXTRACTOR_PRESETS,
    AudioMosaicFeatureExtractor,
    kaldi_fbank,
    kaldi_mel_banks,
    num_kaldi_frames,
)
from modeling_audiomosaic.feature_extraction import feature_extraction_audiomosaic as fe_module

SR = 16000
EPS = 1.1920928955078125e-07


def make_clip(num_samples: int, seed: int = 0, sr: int = SR, noise: float = 0.05) -> np.ndarray:
    """Noise plus a few sines, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / sr
    wave = noise * rng.standard_normal(num_samples)
    for amp, freq in ((0.2, 220.0 + 37 * seed), (0.1, 1234.5), (0.05, 5100.0)):
        if freq < sr / 2:
            wave += amp * np.sin(2 * np.pi * freq * t + seed)
    return wave.astype(np.float32)


def sines(num_samples: int, sr: int) -> np.ndarray:
    """Deterministic sum of sines (identical content at any sampling rate)."""
    t = np.arange(num_samples) / sr
    wave = 0.3 * np.sin(2 * np.pi * 300.0 * t) + 0.2 * np.sin(2 * np.pi * 1000.0 * t)
    wave = wave + 0.1 * np.sin(2 * np.pi * 2500 * t)
    return wave.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------------
# Independent float64 reference (straightforward per-frame loop, written from the Kaldi algorithm)
# ---------------------------------------------------------------------------------------------------------------------


def _kaldi_mel(freq: float) -> float:
    return 1127.0 * math.log(1.0 + freq / 700.0)


_REFERENCE_BANKS: dict[int, np.ndarray] = {}


def reference_mel_banks(num_bins: int = 128, sr: int = SR, n_fft: int = 512) -> np.ndarray:
    if num_bins in _REFERENCE_BANKS:
        return _REFERENCE_BANKS[num_bins]
    mel_low, mel_high = _kaldi_mel(20.0), _kaldi_mel(sr / 2)
    delta = (mel_high - mel_low) / (num_bins + 1)
    banks = np.zeros((num_bins, n_fft // 2 + 1))
    for j in range(num_bins):
        left, center, right = mel_low + j * delta, mel_low + (j + 1) * delta, mel_low + (j + 2) * delta
        for k in range(n_fft // 2):  # the Nyquist bin keeps weight 0
            mel = _kaldi_mel(k * sr / n_fft)
            if left < mel <= center:
                banks[j, k] = (mel - left) / (center - left)
            elif center < mel < right:
                banks[j, k] = (right - mel) / (right - center)
    _REFERENCE_BANKS[num_bins] = banks
    return banks


def reference_fbank(wave: np.ndarray, num_bins: int = 128) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float64)
    size, hop, n_fft = 400, 160, 512
    banks = reference_mel_banks(num_bins)
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * i / (size - 1)) for i in range(size)])
    num_frames = 1 + (len(wave) - size) // hop
    out = np.empty((num_frames, num_bins))
    for t in range(num_frames):
        frame = wave[t * hop : t * hop + size].copy()
        frame -= frame.mean()
        for i in range(size - 1, 0, -1):
            frame[i] -= 0.97 * frame[i - 1]
        frame[0] -= 0.97 * frame[0]
        frame *= window
        spectrum = np.fft.rfft(frame, n=n_fft)
        power = spectrum.real**2 + spectrum.imag**2
        out[t] = np.log(np.maximum(banks @ power, EPS))
    return out


def assert_close_to_reference(ours: np.ndarray, ref: np.ndarray) -> None:
    """float32 vs float64 reference on raw log-mel.

    Rounding a float32 frame (input, window, FFT) adds white error about 1e-7 of the frame's peak amplitude to every
    FFT bin, so cells more than ~60 dB below the frame's strongest bin get log errors of a few 1e-4 (torchaudio's
    float32 path behaves the same). Cells within 60 dB of their frame maximum must match to 1e-4, every cell to 1e-3.
    """
    assert ours.shape == ref.shape
    err = np.abs(np.asarray(ours, dtype=np.float64) - ref)
    within_60db = ref > ref.max(axis=1, keepdims=True) - math.log(1e6)
    assert within_60db.mean() > 0.9
    assert err[within_60db].max() <= 1e-4
    assert err.max() <= 1e-3
    assert err.mean() <= 1e-5


# ---------------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fe() -> AudioMosaicFeatureExtractor:
    return AudioMosaicFeatureExtractor()


def make_ast(max_length: int, mean: float, std: float) -> ASTFeatureExtractor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "At least one mel filter has all zero values"
        return ASTFeatureExtractor(
            sampling_rate=SR, num_mel_bins=128, max_length=max_length, mean=mean, std=std, do_normalize=True
        )


# ---------------------------------------------------------------------------------------------------------------------
# kaldi_fbank
# ---------------------------------------------------------------------------------------------------------------------


def test_mel_banks_match_reference():
    np.testing.assert_allclose(kaldi_mel_banks(128, 512, SR, 20.0, 0.0), reference_mel_banks(128)[:, :256], atol=1e-12)
    np.testing.assert_allclose(kaldi_mel_banks(64, 512, SR, 20.0, 0.0), reference_mel_banks(64)[:, :256], atol=1e-12)


@pytest.mark.parametrize("num_samples", [400, 560, 12345, 32000])
def test_kaldi_fbank_matches_float64_reference(num_samples):
    wave = make_clip(num_samples, seed=num_samples)
    ref = reference_fbank(wave)
    ours = kaldi_fbank(torch.from_numpy(wave))
    assert ours.dtype == torch.float32 and ours.shape == ref.shape
    assert_close_to_reference(ours.numpy(), ref)
    # the float64 path removes the float32 rounding: agreement everywhere
    ours64 = kaldi_fbank(torch.from_numpy(wave).double(), dtype=torch.float64)
    assert ours64.dtype == torch.float64
    assert np.abs(ours64.numpy() - ref).max() <= 1e-9


def test_kaldi_fbank_reference_with_silence_and_quiet_audio():
    wave = make_clip(8000, seed=3)
    wave[4000:] = 0.0  # silent tail: fully silent frames are floored at log(eps)
    wave[:1000] *= 1e-3  # quiet head
    ref = reference_fbank(wave)
    ours = kaldi_fbank(wave)  # numpy input is accepted
    assert_close_to_reference(ours.numpy(), ref)
    assert np.allclose(ours.numpy()[-10:], math.log(EPS))


def test_kaldi_fbank_other_bin_count_matches_reference():
    wave = make_clip(6000, seed=11)
    ours = kaldi_fbank(torch.from_numpy(wave), num_mel_bins=64)
    assert_close_to_reference(ours.numpy(), reference_fbank(wave, num_bins=64))


def test_kaldi_fbank_frame_counts():
    assert num_kaldi_frames(160000) == 998
    assert [num_kaldi_frames(n) for n in (399, 400, 559, 560)] == [0, 1, 1, 2]
    assert kaldi_fbank(torch.zeros(160000)).shape == (998, 128)
    assert kaldi_fbank(torch.zeros(2, 560)).shape == (2, 2, 128)


def test_kaldi_fbank_lengths_mask_and_batch_equivalence():
    clips = [make_clip(n, seed=i) for i, n in enumerate((16000, 7000, 400, 300))]
    batch = torch.zeros(len(clips), 16000)
    for i, clip in enumerate(clips):
        batch[i, : len(clip)] = torch.from_numpy(clip)
    feats, num_frames = kaldi_fbank(batch, lengths=[len(c) for c in clips])
    assert feats.shape == (4, 98, 128)
    assert num_frames.tolist() == [98, 42, 1, 0]
    for i, clip in enumerate(clips):
        n = int(num_frames[i])
        if n:
            alone = kaldi_fbank(torch.from_numpy(clip))
            torch.testing.assert_close(feats[i, :n], alone, atol=1e-5, rtol=0)
        assert torch.all(feats[i, n:] == 0)


def test_kaldi_fbank_independent_of_chunking_and_does_not_modify_input():
    wave = torch.from_numpy(np.stack([make_clip(20000, seed=1), make_clip(20000, seed=2)]))
    copy = wave.clone()
    default = kaldi_fbank(wave)
    torch.testing.assert_close(kaldi_fbank(wave, chunk_frames=7), default, atol=1e-5, rtol=0)
    torch.testing.assert_close(kaldi_fbank(wave, chunk_frames=10**6), default, atol=1e-5, rtol=0)
    assert torch.equal(wave, copy)
    # a non-contiguous view is fine too
    strided = torch.from_numpy(np.stack([make_clip(40000, seed=1)]))[:, ::2]
    # (frame sums may be reduced in a different order: float32 rounding level, largest in the weakest cells)
    diff = (kaldi_fbank(strided) - kaldi_fbank(strided.contiguous())).abs()
    assert diff.max() <= 1e-3 and diff.mean() <= 1e-5


def test_kaldi_fbank_errors():
    with pytest.raises(ValueError, match="at least 400 samples"):
        kaldi_fbank(torch.zeros(399))
    with pytest.raises(TypeError, match="floating-point"):
        kaldi_fbank(torch.zeros(1000, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"shape \(N,\) or \(B, N\)"):
        kaldi_fbank(torch.zeros(2, 2, 1000))
    with pytest.raises(ValueError, match="lengths has 1 entries"):
        kaldi_fbank(torch.zeros(2, 1000), lengths=[1000])
    with pytest.raises(ValueError, match="window_type"):
        kaldi_fbank(torch.zeros(1000), window_type="kaiser")


# ---------------------------------------------------------------------------------------------------------------------
# Parity with transformers' ASTFeatureExtractor
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["audioset", "esc50", "speechcommands"])
def test_parity_with_ast_feature_extractor(preset):
    params = FEATURE_EXTRACTOR_PRESETS[preset]
    ours = AudioMosaicFeatureExtractor.from_preset(preset)
    ast = make_ast(**params)
    # 0.5 s, 3.3 s, 10 s and 12.7 s: shorter and longer than every preset's max_length
    clips = [make_clip(n, seed=i) for i, n in enumerate((8000, 52800, 160000, 203200))]
    expected = ast(clips, sampling_rate=SR, return_tensors="np")["input_values"]
    got = ours(clips, sampling_rate=SR, return_tensors="np")["input_values"]
    assert got.shape == expected.shape == (4, params["max_length"], 128)
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-3


# ---------------------------------------------------------------------------------------------------------------------
# Padding, cropping and normalisation
# ---------------------------------------------------------------------------------------------------------------------


def test_max_length_padding_cropping_and_normalisation(fe):
    pad_value = (0.0 - fe.mean) / (2 * fe.std)
    short, ten_s, long = make_clip(16000, seed=1), make_clip(160000, seed=2), make_clip(192000, seed=3)
    out = fe([short, ten_s, long], sampling_rate=SR, return_tensors="np", return_attention_mask=True)
    values, mask = out["input_values"], out["attention_mask"]
    assert values.shape == (3, 1024, 128)
    assert mask.dtype == np.int32 and mask.sum(axis=1).tolist() == [98, 998, 1024]
    # padded cells are raw zeros normalised, like the original / AST (about +0.467 for AudioSet)
    np.testing.assert_allclose(values[0, 98:], pad_value, atol=1e-6)
    np.testing.assert_allclose(values[1, 998:], pad_value, atol=1e-6)
    assert pad_value == pytest.approx(0.46703, abs=1e-5)
    # valid frames are the normalised Kaldi fbank; the long clip is cropped to its first 1024 frames
    for i, clip in enumerate((short, ten_s, long)):
        raw = kaldi_fbank(torch.from_numpy(clip)).numpy()
        n = min(raw.shape[0], 1024)
        np.testing.assert_allclose(values[i, :n], (raw[:n] - fe.mean) / (2 * fe.std), atol=1e-5)
    # without normalisation the padding is exactly the raw padding value
    raw_fe = AudioMosaicFeatureExtractor(do_normalize=False)
    raw_out = raw_fe(short, sampling_rate=SR, return_tensors="np")["input_values"]
    assert np.all(raw_out[0, 98:] == 0.0)


def test_padding_longest(fe):
    clips = [make_clip(n, seed=i) for i, n in enumerate((16000, 40000, 48000))]  # 98, 248, 298 frames
    out = fe(clips, sampling_rate=SR, padding="longest", return_tensors="pt")
    values, mask = out["input_values"], out["attention_mask"]
    assert values.shape == (3, 304, 128)  # 298 rounded up to a multiple of 16
    assert mask.dtype == torch.int32 and mask.shape == (3, 304)
    assert mask.sum(dim=1).tolist() == [98, 248, 298]
    assert torch.all(mask[0, :98] == 1) and torch.all(mask[0, 98:] == 0)
    pad_value = (0.0 - fe.mean) / (2 * fe.std)
    for i, clip in enumerate(clips):
        n = int(mask[i].sum())
        alone = fe(clip, sampling_rate=SR, padding="longest", return_tensors="pt")
        assert alone["input_values"].shape[1] == -(-n // 16) * 16
        torch.testing.assert_close(values[i, :n], alone["input_values"][0, :n], atol=1e-5, rtol=0)
        torch.testing.assert_close(values[i, n:], torch.full_like(values[i, n:], pad_value), atol=1e-6, rtol=0)
    # padding=True means "longest"
    torch.testing.assert_close(fe(clips, sampling_rate=SR, padding=True, return_tensors="pt")["input_values"], values)
    # other multiples
    assert fe(clips, sampling_rate=SR, padding="longest", pad_to_multiple_of=1, return_tensors="np")[
        "input_values"
    ].shape == (3, 298, 128)


def test_padding_longest_cap_and_truncation(fe):
    clips = [make_clip(16000, seed=1), make_clip(192000, seed=2)]  # 98 and 1198 frames
    capped = fe(clips, sampling_rate=SR, padding="longest", return_tensors="np")
    assert capped["input_values"].shape == (2, 1024, 128)
    assert capped["attention_mask"].sum(axis=1).tolist() == [98, 1024]
    uncapped = fe(clips, sampling_rate=SR, padding="longest", truncation=False, return_tensors="np")
    assert uncapped["input_values"].shape == (2, 1200, 128)
    assert uncapped["attention_mask"].sum(axis=1).tolist() == [98, 1198]
    np.testing.assert_allclose(uncapped["input_values"][:, :1024], capped["input_values"], atol=1e-6)
    # max_length padding without truncation keeps long clips whole
    no_trunc = fe(clips, sampling_rate=SR, truncation=False, return_tensors="np")
    assert no_trunc["input_values"].shape == (2, 1200, 128)
    # max_length override
    assert fe(clips, sampling_rate=SR, max_length=64, return_tensors="np")["input_values"].shape == (2, 64, 128)


def test_do_not_pad(fe):
    clips = [make_clip(16000, seed=1), make_clip(16050, seed=2)]  # both 98 frames
    out = fe(clips, sampling_rate=SR, padding=False, return_tensors="np", return_attention_mask=True)
    assert out["input_values"].shape == (2, 98, 128)
    assert out["attention_mask"].all()
    assert fe(make_clip(192000), sampling_rate=SR, padding="do_not_pad", return_tensors="np")[
        "input_values"
    ].shape == (1, 1024, 128)
    with pytest.raises(ValueError, match="same number of frames.*clip 0: 98, clip 1: 298"):
        fe([make_clip(16000), make_clip(48000)], sampling_rate=SR, padding=False)
    with pytest.raises(ValueError, match="Invalid padding"):
        fe(make_clip(16000), sampling_rate=SR, padding="shortest")


def test_return_types(fe):
    clips = [make_clip(16000, seed=1), make_clip(20000, seed=2)]
    as_list = fe(clips, sampling_rate=SR)
    assert isinstance(as_list["input_values"], list) and len(as_list["input_values"]) == 2
    assert isinstance(as_list["input_values"][0], np.ndarray) and as_list["input_values"][0].shape == (1024, 128)
    assert "attention_mask" not in as_list
    as_np = fe(clips, sampling_rate=SR, return_tensors="np")
    assert isinstance(as_np["input_values"], np.ndarray) and as_np["input_values"].dtype == np.float32
    as_pt = fe(clips, sampling_rate=SR, return_tensors="pt")
    assert isinstance(as_pt["input_values"], torch.Tensor) and as_pt["input_values"].dtype == torch.float32
    np.testing.assert_array_equal(as_pt["input_values"].numpy(), as_np["input_values"])
    np.testing.assert_array_equal(np.stack(as_list["input_values"]), as_np["input_values"])
    longest_list = fe(clips, sampling_rate=SR, padding="longest")
    assert isinstance(longest_list["attention_mask"], list) and longest_list["attention_mask"][0].dtype == np.int32
    assert "attention_mask" not in fe(clips, sampling_rate=SR, padding="longest", return_attention_mask=False)
    with pytest.raises(ValueError, match="return_tensors"):
        fe(clips, sampling_rate=SR, return_tensors="jax")


# ---------------------------------------------------------------------------------------------------------------------
# Input layouts and dtypes
# ---------------------------------------------------------------------------------------------------------------------


def test_batch_array_equals_list_and_tensor_input(fe):
    batch = np.stack([make_clip(24000, seed=i) for i in range(3)])
    from_array = fe(batch, sampling_rate=SR, return_tensors="np")["input_values"]
    from_list = fe(list(batch), sampling_rate=SR, return_tensors="np")["input_values"]
    from_tensor = fe(torch.from_numpy(batch), sampling_rate=SR, return_tensors="np")["input_values"]
    from_tensor_list = fe([torch.from_numpy(c) for c in batch], sampling_rate=SR, return_tensors="np")["input_values"]
    from_pylists = fe([c.tolist() for c in batch], sampling_rate=SR, return_tensors="np")["input_values"]
    assert from_array.shape == (3, 1024, 128)
    for other in (from_list, from_tensor, from_tensor_list, from_pylists):
        np.testing.assert_allclose(other, from_array, atol=1e-5)
    single = fe(batch[1], sampling_rate=SR, return_tensors="np")["input_values"]
    single_list = fe(batch[1].tolist(), sampling_rate=SR, return_tensors="np")["input_values"]
    assert single.shape == (1, 1024, 128)
    np.testing.assert_allclose(single[0], from_array[1], atol=1e-5)
    np.testing.assert_allclose(single_list, single, atol=1e-6)
    f64 = fe(batch.astype(np.float64), sampling_rate=SR, return_tensors="np")["input_values"]
    np.testing.assert_allclose(f64, from_array, atol=1e-6)
    out_dev = fe(torch.from_numpy(batch), sampling_rate=SR, return_tensors="pt", device="cpu")["input_values"]
    np.testing.assert_allclose(out_dev.numpy(), from_array, atol=1e-6)


@pytest.mark.parametrize(
    "dtype, to_float",
    [
        (np.int16, lambda q: q.astype(np.float32) / 32768.0),
        (np.int32, lambda q: q.astype(np.float32) / 2.0**31),
        (np.int8, lambda q: q.astype(np.float32) / 128.0),
        (np.uint8, lambda q: (q.astype(np.float32) - 128.0) / 128.0),
    ],
)
def test_integer_pcm_scaling(fe, dtype, to_float):
    info = np.iinfo(dtype)
    wave = make_clip(16000, seed=5)
    if dtype == np.uint8:
        pcm = np.clip(np.round(wave * 127 + 128), info.min, info.max).astype(dtype)
    else:
        pcm = np.clip(np.round(wave * info.max), info.min, info.max).astype(dtype)
    expected = fe(to_float(pcm), sampling_rate=SR, return_tensors="np")["input_values"]
    got = fe(pcm, sampling_rate=SR, return_tensors="np")["input_values"]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    got_tensor = fe(torch.from_numpy(pcm), sampling_rate=SR, return_tensors="np")["input_values"]
    np.testing.assert_allclose(got_tensor, expected, atol=1e-6)


def test_int16_matches_float_recording(fe):
    wave = make_clip(32000, seed=9)
    pcm = np.round(wave * 32767).astype(np.int16)
    from_pcm = fe(pcm, sampling_rate=SR, return_tensors="np")["input_values"]
    from_float = fe(wave, sampling_rate=SR, return_tensors="np")["input_values"]
    assert np.abs(from_pcm - from_float).max() < 0.05  # only 16-bit quantisation differs


def test_stereo_mixdown(fe):
    left, right = make_clip(20000, seed=1), make_clip(20000, seed=2)
    mono = fe([(left + right) / 2], sampling_rate=SR, return_tensors="np")["input_values"]
    channels_first = np.stack([left, right])  # (2, N)
    for clip in (channels_first, channels_first.T, torch.from_numpy(channels_first)):
        got = fe([clip], sampling_rate=SR, return_tensors="np")["input_values"]
        np.testing.assert_allclose(got, mono, atol=1e-5)
    # mixed with mono clips in one batch
    got = fe([left, channels_first.T], sampling_rate=SR, return_tensors="np")["input_values"]
    np.testing.assert_allclose(got[1], mono[0], atol=1e-5)
    # 5.1 audio: (N, 6)
    six = np.stack([make_clip(20000, seed=s) for s in range(6)], axis=1)
    got = fe([six], sampling_rate=SR, return_tensors="np")["input_values"]
    expected = fe([six.mean(axis=1)], sampling_rate=SR, return_tensors="np")["input_values"]
    np.testing.assert_allclose(got, expected, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------------
# Resampling
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["soxr", "scipy"])
@pytest.mark.parametrize("orig_sr", [44100, 8000])
def test_resampling(fe, monkeypatch, backend, orig_sr):
    if backend == "scipy":
        monkeypatch.setitem(sys.modules, "soxr", None)  # makes `import soxr` raise ImportError
    else:
        pytest.importorskip("soxr")
    reference_raw = kaldi_fbank(torch.from_numpy(sines(SR, SR))).numpy()
    out = fe(sines(orig_sr, orig_sr), sampling_rate=orig_sr, resample=True, padding="do_not_pad", return_tensors="np")
    values = out["input_values"][0]
    assert values.shape == (98, 128)  # 1 s at 16 kHz
    raw = values * (2 * fe.std) + fe.mean
    # Compare well-excited cells (the sines), away from the resampling filter's edge transients.
    strong = reference_raw > reference_raw.max() - 6.0
    inner = np.zeros_like(strong)
    inner[3:-3] = True
    diff = np.abs(raw - reference_raw)[strong & inner]
    assert diff.size > 500
    assert diff.mean() < 0.05 and diff.max() < 0.5
    # resampling can also be switched on in the constructor
    resampling_fe = AudioMosaicFeatureExtractor(resample=True)
    again = resampling_fe(sines(orig_sr, orig_sr), sampling_rate=orig_sr, padding=False, return_tensors="np")
    np.testing.assert_allclose(again["input_values"], out["input_values"], atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# Errors and warnings
# ---------------------------------------------------------------------------------------------------------------------


def test_sampling_rate_errors_and_warning(fe, caplog):
    clip = make_clip(16000)
    with pytest.raises(ValueError, match=r"16000 Hz, but the audio has 44100 Hz.*resample=True.*beforehand"):
        fe(clip, sampling_rate=44100)
    with caplog.at_level(logging.WARNING):
        out = fe(clip, return_tensors="np")
    assert "strongly recommended to pass the `sampling_rate`" in caplog.text
    assert out["input_values"].shape == (1, 1024, 128)


def test_empty_inputs(fe):
    with pytest.raises(ValueError, match="empty list"):
        fe([], sampling_rate=SR)
    with pytest.raises(ValueError, match="empty batch"):
        fe(np.zeros((0, 16000), dtype=np.float32), sampling_rate=SR)
    with pytest.raises(ValueError, match="clip 1 is empty"):
        fe([make_clip(16000), np.zeros(0, dtype=np.float32)], sampling_rate=SR)
    with pytest.raises(ValueError, match="clip 0 is empty"):
        fe(np.zeros(0, dtype=np.float32), sampling_rate=SR)


def test_too_short_clip(fe):
    with pytest.raises(ValueError, match=r"clip 1 has 399 samples; at least 400 samples"):
        fe([make_clip(16000), make_clip(399)], sampling_rate=SR)
    with pytest.raises(ValueError, match=r"clip 0 has 200 samples after resampling to 16000 Hz; at least 400"):
        fe(make_clip(100, sr=8000), sampling_rate=8000, resample=True)
    assert fe(make_clip(400), sampling_rate=SR, return_tensors="np", return_attention_mask=True)[
        "attention_mask"
    ].sum() == 1


def test_channels_last_batch_error_says_axes_look_swapped(fe):
    """A soundfile-style (samples, channels) array passed bare is read as a batch of tiny clips: the error says so."""
    six = np.stack([make_clip(20000, seed=s) for s in range(6)], axis=1)  # (20000, 6): 5.1 audio, channels last
    for kwargs in ({"sampling_rate": SR}, {"sampling_rate": 48000, "resample": True}):
        with pytest.raises(ValueError, match=r"clip 0 has \d samples") as info:
            fe(six, **kwargs)
        message = str(info.value)
        assert "(20000, 6)" in message and "axes look swapped" in message and "(samples, channels)" in message
        assert "audio.T" in message and "[audio]" in message and "audio.mean(axis=1)" in message
    # the suggested fix works: the same clip wrapped in a list is mixed down
    got = fe([six], sampling_rate=SR, return_tensors="np")["input_values"]
    np.testing.assert_allclose(got, fe(six.mean(axis=1), sampling_rate=SR, return_tensors="np")["input_values"],
                               atol=1e-5)
    # a genuine batch of too-short clips (more samples than clips) gets no such hint
    with pytest.raises(ValueError, match="clip 0 has 300 samples") as info:
        fe(np.zeros((2, 300), dtype=np.float32), sampling_rate=SR)
    assert "swapped" not in str(info.value)


def test_non_finite_values(fe):
    bad = make_clip(16000)
    bad[123] = np.nan
    with pytest.raises(ValueError, match="clip 0 contains 1 NaN or infinite"):
        fe(bad, sampling_rate=SR)
    inf = make_clip(16000)
    inf[5:7] = np.inf
    with pytest.raises(ValueError, match="clip 2 contains 2 NaN or infinite"):
        fe([make_clip(16000), make_clip(16000), inf], sampling_rate=SR)
    with pytest.raises(ValueError, match="clip 1 contains"):
        fe(np.stack([make_clip(16000), inf]), sampling_rate=SR)


def test_dimension_errors(fe):
    with pytest.raises(ValueError, match="3 dimensions"):
        fe(np.zeros((2, 2, 16000), dtype=np.float32), sampling_rate=SR)
    with pytest.raises(ValueError, match="3 dimensions"):
        fe(torch.zeros(2, 2, 16000), sampling_rate=SR)
    with pytest.raises(ValueError, match=r"clip 1 has shape \(2, 2, 16000\)"):
        fe([make_clip(16000), np.zeros((2, 2, 16000), dtype=np.float32)], sampling_rate=SR)
    with pytest.raises(ValueError, match="does not look like multi-channel audio"):
        fe([np.zeros((16, 16000), dtype=np.float32)], sampling_rate=SR)
    with pytest.raises(ValueError, match="scalar"):
        fe(np.float32(1.0), sampling_rate=SR)


@pytest.mark.parametrize(
    "raw, match",
    [
        (np.ones(16000, dtype=bool), "clip 0 has non-numeric dtype bool"),
        (np.ones(16000, dtype=np.complex64), "complex"),
        (np.array([0.1] * 16000, dtype=object), "object"),
        (np.ones(16000, dtype=np.int64), "int64"),
        (torch.ones(16000, dtype=torch.bool), "torch.bool"),
        (torch.ones(16000, dtype=torch.complex64), "torch.complex64"),
        ([make_clip(16000), "audio.wav"], "clip 1 is a str"),
        ([make_clip(16000), [[0.1, 0.2], [0.3]]], "clip 1 could not be converted"),
        ([[True] * 16000], "clip 0 has non-numeric dtype bool"),
        (["a"] * 16000, "clip 0 is a str"),
        ("audio.wav", "unsupported type str"),
        ({"array": make_clip(16000)}, "unsupported type dict"),
    ],
)
def test_dtype_errors(fe, raw, match):
    with pytest.raises(TypeError, match=match):
        fe(raw, sampling_rate=SR)


def test_mixed_list_of_numbers_and_arrays_is_an_error(fe):
    with pytest.raises(TypeError, match="clip 1 is a scalar"):
        fe([make_clip(16000), 0.5], sampling_rate=SR)


# ---------------------------------------------------------------------------------------------------------------------
# Presets and serialisation
# ---------------------------------------------------------------------------------------------------------------------


def test_presets():
    for name, params in FEATURE_EXTRACTOR_PRESETS.items():
        extractor = AudioMosaicFeatureExtractor.from_preset(name)
        for key, value in params.items():
            assert getattr(extractor, key) == value
    overridden = AudioMosaicFeatureExtractor.from_preset("esc50", max_length=256, return_attention_mask=True)
    assert overridden.max_length == 256 and overridden.return_attention_mask and overridden.mean == -6.6268077
    with pytest.raises(ValueError, match="audioset, esc50, speechcommands"):
        AudioMosaicFeatureExtractor.from_preset("librispeech")


def test_save_and_load_round_trip(tmp_path):
    extractor = AudioMosaicFeatureExtractor.from_preset("speechcommands", return_attention_mask=True, resample=True)
    clips = [make_clip(16000, seed=1), make_clip(12000, seed=2)]
    expected = extractor(clips, sampling_rate=SR, return_tensors="np")  # populates the fbank caches
    extractor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert config["feature_extractor_type"] == "AudioMosaicFeatureExtractor"
    expected_keys = {
        "feature_size": 128,
        "sampling_rate": 16000,
        "num_mel_bins": 128,
        "max_length": 128,
        "padding_value": 0.0,
        "do_normalize": True,
        "mean": -6.845978,
        "std": 5.5654526,
        "return_attention_mask": True,
        "pad_to_multiple_of": 16,
        "resample": True,
    }
    for key, value in expected_keys.items():
        assert config[key] == value, key
    # only plain JSON scalars: no serialised arrays / tensors
    # (auto_map, a dict of class paths, appears once modeling_audiomosaic registered the class for remote code)
    plain = {k: v for k, v in config.items() if k != "auto_map"}
    assert all(isinstance(v, (str, int, float, bool, type(None))) for v in plain.values()), config
    assert not any(isinstance(v, torch.Tensor) for v in extractor.to_dict().values())

    loaded = AudioMosaicFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.to_dict() == extractor.to_dict()
    got = loaded(clips, sampling_rate=SR, return_tensors="np")
    np.testing.assert_array_equal(got["input_values"], expected["input_values"])
    np.testing.assert_array_equal(got["attention_mask"], expected["attention_mask"])


def test_remote_code_loading_in_clean_process(tmp_path):
    """The module is self-contained: save with auto_map, load via AutoFeatureExtractor + trust_remote_code in a process
    where the project packages are not importable."""
    extractor = AudioMosaicFeatureExtractor.from_preset("esc50")
    model_dir = tmp_path / "model"
    previous = AudioMosaicFeatureExtractor.__dict__.get("_auto_class")  # set when modeling_audiomosaic is imported
    try:
        AudioMosaicFeatureExtractor.register_for_auto_class()
        extractor.save_pretrained(model_dir)
    finally:
        if previous is None:
            del AudioMosaicFeatureExtractor._auto_class  # back to the inherited default
        else:
            AudioMosaicFeatureExtractor._auto_class = previous
    assert (model_dir / "feature_extraction_audiomosaic.py").exists()
    config = json.loads((model_dir / "preprocessor_config.json").read_text())
    assert config["auto_map"]["AutoFeatureExtractor"].endswith("AudioMosaicFeatureExtractor")

    clip = make_clip(24000, seed=4)
    np.save(tmp_path / "clip.npy", clip)
    expected = extractor(clip, sampling_rate=SR, return_tensors="np")["input_values"]
    np.save(tmp_path / "expected.npy", expected)
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class _Block(importlib.abc.MetaPathFinder):  # an editable install would otherwise still find the package
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("modeling_audiomosaic", "feature_extraction"):
                    raise ImportError(name + " is blocked in this process")
                return None

        sys.meta_path.insert(0, _Block())
        import numpy as np
        from transformers import AutoFeatureExtractor
        try:
            import modeling_audiomosaic.feature_extraction  # noqa: F401
            raise SystemExit("project package must not be importable here")
        except ImportError:
            pass
        fe = AutoFeatureExtractor.from_pretrained({str(model_dir)!r}, trust_remote_code=True)
        assert type(fe).__name__ == "AudioMosaicFeatureExtractor", type(fe)
        assert fe.max_length == 512 and fe.mean == -6.6268077
        out = fe(np.load({str(tmp_path / "clip.npy")!r}), sampling_rate=16000, return_tensors="np")["input_values"]
        np.testing.assert_allclose(out, np.load({str(tmp_path / "expected.npy")!r}), atol=1e-6)
        print("OK")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


def test_remote_code_file_imports_only_allowed_modules():
    from transformers.dynamic_module_utils import get_imports

    third_party = set(get_imports(fe_module.__file__)) - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {"numpy", "torch", "transformers"}
