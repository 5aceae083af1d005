#!/usr/bin/env python
"""The speech-gap study: a speech-heavier pre-training pool, and the probe's block / pooling /
embedding window, measured over seeds, to pick the demo's defaults.

For every seed (default 0 1 2) and pool (`default`: `pretrain_pool/`, `speech`: `pretrain_pool_speech/`, the default
pool plus sentences and words from train/validation voices until half of the clips are speech; see
docs/offline_corpus.md), pre-train exactly as `run_demo.py --pool <pool> --seed <seed>` does (`run_pretraining`,
the demo's recipe, flags and step count), then linear-probe the pre-trained encoder on the three tasks for every
pooling (`mean`: all tokens incl. CLS, the demo's; `cls`; `mean_patches`) x embedding window (`AudioMosaicEmbedder`
windows of 128 frames = the model's 1.28 s, the demo's, or 64 frames, 50 % overlap, averaged over the clip): the block
and C are chosen on the validation split (`modeling_audiomosaic.probing.layer_sweep_probe`), the test split is read for
the record. A last row per pool also chooses the pooling and window per task on validation. The corpus is the demo's for
`--corpus_seed` (default 0: the study's default-pool seed-0 encoder is the demo's); seeds vary pre-training.

Baselines, as in the demo (they do not depend on the pool): the same architecture randomly initialised (demo probe:
mean pooling, 128 frames, block chosen on validation) once per seed, and log-mel statistics once (deterministic).

Caching and resuming: `<out>/runs/<pool>-seed<seed>/` holds the pre-trained encoder and `<pool>-seed<seed>.json` its
probes; `<out>/baselines/` the baselines. A rerun reads finished pairs back; a pair whose pre-training finished but
whose probes did not is only probed; a configuration change (steps, recipe, flags, corpus, probe grid) redoes a pair.

Decision: among the fixed settings (pool x pooling x window, block chosen on validation as the demo does), the one
with the best mean over the three tasks of the VALIDATION accuracy (mean over seeds) wins, a tie keeping the demo's
(`--decide_on test` uses the test accuracy instead); the per-task selection row is not a candidate (its validation
score is a maximum over the others). Writes `<out>/speech_study.md` (mean ± std over seeds) and `speech_study.json`,
and prints the winner.

    python run_scripts/run_speech_study.py                                   # the study: 6 pre-trainings
    python run_scripts/run_speech_study.py --corpus_size tiny --seeds 0 --pretrain_max_steps 2   # smoke test
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modeling_audiomosaic import AudioMosaicModel, pretraining_run
from modeling_audiomosaic.demo_tasks import SPLITS, TASKS, ProbeHarness, log, pretrain_arguments, summarise_over_seeds
from modeling_audiomosaic.embeddings import POOLINGS, AudioMosaicEmbedder
from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor
from modeling_audiomosaic.feature_extraction.offline_corpus import POOLS, build_corpus, pool_tasks
from modeling_audiomosaic.probing import layer_sweep_probe

REPO = Path(__file__).resolve().parents[1]
DEMO_POOLING, DEMO_WINDOW = "mean", 128  # the demo's probe: the model's pooling, windows of the model's length
CHOSEN = "pooling and window chosen per task on validation"


class MultiPoolingEmbedder(AudioMosaicEmbedder):
    """`AudioMosaicEmbedder` that pools every window with several poolings in ONE forward pass.

    `embed` returns `(clips, layers, len(poolings) * D)`; slice `[..., i * D:(i + 1) * D]` equals a plain embedder
    with `pooling=poolings[i]` (clip embeddings are linear averages of window embeddings)."""

    def __init__(self, *args: Any, poolings: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        bad = [p for p in poolings if p not in POOLINGS]
        if bad or not poolings:
            raise ValueError(f"poolings {bad or poolings} not supported; choose from {POOLINGS}")
        self.poolings = list(poolings)

    @property
    def embedding_size(self) -> int:
        return int(self.config.hidden_size) * len(self.poolings)

    def _window_vectors(self, tokens: list[torch.Tensor], token_mask: torch.Tensor | None) -> torch.Tensor:
        own, parts = self.pooling, []
        try:
            for pooling in self.poolings:
                self.pooling = pooling
                parts.append(super()._window_vectors(tokens, token_mask))
        finally:
            self.pooling = own
        return torch.cat(parts, dim=-1)


def choice_name(pooling: str, frames: int) -> str:
    return f"{pooling} pooling, {frames}-frame window"


def probe_choices(model: torch.nn.Module, fe, harness: ProbeHarness, seed: int, poolings: list[str],
                  windows: list[int], progress: bool = False) -> dict[str, dict[str, dict]]:
    """choice -> task -> probe (validation/test accuracy, block, C, last block's test accuracy), plus `CHOSEN`."""
    out: dict[str, dict[str, dict]] = {}
    for frames in windows:
        embedder = MultiPoolingEmbedder(model.eval(), fe, poolings=poolings, layer="all", batch_size=64,
                                        window_seconds=frames / 100.0, progress=None if progress else False)
        if embedder.window_frames != frames:
            raise ValueError(f"window {frames} frames is not a multiple of the patch size {embedder.patch_size}")
        for task in TASKS:
            feats = {s: embedder.embed(harness.data[task][s][0]).numpy() for s in SPLITS}
            labels = {s: harness.data[task][s][1] for s in SPLITS}
            dim = feats["train"].shape[-1] // len(poolings)
            for i, pooling in enumerate(poolings):
                sweep = layer_sweep_probe({s: f[..., i * dim:(i + 1) * dim] for s, f in feats.items()}, labels,
                                          seed=seed)
                best = sweep["best"]
                out.setdefault(choice_name(pooling, frames), {})[task] = {
                    "validation_accuracy": best["validation_accuracy"], "test_accuracy": best["test_accuracy"],
                    "layer": best["layer"], "C": best["C"], "last_block_test_accuracy": sweep["last"]["test_accuracy"],
                }
    out[CHOSEN] = {}
    for task in TASKS:  # first listed wins ties (the demo's setting comes first by default)
        name = max(out, key=lambda n: out[n][task]["validation_accuracy"] if n != CHOSEN else -1.0)
        out[CHOSEN][task] = {**out[name][task], "choice": name}
    return out


def _sha(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:16]


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def _read_cache(path: Path, key: dict) -> dict | None:
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("key") == key:
        return record
    log(f"  {path.name}: configuration changed, redoing it")
    return None


def pretrain(run_dir: Path, manifest: Path, seed: int, args: argparse.Namespace, key: dict) -> dict:
    """Pre-train as run_demo.py's step 2 (same flags), unless `run_dir` holds a finished run of the same `key`."""
    key_file = run_dir / "study_pretrain_key.json"
    if key_file.is_file() and json.loads(key_file.read_text()) == key:
        log("  pre-training: cached")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        start = time.time()
        pretraining_run.run_pretraining(pretrain_arguments(args.recipe, manifest, run_dir, args.pretrain_max_steps,
                                                           seed, args.progress, shlex.split(args.pretrain_args)))
        _write_json(run_dir / "study_pretrain_info.json", {"wall_s": round(time.time() - start, 1)})
        key_file.write_text(json.dumps(key))
    summary = json.loads((run_dir / "pretrain_summary.json").read_text())
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    info_file = run_dir / "study_pretrain_info.json"
    wall = json.loads(info_file.read_text())["wall_s"] if info_file.is_file() else None
    return {"steps": summary["global_step"], "final_loss": losses[-1] if losses else None, "wall_s": wall}


def mean_std(values: list[float]) -> tuple[float, float, int]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values)


