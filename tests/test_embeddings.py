"""Embeddings API for variable-length audio (modeling_audiomosaic.embeddings) and the HEAR module (hear.py).

Tiny random encoders (hidden 32, 2 layers) keep the whole file well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import modeling_audiomosaic  # noqa: F401  (registers the Auto classes)
from modeling_audiomosaic import (
    AudioMosaicConfig,
    AudioMosaicForAudioClassification,
    AudioMosaicModel,
    hear,
    pool_tokens,
)
from modeling_audiomosaic.embeddings import (
    AudioMosaicEmbedder,
    get_audio_embeddings,
    patch_timestamps_ms,
    plan_windows,
)
from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor

SR = 16000
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def make_model(preset="audioset", seed=0, **kw):
    config = AudioMosaicConfig.from_preset(preset, **{**TINY, **kw})
    torch.manual_seed(seed)
    model = AudioMosaicModel(config).eval()
    with torch.no_grad():  # non-trivial position table / CLS so that positions and CLS matter
        model.embeddings.position_embeddings.normal_(0, 0.5)
        model.embeddings.cls_token.normal_(0, 0.5)
        model.pooler.fc_norm.weight.normal_(1, 0.2)
    return model


def wave(seconds, seed=0):
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SR))
    t = np.arange(n) / SR
    tone = 0.3 * np.sin(2 * np.pi * (300 + 200 * seed) * t)
    return (tone + 0.05 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture(scope="module")
def fe():
    return AudioMosaicFeatureExtractor.from_preset("audioset")


@pytest.fixture(scope="module")
def embedder(model, fe):
    return AudioMosaicEmbedder(model, fe, batch_size=8)


@pytest.fixture(scope="module")
def clips():
    return {"short": wave(0.5, 1), "ten": wave(10.0, 2), "long": wave(180.0, 3)}


def frames_of(n_samples):
    return 1 + (n_samples - 400) // 160


# ----------------------------------------------------------------------------------------------------------------------
# Window plan and timestamps
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_frames", [1, 48, 1023, 1024, 1025, 1536, 1537, 2000, 17998, 59998])
def test_plan_windows_covers_every_frame(num_frames):
    window, hop = 1024, 512
    plan = plan_windows(num_frames, window, hop)
    covered = np.zeros(num_frames, dtype=int)
    for start, valid in plan:
        assert start % 16 == 0 and 1 <= valid <= window
        covered[start : start + valid] += 1
    assert (covered >= 1).all()  # no audio dropped
    assert plan[-1][0] + plan[-1][1] == num_frames
    if num_frames > window:
        assert all(valid == window for _, valid in plan[:-1])
        assert plan[-1][1] > window - hop  # the last (padded) window is more than half full
        assert len(plan) == 1 + -(-(num_frames - window) // hop)


def test_timestamp_formula():
    stamps = patch_timestamps_ms(4)
    np.testing.assert_allclose(stamps, [87.5, 247.5, 407.5, 567.5])
    # centre of patch t = mean of its 16 frame centres (10 i + 12.5 ms)
    frame_centres = 10.0 * np.arange(64) + 12.5
    np.testing.assert_allclose(stamps, frame_centres.reshape(4, 16).mean(1))


# ----------------------------------------------------------------------------------------------------------------------
# Clip embeddings
# ----------------------------------------------------------------------------------------------------------------------
def test_shapes_finiteness_and_determinism(embedder, clips):
    batch = [clips["short"], clips["ten"], clips["long"]]
    out = embedder.embed(batch, sampling_rate=SR)
    assert out.shape == (3, 32) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    again = embedder.embed(batch, sampling_rate=SR)
    assert torch.equal(out, again)
    for name in ("short", "ten", "long"):
        single = embedder.embed(clips[name], sampling_rate=SR)
        assert single.shape == (1, 32) and torch.isfinite(single).all()
    # different clips give different embeddings
    assert (out[0] - out[1]).abs().max() > 1e-3


def test_batch_invariance(model, fe, clips):
    small = AudioMosaicEmbedder(model, fe, batch_size=1)
    big = AudioMosaicEmbedder(model, fe, batch_size=16)
    alone = {name: small.embed(clips[name])[0] for name in ("short", "ten")}
    extra = wave(3.3, 7)
    mixed = big.embed([wave(25.0, 5), clips["short"], extra, clips["ten"], wave(0.7, 6)])
    torch.testing.assert_close(mixed[1], alone["short"], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[3], alone["ten"], atol=1e-5, rtol=0)
    torch.testing.assert_close(mixed[2], small.embed(extra)[0], atol=1e-5, rtol=0)


def test_short_clip_does_not_depend_on_padding(model, fe, embedder, clips):
    short = clips["short"]  # 0.5 s = 48 frames = 3 patches
    got = embedder.embed(short)[0]
    inputs = fe(short, sampling_rate=SR, padding="longest", return_tensors="pt")
    assert inputs["input_values"].shape[1] == 48
    with torch.no_grad():
        expected = model(**inputs).pooler_output[0]
        # the same clip padded to 1024 frames with its attention mask gives the same vector
        padded = fe([short, wave(10.24, 9)], sampling_rate=SR, padding="longest", return_tensors="pt")
        masked = model(**padded).pooler_output[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(got, masked, atol=1e-5, rtol=0)


def test_two_window_aggregation_matches_manual(model, fe):
    embedder = AudioMosaicEmbedder(model, fe, window_seconds=1.28, hop_seconds=0.64, batch_size=4)
    assert (embedder.window_frames, embedder.hop_frames) == (128, 64)
    n = 400 + 159 * 160  # 160 frames -> windows (0, 128) and (64, 96)
    audio = wave(n / SR, 4)[:n]
    assert plan_windows(frames_of(n), 128, 64) == [(0, 128), (64, 96)]
    got = embedder.embed(audio)[0]
    pieces = [audio[: 400 + 127 * 160], audio[64 * 160 : 64 * 160 + 400 + 95 * 160]]
    vectors = []
    with torch.no_grad():
        for piece in pieces:
            inputs = fe(piece, sampling_rate=SR, padding="longest", max_length=128, return_tensors="pt")
            vectors.append(model(**inputs).pooler_output[0])
    expected = (128 * vectors[0] + 96 * vectors[1]) / 224
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # the window features equal slices of the whole clip's features (no audio dropped or shifted)
    whole = fe(audio, sampling_rate=SR, padding="longest", max_length=10**6, return_tensors="pt")["input_values"][0]
    second = fe(pieces[1], sampling_rate=SR, padding="longest", max_length=128, return_tensors="pt")["input_values"][0]
    torch.testing.assert_close(second[:96], whole[64:160], atol=1e-5, rtol=1e-5)


def test_layer_selection(model, fe, clips):
    audio = clips["ten"]
    inputs = fe(audio, sampling_rate=SR, padding="longest", return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    fc_norm = model.pooler.fc_norm
    for k in range(3):
        for use_fc_norm in (True, False):
            got = AudioMosaicEmbedder(model, fe, layer=k, use_fc_norm=use_fc_norm).embed(audio)[0]
            with torch.no_grad():
                pooled = pool_tokens(out.hidden_states[k], "mean")
                expected = fc_norm(pooled) if use_fc_norm else pooled
            torch.testing.assert_close(got, expected[0], atol=1e-5, rtol=0)
    default = AudioMosaicEmbedder(model, fe).embed(audio)[0]
    torch.testing.assert_close(default, out.pooler_output[0], atol=1e-5, rtol=0)
    every = AudioMosaicEmbedder(model, fe, layer="all").embed([audio, clips["short"]])
    assert every.shape == (2, 3, 32)
    some = AudioMosaicEmbedder(model, fe, layer=[0, -1]).embed([audio, clips["short"]])
    assert some.shape == (2, 2, 32)
    torch.testing.assert_close(some[:, 1], every[:, 2])
    torch.testing.assert_close(every[0, 2], default, atol=1e-5, rtol=0)
    cls = AudioMosaicEmbedder(model, fe, layer=1, pooling="cls", use_fc_norm=False).embed(audio)[0]
    torch.testing.assert_close(cls, out.hidden_states[1][0, 0], atol=1e-5, rtol=0)
    patches = AudioMosaicEmbedder(model, fe, pooling="mean_patches", use_fc_norm=False).embed(audio)[0]
    torch.testing.assert_close(patches, out.last_hidden_state[0, 1:].mean(0), atol=1e-5, rtol=0)


def test_frame_embeddings(model, fe, embedder, clips):
    result = embedder.embed_frames([clips["short"], clips["ten"]])
    assert result.embeddings.shape == (2, 63, 32)
    assert result.lengths.tolist() == [3, 63]
    assert torch.isfinite(result.embeddings).all()
    assert (result.embeddings[0, 3:] == 0).all()  # padding of the shorter clip
    torch.testing.assert_close(result.timestamps[0, :3].double(), torch.tensor([87.5, 247.5, 407.5]).double())
    inputs = fe(clips["ten"], sampling_rate=SR, padding="longest", return_tensors="pt")
    with torch.no_grad():
        tokens = model(**inputs).last_hidden_state[0, 1:].reshape(63, 8, 32)
    torch.testing.assert_close(result.embeddings[1], tokens.mean(1), atol=1e-5, rtol=0)
    concat = AudioMosaicEmbedder(model, fe, frequency_pooling="concat").embed_frames(clips["ten"])
    assert concat.embeddings.shape == (1, 63, 256)
    torch.testing.assert_close(concat.embeddings[0], tokens.reshape(63, 256), atol=1e-5, rtol=0)
    per_clip = result.unbatch()
    assert per_clip[0][0].shape == (3, 32) and per_clip[1][1].shape == (63,)
    layered = AudioMosaicEmbedder(model, fe, layer="all").embed_frames(clips["short"])
    assert layered.embeddings.shape == (1, 3, 3, 32)


def test_frame_merge_over_windows(model, fe):
    n = 400 + 159 * 160  # windows (0, 128) and (64, 96): patches 0-7 and 4-9
    audio = wave(n / SR, 4)[:n]
    windows = []
    with torch.no_grad():
        for start, valid in [(0, 128), (64, 96)]:
            piece = audio[start * 160 : start * 160 + 400 + (valid - 1) * 160]
            inputs = fe(piece, sampling_rate=SR, padding="longest", max_length=128, return_tensors="pt")
            tokens = model(**inputs).last_hidden_state[0, 1:]
            windows.append(tokens.reshape(-1, 8, 32).mean(1))
    mean = AudioMosaicEmbedder(model, fe, window_seconds=1.28, hop_seconds=0.64).embed_frames(audio)
    assert mean.embeddings.shape == (1, 10, 32)
    expected = torch.cat([windows[0][:4], (windows[0][4:] + windows[1][:4]) / 2, windows[1][4:]])
    torch.testing.assert_close(mean.embeddings[0], expected, atol=1e-5, rtol=0)
    center = AudioMosaicEmbedder(model, fe, window_seconds=1.28, hop_seconds=0.64, merge="center").embed_frames(audio)
    # window 0 centre: frame 64 (patches 0-3 closer to it, patch 4 ties -> earlier); window 1 centre: frame 112
    expected = torch.cat([windows[0][:6], windows[1][2:]])
    torch.testing.assert_close(center.embeddings[0], expected, atol=1e-5, rtol=0)


def test_long_audio_frames_and_memory(embedder, clips):
    result = embedder.embed_frames(clips["long"])
    assert result.embeddings.shape == (1, 1125, 32)
    stamps = result.timestamps[0].double()
    torch.testing.assert_close(stamps[-1], torch.tensor(160.0 * 1124 + 87.5, dtype=torch.float64))
    assert torch.isfinite(result.embeddings).all()


def test_mode_restored_and_other_models(model, fe, clips):
    model.train()
    try:
        AudioMosaicEmbedder(model, fe).embed(clips["short"])
        assert model.training and model.layers[0].training
    finally:
        model.eval()
    config = AudioMosaicConfig.from_preset("audioset", **TINY, num_labels=3)
    classifier = AudioMosaicForAudioClassification(config).eval()
    out = AudioMosaicEmbedder(classifier, fe).embed(clips["short"])
    assert out.shape == (1, 32)


def test_input_types_and_resampling(embedder, clips):
    short = clips["short"]
    ref = embedder.embed(short)
    torch.testing.assert_close(embedder.embed(torch.from_numpy(short)), ref)
    torch.testing.assert_close(embedder.embed(np.stack([short, short]))[1], ref[0], atol=1e-5, rtol=0)
    pcm = (short * 32767).astype(np.int16)
    assert embedder.embed(pcm).shape == (1, 32)
    assert embedder.embed(wave(0.01, 1)).shape == (1, 32)  # shorter than one frame: zero-padded to 400 samples
    up = np.repeat(short, 2)  # 32 kHz
    assert embedder.embed(up, sampling_rate=32000).shape == (1, 32)


def test_errors(model, fe, embedder):
    with pytest.raises(ValueError, match="empty"):
        embedder.embed(np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match="empty"):
        embedder.embed([])
    with pytest.raises(ValueError, match="shape"):
        embedder.embed(np.zeros((2, 2, 1600), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        embedder.embed(np.full(1600, np.nan, dtype=np.float32))
    with pytest.raises(TypeError):
        embedder.embed("audio.wav")
    with pytest.raises(ValueError, match="out of range"):
        AudioMosaicEmbedder(model, fe, layer=3)
    with pytest.raises(ValueError, match="max_length"):
        AudioMosaicEmbedder(model, fe, window_seconds=20.0)
    with pytest.raises(ValueError, match="hop"):
        AudioMosaicEmbedder(model, fe, window_seconds=2.56, hop_seconds=3.0)
    with pytest.raises(ValueError, match="pooling"):
        AudioMosaicEmbedder(model, fe, pooling="max")


def test_two_d_layouts_and_mixdown(embedder):
    left, right = wave(0.5, 1), wave(0.5, 2)
    mono = embedder.embed(left)
    mixed = embedder.embed((left + right) / 2)
    # (N, 1): one mono clip (not N one-sample clips)
    torch.testing.assert_close(embedder.embed(left[:, None]), mono)
    torch.testing.assert_close(embedder.embed(torch.from_numpy(left)[:, None]), mono)
    # (N, 2): soundfile's channels-last layout, one clip mixed down
    stereo_last = np.stack([left, right], axis=1)
    torch.testing.assert_close(embedder.embed(stereo_last), mixed, atol=1e-5, rtol=0)
    torch.testing.assert_close(embedder.embed((stereo_last * 32767).astype(np.int16)).shape, torch.Size([1, 32]))
    # (2, N) channels-first: one clip when inside a list (a bare (2, N) array stays a batch of two clips)
    torch.testing.assert_close(embedder.embed([stereo_last.T]), mixed, atol=1e-5, rtol=0)
    torch.testing.assert_close(embedder.embed([stereo_last, left])[0], mixed[0], atol=1e-5, rtol=0)
    batch = embedder.embed(stereo_last.T)
    assert batch.shape == (2, 32)
    # a list of 1-D clips of different lengths is a batch
    other = wave(0.8, 3)
    listed = embedder.embed([left, other])
    torch.testing.assert_close(listed[0], mono[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(listed[1], embedder.embed(other)[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batch[0], mono[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "shape, patterns",
    [
        ((4, 6), ["ambiguous", "batch of 4 clips of 6 samples", "list of 1-D clips", "[stereo]"]),
        ((8000, 16), ["axes look swapped", "audio.T", "audio.mean(axis=1)", "8000 clips of 16 samples"]),
        ((4000, 300), ["axes look swapped", "audio.T"]),
    ],
)
def test_ambiguous_layouts_raise_with_advice(embedder, shape, patterns):
    with pytest.raises(ValueError) as info:
        embedder.embed(np.zeros(shape, dtype=np.float32))
    for pattern in patterns:
        assert pattern in str(info.value), (pattern, str(info.value))
    with pytest.raises(ValueError, match="does not look like multi-channel audio"):
        embedder.embed([np.zeros((16, 8000), dtype=np.float32)])


@pytest.fixture
def progress_bars_on():
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
    yield
    if not was_enabled:
        hf_logging.disable_progress_bar()


def test_progress_bar_for_long_inputs(model, fe, capsys, monkeypatch, progress_bars_on):
    from modeling_audiomosaic import embeddings

    kwargs = dict(window_seconds=0.32, batch_size=4)  # 32-frame windows, 16-frame hop: many cheap windows
    audio = wave(2.0, 4)  # 198 frames -> 1 + ceil((198 - 32) / 16) = 12 windows, 3 batches
    AudioMosaicEmbedder(model, fe, progress=True, **kwargs).embed(audio)
    err = capsys.readouterr().err
    assert "AudioMosaic windows" in err and "12/12" in err
    AudioMosaicEmbedder(model, fe, progress=False, **kwargs).embed(audio)
    assert "AudioMosaic windows" not in capsys.readouterr().err
    # progress=None: a bar from AUTO_PROGRESS_MIN_WINDOWS windows on (default 64, ~5.5 min of audio)
    assert embeddings.AUTO_PROGRESS_MIN_WINDOWS == 64
    AudioMosaicEmbedder(model, fe, **kwargs).embed_frames(audio)
    assert "AudioMosaic windows" not in capsys.readouterr().err
    monkeypatch.setattr(embeddings, "AUTO_PROGRESS_MIN_WINDOWS", 12)
    AudioMosaicEmbedder(model, fe, **kwargs).embed_frames(audio)
    assert "12/12" in capsys.readouterr().err
    with pytest.raises(TypeError, match="progress"):
        AudioMosaicEmbedder(model, fe, progress="yes")


def test_embedder_exported_from_package():
    from modeling_audiomosaic import embeddings

    assert modeling_audiomosaic.AudioMosaicEmbedder is AudioMosaicEmbedder
    assert modeling_audiomosaic.get_audio_embeddings is embeddings.get_audio_embeddings
    assert {"AudioMosaicEmbedder", "FrameEmbeddings", "get_audio_embeddings"} <= set(modeling_audiomosaic.__all__)


def test_get_audio_embeddings(model, fe, tmp_path, clips):
    model.save_pretrained(tmp_path)
    fe.save_pretrained(tmp_path)
    direct = get_audio_embeddings(model, clips["short"], SR, feature_extractor=fe)
    loaded = get_audio_embeddings(str(tmp_path), clips["short"], SR)
    torch.testing.assert_close(direct, loaded, atol=1e-5, rtol=0)
    frames = get_audio_embeddings(str(tmp_path), clips["short"], SR, frames=True)
    assert frames.embeddings.shape == (1, 3, 32)
    with pytest.raises(FileNotFoundError):
        get_audio_embeddings(str(tmp_path / "missing"), clips["short"], SR)


# ----------------------------------------------------------------------------------------------------------------------
# HEAR
# ----------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hear_model(model, fe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hear_model")
    model.save_pretrained(folder)
    fe.save_pretrained(folder)
    return hear.load_model(str(folder))


def test_hear_load_model(hear_model):
    assert isinstance(hear_model, torch.nn.Module)
    assert hear_model.sample_rate == 16000
    assert hear_model.scene_embedding_size == 32
    assert hear_model.timestamp_embedding_size == 8 * 32  # concatenated frequency patches
    with pytest.raises(ValueError, match="model_file_path"):
        hear.load_model("")
    with pytest.raises(FileNotFoundError):
        hear.load_model("/nonexistent/audiomosaic")
    random = hear.load_model("", random_init=True, config_kwargs=TINY, timestamp_aggregation="mean")
    assert (random.scene_embedding_size, random.timestamp_embedding_size) == (32, 32)


def test_hear_shapes_and_timestamps(hear_model):
    audio = torch.from_numpy(np.stack([wave(1.5, 1), wave(1.5, 2)]))
    scene = hear.get_scene_embeddings(audio, hear_model)
    assert scene.shape == (2, 32) and torch.isfinite(scene).all()
    embeddings, stamps = hear.get_timestamp_embeddings(audio, hear_model)
    # 1.5 s: 148 frames -> ceil(148 / 16) = 10 time patches
    assert embeddings.shape == (2, 10, 256) and stamps.shape == (2, 10)
    assert torch.isfinite(embeddings).all()
    diffs = stamps[:, 1:] - stamps[:, :-1]
    assert (diffs > 0).all()
    torch.testing.assert_close(diffs, torch.full_like(diffs, 160.0))
    torch.testing.assert_close(stamps[:, 0], torch.full((2,), 87.5))
    # batch invariance: each sound alone gives the same embeddings
    alone_scene = hear.get_scene_embeddings(audio[1:], hear_model)
    alone_frames, _ = hear.get_timestamp_embeddings(audio[1:], hear_model)
    torch.testing.assert_close(alone_scene[0], scene[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(alone_frames[0], embeddings[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("seconds,expected", [(10.0, 63), (180.0, 1125)])
def test_hear_timestamp_counts(hear_model, clips, seconds, expected):
    audio = torch.from_numpy(clips["ten"] if seconds == 10.0 else clips["long"])[None]
    assert -(-frames_of(audio.shape[1]) // 16) == expected
    embeddings, stamps = hear.get_timestamp_embeddings(audio, hear_model)
    assert embeddings.shape == (1, expected, 256) and stamps.shape == (1, expected)
    torch.testing.assert_close(stamps[0, -1], torch.tensor(160.0 * (expected - 1) + 87.5))
    assert (stamps[0, 1:] > stamps[0, :-1]).all()


@pytest.fixture(scope="module")
def hear_model_40ms(hear_model):
    return hear.AudioMosaicHEARModel(hear_model.encoder, hear_model.feature_extractor, timestamp_hop_ms=40)


@pytest.mark.parametrize("seconds, expected", [(1.07, 25), (1.98, 48), (4.0, 98)])
def test_hear_timestamp_hop_option(hear_model, hear_model_40ms, seconds, expected):
    """HEAR contract with timestamp_hop_ms=40: shapes, float32, a constant 40 ms hop inside [0, duration]."""
    audio = torch.from_numpy(np.stack([wave(seconds, 1), wave(seconds, 2)]))
    duration_ms = 1000.0 * audio.shape[1] / SR
    model = hear_model_40ms
    embeddings, stamps = hear.get_timestamp_embeddings(audio, model)
    assert embeddings.shape == (2, expected, model.timestamp_embedding_size) and stamps.shape == (2, expected)
    assert embeddings.dtype == torch.float32 and stamps.dtype == torch.float32
    assert torch.isfinite(embeddings).all()
    diffs = stamps[:, 1:].double() - stamps[:, :-1].double()
    assert (diffs > 0).all() and (diffs - 40.0).abs().max() < 1e-3  # 1e-6 s
    assert stamps.min() >= 0 and stamps.max() <= duration_ms and stamps[0, -1] + 40.0 > duration_ms
    torch.testing.assert_close(stamps[:, 0], torch.full((2,), 87.5))
    # default (no option): unchanged 160 ms grid; every 4th embedding of the 40 ms grid is a default embedding
    default, default_stamps = hear.get_timestamp_embeddings(audio, hear_model)
    torch.testing.assert_close(default_stamps[0], torch.from_numpy(patch_timestamps_ms(default.shape[1])).float())
    torch.testing.assert_close(embeddings[:, ::4], default[:, : embeddings[:, ::4].shape[1]], atol=1e-5, rtol=0)
    if seconds != 1.98:
        return
    # the others are the patches of the sound shifted by 40 / 80 / 120 ms (real embeddings, not interpolated)
    for k in (1, 2, 3):
        shifted, _ = hear.get_timestamp_embeddings(audio[:, k * 640 :], hear_model)
        got = embeddings[:, k::4]
        torch.testing.assert_close(got, shifted[:, : got.shape[1]], atol=1e-5, rtol=0)
    # batch invariance
    alone, _ = hear.get_timestamp_embeddings(audio[1:], model)
    torch.testing.assert_close(alone[0], embeddings[1], atol=1e-5, rtol=0)


def test_hear_timestamp_hop_edge_cases(hear_model, hear_model_40ms):
    tiny = torch.from_numpy(wave(0.05, 1))[None]  # 50 ms: shorter than the first patch centre (87.5 ms)
    embeddings, stamps = hear.get_timestamp_embeddings(tiny, hear_model_40ms)
    assert embeddings.shape == (1, 1, 256) and stamps.tolist() == [[25.0]]
    torch.testing.assert_close(embeddings, hear.get_timestamp_embeddings(tiny, hear_model)[0][:, :1])
    model_20 = hear.AudioMosaicHEARModel(hear_model.encoder, hear_model.feature_extractor, timestamp_hop_ms=20.0)
    _, stamps = hear.get_timestamp_embeddings(torch.from_numpy(wave(1.0, 1))[None], model_20)
    assert stamps.shape == (1, 46) and (stamps[0, 1:] - stamps[0, :-1] - 20.0).abs().max() < 1e-3
    loaded = hear.load_model("", random_init=True, config_kwargs=TINY, timestamp_hop_ms=40)
    assert (loaded.timestamp_hop_ms, loaded.timestamp_shifts) == (40.0, 4)
    for bad in (50, 0, -40, True, "40"):
        with pytest.raises(ValueError, match=r"timestamp_hop_ms.*\[5, 8, 10, 16, 20, 32, 40, 80, 160\]"):
            hear.AudioMosaicHEARModel(hear_model.encoder, hear_model.feature_extractor, timestamp_hop_ms=bad)


def test_hear_errors(hear_model):
    with pytest.raises(ValueError, match="n_sounds, n_samples"):
        hear.get_scene_embeddings(torch.zeros(16000), hear_model)
    with pytest.raises(ValueError, match="n_sounds, n_samples"):
        hear.get_timestamp_embeddings(torch.zeros(1, 1, 16000), hear_model)
    with pytest.raises(ValueError, match="empty"):
        hear.get_scene_embeddings(torch.zeros(2, 0), hear_model)
    with pytest.raises(ValueError, match="empty"):
        hear.get_timestamp_embeddings(torch.zeros(0, 16000), hear_model)
    with pytest.raises(TypeError):
        hear.get_scene_embeddings(torch.zeros(1, 16000), object())
