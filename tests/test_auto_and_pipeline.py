"""Auto-class registration, remote code in a process without our packages, and the audio-classification pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch

import modeling_audiomosaic  # noqa: F401  (registers the Auto classes)
from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicForAudioClassification, load_label_file
from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor

LABELS = {0: "yes", 1: "no", 2: "up"}


def make_saved_classifier(path, multi_label=False):
    config = AudioMosaicConfig.from_preset(
        "speechcommands", hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
        problem_type="multi_label_classification" if multi_label else None,
    )
    torch.manual_seed(0)
    model = AudioMosaicForAudioClassification(config).eval()
    with torch.no_grad():
        model.classifier.dense.weight.normal_(0, 0.5)  # non-trivial scores
    model.save_pretrained(path)
    fe = AudioMosaicFeatureExtractor.from_preset("speechcommands")
    fe.save_pretrained(path)
    return model, fe


def test_saved_folder_has_code_and_full_auto_map(tmp_path):
    make_saved_classifier(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "audiomosaic"
    assert set(config["auto_map"]) >= {"AutoConfig", "AutoModel", "AutoModelForAudioClassification"}
    for name in ("configuration_audiomosaic.py", "modeling_audiomosaic.py", "feature_extraction_audiomosaic.py"):
        assert (tmp_path / name).is_file(), name
    pre = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert pre["auto_map"]["AutoFeatureExtractor"].endswith("AudioMosaicFeatureExtractor")


def test_auto_classes_by_import(tmp_path):
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification

    model, fe = make_saved_classifier(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is AudioMosaicConfig
    assert type(AutoFeatureExtractor.from_pretrained(tmp_path)) is AudioMosaicFeatureExtractor
    assert type(AutoModelForAudioClassification.from_pretrained(tmp_path)) is AudioMosaicForAudioClassification
    assert type(AutoModel.from_pretrained(tmp_path)).__name__ == "AudioMosaicModel"


REMOTE_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys
    blocked = ("modeling_audiomosaic", "feature_extraction")  # the package, and the old top-level name

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ImportError(f"{name} is blocked in this process")
            return None

    sys.meta_path.insert(0, Block())
    for name in blocked:
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{name} is importable: the test would prove nothing")

    import numpy as np, torch
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification
    folder = sys.argv[1]
    try:
        AutoModelForAudioClassification.from_pretrained(folder)
    except ValueError as err:
        assert "trust_remote_code" in str(err), err
    else:
        raise SystemExit("loaded custom code without trust_remote_code")
    cfg = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    fe = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    clf = AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    wave = np.load(sys.argv[2])
    inputs = fe(wave, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        logits = clf(**inputs).logits
        pooled = base(**inputs).pooler_output
    print(json.dumps({{
        "config": type(cfg).__module__, "fe": type(fe).__module__, "clf": type(clf).__module__,
        "base": type(base).__name__, "logits": logits[0].tolist(), "pooled0": float(pooled[0, 0]),
    }}))
    """
)


def test_remote_code_loads_without_our_packages(tmp_path):
    folder = tmp_path / "model"
    model, fe = make_saved_classifier(folder)
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    np.save(tmp_path / "wave.npy", wave)
    script = tmp_path / "remote.py"
    script.write_text(REMOTE_SCRIPT.replace("{{", "{").replace("}}", "}"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    proc = subprocess.run([sys.executable, "-I", str(script), str(folder), str(tmp_path / "wave.npy")],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, cwd=str(tmp_path),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    result = json.loads(last[last.index("{"):])
    assert result["config"].startswith("transformers_modules.")
    assert result["clf"].startswith("transformers_modules.") and result["fe"].startswith("transformers_modules.")
    assert result["base"] == "AudioMosaicModel"
    with torch.no_grad():
        expected = model(**fe(wave, sampling_rate=16000, return_tensors="pt")).logits[0]
    np.testing.assert_allclose(result["logits"], expected.numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory):
    from transformers import pipeline

    folder = tmp_path_factory.mktemp("pipe_model")
    model, fe = make_saved_classifier(folder)
    return pipeline("audio-classification", model=str(folder)), model, fe


def _expected_scores(model, fe, wave):
    with torch.no_grad():
        logits = model(**fe(wave, sampling_rate=16000, return_tensors="pt")).logits[0]
    return dict(zip(LABELS.values(), torch.softmax(logits, -1).tolist()))


def test_pipeline_numpy_array(saved_pipeline):
    pipe, model, fe = saved_pipeline
    wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    result = pipe(wave)
    assert [r["label"] for r in result] and {r["label"] for r in result} == set(LABELS.values())
    assert abs(sum(r["score"] for r in result) - 1.0) < 1e-5
    expected = _expected_scores(model, fe, wave)
    for r in result:
        assert abs(r["score"] - expected[r["label"]]) < 1e-5
    assert result == sorted(result, key=lambda r: -r["score"])
    assert len(pipe(wave, top_k=2)) == 2


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_pipeline_audio_file_paths(saved_pipeline, tmp_path, fmt):
    pipe, model, fe = saved_pipeline
    rng = np.random.default_rng(1)
    wave = (0.2 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000) + 0.05 * rng.standard_normal(16000))
    wave = wave.astype(np.float32)
    path = tmp_path / f"clip.{fmt}"
    sf.write(path, wave, 16000, subtype={"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS"}[fmt])
    result = pipe(str(path))
    assert {r["label"] for r in result} == set(LABELS.values())
    decoded, sr = sf.read(path, dtype="float32")
    expected = _expected_scores(model, fe, decoded)
    tol = 1e-4 if fmt != "ogg" else 2e-3  # ffmpeg and libsndfile decode Vorbis with slightly different float paths
    for r in result:
        assert abs(r["score"] - expected[r["label"]]) < tol, (fmt, r, expected)


def test_pipeline_multi_label_uses_sigmoid(tmp_path):
    from transformers import pipeline

    model, fe = make_saved_classifier(tmp_path, multi_label=True)
    pipe = pipeline("audio-classification", model=str(tmp_path))
    wave = np.random.default_rng(2).standard_normal(16000).astype(np.float32) * 0.1
    result = pipe(wave)
    with torch.no_grad():
        probs = torch.sigmoid(model(**fe(wave, sampling_rate=16000, return_tensors="pt")).logits[0])
    expected = dict(zip(LABELS.values(), probs.tolist()))
    for r in result:
        assert abs(r["score"] - expected[r["label"]]) < 1e-5


def test_released_label_files():
    assert len(load_label_file("audioset")) == 527
    assert load_label_file("audioset")[0] == "Speech"
    assert len(load_label_file("esc50")) == 50 and load_label_file("esc50")[0] == "dog"
    assert len(load_label_file("speechcommands_v1")) == 11 and load_label_file("speechcommands_v1")[0] == "yes"
    assert len(load_label_file("speechcommands_v2")) == 35
    with pytest.raises(ValueError, match="Unknown label set"):
        load_label_file("librispeech")
