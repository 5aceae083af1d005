"""AudioMosaic encoder and heads: parity with the timm-based original, attention back-ends, round trips, invariances."""

from __future__ import annotations

import copy

import pytest
import torch

from modeling_audiomosaic import (
    AudioMosaicConfig,
    AudioMosaicForAudioClassification,
    AudioMosaicModel,
)
from modeling_audiomosaic.convert_original_checkpoint import convert_original_state_dict
from modeling_audiomosaic.timm_reference import (
    AttentiveProbeReference,
    LayerProbeReference,
    OriginalAudioMosaicReference,
    WeightedSumProbeReference,
)

TOL = 1e-5


def tiny_config(**kw) -> AudioMosaicConfig:
    values = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, max_length=64,
                  num_mel_bins=32, drop_path_rate=0.0)
    values.update(kw)
    return AudioMosaicConfig(**values)


def load_from_reference(ref, cls, config):
    model = cls(copy.deepcopy(config)).eval()
    prefix = "" if cls is AudioMosaicModel else "audiomosaic."
    state = {k: v for k, v in ref.state_dict().items() if not (cls is AudioMosaicModel and k.startswith("head."))}
    missing, unexpected = model.load_state_dict(convert_original_state_dict(state, prefix), strict=False)
    assert not unexpected, unexpected
    assert not missing, missing
    return model


# ----------------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("frames", [1024, 128])
def test_parity_with_timm_reference_base(frames):
    """ViT-B/16 at a released input size: our classifier == timm-built original to <= 1e-5 (fp32)."""
    torch.manual_seed(frames)
    ref = OriginalAudioMosaicReference(frames=frames, num_classes=7).eval()
    config = AudioMosaicConfig.from_preset("audioset" if frames == 1024 else "speechcommands", num_labels=7)
    model = load_from_reference(ref, AudioMosaicForAudioClassification, config)
    x = torch.randn(2, frames, 128)
    with torch.no_grad():
        ref_logits, ref_tokens = ref(x)
        out = model(x, output_hidden_states=True)
    assert out.logits.shape == (2, 7)
    assert (out.logits - ref_logits).abs().max().item() <= TOL
    assert (out.hidden_states[-1] - ref_tokens).abs().max().item() <= TOL
    # the bare encoder gives the same tokens and the pooled fc_norm output
    base = load_from_reference(ref, AudioMosaicModel, config)
    with torch.no_grad():
        base_out = base(x)
        ref_pooled = ref.fc_norm(ref_tokens.mean(1))
    assert (base_out.last_hidden_state - ref_tokens).abs().max().item() <= TOL
    assert (base_out.pooler_output - ref_pooled).abs().max().item() <= TOL


@pytest.mark.parametrize(
    "ref_cls, head, extra",
    [
        (LayerProbeReference, "layer", {"probe_layer": 1}),
        (WeightedSumProbeReference, "weighted_sum", {}),
        (AttentiveProbeReference, "attentive", {"num_attn_heads": 2}),
    ],
)
@pytest.mark.parametrize("final_norm", [False, True])
def test_probe_parity(ref_cls, head, extra, final_norm):
    torch.manual_seed(1)
    ref = ref_cls(frames=64, mel_bins=32, dim=32, depth=3, heads=4, num_classes=5, final_norm=final_norm, **extra)
    ref.eval()
    kw = {"classifier_head": head, "use_final_norm": final_norm, "num_labels": 5, "num_hidden_layers": 3}
    if head == "layer":
        kw["probe_layer"] = extra["probe_layer"]
    if head == "attentive":
        kw["attentive_probe_heads"] = extra["num_attn_heads"]
    model = load_from_reference(ref, AudioMosaicForAudioClassification, tiny_config(**kw))
    x = torch.randn(3, 64, 32)
    with torch.no_grad():
        expected, _ = ref(x)
        got = model(x).logits
    assert (got - expected).abs().max().item() <= TOL


def test_parameter_count_matches_release():
    # counted on the original `AudioMosaicClassifier` (models/audiomosaic.py) instantiated on CPU
    model = AudioMosaicForAudioClassification(AudioMosaicConfig(num_labels=527))
    assert sum(p.numel() for p in model.parameters()) == 86_056_463
    spc = AudioMosaicForAudioClassification(AudioMosaicConfig.from_preset("speechcommands", num_labels=11))
    assert sum(p.numel() for p in spc.parameters()) == 85_315_595


