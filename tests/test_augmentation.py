"""Tests for modeling_audiomosaic.feature_extraction.augmentation (waveform augmentations and contrastive view
generation)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.signal
import scipy.stats
import torch

from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor
from modeling_audiomosaic.feature_extraction.augmentation import (
    AUGMENTATION_PRESETS,
    ContrastiveViewGenerator,
    WaveformAugmentation,
    butterworth_bandstop_sos,
    butterworth_highpass_sos,
    roll_and_gain,
    sample_beta_gain,
)
from modeling_audiomosaic.feature_extraction.augmentation_filters import sos_steady_state
from modeling_audiomosaic.feature_extraction.feature_extraction_audiomosaic import (
    normalize_log_mel,
    normalized_padding_value,
)
from modeling_audiomosaic.feature_extraction.random_draws import as_generator, bernoulli, sample_beta, uniform

SR = 16000
OFF = dict(p_polarity=0.0, p_noise=0.0, p_gain=0.0, p_highpass=0.0, p_bandstop=0.0, p_speed=0.0)


def only(**kwargs) -> WaveformAugmentation:
    """A chain with every transform off except those given, and no mean removal unless asked."""
    settings = dict(OFF, subtract_mean=False)
    settings.update(kwargs)
    return WaveformAugmentation(**settings)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sine(freq: float, seconds: float = 1.0, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    return (amp * torch.sin(2 * math.pi * freq * t)).to(torch.float32)


def make_clip(num_samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SR
    wave = 0.05 * rng.standard_normal(num_samples)
    for amp, freq in ((0.2, 220.0 + 37 * seed), (0.1, 1234.5), (0.05, 5100.0)):
        wave += amp * np.sin(2 * np.pi * freq * t + seed)
    return wave.astype(np.float32)


def level_db(out: torch.Tensor, ref: torch.Tensor) -> float:
    """RMS level of `out` relative to `ref` over the second half (after any filter transient), in dB."""
    half = out.shape[-1] // 2
    rms_out = out[..., half:].double().pow(2).mean().sqrt()
    rms_ref = ref[..., half:].double().pow(2).mean().sqrt()
    return 20 * math.log10(rms_out / rms_ref)


# ---------------------------------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------------------------------


def test_chain_deterministic_given_seed():
    x = torch.from_numpy(np.stack([make_clip(8000, s) for s in range(16)]))
    aug = WaveformAugmentation.from_preset("original_speed")
    a = aug(x, gen(1))
    b = aug(x, gen(1))
    c = aug(x, gen(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.equal(aug(x, 1), a)  # an int seed is a generator seeded with it
    # global generator when None
    torch.manual_seed(5)
    d = aug(x)
    torch.manual_seed(5)
    assert torch.equal(aug(x), d)


def test_roll_and_view_generator_deterministic():
    x = torch.from_numpy(np.stack([make_clip(6000, s) for s in range(3)]))
    assert torch.equal(roll_and_gain(x, gen(0)), roll_and_gain(x, gen(0)))
    assert not torch.equal(roll_and_gain(x, gen(0)), roll_and_gain(x, gen(1)))
    vg = ContrastiveViewGenerator(augmentation="original", max_length=64)
    assert torch.equal(vg(x, gen(3)), vg(x, gen(3)))
    assert not torch.allclose(vg(x, gen(3)), vg(x, gen(4)))


def test_input_not_modified():
    x = torch.from_numpy(make_clip(4000))[None].repeat(4, 1)
    before = x.clone()
    WaveformAugmentation(p_polarity=1, p_noise=1, p_gain=1, p_highpass=1, p_bandstop=1, p_speed=1)(x, gen(0))
    roll_and_gain(x, gen(0))
    ContrastiveViewGenerator(max_length=16)(x, gen(0))
    assert torch.equal(x, before)


# ---------------------------------------------------------------------------------------------------------------------
# Roll + gain
# ---------------------------------------------------------------------------------------------------------------------


def test_roll_is_circular_shift_times_gain():
    n = 5000
    x = torch.randn(64, n, generator=gen(0))
    out, params = roll_and_gain(x, gen(1), return_params=True)
    spectrum = torch.fft.rfft(x.double())
    xcorr = torch.fft.irfft(torch.fft.rfft(out.double()) * spectrum.conj(), n=n)  # xcorr[k] = sum_j out[j] x[j - k]
    shifts = xcorr.argmax(dim=1)
    assert torch.equal(shifts, params["shift"])
    assert len(set(shifts.tolist())) > 50  # the offsets vary over the clip
    for i in range(64):
        s = int(shifts[i])
        rolled = torch.roll(x[i], s)
        gain = float(out[i].double() @ rolled.double() / (rolled.double() @ rolled.double()))
        assert 0.5 <= gain <= 1.5
        assert gain == pytest.approx(float(params["gain"][i]), rel=1e-6)
        torch.testing.assert_close(out[i], (gain * rolled.double()).float(), rtol=1e-5, atol=1e-6)


def test_roll_gain_distribution_is_beta_10_10_plus_half():
    gains = sample_beta_gain(50_000, gen(0)).numpy()
    assert gains.min() >= 0.5 and gains.max() <= 1.5
    assert gains.mean() == pytest.approx(1.0, abs=0.003)
    assert gains.var() == pytest.approx(1 / 84, rel=0.03)  # Var Beta(10, 10) = 100 / (400 * 21)
    assert scipy.stats.kstest(gains - 0.5, scipy.stats.beta(10, 10).cdf).pvalue > 1e-3
    # the gains actually used by roll_and_gain
    _, params = roll_and_gain(torch.randn(4000, 64, generator=gen(1)), gen(2), return_params=True)
    assert params["gain"].min() >= 0.5 and params["gain"].max() <= 1.5
    assert float(params["gain"].mean()) == pytest.approx(1.0, abs=0.01)
    # offsets uniform over [0, len)
    assert params["shift"].min() >= 0 and params["shift"].max() <= 63
    assert float(params["shift"].double().mean()) == pytest.approx(31.5, abs=1.0)


def test_roll_with_lengths_stays_inside_each_clip():
    x = torch.randn(2, 1000, generator=gen(0))
    out, params = roll_and_gain(x, gen(1), lengths=[1000, 300], return_params=True)
    assert params["shift"][1] < 300
    expected = params["gain"][1] * torch.roll(x[1, :300].double(), int(params["shift"][1]))
    torch.testing.assert_close(out[1, :300], expected.float(), rtol=1e-6, atol=1e-7)
    assert torch.all(out[1, 300:] == 0)
    one = roll_and_gain(x[0], gen(3))  # 1-D input keeps its shape
    assert one.shape == (1000,)


# ---------------------------------------------------------------------------------------------------------------------
# Individual transforms
# ---------------------------------------------------------------------------------------------------------------------


def test_polarity_inversion():
    x = torch.from_numpy(np.stack([make_clip(3000, s) for s in range(4)])) + 0.1  # non-zero mean
    out = only(p_polarity=1.0)(x, gen(0))
    assert torch.equal(out, -x)
    out = only(p_polarity=1.0, subtract_mean=True)(x, gen(0))
    torch.testing.assert_close(out, -(x - x.mean(dim=1, keepdim=True)), rtol=0, atol=1e-6)


def test_gaussian_noise_snr():
    x = torch.stack([sine(440.0, 10.0), torch.from_numpy(make_clip(160000, 1))])
    out = only(p_noise=1.0, snr_db=(20.0, 20.0))(x, gen(0))
    noise = (out - x).double()
    snr = 10 * torch.log10(x.double().pow(2).sum(1) / noise.pow(2).sum(1))
    assert torch.all((snr - 20).abs() < 0.5), snr
    assert abs(float(noise.mean())) < 1e-3  # zero-mean Gaussian
    assert abs(float(scipy.stats.kurtosis(noise[0].numpy()))) < 0.1
    # random SNRs within the range, and the measured SNR matches the drawn one
    xs = x[1:].repeat(8, 1)
    out, params = only(p_noise=1.0)(xs, gen(1), return_params=True)
    snr = 10 * torch.log10(xs.double().pow(2).sum(1) / (out - xs).double().pow(2).sum(1))
    assert torch.all((params["snr_db"] >= 5) & (params["snr_db"] <= 40))
    assert torch.all((snr - params["snr_db"]).abs() < 0.5)


def test_gain_exact_ratio():
    x = torch.from_numpy(make_clip(4000))[None].repeat(3, 1)
    for db in (-12.0, 3.5, 12.0):
        out = only(p_gain=1.0, gain_db=(db, db))(x, gen(0))
        ratio = 10 ** (db / 20)
        torch.testing.assert_close(out, x * ratio, rtol=1e-6, atol=0)


@pytest.mark.parametrize("rolloff", [12, 18, 24])
def test_highpass_filter(rolloff):
    aug = only(p_highpass=1.0, highpass_hz=(1000.0, 1000.0), highpass_rolloff_db=(rolloff, rolloff))
    low, high = sine(100.0), sine(4000.0)
    out = aug(torch.stack([low, high]), gen(0))
    assert level_db(out[0], low) < -20.0
    assert abs(level_db(out[1], high)) < 1.0


@pytest.mark.parametrize("rolloff", [12, 18, 24])
@pytest.mark.parametrize("fraction", [0.5, 1.0])
def test_bandstop_filter(rolloff, fraction):
    aug = only(
        p_bandstop=1.0, bandstop_center_hz=(1000.0, 1000.0), bandstop_bandwidth_fraction=(fraction, fraction),
        bandstop_rolloff_db=(rolloff, rolloff),
    )
    # the band is [1000 (1 - f/2), 1000 (1 + f/2)] Hz; its notch (geometric centre) is slightly below 1 kHz
    notch = 1000.0 * math.sqrt((1 - fraction / 2) * (1 + fraction / 2))
    sines = torch.stack([sine(1000.0), sine(notch), sine(100.0), sine(6000.0)])
    out = aug(sines, gen(0))
    assert level_db(out[0], sines[0]) < -20.0  # >= 24 dB for the widest band / lowest order, ~36 dB for f = 0.5
    assert level_db(out[1], sines[1]) < -40.0
    assert abs(level_db(out[2], sines[2])) < 1.0
    assert abs(level_db(out[3], sines[3])) < 1.0


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_filter_design_matches_scipy(order):
    cutoffs = np.array([20.0, 150.0, 1000.0, 2400.0, 7000.0])
    hp = butterworth_highpass_sos(cutoffs, order, SR)
    centre = np.array([200.0, 1000.0, 4000.0, 3000.0])
    fraction = np.array([0.5, 1.99, 1.99, 1.0])
    low, high = centre * (1 - fraction / 2), np.minimum(centre * (1 + fraction / 2), 0.9999 * SR / 2)
    bs = butterworth_bandstop_sos(low, high, order, SR)
    cases = [(hp[j], scipy.signal.butter(order, f, "highpass", fs=SR, output="sos")) for j, f in enumerate(cutoffs)]
    cases += [
        (bs[j], scipy.signal.butter(order, [low[j], high[j]], "bandstop", fs=SR, output="sos"))
        for j in range(len(centre))
    ]
    for ours, ref in cases:
        _, h_ours = scipy.signal.sosfreqz(ours, worN=4096, fs=SR)
        _, h_ref = scipy.signal.sosfreqz(ref, worN=4096, fs=SR)
        np.testing.assert_allclose(h_ours, h_ref, atol=1e-8)
        np.testing.assert_allclose(sos_steady_state(ours), scipy.signal.sosfilt_zi(ours), atol=1e-8)
    with pytest.raises(ValueError):
        butterworth_highpass_sos(9000.0, 2, SR)
    with pytest.raises(ValueError):
        butterworth_bandstop_sos(2000.0, 1000.0, 2, SR)


def test_filters_match_scipy_sosfilt_with_steady_state_start():
    """The chain filters like audiomentations: sosfilt(sos, x, zi=sosfilt_zi(sos) * x[0]) with both filters cascaded."""
    x = torch.from_numpy(make_clip(8000, 3)) + 0.2
    aug = only(p_highpass=1.0, p_bandstop=1.0)
    out, params = aug(x[None], gen(4), return_params=True)
    hp = scipy.signal.butter(int(params["highpass_order"][0]), float(params["highpass_hz"][0]), "highpass", fs=SR,
                             output="sos")
    bs = scipy.signal.butter(int(params["bandstop_order"][0]),
                             [float(params["bandstop_low_hz"][0]), float(params["bandstop_high_hz"][0])],
                             "bandstop", fs=SR, output="sos")
    y = x.double().numpy()
    for sos in (hp, bs):
        y, _ = scipy.signal.sosfilt(sos, y, zi=scipy.signal.sosfilt_zi(sos) * y[0])
    np.testing.assert_allclose(out[0].numpy(), y, atol=2e-6)


def test_filter_parameters_in_range_and_mel_distributed():
    params = WaveformAugmentation().sample_parameters(20000, gen(0))
    hp = params["highpass_hz"].numpy()
    assert hp.min() >= 20 and hp.max() <= 2400
    mel = 2595 * np.log10(1 + hp / 700)
    lo, hi = 2595 * np.log10(1 + 20 / 700), 2595 * np.log10(1 + 2400 / 700)
    assert scipy.stats.kstest((mel - lo) / (hi - lo), "uniform").pvalue > 1e-3
    centre = (params["bandstop_low_hz"] + params["bandstop_high_hz"]).numpy() / 2
    assert centre.min() >= 200 * 0.999 and centre.max() <= 4000 * 1.001
    assert set(params["highpass_order"].unique().tolist()) == {2, 3, 4}
    assert set(params["bandstop_order"].unique().tolist()) == {2, 3, 4}
    assert torch.all(params["bandstop_high_hz"] < SR / 2)
    linear = WaveformAugmentation(frequency_scale="linear").sample_parameters(20000, gen(0))["highpass_hz"].numpy()
    assert scipy.stats.kstest((linear - 20) / 2380, "uniform").pvalue > 1e-3


def test_speed_change():
    x = sine(1000.0, 1.0)[None].repeat(2, 1)
    aug = only(p_speed=1.0, speed_range=(1.25, 1.25))
    out = aug(x, gen(0))
    assert out.shape == x.shape
    assert torch.all(out[:, int(SR / 1.25) + 50 :] == 0)  # faster: the clip ends early, zero-padded
    spectrum = np.abs(np.fft.rfft(out[0, : int(SR / 1.25) - 50].numpy()))
    freqs = np.fft.rfftfreq(int(SR / 1.25) - 50, 1 / SR)
    assert freqs[spectrum.argmax()] == pytest.approx(1250.0, abs=3.0)
    slow = only(p_speed=1.0, speed_range=(0.8, 0.8))(x, gen(0))
    spectrum = np.abs(np.fft.rfft(slow[0].numpy()))
    assert np.fft.rfftfreq(SR, 1 / SR)[spectrum.argmax()] == pytest.approx(800.0, abs=3.0)


def test_mean_removed_and_silent_clip_safe():
    x = torch.from_numpy(np.stack([make_clip(4000, s) + 0.3 for s in range(8)]))
    x[3] = 0.0
    aug = WaveformAugmentation(p_polarity=1, p_noise=1, p_gain=1, p_highpass=1, p_bandstop=1, p_speed=1)
    out = aug(x, gen(0))
    assert torch.isfinite(out).all()
    assert out.double().mean(dim=1).abs().max() < 1e-6
    assert torch.all(out[3] == 0)  # noise is relative to the clip's RMS: a silent clip stays silent


def test_dtypes_and_shapes():
    x = torch.from_numpy(make_clip(2000))
    aug = WaveformAugmentation.from_preset("original")
    assert aug(x, gen(0)).shape == (2000,)
    assert aug(x.double(), gen(0)).dtype == torch.float64
    torch.testing.assert_close(aug(x.double(), gen(0)).float(), aug(x, gen(0)), rtol=0, atol=1e-4)
    assert aug(x.half(), gen(0)).dtype == torch.float16
    out_np = aug(x.numpy()[None], gen(0))
    assert isinstance(out_np, torch.Tensor) and out_np.shape == (1, 2000)
    out = aug(torch.stack([x, x]), gen(0), lengths=[2000, 500])
    assert torch.all(out[1, 500:] == 0)


# ---------------------------------------------------------------------------------------------------------------------
# Probabilities
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["polarity", "noise", "gain", "highpass", "bandstop", "speed"])
def test_probabilities(name):
    x = torch.randn(2000, 256, generator=gen(0))
    aug = only(**{f"p_{name}": 0.5})
    out, params = aug(x, gen(1), return_params=True)
    changed = ~torch.isclose(out, x, rtol=1e-4, atol=1e-6).all(dim=1)
    fraction = float(changed.double().mean())
    assert 0.45 <= fraction <= 0.55, fraction
    assert torch.equal(changed, params[f"apply_{name}"])


# ---------------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------------


def test_presets_and_to_dict():
    for name in AUGMENTATION_PRESETS:
        aug = WaveformAugmentation.from_preset(name)
        d = aug.to_dict()
        json.dumps(d)
        assert WaveformAugmentation.from_dict(d).to_dict() == d
    assert WaveformAugmentation.from_preset("none").is_identity
    orig = WaveformAugmentation.from_preset("original").to_dict()
    assert orig["p_polarity"] == 0.5 and orig["p_noise"] == 0.5 and orig["snr_db"] == [5.0, 40.0]
    assert orig["p_gain"] == 0.3 and orig["gain_db"] == [-12.0, 12.0]
    assert orig["p_highpass"] == 0.3 and orig["highpass_hz"] == [20.0, 2400.0]
    assert orig["p_bandstop"] == 0.5 and orig["bandstop_center_hz"] == [200.0, 4000.0]
    assert orig["bandstop_bandwidth_fraction"] == [0.5, 1.99] and orig["p_speed"] == 0.0
    assert WaveformAugmentation.from_preset("original", p_noise=0.1).p_noise == 0.1
    vg = ContrastiveViewGenerator()
    json.dumps(vg.to_dict())
    assert "ContrastiveViewGenerator" in repr(vg)


# ---------------------------------------------------------------------------------------------------------------------
# Contrastive view generator
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fe():
    return AudioMosaicFeatureExtractor.from_preset("audioset")


@pytest.fixture(scope="module")
def clips_10s():
    return [make_clip(160000, s) for s in range(3)]


def test_view_generator_shape_and_views_differ(fe, clips_10s):
    vg = ContrastiveViewGenerator(fe, augmentation=WaveformAugmentation(), num_views=2, roll_and_gain=True)
    out = vg(clips_10s, gen(0))
    assert out.shape == (3, 2, 1024, 128) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    for b in range(3):
        assert (out[b, 0] - out[b, 1]).abs().mean() > 0.05
    # frames after the 998 of a 10 s clip are the normalised raw-zero padding
    fill = (0.0 - fe.mean) / (2 * fe.std)
    torch.testing.assert_close(out[:, :, 998:], torch.full_like(out[:, :, 998:], fill))
    assert vg.make_view(clips_10s, gen(0)).shape == (3, 1024, 128)
    assert vg(torch.from_numpy(np.stack(clips_10s)), gen(0), num_views=3).shape == (3, 3, 1024, 128)


def test_view_generator_without_augmentation_equals_feature_extractor(fe, clips_10s):
    clips = clips_10s + [make_clip(17000, 7), make_clip(170000, 8)]  # shorter and longer than 1024 frames
    vg = ContrastiveViewGenerator(fe, augmentation="none", num_views=2, roll_and_gain=False)
    out = vg(clips, gen(0))
    reference = fe(clips, sampling_rate=16000, return_tensors="pt")["input_values"]
    for v in range(2):
        torch.testing.assert_close(out[:, v], reference, rtol=0, atol=1e-5)
    # a (B, N) tensor gives the same
    same = vg(torch.from_numpy(np.stack(clips_10s)), gen(0))
    torch.testing.assert_close(same, out[:3], rtol=0, atol=0)


def test_view_generator_roll_only_equals_feature_extractor_of_rolled_clip(fe):
    clips = [make_clip(20000, 1), make_clip(9000, 2)]
    vg = ContrastiveViewGenerator(fe, augmentation="none", num_views=2, roll_and_gain=True, max_length=128)
    waves, lengths, params = vg.augment_waveforms(clips, gen(5), return_params=True)
    assert lengths.tolist() == [min(20000, vg.num_samples), 9000]
    out = vg(clips, gen(5))
    small_fe = AudioMosaicFeatureExtractor.from_preset("audioset", max_length=128)
    for b, clip in enumerate(clips):
        for v in range(2):
            r = b * 2 + v
            # same float32 product as the generator (the waveform mean is irrelevant: Kaldi removes each frame's mean)
            rolled = torch.roll(torch.from_numpy(clip), int(params["shift"][r])) * float(params["gain"][r])
            expected = small_fe(rolled[: int(lengths[b])].numpy(), sampling_rate=16000,
                                return_tensors="pt")["input_values"][0]
            torch.testing.assert_close(out[b, v], expected, rtol=0, atol=1e-5)
            mean_removed = waves[b, v, : int(lengths[b])].double().mean()
            assert abs(float(mean_removed)) < 1e-6
            assert torch.all(waves[b, v, int(lengths[b]):] == 0)


def test_view_generator_silent_and_different_lengths(fe):
    clips = [np.zeros(160000, np.float32), make_clip(16000, 1), make_clip(400, 2), make_clip(200000, 3)]
    vg = ContrastiveViewGenerator(fe, augmentation="original_speed")
    out = vg(clips, gen(0))
    assert out.shape == (4, 2, 1024, 128)
    assert torch.isfinite(out).all()
    fill = (0.0 - fe.mean) / (2 * fe.std)
    assert torch.all(out[1, :, 98:] == fill) and torch.all(out[2, :, 1:] == fill)  # 1 s -> 98 frames, 400 -> 1
    assert not torch.all(out[1, :, :98] == fill)


def test_view_generator_other_presets_of_the_feature_extractor():
    fe = AudioMosaicFeatureExtractor.from_preset("speechcommands")
    vg = ContrastiveViewGenerator(fe, num_views=2)
    out = vg([make_clip(16000, 0), make_clip(12000, 1)], gen(0))
    assert out.shape == (2, 2, 128, 128)


# ---------------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------------


def test_errors_chain_and_roll():
    aug = WaveformAugmentation()
    for fn in (aug, roll_and_gain):
        with pytest.raises(ValueError, match="empty"):
            fn(torch.zeros(0, 100))
        with pytest.raises(ValueError, match="no samples"):
            fn(torch.zeros(2, 0))
        with pytest.raises(TypeError, match="dtype"):
            fn(torch.zeros(2, 100, dtype=torch.int16))
        with pytest.raises(TypeError, match="dtype"):
            fn(np.zeros((2, 100), dtype=np.int32))
        with pytest.raises(TypeError):
            fn([0.1, 0.2])
        with pytest.raises(ValueError, match="shape"):
            fn(torch.zeros(2, 2, 100))
        bad = torch.zeros(4, 100)
        bad[2, 5] = float("nan")
        with pytest.raises(ValueError, match="clip 2"):
            fn(bad)
        bad = torch.zeros(4, 100)
        bad[1, 7] = float("inf")
        with pytest.raises(ValueError, match="clip 1"):
            fn(bad)
        with pytest.raises(ValueError, match="lengths"):
            fn(torch.zeros(2, 100), lengths=[100, 0])
        with pytest.raises(ValueError, match="lengths"):
            fn(torch.zeros(2, 100), lengths=[100])
        with pytest.raises(TypeError, match="generator"):
            fn(torch.zeros(2, 100), np.random.default_rng(0))
    # NaN beyond a clip's length is ignored
    x = torch.zeros(2, 100)
    x[1, 80] = float("nan")
    assert torch.isfinite(aug(x, gen(0), lengths=[100, 50])).all()


def test_errors_configuration():
    with pytest.raises(ValueError, match="p_noise"):
        WaveformAugmentation(p_noise=1.5)
    with pytest.raises(ValueError, match="snr_db"):
        WaveformAugmentation(snr_db=(40, 5))
    with pytest.raises(ValueError, match="highpass_hz"):
        WaveformAugmentation(highpass_hz=(0, 1000))
    with pytest.raises(ValueError, match="bandwidth_fraction"):
        WaveformAugmentation(bandstop_bandwidth_fraction=(0.5, 2.0))
    with pytest.raises(ValueError, match="multiples of 6"):
        WaveformAugmentation(highpass_rolloff_db=(12, 20))
    with pytest.raises(ValueError, match="speed_range"):
        WaveformAugmentation(speed_range=(0.0, 1.1))
    with pytest.raises(ValueError, match="frequency_scale"):
        WaveformAugmentation(frequency_scale="bark")
    with pytest.raises(ValueError, match="preset"):
        WaveformAugmentation.from_preset("heavy")
    with pytest.raises(ValueError, match="sample_rate"):
        ContrastiveViewGenerator(augmentation=WaveformAugmentation(sample_rate=8000))
    with pytest.raises(ValueError, match="Nyquist"):
        WaveformAugmentation(sample_rate=8000, highpass_hz=(4000, 5000))
    # ranges reaching above Nyquist are clipped (the defaults work at 8 kHz)
    params = WaveformAugmentation(sample_rate=8000).sample_parameters(1000, gen(0))
    assert float(params["highpass_hz"].max()) < 4000 and float(params["bandstop_high_hz"].max()) < 4000
    with pytest.raises(ValueError, match="num_views"):
        ContrastiveViewGenerator(num_views=0)
    with pytest.raises(TypeError, match="feature_extractor"):
        ContrastiveViewGenerator(feature_extractor="audioset")


def test_errors_view_generator():
    vg = ContrastiveViewGenerator(max_length=16)
    with pytest.raises(ValueError, match="empty"):
        vg([])
    with pytest.raises(ValueError, match="empty"):
        vg(torch.zeros(0, 1000))
    with pytest.raises(ValueError, match="clip 1 is empty"):
        vg([np.zeros(1000, np.float32), np.zeros(0, np.float32)])
    with pytest.raises(ValueError, match="clip 0 has 399 samples"):
        vg([np.zeros(399, np.float32)])
    with pytest.raises(ValueError, match="clip 1 contains 1 NaN"):
        vg([np.zeros(1000, np.float32), np.r_[np.zeros(999), np.nan].astype(np.float32)])
    with pytest.raises(ValueError, match="clip 0 contains 1 NaN or infinite"):
        vg(torch.tensor([[0.0] * 999 + [float("inf")]]))
    with pytest.raises(TypeError, match="clip 0"):
        vg([np.zeros(1000, np.int16)])
    with pytest.raises(TypeError):
        vg(torch.zeros(2, 1000, dtype=torch.int64))
    with pytest.raises(ValueError, match="1-D"):
        vg([np.zeros((2, 1000), np.float32)])
    with pytest.raises(TypeError):
        vg([[0.0] * 1000])
    with pytest.raises(ValueError, match="sampling_rate"):
        vg([np.zeros(1000, np.float32)], sampling_rate=44100)


def test_picklable_for_dataloader_workers():
    import pickle

    vg = ContrastiveViewGenerator(augmentation="original", max_length=32)
    clone = pickle.loads(pickle.dumps(vg))
    x = torch.from_numpy(make_clip(6000))[None]
    assert torch.equal(clone(x, gen(0)), vg(x, gen(0)))


# ---------------------------------------------------------------------------------------------------------------------
# Shared random draws (one generator coercion, one Beta sampler) and the normalisation helper
# ---------------------------------------------------------------------------------------------------------------------


def _reference_beta(n: int, alpha: float, beta: float, generator: torch.Generator) -> torch.Tensor:
    """The two Beta samplers this package had before they were merged (identical formulas): the `alpha`-th smallest
    of `alpha + beta - 1` uniforms for integer parameters, numpy's sampler seeded from the generator otherwise."""
    if float(alpha).is_integer() and float(beta).is_integer():
        u = torch.rand(n, int(alpha) + int(beta) - 1, dtype=torch.float64, generator=generator)
        return u.kthvalue(int(alpha), dim=1).values
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, beta, size=n))


