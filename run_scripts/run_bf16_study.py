#!/usr/bin/env python
"""bf16 vs fp32 demo pre-training: are bf16's loss curves within seed noise of fp32's? (docs/RESULTS.md, "bf16
pre-training on CPU")

    python run_scripts/run_bf16_study.py --corpus_dir .cache/offline_corpus/default-seed0 --steps 200
    # runs fp32-seed0, fp32-seed1, bf16-seed0 (add bf16:1 to --runs for a second bf16 seed), then compares and plots

Every run is `run_pretrain.py --config recipes/pretrain_cpu_demo.yaml` on the corpus's pre-training pool for
`--steps` optimizer steps (its warmup + cosine schedule spans them), logging the loss every step, with ``--bf16 true``
or ``false``; nothing else differs. Finished runs are reused (`<output_dir>/<run>/pretrain_summary.json` with the
same steps), so an interrupted study continues where it stopped. The comparison (`precision_study.compare_precisions`):
bf16 is within seed noise when the mean |difference| between its smoothed curve and the same seed's fp32 curve is
no larger than that between the two fp32 seeds. Writes `<output_dir>/bf16_study.json` and the plot (`--plot`).
The corpus is only read (build it with run_scripts/build_offline_corpus.py or the main job).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from modeling_audiomosaic.demo_tasks import pretrain_arguments
from modeling_audiomosaic.feature_extraction.offline_corpus.catalogue import DEFAULT_CACHE, POOLS
from modeling_audiomosaic.plots import plot_loss_curves
from modeling_audiomosaic.precision_study import compare_precisions, loss_curve, run_name

REPO = Path(__file__).resolve().parents[1]


def parse_runs(specs: list[str]) -> list[tuple[str, int]]:
    """``["fp32:0", "bf16:1"]`` → ``[("fp32", 0), ("bf16", 1)]``."""
    runs = []
    for spec in specs:
        precision, _, seed = spec.partition(":")
        if precision not in ("fp32", "bf16") or not seed.isdigit():
            raise ValueError(f"--runs entries look like fp32:0 or bf16:1, got {spec!r}")
        runs.append((precision, int(seed)))
    return runs


def run_one(precision: str, seed: int, args, manifest: Path) -> dict:
    """Pre-train one run (or reuse a finished one); returns its summary plus the wall-clock seconds it took."""
    out = Path(args.output_dir) / run_name(precision, seed)
    summary_path = out / "pretrain_summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if summary.get("scheduled_steps") == args.steps and summary.get("global_step") == args.steps:
            print(f"{out.name}: reusing the finished run", flush=True)
            return summary
    from modeling_audiomosaic.pretraining_run import run_pretraining

    extra = ["--bf16", "true" if precision == "bf16" else "false", "--logging_steps", "1", "--report_to", "none",
             *args.extra]
    start = time.time()
    run_pretraining(pretrain_arguments(args.recipe, manifest, out, args.steps, seed, progress=False, extra=extra))
    summary = json.loads(summary_path.read_text())
    summary["wall_seconds"] = round(time.time() - start, 1)
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    print(f"{out.name}: {args.steps} steps in {summary['wall_seconds']} s", flush=True)
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus_dir", default=str(DEFAULT_CACHE / "default-seed0"),
                        help="an offline corpus (read only); its pre-training pool's train.json is the data")
    parser.add_argument("--train_path", default=None, help="any run_pretrain.py --train_path instead of the corpus")
    parser.add_argument("--recipe", default=str(REPO / "run_scripts" / "recipes" / "pretrain_cpu_demo.yaml"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--runs", nargs="+", default=["fp32:0", "fp32:1", "bf16:0"],
                        help="precision:seed of every run; needs two fp32 seeds and a bf16 run of one of them")
    parser.add_argument("--smooth", type=int, default=20, help="moving-average window (steps) of the comparison")
    parser.add_argument("--output_dir", default=str(REPO / ".cache" / "bf16_study"))
    parser.add_argument("--plot", default=None, help="PNG path (default: <output_dir>/bf16_vs_fp32_loss.png)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="further run_pretrain.py flags for every run (last on the command line)")
    args = parser.parse_args(argv)
    manifest = Path(args.train_path) if args.train_path else Path(args.corpus_dir) / POOLS["default"] / "train.json"
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest} does not exist: build the corpus first (python "
                                "run_scripts/build_offline_corpus.py) or pass --corpus_dir / --train_path")
    runs = parse_runs(args.runs)
    summaries = {run_name(p, s): run_one(p, s, args, manifest) for p, s in runs}
    histories = {name: summary["log_history"] for name, summary in summaries.items()}
    result = compare_precisions(histories, window=args.smooth)
    result.update(steps=args.steps, data=str(manifest), recipe=str(args.recipe),
                  wall_seconds={name: summary.get("wall_seconds") for name, summary in summaries.items()})
    plot = Path(args.plot) if args.plot else Path(args.output_dir) / "bf16_vs_fp32_loss.png"
    plot.parent.mkdir(parents=True, exist_ok=True)
    reference = run_name("fp32", min(s for p, s in runs if p == "fp32"))
    plot_loss_curves({name: loss_curve(h) for name, h in sorted(histories.items())}, plot, args.smooth, reference,
                     title=f"demo pre-training, bf16 vs fp32 ({args.steps} steps)")
    result["plot"] = str(plot)
    Path(args.output_dir, "bf16_study.json").write_text(json.dumps(result, indent=2))
    noise = result["seed_noise"]["mean_abs"]
    for seed, gap in result["precision_gaps"].items():
        print(f"bf16 vs fp32, seed {seed}: mean |Δ smoothed loss| {gap['mean_abs']:.4f} (max {gap['max_abs']:.4f})")
    print(f"fp32 seed noise: {noise:.4f}; within seed noise: {result['within_seed_noise']} "
          f"(ratio {result['ratio']:.2f}); plot: {plot}")
    return result


if __name__ == "__main__":
    main()
