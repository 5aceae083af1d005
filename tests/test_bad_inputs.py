"""Bad inputs through the three entry points (feature extractor, pipeline, data loader): each gives a clear error or a
counted skip -- never a hang, never a silent wrong answer. Accepted inputs must give exactly the features / scores of
their clean float32 mono 16 kHz equivalent, computed independently.

The table (one row per input, one column per entry point):

| input            | feature extractor               | pipeline (ours / built-in)        | data loader (files, arrays) |
|------------------|---------------------------------|-----------------------------------|-----------------------------|
| empty            | ValueError "is empty"           | same ValueError                   | skip `empty`                |
| 1 sample         | ValueError "at least 400"       | same                              | skip `too_short`            |
| NaN / inf        | ValueError "NaN or infinite"    | same                              | skip `non_finite`           |
| int16 / int32    | scaled by 1/2^15 / 1/2^31       | same scores as the float clip     | file and array scaled       |
| float64          | cast                            | same scores                       | same samples                |
| stereo           | channel mean                    | ours: mean; built-in: ValueError  | channel mean                |
| wrong rate 8 kHz | ValueError unless resample=True | ours: soxr; built-in: ImportError | resampled (soxr)            |
| 1 hour           | first 10.26 s + a warning       | same                              | cropped to max_seconds      |
| corrupt file     | n/a (arrays only)               | ValueError naming the file        | skip `undecodable`          |
| wrong dtype      | TypeError naming the dtype      | same TypeError                    | skip `bad_dtype`            |
| unscaled PCM     | accepted + a one-time warning   | same                              | accepted, warned later      |
"""

from __future__ import annotations

import contextlib
import logging
import signal

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

import modeling_audiomosaic  # noqa: F401
from modeling_audiomosaic import AudioMosaicAudioClassificationPipeline
from modeling_audiomosaic.feature_extraction import (
    AudioClassificationCollator,
    AudioDecodeError,
    AudioMosaicFeatureExtractor,
    ExampleDecoder,
    build_label_vocabulary,
    decode_audio,
    load_audio_dataset,
)

RATE = 16000
HOUR = 3600 * RATE
FRAMES_1024_SAMPLES = 1023 * 160 + 400  # samples that make exactly 1024 Kaldi frames


@contextlib.contextmanager
def no_hang(seconds: int = 120):
    """Fail (instead of hanging CI) if the block runs longer than `seconds`. A guard, not a timing assertion."""

    def _raise(signum, frame):
        raise TimeoutError(f"hang guard: still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _base(n=RATE, seed=0):
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(n)).astype(np.float32)


BASE = _base()
INT16 = np.round(BASE * 32768).astype(np.int16)
INT32 = np.round(BASE.astype(np.float64) * 2**31).astype(np.int32)
STEREO = np.stack([BASE, 0.5 * BASE[::-1]])
NAN = BASE.copy()
NAN[7] = np.nan
INF = BASE.copy()
INF[7] = np.inf

# name -> (input, expected): ("error", ExceptionType, message pattern) or ("same", float32 mono 16 kHz reference)
WAVEFORM_TABLE = {
    "empty": (np.zeros(0, np.float32), ("error", ValueError, "is empty")),
    "one_sample": (np.zeros(1, np.float32), ("error", ValueError, "at least 400 samples")),
    "nan": (NAN, ("error", ValueError, "1 NaN or infinite")),
    "inf": (INF, ("error", ValueError, "1 NaN or infinite")),
    "int16": (INT16, ("same", INT16.astype(np.float32) / 32768)),
    "int32": (INT32, ("same", (INT32.astype(np.float64) / 2**31).astype(np.float32))),
    "float64": (BASE.astype(np.float64), ("same", BASE)),
    "stereo": (STEREO, ("same", STEREO.mean(axis=0).astype(np.float32))),
    "bool_tensor": (torch.ones(RATE, dtype=torch.bool), ("error", TypeError, "torch.bool")),
    "complex_tensor": (torch.ones(RATE, dtype=torch.complex64), ("error", TypeError, "complex")),
    "int64_tensor": (torch.ones(RATE, dtype=torch.int64), ("error", TypeError, "int64")),
    "half_tensor": (torch.from_numpy(BASE).half(), ("same", torch.from_numpy(BASE).half().float().numpy())),
}


@pytest.fixture(scope="module")
def fe():
    return AudioMosaicFeatureExtractor.from_preset("audioset")


