"""Fine-tuning / probing pieces (LLRD, mixup, SpecAugment, cached probes) and run_audio_classification.py end to end
on tiny generated data (sine tones per class + noise, 16 kHz)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import run_audio_classification as rac
import soundfile as sf
import torch
from safetensors.torch import load_file

import modeling_audiomosaic  # noqa: F401  (registers the Auto classes)
from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicForAudioClassification, AudioMosaicForPreTraining
from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor
from modeling_audiomosaic.finetuning import (
    AudioClassificationTrainCollator,
    SpecAugment,
    add_noise_and_shift,
    get_layer_id,
    layer_decay_param_groups,
    mixup_waveforms,
    normalized_fill_value,
)
from modeling_audiomosaic.modeling_audiomosaic import classification_loss, soft_target_cross_entropy
from modeling_audiomosaic.probing import extract_probe_features

REPO = Path(__file__).resolve().parents[1]

TONES = {"low": 300.0, "mid": 1200.0, "high": 3500.0}
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_length=64,
            num_mel_bins=128, drop_path_rate=0.0)


def tiny_config(**kw) -> AudioMosaicConfig:
    return AudioMosaicConfig(**{**TINY, **kw})


# ---------------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Per task layout of the corpus builder: {train,validation,test}.json manifests + csv + labels.csv."""
    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 8), ("validation", 4), ("test", 4)):
        rows = []
        for label, freq in TONES.items():
            for i in range(per_class):
                t = np.arange(int(16000 * rng.uniform(0.45, 0.8))) / 16000  # shorter than 64 frames: padded
                wave = 0.4 * np.sin(2 * np.pi * freq * rng.uniform(0.95, 1.05) * t) + 0.05 * rng.standard_normal(t.size)
                rel = f"audio/{split}/{label}_{i}.wav"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(root / rel, wave.astype(np.float32), 16000)
                rows.append({"wav": rel, "labels": label, "group": f"{label}_{i % 3}", "source": "synthetic"})
        (root / f"{split}.json").write_text(json.dumps({"data": rows}))
        with open(root / f"{split}.csv", "w") as handle:
            handle.write("path,label,group,source\n")
            handle.writelines(f"{r['wav']},{r['labels']},{r['group']},{r['source']}\n" for r in rows)
    (root / "labels.csv").write_text("index,label\n" + "".join(f"{i},{k}\n" for i, k in enumerate(TONES)))
    return root


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    """A tiny AudioMosaic *pre-training* checkpoint (+ feature extractor), the usual starting point."""
    folder = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    AudioMosaicForPreTraining(tiny_config(projection_hidden_size=16, projection_dim=8)).save_pretrained(folder)
    AudioMosaicFeatureExtractor.from_preset("speechcommands", max_length=64).save_pretrained(folder)
    return folder


def run(data_dir, out_dir, *extra, model=None, splits=("validation", "test")):
    argv = ["--train_file", str(data_dir / "train.json"), "--label_file", str(data_dir / "labels.csv"),
            "--output_dir", str(out_dir), "--use_cpu", "true", "--per_device_train_batch_size", "8",
            "--per_device_eval_batch_size", "16", "--disable_tqdm", "true", "--seed", "3", "--save_total_limit", "10"]
    for split in splits:
        argv += [f"--{split}_file", str(data_dir / f"{split}.json")]
    if model is not None:
        argv += ["--model_name_or_path", str(model)]
    return rac.main(argv + [str(x) for x in extra])


def changed(before: dict, after: dict, atol: float = 0.0) -> set[str]:
    return {k for k in after if k in before and (after[k].float() - before[k].float()).abs().max().item() > atol}


