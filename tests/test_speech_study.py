"""run_speech_study.py: one-pass multi-pooling embeddings, the decision rule, and a tiny end-to-end run that is stopped
and resumed (cached pairs are not re-trained nor re-probed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import run_speech_study as rss
import torch

from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicModel
from modeling_audiomosaic.embeddings import AudioMosaicEmbedder
from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor

TASKS = ("keywords", "esc", "instruments")


def test_multi_pooling_embedder_equals_one_embedder_per_pooling():
    config = AudioMosaicConfig.from_preset("speechcommands", hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=4, intermediate_size=64)
    torch.manual_seed(0)
    model = AudioMosaicModel(config).eval()
    with torch.no_grad():
        model.embeddings.cls_token.normal_(0, 0.5)  # so that cls / mean / mean_patches differ
    fe = AudioMosaicFeatureExtractor.from_preset("speechcommands")
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (16000, 40000, 9000)]  # 1 and 3 windows
    poolings = ["mean", "cls", "mean_patches"]
    for seconds in (1.28, 0.64):
        multi = rss.MultiPoolingEmbedder(model, fe, poolings=poolings, layer="all", window_seconds=seconds)
        both = multi.embed(clips)
        assert both.shape == (3, 3, 3 * 32) and multi.pooling == config.pooling  # the attribute is restored
        for i, pooling in enumerate(poolings):
            one = AudioMosaicEmbedder(model, fe, pooling=pooling, layer="all", window_seconds=seconds).embed(clips)
            torch.testing.assert_close(both[..., i * 32:(i + 1) * 32], one, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(both[..., :32], both[..., 32:64])
    with pytest.raises(ValueError, match="not supported"):
        rss.MultiPoolingEmbedder(model, fe, poolings=["max"])


def _probe(val: float, test: float) -> dict:
    return {t: {"validation_accuracy": val, "test_accuracy": test, "layer": 2, "C": 1.0} for t in TASKS}


def test_decision_uses_validation_mean_and_ignores_the_per_task_selection():
    demo = rss.choice_name("mean", 128)
    cls64 = rss.choice_name("cls", 64)
    results = {
        "default": {s: {"probe": {demo: _probe(0.50, 0.50), cls64: _probe(0.40, 0.70),
                                  rss.CHOSEN: _probe(0.90, 0.60)}} for s in (0, 1)},
        "speech": {0: {"probe": {demo: _probe(0.58, 0.52), cls64: _probe(0.30, 0.30), rss.CHOSEN: _probe(0.9, 0.5)}},
                   1: {"probe": {demo: _probe(0.54, 0.48), cls64: _probe(0.30, 0.30), rss.CHOSEN: _probe(0.9, 0.5)}}},
    }
    baselines = {"log-mel statistics": {s: {"probe": _probe(0.4, 0.45)} for s in (0, 1)}}
    rows, decision, table = rss.summarise_study(results, baselines, "validation")
    winner = decision["winner"]
    assert (winner["pool"], winner["pooling"], winner["window_frames"]) == ("speech", "mean", 128)
    assert winner["validation_mean"][0] == pytest.approx(0.56) and winner["test_mean"][0] == pytest.approx(0.50)
    assert winner["test_mean"][1] == pytest.approx(np.std([0.52, 0.48], ddof=1))
    assert decision["demo_default"]["row"] == f"default | {demo}"
    assert decision["test_winner"]["row"] == f"default | {cls64}"  # recorded, not used
    assert f"| speech | {demo} **(winner)** | 0.500 ± 0.028 |" in table
    assert f"| default | {demo} (demo default) |" in table and "| – | log-mel statistics |" in table
    _, on_test, _ = rss.summarise_study(results, baselines, "test")
    assert on_test["winner"]["row"] == f"default | {cls64}"


def test_resume_redoes_only_unfinished_pairs(tmp_path, monkeypatch):
    """The study's caching with fast stand-ins for the corpus, pre-training and probes: a rerun re-trains and
    re-probes nothing; a pair that lost its probes is only probed; a pair killed during pre-training is re-trained;
    a new probe grid re-probes every pair without re-training."""
    from modeling_audiomosaic import pretraining_run

    corpus = tmp_path / "corpus"
    for pool in ("pretrain_pool", "pretrain_pool_speech"):
        (corpus / pool).mkdir(parents=True)
        (corpus / pool / "train.json").write_text(json.dumps({"data": [{"wav": pool}]}))
    (corpus / "build_config.json").write_text(json.dumps({"keys": {"keywords": "k1", "pretrain_pool": "p1"}}))
    (corpus / "corpus_stats.json").write_text(json.dumps({"tasks": {"pretrain_pool": {"clips": 10}}}))
    calls = {"pretrain": [], "probe": []}

    def fake_pretrain(argv):
        out = Path(argv[argv.index("--output_dir") + 1])
        calls["pretrain"].append(out.name)
        config = AudioMosaicConfig.from_preset("speechcommands", hidden_size=8, num_hidden_layers=1,
                                               num_attention_heads=1, intermediate_size=8)
        AudioMosaicModel(config).save_pretrained(out)
        AudioMosaicFeatureExtractor.from_preset("speechcommands").save_pretrained(out)
        (out / "pretrain_summary.json").write_text(json.dumps({"global_step": 2, "log_history": [{"loss": 1.0}]}))

    def fake_probe(model, fe, harness, seed, poolings, windows, progress=False):
        calls["probe"].append(seed)
        out = {rss.choice_name(p, w): _probe(0.5 + 0.01 * seed, 0.4) for p in poolings for w in windows}
        return {**out, rss.CHOSEN: {t: {**v, "choice": c} for c, r in list(out.items())[:1] for t, v in r.items()}}

    class FakeHarness:
        def __init__(self, corpus):
            pass

        def probe_model(self, model, fe, seed):
            return _probe(0.3, 0.3)

        def probe_logmel(self, fe, seed):
            return _probe(0.35, 0.35)

    monkeypatch.setattr(rss, "build_corpus", lambda *a, **k: corpus)
    monkeypatch.setattr(rss, "ProbeHarness", FakeHarness)
    monkeypatch.setattr(rss, "probe_choices", fake_probe)
    monkeypatch.setattr(pretraining_run, "run_pretraining", fake_pretrain)
    out = tmp_path / "study"
    argv = ["--output_dir", str(out), "--seeds", "0", "1", "--no_progress", "--windows", "128"]
    rss.main(argv)
    assert sorted(calls["pretrain"]) == ["default-seed0", "default-seed1", "speech-seed0", "speech-seed1"]
    assert len(calls["probe"]) == 4
    text = (out / "speech_study.md").read_text()
    assert f"| default | {rss.choice_name('mean', 128)} **(winner)** (demo default) | 0.400 ± 0.000 |" in text
    assert "| – | log-mel statistics | 0.350 ± 0.000 |" in text

    def rerun(*extra):
        calls["pretrain"].clear(), calls["probe"].clear()
        rss.main(argv + list(extra))
        return sorted(calls["pretrain"]), sorted(calls["probe"])

    assert rerun() == ([], [])  # everything cached
    assert (out / "speech_study.md").read_text() == text
    (out / "runs" / "speech-seed1.json").unlink()  # killed while probing
    assert rerun() == ([], [1])
    (out / "runs" / "default-seed0.json").unlink()  # killed while pre-training: no finished key, junk left
    (out / "runs" / "default-seed0" / "study_pretrain_key.json").unlink()
    assert rerun() == (["default-seed0"], [0])
    assert rerun("--poolings", "mean", "cls") == ([], [0, 0, 1, 1])  # new probe grid: probes only


@pytest.mark.slow  # 50-90 s on 2 busy cores (tiny corpus with the speech pool, 2 pre-trainings, probes twice)
def test_tiny_study_end_to_end_and_resume(tmp_path, monkeypatch):
    """Both pools, 1 seed, 2 steps of a 1-block model; then a 'killed' run (one pair's probes lost) resumes: only that
    pair is probed again, nothing is pre-trained again, and the table is the same."""
    from modeling_audiomosaic import pretraining_run

    calls = {"pretrain": 0, "probe": []}
    real_pretrain, real_probe = pretraining_run.run_pretraining, rss.probe_choices

    def counting_pretrain(argv):
        calls["pretrain"] += 1
        return real_pretrain(argv)

    def counting_probe(model, fe, harness, seed, *rest):
        calls["probe"].append(seed)
        return real_probe(model, fe, harness, seed, *rest)

    monkeypatch.setattr(pretraining_run, "run_pretraining", counting_pretrain)
    monkeypatch.setattr(rss, "probe_choices", counting_probe)
    overrides = json.dumps({"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2,
                            "intermediate_size": 64, "projection_hidden_size": 32, "projection_dim": 16},
                           separators=(",", ":"))
    out = tmp_path / "study"
    argv = ["--corpus_size", "tiny", "--clips_per_class", "3", "--corpus_dir", str(tmp_path / "corpus"),
            "--output_dir", str(out), "--seeds", "0", "--pretrain_max_steps", "2", "--no_progress", "--pretrain_args",
            f"--per_device_train_batch_size 8 --dataloader_num_workers 0 --config_overrides '{overrides}'"]
    first = rss.main(argv)
    assert calls == {"pretrain": 2, "probe": [0, 0]}
    text = (out / "speech_study.md").read_text()
    choices = [rss.choice_name(p, w) for w in (128, 64) for p in ("mean", "cls", "mean_patches")] + [rss.CHOSEN]
    for pool in ("default", "speech"):
        for choice in choices:
            assert f"| {pool} | {choice}" in text
    assert "| – | log-mel statistics |" in text and "| – | same architecture, random init |" in text
    assert text.count("**(winner)**") == 1 and "Default that wins on the mean of the three tasks" in text
    data = json.loads((out / "speech_study.json").read_text())
    assert data["pools"]["speech"]["speech_share_clips"] == pytest.approx(0.5, abs=0.02)
    assert data["pools"]["default"]["speech_share_clips"] < 0.4
    record = json.loads((out / "runs" / "speech-seed0.json").read_text())
    assert record["pretrain"]["steps"] == 2
    for task in TASKS:  # the per-task selection is the validation maximum over the fixed choices
        chosen = record["probe"][rss.CHOSEN][task]
        best = max(record["probe"][c][task]["validation_accuracy"] for c in choices[:-1])
        assert chosen["validation_accuracy"] == best
        assert record["probe"][chosen["choice"]][task] == {k: v for k, v in chosen.items() if k != "choice"}

    (out / "runs" / "speech-seed0.json").unlink()  # killed while probing the second pair
    second = rss.main(argv)
    assert calls == {"pretrain": 2, "probe": [0, 0, 0]}  # no pre-training; only the unfinished pair is probed
    assert second["decision"] == first["decision"]
    assert (out / "speech_study.md").read_text() == text