def _features(fe, wave, **kwargs):
    clip = [wave] if getattr(wave, "ndim", 1) == 2 else wave  # a (channels, samples) clip goes in a list
    return fe(clip, sampling_rate=kwargs.pop("sampling_rate", RATE), return_tensors="pt", **kwargs)["input_values"]


# ---------------------------------------------------------------------------------------------------------------------
# feature extractor
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(WAVEFORM_TABLE))
def test_feature_extractor_table(fe, name):
    wave, expected = WAVEFORM_TABLE[name]
    with no_hang():
        if expected[0] == "error":
            with pytest.raises(expected[1], match=expected[2]):
                _features(fe, wave)
        else:
            torch.testing.assert_close(_features(fe, wave), _features(fe, expected[1]), rtol=0, atol=1e-5)


def test_feature_extractor_wrong_rate(fe):
    wave_8k = _base(8000, seed=1)
    with pytest.raises(ValueError, match="sampling rate of 16000 Hz, but the audio has 8000 Hz"):
        _features(fe, wave_8k, sampling_rate=8000, resample=False)
    reference = soxr.resample(wave_8k, 8000, RATE).astype(np.float32)
    torch.testing.assert_close(_features(fe, wave_8k, sampling_rate=8000, resample=True), _features(fe, reference))


@pytest.fixture
def fresh_warning_once():
    """transformers' `logger.warning_once` caches messages per process: clear it so this test sees its warning."""
    logging.Logger.warning_once.cache_clear()
    yield


def test_feature_extractor_one_hour_is_cropped_with_a_warning(fe, caplog, fresh_warning_once):
    hour = np.tile(BASE, 3600)
    assert hour.shape[0] == HOUR
    fresh = AudioMosaicFeatureExtractor.from_preset("audioset")
    with no_hang(), caplog.at_level(logging.WARNING):
        feats = _features(fresh, hour)
    assert feats.shape == (1, 1024, 128)
    torch.testing.assert_close(feats, _features(fe, hour[:FRAMES_1024_SAMPLES]), rtol=0, atol=0)
    assert any("truncated to their first 10.26 s" in r.getMessage() for r in caplog.records)


