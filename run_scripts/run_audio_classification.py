#!/usr/bin/env python
"""Fine-tune or probe AudioMosaic (or any `AutoModelForAudioClassification` model) on labelled audio with 🤗 Trainer.

    python run_scripts/run_audio_classification.py --config run_scripts/recipes/finetune_esc50.yaml \
        --model_name_or_path <pretrained folder> --train_file data/esc50/train.json \
        --validation_file data/esc50/validation.json --test_file data/esc50/test.json --label_file data/esc50/labels.csv
    accelerate launch --multi_gpu --num_processes 2 run_scripts/run_audio_classification.py ... --use_cpu true

Arguments: a YAML recipe (``--config``) sets defaults; any command-line flag overrides it. Argument groups:
`ModelArguments`, `DataArguments` (below) and `transformers.TrainingArguments`.

**Modes.**
* fine-tuning (default): every parameter trains, with layer-wise lr decay (``--layer_decay``), mixup (``--mixup``),
  SpecAugment (``--freqm/--timem``), roll + gain, Speech Commands noise, and the model's 2-D token drop
  (``--token_drop_time/--token_drop_freq``, AudioMosaic only).
* probing (``--freeze_encoder true``): the encoder is frozen and kept in eval mode (no token drop, no drop-path);
  ``--classifier_head linear`` is the linear probe (`fc_norm` + Linear train), ``layer`` (``--probe_layer k``),
  ``weighted_sum`` and ``attentive`` are the other probes of the paper. **By default probes train on cached
  embeddings**: the frozen encoder runs once over every split and the head trains on pooled vectors
  (`modeling_audiomosaic.finetuning`, exact for every head). Pass ``--cache_embeddings false`` to run the encoder on
  every batch instead; augmentation (mixup, SpecAugment, roll) then applies as in the original linear-probe protocol.
  With caching, augmentation flags are ignored (with a warning).

**Models.** ``--model_name_or_path`` may be an AudioMosaic pre-training checkpoint, a fine-tuned classifier, a bare
encoder folder, or any other model that `AutoModelForAudioClassification` loads (baselines, converted checkpoints).
The head is re-initialised when the label set differs. ``--from_scratch true`` builds the same architecture with random
weights (from the folder's config, or from ``--input_preset/--model_size/--config_overrides``) — the random-init
baseline.

**Data.** ``--train_file/--validation_file/--test_file``: AudioSet-style JSON manifests or CSV files (see
`modeling_audiomosaic.load_audio_dataset`). Labels come from ``--label_file`` (a ``labels.csv``) or are inferred
from the training split; single-label (cross-entropy) or multi-label (BCE) is inferred from the data (an example with
zero or several labels means multi-label) or set with ``--problem_type``. Features come from the model folder's
feature extractor or ``--feature_preset`` (audioset | esc50 | speechcommands); clips are zero-padded / cropped to its
``max_length`` frames.

**Model selection** uses the validation split only: evaluation and checkpoints every epoch (default), the best
checkpoint by ``--metric_for_best_model`` (default ``auto``: mAP for multi-label, EER for 2 classes, else accuracy) is
loaded at the end, then the validation and test splits are evaluated once. ``<output_dir>/results.json`` records both,
with the best checkpoint / step / epoch. The final model (``save_pretrained``, with ``id2label``) and the feature
extractor are saved in ``output_dir``, loadable by ``pipeline("audio-classification", model=output_dir)``.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import IntervalStrategy, SaveStrategy, get_last_checkpoint

import modeling_audiomosaic  # noqa: F401  (registers the Auto classes)
from modeling_audiomosaic import AudioMosaicConfig
from modeling_audiomosaic.feature_extraction import (
    AudioClassificationCollator,
    AudioMosaicFeatureExtractor,
    LabelVocabulary,
    build_label_vocabulary,
    load_audio_dataset,
)
from modeling_audiomosaic.feature_extraction.labels import LABEL_KEY_COLUMNS, read_label_csv
from modeling_audiomosaic.finetuning import (
    AudioClassificationTrainCollator,
    AudioClassificationTrainer,
    SpecAugment,
    logits_only,
)
from modeling_audiomosaic.metrics import compute_classification_metrics
from modeling_audiomosaic.probing import (
    collate_cached_features,
    compute_probe_features,
    freeze_for_probing,
    is_audiomosaic_classifier,
)
from modeling_audiomosaic.recipe_arguments import parse_with_recipe

logger = logging.getLogger("run_audio_classification")

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
LOWER_IS_BETTER = ("eer", "loss", "mse", "mae")


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "AudioMosaic pre-training / classifier / encoder folder, or any "
                          "AutoModelForAudioClassification model; None = from scratch (--input_preset/--model_size)"},
    )
    from_scratch: bool = field(
        default=False, metadata={"help": "random init of the architecture (random-init baseline); weights not loaded"}
    )
    input_preset: str = field(default="audioset", metadata={"help": "from scratch: audioset | esc50 | speechcommands"})
    model_size: str = field(default="base", metadata={"help": "from scratch: tiny | small | base"})
    config_overrides: str | None = field(
        default=None, metadata={"help": 'JSON dict of config fields, e.g. \'{"num_hidden_layers": 4}\''}
    )
    classifier_head: str | None = field(
        default=None,
        metadata={"help": "linear | layer | weighted_sum | attentive (default: the checkpoint's, else linear)"},
    )
    probe_layer: int | None = field(default=None, metadata={"help": "block read by classifier_head=layer"})
    attentive_probe_heads: int | None = field(default=None)
    freeze_encoder: bool = field(
        default=False, metadata={"help": "probing: freeze the encoder (fc_norm + head/probe modules train)"}
    )
    cache_embeddings: bool | None = field(
        default=None,
        metadata={"help": "probes: train on embeddings computed once (default: on when --freeze_encoder)"},
    )
    drop_path_rate: float | None = field(default=None, metadata={"help": "stochastic depth (original: 0.1)"})
    token_drop_time: float | None = field(default=None, metadata={"help": "fine-tune token drop, time (0.2)"})
    token_drop_freq: float | None = field(default=None, metadata={"help": "fine-tune token drop, frequency (0.2)"})
    classifier_dropout: float | None = field(default=None)
    layer_decay: float = field(default=1.0, metadata={"help": "layer-wise lr decay (original: 0.75; AS-20K 0.65)"})
    norm_pre_lr: str = field(
        default="head",
        metadata={"help": "LLRD layer of norm_pre: head (the original's quirk: full lr) | embeddings (stem lr)"},
    )


@dataclass
class DataArguments:
    train_file: str | None = field(default=None, metadata={"help": "training manifest (json/jsonl/csv)"})
    validation_file: str | None = field(default=None, metadata={"help": "validation manifest (model selection)"})
    test_file: str | None = field(default=None, metadata={"help": "test manifest (evaluated once at the end)"})
    label_file: str | None = field(default=None, metadata={"help": "labels.csv; default: labels of the train split"})
    problem_type: str | None = field(
        default=None, metadata={"help": "single_label_classification | multi_label_classification (default: inferred)"}
    )
    label_delimiter: str | None = field(default=",", metadata={"help": "splits multi-label strings"})
    feature_preset: str | None = field(
        default=None, metadata={"help": "audioset | esc50 | speechcommands (default: the model folder's extractor)"}
    )
    max_length: int | None = field(default=None, metadata={"help": "frames to pad/crop to (default: the extractor's)"})
    validation_split_percentage: float = field(
        default=0.0,
        metadata={"help": "without --validation_file: hold out this percentage (0-100) of train, split by group"},
    )
    filter_eval_sets: bool = field(
        default=True, metadata={"help": "drop undecodable items from validation/test once (exact metrics)"}
    )
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)
    max_test_samples: int | None = field(default=None)
    mixup: float = field(default=0.0, metadata={"help": "per-clip waveform mixup probability (AS/SPC: 0.8)"})
    mixup_alpha: float = field(default=10.0)
    mixup_beta: float = field(default=10.0)
    freqm: int = field(default=0, metadata={"help": "SpecAugment max frequency-mask width (AS 48, ESC 24)"})
    timem: int = field(default=0, metadata={"help": "SpecAugment max time-mask width (AS 192, ESC 96, SPC 48)"})
    roll_and_gain: bool = field(default=False, metadata={"help": "random circular roll + Beta gain (AS, ESC)"})
    noise: bool = field(default=False, metadata={"help": "Speech Commands noise + time shift after normalisation"})
    embedding_batch_size: int | None = field(
        default=None, metadata={"help": "batch size for caching embeddings (default: per_device_eval_batch_size)"}
    )


# Defaults that differ from TrainingArguments' (a recipe or the command line overrides them).
TRAINING_DEFAULTS: dict[str, Any] = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "load_best_model_at_end": True,
    "metric_for_best_model": "auto",
    "save_total_limit": 2,
    "remove_unused_columns": False,
    "report_to": "none",
    "logging_steps": 10,
}


def parse_args(argv: list[str] | None = None):
    """Parse `--config recipe.yaml` (defaults) and command-line overrides into the three dataclasses."""
    dataclass_types = (ModelArguments, DataArguments, TrainingArguments)
    return tuple(parse_with_recipe(dataclass_types, argv, defaults=TRAINING_DEFAULTS))


# ----------------------------------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------------------------------
def read_label_file(path: str, train_labels: set[str] | None = None) -> tuple[list[str], list[str] | None]:
    """`(keys, display_names)` from a labels CSV.

    Accepted: AudioSet-style ``index,mid,display_name``; any header with a ``label`` / ``name`` / ``class`` / ``mid`` /
    ``display_name`` column (rows ordered by ``index`` when present); or a header-less file with one label per line
    (first column). When several key columns exist, the one covering most training labels is used as the key.
    """
    table = read_label_csv(path)  # rows in `index` order (checked to be 0..n-1) when the file has that column
    if not table.has_header:  # one label per row
        return table.column("label"), None
    key_candidates = [name for name in LABEL_KEY_COLUMNS if name in table.columns]
    key = key_candidates[0]
    if train_labels:
        key = max(key_candidates, key=lambda c: sum(label in train_labels for label in table.column(c)))
    names = table.column("display_name") if "display_name" in table.columns else None
    return table.column(key), names


def build_vocabulary(data_args: DataArguments, train_dataset: Any, eval_sets: dict[str, Any]) -> LabelVocabulary:
    """Label vocabulary from `--label_file` or the training labels; checks that every split's labels are known."""
    multi_label = None
    if data_args.problem_type is not None:
        if data_args.problem_type not in (SINGLE_LABEL, MULTI_LABEL):
            raise ValueError(f"--problem_type must be {SINGLE_LABEL} or {MULTI_LABEL}, got {data_args.problem_type!r}")
        multi_label = data_args.problem_type == MULTI_LABEL
    inferred = build_label_vocabulary(train_dataset, multi_label=multi_label)
    if data_args.label_file:
        keys, names = read_label_file(data_args.label_file, set(inferred.labels))
        vocabulary = LabelVocabulary(keys, multi_label=inferred.multi_label, display_names=names)
    else:
        vocabulary = inferred
    for split, dataset in {"train": train_dataset, **eval_sets}.items():
        unknown = sorted({str(label) for labels in dataset.iter_labels() for label in (labels or [])}
                         - set(vocabulary.labels))
        if unknown:
            raise ValueError(
                f"{split} split has {len(unknown)} label(s) missing from the vocabulary (e.g. {unknown[:5]}); "
                "pass --label_file with the full label set"
            )
    return vocabulary