@pytest.mark.parametrize("alpha, beta", [(10, 10), (10.0, 10.0), (3, 7), (1, 1), (0.4, 0.7), (2.5, 2)])
def test_sample_beta_draws_are_bit_identical_to_the_former_samplers(alpha, beta):
    for seed in range(3):
        ours_gen, ref_gen = gen(seed), gen(seed)
        ours = sample_beta(257, alpha, beta, ours_gen)
        expected = _reference_beta(257, alpha, beta, ref_gen)
        assert ours.dtype == torch.float64 and torch.equal(ours, expected)
        # the same amount of randomness is consumed: the next draws agree too
        assert torch.equal(torch.rand(5, generator=ours_gen), torch.rand(5, generator=ref_gen))
    assert torch.equal(sample_beta(40, alpha, beta, 7), _reference_beta(40, alpha, beta, gen(7)))  # int seed
    torch.manual_seed(3)
    ours = sample_beta(40, alpha, beta)  # None: torch's global generator
    torch.manual_seed(3)
    assert torch.equal(ours, _reference_beta(40, alpha, beta, None))


def test_gain_and_uniform_and_bernoulli_draws_are_bit_identical_to_the_former_formulas():
    ours = sample_beta_gain(300, gen(4), alpha=3, beta=7, offset=0.25)
    assert torch.equal(ours, _reference_beta(300, 3, 7, gen(4)) + 0.25)
    assert torch.equal(sample_beta_gain(300, 4), _reference_beta(300, 10, 10, gen(4)) + 0.5)
    expected_u = 2.0 + (5.0 - 2.0) * torch.rand(100, dtype=torch.float64, generator=gen(1))
    assert torch.equal(uniform(100, 2.0, 5.0, gen(1)), expected_u)
    expected_b = torch.rand(100, dtype=torch.float64, generator=gen(2)) < 0.3
    assert torch.equal(bernoulli(100, 0.3, gen(2)), expected_b)
    # a constant range still consumes its numbers, so the draws after it do not move
    g = gen(3)
    assert torch.equal(uniform(10, 1.0, 1.0, g), torch.ones(10, dtype=torch.float64))
    reference = gen(3)
    torch.rand(10, dtype=torch.float64, generator=reference)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=reference))