def test_feature_extractor_warns_about_unscaled_pcm(fe, caplog, fresh_warning_once):
    with caplog.at_level(logging.WARNING):
        _features(AudioMosaicFeatureExtractor.from_preset("audioset"), INT16.astype(np.float32))
    assert any("peak amplitude > 2" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------------------------------------
# pipeline
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    from test_auto_and_pipeline import make_saved_classifier
    from transformers import pipeline

    folder = tmp_path_factory.mktemp("bad_inputs_clf")
    model, fe = make_saved_classifier(folder)
    ours = pipeline("audio-classification", model=str(folder), pipeline_class=AudioMosaicAudioClassificationPipeline)
    builtin = pipeline("audio-classification", model=str(folder))
    return ours, builtin, model, fe


def _scores(model, fe, wave):
    with torch.no_grad():
        logits = model(**fe(wave, sampling_rate=RATE, return_tensors="pt")).logits[0]
    probs = torch.softmax(logits, -1).tolist()
    return {model.config.id2label[i]: p for i, p in enumerate(probs)}


@pytest.mark.parametrize("name", list(WAVEFORM_TABLE))
def test_pipeline_table(pipes, name):
    ours, builtin, model, fe = pipes
    wave, expected = WAVEFORM_TABLE[name]
    with no_hang():
        if expected[0] == "error":
            with pytest.raises(expected[1], match=expected[2]):
                ours(wave)
            return
        result = ours(wave)
    reference = _scores(model, fe, expected[1])
    assert {r["label"]: pytest.approx(r["score"], abs=1e-5) for r in result} == reference
    if name == "stereo":  # transformers' own pipeline refuses multi-channel arrays, with a clear message
        with pytest.raises(ValueError, match="single channel"):
            builtin(wave)


def test_pipeline_wrong_rate_and_one_hour(pipes):
    ours, builtin, model, fe = pipes
    wave_8k = _base(8000, seed=2)
    result = ours({"array": wave_8k, "sampling_rate": 8000})
    reference = _scores(model, fe, soxr.resample(wave_8k, 8000, RATE).astype(np.float32))
    assert {r["label"]: pytest.approx(r["score"], abs=1e-5) for r in result} == reference
    # the built-in pipeline can only resample with torchaudio (not installed here): a clear ImportError, no guess
    with pytest.raises(ImportError, match="torchaudio"):
        builtin({"array": wave_8k, "sampling_rate": 8000})
    with no_hang():
        hour = ours(np.tile(BASE, 3600))
    assert {r["label"]: pytest.approx(r["score"], abs=1e-5) for r in hour} == _scores(
        model, fe, np.tile(BASE, 11)[:FRAMES_1024_SAMPLES]
    )


def test_pipeline_corrupt_empty_and_missing_files(pipes, tmp_path):
    ours, builtin, _, _ = pipes
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt not really" * 10)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for path in (corrupt, empty):
        with pytest.raises(ValueError, match=f"Could not decode audio '{path}'"):
            ours(str(path))
        with pytest.raises(ValueError):
            builtin(str(path))
    with pytest.raises(FileNotFoundError):
        ours(str(tmp_path / "missing.wav"))


@pytest.mark.parametrize("fmt", ["flac", "wav"])
def test_pipeline_warns_about_truncated_files(pipes, tmp_path, caplog, fmt):
    """ffmpeg decodes the prefix of a truncated file without complaint: the pipeline warns with the numbers."""
    ours, _, model, fe = pipes
    wave = _base(3 * RATE, seed=5)
    full = tmp_path / f"full.{fmt}"
    sf.write(full, wave, RATE, subtype="PCM_16")
    cut = tmp_path / f"cut.{fmt}"
    data = full.read_bytes()
    cut.write_bytes(data[: int(0.6 * len(data))])
    with caplog.at_level(logging.WARNING):
        ours(str(full))
    assert not [r for r in caplog.records if "looks truncated" in r.getMessage()]
    with caplog.at_level(logging.WARNING):
        result = ours(str(cut))
    messages = [r.getMessage() for r in caplog.records if "looks truncated" in r.getMessage()]
    assert len(messages) == 1, caplog.text
    assert str(cut) in messages[0] and "declares 3.000 s (48000 samples at 16000 Hz)" in messages[0]
    decoded = float(messages[0].split("but only ")[1].split(" s")[0])
    assert 1.0 < decoded < 2.0  # the decoded prefix, about 60 % of 3 s
    assert {r["label"] for r in result} == set(model.config.id2label.values())  # the prefix is still classified
    # the same check for bytes input, named by size
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ours(cut.read_bytes())
    assert any(f"<{len(cut.read_bytes())} bytes>" in r.getMessage() for r in caplog.records)


def test_pipeline_too_short_file_says_too_short(pipes, tmp_path):
    ours, _, _, _ = pipes
    path = tmp_path / "short.wav"
    sf.write(path, _base(100), RATE, subtype="PCM_16")  # a valid file of 100 samples (6.25 ms)
    with pytest.raises(ValueError) as info:
        ours(str(path))
    message = str(info.value)
    assert "Could not decode" not in message
    assert f"'{path}' is too short" in message and "100 samples (6.2 ms)" in message
    assert "at least 400 samples (25 ms" in message


# ---------------------------------------------------------------------------------------------------------------------
# data loader
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    """One class folder per outcome; the file name says what it is."""
    root = tmp_path_factory.mktemp("bad_audio")
    good, bad = root / "good", root / "bad"
    good.mkdir()
    bad.mkdir()
    sf.write(good / "int16.wav", INT16, RATE, subtype="PCM_16")
    sf.write(good / "int32.wav", INT32, RATE, subtype="PCM_32")
    sf.write(good / "float64.wav", BASE.astype(np.float64), RATE, subtype="DOUBLE")
    sf.write(good / "stereo.wav", STEREO.T, RATE, subtype="FLOAT")
    sf.write(good / "rate8k.wav", _base(8000, seed=3), 8000, subtype="FLOAT")
    sf.write(good / "hour.wav", np.tile(INT16, 3600), RATE, subtype="PCM_16")  # 115 MB
    sf.write(bad / "one_sample.wav", np.zeros(1, np.float32), RATE, subtype="FLOAT")
    sf.write(bad / "no_frames.wav", np.zeros(0, np.float32), RATE, subtype="FLOAT")
    sf.write(bad / "nan.wav", NAN, RATE, subtype="FLOAT")
    sf.write(bad / "inf.wav", INF, RATE, subtype="FLOAT")
    (bad / "zero_bytes.wav").write_bytes(b"")
    (bad / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt not really" * 10)
    return root


EXPECTED_SKIPS = {
    "bad/one_sample.wav": "too_short",
    "bad/no_frames.wav": "empty",
    "bad/nan.wav": "non_finite",
    "bad/inf.wav": "non_finite",
    "bad/zero_bytes.wav": "empty",
    "bad/corrupt.wav": "undecodable",
}


def test_data_loader_table(bad_folder):
    max_seconds = 2.0
    ds = load_audio_dataset(bad_folder, max_seconds=max_seconds, crop="start")
    with no_hang():
        examples = {ex["id"]: ex for ex in ds}
    assert sorted(examples) == sorted(f"good/{n}" for n in
                                      ("int16.wav", "int32.wav", "float64.wav", "stereo.wav", "rate8k.wav", "hour.wav"))
    stats = ds.skip_counter.as_dict()
    assert stats["ok"] == 6 and stats["skipped"] == len(EXPECTED_SKIPS)
    for name, reason in EXPECTED_SKIPS.items():
        assert name in stats["examples"][reason], (name, reason, stats["examples"])
    np.testing.assert_allclose(examples["good/int16.wav"]["audio"], INT16 / 32768, atol=1e-7)
    np.testing.assert_allclose(examples["good/int32.wav"]["audio"], INT32 / 2**31, atol=1e-7)
    np.testing.assert_allclose(examples["good/float64.wav"]["audio"], BASE, atol=1e-7)
    np.testing.assert_allclose(examples["good/stereo.wav"]["audio"], STEREO.mean(axis=0), atol=1e-7)
    np.testing.assert_allclose(examples["good/rate8k.wav"]["audio"], soxr.resample(_base(8000, seed=3), 8000, RATE),
                               atol=1e-6)
    hour = examples["good/hour.wav"]["audio"]
    assert hour.shape == (int(max_seconds * RATE),)
    np.testing.assert_allclose(hour, np.tile(INT16, 3)[: hour.shape[0]] / 32768, atol=1e-7)


def test_data_loader_batches_count_every_item(bad_folder, fe):
    ds = load_audio_dataset(bad_folder, max_seconds=2.0, crop="start")
    vocab = build_label_vocabulary(ds)
    collator = AudioClassificationCollator(fe, vocab)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collator)
    seen = 0
    with no_hang():
        for batch in loader:
            assert torch.isfinite(batch["input_values"]).all()
            seen += batch["input_values"].shape[0]
    # map-style: bad indices are replaced by the next good item (fixed epoch length), and every bad file is counted
    assert seen == len(ds) == 12
    stats = ds.skip_counter.as_dict()
    assert stats["skipped"] == len(EXPECTED_SKIPS)


@pytest.mark.parametrize(
    "array, outcome",
    [
        (INT16, ("same", INT16 / 32768)),
        (torch.from_numpy(INT32), ("same", INT32 / 2**31)),
        (BASE.tolist(), ("same", BASE)),
        (np.ones(RATE, dtype=bool), ("skip", "bad_dtype")),
        (torch.ones(RATE, dtype=torch.complex64), ("skip", "bad_dtype")),
        (np.ones(RATE, dtype=np.int64), ("skip", "bad_dtype")),
        (NAN, ("skip", "non_finite")),
        (np.zeros(0, np.float32), ("skip", "empty")),
    ],
    ids=["int16", "int32_tensor", "list", "bool", "complex_tensor", "int64", "nan", "empty"],
)
def test_decoded_array_records(array, outcome):
    decoder = ExampleDecoder()
    example = decoder.decode({"audio": {"array": array, "sampling_rate": RATE}})
    if outcome[0] == "same":
        np.testing.assert_allclose(example["audio"], np.asarray(outcome[1], dtype=np.float32), atol=1e-7)
    else:
        assert example is None
        assert decoder.skip_counter.counts == {outcome[1]: 1}


def test_decode_audio_refuses_a_bare_array():
    with pytest.raises(AudioDecodeError, match="no sampling rate"):
        decode_audio(BASE)


# ---------------------------------------------------------------------------------------------------------------------
# pickle-only checkpoints
# ---------------------------------------------------------------------------------------------------------------------


def _pickle_only_folder(model, folder):
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def test_pickle_only_checkpoints_are_refused_unless_opted_in(tmp_path):
    from transformers import AutoModel, AutoModelForAudioClassification

    from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicForAudioClassification, AudioMosaicModel

    config = AudioMosaicConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                               num_labels=3)
    model = AudioMosaicForAudioClassification(config)
    folder = _pickle_only_folder(model, tmp_path / "pickled")
    for load in (AudioMosaicModel.from_pretrained, AutoModel.from_pretrained,
                 AudioMosaicForAudioClassification.from_pretrained, AutoModelForAudioClassification.from_pretrained):
        with pytest.raises(OSError, match=r"holds only pickle weights \(pytorch_model.bin\).*use_safetensors=False"):
            load(folder)
    loaded = AudioMosaicForAudioClassification.from_pretrained(folder, use_safetensors=False)  # the explicit opt-in
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    # a safetensors checkpoint next to a pickle one loads as usual
    model.save_pretrained(tmp_path / "both")
    torch.save(model.state_dict(), tmp_path / "both" / "pytorch_model.bin")
    AudioMosaicForAudioClassification.from_pretrained(tmp_path / "both")