# ------------------------------------------------------------------------------------------------------------- LLRD
def test_layer_decay_groups_exact_scales():
    model = AudioMosaicForAudioClassification(tiny_config(num_labels=3, classifier_head="weighted_sum"))
    decay, base = 0.5, 1e-3
    groups = layer_decay_param_groups(model, weight_decay=0.05, layer_decay=decay, base_lr=base)
    by_name = {name: g for g in groups for name in g["param_names"]}
    assert set(by_name) == {n for n, _ in model.named_parameters()}
    expected_ids = {
        "audiomosaic.embeddings.cls_token": 0,
        "audiomosaic.embeddings.position_embeddings": 0,
        "audiomosaic.embeddings.patch_embeddings.projection.weight": 0,
        "audiomosaic.embeddings.patch_embeddings.norm.weight": 0,
        "audiomosaic.embeddings.pre_layernorm.weight": 3,  # the original's quirk: norm_pre at the full lr
        "audiomosaic.layers.0.attention.qkv.weight": 1,
        "audiomosaic.layers.1.mlp.fc2.bias": 2,
        "audiomosaic.pooler.fc_norm.weight": 3,
        "layer_sum.layer_weights": 3,
        "classifier.dense.weight": 3,
    }
    for name, layer_id in expected_ids.items():
        group = by_name[name]
        assert group["layer_id"] == layer_id, name
        assert group["lr_scale"] == decay ** (3 - layer_id)
        assert group["lr"] == pytest.approx(base * decay ** (3 - layer_id), rel=1e-15)
    # no weight decay: 1-D tensors, CLS token, position table; decay: matrices / kernels
    for name in ("audiomosaic.embeddings.cls_token", "audiomosaic.embeddings.position_embeddings",
                 "audiomosaic.layers.0.attention.qkv.bias", "audiomosaic.pooler.fc_norm.weight",
                 "layer_sum.layer_weights", "classifier.dense.bias"):
        assert by_name[name]["weight_decay"] == 0.0, name
    for name in ("audiomosaic.layers.0.attention.qkv.weight", "classifier.dense.weight",
                 "audiomosaic.embeddings.patch_embeddings.projection.weight"):
        assert by_name[name]["weight_decay"] == 0.05, name
    assert groups[0]["lr_scale"] == 1.0  # the head group first (what Trainer logs as the lr)
    # norm_pre with the stem instead of the quirk
    alt = {n: g for g in layer_decay_param_groups(model, layer_decay=decay, norm_pre="embeddings")
           for n in g["param_names"]}
    assert alt["audiomosaic.embeddings.pre_layernorm.bias"]["lr_scale"] == decay**3
    # frozen parameters are left out
    model.freeze_encoder()
    names = {n for g in layer_decay_param_groups(model, layer_decay=decay) for n in g["param_names"]}
    assert names == {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith("audiomosaic.layers") for n in names)


def test_layer_ids_of_other_vit_names():
    assert get_layer_id("audio_spectrogram_transformer.embeddings.cls_token", 12) == 0
    assert get_layer_id("audio_spectrogram_transformer.embeddings.distillation_token", 12) == 0
    assert get_layer_id("audio_spectrogram_transformer.encoder.layer.11.output.dense.weight", 12) == 12
    assert get_layer_id("blocks.0.attn.qkv.weight", 12) == 1
    assert get_layer_id("norm_pre.weight", 12) == 13 and get_layer_id("norm_pre.weight", 12, "embeddings") == 0
    assert get_layer_id("classifier.dense.weight", 12) == 13
    assert get_layer_id("attentive_pooling.layer_norms.3.weight", 12) == 13  # not mistaken for a block


# ------------------------------------------------------------------------------------------------------------ mixup
def test_mixup_label_and_waveform_math():
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) + 0.3 for n in (800, 1200, 1000, 900)]
    targets = np.eye(3, dtype=np.float32)[[0, 1, 2, 1]]
    mixed_waves, mixed_targets, params = mixup_waveforms(waves, targets, 1.0, generator=7, return_params=True)
    assert params["mixed"].all()
    for i in range(4):
        j, lam = int(params["partner"][i]), float(params["lam"][i])
        assert j != i and 0.0 < lam < 1.0
        np.testing.assert_allclose(mixed_targets[i], lam * targets[i] + (1 - lam) * targets[j], rtol=1e-6)
        assert mixed_targets[i].sum() == pytest.approx(1.0)
        first = waves[i] - waves[i].mean()
        second = waves[j] - waves[j].mean()
        second = np.pad(second, (0, max(0, len(first) - len(second))))[: len(first)]
        expected = lam * first + (1 - lam) * second
        np.testing.assert_allclose(mixed_waves[i], expected - expected.mean(), atol=1e-5)
        assert len(mixed_waves[i]) == len(waves[i])
    # same seed -> same result; probability 0 -> untouched
    again = mixup_waveforms(waves, targets, 1.0, generator=7)
    np.testing.assert_array_equal(again[1], mixed_targets)
    untouched, same_targets = mixup_waveforms(waves, targets, 0.0, generator=7)
    assert all(a is b or np.array_equal(a, b) for a, b in zip(untouched, waves))
    np.testing.assert_array_equal(same_targets, targets)
    # lambda ~ Beta(10, 10): mean 0.5, std ~0.109
    lam = mixup_waveforms([np.ones(400, np.float32)] * 2000, np.eye(2, dtype=np.float32)[[0, 1] * 1000], 1.0,
                          generator=1, return_params=True)[2]["lam"]
    assert abs(lam.mean().item() - 0.5) < 0.01 and abs(lam.std().item() - (1 / 84) ** 0.5) < 0.01