def test_sample_beta_rejects_bad_parameters():
    for alpha, beta in ((0, 10), (10, -1), (float("nan"), 1), (1, float("inf")), ("a", 1), (None, 1)):
        with pytest.raises(ValueError, match="positive finite"):
            sample_beta(4, alpha, beta, gen(0))
    with pytest.raises(ValueError, match="positive finite"):
        sample_beta_gain(4, gen(0), alpha=0)


def test_as_generator_is_the_one_coercion_of_pretraining_and_finetuning():
    from modeling_audiomosaic import finetuning

    assert finetuning.as_generator is as_generator and finetuning.sample_beta is sample_beta
    g = gen(0)
    assert as_generator(g) is g and as_generator(None) is None
    for seed in (5, np.int64(5)):
        coerced = as_generator(seed)
        assert isinstance(coerced, torch.Generator) and torch.equal(torch.rand(4, generator=coerced),
                                                                    torch.rand(4, generator=gen(5)))
    for bad in (True, np.bool_(False), 1.5, "3", np.random.default_rng(0)):
        with pytest.raises(TypeError, match="generator must be a torch.Generator"):
            as_generator(bad)
    # every entry point that takes a generator goes through it: same message everywhere
    x = torch.from_numpy(make_clip(2000))
    for call in (lambda: roll_and_gain(x, 1.5), lambda: WaveformAugmentation()(x, 1.5),
                 lambda: ContrastiveViewGenerator(max_length=8)([make_clip(2000)], 1.5),
                 lambda: finetuning.mixup_waveforms([make_clip(500)] * 2, np.eye(2, dtype=np.float32), 1.0,
                                                    generator=1.5),
                 lambda: finetuning.add_noise_and_shift(torch.zeros(2, 8, 4), 1.5)):
        with pytest.raises(TypeError, match="generator must be a torch.Generator"):
            call()


