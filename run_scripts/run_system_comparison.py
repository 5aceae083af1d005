#!/usr/bin/env python
"""Equal-compute comparison of AudioMosaic and the systems it is compared with, on the offline corpus.

Every system is the same small encoder pre-trained by `run_pretrain.py` on the unlabelled pool for the SAME compute
budget in multiply-accumulates (MACs), then linear-probed on the three offline tasks (frozen encoder, clip embeddings
from `AudioMosaicEmbedder`, logistic regression with C chosen on validation, test used once), exactly as the demo.

Compute budget: `--budget_steps N` steps of AudioMosaic (`audiomosaic_tf`) at the recipe's batch; every other system
gets `N x MACs(audiomosaic step) / MACs(its step)` steps (its whole lr schedule), where a step's MACs are counted
analytically from the config: per view, the encoder on its kept tokens (patch embedding, qkv/proj/MLP matmuls and the
two attention matmuls), the decoder on all patches, x 3 for forward + backward, plus 1 x the frozen teacher's forward
(MAM-CLAP). FLOPs = 2 x MACs. Counting, not timing, keeps the comparison fair on a noisy shared machine; measured
wall-clock is reported next to it.

Systems (all `--config recipes/pretrain_cpu_compare.yaml`, 2.56 s crops = a 16 x 8 patch grid, so the released code's
swapped-grid masks differ from the true-grid ones; on a square 8 x 8 grid they would coincide):

* `audiomosaic_tf`        contrastive, view 0 time 0.6 / view 1 frequency 0.4 (the method)
* `contrastive_random`    contrastive, unstructured masks at 0.5 on both views
* `contrastive_original`  contrastive, the released code's swapped-grid `original_time` / `original_freq` masks
* `msm_mae_random`        MAE pixel reconstruction, random 0.75 (MSM-MAE)
* `msm_mae_dwm`           MAE, dispersion-weighted masking 0.75 with the hint curriculum (start epoch 1, k 2)
* `msm_mae_inverse_block` MAE, EAT inverse-block masking 0.8 (5 x 5 blocks)
* `mam_clap`              distillation from a frozen teacher, random 0.8; no CLAP weights install offline, so the
                          teacher is this comparison's `audiomosaic_tf` encoder of the same seed (its cost not counted)
* `supmam+<best two>`     the two best of the above with the supervised branch (λ_cls 1, BCE) on the labelled train
                          clips of the pool (labels of the three tasks' train splits, prefixed by task)

Plus the two baselines of the demo (same architecture randomly initialised; log-mel statistics).

Results are cached per (system, seed) under `--output_dir`, so adding seeds later reuses finished runs:

    python run_scripts/run_system_comparison.py --seeds 0 1 2 --budget_steps 200
    python run_scripts/run_system_comparison.py --seeds 0 --budget_steps 2 --corpus_size tiny   # smoke test

Writes `<output_dir>/comparison.json`, `comparison.md` (mean ± std over seeds) and `comparison.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import modeling_audiomosaic  # noqa: F401  (registers the Auto classes)
from modeling_audiomosaic.demo_tasks import TASKS, ProbeHarness, log, summarise_over_seeds
from modeling_audiomosaic.plots import grouped_bars
from modeling_audiomosaic.pretraining_run import build_config, parse_args

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "run_scripts" / "recipes" / "pretrain_cpu_compare.yaml"

BASE_SYSTEMS: dict[str, list[str]] = {
    "audiomosaic_tf": ["--objective", "contrastive", "--masking_mode", "tf"],
    "contrastive_random": ["--objective", "contrastive", "--masking_mode", "random", "--mask_ratio", "0.5"],
    "contrastive_original": ["--objective", "contrastive", "--masking_mode", "tf", "--mask_grid", "original"],
    "msm_mae_random": ["--objective", "mae", "--masking_mode", "random", "--mask_ratio", "0.75"],
    "msm_mae_dwm": ["--objective", "mae", "--masking_mode", "dwm", "--mask_ratio", "0.75"],
    "msm_mae_inverse_block": ["--objective", "mae", "--masking_mode", "inverse_block", "--mask_ratio", "0.8"],
    "mam_clap": ["--objective", "distill", "--masking_mode", "random", "--mask_ratio", "0.8",
                 "--teacher_name_or_path", "{teacher}"],
}
PREDICTED = (
    "What the papers predict: AudioMosaic reports its time/frequency masked views beating unstructured masks and "
    "MAE-style pixel reconstruction on linear/fine-tuned evaluation; MSM-MAE (pixel MSE) is known to be weaker than "
    "feature-target methods under a linear probe; DWM reports consistent gains over random and inverse-block masking "
    "inside MAE/M2D training; MAM-CLAP and SupMAM report gains from a strong CLAP teacher and from labels."
)


def labelled_pool_manifest(corpus: Path, out: Path) -> Path:
    """The pool with the labels of clips that belong to a task's train split (task-prefixed); the rest unlabelled."""
    pool = json.loads((corpus / "pretrain_pool" / "train.json").read_text())["data"]
    labels = {}
    for task in TASKS:
        for rec in json.loads((corpus / task / "train.json").read_text())["data"]:
            labels[(task, os.path.normpath(rec["wav"]))] = rec["labels"]
    records, labelled = [], 0
    for rec in pool:
        rec = dict(rec)
        task = rec.get("task")
        key = (task, os.path.normpath(rec["wav"]).split(f"{task}/", 1)[-1]) if task else None
        label = labels.get(key, "") if key else ""
        rec["labels"] = f"{task}/{label}" if label else ""
        labelled += bool(label)
        rec["wav"] = str((corpus / "pretrain_pool" / rec["wav"]).resolve())
        records.append(rec)
    path = out / "pool_labelled.json"
    path.write_text(json.dumps({"data": records}))
    log(f"labelled pool: {labelled} of {len(records)} clips carry a train-split label")
    return path