def test_soft_target_cross_entropy_is_mixed_ce():
    torch.manual_seed(0)
    logits = torch.randn(5, 4)
    y1, y2 = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([1, 1, 3, 0, 2])
    lam = torch.rand(5)
    soft = lam[:, None] * torch.nn.functional.one_hot(y1, 4) + (1 - lam[:, None]) * torch.nn.functional.one_hot(y2, 4)
    ce = torch.nn.functional.cross_entropy
    expected = (lam * ce(logits, y1, reduction="none") + (1 - lam) * ce(logits, y2, reduction="none")).mean()
    assert torch.allclose(soft_target_cross_entropy(logits, soft), expected, atol=1e-6)
    assert torch.allclose(classification_loss(logits, soft, "single_label_classification"), expected, atol=1e-6)
    assert torch.allclose(classification_loss(logits, y1, None), ce(logits, y1))
    multi = (torch.rand(5, 4) > 0.5).float()
    assert torch.allclose(classification_loss(logits, multi, None),
                          torch.nn.functional.binary_cross_entropy_with_logits(logits, multi))
    # the same losses as the model's own (hard targets)
    model = AudioMosaicForAudioClassification(tiny_config(num_labels=4, problem_type="multi_label_classification"))
    expected = classification_loss(logits, multi, model.config.problem_type)
    assert torch.allclose(model.compute_loss(logits, multi), expected)


# ----------------------------------------------------------------------------------------------------- SpecAugment
def test_spec_augment_fills_normalised_raw_zero():
    fe = AudioMosaicFeatureExtractor.from_preset("audioset")
    fill = normalized_fill_value(fe)
    assert fill == pytest.approx((0 + 4.2677393) / (2 * 4.5689974)) and fill == pytest.approx(0.46703, abs=1e-5)
    # the feature extractor's zero padding has the same value (raw 0 before normalisation)
    padded = fe(np.random.default_rng(0).standard_normal(16000).astype(np.float32), sampling_rate=16000,
                return_tensors="pt")["input_values"]
    assert padded[0, -1, 0].item() == pytest.approx(fill, abs=1e-6)

    aug = SpecAugment.from_feature_extractor(fe, freq_mask_param=48, time_mask_param=192)
    x = torch.randn(64, 1024, 128) * 3  # never equal to the fill value by chance
    out, freq, time = aug(x, generator=0, return_masks=True)
    assert not torch.equal(out, x) and torch.equal(x, x.clone())  # input untouched
    masked = out == fill
    expected = time[:, :, None] | freq[:, None, :]
    assert torch.equal(masked, expected)
    assert torch.equal(out[~expected], x[~expected])
    for b in range(64):  # one contiguous band / one contiguous time stripe, widths < param
        for mask, param in ((freq[b], 48), (time[b], 192)):
            idx = torch.nonzero(mask).flatten()
            assert idx.numel() < param
            if idx.numel():
                assert (idx[-1] - idx[0] + 1).item() == idx.numel()
    # torchaudio's width distribution: floor(U * param) -> mean ~ (param - 1) / 2
    assert abs(time.sum(1).float().mean().item() - 95.5) < 15
    assert torch.equal(aug(x, generator=0), out)  # reproducible
    assert SpecAugment(0, 0).is_identity
    # Speech Commands noise/shift keeps shape and changes values
    noisy = add_noise_and_shift(x[:2, :128], generator=0)
    assert noisy.shape == (2, 128, 128) and not torch.equal(noisy, x[:2, :128])


