"""A CLAP distillation teacher's spectrogram on the device (MAM-CLAP with views on the device): equal to transformers'
`ClapFeatureExtractor` for the same seed, the collator's host and device paths equal, no device value read on the
host, and a pre-training run with a CLAP teacher folder and views on the device."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from test_device_views import BlockingHostToDevice
from transformers import ClapFeatureExtractor

from modeling_audiomosaic.feature_extraction import (
    AudioMosaicFeatureExtractor,
    ContrastiveViewGenerator,
    PretrainingViewsCollator,
)
from modeling_audiomosaic.feature_extraction.clap_device import ClapFeaturesOnDevice
from modeling_audiomosaic.pretraining_trainer import AudioMosaicPretrainingTrainer


def _small_extractor(truncation: str, padding: str = "repeatpad", feature_size: int = 64) -> ClapFeatureExtractor:
    # 1 s windows at 16 kHz (the extractor's default is 10 s at 48 kHz; the same code paths, 30x less work)
    return ClapFeatureExtractor(feature_size=feature_size, sampling_rate=16000, max_length_s=1, hop_length=160,
                                fft_window_size=512, truncation=truncation, padding=padding,
                                frequency_max=8000)


def _waves(lengths, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        t = np.arange(n) / 16000
        out.append((0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) + 0.02 * rng.standard_normal(n))
                   .astype(np.float32))
    return out


def _reference(extractor, waves, seed):
    """`ClapFeatureExtractor` itself, its random draws from numpy's global generator seeded with `seed`."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        return extractor(waves, sampling_rate=extractor.sampling_rate, return_tensors="pt")
    finally:
        np.random.set_state(saved)


# longer than the window (fusion: 3 random chunks + the shrunk whole; rand_trunc: a random window), under one hop
# longer (fusion keeps the whole clip), exactly the window, shorter (padding), much shorter (repeated many times)
LENGTHS = [23000, 16100, 16000, 7000, 900]


@pytest.mark.parametrize("truncation, padding", [("fusion", "repeatpad"), ("fusion", "repeat"),
                                                 ("rand_trunc", "pad"), ("rand_trunc", "repeatpad")])
def test_device_features_equal_the_extractor(truncation, padding):
    extractor = _small_extractor(truncation, padding)
    device = ClapFeaturesOnDevice(extractor)
    waves = _waves(LENGTHS)
    for seed in (0, 1, 2):
        expected = _reference(extractor, waves, seed)
        host = device.plan(waves, np.random.RandomState(seed), sampling_rate=16000)
        got = device(host["teacher_waveforms"], host["teacher_plan"])
        assert got["input_features"].shape == expected["input_features"].shape
        assert got["input_features"].dtype == expected["input_features"].dtype == torch.float32
        torch.testing.assert_close(got["input_features"], expected["input_features"], rtol=0, atol=1e-4)
        assert torch.equal(got["is_longer"], expected["is_longer"])
    if truncation == "fusion":  # the long clip's chunks differ between seeds: the draws are really used
        first = device(**_call_args(device.plan(waves, np.random.RandomState(0), sampling_rate=16000)))
        other = device(**_call_args(device.plan(waves, np.random.RandomState(5), sampling_rate=16000)))
        assert not torch.equal(first["input_features"][0, 1:], other["input_features"][0, 1:])


def _call_args(host):
    return {"waves": host["teacher_waveforms"], "plan": host["teacher_plan"]}


def test_fusion_marks_one_clip_longer_when_none_is():
    extractor = _small_extractor("fusion")
    device = ClapFeaturesOnDevice(extractor)
    waves = _waves([7000, 9000, 12000, 5000])
    marked = set()
    for seed in range(8):
        expected = _reference(extractor, waves, seed)
        got = device(**_call_args(device.plan(waves, np.random.RandomState(seed), sampling_rate=16000)))
        assert torch.equal(got["is_longer"], expected["is_longer"]) and int(got["is_longer"].sum()) == 1
        marked.add(int(got["is_longer"].flatten().nonzero()))
    assert len(marked) > 1


def test_float32_spectrogram_differs_only_near_the_floor():
    extractor = _small_extractor("rand_trunc")
    waves = _waves(LENGTHS)
    host = ClapFeaturesOnDevice(extractor).plan(waves, np.random.RandomState(0), sampling_rate=16000)
    exact = ClapFeaturesOnDevice(extractor)(**_call_args(host))["input_features"]
    single = ClapFeaturesOnDevice(extractor, dtype=torch.float32)(**_call_args(host))["input_features"]
    loud = exact > -60.0  # dB; the floor is -100
    assert loud.float().mean() > 0.3
    torch.testing.assert_close(single[loud], exact[loud], rtol=0, atol=1e-2)


