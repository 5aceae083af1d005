"""The compared systems as parts of one pre-training model: MSM-MAE decoder/loss, MAM-CLAP distillation, SupMAM branch,
DWM / inverse-block masking inside the model, the curriculum callback, checkpoints into the classifier, and
run_pretrain.py for every objective."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from test_run_pretrain import TINY_OVERRIDES, tiny_recipe

from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicForAudioClassification, AudioMosaicForPreTraining
from modeling_audiomosaic.modeling_audiomosaic import AudioMosaicModel
from modeling_audiomosaic.modeling_decoder import AudioMosaicDecoder, sincos_1d_position_embedding
from modeling_audiomosaic.objective_distill import DistillationTeacher, distillation_loss, feature_distance
from modeling_audiomosaic.objective_mae import mae_reconstruction_loss, patchify, unpatchify
from modeling_audiomosaic.objective_supervised import supervised_loss
from modeling_audiomosaic.pretraining_trainer import (
    AudioMosaicPretrainingTrainer,
    MaskingCurriculumCallback,
    set_find_unused_parameters,
)

REPO = Path(__file__).resolve().parents[1]
TINY = dict(
    max_length=128, num_mel_bins=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=64, projection_hidden_size=16, projection_dim=8, drop_path_rate=0.0,
    decoder_hidden_size=24, decoder_num_hidden_layers=1, decoder_num_attention_heads=4, decoder_intermediate_size=48,
)


def tiny_config(**kwargs) -> AudioMosaicConfig:
    return AudioMosaicConfig(**{**TINY, **kwargs})


def spectrograms(batch=3, frames=128, seed=0):
    return torch.randn(batch, frames, 128, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------- config
def test_config_objectives_and_defaults():
    config = tiny_config(objective="mae")
    assert config.objectives == ("mae",) and config.pretraining_num_views == 1
    assert config.view_masking_specs() == [("random", 0.75)]
    config = tiny_config(objective="contrastive+mae")
    assert config.pretraining_num_views == 2 and config.view_masking_specs() == [("time", 0.6), ("freq", 0.4)]
    assert tiny_config(objective="mae", masking_mode="dwm", mask_ratio=0.7).view_masking_specs() == [("dwm", 0.7)]
    inverse_block = tiny_config(objective="mae", masking_mode="inverse_block", mask_ratio=0.8, num_views=2)
    assert inverse_block.view_masking_specs() == [("inverse_block", 0.8)] * 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(objective="byol"), "objective='byol' is not supported"),
        (dict(objective="mae+mae"), "is not supported"),
        (dict(objective="contrastive", num_views=1), "needs num_views=2"),
        (dict(objective="distill"), "distill_teacher_hidden_size"),
        (dict(objective="mae", decoder_hidden_size=30, decoder_num_attention_heads=4), "decoder_hidden_size"),
        (dict(distill_alignment="nearest"), "distill_alignment='nearest'"),
        (dict(supervised_weight=-1.0), "supervised_weight must be >= 0"),
        (dict(masking_mode="blocks"), "masking_mode='blocks'"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**kwargs)


# ---------------------------------------------------------------------------------------------------- MAE
def test_patchify_matches_a_loop_and_round_trips():
    spec = spectrograms(2, 64)
    patches = patchify(spec, 16)
    assert patches.shape == (2, 4 * 8, 256)
    for t in range(4):
        for f in range(8):
            expected = spec[:, t * 16:(t + 1) * 16, f * 16:(f + 1) * 16].reshape(2, -1)
            torch.testing.assert_close(patches[:, t * 8 + f], expected)
    torch.testing.assert_close(unpatchify(patches, (4, 8), 16), spec)
    with pytest.raises(ValueError, match="holds no full 16x16 patch"):
        patchify(torch.zeros(1, 8, 128), 16)


@pytest.mark.parametrize("norm_pix", [False, True])
def test_mae_loss_matches_reference_formula(norm_pix):
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((2, 6, 5)), rng.standard_normal((2, 6, 5))
    mask = rng.random((2, 6)) < 0.5
    mask[0, 0] = True
    ref_target = target
    if norm_pix:
        ref_target = (target - target.mean(-1, keepdims=True)) / np.sqrt(target.var(-1, ddof=1, keepdims=True) + 1e-6)
    per_patch = ((pred - ref_target) ** 2).mean(-1)
    expected = (per_patch * mask).sum() / mask.sum()
    got = mae_reconstruction_loss(torch.tensor(pred), torch.tensor(target), torch.tensor(mask), norm_pix)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    valid = np.ones((2, 6), bool)
    valid[1] = False  # padded clip: never counts
    expected_valid = (per_patch * mask * valid).sum() / (mask * valid).sum()
    got = mae_reconstruction_loss(torch.tensor(pred), torch.tensor(target), torch.tensor(mask), norm_pix,
                                  torch.tensor(valid))
    assert got.item() == pytest.approx(expected_valid, rel=1e-5)


def test_decoder_places_visible_tokens_and_mask_tokens():
    config = tiny_config(objective="mae", decoder_num_hidden_layers=0)
    decoder = AudioMosaicDecoder(config).eval()
    torch.nn.init.normal_(decoder.mask_token)
    hidden = torch.randn(2, 1 + 5, config.hidden_size)
    ids_keep = torch.tensor([[0, 3, 9, 20, 63], [1, 2, 5, 40, 62]])
    out = decoder(hidden, ids_keep, 64)
    assert out.shape == (2, 64, config.decoder_hidden_size)
    pos = sincos_1d_position_embedding(64, config.decoder_hidden_size)[0]
    embedded = decoder.decoder_embed(hidden)
    for b in range(2):
        for k, index in enumerate(ids_keep[b].tolist()):
            torch.testing.assert_close(out[b, index], decoder.norm(embedded[b, 1 + k] + pos[1 + index]))
        dropped = sorted(set(range(64)) - set(ids_keep[b].tolist()))[0]
        torch.testing.assert_close(out[b, dropped], decoder.norm(decoder.mask_token[0, 0] + pos[1 + dropped]))


def test_decoder_stream_in_the_parameters_dtype_under_autocast():
    """Under autocast the decoder's residual stream stays float32 (its float32 mask tokens and positions promote the
    bf16 embedding, as the encoder's stream and timm's MAE decoder); a bf16 decoder computes in bf16."""
    config = tiny_config(objective="mae")
    decoder = AudioMosaicDecoder(config).eval()
    hidden = torch.randn(2, 1 + 5, config.hidden_size)
    ids_keep = torch.tensor([[0, 3, 9, 20, 63], [1, 2, 5, 40, 62]])
    seen = []
    hook = decoder.layers[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        decoder(hidden, ids_keep, 64)
    decoder.to(torch.bfloat16)(hidden.bfloat16(), ids_keep, 64)
    hook.remove()
    assert seen == [torch.float32, torch.bfloat16]


def test_mae_model_loss_equals_formula_and_trains_decoder():
    torch.manual_seed(0)
    model = AudioMosaicForPreTraining(tiny_config(objective="mae", norm_pix_loss=True)).train()
    spec = spectrograms()
    out = model(spec, generator=torch.Generator().manual_seed(1))
    assert out.reconstruction.shape == (1, 3, 64, 256) and out.z is None
    assert out.num_kept_tokens == (1 + 16,)  # int(64 * 0.25) visible patches + CLS
    mask = out.mask[0]
    target = patchify(spec, 16)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    per_patch = (out.reconstruction[0] - target).pow(2).mean(-1)
    torch.testing.assert_close(out.loss, (per_patch * mask).sum() / mask.sum())
    torch.testing.assert_close(out.loss, out.mae_loss)
    out.loss.backward()
    for name in ("decoder.mask_token", "mae_head.weight", "audiomosaic.embeddings.cls_token"):
        assert model.get_parameter(name).grad is not None and model.get_parameter(name).grad.abs().sum() > 0, name


def test_mae_with_every_masking_strategy():
    spec = spectrograms()
    for mode, kept in (("random", 16), ("dwm", 19), ("inverse_block", 12), ("tf", 24)):
        ratio = {"random": 0.75, "dwm": 0.7, "inverse_block": 0.8}.get(mode, 0.75)
        config = tiny_config(objective="mae", masking_mode=mode, mask_ratio=ratio)
        model = AudioMosaicForPreTraining(config).train()
        out = model(spec, generator=torch.Generator().manual_seed(0))
        assert out.num_kept_tokens[0] == 1 + kept, mode
        assert torch.isfinite(out.loss)


def test_contrastive_plus_mae_sums_weighted_terms():
    torch.manual_seed(0)
    config = tiny_config(objective="contrastive+mae", mae_weight=0.5, contrastive_weight=2.0, gather_distributed=False)
    model = AudioMosaicForPreTraining(config).train()
    out = model(torch.stack([spectrograms(4), spectrograms(4, seed=1)], dim=1))
    assert out.z.shape == (2, 4, 8) and out.reconstruction.shape == (2, 4, 64, 256)
    torch.testing.assert_close(out.loss, 2.0 * out.contrastive_loss + 0.5 * out.mae_loss)


def test_reconstruction_is_left_out_on_request_and_in_the_trainers_training_steps(tmp_path):
    """`return_reconstruction=False`: no `reconstruction` (no stacked copy, none for accelerate's fp32 output
    conversion to copy), the same losses; the pre-training Trainer asks for it in training steps only."""
    from transformers import TrainingArguments

    torch.manual_seed(0)
    model = AudioMosaicForPreTraining(tiny_config(objective="contrastive+mae", gather_distributed=False)).train()
    spec = torch.stack([spectrograms(4), spectrograms(4, seed=1)], dim=1)
    full = model(spec, generator=torch.Generator().manual_seed(2))
    lean = model(spec, generator=torch.Generator().manual_seed(2), return_reconstruction=False)
    assert full.reconstruction.shape == (2, 4, 64, 256) and lean.reconstruction is None
    for name in ("loss", "contrastive_loss", "mae_loss", "pooled_output", "z"):
        assert torch.equal(getattr(full, name), getattr(lean, name)), name

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = AudioMosaicPretrainingTrainer(model=model, args=args, train_dataset=[])
    asked = []
    model.register_forward_pre_hook(lambda module, a, kw: asked.append(kw.get("return_reconstruction")),
                                    with_kwargs=True)
    loss, out = trainer.compute_loss(model, {"input_values": spec, "generator": torch.Generator().manual_seed(2)},
                                     return_outputs=True)
    assert asked == [False] and out.reconstruction is None and torch.equal(loss, full.loss)
    model.eval()
    _, out = trainer.compute_loss(model, {"input_values": spec}, return_outputs=True)
    assert asked[-1] is None and out.reconstruction.shape == (2, 4, 64, 256)  # evaluation: as before


# ---------------------------------------------------------------------------------------------------- DWM in the model
def test_model_dwm_uses_dispersion_and_curriculum():
    config = tiny_config(objective="mae", masking_mode="dwm", mask_ratio=0.75, dwm_probabilistic=False,
                         dwm_start_epoch=2, dwm_hint_k=2.0)
    model = AudioMosaicForPreTraining(config).train()
    assert model.masking_hint_ratio == 1.0  # epoch 0 of the curriculum: plain random masking
    assert model.set_masking_epoch(1, 10) == 1.0
    assert model.set_masking_epoch(5, 10) == pytest.approx(0.75)
    model.set_masking_epoch(10, 10)  # h = 0: the masked set is exactly the top-48 dispersion patches
    spec = spectrograms(2)
    spec[:, :64] *= 0.01  # first half nearly flat
    mask = model.mask_view(spec, 0, torch.Generator().manual_seed(0)).mask
    patches = patchify(spec, 16)
    mad = (patches - patches.mean(-1, keepdim=True)).abs().mean(-1)
    top = mad.topk(48, dim=1).indices
    expected = torch.zeros_like(mask).scatter_(1, top, True)
    assert torch.equal(mask, expected)

    class State:
        epoch, num_train_epochs = 4.0, 10

    MaskingCurriculumCallback().on_epoch_begin(None, State(), None, model=model)
    assert model.masking_hint_ratio == pytest.approx(1 - 0.4**2)


# ---------------------------------------------------------------------------------------------------- distillation
def test_distillation_loss_reference_bilinear_identity_and_pool():
    rng = np.random.default_rng(0)
    pred = torch.tensor(rng.standard_normal((2, 8 * 8, 6)), dtype=torch.float32)
    teacher = torch.tensor(rng.standard_normal((2, 8, 8, 6)), dtype=torch.float32)
    mask = torch.tensor(rng.random((2, 64)) < 0.6)
    out = distillation_loss(pred, teacher, (8, 8), mask, "bilinear", "l2", masked_weight=1.0, visible_weight=0.5)
    p = pred / pred.norm(dim=-1, keepdim=True)
    t = teacher.reshape(2, 64, 6)
    t = t / t.norm(dim=-1, keepdim=True)
    d = (p - t).pow(2).mean(-1)
    m = mask.float()
    expected_m = (d * m).sum() / m.sum()
    expected_v = (d * (1 - m)).sum() / (1 - m).sum()
    torch.testing.assert_close(out.loss_masked, expected_m)
    torch.testing.assert_close(out.loss_visible, expected_v)
    torch.testing.assert_close(out.loss, expected_m + 0.5 * expected_v)
    cosine = distillation_loss(pred, teacher, (8, 8), mask, "bilinear", "cosine")
    torch.testing.assert_close(cosine.loss_masked, 6 * expected_m)  # 2 - 2cos = dim * MSE of unit vectors

    # pool: the student's 8x8 predictions averaged to a 4x2 teacher grid; cells weighted by their masked fraction
    small = torch.tensor(rng.standard_normal((2, 4, 2, 6)), dtype=torch.float32)
    out = distillation_loss(pred, small, (8, 8), mask, "pool", "cosine")
    grid_pred = pred.reshape(2, 4, 2, 2, 4, 6).mean(dim=(2, 4))
    grid_mask = m.reshape(2, 4, 2, 2, 4).mean(dim=(2, 4))
    d = feature_distance(grid_pred, small, "cosine")
    torch.testing.assert_close(out.loss_masked, (d * grid_mask).sum() / grid_mask.sum())
    torch.testing.assert_close(out.loss_visible, (d * (1 - grid_mask)).sum() / (1 - grid_mask).sum())


def test_distill_model_with_audiomosaic_teacher():
    torch.manual_seed(0)
    teacher = AudioMosaicModel(tiny_config(hidden_size=48, num_attention_heads=4)).eval()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    config = tiny_config(objective="distill", masking_mode="random", mask_ratio=0.8, distill_teacher_hidden_size=48)
    model = AudioMosaicForPreTraining(config).train()
    with pytest.raises(ValueError, match="needs a teacher"):
        model(spectrograms())
    with pytest.raises(ValueError, match="48-d"):
        AudioMosaicForPreTraining(tiny_config(objective="distill", distill_teacher_hidden_size=40)) \
            .set_distillation_teacher(teacher)
    model.set_distillation_teacher(teacher)
    spec = spectrograms()
    out = model(spec, generator=torch.Generator().manual_seed(3))
    # the target is the teacher's patch tokens on the same 8x8 grid: recompute the loss from the pieces
    with torch.no_grad():
        target = teacher(spec).last_hidden_state[:, 1:].reshape(3, 8, 8, 48)
    decoded = model.decoder(model.audiomosaic(spec, ids_keep=out.ids_keep[0]).last_hidden_state, out.ids_keep[0], 64)
    expected = distillation_loss(model.distill_head(decoded), target, (8, 8), out.mask[0])
    torch.testing.assert_close(out.loss, expected.loss)
    out.loss.backward()
    assert model.distill_head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert not any(k.startswith("_teacher") or "teacher" in k for k in model.state_dict())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    # λ weighting: only the masked term
    model.config.distill_visible_weight = 0.0
    out2 = model(spec, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out2.loss, out2.distill_loss_masked)


def test_clap_teacher_map_and_collator_inputs():
    from transformers import ClapAudioConfig, ClapAudioModel, ClapFeatureExtractor

    from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor
    from modeling_audiomosaic.feature_extraction.augmentation import ContrastiveViewGenerator
    from modeling_audiomosaic.feature_extraction.collators import PretrainingViewsCollator

    torch.manual_seed(0)
    clap_config = ClapAudioConfig(
        depths=[1, 1], num_attention_heads=[2, 2], patch_embeds_hidden_size=16, hidden_size=32, window_size=4,
        spec_size=64, num_mel_bins=16, projection_dim=8,
    )
    teacher = DistillationTeacher(ClapAudioModel(clap_config))
    assert teacher.needs_own_inputs and teacher.feature_dim == 32
    extractor = ClapFeatureExtractor(feature_size=16, sampling_rate=8000, max_length_s=1, hop_length=128,
                                     fft_window_size=256, truncation="rand_trunc")
    fe = AudioMosaicFeatureExtractor.from_preset("speechcommands")
    collator = PretrainingViewsCollator(ContrastiveViewGenerator(fe, augmentation="none", num_views=1),
                                        teacher_feature_extractor=extractor)
    rng = np.random.default_rng(0)
    batch = collator([{"audio": rng.standard_normal(16000).astype(np.float32) * 0.1, "id": i} for i in range(2)])
    assert set(batch["teacher_inputs"]) >= {"input_features"}
    feature_map = teacher(teacher_inputs=batch["teacher_inputs"])
    assert feature_map.ndim == 4 and feature_map.shape[0] == 2 and feature_map.shape[-1] == 32
    config = tiny_config(objective="distill", distill_teacher_hidden_size=32, distill_alignment="pool")
    model = AudioMosaicForPreTraining(config).train()
    model.set_distillation_teacher(teacher)
    out = model(batch["input_values"], teacher_inputs=batch["teacher_inputs"])
    assert torch.isfinite(out.loss) and out.distill_loss_masked > 0
    with pytest.raises(ValueError, match="needs teacher_inputs"):
        model(batch["input_values"])
    # clips longer than the extractor's window (1.3 s crops, 1 s window): its random window comes from the batch's
    # seeded generator (a resumed run sees the same targets), and numpy's global stream is left as it was
    long = [{"audio": rng.standard_normal(24000).astype(np.float32) * 0.1, "id": i, "epoch": 0} for i in range(2)]
    numpy_state = np.random.get_state()[1].copy()
    first, again = collator(long)["teacher_inputs"], collator(long)["teacher_inputs"]
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    torch.testing.assert_close(first["input_features"], again["input_features"], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------- SupMAM
def test_supervised_loss_ignores_unlabelled_rows():
    logits = torch.randn(4, 3)
    labels = torch.tensor([0, -100, 2, 1])
    expected = torch.nn.functional.cross_entropy(logits[[0, 2, 3]], labels[[0, 2, 3]])
    torch.testing.assert_close(supervised_loss(logits, labels, "ce"), expected)
    multi = torch.tensor([[1, 0, 1], [-100, -100, -100], [0, 0, 1], [0, 1, 0]], dtype=torch.float32)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[[0, 2, 3]], multi[[0, 2, 3]])
    torch.testing.assert_close(supervised_loss(logits, multi, "bce"), expected)
    assert supervised_loss(logits, torch.full((4,), -100), "ce").item() == 0.0
    with pytest.raises(ValueError, match="must be in"):
        supervised_loss(logits, torch.tensor([0, 1, 2, 3]), "ce")


@pytest.mark.parametrize("objective", ["contrastive", "mae"])
def test_supmam_branch_weighted_on_any_objective(objective):
    torch.manual_seed(0)
    config = tiny_config(objective=objective, supervised_weight=0.3, supervised_loss="ce", num_labels=5,
                         gather_distributed=False)
    model = AudioMosaicForPreTraining(config).train()
    views = config.pretraining_num_views
    spec = torch.stack([spectrograms(4, seed=v) for v in range(views)], dim=1)
    labels = torch.tensor([1, 4, -100, 0])
    out = model(spec, labels=labels)
    assert out.logits.shape == (views, 4, 5)
    expected_sup = torch.stack([supervised_loss(out.logits[v], labels, "ce") for v in range(views)]).mean()
    torch.testing.assert_close(out.supervised_loss, expected_sup)
    main = out.contrastive_loss if objective == "contrastive" else out.mae_loss
    torch.testing.assert_close(out.loss, main + 0.3 * expected_sup)
    with pytest.raises(ValueError, match="needs labels"):
        model(spec)


# ------------------------------------------------------------------------------------------ DDP's unused parameters
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(objective="contrastive"),
        dict(objective="contrastive", learnable_temperature=True),
        dict(objective="contrastive+mae"),
        dict(objective="mae"),
        dict(objective="mae", masking_mode="inverse_block", mask_ratio=0.8, use_fc_norm=False),
        dict(objective="distill", distill_teacher_hidden_size=48, masking_mode="random", mask_ratio=0.8),
        dict(objective="mae", supervised_weight=1.0, num_labels=3, supervised_loss="ce"),
        dict(objective="contrastive", supervised_weight=0.5, num_labels=3, supervised_loss="ce"),
        dict(objective="contrastive+mae", masking_mode="none"),  # no view masked: the decoder's mask token unused
        dict(objective="mae", masking_mode="none"),
    ],
)
def test_parameters_outside_the_loss_are_those_without_a_gradient(kwargs, tmp_path):
    """What the model declares (and DDP's find_unused_parameters follows) is what a training step leaves without a
    gradient, for every objective; and the Trainer's setting follows the declaration unless the user chose."""
    from transformers import TrainingArguments

    torch.manual_seed(0)
    model = AudioMosaicForPreTraining(tiny_config(**kwargs)).train()
    if "distill" in model.config.objectives:
        model.set_distillation_teacher(AudioMosaicModel(tiny_config(hidden_size=48)).eval())
    views = model.config.pretraining_num_views
    spec = torch.stack([spectrograms(4, seed=v) for v in range(views)], dim=1)
    labels = torch.tensor([1, 2, -100, 0]) if model.supervised_head is not None else None
    model(spec, labels=labels, generator=torch.Generator().manual_seed(1)).loss.backward()
    without_gradient = sorted(name for name, p in model.named_parameters() if p.requires_grad and p.grad is None)
    declared = model.parameters_outside_the_loss()
    assert sorted(declared) == without_gradient
    contrastive_or_supervised = "contrastive" in model.config.objectives or "supervised_weight" in kwargs
    unmasked = kwargs.get("masking_mode") == "none"
    assert bool(declared) == ((not contrastive_or_supervised and model.config.use_fc_norm) or unmasked)

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert set_find_unused_parameters(model, args)
    assert args.ddp_find_unused_parameters is bool(declared)
    # the trainer gives the choice to its accelerator and leaves the arguments as given (reusable for another model)
    args.ddp_find_unused_parameters = None
    trainer = AudioMosaicPretrainingTrainer(model=model, args=args, train_dataset=[])
    assert trainer.accelerator.ddp_handler.find_unused_parameters is bool(declared)
    assert args.ddp_find_unused_parameters is None
    chosen = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none",
                               ddp_find_unused_parameters=not declared)
    set_find_unused_parameters(model, chosen)  # the user's explicit choice stays
    assert chosen.ddp_find_unused_parameters is (not declared)