def test_time_major_token_order():
    """Lighting one patch of the input changes exactly token 1 + t*F + f of the patch-embedding output."""
    config = tiny_config()
    model = AudioMosaicModel(config).eval()
    x = torch.zeros(1, 64, 32)
    base = model.embeddings.patch_embeddings.projection(x.unsqueeze(1)).flatten(2).transpose(1, 2)
    x[0, 16 * 2 + 3, 16 * 1 + 5] = 10.0  # time patch 2, freq patch 1
    lit = model.embeddings.patch_embeddings.projection(x.unsqueeze(1)).flatten(2).transpose(1, 2)
    changed = ((lit - base).abs().sum(-1) > 0).nonzero()[:, 1].tolist()
    assert changed == [2 * config.num_freq_patches + 1]


# ------------------------------------------------------------------------------------------------ attention back-ends
def test_eager_equals_sdpa_and_attentions():
    config = tiny_config()
    eager = AudioMosaicModel._from_config(copy.deepcopy(config), attn_implementation="eager").eval()
    sdpa = AudioMosaicModel._from_config(copy.deepcopy(config), attn_implementation="sdpa").eval()
    sdpa.load_state_dict(eager.state_dict())
    assert eager.config._attn_implementation == "eager" and sdpa.config._attn_implementation == "sdpa"
    x = torch.randn(2, 64, 32)
    mask = torch.ones(2, 64, dtype=torch.long)
    mask[1, 40:] = 0
    with torch.no_grad():
        for m in (None, mask):
            a, b = eager(x, attention_mask=m), sdpa(x, attention_mask=m)
            assert (a.last_hidden_state - b.last_hidden_state).abs().max() < 1e-5
            assert (a.pooler_output - b.pooler_output).abs().max() < 1e-5
        att = eager(x, output_attentions=True).attentions
        att_sdpa = sdpa(x, output_attentions=True).attentions  # falls back to eager for the probabilities
    assert len(att) == 2 and att[0].shape == (2, 4, 1 + 4 * 2, 1 + 4 * 2)
    torch.testing.assert_close(att[0].sum(-1), torch.ones(2, 4, 9))
    torch.testing.assert_close(att[0], att_sdpa[0])


def test_attention_is_bidirectional():
    """Changing the LAST patch changes the CLS output (a causal mask would hide it)."""
    model = AudioMosaicModel(tiny_config()).eval()
    x = torch.randn(1, 64, 32)
    y = x.clone()
    y[:, -16:, -16:] += 1.0
    with torch.no_grad():
        assert (model(x).last_hidden_state[:, 0] - model(y).last_hidden_state[:, 0]).abs().max() > 1e-4


def test_hidden_states_and_tuple_outputs():
    model = AudioMosaicModel(tiny_config()).eval()
    x = torch.randn(2, 64, 32)
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
        tup = model(x, return_dict=False)
    assert len(out.hidden_states) == 3
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state)  # no final norm by default
    torch.testing.assert_close(tup[0], out.last_hidden_state)
    torch.testing.assert_close(tup[1], out.pooler_output)


# --------------------------------------------------------------------------------------------- variable input length
def test_shorter_input_uses_leading_position_rows():
    """A 32-frame input equals the first 32 frames of the model: same result as truncating the position table."""
    config = tiny_config(num_hidden_layers=1)
    model = AudioMosaicModel(config).eval()
    x = torch.randn(2, 32, 32)
    short_cfg = tiny_config(num_hidden_layers=1, max_length=32)
    short = AudioMosaicModel(short_cfg).eval()
    state = model.state_dict()
    n = 1 + short_cfg.num_patches
    state["embeddings.position_embeddings"] = state["embeddings.position_embeddings"][:, :n]
    short.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(model(x).last_hidden_state, short(x).last_hidden_state)