def test_pickle_only_audio_llm_is_refused(tmp_path):
    from test_audio_llm import make_model

    from modeling_audiomosaic import AudioMosaicForConditionalGeneration

    model = make_model("llama")
    folder = _pickle_only_folder(model, tmp_path / "llm")
    with pytest.raises(OSError, match="holds only pickle weights"):
        AudioMosaicForConditionalGeneration.from_pretrained(folder)
    loaded = AudioMosaicForConditionalGeneration.from_pretrained(folder, use_safetensors=False)
    key = next(iter(model.state_dict()))
    torch.testing.assert_close(loaded.state_dict()[key], model.state_dict()[key])


# ---------------------------------------------------------------------------------------------------------------------
# non-finite losses during pre-training
# ---------------------------------------------------------------------------------------------------------------------


def test_nonfinite_loss_is_skipped_logged_and_leaves_weights_and_adam_untouched(tmp_path):
    from transformers import TrainerCallback, TrainingArguments

    from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicForPreTraining
    from modeling_audiomosaic.pretraining_trainer import AudioMosaicPretrainingTrainer

    config = AudioMosaicConfig.from_preset("speechcommands", hidden_size=32, num_hidden_layers=1,
                                           num_attention_heads=4, intermediate_size=64, projection_hidden_size=16,
                                           projection_dim=8)
    model = AudioMosaicForPreTraining(config)
    data = [{"input_values": torch.randn(2, 128, 128)} for _ in range(16)]
    calls = {"n": 0}

    def collate(items):  # the 3rd batch drawn is poisoned
        calls["n"] += 1
        x = torch.stack([item["input_values"] for item in items])
        return {"input_values": torch.full_like(x, float("nan")) if calls["n"] == 3 else x}

    class Snapshots(TrainerCallback):
        def __init__(self):
            self.params, self.buffers, self.skipped = [], [], []

        def on_step_end(self, args, state, control, model=None, **kwargs):
            self.params.append({n: p.detach().clone() for n, p in model.named_parameters()})
            self.buffers.append({n: b.detach().clone() for n, b in model.named_buffers()})
            self.skipped.append(trainer.nonfinite_losses)

    args = TrainingArguments(output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=2, learning_rate=1e-2,
                             use_cpu=True, report_to="none", logging_steps=1, save_strategy="no",
                             dataloader_num_workers=0, disable_tqdm=True, max_grad_norm=1.0)
    snapshots = Snapshots()
    trainer = AudioMosaicPretrainingTrainer(model=model, args=args, train_dataset=data, data_collator=collate,
                                            callbacks=[snapshots])
    trainer.train()
    assert trainer.nonfinite_losses == 1 and trainer.optimizer_steps_skipped == 1
    bad = snapshots.skipped.index(1)  # the step whose batch was poisoned
    assert bad >= 1
    for name, value in snapshots.params[bad].items():  # no update at all on that step ...
        assert torch.equal(value, snapshots.params[bad - 1][name]), name
    for name, value in snapshots.buffers[bad].items():  # ... nor of the projector's BatchNorm statistics
        assert torch.equal(value, snapshots.buffers[bad - 1][name]), name
    assert any(not torch.equal(v, snapshots.buffers[bad][n]) for n, v in snapshots.buffers[bad + 1].items())
    moved = [not torch.equal(v, snapshots.params[bad][n]) for n, v in snapshots.params[bad + 1].items()]
    assert any(moved)  # ... but on the next one
    adam_steps = {int(s["step"]) for s in trainer.optimizer.state.values() if "step" in s}
    assert adam_steps == {5}  # 6 steps, 1 skipped: Adam's moments never saw the bad batch
    assert trainer.lr_scheduler.last_epoch == 5  # ... nor did the learning-rate schedule advance on it
    logged = [h for h in trainer.state.log_history if "loss" in h]
    # logged every step: the skipped step trained on no batch, so it has no loss (NaN, not a 0 that biases the curve)
    assert np.isnan(logged[bad]["loss"]) and all(np.isfinite(h["loss"]) for i, h in enumerate(logged) if i != bad)
    assert logged[-1]["nonfinite_losses_skipped"] == 1 and logged[-1]["optimizer_steps_skipped"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_logged_loss_is_the_mean_of_the_batches_not_skipped(tmp_path):
    """With gradient accumulation and a logging interval of several steps, a skipped micro-batch is left out of the
    logged loss's mean instead of counting as a 0."""
    from transformers import TrainingArguments

    from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicForPreTraining
    from modeling_audiomosaic.pretraining_trainer import AudioMosaicPretrainingTrainer

    config = AudioMosaicConfig.from_preset("speechcommands", hidden_size=32, num_hidden_layers=1,
                                           num_attention_heads=4, intermediate_size=64, projection_hidden_size=16,
                                           projection_dim=8)
    data = [{"input_values": torch.randn(2, 128, 128)} for _ in range(16)]
    calls = {"n": 0}

    def collate(items):  # the 3rd micro-batch drawn is poisoned
        calls["n"] += 1
        x = torch.stack([item["input_values"] for item in items])
        return {"input_values": torch.full_like(x, float("nan")) if calls["n"] == 3 else x}

    class Recording(AudioMosaicPretrainingTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
            losses.append(float(outputs.loss.detach()))
            return (loss, outputs) if return_outputs else loss

    losses = []
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=2, learning_rate=1e-3,
                             gradient_accumulation_steps=2, use_cpu=True, report_to="none", logging_steps=2,
                             save_strategy="no", dataloader_num_workers=0, disable_tqdm=True)
    trainer = Recording(model=AudioMosaicForPreTraining(config), args=args, train_dataset=data, data_collator=collate)
    result = trainer.train()
    assert len(losses) == 8 and not np.isfinite(losses[2]) and trainer.nonfinite_losses == 1
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert logged[0] == pytest.approx(np.mean([losses[0], losses[1], losses[3]]), abs=1e-4)  # not a sum over 4
    assert logged[1] == pytest.approx(np.mean(losses[4:]), abs=1e-4)
    good = [loss for loss in losses if np.isfinite(loss)]
    assert trainer.mean_training_loss(result.training_loss) == pytest.approx(np.mean(good), rel=1e-5)


def test_long_files_are_read_only_around_the_crop(bad_folder, monkeypatch, tmp_path):
    """A 1 h file with max_seconds=2: soundfile reads a 2 s window (+ a resampling margin), not the hour; random crops
    are real segments of the file, drawn reproducibly."""
    import modeling_audiomosaic.feature_extraction.audio_io as audio_io

    reads = []
    real_read = sf.read

    def spy(file, *args, **kwargs):
        reads.append(kwargs.get("frames", -1))
        return real_read(file, *args, **kwargs)

    monkeypatch.setattr(audio_io.sf, "read", spy)
    path = str(bad_folder / "good" / "hour.wav")
    whole = np.tile(INT16, 3600)
    for seed in (0, 1):
        decoder = ExampleDecoder(max_seconds=2.0, crop="random", crop_seed=seed)
        wave = decoder.decode({"audio": path})["audio"]
        again = ExampleDecoder(max_seconds=2.0, crop="random", crop_seed=seed).decode({"audio": path})["audio"]
        np.testing.assert_array_equal(wave, again)
        assert wave.shape == (32000,)
        # locate the crop in the hour: BASE repeats every second, so match its offset inside one period
        offset = int(np.argmin([np.abs(whole[k : k + 64] / 32768 - wave[:64]).max() for k in range(RATE)]))
        np.testing.assert_allclose(wave, whole[offset : offset + 32000] / 32768, atol=1e-7)
    assert reads and max(reads) < 2 * 32000, reads  # never the whole hour (57.6 M frames)
    # a resampled long file: the window is read at the source rate, resampled, then cut to max_samples
    sf.write(tmp_path / "long_8k.wav", np.tile(_base(8000, seed=3), 600), 8000, subtype="FLOAT")
    wave = ExampleDecoder(max_seconds=2.0, crop="start").decode({"audio": str(tmp_path / "long_8k.wav")})["audio"]
    full = soxr.resample(np.tile(_base(8000, seed=3), 3), 8000, RATE)[:32000]
    assert wave.shape == (32000,)
    np.testing.assert_allclose(wave[:31000], full[:31000], atol=2e-3)  # same signal; only the far edge differs