def cell(stat: tuple[float, float, int]) -> str:
    return f"{stat[0]:.3f} ± {stat[1]:.3f}" if stat[2] > 1 else f"{stat[0]:.3f}"


def summarise_study(results: dict[str, dict[int, dict]], baselines: dict[str, dict[int, dict]],
                    decide_on: str) -> tuple[dict, dict, str]:
    """(rows, decision, markdown): rows = "pool | choice" or a baseline -> task/"mean"/"validation_mean" -> stats."""
    systems = {f"{pool} | {choice}": {seed: {"probe": r["probe"][choice]} for seed, r in by_seed.items()}
               for pool, by_seed in results.items() for choice in next(iter(by_seed.values()))["probe"]}
    systems.update({name: by_seed for name, by_seed in baselines.items()})
    rows = summarise_over_seeds(systems)
    for name, by_seed in systems.items():
        rows[name]["validation_mean"] = mean_std([float(np.mean([r["probe"][t]["validation_accuracy"] for t in TASKS]))
                                                 for r in by_seed.values()])
        rows[name]["blocks"] = " ".join("/".join(str(r["probe"][t].get("layer", "–")) for t in TASKS)
                                        for r in by_seed.values())
    metric = "validation_mean" if decide_on == "validation" else "mean"
    demo = f"default | {choice_name(DEMO_POOLING, DEMO_WINDOW)}"
    candidates = sorted((n for n in systems if " | " in n and not n.endswith(CHOSEN)), key=lambda n: n != demo)
    winner = max(candidates, key=lambda n: rows[n][metric][0])  # a tie keeps the demo's default (first)

    def describe(name: str) -> dict:
        pool, choice = name.split(" | ")
        pooling, window = choice.split(" pooling, ")
        return {"pool": pool, "pooling": pooling, "window_frames": int(window.split("-")[0]), "row": name,
                "validation_mean": rows[name]["validation_mean"], "test_mean": rows[name]["mean"],
                "test": {t: rows[name][t] for t in TASKS}}

    decision = {"decided_on": decide_on, "winner": describe(winner),
                "demo_default": describe(demo) if demo in rows else None,
                "test_winner": describe(max(candidates, key=lambda n: rows[n]["mean"][0]))}
    lines = ["| pool | probe choice (block chosen on validation) | keywords | esc | instruments | mean (test) | "
             "mean (validation) | blocks kw/esc/inst per seed |", "|---|---|---|---|---|---|---|---|"]
    for name in systems:
        pool, _, choice = name.partition(" | ") if " | " in name else ("–", "", name)
        mark = " **(winner)**" if name == winner else ""
        mark += " (demo default)" if name == demo else ""
        lines.append(f"| {pool} | {choice}{mark} | " + " | ".join(cell(rows[name][t]) for t in (*TASKS, "mean"))
                     + f" | {cell(rows[name]['validation_mean'])} | {rows[name]['blocks']} |")
    return rows, decision, "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=str(REPO / ".cache" / "speech_study"))
    parser.add_argument("--corpus_size", default="default", choices=["tiny", "small", "default"])
    parser.add_argument("--corpus_dir", default=None, help="default: .cache/offline_corpus/<size>-seed<corpus_seed>")
    parser.add_argument("--corpus_seed", type=int, default=0)
    parser.add_argument("--clips_per_class", type=int, default=None, help="override the corpus size's (smoke tests)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pools", nargs="+", default=["default", "speech"], choices=sorted(POOLS))
    parser.add_argument("--pretrain_max_steps", type=int, default=400, help="run_demo.py's default")
    parser.add_argument("--recipe", default=str(REPO / "run_scripts" / "recipes" / "pretrain_cpu_demo.yaml"))
    parser.add_argument("--pretrain_args", default="", help="more run_pretrain.py flags (smoke tests), e.g. "
                                                            "'--per_device_train_batch_size 8'")
    parser.add_argument("--poolings", nargs="+", default=list(POOLINGS), choices=POOLINGS)
    parser.add_argument("--windows", type=int, nargs="+", default=[DEMO_WINDOW, 64], help="embedding windows, frames")
    parser.add_argument("--decide_on", default="validation", choices=["validation", "test"])
    parser.add_argument("--no_progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    tasks = pool_tasks("speech") if "speech" in args.pools else pool_tasks("default")
    corpus = build_corpus(args.corpus_dir, size=args.corpus_size, clips_per_class=args.clips_per_class,
                          seed=args.corpus_seed, tasks=tasks, progress=args.progress)
    stats = json.loads((corpus / "corpus_stats.json").read_text())
    corpus_keys = json.loads((corpus / "build_config.json").read_text())["keys"]
    harness = ProbeHarness(corpus)
    recipe_sha = _sha(Path(args.recipe))
    results: dict[str, dict[int, dict]] = {pool: {} for pool in args.pools}
    baselines: dict[str, dict[int, dict]] = {"log-mel statistics": {}, "same architecture, random init": {}}
    todo = [(seed, pool) for seed in args.seeds for pool in args.pools]
    for index, (seed, pool) in enumerate(todo, 1):
        log(f"[{index}/{len(todo)}] pool {pool}, seed {seed} ({(time.time() - t0) / 60:.1f} min so far)")
        manifest = corpus / POOLS[pool] / "train.json"
        pkey = {"pool": pool, "seed": seed, "steps": args.pretrain_max_steps, "recipe": recipe_sha,
                "pretrain_args": args.pretrain_args, "manifest": _sha(manifest),
                "corpus": {t: corpus_keys.get(t) for t in pool_tasks(pool)}}
        key = {**pkey, "poolings": args.poolings, "windows": args.windows}
        cache = out / "runs" / f"{pool}-seed{seed}.json"
        record = _read_cache(cache, key)
        run_dir = out / "runs" / f"{pool}-seed{seed}"
        if record is None:
            info = pretrain(run_dir, manifest, seed, args, pkey)
            fe = AudioMosaicFeatureExtractor.from_pretrained(run_dir)
            model = AudioMosaicModel.from_pretrained(run_dir)
            log(f"  pre-trained ({info['steps']} steps, {info['wall_s']} s); probing {len(args.poolings)} poolings x "
                f"{len(args.windows)} windows ...")
            start = time.time()
            probe = probe_choices(model, fe, harness, seed, args.poolings, args.windows, args.progress)
            record = {"key": key, "pretrain": info, "probe": probe, "probe_wall_s": round(time.time() - start, 1)}
            _write_json(cache, record)
        else:
            log("  cached")
        results[pool][seed] = record
        demo = record["probe"][choice_name(DEMO_POOLING, DEMO_WINDOW)] if DEMO_WINDOW in args.windows else {}
        log("  " + ", ".join(f"{t} {record['probe'][CHOSEN][t]['test_accuracy']:.3f}" for t in TASKS)
            + " (test; per-task choice on validation)" + (
                "; demo probe: " + ", ".join(f"{t} {demo[t]['test_accuracy']:.3f}" for t in TASKS) if demo else ""))

        # baselines: random init per seed (config of the pre-trained encoder), log-mel once
        base_key = {"seed": seed, "recipe": recipe_sha, "pretrain_args": args.pretrain_args,
                    "corpus": {t: corpus_keys.get(t) for t in TASKS}}
        for name, path, key_b in (("same architecture, random init", out / "baselines" / f"random_init-seed{seed}.json",
                                   base_key),
                                  ("log-mel statistics", out / "baselines" / "logmel.json",
                                   {**base_key, "seed": None})):
            cached = _read_cache(path, key_b)
            if cached is None:
                fe = AudioMosaicFeatureExtractor.from_pretrained(run_dir)
                if name == "log-mel statistics":
                    probe = harness.probe_logmel(fe, seed)
                else:
                    torch.manual_seed(seed)  # as run_demo.py
                    config = AudioMosaicModel.config_class.from_pretrained(run_dir)
                    probe = harness.probe_model(AudioMosaicModel(config).eval(), fe, seed)
                cached = {"key": key_b, "probe": probe}
                _write_json(path, cached)
            baselines[name][seed] = cached

    rows, decision, table = summarise_study(results, baselines, args.decide_on)
    shares = {pool: {k: stats["tasks"].get(POOLS[pool], {}).get(k) for k in
                     ("clips", "seconds", "speech_clips", "speech_seconds", "speech_share_clips",
                      "speech_share_seconds")} for pool in args.pools}
    w, d = decision["winner"], decision["demo_default"]
    verdict = (f"Default that wins on the mean of the three tasks ({args.decide_on} accuracy, mean over seeds): "
               f"`--pool {w['pool']}`, {w['pooling']} pooling, {w['window_frames']}-frame window (test mean "
               f"{cell(w['test_mean'])}" + (f"; demo default {cell(d['test_mean'])}" if d else "") + ").")
    if decision["test_winner"]["row"] != w["row"]:
        verdict += f" On test the best fixed setting would be `{decision['test_winner']['row']}`."
    text = (
        f"Command: `python run_scripts/run_speech_study.py --corpus_size {args.corpus_size} --seeds "
        f"{' '.join(map(str, args.seeds))} --pools {' '.join(args.pools)} --pretrain_max_steps "
        f"{args.pretrain_max_steps}"
        + (f" --pretrain_args {shlex.quote(args.pretrain_args)}" if args.pretrain_args else "")
        + "`\n\nPools: " + "; ".join(f"`{p}`: {s['clips']} clips, {s['seconds']} s, speech {s['speech_clips']} "
                                      f"clips ({s['speech_share_clips']}) / {s['speech_seconds']} s "
                                      f"({s['speech_share_seconds']})" for p, s in shares.items())
        + ".\n\nTest accuracy of linear probes (mean ± std over seeds "
        f"{', '.join(map(str, args.seeds))}); block and C chosen on validation; the mean over tasks is also given for "
        "validation (the decision's score).\n\n" + table + "\n\n" + verdict + "\n"
    )
    (out / "speech_study.md").write_text(text)
    _write_json(out / "speech_study.json", {"rows": rows, "decision": decision, "pools": shares,
                                            "results": results, "baselines": baselines, "args": vars(args)})
    log(text)
    log(f"done in {(time.time() - t0) / 60:.1f} min: {out / 'speech_study.md'}")
    return {"rows": rows, "decision": decision}


if __name__ == "__main__":
    main()
