"""The model owns its heads and its optimiser facts.

* Every classifier head splits into `model.probe_inputs` (what a probe caches) and `model.probe_head()` (the same
  head on the cached inputs); the two halves give the full forward's logits for every pooling mode.
* `no_weight_decay()` / `get_layer_id()` are what layer-wise lr decay, the fine-tuning Trainer and the pre-training
  Trainer use (the optimisers follow the model's answer, also when it changes).
* One loss by problem type, shared by the model, its probe head and the fine-tuning Trainer.
"""

from __future__ import annotations

import pytest
import torch
from transformers import TrainingArguments

from modeling_audiomosaic import (
    AudioMosaicConfig,
    AudioMosaicForAudioClassification,
    AudioMosaicForPreTraining,
    finetuning,
)
from modeling_audiomosaic.configuration_audiomosaic import CLASSIFIER_HEADS, POOLING_MODES
from modeling_audiomosaic.finetuning import AudioClassificationTrainer, layer_decay_param_groups
from modeling_audiomosaic.modeling_audiomosaic import AudioMosaicProbeHead, classification_loss
from modeling_audiomosaic.pretraining_trainer import AudioMosaicPretrainingTrainer
from modeling_audiomosaic.probing import extract_probe_features

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_length=64,
            num_mel_bins=128, drop_path_rate=0.0)


def classifier(head: str, pooling: str = "mean", **kw) -> AudioMosaicForAudioClassification:
    torch.manual_seed(0)
    config = AudioMosaicConfig(**{**TINY, "num_labels": 5, "classifier_head": head, "pooling": pooling,
                                  "probe_layer": 0, "attentive_probe_heads": 2, **kw})
    model = AudioMosaicForAudioClassification(config)
    with torch.no_grad():  # non-trivial head parameters (LayerNorm affines, layer weights, query)
        for name, param in model.named_parameters():
            if not name.startswith(("audiomosaic.layers", "audiomosaic.embeddings")):
                param.add_(torch.randn_like(param) * 0.5)
    return model.eval()


def trainer_args(tmp_path, **kw) -> TrainingArguments:
    return TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", save_strategy="no",
                             disable_tqdm=True, learning_rate=1e-3, weight_decay=0.05, **kw)