def test_batch_invariance_with_padding():
    """A clip's output does not depend on the other clips of the batch, nor on how much padding they add."""
    config = tiny_config(num_hidden_layers=2)
    model = AudioMosaicForAudioClassification(config).eval()
    torch.manual_seed(3)
    lengths = [23, 64, 40]
    pad_value = 0.4670
    batch = torch.full((3, 64, 32), pad_value)
    mask = torch.zeros(3, 64, dtype=torch.long)
    for i, n in enumerate(lengths):
        batch[i, :n] = torch.randn(n, 32)
        mask[i, :n] = 1
    with torch.no_grad():
        together = model(batch, attention_mask=mask).logits
        for i, n in enumerate(lengths):
            frames = -(-n // 16) * 16
            alone = model(batch[i : i + 1, :frames], attention_mask=mask[i : i + 1, :frames]).logits
            assert (alone - together[i]).abs().max() < 1e-5
            # and padded to full length with the mask equals the cropped version
            full = model(batch[i : i + 1], attention_mask=mask[i : i + 1]).logits
            assert (full - together[i]).abs().max() < 1e-5
    # without a mask the padding does change the output (so the test above is meaningful)
    with torch.no_grad():
        assert (model(batch[:1]).logits - together[0]).abs().max() > 1e-6


def test_input_errors():
    model = AudioMosaicModel(tiny_config()).eval()
    with pytest.raises(ValueError, match="mel bins"):
        model(torch.randn(1, 64, 16))
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(torch.randn(1, 50, 32))
    with pytest.raises(ValueError, match="max_length=64"):
        model(torch.randn(1, 80, 32))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(1, 64, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(64, 32))
    with pytest.raises(ValueError, match="attention_mask"):
        model(torch.randn(1, 64, 32), attention_mask=torch.ones(1, 48))


def test_config_errors():
    with pytest.raises(ValueError, match="pooling"):
        AudioMosaicConfig(pooling="max")
    with pytest.raises(ValueError, match="divisible"):
        AudioMosaicConfig(hidden_size=100, num_attention_heads=12)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        AudioMosaicConfig(max_length=1000)
    with pytest.raises(ValueError, match="classifier_head"):
        AudioMosaicConfig(classifier_head="mlp")
    with pytest.raises(ValueError, match="Unknown input preset"):
        AudioMosaicConfig.from_preset("librispeech")


def test_presets():
    for preset, frames, tokens in [("audioset", 1024, 513), ("esc50", 512, 257), ("speechcommands", 128, 65)]:
        cfg = AudioMosaicConfig.from_preset(preset, size="tiny")
        assert cfg.max_length == frames and cfg.num_patches + 1 == tokens and cfg.hidden_size == 192


def test_audioset_preset_with_audioset_labels_is_multi_label_and_pipeline_uses_sigmoid():
    """AudioSet is multi-label: `from_preset("audioset", id2label=<527 AudioSet labels>)` must give a classifier the
    audio-classification pipeline scores with sigmoids (it chooses by `config.problem_type`), not a softmax over 527."""
    import numpy as np
    from transformers import pipeline

    from modeling_audiomosaic import load_label_file
    from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor

    tiny = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, drop_path_rate=0.0)
    labels = load_label_file("audioset")
    config = AudioMosaicConfig.from_preset("audioset", id2label=labels, **tiny)
    assert config.problem_type == "multi_label_classification"
    by_count = AudioMosaicConfig.from_preset("audioset", num_labels=527, **tiny)
    assert by_count.problem_type == "multi_label_classification"
    # an explicit choice wins; other label sets (EnvSDD's 2 classes on AudioSet-length input, ESC-50) keep the default
    single = AudioMosaicConfig.from_preset("audioset", id2label=labels, problem_type="single_label_classification")
    assert single.problem_type == "single_label_classification"
    assert AudioMosaicConfig.from_preset("audioset", num_labels=2, **tiny).problem_type is None
    assert AudioMosaicConfig.from_preset("esc50", id2label=load_label_file("esc50"), **tiny).problem_type is None

    torch.manual_seed(0)
    model = AudioMosaicForAudioClassification(config).eval()
    fe = AudioMosaicFeatureExtractor.from_preset("audioset")
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    result = pipeline("audio-classification", model=model, feature_extractor=fe)(wave, top_k=527)
    with torch.no_grad():
        logits = model(**fe(wave, sampling_rate=16000, return_tensors="pt")).logits[0]
    expected = dict(zip(labels.values(), logits.sigmoid().tolist()))
    assert len(result) == 527
    for row in result:
        assert abs(row["score"] - expected[row["label"]]) < 1e-5
    assert sum(row["score"] for row in result) > 10  # independent sigmoids, not a distribution summing to 1