# ----------------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------------
def _load_split(path: str, data_args: DataArguments):
    kwargs = dict(label_delimiter=data_args.label_delimiter)
    try:
        return load_audio_dataset(path, group_column="group", **kwargs)
    except ValueError as err:  # no group column in this manifest
        if "group" not in str(err):
            raise
        return load_audio_dataset(path, **kwargs)


def _groups(dataset: Any) -> list[str]:
    raw = getattr(dataset, "raw", None)
    columns = getattr(raw, "column_names", []) or []
    groups = raw["group"] if "group" in columns else [None] * len(dataset)
    ids = raw["id"] if "id" in columns else [str(i) for i in range(len(dataset))]
    return [g if g is not None else i for g, i in zip(groups, ids)]


def split_by_group(dataset: Any, percentage: float, seed: int) -> tuple[Any, Any]:
    """Hold out ~`percentage` % of `dataset` for validation; items sharing a `group` (speaker, recording, fold...)
    stay on the same side (a stable hash of the group, so the split does not depend on the order)."""
    groups = _groups(dataset)
    threshold = percentage / 100.0
    held = [zlib.crc32(f"{seed}:{g}".encode()) / 2**32 < threshold for g in groups]
    validation = [i for i, h in enumerate(held) if h]
    train = [i for i, h in enumerate(held) if not h]
    if not validation or not train:
        raise ValueError(f"--validation_split_percentage {percentage} left an empty split ({len(train)} train, "
                         f"{len(validation)} validation items); use --validation_file")
    return dataset.select(train), dataset.select(validation)