def test_train_collator_without_augmentation_equals_eval_collator(data_dir):
    from modeling_audiomosaic import AudioClassificationCollator, build_label_vocabulary, load_audio_dataset

    dataset = load_audio_dataset(str(data_dir / "train.csv"))
    vocab = build_label_vocabulary(dataset)
    fe = AudioMosaicFeatureExtractor.from_preset("speechcommands", max_length=64)
    examples = [dataset[i] for i in range(6)]
    plain = AudioClassificationCollator(fe, vocab)(examples)
    train = AudioClassificationTrainCollator(fe, vocab)(examples)
    assert torch.equal(plain["input_values"], train["input_values"]) and torch.equal(plain["labels"], train["labels"])
    torch.manual_seed(0)
    mixed = AudioClassificationTrainCollator(fe, vocab, mixup=1.0, roll_and_gain=True,
                                             spec_augment=SpecAugment.from_feature_extractor(fe, 24, 16))(examples)
    assert mixed["labels"].dtype == torch.float32 and mixed["labels"].shape == (6, 3)
    assert torch.allclose(mixed["labels"].sum(1), torch.ones(6))
    assert mixed["input_values"].shape == plain["input_values"].shape


# --------------------------------------------------------------------------------------------- cached probe features
@pytest.mark.parametrize("head", ["linear", "layer", "weighted_sum", "attentive"])
def test_cached_probe_head_equals_model(head):
    torch.manual_seed(0)
    config = tiny_config(num_labels=5, classifier_head=head, probe_layer=0, attentive_probe_heads=2,
                         token_drop_time=0.2, token_drop_freq=0.2)
    model = AudioMosaicForAudioClassification(config)
    with torch.no_grad():  # non-trivial probe parameters
        for name, param in model.named_parameters():
            if not name.startswith("audiomosaic.layers") and not name.startswith("audiomosaic.embeddings"):
                param.add_(torch.randn_like(param) * 0.5)
    model.freeze_encoder()
    model.train()  # frozen encoder stays in eval mode; the cached features are computed in eval mode too
    x = torch.randn(3, 64, 128)
    features = extract_probe_features(model, x)
    assert features.shape == (3, 1 if head in ("linear", "layer") else 3, 32)
    cached = model.probe_head()
    assert {n for n, _ in cached.named_parameters()} <= {
        n.replace("audiomosaic.pooler.", "") for n, p in model.named_parameters() if p.requires_grad
    }
    model.eval()
    with torch.no_grad():
        expected = model(x).logits
        got = cached(features).logits
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    # the cached head shares parameters with the model
    assert cached.classifier.dense.weight is model.classifier.dense.weight


# ---------------------------------------------------------------------------------------------------- end to end
def _weights(folder) -> dict:
    return load_file(str(Path(folder) / "model.safetensors"))


def test_finetune_llrd_all_weights_change(data_dir, pretrained_dir, tmp_path):
    out = tmp_path / "ft"
    result = run(data_dir, out, "--num_train_epochs", "2", "--learning_rate", "2e-3", "--layer_decay", "0.5",
                 "--weight_decay", "0.01", "--mixup", "0.5", "--freqm", "24", "--timem", "16", "--roll_and_gain",
                 "true", "--token_drop_time", "0.2", "--token_drop_freq", "0.2", "--warmup_steps", "0",
                 "--lr_scheduler_type", "constant", "--feature_preset", "speechcommands", "--max_length", "64",
                 model=pretrained_dir)
    assert result["setup"]["cached_embeddings"] is False and result["setup"]["freeze_encoder"] is False
    # layer-wise lr decay: one lr per layer id, exactly 2e-3 * 0.5 ** (3 - id)
    groups = result["setup"]["optimizer_groups"]
    assert {g["layer_id"] for g in groups} == {0, 1, 2, 3}
    for group in groups:
        assert group["lr"] == pytest.approx(2e-3 * 0.5 ** (3 - group["layer_id"]), rel=1e-12)
    # every weight of the encoder (and the new head) changed; the pre-trained encoder was loaded
    before = {k: v for k, v in _weights(pretrained_dir).items() if k.startswith("audiomosaic.")}
    after = _weights(out)
    assert set(before) <= set(after)
    assert changed(before, after) == set(before)
    assert {"classifier.dense.weight", "classifier.dense.bias"} <= set(after)
    saved = json.loads((out / "config.json").read_text())
    assert saved["id2label"] == {"0": "low", "1": "mid", "2": "high"}
    assert saved["token_drop_time"] == 0.2