def test_collator_host_and_device_paths_give_the_same_teacher_inputs():
    """The realistic shape: the student's 10.24 s crops at 16 kHz, the default CLAP extractor (10 s at 48 kHz,
    fusion), so the clips are resampled and longer than the teacher's window. The device path resamples the views'
    crops on the device (no teacher waveforms in the batch): the teacher's waveforms equal the host's resampling within
    1e-6, its features within 1e-3 dB above -40 dB (5e-3 above -60 dB); below, in the bands above the student's 8 kHz
    where the clips have no sound, the two resamplings' float32 rounding noise differs."""
    fe = AudioMosaicFeatureExtractor()
    views = ContrastiveViewGenerator(fe, augmentation="none")
    extractor = ClapFeatureExtractor()
    examples = [{"audio": wave, "id": f"c{i}", "epoch": 3} for i, wave in enumerate(_waves([180000, 163840, 90000]))]
    host = PretrainingViewsCollator(views, seed=7, teacher_feature_extractor=extractor)(examples)
    expected = host["teacher_inputs"]["input_features"]
    collator = PretrainingViewsCollator(views, seed=7, teacher_feature_extractor=extractor, views_on_device=True)
    collator = pickle.loads(pickle.dumps(collator))  # as a DataLoader worker gets it
    assert collator.teacher_resampled_on_device
    batch = collator(examples)
    assert "teacher_inputs" not in batch and "teacher_waveforms" not in batch
    planned = {"kind", "chunks", "is_longer", "lengths", "start", "period", "valid", "factor"}
    assert set(batch["teacher_plan"]) == planned
    trainer = AudioMosaicPretrainingTrainer.__new__(AudioMosaicPretrainingTrainer)  # needs only the collator
    trainer.data_collator = collator
    inputs = dict(batch)
    teacher_inputs = trainer.device_teacher_inputs(inputs)
    assert "teacher_plan" not in inputs and "waveforms" in inputs  # the views still need their waveforms
    got = teacher_inputs["input_features"]
    assert got.shape == expected.shape == (3, 4, 1001, 64)
    for level, tolerance in ((-40.0, 1e-3), (-60.0, 5e-3)):
        sound = expected > level
        assert sound.float().mean() > 0.5
        torch.testing.assert_close(got[sound], expected[sound], rtol=0, atol=tolerance)
    assert torch.equal(teacher_inputs["is_longer"], host["teacher_inputs"]["is_longer"])
    front_end = collator.teacher_on_device
    crops = [row[:n].numpy() for row, n in zip(batch["waveforms"], batch["waveform_lengths"].tolist())]
    sent = front_end.plan(crops, np.random.RandomState(0))
    made = front_end.teacher_waveforms(batch["waveforms"], front_end.plan(crops, np.random.RandomState(0),
                                                                          waveforms=False)["teacher_plan"])
    torch.testing.assert_close(made, sent["teacher_waveforms"], rtol=0, atol=1e-6)
    # where the resampler is no fixed filter the workers resample and send the waveforms: the host path's features
    collator.teacher_resampled_on_device = False
    sent_batch = collator(examples)
    torch.testing.assert_close(trainer.device_teacher_inputs(dict(sent_batch))["input_features"], expected,
                               rtol=0, atol=1e-4)
    # the teacher's randomness is a function of (seed, epoch, ids): another epoch draws other chunks
    later = collator([dict(example, epoch=4) for example in examples])
    assert not torch.equal(later["teacher_plan"]["chunks"], batch["teacher_plan"]["chunks"])


@pytest.mark.parametrize("truncation, padding", [("fusion", "repeatpad"), ("fusion", "repeat"),
                                                 ("rand_trunc", "pad"), ("rand_trunc", "repeatpad")])
def test_teacher_waveforms_made_on_the_device_equal_the_resampled_ones(truncation, padding):
    """Every layout (a window of a longer clip, the whole clip, repeated and / or zero-padded shorter clips) made on
    the device from zero-padded 16 kHz crops equals the host's resampling (soxr) and layout within 1e-6."""
    from modeling_audiomosaic.feature_extraction.augmentation_device import padded_rows
    from modeling_audiomosaic.feature_extraction.feature_extraction_audiomosaic import resample_audio

    device = ClapFeaturesOnDevice(ClapFeatureExtractor(truncation=truncation, padding=padding, max_length_s=1))
    factor, kernel = device.resampling_kernel(16000)
    assert factor == 3 and kernel.ndim == 1 and kernel.shape[0] % 2 == 1
    waves = _waves([23000, 16000, 7000, 900, 16010])
    crops, _ = padded_rows(waves)
    for seed in (0, 1):
        sent = device.plan(waves, np.random.RandomState(seed))
        plan = device.plan(waves, np.random.RandomState(seed), waveforms=False)["teacher_plan"]
        assert "teacher_waveforms" in sent and torch.equal(plan["start"], sent["teacher_plan"]["start"])
        made = device.teacher_waveforms(crops, plan)
        torch.testing.assert_close(made, sent["teacher_waveforms"], rtol=0, atol=1e-6)
    resampled = resample_audio(waves[3], 16000, 48000)
    assert resampled.shape[0] == 3 * 900 and device.resampling_kernel(44100) is None  # no integer ratio


