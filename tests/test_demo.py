"""The README main job end to end at a tiny size: corpus -> pre-training -> probes -> saved models -> report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "run_scripts"))


def test_demo_tiny_end_to_end(tmp_path):
    import run_demo
    from transformers import AutoModel, pipeline

    out = tmp_path / "outputs"
    report = run_demo.main(["--output_dir", str(out), "--corpus_size", "tiny", "--corpus_dir", str(tmp_path / "c"),
                            "--pretrain_minutes", "0.2", "--pretrain_max_steps", "3"])
    for name in ("report.md", "results.json", "pretrain_loss.png", "probe_accuracy.png", "masked_views.png",
                 "embedding_map_keywords.png", "embedding_map_esc.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert set(results["probe"]) == {"keywords", "esc", "instruments"}
    for task in results["probe"].values():
        assert len(task) == 3 and all(0.0 <= v["test_accuracy"] <= 1.0 for v in task.values())
    assert report["pretrain"]["steps"] >= 1
    assert type(AutoModel.from_pretrained(out / "audiomosaic-demo-encoder")).__name__ == "AudioMosaicModel"
    pipe = pipeline("audio-classification", model=str(out / "audiomosaic-demo-keywords"))
    import numpy as np

    labels = {r["label"] for r in pipe(np.zeros(16000, dtype=np.float32) + 0.01, top_k=20)}
    assert "_silence_" in labels and len(labels) == 12
    assert "license:" in (out / "audiomosaic-demo-encoder" / "README.md").read_text()
    assert "| keywords |" in (out / "report.md").read_text()