def test_finetuning_mixup_uses_the_shared_beta_draws():
    from modeling_audiomosaic import finetuning

    waves = [make_clip(800 + 100 * i, i) for i in range(6)]
    _, _, params = finetuning.mixup_waveforms(waves, np.eye(6, dtype=np.float32), 1.0, alpha=10.0, beta=10.0,
                                              generator=9, return_params=True)
    reference = gen(9)
    torch.rand(6, dtype=torch.float64, generator=reference)  # who is mixed
    torch.randint(0, 5, (6,), generator=reference)  # partners
    assert torch.equal(params["lam"], _reference_beta(6, 10, 10, reference))


def test_normalisation_helper_is_shared_by_the_extractor_and_the_view_generator():
    values = torch.linspace(-20.0, 5.0, 1001)
    fe = AudioMosaicFeatureExtractor.from_preset("esc50", padding_value=-3.3)
    expected = (values - fe.mean) / (2 * fe.std)
    assert torch.equal(normalize_log_mel(values, fe.mean, fe.std), expected)
    assert torch.equal(fe.normalize(values), expected)
    assert torch.equal(normalize_log_mel(values.clone(), fe.mean, fe.std, inplace=True), expected)
    np.testing.assert_array_equal(normalize_log_mel(values.numpy(), fe.mean, fe.std), expected.numpy())
    with pytest.raises(TypeError, match="inplace=True needs a torch.Tensor"):
        normalize_log_mel(values.numpy(), fe.mean, fe.std, inplace=True)
    # the padding value: the raw value normalised in float32, like the features; raw (float32) without normalisation
    fill = normalized_padding_value(-3.3, fe.mean, fe.std)
    assert fill == float((torch.tensor(-3.3) - fe.mean) / (fe.std * 2))
    assert fill == pytest.approx((-3.3 - fe.mean) / (2 * fe.std), rel=1e-6)
    assert normalized_padding_value(-3.3, fe.mean, fe.std, do_normalize=False) == float(np.float32(-3.3))
    # a short clip: the view generator and the feature extractor pad with the same value
    clip = make_clip(16000, 2)
    for do_normalize in (True, False):
        extractor = AudioMosaicFeatureExtractor.from_preset("esc50", padding_value=-3.3, do_normalize=do_normalize)
        expected_fill = normalized_padding_value(-3.3, extractor.mean, extractor.std, do_normalize)
        reference = extractor([clip], sampling_rate=SR, return_tensors="pt")["input_values"][0]
        views = ContrastiveViewGenerator(extractor, augmentation="none", roll_and_gain=False)([clip], gen(0))
        assert torch.all(reference[98:] == expected_fill) and torch.all(views[0, :, 98:] == expected_fill)
        for v in range(2):
            torch.testing.assert_close(views[0, v], reference, rtol=0, atol=1e-5)