def test_device_features_read_no_device_value_on_the_host():
    extractor = _small_extractor("fusion")
    device = ClapFeaturesOnDevice(extractor)
    host = device.plan(_waves(LENGTHS), np.random.RandomState(0), sampling_rate=16000)
    assert set(host["teacher_plan"]["kind"].tolist()) == {0, 1, 2} - {0}  # chunks and copies
    waves = torch.empty(host["teacher_waveforms"].shape, device="meta")
    for call in range(2):  # the first call also builds the device's constants
        with BlockingHostToDevice() as copies:
            out = device(waves, host["teacher_plan"])
    assert out["input_features"].device.type == "meta" and out["input_features"].shape == (5, 4, 101, 64)
    assert copies.blocking == [], "\n".join(copies.blocking)
    # the teacher's waveforms made from the views' crops (a 48 kHz teacher: resampled on the device)
    teacher = ClapFeaturesOnDevice(ClapFeatureExtractor(max_length_s=1))
    plan = teacher.plan(_waves(LENGTHS), np.random.RandomState(0), waveforms=False)["teacher_plan"]
    crops = torch.empty(len(LENGTHS), max(LENGTHS), device="meta")
    for call in range(2):  # the first call also measures the resampler and moves its filter to the device
        with BlockingHostToDevice() as copies:
            made = teacher.teacher_waveforms(crops, plan)
    assert made.device.type == "meta" and made.shape == (len(LENGTHS), 3 * max(LENGTHS))
    assert copies.blocking == [], "\n".join(copies.blocking)


def test_clear_errors():
    with pytest.raises(TypeError, match="needs a ClapFeatureExtractor"):
        ClapFeaturesOnDevice(AudioMosaicFeatureExtractor())
    with pytest.raises(ValueError, match="feature_size=64 only"):
        ClapFeaturesOnDevice(_small_extractor("fusion", feature_size=16))
    trainer = AudioMosaicPretrainingTrainer.__new__(AudioMosaicPretrainingTrainer)
    trainer.data_collator = None
    with pytest.raises(ValueError, match="has no teacher_on_device"):
        trainer.device_teacher_inputs({"teacher_waveforms": torch.zeros(1, 8), "teacher_plan": {}})
    device = ClapFeaturesOnDevice(_small_extractor("fusion"))
    plan = device.plan(_waves([900]), np.random.RandomState(0), sampling_rate=44100, waveforms=False)
    assert "teacher_waveforms" in plan  # no integer ratio: resampled on the host whatever was asked
    with pytest.raises(ValueError, match="cannot be made on the device"):
        device.teacher_waveforms(torch.zeros(1, 900), {**plan["teacher_plan"], "factor": torch.tensor(0)})
    # views on the host: the extractor runs in the collator, as before
    views = ContrastiveViewGenerator(AudioMosaicFeatureExtractor.from_preset("speechcommands"), augmentation="none")
    assert PretrainingViewsCollator(views, teacher_feature_extractor=_small_extractor("fusion")).teacher_on_device \
        is None