def load_splits(data_args: DataArguments, seed: int) -> tuple[Any, dict[str, Any]]:
    if not data_args.train_file:
        raise ValueError("--train_file is required")
    train = _load_split(data_args.train_file, data_args)
    eval_sets: dict[str, Any] = {}
    if data_args.validation_file:
        eval_sets["validation"] = _load_split(data_args.validation_file, data_args)
    elif data_args.validation_split_percentage > 0:
        train, eval_sets["validation"] = split_by_group(train, data_args.validation_split_percentage, seed)
    if data_args.test_file:
        eval_sets["test"] = _load_split(data_args.test_file, data_args)
    if data_args.max_train_samples:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    limits = {"validation": data_args.max_eval_samples, "test": data_args.max_test_samples}
    for split, dataset in list(eval_sets.items()):
        if limits[split]:
            dataset = dataset.select(range(min(limits[split], len(dataset))))
        if data_args.filter_eval_sets:
            dataset = dataset.filter_valid()
        eval_sets[split] = dataset
    return train, eval_sets


# ----------------------------------------------------------------------------------------------------------------------
# Model and features
# ----------------------------------------------------------------------------------------------------------------------
def build_config(model_args: ModelArguments, vocabulary: LabelVocabulary, data_args: DataArguments):
    overrides = json.loads(model_args.config_overrides) if model_args.config_overrides else {}
    label_kwargs = vocabulary.config_kwargs()
    label_kwargs.pop("num_labels")  # implied by id2label (passing both warns when the checkpoint had other labels)
    if data_args.problem_type:
        label_kwargs["problem_type"] = data_args.problem_type
    if model_args.model_name_or_path:
        config = AutoConfig.from_pretrained(model_args.model_name_or_path, **label_kwargs, **overrides)
    else:
        config = AudioMosaicConfig.from_preset(model_args.input_preset, model_args.model_size, **label_kwargs,
                                               **overrides)
    if config.model_type == "audiomosaic":
        for name in ("classifier_head", "probe_layer", "attentive_probe_heads", "drop_path_rate", "token_drop_time",
                     "token_drop_freq", "classifier_dropout"):
            value = getattr(model_args, name)
            if value is not None:
                setattr(config, name, value)
        if model_args.freeze_encoder:  # probes run the encoder in eval mode: no token drop
            config.token_drop_time = 0.0
            config.token_drop_freq = 0.0
        config._validate_audiomosaic()
    else:
        for name in ("classifier_head", "probe_layer", "token_drop_time", "token_drop_freq"):
            if getattr(model_args, name) not in (None, "linear"):
                raise ValueError(f"--{name} is only supported for AudioMosaic models (got model_type "
                                 f"{config.model_type!r})")
        if model_args.drop_path_rate is not None and hasattr(config, "drop_path_rate"):
            config.drop_path_rate = model_args.drop_path_rate
    return config