def encoder_macs(tokens: int, width: int, layers: int, mlp: int) -> int:
    """Forward MACs of `layers` pre-LN blocks on `tokens` tokens (qkv, proj, MLP and the two attention matmuls)."""
    return layers * (tokens * (4 * width * width + 2 * width * mlp) + 2 * tokens * tokens * width)


def step_macs_per_clip(config) -> dict:
    """Training MACs per clip of an `AudioMosaicConfig` (see the module docstring): forward+backward = 3 x forward.

    Counted as implemented: the patch convolution runs on every patch before the masked ones are dropped; the encoder
    blocks on the kept tokens + CLS; the decoder on all patches + CLS; the heads (projector, pixel / teacher-feature
    predictions) on what they see. Checked against torch's FLOP counter in tests/test_system_comparison.py.
    """
    from modeling_audiomosaic.masking import apply_masking, dispersion_weights

    grid = (config.num_time_patches, config.num_freq_patches)
    num = grid[0] * grid[1]
    d = config.hidden_size
    stem = num * config.patch_size**2 * d
    views, forward = [], 0
    for strategy, ratio in config.view_masking_specs():
        if strategy == "none":
            kept = num
        else:
            weights = dispersion_weights(torch.randn(1, config.max_length, config.num_mel_bins), config.patch_size) \
                if strategy == "dwm" else None
            kept = apply_masking(strategy, grid, 1, ratio, patch_weights=weights).num_kept
        views.append(kept + 1)
        forward += stem + encoder_macs(kept + 1, d, config.num_hidden_layers, config.intermediate_size)
        if "contrastive" in config.objectives:
            forward += d * config.projection_hidden_size + config.projection_hidden_size * config.projection_dim
        if "mae" in config.objectives or "distill" in config.objectives:
            width = config.decoder_hidden_size
            forward += d * width * (kept + 1)  # decoder embedding
            forward += encoder_macs(num + 1, width, config.decoder_num_hidden_layers, config.decoder_intermediate_size)
            if "mae" in config.objectives:
                forward += width * config.patch_size**2 * num
            if "distill" in config.objectives:
                forward += width * config.distill_teacher_hidden_size * num
        if config.supervised_weight > 0:
            forward += d * config.num_labels
    teacher = 0
    if "distill" in config.objectives:  # the frozen teacher (the same encoder size here) sees the whole clip
        teacher = stem + encoder_macs(num + 1, d, config.num_hidden_layers, config.intermediate_size)
    return {"tokens_per_view": views, "train_macs": 3 * forward + teacher, "teacher_forward_macs": teacher}


def system_config(flags: list[str]):
    """The AudioMosaicConfig a system's flags produce with the comparison recipe (teacher width = the encoder's)."""
    model_args, _, _ = parse_args(["--config", str(RECIPE), "--output_dir", "unused", *flags])

    class _Teacher:
        feature_dim = None

    teacher = None
    if "distill" in model_args.objective:
        teacher = _Teacher()
        teacher.feature_dim = json.loads(model_args.config_overrides)["hidden_size"]
    vocabulary = None
    if "--supervised_weight" in flags:
        from modeling_audiomosaic.feature_extraction.labels import LabelVocabulary

        vocabulary = LabelVocabulary(["a", "b"], multi_label=True)
    return build_config(model_args, teacher, vocabulary)