def test_linear_probe_cached_equals_uncached_and_selects_on_validation(data_dir, pretrained_dir, tmp_path):
    common = ("--num_train_epochs", "5", "--learning_rate", "5e-2", "--freeze_encoder", "true",
              "--lr_scheduler_type", "constant")
    cached = run(data_dir, tmp_path / "cached", *common, model=pretrained_dir)
    uncached = run(data_dir, tmp_path / "uncached", *common, "--cache_embeddings", "false", model=pretrained_dir)
    assert cached["setup"]["cached_embeddings"] is True and uncached["setup"]["cached_embeddings"] is False
    # frozen encoder: only fc_norm and the head changed
    before, after = _weights(pretrained_dir), _weights(tmp_path / "cached")
    assert changed(before, after) == {"audiomosaic.pooler.fc_norm.weight", "audiomosaic.pooler.fc_norm.bias"}
    assert {k for k in after if k not in before} == {"classifier.dense.weight", "classifier.dense.bias"}
    # cached embeddings == running the frozen encoder every step (no augmentation)
    uncached_weights = _weights(tmp_path / "uncached")
    for key, value in after.items():
        assert torch.allclose(value, uncached_weights[key], atol=1e-5), key
    for split in ("validation", "test"):
        for metric in ("accuracy", "macro_f1", "loss"):
            assert cached[split][metric] == pytest.approx(uncached[split][metric], abs=1e-5)
    assert cached["best_step"] == uncached["best_step"]
    # model selection on the validation split only
    for result in (cached, uncached):
        assert result["model_selection"] == "validation" and result["metric_for_best_model"] == "accuracy"
        evals = [h for h in result["log_history"] if "eval_accuracy" in h]
        assert len(evals) == 5
        best = max(evals, key=lambda h: h["eval_accuracy"])  # first maximum: strict improvement only
        assert result["best_step"] == best["step"] and result["best_metric"] == best["eval_accuracy"]
        assert result["best_checkpoint"].endswith(f"checkpoint-{best['step']}")
        assert result["validation"]["accuracy"] == pytest.approx(result["best_metric"])  # the best model was loaded
        assert not any(k.startswith("test_") for h in result["log_history"][:-1] for k in h)  # test evaluated once
        assert "accuracy" in result["test"] and result["test"]["accuracy"] > 0.34  # learned something
    on_disk = json.loads((tmp_path / "cached" / "results.json").read_text())
    assert on_disk["best_step"] == cached["best_step"] and on_disk["test"] == pytest.approx(cached["test"])


@pytest.mark.parametrize("head", ["layer", "weighted_sum", "attentive"])
def test_probe_heads_run(head, data_dir, pretrained_dir, tmp_path):
    result = run(data_dir, tmp_path / head, "--num_train_epochs", "2", "--learning_rate", "1e-2",
                 "--freeze_encoder", "true", "--classifier_head", head, "--probe_layer", "0",
                 model=pretrained_dir, splits=("validation",))
    assert result["setup"]["classifier_head"] == head and result["setup"]["cached_embeddings"] is True
    assert result["test"] is None and np.isfinite(result["validation"]["loss"])
    before, after = _weights(pretrained_dir), _weights(tmp_path / head)
    assert not any(k.startswith(("audiomosaic.layers", "audiomosaic.embeddings")) for k in changed(before, after))
    new = {k for k in after if k not in before}
    assert {"weighted_sum": "layer_sum.layer_weights", "attentive": "attentive_pooling.attn_key.weight",
            "layer": "classifier.dense.weight"}[head] in new
    config = json.loads((tmp_path / head / "config.json").read_text())
    assert config["classifier_head"] == head and config["token_drop_time"] == 0.0


