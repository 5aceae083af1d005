"""The offline corpus's three probe tasks as the demo and the studies evaluate them.

Shared by run_scripts/run_demo.py, run_system_comparison.py and run_speech_study.py (the corpus is described in
docs/offline_corpus.md):

* `TASKS` / `SPLITS`, `load_split` (one split's waveforms and labels);
* the log-mel statistics baseline (`logmel_statistics`, `logmel_features`);
* `pretrain_arguments`: the `run_pretrain.py` arguments of the demo's pre-training
  (`modeling_audiomosaic.pretraining_run.run_pretraining`);
* `ProbeHarness`: loads the tasks once and linear-probes an encoder (layer sweep, `modeling_audiomosaic.probing`) or the
  log-mel baseline on them; `summarise_over_seeds` gives mean / std over seeds of its test accuracies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .feature_extraction.feature_extraction_audiomosaic import (
    AudioMosaicFeatureExtractor,
    kaldi_fbank,
    normalize_log_mel,
)
from .feature_extraction.loading import load_audio_dataset
from .probing import layer_sweep_probe, logistic_regression_probe

TASKS = ("keywords", "esc", "instruments")
SPLITS = ("train", "validation", "test")


def log(message: str) -> None:
    """A progress line on stdout, flushed at once (the scripts' logs interleave with subprocesses and progress bars)."""
    print(message, flush=True)


def load_split(corpus: Path, task: str, split: str) -> tuple[list[np.ndarray], list[str]]:
    """Waveforms (float32, 16 kHz) and first labels of `<corpus>/<task>/<split>.json`."""
    dataset = load_audio_dataset(Path(corpus) / task / f"{split}.json", group_column="group")
    waves, labels = [], []
    for example in dataset:
        waves.append(np.asarray(example["audio"], dtype=np.float32))
        labels.append(example["labels"][0])
    return waves, labels


def logmel_statistics(features: torch.Tensor, attention_mask: torch.Tensor | None = None) -> np.ndarray:
    """The log-mel baseline's clip features: per mel bin mean and std over the valid frames -> (B, 2 * bins)."""
    if attention_mask is None:
        attention_mask = torch.ones(features.shape[:2])
    weights = attention_mask.to(features.dtype).unsqueeze(-1)
    count = weights.sum(1).clamp_min(1.0)
    mean = (features * weights).sum(1) / count
    var = ((features - mean.unsqueeze(1)) ** 2 * weights).sum(1) / count
    return torch.cat([mean, var.sqrt()], dim=1).numpy()


def logmel_features(waves: list[np.ndarray], fe: AudioMosaicFeatureExtractor) -> np.ndarray:
    """Per-bin mean and std of the normalised log-mel over the WHOLE clip (no cropping)."""
    out = []
    for wave in waves:
        spec = kaldi_fbank(torch.from_numpy(wave))  # (frames, 128)
        spec = normalize_log_mel(spec, fe.mean, fe.std)
        out.append(logmel_statistics(spec.unsqueeze(0))[0])
    return np.stack(out)


def pretrain_arguments(recipe: str | Path, manifest: Path, output_dir: Path, steps: int, seed: int,
                       progress: bool = True, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The `run_pretrain.py` arguments of the demo's pre-training (also used by `run_speech_study.py`)."""
    return ["--config", str(recipe), "--train_path", str(manifest), "--output_dir", str(output_dir),
            "--max_steps", str(steps), "--seed", str(seed), "--disable_tqdm", "false" if progress else "true",
            "--report_to", "tensorboard", "--save_steps", "100000", *extra]


class ProbeHarness:
    """Loads the three tasks once and probes any encoder folder (or the baselines) on them."""

    def __init__(self, corpus: Path) -> None:
        self.data = {task: {split: load_split(corpus, task, split) for split in SPLITS} for task in TASKS}

    def _probe(self, features: dict[str, dict[str, np.ndarray]], seed: int) -> dict:
        out = {}
        for task in TASKS:
            labels = {s: self.data[task][s][1] for s in SPLITS}
            f = features[task]
            result = logistic_regression_probe(f["train"], labels["train"], f["validation"], labels["validation"],
                                               f["test"], labels["test"], seed=seed)
            out[task] = {"test_accuracy": result["test_accuracy"], "validation_accuracy": result["validation_accuracy"],
                         "C": result["C"]}
        return out

    def probe_model(self, model: torch.nn.Module, fe, seed: int) -> dict:
        """Layer sweep as the demo: block and C chosen on validation; the last block's test accuracy recorded too."""
        from .embeddings import AudioMosaicEmbedder

        embedder = AudioMosaicEmbedder(model.eval(), fe, batch_size=64, layer="all")
        out = {}
        for task in TASKS:
            features = {s: embedder.embed(self.data[task][s][0]).numpy() for s in SPLITS}
            labels = {s: self.data[task][s][1] for s in SPLITS}
            sweep = layer_sweep_probe(features, labels, seed=seed)
            best = sweep["best"]
            out[task] = {"test_accuracy": best["test_accuracy"], "validation_accuracy": best["validation_accuracy"],
                         "C": best["C"], "layer": best["layer"],
                         "last_block_test_accuracy": sweep["last"]["test_accuracy"], "per_layer": sweep["per_layer"]}
        return out

    def probe_logmel(self, fe, seed: int) -> dict:
        features = {t: {s: logmel_features(self.data[t][s][0], fe) for s in SPLITS} for t in TASKS}
        return self._probe(features, seed)


def summarise_over_seeds(results: dict[str, dict[int, dict]]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """system -> task (+ "mean") -> (mean, std, n) of the test accuracy over seeds."""
    table = {}
    for system, by_seed in results.items():
        rows = {}
        for task in (*TASKS, "mean"):
            values = []
            for result in by_seed.values():
                if task == "mean":
                    values.append(float(np.mean([result["probe"][t]["test_accuracy"] for t in TASKS])))
                else:
                    values.append(result["probe"][task]["test_accuracy"])
            rows[task] = (float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                          len(values))
        table[system] = rows
    return table