def test_run_pretrain_with_a_clap_teacher_and_views_on_device(tmp_path):
    """`--teacher_name_or_path` a local CLAP folder (model + feature extractor), views and teacher spectrogram on the
    device: the run trains on the losses of the run with both on the host."""
    import json

    import run_pretrain
    import soundfile as sf
    from test_run_pretrain import tiny_recipe
    from transformers import ClapAudioConfig, ClapConfig, ClapModel, ClapTextConfig

    torch.manual_seed(0)
    audio = ClapAudioConfig(depths=[1, 1], num_attention_heads=[2, 2], patch_embeds_hidden_size=16, hidden_size=32,
                            window_size=4, spec_size=64, num_mel_bins=16, projection_dim=8)
    text = ClapTextConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=16, projection_dim=8)
    ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=8)) \
        .save_pretrained(tmp_path / "clap")
    ClapFeatureExtractor(feature_size=16, sampling_rate=8000, max_length_s=1, hop_length=128, fft_window_size=256,
                         frequency_max=4000,
                         truncation="rand_trunc").save_pretrained(tmp_path / "clap")
    (tmp_path / "audio").mkdir()
    records = []
    for i, wave in enumerate(_waves([24000, 20000, 16000, 30000])):
        sf.write(tmp_path / "audio" / f"c{i}.wav", wave, 16000)
        records.append({"wav": str(tmp_path / "audio" / f"c{i}.wav")})
    (tmp_path / "train.json").write_text(json.dumps({"data": records}))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(tiny_recipe())
    losses = {}
    for on_device in ("true", "false"):
        result = run_pretrain.main([
            "--config", str(recipe), "--train_path", str(tmp_path / "train.json"),
            "--output_dir", str(tmp_path / f"run_{on_device}"), "--objective", "distill", "--masking_mode", "random",
            "--mask_ratio", "0.8", "--teacher_name_or_path", str(tmp_path / "clap"), "--views_on_device", on_device,
            "--max_steps", "2", "--save_steps", "1",
        ])
        assert result["global_step"] == 2
        losses[on_device] = [h["distill_loss"] for h in result["log_history"] if "distill_loss" in h]
    assert len(losses["true"]) == 2 and all(np.isfinite(v) and v > 0 for v in losses["true"])
    # the same targets and views either way: the same training
    np.testing.assert_allclose(losses["true"], losses["false"], rtol=1e-4)
    # resumed after step 1, step 2 sees the same views and teacher targets
    resumed = run_pretrain.main([
        "--config", str(recipe), "--train_path", str(tmp_path / "train.json"),
        "--output_dir", str(tmp_path / "run_true"),
        "--objective", "distill", "--masking_mode", "random", "--mask_ratio", "0.8", "--teacher_name_or_path",
        str(tmp_path / "clap"), "--views_on_device", "true", "--max_steps", "2", "--save_steps", "1",
        "--resume_from_checkpoint", str(tmp_path / "run_true" / "checkpoint-1"),
    ])
    again = [h["distill_loss"] for h in resumed["log_history"] if "distill_loss" in h]
    np.testing.assert_allclose(again[-1], losses["true"][-1], rtol=1e-6)


def test_a_fused_clap_teacher_runs_eagerly_under_torch_compile():
    """transformers' CLAP with feature fusion selects the `is_longer` clips with a data-dependent `torch.where`: traced
    inside the student's compiled step it broke it into 5 graphs and recompiled as the count of longer clips changed.
    It runs eagerly instead (one break); the compiled step equals the eager one whatever the count."""
    import copy

    from transformers import ClapAudioConfig, ClapAudioModel

    from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicForPreTraining
    from modeling_audiomosaic.objective_distill import DistillationTeacher

    torch.manual_seed(0)
    clap = ClapAudioModel(ClapAudioConfig(depths=[1, 1], num_attention_heads=[2, 2], patch_embeds_hidden_size=16,
                                          hidden_size=32, window_size=4, spec_size=64, num_mel_bins=64,
                                          projection_dim=8, enable_fusion=True))
    config = AudioMosaicConfig.from_preset(
        "speechcommands", hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
        objective="distill", masking_mode="random", mask_ratio=0.8, distill_teacher_hidden_size=32,
        decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
        decoder_intermediate_size=32, drop_path_rate=0.0)
    model = AudioMosaicForPreTraining(config).train()
    model.set_distillation_teacher(DistillationTeacher(clap))
    eager = copy.deepcopy(model)
    eager.set_distillation_teacher(DistillationTeacher(clap))
    graphs_per_step = []

    def counting_backend(graph_module, example_inputs):  # runs the captured graphs as they are
        graphs_per_step[-1] += 1
        return graph_module.forward

    torch._dynamo.reset()
    compiled = torch.compile(model, backend=counting_backend)
    x = torch.randn(3, 128, 128)
    for step, longer in enumerate(([True, False, False], [True, True, False], [True, True, True])):
        graphs_per_step.append(0)
        teacher_inputs = {"input_features": torch.randn(3, 4, 63, 64), "is_longer": torch.tensor(longer)[:, None]}
        got = compiled(x, teacher_inputs=teacher_inputs, generator=torch.Generator().manual_seed(step))
        want = eager(x, teacher_inputs=teacher_inputs, generator=torch.Generator().manual_seed(step))
        torch.testing.assert_close(got.loss, want.loss, rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()
    # graphs compiled at each step: those of the first only (2: before the teacher, and after it and the masking,
    # both eager); the traced teacher made 4 and recompiled at the next count
    assert graphs_per_step == [2, 0, 0], graphs_per_step