def test_saved_model_works_with_pipeline_and_csv_random_init(data_dir, tmp_path):
    """Random-init baseline from presets, CSV manifests, labels inferred from train; the output loads in a pipeline."""
    from transformers import pipeline

    out = tmp_path / "scratch"
    argv = ["--train_file", str(data_dir / "train.csv"), "--validation_file", str(data_dir / "validation.csv"),
            "--output_dir", str(out), "--use_cpu", "true", "--num_train_epochs", "1", "--disable_tqdm", "true",
            "--input_preset", "speechcommands", "--feature_preset", "speechcommands", "--max_length", "64",
            "--config_overrides", json.dumps({k: v for k, v in TINY.items() if k != "drop_path_rate"}),
            "--per_device_train_batch_size", "12"]
    result = rac.main(argv)
    assert result["setup"]["from_scratch"] and result["task"]["labels"] == sorted(TONES)  # inferred, sorted
    classifier = pipeline("audio-classification", model=str(out), device="cpu")
    wave = 0.4 * np.sin(2 * np.pi * 1200 * np.arange(8000) / 16000).astype(np.float32)
    predictions = classifier(wave, top_k=3)
    assert {p["label"] for p in predictions} == set(TONES)
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-4)
    # --from_scratch with a folder: same architecture, new weights
    again = rac.main(argv[:2] + ["--output_dir", str(tmp_path / "again"), "--model_name_or_path", str(out),
                                 "--from_scratch", "true"] + argv[6:12])
    assert again["setup"]["from_scratch"] is True and again["validation"] is None  # no validation: no selection
    assert again["model_selection"] == "last" and again["best_step"] is None


def test_label_file_formats_and_group_split(tmp_path, data_dir):
    path = tmp_path / "labels.csv"
    path.write_text('index,mid,display_name\n1,/m/b,"Bee, buzzing"\n0,/m/a,Ant\n')
    assert rac.read_label_file(str(path)) == (["/m/a", "/m/b"], ["Ant", "Bee, buzzing"])
    assert rac.read_label_file(str(path), {"Ant"}) == (["Ant", "Bee, buzzing"], ["Ant", "Bee, buzzing"])
    path.write_text("dog\ncat\n")
    assert rac.read_label_file(str(path)) == (["dog", "cat"], None)
    from modeling_audiomosaic.feature_extraction import load_audio_dataset

    dataset = load_audio_dataset(str(data_dir / "train.json"), group_column="group")
    train, validation = rac.split_by_group(dataset, 30.0, seed=0)
    assert len(train) + len(validation) == len(dataset)
    assert not set(train.raw["group"]) & set(validation.raw["group"])


def test_selection_uses_validation_not_last_or_test(data_dir, pretrained_dir, tmp_path):
    """A validation split whose labels are permuted gets *worse* as the probe learns: the selected checkpoint is an
    early one (not the last), it is the one reloaded, and the test split is only evaluated at the end."""
    swapped = {"low": "mid", "mid": "high", "high": "low"}
    manifest = json.loads((data_dir / "validation.json").read_text())
    for row in manifest["data"]:
        row["labels"] = swapped[row["labels"]]
        row["wav"] = str(data_dir / row["wav"])
    (tmp_path / "validation_swapped.json").write_text(json.dumps(manifest))
    result = rac.main([
        "--train_file", str(data_dir / "train.json"), "--validation_file", str(tmp_path / "validation_swapped.json"),
        "--test_file", str(data_dir / "test.json"), "--label_file", str(data_dir / "labels.csv"),
        "--model_name_or_path", str(pretrained_dir), "--output_dir", str(tmp_path / "out"), "--use_cpu", "true",
        "--freeze_encoder", "true", "--num_train_epochs", "6", "--learning_rate", "5e-2", "--seed", "3",
        "--lr_scheduler_type", "constant", "--metric_for_best_model", "loss", "--disable_tqdm", "true",
        "--save_total_limit", "10",
    ])
    assert result["metric_for_best_model"] == "loss" and result["greater_is_better"] is False
    evals = [h for h in result["log_history"] if "eval_loss" in h]
    best = min(evals, key=lambda h: h["eval_loss"])
    assert result["best_step"] == best["step"] < result["global_step"]
    assert result["validation"]["loss"] == pytest.approx(best["eval_loss"], abs=1e-6)  # best model reloaded
    assert result["validation"]["loss"] < evals[-1]["eval_loss"]
    test_entries = [i for i, h in enumerate(result["log_history"]) if any(k.startswith("test_") for k in h)]
    assert test_entries == [len(result["log_history"]) - 1]


