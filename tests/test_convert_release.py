"""Conversion of the released AudioMosaic checkpoints (and raw training checkpoints) to native transformers folders.

Every checkpoint is built in the EXACT released format with random weights: the encoder keys come from timm's
VisionTransformer (`modeling_audiomosaic/timm_reference.py`, the original's stem/pooling/heads on top), the class
extras have the shapes of the original classes
(`conversion_keys.expected_original_keys`), and `config.json` holds `model_class` + constructor kwargs +
`audio_preprocessing`. Each one is converted, loaded with `AutoModel*.from_pretrained` and compared with the
reference forward in eval mode (<= 1e-5).

Speed: a full ViT-B/16 (12 x 768) at 1024 frames costs ~12 s to build, run twice and convert on 2 CPU cores. So one
class (pre-training: the most extra keys, BatchNorm buffers included) is checked numerically at full size; the others
use the real width (768), heads, head sizes, projector/LTU shapes and input lengths but 2 blocks. The full-size key
sets and shapes of EVERY class are still checked, cheaply, on meta-device checkpoints (`test_full_size_key_fidelity`).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification, AutoModelForPreTraining

import modeling_audiomosaic  # noqa: F401  (registers the Auto classes)
from modeling_audiomosaic import load_label_file
from modeling_audiomosaic.convert_original_checkpoint import (
    convert_original_checkpoint,
    expected_original_keys,
    plan_conversion,
)
from modeling_audiomosaic.timm_reference import (
    AttentiveProbeReference,
    LayerProbeReference,
    OriginalAudioMosaicReference,
    WeightedSumProbeReference,
)

TOL = 1e-5
REDUCED_DEPTH = 2
PRE = {"sample_rate": 16000, "num_mel_bins": 128, "frame_shift": 10.0}
AUDIOSET = {"target_length": 1024, "norm_mean": -4.2677393, "norm_std": 4.5689974, **PRE}
ESC = {"target_length": 512, "norm_mean": -6.6268077, "norm_std": 5.358466, **PRE}
SPC = {"target_length": 128, "norm_mean": -6.845978, "norm_std": 5.5654526, **PRE}
CODE_FILES = ("configuration_audiomosaic.py", "modeling_audiomosaic.py", "feature_extraction_audiomosaic.py")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _torch_load_only_with_weights_only(monkeypatch):
    """Every torch.load in this file (the converter reads .pt/.pth/.bin files) must pass weights_only=True."""
    real_load = torch.load

    def checked_load(*args, **kwargs):
        assert kwargs.get("weights_only") is True, "torch.load must be called with weights_only=True"
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", checked_load)


# ------------------------------------------------------------------------------------------------ references
class PretrainReference(OriginalAudioMosaicReference):
    """`AudioMosaicPretrain`: no final norm, mean over all tokens -> `f`; `z = projector(fc_norm(f))`."""

    def __init__(self, **kw) -> None:
        super().__init__(num_classes=0, **kw)
        dim = self.fc_norm.normalized_shape[0]
        self.projector = nn.Sequential(
            nn.Linear(dim, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
            nn.Linear(512, 128, bias=False), nn.BatchNorm1d(128),
        )
        self.randomize_projector()

    @torch.no_grad()
    def randomize_projector(self) -> None:
        """Non-trivial weights and BN statistics; the last BN's bias is frozen at 0 in the original."""
        for index in (1, 4):
            bn = self.projector[index]
            bn.weight.normal_(1.0, 0.2)
            if index == 1:
                bn.bias.normal_(0.0, 0.2)
            else:
                bn.bias.zero_()
            bn.running_mean.normal_(0.0, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
            bn.num_batches_tracked.fill_(1234 + index)
        for index in (0, 3):
            self.projector[index].weight.normal_(0.0, 0.05)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tokens = self.block_outputs(x)[-1]
        f = tokens.mean(dim=1)
        return f, self.projector(self.fc_norm(f)), tokens


@torch.no_grad()
def fast_full_size_pretrain_reference() -> PretrainReference:
    """A full-size `PretrainReference` without timm's (slow) initialisation: built on the meta device, materialised,
    then randomised like `OriginalAudioMosaicReference` does (all parameters ~ N(0, 0.05), 1-D gains around 1)."""
    with torch.device("meta"):
        ref = PretrainReference(frames=1024)
    ref.to_empty(device="cpu")
    vit = ref._pos_embed.__self__  # timm's `_pos_embed` (a bound method) reads the CLS / position parameters there
    vit.cls_token, vit.pos_embed = ref.cls_token, ref.pos_embed
    for name, param in ref.named_parameters():
        param.normal_(0.0, 0.05)
        if name.endswith("weight") and param.ndim == 1:
            param.add_(1.0)
    ref.randomize_projector()
    return ref.eval()


def release_config(model_class: str, frames: int, depth: int, preprocessing: dict, **extra) -> dict:
    """A release `config.json`: `model_class` + constructor kwargs + `audio_preprocessing` (the original's
    `scripts/test_hf_releases.py` loads it so)."""
    return {
        "model_class": model_class, "spec_size": [frames, 128], "patch_size": 16, "patch_stride": 16,
        "embed_dim": 768, "depth": depth, "num_heads": 12, "mlp_ratio": 4.0, "qkv_bias": True, "proj_bias": True,
        "pos_trainable": True, "drop_path_rate": 0.1, "pooling": "avg", "use_fc_norm": True, **extra,
        "audio_preprocessing": preprocessing,
    }


def write_release(folder: Path, state_dict: dict, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "modeling.py").write_text("# vendored original classes (not read by the converter)\n")
    return folder


def reference_state(ref: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in ref.state_dict().items()}


def assert_close(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    diff = (got - expected).abs().max().item()
    assert diff <= TOL, f"{what}: max abs diff {diff}"


def check_preprocessor(folder: Path, frames: int, mean: float, std: float) -> None:
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    assert pre["max_length"] == frames and pre["mean"] == pytest.approx(mean) and pre["std"] == pytest.approx(std)
    assert pre["auto_map"]["AutoFeatureExtractor"].endswith("AudioMosaicFeatureExtractor")
    fe = AutoFeatureExtractor.from_pretrained(folder)
    assert fe.max_length == frames and fe.normalize(torch.tensor(0.0)).item() == pytest.approx(-mean / (2 * std))


def check_code_files(folder: Path, auto_class: str) -> dict:
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "audiomosaic"
    assert {"AutoConfig", "AutoModel", "AutoModelForAudioClassification", auto_class} <= set(config["auto_map"])
    for name in CODE_FILES:
        assert (folder / name).is_file(), name
    assert (folder / "README.md").read_text().strip()
    return config


# ------------------------------------------------------------------------------------------------ pre-training
def test_pretrain_release_full_vit_b(tmp_path):
    """The released pre-training model at full size (ViT-B/16, 1024 frames, 166 keys): f, fc_norm(f) and z."""
    torch.manual_seed(0)
    ref = fast_full_size_pretrain_reference()
    state = reference_state(ref)
    assert len(state) == 166 and state["projector.4.num_batches_tracked"].dtype == torch.int64
    src = write_release(tmp_path / "AudioMosaic-vit-b16-pretrained", state,
                        release_config("AudioMosaicPretrain", 1024, 12, AUDIOSET, project_embedding_dim=128))
    dst = tmp_path / "native"
    summary = convert_original_checkpoint(src, dst)
    assert summary["native_class"] == "AudioMosaicForPreTraining" and summary["num_native_keys"] == 166
    config = check_code_files(dst, "AutoModelForPreTraining")
    assert config["num_hidden_layers"] == 12 and config["max_length"] == 1024 and config["projection_dim"] == 128
    check_preprocessor(dst, 1024, -4.2677393, 4.5689974)

    model = AutoModelForPreTraining.from_pretrained(dst).eval()
    assert type(model).__name__ == "AudioMosaicForPreTraining"
    for index in (1, 4):  # every BatchNorm buffer survives
        for name in ("running_mean", "running_var", "num_batches_tracked", "weight", "bias"):
            assert torch.equal(getattr(model.projector[index], name), getattr(ref.projector[index], name)), name
    x = torch.randn(1, 1024, 128)
    with torch.no_grad():  # one encoder pass (the pre-training forward would run one per view: 2 x 2.5 s on CPU)
        f, z, tokens = ref(x)
        out = model.audiomosaic(x)
        got_z = model.projector(out.pooler_output)
    assert_close(out.last_hidden_state, tokens, "tokens")
    assert_close(out.last_hidden_state.mean(1), f, "f")
    assert_close(out.pooler_output, ref.fc_norm(f), "pooled fc_norm(f)")
    assert_close(got_z, z, "z")


# ------------------------------------------------------------------------------------------------ classifiers
@pytest.mark.parametrize(
    "num_classes, frames, preprocessing, label_set",
    [(527, 1024, AUDIOSET, "audioset"), (50, 512, ESC, "esc50"), (11, 128, SPC, "speechcommands_v1"),
     (35, 128, SPC, "speechcommands_v2"), (2, 1024, AUDIOSET, None)],
    ids=["as-527", "esc-50", "spc1-11", "spc2-35", "envsdd-2"],
)
def test_classifier_releases(tmp_path, num_classes, frames, preprocessing, label_set):
    torch.manual_seed(num_classes)
    ref = OriginalAudioMosaicReference(frames=frames, depth=REDUCED_DEPTH, num_classes=num_classes).eval()
    state = reference_state(ref)
    assert len(state) == 8 + 12 * REDUCED_DEPTH + 4
    src = write_release(tmp_path / "release", state, release_config(
        "AudioMosaicClassifier", frames, REDUCED_DEPTH, preprocessing, num_classes=num_classes))
    dst = tmp_path / "native"
    summary = convert_original_checkpoint(src, dst)
    assert summary["classifier_head"] == "linear"
    config = check_code_files(dst, "AutoModelForAudioClassification")
    check_preprocessor(dst, frames, preprocessing["norm_mean"], preprocessing["norm_std"])
    expected_labels = load_label_file(label_set) if label_set else {i: f"LABEL_{i}" for i in range(num_classes)}
    if label_set:  # generic LABEL_i names equal the transformers defaults, which config.json does not store
        assert {int(k): v for k, v in config["id2label"].items()} == expected_labels
        assert len(config["id2label"]) == num_classes
    # how each head was trained (release catalogue): AudioSet and Speech Commands with BCE, ESC-50 / EnvSDD with CE
    bce = num_classes in (527, 11, 35)
    assert config["problem_type"] == ("multi_label_classification" if bce else "single_label_classification")
    source = summary["labels"]["problem_type_source"]
    assert "release catalogue" in source and ("BCE" if bce else "cross-entropy") in source

    model = AutoModelForAudioClassification.from_pretrained(dst).eval()
    assert model.config.id2label == expected_labels and model.config.max_length == frames
    x = torch.randn(2, frames, 128)
    with torch.no_grad():
        expected, _ = ref(x)
        got = model(x).logits
    assert got.shape == (2, num_classes)
    assert_close(got, expected, "logits")


@pytest.mark.parametrize("kind", ["layer", "weighted_sum", "attentive"])
def test_probe_releases(tmp_path, kind):
    torch.manual_seed(7)
    common = dict(frames=1024, depth=REDUCED_DEPTH, num_classes=527)
    if kind == "layer":
        ref, original, extra = LayerProbeReference(probe_layer=0, **common), "AudioMosaicLayerProbe", {"probe_layer": 0}
    elif kind == "weighted_sum":
        ref, original, extra = WeightedSumProbeReference(**common), "AudioMosaicWeightedSumProbe", {}
    else:
        ref, original, extra = AttentiveProbeReference(**common), "AudioMosaicAttentiveProbe", {"num_attn_heads": 1}
    ref.eval()
    state = reference_state(ref)
    n_extra = {"layer": 4, "weighted_sum": 5, "attentive": 4 + 3 + 2 * (REDUCED_DEPTH + 1)}[kind]
    assert len(state) == 8 + 12 * REDUCED_DEPTH + n_extra
    src = write_release(tmp_path / "release", state, release_config(
        original, 1024, REDUCED_DEPTH, AUDIOSET, num_classes=527, **extra))
    dst = tmp_path / "native"
    summary = convert_original_checkpoint(src, dst)
    assert summary["classifier_head"] == kind
    model = AutoModelForAudioClassification.from_pretrained(dst).eval()
    assert model.config.classifier_head == kind
    x = torch.randn(2, 1024, 128)
    with torch.no_grad():
        expected, _ = ref(x)
        got = model(x).logits
    assert_close(got, expected, f"{kind} probe logits")


# ------------------------------------------------------------------------------------------------ LTU
def ltu_extra_weights(ref: nn.Module, hidden: int = 4096) -> tuple[dict, dict]:
    """`extra_weights.bin` of the LTU release: 154 (here: reduced-depth) encoder keys + 2 projector + 128 LoRA keys,
    with the peft prefix `base_model.model.model.`."""
    prefix = "base_model.model.model."
    encoder = {k: v for k, v in reference_state(ref).items() if not k.startswith(("fc_norm.", "head."))}
    weights = {prefix + "audio_encoder." + k: v for k, v in encoder.items()}
    projector = {"audio_proj.1.weight": torch.randn(hidden, 768) * 0.02, "audio_proj.1.bias": torch.randn(hidden)}
    weights.update({prefix + k: v for k, v in projector.items()})
    for layer in range(32):
        for proj in ("q_proj", "v_proj"):
            base = f"{prefix}layers.{layer}.self_attn.{proj}."
            weights[base + "lora_A.default.weight"] = torch.zeros(8, hidden)
            weights[base + "lora_B.default.weight"] = torch.zeros(hidden, 8)
    return weights, projector


def test_ltu_audio_encoder_and_projector(tmp_path):
    torch.manual_seed(3)
    ref = OriginalAudioMosaicReference(frames=1024, depth=REDUCED_DEPTH, final_norm=True).eval()
    weights, projector = ltu_extra_weights(ref)
    assert sum("lora_" in k for k in weights) == 128 and sum("audio_encoder." in k for k in weights) == 8 + 12 * 2 + 2
    src = tmp_path / "AudioMosaic-vit-b16-ltu-stage4"
    src.mkdir()
    torch.save(weights, src / "extra_weights.bin")
    (src / "config.json").write_text(json.dumps({
        "model_class": "AudioMosaicLlamaForCausalLM", "hidden_size": 4096, "num_hidden_layers": 32,
        "num_attention_heads": 32, "audio_preprocessing": AUDIOSET}))
    dst = tmp_path / "native"
    summary = convert_original_checkpoint(src, dst)
    assert summary["native_class"] == "AudioMosaicModel" and len(summary["skipped"]) == 128
    config = check_code_files(dst, "AutoModel")
    assert config["use_final_norm"] is True and config["use_fc_norm"] is False
    check_preprocessor(dst, 1024, -5.081, 4.4849 / 2)  # LTU's (fbank + 5.081) / 4.4849 (its data_collator.load_audio)
    saved = load_file(str(dst / "audio_projector.safetensors"))
    assert set(saved) == set(projector) and all(torch.equal(saved[k], projector[k]) for k in projector)
    assert "audio_projector.safetensors" in (dst / "README.md").read_text()

    model = AutoModel.from_pretrained(dst).eval()
    assert type(model).__name__ == "AudioMosaicModel"
    x = torch.randn(2, 1024, 128)
    with torch.no_grad():
        _, tokens = ref(x)
        out = model(x)
    assert_close(out.last_hidden_state, tokens, "LTU encoder tokens (final norm)")
    assert_close(out.pooler_output, tokens.mean(1), "LTU pooled")


# ------------------------------------------------------------------------------------------------ raw checkpoints
def test_raw_pt_checkpoint_with_prefixes_and_weights_only(tmp_path, monkeypatch):
    """A raw training checkpoint (`_orig_mod.module.` prefixes, wrapped in `model`), class and size inferred."""
    torch.manual_seed(5)
    ref = OriginalAudioMosaicReference(frames=512, depth=REDUCED_DEPTH, num_classes=50).eval()
    state = {"_orig_mod.module." + k: v for k, v in reference_state(ref).items()}
    path = tmp_path / "model_state_dict_epochbest.pt"
    torch.save({"model": state, "epoch": 17, "optimizer": {"state": {}, "param_groups": []}}, path)

    calls = []
    real_load = torch.load

    def checked_load(*args, **kwargs):
        assert kwargs.get("weights_only") is True, "torch.load must be called with weights_only=True"
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", checked_load)
    dst = tmp_path / "native"
    summary = convert_original_checkpoint(path, dst)
    assert calls, "the .pt file was not read through torch.load"
    assert summary["source_format"] == "raw_checkpoint" and summary["original_class"] == "AudioMosaicClassifier"
    assert summary["labels"]["label_set"] == "esc50"
    check_preprocessor(dst, 512, -6.6268077, 5.358466)  # by frame count: no audio_preprocessing in a raw file
    model = AutoModelForAudioClassification.from_pretrained(dst).eval()
    x = torch.randn(1, 512, 128)
    with torch.no_grad():
        assert_close(model(x).logits, ref(x)[0], "raw checkpoint logits")


class _NotATensor:
    pass


def test_torch_file_with_objects_is_refused(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {"cls_token": torch.zeros(1, 1, 8)}, "args": _NotATensor()}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        convert_original_checkpoint(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ errors / dry run
@pytest.fixture(scope="module")
def small_release(tmp_path_factory) -> tuple[Path, dict]:
    torch.manual_seed(11)
    ref = OriginalAudioMosaicReference(frames=128, depth=REDUCED_DEPTH, num_classes=11)
    state = reference_state(ref)
    folder = write_release(tmp_path_factory.mktemp("spc") / "AudioMosaic-vit-b16-finetune-spc1", state,
                           release_config("AudioMosaicClassifier", 128, REDUCED_DEPTH, SPC, num_classes=11))
    return folder, state


def load_cli():
    path = REPO / "run_scripts" / "convert_original_checkpoint.py"
    spec = importlib.util.spec_from_file_location("convert_cli", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_dry_run_prints_mapping_and_writes_nothing(small_release, tmp_path, capsys):
    src, state = small_release
    dst = tmp_path / "out"
    assert load_cli().main([str(src), str(dst), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    lines = {" ".join(line.split()) for line in printed.splitlines()}
    assert "blocks.1.attn.qkv.weight -> audiomosaic.layers.1.attention.qkv.weight [2304, 768]" in lines
    assert "head.weight -> classifier.dense.weight [11, 768]" in lines
    assert "fc_norm.bias -> audiomosaic.pooler.fc_norm.bias [768]" in lines
    assert "pos_embed -> audiomosaic.embeddings.position_embeddings [1, 65, 768]" in lines
    assert "nothing written" in printed
    assert sum(" -> " in line for line in printed.splitlines()) >= len(state)
    assert not dst.exists()
    summary = convert_original_checkpoint(src, None, dry_run=True)
    assert len(summary["mapping"]) == len(state) and summary["files"] == []


def test_cli_converts_and_reports(small_release, tmp_path, capsys):
    src, _ = small_release
    dst = tmp_path / "out"
    assert load_cli().main([str(src), str(dst)]) == 0
    printed = capsys.readouterr().out
    assert "AudioMosaicClassifier -> AudioMosaicForAudioClassification" in printed and "written to" in printed
    assert "pooling='mean' <- release config (pooling='avg')" in printed  # where each config value came from
    assert "problem_type='multi_label_classification' <- release catalogue" in printed
    assert (dst / "model.safetensors").is_file()
    assert load_cli().main([str(src), str(dst)]) == 1  # not empty: refuses without --overwrite
    assert "not empty" in capsys.readouterr().err


def test_unknown_and_missing_keys_are_all_listed(small_release, tmp_path):
    src, state = small_release
    broken = dict(state)
    for key in ("blocks.1.mlp.fc2.bias", "norm_pre.weight"):
        broken.pop(key)
    broken["decoder.weight"] = torch.zeros(3)
    broken["blocks.0.attn.rel_pos"] = torch.zeros(3)
    folder = write_release(tmp_path / "broken", broken, json.loads((src / "config.json").read_text()))
    with pytest.raises(KeyError) as info:
        convert_original_checkpoint(folder, tmp_path / "out")
    message = str(info.value)
    for key in ("blocks.1.mlp.fc2.bias", "norm_pre.weight", "decoder.weight", "blocks.0.attn.rel_pos"):
        assert key in message
    assert "2 missing" in message and "2 unknown" in message
    assert not (tmp_path / "out").exists()
    # a release config claiming more blocks than the checkpoint holds: every key of the absent block is listed
    config = json.loads((src / "config.json").read_text()) | {"depth": 3}
    with pytest.raises(KeyError, match=r"12 missing key\(s\).*blocks\.2\.norm1\.weight"):
        plan_conversion(state, config)
    with pytest.raises(ValueError, match="num_classes=10"):
        plan_conversion(state, json.loads((src / "config.json").read_text()) | {"num_classes": 10})


def test_generic_and_release_model_cards(small_release, tmp_path, monkeypatch):
    """The converter writes the card of `modeling_audiomosaic.model_cards` (the one renderer): the release's card when
    the folder is a recognised release, else the generic card stating source and preprocessing."""
    from modeling_audiomosaic import model_cards

    src, _ = small_release
    rendered = []

    def fake_release_card(name, converted=True, extra_files=None):
        rendered.append(name)
        return f"# {name}\n\nrelease card\n"

    monkeypatch.setattr(model_cards, "render_model_card", fake_release_card)
    summary = convert_original_checkpoint(src, tmp_path / "release")
    assert summary["release"] == rendered[0] == "AudioMosaic-vit-b16-finetune-spc1"
    assert (tmp_path / "release" / "README.md").read_text() == "# AudioMosaic-vit-b16-finetune-spc1\n\nrelease card\n"

    summary = convert_original_checkpoint(src, tmp_path / "generic", release_name="my-finetune")
    card = (tmp_path / "generic" / "README.md").read_text()
    assert summary["release"] is None and any("not recognised" in note for note in summary["notes"])
    assert card == model_cards.render_generic_model_card(summary)
    assert str(src) in card and "128 frames" in card and "-6.845978" in card and "(x - mean) / (2 * std)" in card
    assert len(rendered) == 1  # the generic card did not go through the release renderer


def test_real_release_table_card_and_mismatch(small_release, tmp_path):
    """The folder name selects the release card; a checkpoint that does not match the named release (here an 11-way,
    128-frame head named as the AudioSet fine-tune) gets a generic card."""
    from modeling_audiomosaic.model_cards import render_model_card

    src, _ = small_release
    summary = convert_original_checkpoint(src, tmp_path / "spc1")
    assert summary["release"] == "AudioMosaic-vit-b16-finetune-spc1"
    assert (tmp_path / "spc1" / "README.md").read_text() == render_model_card(summary["release"])
    summary = convert_original_checkpoint(src, tmp_path / "wrong", release_name="AudioMosaic-vit-b16-finetune-as20k")
    assert summary["release"] is None
    assert any("does not match release" in note and "num_labels" in note for note in summary["notes"])
    assert "Converted with `modeling_audiomosaic.convert_original_checkpoint`" in (
        tmp_path / "wrong" / "README.md").read_text()


def test_package_import_leaves_the_converter_out():
    """`import modeling_audiomosaic` does not import the converter (transformers keeps converters out of
    `__init__`); it is imported from its own module."""
    converter_modules = ["modeling_audiomosaic.convert_original_checkpoint", "modeling_audiomosaic.conversion_plan",
                         "modeling_audiomosaic.conversion_keys"]
    code = (
        "import sys, modeling_audiomosaic\n"
        f"loaded = [name for name in {converter_modules!r} if name in sys.modules]\n"
        "assert not loaded, loaded\n"
        "assert not hasattr(modeling_audiomosaic, 'convert_original_checkpoint')\n"
        "from modeling_audiomosaic.convert_original_checkpoint import convert_original_checkpoint\n"
        "assert callable(convert_original_checkpoint)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------------ full-size keys
def meta_state(ref_factory) -> dict:
    with torch.device("meta"):
        return dict(ref_factory().state_dict())


@pytest.mark.parametrize(
    "original, factory, total, extra_config",
    [
        ("AudioMosaicPretrain", lambda: PretrainReference(frames=1024), 166, {}),
        ("AudioMosaicClassifier", lambda: OriginalAudioMosaicReference(frames=128, num_classes=11), 156,
         {"num_classes": 11}),
        ("AudioMosaicLayerProbe", lambda: LayerProbeReference(probe_layer=5, num_classes=527), 156,
         {"num_classes": 527, "probe_layer": 5}),
        ("AudioMosaicWeightedSumProbe", lambda: WeightedSumProbeReference(num_classes=527), 157, {}),
        ("AudioMosaicAttentiveProbe", lambda: AttentiveProbeReference(num_classes=527), 185, {}),
    ],
)
def test_full_size_key_fidelity(original, factory, total, extra_config):
    """ViT-B/16 key sets and shapes of every released class (meta tensors: no memory, no compute)."""
    state = meta_state(factory)
    assert len(state) == total and sorted(state) == sorted(expected_original_keys(original, 12))
    frames = (state["pos_embed"].shape[1] - 1) // 8 * 16
    plan = plan_conversion(state, release_config(original, frames, 12, AUDIOSET if frames == 1024 else SPC,
                                                 **extra_config))
    assert plan.original_class == original and len(plan.mapping) == total
    assert plan.config_kwargs["num_hidden_layers"] == 12 and plan.config_kwargs["num_attention_heads"] == 12
    assert plan.config_kwargs["max_length"] == frames
    assert state["blocks.11.attn.qkv.weight"].shape == (2304, 768)
    assert state["blocks.0.mlp.fc1.weight"].shape == (3072, 768)
    # the same class is found from the keys alone, except the layer probe (its keys equal the classifier's)
    inferred = plan_conversion(state, probe_layer=5 if original == "AudioMosaicLayerProbe" else None,
                               model_class="AudioMosaicLayerProbe" if original == "AudioMosaicLayerProbe" else None)
    assert inferred.original_class == original


def test_full_size_ltu_keys():
    with torch.device("meta"):
        ref = OriginalAudioMosaicReference(frames=1024, final_norm=True)
    weights, _ = ltu_extra_weights(ref)
    assert sum("audio_encoder." in k for k in weights) == 154 and len(weights) == 154 + 2 + 128
    plan = plan_conversion(weights)
    assert plan.native_class == "AudioMosaicModel" and len(plan.mapping) == 154 and len(plan.skipped) == 128
    assert plan.config_kwargs["use_final_norm"] is True
    assert plan.extra_files["audio_projector.safetensors"]["audio_proj.1.weight"].shape == (4096, 768)


def test_pretrain_extras_logit_scale_and_online_classifier():
    state = meta_state(lambda: PretrainReference(frames=1024))
    with_tau = dict(state, logit_scale=torch.tensor(2.66))
    plan = plan_conversion(with_tau)
    assert plan.config_kwargs["learnable_temperature"] is True
    assert ("logit_scale", "learnable_temperature.logit_scale", ()) in plan.mapping
    tau = plan.state_dict["learnable_temperature.logit_scale"]  # 0-dim there, (1,) here: FSDP2 shards no 0-dim
    assert tau.shape == (1,) and tau.item() == pytest.approx(2.66)
    online = dict(state, **{"online_classifier.weight": torch.zeros(527, 768),
                            "online_classifier.bias": torch.zeros(527)})
    with pytest.raises(ValueError, match="online_classifier"):
        plan_conversion(online)
    plan = plan_conversion(online, drop_extra_heads=True)
    assert plan.skipped == ["online_classifier.bias", "online_classifier.weight"] and len(plan.mapping) == 166


def test_layer_probe_needs_its_layer():
    state = meta_state(lambda: LayerProbeReference(probe_layer=3, num_classes=527))
    with pytest.raises(ValueError, match="probe_layer"):
        plan_conversion(state, model_class="AudioMosaicLayerProbe")
    assert plan_conversion(state, model_class="layer_probe", probe_layer=3).config_kwargs["probe_layer"] == 3
    with pytest.raises(ValueError, match="AASIST"):
        plan_conversion(state, model_class="AudioMosaicAASIST")


# ------------------------------------------------------------------------------------------------ config values
def spc_meta_state(num_classes: int = 11) -> dict:
    return meta_state(lambda: OriginalAudioMosaicReference(frames=128, depth=REDUCED_DEPTH, num_classes=num_classes))


def spc_config(**changes) -> dict:
    return release_config("AudioMosaicClassifier", 128, REDUCED_DEPTH, SPC, num_classes=11) | changes


@pytest.mark.parametrize("field, value", [("patch_size", [16, 16]), ("patch_size", (16, 16)),
                                          ("patch_stride", [16, 16]), ("spec_size", 128), ("spec_size", (128, 128))])
def test_sizes_accept_an_int_or_a_pair(field, value):
    """The original authors write sizes as ints or pairs (`"patch_size": [16, 16]`); both convert alike."""
    plan = plan_conversion(spc_meta_state(), spc_config(**{field: value}))
    assert (plan.config_kwargs["patch_size"], plan.config_kwargs["max_length"], plan.config_kwargs["num_mel_bins"]) \
        == (16, 128, 128)
    assert not any("patch_stride" in note for note in plan.notes)


@pytest.mark.parametrize("field, value, problem", [
    ("patch_size", [16, 8], "is not square"), ("patch_stride", [16, 8], "is not square"),
    ("patch_size", "16", "is not a size"), ("patch_size", [16, 16, 16], "is not a size"),
    ("patch_size", 16.5, "is not a size"), ("patch_size", True, "is not a size"),
    ("spec_size", "128x128", "is not a size"), ("spec_size", [128, 128, 1], "is not a size"),
    ("spec_size", [128, 0], "is not a size"),
])
def test_malformed_sizes_are_refused_clearly(field, value, problem):
    with pytest.raises(ValueError, match=f"{field}=.*{problem}"):
        plan_conversion(spc_meta_state(), spc_config(**{field: value}))


def test_size_disagreements_and_ignored_stride():
    with pytest.raises(ValueError, match=r"patch_size=8 but the checkpoint's shapes give 16"):
        plan_conversion(spc_meta_state(), spc_config(patch_size=[8, 8]))
    with pytest.raises(ValueError, match=r"spec_size\[0\]=256 but the checkpoint's shapes give 128"):
        plan_conversion(spc_meta_state(), spc_config(spec_size=[256, 128]))
    plan = plan_conversion(spc_meta_state(), spc_config(patch_stride=[10, 10]))  # the original ignores it as well
    assert plan.config_kwargs["patch_size"] == 16 and any("patch_stride" in note for note in plan.notes)


def test_problem_type_follows_the_training_loss(small_release):
    """Speech Commands heads were trained with BCE on one-hot targets (`SPCFinetune`): multi-label, from the release
    catalogue, with the source stated; cross-entropy heads stay single-label; unknown widths say so."""
    src, _ = small_release
    summary = convert_original_checkpoint(src, None, dry_run=True)  # recognised: AudioMosaic-vit-b16-finetune-spc1
    assert summary["release"] == "AudioMosaic-vit-b16-finetune-spc1"
    assert summary["labels"]["problem_type"] == "multi_label_classification"
    assert summary["labels"]["problem_type_source"] == (
        "release catalogue: AudioMosaic-vit-b16-finetune-spc1 was trained with BCE")
    for width, problem, text in [(35, "multi_label_classification", "finetune-spc2) were trained with BCE"),
                                 (50, "single_label_classification", "trained with cross-entropy"),
                                 (7, "single_label_classification", "no released head has 7 outputs")]:
        plan = plan_conversion(spc_meta_state(width))  # a raw checkpoint: no release config, no known release
        assert plan.config_kwargs["problem_type"] == problem, width
        assert text in plan.config_sources["problem_type"], plan.config_sources["problem_type"]


def test_missing_pooling_takes_the_original_class_default(tmp_path):
    """A release config without `pooling` is built by the release loader with the class default (`pooling='cls'`
    in the original `__init__`): the converted model must pool the CLS token too, and the summary says where it came
    from."""
    torch.manual_seed(13)
    ref = OriginalAudioMosaicReference(frames=128, depth=REDUCED_DEPTH, num_classes=11, pooling="cls").eval()
    config = spc_config()
    del config["pooling"]
    src = write_release(tmp_path / "release", reference_state(ref), config)
    summary = convert_original_checkpoint(src, tmp_path / "native")
    assert summary["config"]["pooling"] == "cls"
    assert summary["config_sources"]["pooling"].startswith("original class default 'cls'")
    assert any("has no 'pooling'" in note for note in summary["notes"])
    assert "CLS-token pooling" in (tmp_path / "native" / "README.md").read_text()
    model = AutoModelForAudioClassification.from_pretrained(tmp_path / "native").eval()
    x = torch.randn(2, 128, 128)
    with torch.no_grad():
        assert_close(model(x).logits, ref(x)[0], "CLS-pooled logits")
    # released configs set pooling explicitly; raw checkpoints (no config at all) follow the training configs (avg)
    explicit = plan_conversion(reference_state(ref), config | {"pooling": "avg"})
    assert explicit.config_kwargs["pooling"] == "mean"
    assert explicit.config_sources["pooling"] == "release config (pooling='avg')"
    raw = plan_conversion(reference_state(ref))
    assert raw.config_kwargs["pooling"] == "mean" and raw.config_sources["pooling"].startswith("training recipe 'avg'")
    # named as a release (all of which pool the mean), the CLS-pooled checkpoint gets a generic card, not the release's
    summary = convert_original_checkpoint(src, None, dry_run=True, release_name="AudioMosaic-vit-b16-finetune-spc1")
    assert summary["release"] is None and any("pooling: release 'mean', checkpoint 'cls'" in note
                                              for note in summary["notes"])
    # the same rule for the pre-training mask ratios (class defaults 0.8 / 0.8; pretrain.yaml 0.6 / 0.4)
    pretrain = meta_state(lambda: PretrainReference(frames=1024))
    from_release = plan_conversion(pretrain, release_config("AudioMosaicPretrain", 1024, 12, AUDIOSET))
    assert (from_release.config_kwargs["mask_ratio_time"], from_release.config_kwargs["mask_ratio_freq"]) == (0.8, 0.8)
    from_raw = plan_conversion(pretrain)
    assert (from_raw.config_kwargs["mask_ratio_time"], from_raw.config_kwargs["mask_ratio_freq"]) == (0.6, 0.4)
    assert "original class default" in from_release.config_sources["mask_ratio_time"]