def build_model(model_args: ModelArguments, config: Any):
    if model_args.from_scratch or not model_args.model_name_or_path:
        logger.info("random initialisation of %s (%s)", config.model_type,
                    "from the folder's config" if model_args.model_name_or_path else "from presets")
        return AutoModelForAudioClassification.from_config(config)
    return AutoModelForAudioClassification.from_pretrained(
        model_args.model_name_or_path, config=config, ignore_mismatched_sizes=True
    )


def build_feature_extractor(model_args: ModelArguments, data_args: DataArguments, config: Any):
    overrides = {"max_length": data_args.max_length} if data_args.max_length else {}
    if data_args.feature_preset:
        extractor = AudioMosaicFeatureExtractor.from_preset(data_args.feature_preset, **overrides)
    else:
        extractor = None
        folder = model_args.model_name_or_path
        if folder and os.path.isdir(folder) and any(
            os.path.isfile(os.path.join(folder, name)) for name in ("preprocessor_config.json", "processor_config.json")
        ):
            extractor = AutoFeatureExtractor.from_pretrained(folder, **overrides)
        elif folder and not os.path.isdir(folder):
            try:
                extractor = AutoFeatureExtractor.from_pretrained(folder, **overrides)
            except (OSError, ValueError):
                extractor = None
        if extractor is None:
            preset = model_args.input_preset
            extractor = AudioMosaicFeatureExtractor.from_preset(
                preset, **{"max_length": getattr(config, "max_length", None) or 1024, **overrides}
            )
            logger.info("no feature extractor in the model folder: using preset %r", preset)
    if config.model_type == "audiomosaic":
        if extractor.num_mel_bins != config.num_mel_bins:
            raise ValueError(f"the feature extractor has {extractor.num_mel_bins} mel bins, the model "
                             f"{config.num_mel_bins}")
        if extractor.max_length > config.max_length:
            raise ValueError(f"the feature extractor pads/crops to {extractor.max_length} frames but the model's "
                             f"position table covers {config.max_length}; pass --max_length")
        if extractor.max_length % config.patch_size:
            raise ValueError(f"max_length {extractor.max_length} is not a multiple of the patch size")
    return extractor