def test_multi_label_problem_type_bce_map_selection(data_dir, pretrained_dir, tmp_path):
    result = run(data_dir, tmp_path / "ml", "--num_train_epochs", "2", "--learning_rate", "5e-2", "--freeze_encoder",
                 "true", "--cache_embeddings", "false", "--mixup", "0.8", "--problem_type",
                 "multi_label_classification", model=pretrained_dir)
    assert result["task"]["problem_type"] == "multi_label_classification"
    assert result["metric_for_best_model"] == "mAP" and result["setup"]["augmentation"]["mixup"] == 0.8
    assert {"mAP", "macro_f1", "accuracy"} <= set(result["test"])  # one label per clip: top-1 accuracy too
    config = json.loads((tmp_path / "ml" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"


RECIPES = sorted(p for pattern in ("finetune_*.yaml", "linear_probe_*.yaml")
                 for p in (REPO / "run_scripts" / "recipes").glob(pattern))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipes_parse(recipe):
    model_args, data_args, training_args = rac.parse_args(["--config", str(recipe), "--output_dir", "unused"])
    assert training_args.load_best_model_at_end and training_args.eval_strategy == "epoch"
    if recipe.name.startswith("linear_probe_"):
        assert model_args.freeze_encoder
    else:
        assert not model_args.freeze_encoder and model_args.layer_decay < 1.0


def test_starts_from_bare_encoder_or_classifier_with_other_labels(data_dir, tmp_path):
    """`--model_name_or_path` may be a bare encoder folder or a classifier with another label set (head re-made)."""
    torch.manual_seed(0)
    fe = AudioMosaicFeatureExtractor.from_preset("speechcommands", max_length=64)
    sources = {"encoder": modeling_audiomosaic.AudioMosaicModel(tiny_config()),
               "classifier7": AudioMosaicForAudioClassification(tiny_config(num_labels=7))}
    for name, source in sources.items():
        source.save_pretrained(tmp_path / name)
        fe.save_pretrained(tmp_path / name)
        result = run(data_dir, tmp_path / f"out_{name}", "--num_train_epochs", "1", "--freeze_encoder", "true",
                     model=tmp_path / name, splits=("validation",))
        after, before = _weights(tmp_path / f"out_{name}"), _weights(tmp_path / name)
        prefix = "audiomosaic." if name == "encoder" else ""
        encoder_keys = [k for k in before if "pooler" not in k and not k.startswith("classifier")]
        assert encoder_keys and all(torch.equal(after[prefix + k], before[k]) for k in encoder_keys)
        assert after["classifier.dense.weight"].shape == (3, 32)
        assert json.loads((tmp_path / f"out_{name}" / "config.json").read_text())["id2label"] == {
            "0": "low", "1": "mid", "2": "high"}
        assert result["task"]["num_labels"] == 3


@pytest.mark.dist
def test_two_process_accelerate_launch(data_dir, pretrained_dir, tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo): fine-tuning with LLRD, mixup, SpecAugment and token drop."""
    import os
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "dist"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
           str(REPO / "run_scripts" / "run_audio_classification.py"), "--model_name_or_path", str(pretrained_dir),
           "--train_file", str(data_dir / "train.json"), "--validation_file", str(data_dir / "validation.json"),
           "--test_file", str(data_dir / "test.json"), "--label_file", str(data_dir / "labels.csv"),
           "--output_dir", str(out), "--use_cpu", "true", "--num_train_epochs", "2", "--per_device_train_batch_size",
           "4", "--learning_rate", "1e-3", "--layer_decay", "0.75", "--mixup", "0.5", "--freqm", "24", "--timem", "16",
           "--token_drop_time", "0.2", "--token_drop_freq", "0.2", "--disable_tqdm", "true"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    log = tmp_path / "launch.log"  # a file, not a pipe: a stray worker cannot block the test on a pipe read
    with open(log, "w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            proc.wait(timeout=400)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            # torch elastic starts the workers in their own sessions: end those of this run (unique output_dir)
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if str(out) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="ignore"):
                        os.kill(int(pid), 9)
                except OSError:
                    pass
            proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()[-5000:]
    result = json.loads((out / "results.json").read_text())
    assert result["global_step"] == 6  # 24 clips / (2 processes x 4) = 3 steps per epoch
    assert result["model_selection"] == "validation" and result["best_step"] in (3, 6)
    assert {"accuracy", "macro_f1"} <= set(result["test"]) and result["task"]["num_examples"]["test"] == 12
    assert (out / "model.safetensors").is_file() and (out / "preprocessor_config.json").is_file()
