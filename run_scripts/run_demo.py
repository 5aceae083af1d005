#!/usr/bin/env python
"""The README's main job: offline corpus -> AudioMosaic pre-training on CPU -> linear probes vs baselines -> report.

1. Build the offline benchmark corpus (`build_offline_corpus.py`: keywords, ESC-like sounds, instrument families and
   an unlabelled pre-training pool; ~2 min, cached in `.cache/`).
2. Pre-train a small AudioMosaic (masked-view NT-Xent, `run_pretrain.py` with `recipes/pretrain_cpu_demo.yaml`) on
   the pool for a fixed number of optimizer steps (400): the schedule never depends on the machine's speed or load.
   `--pretrain_minutes` only warns when pre-training takes longer than expected; `--pretrain_max_minutes` is an
   optional hard cap, and a report of a run it cut says so.
3. Linear-probe it on the three tasks beside two baselines in the same harness: the same architecture randomly
   initialised, and log-mel statistics. Clip embeddings come from `AudioMosaicEmbedder` (model-sized windows with
   50% overlap, averaged; every block's pooled output), the probe is a multinomial logistic regression whose block
   and regularisation are chosen on the validation split (AudioMosaic's layer-probe sweep); the test split is used
   once per block. The last block's numbers are reported too.
4. Save the pre-trained encoder (`AutoModel`) and a keyword classifier (`pipeline("audio-classification")`), each
   with its feature extractor and a model card.
5. Write `outputs/report.md` with the results table and PNG plots (training loss, probe accuracy per task, one clip's
   two masked views, a 2-D map of test embeddings), and `outputs/results.json`. Both depend only on the seed and
   the corpus, not on the machine's load; wall-clock timings go to `outputs/timings.json` and the console.

Usage: python run_scripts/run_demo.py [--output_dir outputs] [--pretrain_max_steps 400] [--corpus_size default]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

import modeling_audiomosaic  # registers the Auto classes
from modeling_audiomosaic import AudioMosaicForAudioClassification, AudioMosaicModel
from modeling_audiomosaic.demo_tasks import SPLITS, TASKS, load_split, log, logmel_features, pretrain_arguments
from modeling_audiomosaic.embeddings import AudioMosaicEmbedder
from modeling_audiomosaic.feature_extraction import AudioMosaicFeatureExtractor
from modeling_audiomosaic.feature_extraction.augmentation import ContrastiveViewGenerator
from modeling_audiomosaic.feature_extraction.loading import load_audio_dataset
from modeling_audiomosaic.plots import plot_embedding_map, plot_masked_views, plot_probe_bars, plot_training_loss
from modeling_audiomosaic.probing import layer_sweep_probe, logistic_regression_probe

REPO = Path(__file__).resolve().parents[1]
MODEL_NAMES = ("AudioMosaic (pre-trained)", "same architecture, random init", "log-mel statistics")


def write_model_card(folder: Path, title: str, body: str, tags: list[str], pipeline_tag: str | None) -> None:
    meta = ["---", "license: apache-2.0", "library_name: transformers", "tags:"] + [f"- {t}" for t in tags]
    if pipeline_tag:
        meta.append(f"pipeline_tag: {pipeline_tag}")
    meta.append("---")
    (folder / "README.md").write_text("\n".join(meta) + f"\n\n# {title}\n\n{body}\n")


def classifier_from_probe(encoder_dir: Path, probe: dict, classes: list[str]) -> AudioMosaicForAudioClassification:
    """Fold the standardisation + logistic regression of a probe into the classifier head: on `pooler_output` for the
    last block, else a `"layer"` head on block `probe["layer"]` (same pooling and `fc_norm` as the embedder)."""
    id2label = dict(enumerate(classes))
    num_layers = AudioMosaicModel.config_class.from_pretrained(encoder_dir).num_hidden_layers
    layer = probe.get("layer", num_layers)
    head = {} if layer == num_layers else {"classifier_head": "layer", "probe_layer": layer - 1}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the head is reported "newly initialized"; it is filled from the probe below
    try:
        model = AudioMosaicForAudioClassification.from_pretrained(
            encoder_dir, num_labels=len(classes), id2label=id2label, label2id={v: k for k, v in id2label.items()},
            **head,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    scaler, clf = probe["scaler"], probe["classifier"]
    weight = clf.coef_ / scaler.scale_[None, :]
    bias = clf.intercept_ - (clf.coef_ * (scaler.mean_ / scaler.scale_)[None, :]).sum(1)
    order = [list(clf.classes_).index(c) for c in classes]
    with torch.no_grad():
        model.classifier.dense.weight.copy_(torch.from_numpy(weight[order]).float())
        model.classifier.dense.bias.copy_(torch.from_numpy(bias[order]).float())
    return model.eval()


def _stable_log_entry(entry: dict) -> dict:
    """A training-log row without its wall-clock fields (runtime, samples per second), which depend on the machine."""
    return {k: v for k, v in entry.items() if not any(w in k for w in ("runtime", "per_second", "time"))}


def schedule_status(steps_done: int, steps_scheduled: int, cap_minutes: float | None) -> dict:
    """Whether pre-training ran its whole schedule; a run cut by the optional wall-clock cap depends on the machine."""
    complete = steps_done >= steps_scheduled
    if complete:
        text = f"{steps_done} of {steps_scheduled} scheduled steps (complete)"
    elif cap_minutes:
        text = (f"**cut by the {cap_minutes:g}-minute wall-clock cap at {steps_done} of {steps_scheduled} scheduled "
                "steps**: these results depend on the machine's speed and load; rerun without "
                "`--pretrain_max_minutes` for the reproducible result")
    else:
        text = f"**stopped early at {steps_done} of {steps_scheduled} scheduled steps**"
    return {"steps": steps_done, "scheduled_steps": steps_scheduled, "complete": complete, "text": text}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=str(REPO / "outputs"))
    parser.add_argument("--corpus_size", default="default", choices=["tiny", "small", "default"])
    parser.add_argument("--corpus_dir", default=None, help="default: .cache/offline_corpus/<size>-seed<seed>")
    parser.add_argument("--pretrain_max_steps", type=int, default=400,
                        help="the schedule (warmup + cosine): pre-training always runs exactly these steps")
    parser.add_argument("--pretrain_minutes", type=float, default=12.0,
                        help="expected pre-training time: a warning (never a stop) when it takes longer")
    parser.add_argument("--pretrain_max_minutes", type=float, default=None,
                        help="optional hard wall-clock cap; a run it cuts is marked as such in the report")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", default="default", choices=["default", "speech"],
                        help="pre-training pool: the default pool, or `speech` (plus sentences and words from "
                             "train/validation voices, half of the clips speech; built on first use)")
    parser.add_argument("--recipe", default=str(REPO / "run_scripts" / "recipes" / "pretrain_cpu_demo.yaml"))
    parser.add_argument("--skip_pretrain", action="store_true", help="reuse <output_dir>/pretrain from a previous run")
    parser.add_argument("--no_progress", dest="progress", action="store_false", help="no progress bars for the probes")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    t0 = time.time()

    # 1. corpus --------------------------------------------------------------------------------------------------
    log("[1/5] building the offline corpus (cached after the first run) ...")
    from modeling_audiomosaic.feature_extraction.offline_corpus import POOLS, build_corpus, pool_tasks

    corpus = build_corpus(args.corpus_dir, size=args.corpus_size, seed=args.seed, tasks=pool_tasks(args.pool))
    stats = json.loads((corpus / "corpus_stats.json").read_text())
    timings["corpus_s"] = round(time.time() - t0, 1)

    # 2. pre-training --------------------------------------------------------------------------------------------
    pretrain_dir = out / "pretrain"
    t1 = time.time()
    if not args.skip_pretrain:
        log(f"[2/5] pre-training AudioMosaic on the pool for {args.pretrain_max_steps} steps "
            f"(about {args.pretrain_minutes:g} min on 2 CPU cores) ...")
        from modeling_audiomosaic.pretraining_run import run_pretraining

        cap = ["--max_train_minutes", str(args.pretrain_max_minutes)] if args.pretrain_max_minutes else []
        run_pretraining(pretrain_arguments(args.recipe, corpus / POOLS[args.pool] / "train.json", pretrain_dir,
                                           args.pretrain_max_steps, args.seed, extra=cap))
    summary = json.loads((pretrain_dir / "pretrain_summary.json").read_text())
    timings["pretrain_s"] = round(time.time() - t1, 1)
    schedule = schedule_status(summary["global_step"], args.pretrain_max_steps, args.pretrain_max_minutes)
    if not args.skip_pretrain and timings["pretrain_s"] > 60 * args.pretrain_minutes:
        log(f"warning: pre-training took {timings['pretrain_s'] / 60:.1f} min, more than the expected "
            f"{args.pretrain_minutes:g} min (a slow or busy machine); the schedule was not shortened, so the results "
            "are the same as on a fast machine.")

    # 3. probes --------------------------------------------------------------------------------------------------
    log("[3/5] linear probes: pre-trained vs random init vs log-mel statistics ...")
    t2 = time.time()
    fe = AudioMosaicFeatureExtractor.from_pretrained(pretrain_dir)
    pretrained = AudioMosaicModel.from_pretrained(pretrain_dir).eval()
    torch.manual_seed(args.seed)
    random_init = AudioMosaicModel(pretrained.config).eval()
    embedders = {
        MODEL_NAMES[0]: AudioMosaicEmbedder(pretrained, fe, batch_size=64, layer="all", progress=False),
        MODEL_NAMES[1]: AudioMosaicEmbedder(random_init, fe, batch_size=64, layer="all", progress=False),
    }
    results, probes, test_embeddings, last_block, per_layer = {}, {}, {}, {}, {}
    num_blocks = pretrained.config.num_hidden_layers
    for task in TASKS:
        data = {split: load_split(corpus, task, split) for split in SPLITS}
        # one bar per task: embedding passes (2 encoders x 3 splits), log-mel features, then the per-block probes
        steps = len(embedders) * len(SPLITS) + 1 + len(embedders) * num_blocks + 1
        with hf_logging.tqdm(total=steps, desc=f"probes: {task}", unit="step", file=sys.stdout,
                             disable=not args.progress) as bar:
            feats = {}
            for name, emb in embedders.items():
                feats[name] = {}
                for split in SPLITS:
                    bar.set_postfix_str(f"embedding {split} ({len(data[split][0])} clips), {name}")
                    feats[name][split] = emb.embed(data[split][0]).numpy()
                    bar.update()
            bar.set_postfix_str("log-mel statistics")
            feats[MODEL_NAMES[2]] = {s: logmel_features(data[s][0], fe) for s in SPLITS}
            bar.update()
            results[task], last_block[task], per_layer[task] = {}, {}, {}
            labels = {s: data[s][1] for s in SPLITS}
            for name in MODEL_NAMES:
                f = feats[name]
                bar.set_postfix_str(f"logistic-regression probes, {name}")
                if name == MODEL_NAMES[2]:
                    probe = logistic_regression_probe(f["train"], labels["train"], f["validation"],
                                                      labels["validation"], f["test"], labels["test"], seed=args.seed)
                    bar.update()
                else:
                    sweep = layer_sweep_probe(f, labels, seed=args.seed, on_layer=bar.update)
                    probe = sweep["best"]
                    last_block[task][name] = sweep["last"]["test_accuracy"]
                    per_layer[task][name] = sweep["per_layer"]
                results[task][name] = probe
                probes[(task, name)] = probe
        best_layer = results[task][MODEL_NAMES[0]]["layer"]
        test_embeddings[task] = (feats[MODEL_NAMES[0]]["test"][:, best_layer], data["test"][1])
        log("      " + task + ": " + ", ".join(f"{n}: {results[task][n]['test_accuracy']:.3f}" for n in MODEL_NAMES)
            + f" (pre-trained: block {best_layer} chosen on validation)")
    timings["probes_s"] = round(time.time() - t2, 1)

    # 4. saved models --------------------------------------------------------------------------------------------
    log("[4/5] saving the encoder and a keyword classifier ...")
    encoder_dir, clf_dir = out / "audiomosaic-demo-encoder", out / "audiomosaic-demo-keywords"
    pretrained.save_pretrained(encoder_dir)
    fe.save_pretrained(encoder_dir)
    keyword_classes = sorted(set(load_split(corpus, "keywords", "train")[1]))
    classifier = classifier_from_probe(pretrain_dir, probes[("keywords", MODEL_NAMES[0])], keyword_classes)
    classifier.save_pretrained(clf_dir)
    fe.save_pretrained(clf_dir)
    def cell(task: str, name: str) -> str:
        result = results[task][name]
        return f"{result['test_accuracy']:.3f}" + (f" (block {result['layer']})" if "layer" in result else "")

    accuracy_table = "\n".join(f"| {task} | " + " | ".join(cell(task, n) for n in MODEL_NAMES) + " |" for task in TASKS)
    last_block_table = "\n".join(
        f"| {task} | " + " | ".join(f"{last_block[task][n]:.3f}" for n in MODEL_NAMES[:2]) + " |" for task in TASKS
    )
    card_common = (
        f"A small AudioMosaic encoder ({sum(p.numel() for p in pretrained.parameters()) / 1e6:.1f}M parameters, "
        f"{pretrained.config.num_hidden_layers} blocks, width {pretrained.config.hidden_size}, 128x128 inputs = "
        "1.28 s) pre-trained on CPU for "
        f"{summary['global_step']} steps on the project's offline corpus (synthetic speech from 7 TTS engines, real "
        "game/sample recordings, FluidSynth instruments). A demonstration model, not the released ViT-B/16.\n\n"
        "| task (test split) | pre-trained | random init | log-mel stats |\n|---|---|---|---|\n" + accuracy_table
        + "\n\nLimitations: tiny model, minutes of CPU pre-training, synthetic/game audio only; the weights inherit "
        "the licences of the corpus sources (see docs/offline_corpus.md)."
    )
    write_model_card(
        encoder_dir, "AudioMosaic demo encoder",
        card_common + "\n\n```python\nimport modeling_audiomosaic\nfrom transformers import AutoModel\n"
        "model = AutoModel.from_pretrained('audiomosaic-demo-encoder')  # or trust_remote_code=True\n```",
        ["audio", "audiomosaic", "feature-extraction"], "feature-extraction",
    )
    write_model_card(
        clf_dir, "AudioMosaic demo keyword classifier",
        card_common + f"\n\nLabels: {', '.join(keyword_classes)}. Head: the keyword linear probe folded into "
        "`classifier.dense`.\n\n```python\nfrom transformers import pipeline\n"
        "clf = pipeline('audio-classification', model='audiomosaic-demo-keywords')\nclf('clip.wav')\n```",
        ["audio", "audiomosaic", "audio-classification"], "audio-classification",
    )
    from transformers import AutoModel, pipeline

    reloaded = AutoModel.from_pretrained(encoder_dir)
    pipe = pipeline("audio-classification", model=str(clf_dir))
    kw_test = load_split(corpus, "keywords", "test")
    pipe_correct = sum(pipe(w, top_k=1)[0]["label"] == y for w, y in zip(kw_test[0][:100], kw_test[1][:100]))
    example_file = next((corpus / "keywords" / "audio" / "test").rglob("*.wav"))
    pipe_file = pipe(str(example_file), top_k=3)

    # 5. report --------------------------------------------------------------------------------------------------
    log("[5/5] writing the report and plots ...")
    plot_training_loss(summary["log_history"], out / "pretrain_loss.png")
    plot_probe_bars({t: {n: results[t][n]["test_accuracy"] for n in MODEL_NAMES} for t in TASKS},
                    out / "probe_accuracy.png")
    pool_clip = load_audio_dataset(corpus / "esc" / "train.json")[0]["audio"]
    views = ContrastiveViewGenerator(fe, augmentation="light")([pool_clip], generator=torch.Generator().manual_seed(1))
    pt_model = modeling_audiomosaic.AudioMosaicForPreTraining.from_pretrained(pretrain_dir)
    ids = [pt_model.mask_view(views[:, v], v, torch.Generator().manual_seed(2 + v)).ids_keep[0] for v in range(2)]
    plot_masked_views(views[0], ids, pt_model.config.patch_size, out / "masked_views.png")
    for task in ("keywords", "esc"):
        emb, labels = test_embeddings[task]
        plot_embedding_map(emb, labels, out / f"embedding_map_{task}.png",
                           f"t-SNE of pre-trained test embeddings: {task}")

    wins = sum(
        results[t][MODEL_NAMES[0]]["test_accuracy"] > max(results[t][MODEL_NAMES[1]]["test_accuracy"],
                                                          results[t][MODEL_NAMES[2]]["test_accuracy"])
        for t in TASKS
    )
    timings["total_s"] = round(time.time() - t0, 1)
    last = [h for h in summary["log_history"] if "loss" in h]
    report = {
        "command": "bash run_scripts/main_job.sh  (python run_scripts/run_demo.py "
                   f"--corpus_size {args.corpus_size} --pretrain_max_steps {args.pretrain_max_steps} --seed {args.seed}"
                   + (f" --pretrain_max_minutes {args.pretrain_max_minutes:g}" if args.pretrain_max_minutes else "")
                   + (f" --pool {args.pool}" if args.pool != "default" else "")
                   + (" --skip_pretrain: probes of an earlier run's model" if args.skip_pretrain else "") + ")",
        "corpus": {t: stats.get(t, {}).get("splits", stats.get(t)) for t in TASKS},
        "pretrain": {"steps": summary["global_step"], "scheduled_steps": args.pretrain_max_steps,
                     "schedule_complete": schedule["complete"],
                     "final_logged": _stable_log_entry(last[-1]) if last else None,
                     "data_items_skipped": summary["data_items_skipped"]},
        "probe": {t: {n: {k: v for k, v in results[t][n].items() if k in ("validation_accuracy", "test_accuracy",
                                                                           "C", "layer")} for n in MODEL_NAMES}
                  for t in TASKS},
        "probe_last_block": last_block,
        "probe_per_layer": per_layer,
        "pretrained_beats_both_baselines_on": wins,
        "pipeline_keyword_accuracy_first_100_test": pipe_correct / max(1, min(100, len(kw_test[1]))),
        "pipeline_on_file": {"file": str(example_file.relative_to(corpus)), "result": pipe_file},
        "encoder_reload": type(reloaded).__name__,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2, default=str))
    # wall-clock numbers depend on the machine and its load: kept out of report.md / results.json
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    table = ("| task (test split) | " + " | ".join(MODEL_NAMES) + " |\n|---|---|---|---|\n" + accuracy_table)
    lines = [
        "# AudioMosaic demo report",
        "",
        f"Command: `{report['command']}` (wall-clock timings of this run: `timings.json`).",
        "",
        f"Pre-training: {schedule['text']}, batch 128 (1.28 s crops of the unlabelled pool, two "
        "augmented views, view 0 time-masked 0.6, view 1 frequency-masked 0.4), "
        f"{sum(p.numel() for p in pretrained.parameters()) / 1e6:.1f}M-parameter encoder.",
        "",
        "## Linear probes (accuracy on the test split; block and regularisation chosen on validation)",
        "",
        table,
        "",
        "The same probes on the last block only:",
        "",
        "| task (test split) | " + " | ".join(MODEL_NAMES[:2]) + " |\n|---|---|---|\n" + last_block_table,
        "",
        f"The pre-trained model beats both baselines on **{wins} of 3** tasks.",
        "",
        "![probe accuracy](probe_accuracy.png)",
        "",
        "## Pre-training",
        "",
        "![pre-training loss](pretrain_loss.png)",
        "",
        "One clip's two augmented views with the masks of the method (grey: patches dropped before the encoder):",
        "",
        "![masked views](masked_views.png)",
        "",
        "## Embeddings",
        "",
        "![keywords](embedding_map_keywords.png) ![esc](embedding_map_esc.png)",
        "",
        "## Saved models",
        "",
        f"* `{encoder_dir.name}`: loads with `AutoModel` ({report['encoder_reload']}), model card in README.md.",
        f"* `{clf_dir.name}`: `pipeline('audio-classification')`; accuracy on the first 100 keyword test clips "
        f"{report['pipeline_keyword_accuracy_first_100_test']:.2f}; on `{report['pipeline_on_file']['file']}`: "
        f"`{pipe_file}`.",
        "",
        "Corpus: see the dataset card `docs/offline_corpus.md` (counts in `results.json`).",
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    log(f"done in {timings['total_s']} s (corpus {timings['corpus_s']} s, pre-training {timings['pretrain_s']} s, "
        f"probes {timings['probes_s']} s): {out / 'report.md'}")
    return report


if __name__ == "__main__":
    main()