# ---------------------------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(objective="contrastive"),
        dict(objective="mae", masking_mode="dwm"),
        dict(objective="distill", distill_teacher_hidden_size=16, masking_mode="inverse_block", mask_ratio=0.8),
        dict(objective="mae", supervised_weight=1.0, num_labels=3),
    ],
)
def test_every_objective_checkpoint_loads_into_classifier(kwargs, tmp_path):
    torch.manual_seed(0)
    model = AudioMosaicForPreTraining(tiny_config(**kwargs))
    model.save_pretrained(tmp_path)
    classifier, info = AudioMosaicForAudioClassification.from_pretrained(
        tmp_path, num_labels=4, output_loading_info=True
    )
    assert not [k for k in info["missing_keys"] if not k.startswith("classifier")]
    for name, value in model.audiomosaic.state_dict().items():
        torch.testing.assert_close(classifier.audiomosaic.state_dict()[name], value)
    reloaded = AudioMosaicForPreTraining.from_pretrained(tmp_path)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], value)
    # buffers not saved (the decoder's fixed position table) are rebuilt, not left as from_pretrained's empty memory
    buffers = dict(reloaded.named_buffers())
    for name, value in model.named_buffers():
        torch.testing.assert_close(buffers[name], value, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------- run_pretrain
RECIPE = tiny_recipe(
    config_overrides=TINY_OVERRIDES[:-1] + ', "decoder_hidden_size": 16, "decoder_num_hidden_layers": 1, '
    '"decoder_num_attention_heads": 2, "decoder_intermediate_size": 32, "dwm_start_epoch": 1}',
    max_grad_norm=None, max_steps=4, save_steps=100,
)


@pytest.fixture(scope="module")
def labelled_manifest(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seed_audio")
    rng = np.random.default_rng(0)
    records = []
    for i in range(12):
        t = np.arange(16000) / 16000
        wave = (0.3 * np.sin(2 * np.pi * (200 + 150 * (i % 3)) * t) + 0.05 * rng.standard_normal(16000))
        sf.write(folder / f"c{i}.wav", wave.astype(np.float32), 16000)
        records.append({"wav": str(folder / f"c{i}.wav"), "labels": "" if i % 4 == 3 else f"class{i % 3}"})
    path = folder / "train.json"
    path.write_text(json.dumps({"data": records}))
    recipe = folder / "recipe.yaml"
    recipe.write_text(RECIPE)
    return path, recipe


@pytest.mark.parametrize(
    "extra, logged",
    [
        (["--objective", "mae", "--masking_mode", "dwm", "--mask_ratio", "0.7"], {"mae_loss", "dwm_hint_ratio"}),
        (["--objective", "mae", "--masking_mode", "inverse_block", "--mask_ratio", "0.8", "--supervised_weight", "0.5",
          "--supervised_loss", "ce", "--label_column", "labels"], {"mae_loss", "supervised_loss"}),
        (["--objective", "contrastive", "--supervised_weight", "1.0", "--label_column", "labels"],
         {"contrastive_loss", "supervised_loss", "accuracy"}),
        (["--objective", "distill", "--masking_mode", "random", "--mask_ratio", "0.8", "--teacher_name_or_path",
          "TEACHER"], {"distill_loss", "distill_loss_masked", "distill_loss_visible"}),
    ],
    ids=["mae-dwm", "mae-inverse_block-supmam", "contrastive-supmam", "distill"],
)
def test_run_pretrain_every_objective(labelled_manifest, tmp_path, extra, logged):
    import run_pretrain

    manifest, recipe = labelled_manifest
    if "TEACHER" in extra:
        teacher = AudioMosaicModel(tiny_config(hidden_size=24, num_attention_heads=4))
        teacher.save_pretrained(tmp_path / "teacher")
        extra = [str(tmp_path / "teacher") if e == "TEACHER" else e for e in extra]
    out = tmp_path / "run"
    result = run_pretrain.main(["--config", str(recipe), "--train_path", str(manifest), "--output_dir", str(out),
                                *extra])
    assert result["global_step"] == 4
    last = [h for h in result["log_history"] if "loss" in h][-1]
    assert logged <= set(last), set(last)
    assert all(np.isfinite(h["loss"]) for h in result["log_history"] if "loss" in h)
    classifier = AudioMosaicForAudioClassification.from_pretrained(out, num_labels=3)
    assert classifier.config.objective == extra[1]


PRETRAIN_RECIPES = sorted((REPO / "run_scripts" / "recipes").glob("pretrain_*.yaml"))


@pytest.mark.parametrize("recipe", PRETRAIN_RECIPES, ids=lambda p: p.name)
def test_pretraining_recipes_parse_into_valid_configs(recipe):
    from modeling_audiomosaic.pretraining_run import build_config, parse_args

    # bf16 needs a GPU to parse; everything else is as written
    model_args, data_args, training_args = parse_args(
        ["--config", str(recipe), "--output_dir", "x", "--bf16", "false", "--torch_compile", "false"]
    )

    class Teacher:  # what build_config reads of a distillation teacher
        feature_dim = 768

    config = build_config(model_args, Teacher() if "distill" in model_args.objective else None)
    assert config.objectives == tuple(model_args.objective.split("+"))
    assert len(config.view_masking_specs()) == config.pretraining_num_views


def test_gradient_accumulation_note_for_the_contrastive_batch():
    from types import SimpleNamespace

    from modeling_audiomosaic.pretraining_trainer import contrastive_accumulation_note

    contrastive = AudioMosaicForPreTraining(tiny_config())
    args = SimpleNamespace(gradient_accumulation_steps=4, world_size=8, per_device_train_batch_size=128)
    note = contrastive_accumulation_note(contrastive, args)
    assert "see 1024 clips (2 x 1024 views) of all processes, not 4096" in note
    assert "--checkpointing_fraction" in note
    one_step = SimpleNamespace(**{**vars(args), "gradient_accumulation_steps": 1})
    assert contrastive_accumulation_note(contrastive, one_step) is None
    assert contrastive_accumulation_note(AudioMosaicForPreTraining(tiny_config(objective="mae")), args) is None


def test_a_single_kept_checkpoint_is_flagged_where_a_save_is_not_atomic():
    from types import SimpleNamespace

    from modeling_audiomosaic.checkpoints import single_checkpoint_risk

    assert "keep at least 2" in single_checkpoint_risk(SimpleNamespace(save_total_limit=1, world_size=8), False)
    assert "stream positions" in single_checkpoint_risk(SimpleNamespace(save_total_limit=1, world_size=1), True)
    assert single_checkpoint_risk(SimpleNamespace(save_total_limit=1, world_size=1), False) is None
    assert single_checkpoint_risk(SimpleNamespace(save_total_limit=2, world_size=8), True) is None
    assert single_checkpoint_risk(SimpleNamespace(save_total_limit=None, world_size=8), True) is None


def test_supmam_on_a_stream_is_refused_before_anything_loads(tmp_path):
    from modeling_audiomosaic.pretraining_run import run_pretraining

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    with pytest.raises(ValueError, match="label vocabulary: not available with --streaming"):  # the path is not read
        run_pretraining(["--config", str(recipe), "--dataset_name", str(tmp_path / "missing"), "--streaming", "true",
                         "--max_steps", "1", "--supervised_weight", "1", "--label_column", "labels",
                         "--output_dir", str(tmp_path / "out")])