def pretrain(system: str, args_list: list[str], run_dir: Path, corpus: Path, seed: int, max_steps: int,
             extra: list[str]) -> dict:
    """Run run_pretrain.py in a subprocess (a clean process per system); returns its summary."""
    command = [
        sys.executable, str(REPO / "run_scripts" / "run_pretrain.py"), "--config", str(RECIPE),
        "--train_path", str(corpus), "--output_dir", str(run_dir), "--seed", str(seed),
        "--max_steps", str(max_steps), "--save_steps", "1000000",
        "--report_to", "none", *args_list, *extra,
    ]
    log(f"  pre-training {system} (seed {seed}, {max_steps} steps): {' '.join(command[2:])}")
    start = time.time()
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as handle:
        subprocess.run(command, check=True, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    summary = json.loads((run_dir / "pretrain_summary.json").read_text())
    losses = [h for h in summary["log_history"] if "loss" in h]
    return {"steps": summary["global_step"], "wall_s": round(time.time() - start, 1),
            "final_loss": losses[-1]["loss"] if losses else None, "data_items_skipped": summary["data_items_skipped"]}


def markdown_table(table: dict, results: dict, compute: dict) -> str:
    lines = ["| system | keywords | esc | instruments | mean | mean, last block | blocks chosen | steps | "
             "tokens per view | MMACs per clip-step | wall-clock s | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = sorted(table, key=lambda s: -table[s]["mean"][0])
    for system in order:
        cells = [f"{m:.3f} ± {s:.3f}" if n > 1 else f"{m:.3f}" for m, s, n in (table[system][t] for t in
                                                                            (*TASKS, "mean"))]
        runs = [r["pretrain"] for r in results[system].values() if "pretrain" in r]
        steps_text = "/".join(sorted({str(r["steps"]) for r in runs})) or "–"
        wall = f"{np.mean([r['wall_s'] for r in runs]):.0f}" if runs else "–"
        info = compute.get(system)
        tokens = "+".join(map(str, info["tokens_per_view"])) if info else "–"
        macs = f"{info['train_macs'] / 1e6:.0f}" if info else "–"
        last = [np.mean([r["probe"][t].get("last_block_test_accuracy", np.nan) for t in TASKS])
                for r in results[system].values()]
        last_text = "–" if np.isnan(last).all() else f"{np.nanmean(last):.3f}"
        blocks = ",".join(str(r["probe"][t]["layer"]) for r in results[system].values() for t in TASKS
                          if "layer" in r["probe"][t]) or "–"
        lines.append(f"| {system} | " + " | ".join(cells) + f" | {last_text} | {blocks}"
                     + f" | {steps_text} | {tokens} | {macs} | {wall} | {table[system]['mean'][2]} |")
    return "\n".join(lines)


def plot(table: dict, path: Path):
    """Mean ± std over seeds per system and task; one distinct colour per system, legend below the bars. Returns the
    (saved) figure."""
    systems = sorted(table, key=lambda s: -table[s]["mean"][0])
    groups = (*TASKS, "mean")
    fig = grouped_bars(
        list(groups), {s: [table[s][g][0] for g in groups] for s in systems},
        errors={s: [table[s][g][1] for g in groups] for s in systems}, values=False, figsize=(10, 4.6),
        ylabel="test accuracy (linear probe)",
        title="Equal-compute (MACs) pre-training on the offline pool, linear probes (mean ± std over seeds)",
    )
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=str(REPO / ".cache" / "system_comparison"))
    parser.add_argument("--corpus_size", default="default", choices=["tiny", "small", "default"])
    parser.add_argument("--corpus_dir", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget_steps", type=int, default=200,
                        help="the compute budget: this many AudioMosaic steps; other systems get equal MACs")
    parser.add_argument("--systems", nargs="*", default=None, help="subset of the base systems (default: all)")
    parser.add_argument("--no_supmam", action="store_true", help="skip the SupMAM variants")
    parser.add_argument("--extra_args", default="", help="more run_pretrain.py flags for every system (smoke tests)")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    from modeling_audiomosaic import AudioMosaicModel
    from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor
    from modeling_audiomosaic.feature_extraction.offline_corpus import build_corpus

    corpus = build_corpus(args.corpus_dir, size=args.corpus_size, seed=0)
    pool = corpus / "pretrain_pool" / "train.json"
    labelled_pool = labelled_pool_manifest(corpus, out)
    harness = ProbeHarness(corpus)
    extra = args.extra_args.split() if args.extra_args else []
    systems = {k: v for k, v in BASE_SYSTEMS.items() if not args.systems or k in args.systems}
    results: dict[str, dict[int, dict]] = {}
    recipe_args = parse_args(["--config", str(RECIPE), "--output_dir", "unused", *extra])
    batch = recipe_args[2].per_device_train_batch_size
    reference = step_macs_per_clip(system_config(BASE_SYSTEMS["audiomosaic_tf"] + extra))
    budget_macs = args.budget_steps * batch * reference["train_macs"]
    log(f"compute budget: {budget_macs / 1e12:.1f} TMACs ({2 * budget_macs / 1e12:.1f} TFLOPs) per system = "
        f"{args.budget_steps} AudioMosaic steps of batch {batch} ({reference['train_macs'] / 1e6:.0f} MMACs per clip)")
    compute = {}
    for name, flags in {**BASE_SYSTEMS, **{f"supmam+{k}": v + ["--supervised_weight", "1.0"]
                                          for k, v in BASE_SYSTEMS.items()}}.items():
        per_clip = step_macs_per_clip(system_config(flags + extra))
        compute[name] = {**per_clip, "steps": max(1, round(budget_macs / (per_clip["train_macs"] * batch)))}

    def run_system(name: str, flags: list[str], seed: int, train_path: Path) -> None:
        cache = out / name / f"seed{seed}.json"
        if cache.exists():
            results.setdefault(name, {})[seed] = json.loads(cache.read_text())
            log(f"  {name} seed {seed}: cached")
            return
        run_dir = out / name / f"seed{seed}"
        steps = compute[name]["steps"]
        flags = [f.format(teacher=out / "audiomosaic_tf" / f"seed{seed}") for f in flags]
        info = pretrain(name, flags, run_dir, train_path, seed, steps, extra)
        fe = AudioMosaicFeatureExtractor.from_pretrained(run_dir)
        probe = harness.probe_model(AudioMosaicModel.from_pretrained(run_dir), fe, seed)
        record = {"pretrain": info, "probe": probe, "flags": flags}
        cache.write_text(json.dumps(record, indent=2))
        results.setdefault(name, {})[seed] = record
        log(f"  {name} seed {seed}: " + ", ".join(f"{t} {probe[t]['test_accuracy']:.3f}" for t in TASKS)
            + f" ({info['steps']} steps)")

    for seed in args.seeds:
        log(f"seed {seed}")
        if "mam_clap" in systems and "audiomosaic_tf" not in systems:
            raise ValueError("mam_clap uses audiomosaic_tf of the same seed as its teacher: include it")
        for name, flags in systems.items():
            run_system(name, flags, seed, pool)
        # baselines (no pre-training)
        for name in ("baseline_random_init", "baseline_logmel"):
            cache = out / name / f"seed{seed}.json"
            if not cache.exists():
                cache.parent.mkdir(parents=True, exist_ok=True)
                ref = out / "audiomosaic_tf" / f"seed{seed}"
                fe = AudioMosaicFeatureExtractor.from_pretrained(ref)
                if name == "baseline_random_init":
                    torch.manual_seed(seed)
                    untrained = AudioMosaicModel(AudioMosaicModel.from_pretrained(ref).config)
                    probe = harness.probe_model(untrained, fe, seed)
                else:
                    probe = harness.probe_logmel(fe, seed)
                cache.write_text(json.dumps({"probe": probe}, indent=2))
            results.setdefault(name, {})[seed] = json.loads(cache.read_text())

    base_table = summarise_over_seeds({k: v for k, v in results.items() if k in systems})
    best_two = sorted(base_table, key=lambda s: -base_table[s]["mean"][0])[:2]
    if not args.no_supmam:
        for seed in args.seeds:
            for name in best_two:
                flags = BASE_SYSTEMS[name] + ["--supervised_weight", "1.0", "--supervised_loss", "bce",
                                              "--label_column", "labels"]
                run_system(f"supmam+{name}", flags, seed, labelled_pool)

    table = summarise_over_seeds(results)
    markdown = markdown_table(table, results, compute)
    plot(table, out / "comparison.png")
    text = (
        f"Command: `python run_scripts/run_system_comparison.py --seeds {' '.join(map(str, args.seeds))} "
        f"--budget_steps {args.budget_steps}`\n\n"
        f"Budget: {budget_macs / 1e12:.1f} TMACs ({2 * budget_macs / 1e12:.1f} TFLOPs) of training compute per system "
        f"(= {args.budget_steps} AudioMosaic steps of batch {batch}; counted analytically, forward + backward = 3 x "
        f"forward, frozen teacher 1 x), same encoder, data, augmentation, batch and optimiser, each system's lr "
        f"schedule spanning its steps; linear probe = logistic regression on frozen clip embeddings of every block, "
        f"block and C chosen on validation (blocks listed per task: keywords, esc, instruments), test accuracy. "
        f"SupMAM on top of: {', '.join(best_two)}. Baselines: no pre-training.\n\n"
        + markdown + "\n\n" + PREDICTED + "\n"
    )
    (out / "comparison.md").write_text(text)
    (out / "comparison.json").write_text(
        json.dumps({"table": table, "results": results, "compute": compute, "budget_macs": budget_macs}, indent=2,
                   default=str)
    )
    log(text)
    return {"table": table, "best_two": best_two}


if __name__ == "__main__":
    main()