def resolve_selection_metric(training_args: TrainingArguments, problem_type: str, num_labels: int) -> None:
    metric = training_args.metric_for_best_model
    if metric in (None, "auto"):
        if problem_type == MULTI_LABEL:
            metric = "mAP"
        elif num_labels == 2:
            metric = "eer"
        else:
            metric = "accuracy"
    training_args.metric_for_best_model = metric
    name = metric[len("eval_"):] if metric.startswith("eval_") else metric
    training_args.greater_is_better = not any(name.endswith(suffix) for suffix in LOWER_IS_BETTER)


def _split_metrics(metrics: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = {}
    for key, value in metrics.items():
        if key.startswith(prefix + "_"):
            key = key[len(prefix) + 1:]
        out[key] = value
    return out


def _step_of(checkpoint: str | None) -> int | None:
    match = re.search(r"checkpoint-(\d+)$", checkpoint or "")
    return int(match.group(1)) if match else None


# ----------------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    training_args.remove_unused_columns = False  # batches carry exactly the model's inputs
    set_seed(training_args.seed)

    # -- data and labels ------------------------------------------------------------------------------------------
    train_dataset, eval_sets = load_splits(data_args, training_args.seed)
    vocabulary = build_vocabulary(data_args, train_dataset, eval_sets)
    problem_type = data_args.problem_type or (MULTI_LABEL if vocabulary.multi_label else SINGLE_LABEL)
    logger.info("%d train / %s items, %d labels, %s", len(train_dataset),
                {k: len(v) for k, v in eval_sets.items()}, vocabulary.num_labels, problem_type)

    # -- model --------------------------------------------------------------------------------------------------------
    config = build_config(model_args, vocabulary, data_args)
    model = build_model(model_args, config)
    model.config.problem_type = problem_type
    feature_extractor = build_feature_extractor(model_args, data_args, model.config)
    audiomosaic = is_audiomosaic_classifier(model)
    if model.config.num_labels != vocabulary.num_labels:
        raise ValueError(f"the model has {model.config.num_labels} outputs for {vocabulary.num_labels} labels")
    trainable = None
    if model_args.freeze_encoder:
        trainable = freeze_for_probing(model)
        logger.info("probing: %d trainable tensors (%s...)", len(trainable), ", ".join(trainable[:4]))
    cache = model_args.cache_embeddings
    if cache is None:
        cache = model_args.freeze_encoder and audiomosaic
    if cache and not (model_args.freeze_encoder and audiomosaic):
        raise ValueError("--cache_embeddings needs --freeze_encoder and an AudioMosaic model")

    # -- collators -------------------------------------------------------------------------------------------------
    eval_collator = AudioClassificationCollator(feature_extractor, vocabulary)
    spec_augment = (
        SpecAugment.from_feature_extractor(feature_extractor, data_args.freqm, data_args.timem)
        if data_args.freqm > 0 or data_args.timem > 0
        else None
    )
    train_collator = AudioClassificationTrainCollator(
        feature_extractor, vocabulary, mixup=data_args.mixup, mixup_alpha=data_args.mixup_alpha,
        mixup_beta=data_args.mixup_beta, roll_and_gain=data_args.roll_and_gain, spec_augment=spec_augment,
        noise=data_args.noise,
    )

    # -- model selection on validation --------------------------------------------------------------------------------
    has_validation = "validation" in eval_sets
    if has_validation:
        resolve_selection_metric(training_args, problem_type, vocabulary.num_labels)
    else:
        logger.warning("no validation split: no model selection, the last model is kept and evaluated on test")
        training_args.eval_strategy = IntervalStrategy.NO
        training_args.load_best_model_at_end = False
        training_args.metric_for_best_model = None
        if training_args.save_strategy == SaveStrategy.BEST:
            training_args.save_strategy = SaveStrategy.EPOCH

    def compute_metrics(prediction) -> dict[str, float]:
        return compute_classification_metrics(prediction.predictions, prediction.label_ids, problem_type)

    # -- trainer -------------------------------------------------------------------------------------------------
    if cache:
        if not train_collator.is_identity:
            logger.warning("cached embeddings: augmentation (%s) is NOT applied; pass --cache_embeddings false to "
                           "train the probe with it (original protocol)", train_collator.describe())
        device = training_args.device
        model.to(device)
        batch_size = data_args.embedding_batch_size or training_args.per_device_eval_batch_size
        cached = {
            split: compute_probe_features(model, dataset, eval_collator, batch_size=batch_size, device=device,
                                          num_workers=training_args.dataloader_num_workers, description=split)
            for split, dataset in {"train": train_dataset, **eval_sets}.items()
        }
        train_model = model.probe_head()  # the model's own head on the cached probe inputs, sharing its parameters
        train_data, split_data = cached["train"], {k: cached[k] for k in eval_sets}
        data_collator, eval_data_collator = collate_cached_features, None
    else:
        train_model = model
        train_data, split_data = train_dataset, eval_sets
        data_collator, eval_data_collator = train_collator, eval_collator

    if training_args.ddp_find_unused_parameters is None:  # Trainer's default (True) costs a graph traversal
        # only a fine-tuned layer probe leaves parameters unused (the blocks after probe_layer)
        training_args.ddp_find_unused_parameters = bool(
            audiomosaic and not cache and not model_args.freeze_encoder and model.config.classifier_head == "layer"
        )

    trainer = AudioClassificationTrainer(
        model=train_model,
        args=training_args,
        train_dataset=train_data,
        eval_dataset=split_data.get("validation"),
        data_collator=data_collator,
        eval_data_collator=eval_data_collator,
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=logits_only,
        processing_class=feature_extractor,
        layer_decay=model_args.layer_decay,
        norm_pre=model_args.norm_pre_lr,
        problem_type=problem_type,
    )

    checkpoint = training_args.resume_from_checkpoint
    if checkpoint == "last":
        checkpoint = get_last_checkpoint(training_args.output_dir)
        if checkpoint is None:
            raise ValueError(f"--resume_from_checkpoint last: no checkpoint in {training_args.output_dir}")
    train_result = trainer.train(resume_from_checkpoint=checkpoint)

    # -- final evaluation: validation (the selected model) and test, once ---------------------------------------------
    results: dict[str, Any] = {}
    for split in ("validation", "test"):
        if split in split_data:
            metrics = trainer.evaluate(eval_dataset=split_data[split], metric_key_prefix=split)
            results[split] = _split_metrics(metrics, split)

    # -- save -------------------------------------------------------------------------------------------------------
    if cache:
        if trainer.is_world_process_zero():
            model.save_pretrained(training_args.output_dir)
            feature_extractor.save_pretrained(training_args.output_dir)
    else:
        trainer.save_model(training_args.output_dir)
        if trainer.is_world_process_zero():
            feature_extractor.save_pretrained(training_args.output_dir)

    state = trainer.state
    best_step = state.best_global_step if has_validation else None
    if best_step is None and has_validation:
        best_step = _step_of(state.best_model_checkpoint)
    best_epoch = None
    if best_step is not None:
        for entry in state.log_history:
            if entry.get("step") == best_step and any(k.startswith("eval_") for k in entry):
                best_epoch = entry.get("epoch")
    summary = {
        "validation": results.get("validation"),
        "test": results.get("test"),
        "model_selection": "validation" if has_validation else "last",
        "metric_for_best_model": training_args.metric_for_best_model,
        "greater_is_better": training_args.greater_is_better if has_validation else None,
        "best_metric": state.best_metric,
        "best_step": best_step,
        "best_epoch": best_epoch,
        "best_checkpoint": state.best_model_checkpoint,
        "global_step": state.global_step,
        "train": {"loss": train_result.training_loss, **train_result.metrics},
        "task": {
            "problem_type": problem_type,
            "num_labels": vocabulary.num_labels,
            "labels": vocabulary.labels,
            "num_examples": {"train": len(train_dataset), **{k: len(v) for k, v in eval_sets.items()}},
        },
        "setup": {
            "model_name_or_path": model_args.model_name_or_path,
            "from_scratch": bool(model_args.from_scratch or not model_args.model_name_or_path),
            "model_type": model.config.model_type,
            "classifier_head": getattr(model.config, "classifier_head", None),
            "freeze_encoder": model_args.freeze_encoder,
            "trainable_parameters": trainable,
            "cached_embeddings": bool(cache),
            "layer_decay": model_args.layer_decay,
            "optimizer_groups": trainer.param_group_summary,
            "norm_pre_lr": model_args.norm_pre_lr,
            "token_drop": [getattr(model.config, name, None) for name in ("token_drop_time", "token_drop_freq")],
            "augmentation": None if cache else train_collator.describe(),
            "feature_extractor": {"max_length": feature_extractor.max_length,
                                  "mean": getattr(feature_extractor, "mean", None),
                                  "std": getattr(feature_extractor, "std", None)},
        },
        "log_history": state.log_history,
    }
    if trainer.is_world_process_zero():
        os.makedirs(training_args.output_dir, exist_ok=True)
        with open(os.path.join(training_args.output_dir, "results.json"), "w") as handle:
            json.dump(summary, handle, indent=2, default=_json_default)
        logger.info("validation: %s | test: %s | best step %s", results.get("validation"), results.get("test"),
                    best_step)
    shutdown(trainer)
    return summary


def shutdown(trainer: AudioClassificationTrainer) -> None:
    """Release the DDP wrapper *before* the process group goes away, then destroy the group.

    A DDP reducer that outlives its (destroyed) gloo group can block forever in its destructor when `main()` returns;
    leaving the group alive instead can abort at interpreter exit (gloo: SIGABRT, seen in 1 of 3 runs). So: barrier,
    drop every reference to the wrapped model (Trainer + accelerate), collect, destroy.
    """
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed:
        torch.distributed.barrier()
    accelerator = trainer.accelerator
    trainer.model_wrapped = trainer.model
    trainer.optimizer = trainer.lr_scheduler = None
    accelerator.free_memory()  # drops accelerate's references to the prepared model/optimizer/dataloaders + gc
    gc.collect()
    accelerator.end_training()  # destroys the process group (accelerate >= 1.x)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return str(value)


if __name__ == "__main__":
    main()