# ------------------------------------------------------------------------------------------------ probe inputs + head
@pytest.mark.parametrize("pooling", POOLING_MODES)
@pytest.mark.parametrize("head", CLASSIFIER_HEADS)
def test_cached_probe_path_gives_the_full_forward_logits(head, pooling):
    model = classifier(head, pooling)
    x = torch.randn(3, 64, 128)
    mask = torch.ones(3, 64, dtype=torch.long)
    mask[1, 37:] = 0  # a padded clip: padded tokens are left out of the pooling on both paths
    probe_head = model.probe_head()
    for attention_mask in (None, mask):
        with torch.no_grad():
            full = model(x, attention_mask=attention_mask)
            inputs = model.probe_inputs(x, attention_mask=attention_mask)
            cached = probe_head(inputs)
        entries = 1 if head in ("linear", "layer") else TINY["num_hidden_layers"] + 1
        assert inputs.shape == (3, entries, TINY["hidden_size"])
        if head in ("linear", "layer"):  # the same operations in the same order: bit-identical
            assert torch.equal(cached.logits, full.logits) and torch.equal(cached.pooled_output, full.pooled_output)
        else:  # the pooling moved before the weighted sum / the LayerNorm affine: equal up to float rounding
            torch.testing.assert_close(cached.logits, full.logits, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(cached.pooled_output, full.pooled_output, rtol=1e-5, atol=1e-6)
    # the probing helper returns the same inputs, computed in eval mode (the model's mode is restored)
    model.train()
    features = extract_probe_features(model, x)
    assert model.training
    with torch.no_grad():
        assert torch.equal(features, model.eval().probe_inputs(x))


def test_probe_head_is_the_model_head():
    model = classifier("attentive")
    probe_head = model.probe_head()
    assert isinstance(probe_head, AudioMosaicProbeHead)
    # its modules are the model's: same parameter objects, and only the head's parameters in its state dict
    model_params = {id(p): n for n, p in model.named_parameters()}
    names = {model_params[id(p)] for p in probe_head.parameters()}
    assert names == {n for n, _ in model.named_parameters()
                     if n.startswith(("classifier.", "attentive_pooling.", "audiomosaic.pooler.fc_norm."))}
    assert set(probe_head.state_dict()) == {n.replace("audiomosaic.pooler.", "") for n in names}
    # a step on the probe head trains the model in place
    model.freeze_encoder()
    x = torch.randn(4, 64, 128)
    with torch.no_grad():
        inputs = model.probe_inputs(x)
        before = model(x).logits
    optimizer = torch.optim.SGD(probe_head.parameters(), lr=0.5)
    probe_head(inputs, labels=torch.tensor([0, 1, 2, 3])).loss.backward()
    optimizer.step()
    with torch.no_grad():
        after = model(x).logits
    assert not torch.allclose(after, before)
    torch.testing.assert_close(probe_head(inputs).logits.detach(), after, rtol=1e-5, atol=1e-6)


def test_attentive_and_weighted_sum_expose_their_second_half():
    model = classifier("attentive", "mean_patches")
    layers = [torch.randn(2, 9, 32) for _ in range(3)]
    pooling = model.attentive_pooling
    with torch.no_grad():
        torch.testing.assert_close(pooling.forward_probe_inputs(pooling.probe_inputs(layers)), pooling(layers))
        assert torch.equal(pooling(layers), pooling.attend(pooling.pool_layers(layers)))
    model = classifier("weighted_sum", "mean")
    layer_sum = model.layer_sum
    with torch.no_grad():
        torch.testing.assert_close(layer_sum.forward_probe_inputs(layer_sum.probe_inputs(layers)),
                                   layer_sum(layers).mean(dim=1))


def test_probe_head_needs_an_audiomosaic_classifier():
    config = AudioMosaicConfig(**TINY)
    with pytest.raises(TypeError, match="AudioMosaicForAudioClassification"):
        AudioMosaicProbeHead(AudioMosaicForPreTraining(config))


# ------------------------------------------------------------------------------------------------------- one loss
def test_one_loss_by_problem_type():
    assert finetuning.classification_loss is classification_loss  # the fine-tuning Trainer's loss is the model's
    torch.manual_seed(0)
    model = classifier("linear", num_labels=3, problem_type="single_label_classification")
    x = torch.randn(4, 64, 128)
    soft = torch.softmax(torch.randn(4, 3), dim=-1)
    with torch.no_grad():  # soft targets (mixup) through the model's own forward, as through the Trainer
        out = model(x, labels=soft)
    torch.testing.assert_close(out.loss, -(soft * torch.log_softmax(out.logits, dim=-1)).sum(-1).mean())
    with torch.no_grad():  # the probe head's loss is the same function
        head_out = model.probe_head()(model.probe_inputs(x), labels=soft)
    torch.testing.assert_close(head_out.loss, out.loss)
    logits = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\]"):
        classification_loss(logits, torch.tensor([0, 1, 2, 3]), "single_label_classification")
    with pytest.raises(ValueError, match="multi-hot"):
        classification_loss(logits, torch.ones(4, 2), "multi_label_classification")
    with pytest.raises(ValueError, match="Unknown problem_type"):
        classification_loss(logits, torch.ones(4, 3), "ranking")
    # the model infers the problem type from its first labels and keeps it
    model.config.problem_type = None
    model.compute_loss(logits, torch.tensor([0, 1, 2, 0]))
    assert model.config.problem_type == "single_label_classification"
    values = torch.randn(4, 1)
    torch.testing.assert_close(classification_loss(values, torch.zeros(4)), (values**2).mean())  # regression


# --------------------------------------------------------------------------------------------- optimiser facts
def old_pretraining_no_decay(name: str, param: torch.Tensor) -> bool:
    """The pre-training Trainer's former list (substrings of the name) and 1-D rule, as a reference."""
    keys = ("cls_token", "position_embeddings", "logit_scale", "logit_bias", "mask_token")
    return param.ndim <= 1 or any(key in name for key in keys)


def pretraining_model() -> AudioMosaicForPreTraining:
    config = AudioMosaicConfig(**TINY, objective="contrastive+mae+distill", learnable_temperature=True,
                               supervised_weight=0.5, num_labels=3, distill_teacher_hidden_size=16,
                               decoder_hidden_size=16, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                               decoder_intermediate_size=32, projection_hidden_size=16, projection_dim=8)
    return AudioMosaicForPreTraining(config)


def test_models_declare_weight_decay_exclusions_and_layer_ids():
    model = pretraining_model()
    params = dict(model.named_parameters())
    assert model.no_weight_decay() == {n for n, p in params.items() if old_pretraining_no_decay(n, p)}
    assert {"audiomosaic.embeddings.cls_token", "decoder.mask_token", "learnable_temperature.logit_scale",
            "audiomosaic.embeddings.position_embeddings"} <= model.no_weight_decay()
    layer_id = model.get_layer_id
    assert layer_id("audiomosaic.embeddings.patch_embeddings.projection.weight") == 0
    assert layer_id("audiomosaic.layers.1.mlp.fc1.weight") == 2
    assert layer_id("decoder.layers.0.mlp.fc1.weight") == 3  # the decoder's blocks are not the encoder's
    assert layer_id("audiomosaic.embeddings.pre_layernorm.weight") == 3
    assert layer_id("audiomosaic.embeddings.pre_layernorm.weight", norm_pre="embeddings") == 0
    assert layer_id("audiomosaic.layers.0._checkpoint_wrapped_module.mlp.fc1.weight") == 1  # wrapper segments
    with pytest.raises(ValueError, match="norm_pre"):
        layer_id("audiomosaic.layers.0.mlp.fc1.weight", norm_pre="stem")
    classifier_model = classifier("attentive")
    assert "attentive_pooling.attn_query" not in classifier_model.no_weight_decay()  # 4-D: decayed, as before
    assert classifier_model.audiomosaic.get_layer_id("layers.1.mlp.fc1.weight") == 2  # the bare encoder's names
    probe_head = classifier_model.probe_head()
    assert {probe_head.get_layer_id(n) for n, _ in probe_head.named_parameters()} == {3}
    assert probe_head.no_weight_decay() == {n for n, p in probe_head.named_parameters() if p.ndim <= 1}