# --------------------------------------------------------------------------------------------------- training paths
def test_gradient_checkpointing_same_gradients():
    config = tiny_config(num_labels=3)
    torch.manual_seed(0)
    model = AudioMosaicForAudioClassification(config)
    model.train()
    x, y = torch.randn(2, 64, 32), torch.tensor([0, 2])

    def grads(m):
        m.zero_grad()
        loss = m(x, labels=y).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    loss_a, ga = grads(model)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert all(layer.gradient_checkpointing for layer in model.audiomosaic.layers)
    loss_b, gb = grads(model)
    torch.testing.assert_close(loss_a, loss_b)
    assert ga.keys() == gb.keys() and len(ga) == len(list(model.parameters()))
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], msg=name)


def test_losses_single_multi_label_and_errors():
    config = tiny_config(num_labels=4)
    model = AudioMosaicForAudioClassification(config).eval()
    x = torch.randn(2, 64, 32)
    out = model(x, labels=torch.tensor([1, 3]))
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([1, 3])))
    assert model.config.problem_type == "single_label_classification"
    multi = AudioMosaicForAudioClassification(tiny_config(num_labels=4, problem_type="multi_label_classification"))
    target = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1]])
    out = multi(x, labels=target)
    torch.testing.assert_close(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, target))
    with pytest.raises(ValueError, match="class indices"):
        model(x, labels=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="multi-hot"):
        multi(x, labels=torch.tensor([1, 2]))


def test_freeze_encoder_linear_probe():
    model = AudioMosaicForAudioClassification(tiny_config(num_labels=3, drop_path_rate=0.5))
    model.freeze_encoder()
    model.train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"audiomosaic.pooler.fc_norm.weight", "audiomosaic.pooler.fc_norm.bias",
                         "classifier.dense.weight", "classifier.dense.bias"}
    assert not model.audiomosaic.layers.training and model.classifier.training
    x = torch.randn(2, 64, 32)
    torch.testing.assert_close(model(x).logits, model(x).logits)  # no drop-path noise in the frozen encoder


# ------------------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("head", ["linear", "layer", "weighted_sum", "attentive"])
def test_save_load_round_trip(tmp_path, head):
    from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

    config = tiny_config(num_labels=3, classifier_head=head, id2label={0: "a", 1: "b", 2: "c"},
                         label2id={"a": 0, "b": 1, "c": 2})
    model = AudioMosaicForAudioClassification(config).eval()
    with torch.no_grad():  # make the head non-trivial so equality is meaningful
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is AudioMosaicForAudioClassification
    assert AutoConfig.from_pretrained(tmp_path).id2label == {0: "a", 1: "b", 2: "c"}
    x = torch.randn(2, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, loaded(x).logits, rtol=0, atol=0)
        base = AutoModel.from_pretrained(tmp_path).eval()
        assert type(base) is AudioMosaicModel
        torch.testing.assert_close(base(x).pooler_output, model.audiomosaic(x).pooler_output, rtol=0, atol=0)


def test_encoder_checkpoint_loads_into_classifier(tmp_path):
    from transformers import AutoModelForAudioClassification

    base = AudioMosaicModel(tiny_config()).eval()
    base.save_pretrained(tmp_path)
    clf = AutoModelForAudioClassification.from_pretrained(tmp_path, num_labels=6).eval()
    x = torch.randn(1, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(clf.audiomosaic(x).pooler_output, base(x).pooler_output, rtol=0, atol=0)
    assert clf.classifier.dense.out_features == 6


def test_finetuning_token_drop_counts_and_eval_mode():
    """The original fine-tuning 2-D drop at 0.2 / 0.2 keeps 51 x 6 = 306 patches (+ CLS) for 1024 frames, only in
    training mode."""
    config = AudioMosaicConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                               num_labels=3, token_drop_time=0.2, token_drop_freq=0.2)
    model = AudioMosaicForAudioClassification(config).train()
    x = torch.randn(2, 1024, 128)
    assert model(x, output_hidden_states=True).hidden_states[0].shape[1] == 307
    model.eval()
    assert model(x, output_hidden_states=True).hidden_states[0].shape[1] == 513
    spc = AudioMosaicForAudioClassification(AudioMosaicConfig.from_preset(
        "speechcommands", hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
        num_labels=3, token_drop_time=0.2, token_drop_freq=0.2)).train()
    assert spc(torch.randn(2, 128, 128), output_hidden_states=True).hidden_states[0].shape[1] == 37