def _groups_by_name(model, param_groups) -> dict[str, dict]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: group for group in param_groups for p in group["params"]}


def test_layer_decay_and_the_finetuning_trainer_ask_the_model(tmp_path):
    model = classifier("weighted_sum")
    model.train()
    args = trainer_args(tmp_path)
    # as declared: the Trainer's optimizer has the groups of layer_decay_param_groups
    trainer = AudioClassificationTrainer(model=model, args=args, layer_decay=0.5)
    by_name = _groups_by_name(model, trainer.create_optimizer().param_groups)
    for name, param in model.named_parameters():
        group = by_name[name]
        assert group["weight_decay"] == (0.0 if name in model.no_weight_decay() else 0.05), name
        assert group["layer_id"] == model.get_layer_id(name), name
        assert group["lr"] == pytest.approx(1e-3 * 0.5 ** (3 - model.get_layer_id(name)), rel=1e-12)
    # a changed answer of the model changes both (the rule is asked, not copied)
    model.no_weight_decay = lambda: {"classifier.dense.weight"}
    model.get_layer_id = lambda name, norm_pre="head": 3 if name.startswith("classifier.") else 1
    groups = _groups_by_name(model, layer_decay_param_groups(model, weight_decay=0.05, layer_decay=0.5))
    trainer = AudioClassificationTrainer(model=model, args=args, layer_decay=0.5)
    optimizer_groups = _groups_by_name(model, trainer.create_optimizer().param_groups)
    for by_name in (groups, optimizer_groups):
        decayed = {n for n, g in by_name.items() if g["weight_decay"] > 0}
        assert decayed == {n for n, _ in model.named_parameters()} - {"classifier.dense.weight"}
        assert {n for n, g in by_name.items() if g["layer_id"] == 3} == {"classifier.dense.weight",
                                                                          "classifier.dense.bias"}
        assert {g["layer_id"] for g in by_name.values()} == {1, 3}
    # the probe head answers for its parameters (all at the top layer id, the model's exclusions)
    probe_head = classifier("attentive").probe_head()
    trainer = AudioClassificationTrainer(model=probe_head, args=args, layer_decay=0.5)
    by_name = _groups_by_name(probe_head, trainer.create_optimizer().param_groups)
    assert {g["layer_id"] for g in by_name.values()} == {3} and {g["lr"] for g in by_name.values()} == {1e-3}
    assert {n for n, g in by_name.items() if g["weight_decay"] == 0} == probe_head.no_weight_decay()


def test_models_without_a_rule_get_the_generic_vit_rule():
    from transformers import ASTConfig, ASTForAudioClassification

    model = ASTForAudioClassification(ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                intermediate_size=64, max_length=64, num_mel_bins=32, num_labels=3))
    by_name = {n: g for g in layer_decay_param_groups(model, weight_decay=0.05, layer_decay=0.5)
               for n in g["param_names"]}
    prefix = "audio_spectrogram_transformer."
    assert by_name[prefix + "embeddings.cls_token"]["layer_id"] == 0
    assert by_name[prefix + "embeddings.cls_token"]["weight_decay"] == 0.0
    assert by_name[prefix + "layers.1.attention.q_proj.weight"]["layer_id"] == 2
    assert by_name[prefix + "layers.1.attention.q_proj.weight"]["weight_decay"] == 0.05
    assert by_name["classifier.dense.weight"]["layer_id"] == 3


def test_the_pretraining_trainer_asks_the_model(tmp_path):
    model = pretraining_model()
    args = trainer_args(tmp_path)
    optimizer = AudioMosaicPretrainingTrainer(model=model, args=args).create_optimizer()
    by_name = _groups_by_name(model, optimizer.param_groups)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}  # (the projector's last BN has no bias)
    assert {n for n, g in by_name.items() if g["weight_decay"] == 0} == model.no_weight_decay() & trainable
    assert {n for n, g in by_name.items() if g["weight_decay"] == 0.05} == trainable - model.no_weight_decay()
    model.no_weight_decay = lambda: {"projector.0.weight"}  # a changed answer changes the optimizer
    optimizer = AudioMosaicPretrainingTrainer(model=model, args=args).create_optimizer()
    by_name = _groups_by_name(model, optimizer.param_groups)
    assert {n for n, g in by_name.items() if g["weight_decay"] == 0} == {"projector.0.weight"}
