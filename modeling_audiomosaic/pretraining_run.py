"""The pre-training run behind run_scripts/run_pretrain.py, with 🤗 Trainer.

Its three argument groups (`ModelArguments`, `DataArguments`, `transformers.TrainingArguments`; a YAML recipe via
``--config`` gives defaults, flags override them), the builders of the config, the frozen distillation teacher, the
model and the dataset, and `run_pretraining(argv)`, which trains and saves. run_demo.py and run_speech_study.py call
`run_pretraining` in-process; run_system_comparison.py uses `parse_args` and `build_config` to count each system's
compute. The command line and its data / logging conventions are described in run_scripts/run_pretrain.py.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field

import torch
import transformers
from transformers import TrainerCallback, TrainingArguments, set_seed

from .checkpoints import layout_change
from .configuration_audiomosaic import AudioMosaicConfig
from .cpu_bf16 import check_cpu_bf16
from .feature_extraction import AudioMosaicFeatureExtractor
from .feature_extraction.augmentation import ContrastiveViewGenerator
from .feature_extraction.augmentation_device import device_views_problem
from .feature_extraction.collators import EpochTaggedDataset, PretrainingViewsCollator
from .feature_extraction.labels import build_label_vocabulary
from .feature_extraction.loading import load_audio_dataset
from .modeling_pretraining import AudioMosaicForPreTraining
from .multinode import (
    check_output_dir_sharing,
    check_same_dataset,
    check_same_stream,
    fsdp_sharded_checkpoints,
    on_every_rank,
    resolve_resume_checkpoint,
)
from .pretraining_trainer import AudioMosaicPretrainingTrainer
from .recipe_arguments import parse_with_recipe
from .stream_position import tag_stream_order

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Initialise from a saved AudioMosaic folder (any head); else from scratch."}
    )
    input_preset: str = field(default="audioset", metadata={"help": "audioset (1024 frames) | esc50 | speechcommands"})
    model_size: str = field(default="base", metadata={"help": "tiny | small | base (ViT-B/16)"})
    config_overrides: str | None = field(
        default=None, metadata={"help": 'JSON dict of AudioMosaicConfig fields, e.g. \'{"num_hidden_layers": 4}\''}
    )
    objective: str = field(
        default="contrastive",
        metadata={"help": "contrastive | mae | distill, '+'-joined (e.g. contrastive+mae); see AudioMosaicConfig"},
    )
    supervised_weight: float = field(
        default=0.0, metadata={"help": "λ_cls of the SupMAM supervised branch (needs --label_column); 0 = off"}
    )
    supervised_loss: str = field(default="bce", metadata={"help": "bce (multi-label) | ce (single-label)"})
    teacher_name_or_path: str | None = field(
        default=None,
        metadata={"help": "frozen teacher of the distill objective (a local AudioMosaic or CLAP folder)"},
    )
    masking_mode: str | None = field(
        default=None,
        metadata={"help": "tf | tt | ff | random | dwm | inverse_block | none | custom (default: tf if contrastive, "
                          "else random)"},
    )
    mask_grid: str = field(default="true", metadata={"help": "true | original (released code's swapped grid)"})
    mask_ratio_time: float = field(default=0.6)
    mask_ratio_freq: float = field(default=0.4)
    mask_ratio: float = field(default=0.75, metadata={"help": "ratio of masking_mode=random / dwm / inverse_block"})
    temperature: float = field(default=0.1)
    learnable_temperature: bool = field(default=False)
    drop_path_rate: float = field(default=0.1)
    checkpointing_fraction: float = field(
        default=0.0, metadata={"help": "activation-checkpoint the first fraction of blocks (recipe: 0.7); 0 = off"}
    )
    sync_batchnorm: bool = field(
        default=True,
        metadata={"help": "projector BatchNorms: statistics of the global batch in multi-process runs (SyncBatchNorm)"},
    )


@dataclass
class DataArguments:
    train_path: str | None = field(default=None, metadata={"help": "local folder / manifest / csv / parquet / tar"})
    dataset_name: str | None = field(default=None, metadata={"help": "datasets.load_dataset name (Hub id or builder)"})
    dataset_config_name: str | None = field(default=None)
    data_files: str | None = field(default=None, metadata={"help": "data_files for builders such as parquet"})
    dataset_split: str = field(default="train")
    source_type: str = field(default="auto")
    audio_column: str = field(default="auto")
    label_column: str | None = field(
        default=None, metadata={"help": "labels for the supervised branch (--supervised_weight > 0); unlabelled rows "
                                        "are ignored by it"},
    )
    streaming: bool = field(default=False)
    shuffle_buffer_size: int = field(default=1000)
    shuffle_input_shards: int = field(
        default=1, metadata={"help": "streaming: shards feeding each worker's shuffle buffer at once (datasets' "
                                     "max_buffer_input_shards). 1: one shard after another (shard order reshuffled "
                                     "every pass). datasets' own default, 10, mixes rows of 10 shards but holds 10 "
                                     "open readers per worker, and with parquet its pause at the end of a worker's "
                                     "stream (5 s) holds up the whole DataLoader, which delivers batches in order"},
    )
    crop_seconds: float | None = field(
        default=None, metadata={"help": "random window cut from longer clips (default: the spectrogram length)"}
    )
    augmentation: str = field(default="original", metadata={"help": "waveform chain preset: original | light | none"})
    roll_and_gain: bool = field(default=True)
    views_on_device: bool | None = field(
        default=None, metadata={"help": "data workers only decode and crop; augmentation + fbank run batched on the "
                                        "model's device in the training step (default: on when training on an "
                                        "accelerator, off on CPU and on Apple's MPS, which has no float64; the views "
                                        "are the same for the same seeds); a CLAP distillation teacher's spectrogram "
                                        "moves to the device with them"},
    )
    max_train_samples: int | None = field(default=None)
    max_train_minutes: float | None = field(
        default=None, metadata={"help": "optional hard cap: stop (and save) after this much wall-clock training time. "
                                        "The lr schedule still spans --max_steps, so a cut run depends on the "
                                        "machine's speed; it is warned and marked stopped_by_time_budget in "
                                        "pretrain_summary.json. Prefer --max_steps for reproducible runs"}
    )


def parse_args(argv: list[str] | None = None):
    """Parse `--config recipe.yaml` (defaults) and command-line overrides into the three dataclasses."""
    return tuple(parse_with_recipe((ModelArguments, DataArguments, TrainingArguments), argv))


class TimeBudgetCallback(TrainerCallback):
    """Stop training once `seconds` of wall-clock time have passed (checked after every optimizer step).

    Every rank decides on its own clock, so under multi-process training the decision is all-reduced (max) to keep
    the ranks in step. A cut run is warned about and remembered (`stopped_at_step`): its schedule was not finished,
    so its result depends on the machine's speed and load."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = None
        self.stopped_at_step: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        over = torch.tensor(float(time.monotonic() - self.start > self.seconds), device=args.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(over, op=torch.distributed.ReduceOp.MAX)
        if over.item() > 0:
            control.should_training_stop = True
            control.should_save = True
            if state.global_step < state.max_steps:
                self.stopped_at_step = state.global_step
                logger.warning(
                    "--max_train_minutes %g reached at step %d of %d: the schedule was cut, so this run's result "
                    "depends on the machine's speed and load (use --max_steps alone for a reproducible run).",
                    self.seconds / 60, state.global_step, state.max_steps,
                )
        return control


def build_config(model_args: ModelArguments, teacher=None, vocabulary=None) -> AudioMosaicConfig:
    overrides = json.loads(model_args.config_overrides) if model_args.config_overrides else {}
    if teacher is not None:
        overrides.setdefault("distill_teacher_hidden_size", teacher.feature_dim)
    if vocabulary is not None:
        overrides.update(vocabulary.config_kwargs())
    fields = dict(
        objective=model_args.objective,
        supervised_weight=model_args.supervised_weight,
        supervised_loss=model_args.supervised_loss,
        masking_mode=model_args.masking_mode,
        mask_grid=model_args.mask_grid,
        mask_ratio_time=model_args.mask_ratio_time,
        mask_ratio_freq=model_args.mask_ratio_freq,
        mask_ratio=model_args.mask_ratio,
        temperature=model_args.temperature,
        learnable_temperature=model_args.learnable_temperature,
        drop_path_rate=model_args.drop_path_rate,
        checkpointing_fraction=model_args.checkpointing_fraction,
    )
    if model_args.model_name_or_path:
        config = AudioMosaicConfig.from_pretrained(model_args.model_name_or_path, **fields, **overrides)
    else:
        config = AudioMosaicConfig.from_preset(model_args.input_preset, model_args.model_size, **fields, **overrides)
    return config


def load_teacher(model_args: ModelArguments):
    """The frozen distillation teacher and, if it needs its own inputs, its feature extractor (local folders only)."""
    if not model_args.teacher_name_or_path:
        return None, None
    from transformers import AutoFeatureExtractor, AutoModel

    from .objective_distill import DistillationTeacher

    overrides = json.loads(model_args.config_overrides) if model_args.config_overrides else {}
    layer = int(overrides.get("distill_teacher_layer", -1))
    teacher = DistillationTeacher(AutoModel.from_pretrained(model_args.teacher_name_or_path), layer=layer)
    extractor = None
    if teacher.needs_own_inputs:
        extractor = AutoFeatureExtractor.from_pretrained(model_args.teacher_name_or_path)
    logger.info("distillation teacher: %s (%s, %d-d features)", model_args.teacher_name_or_path, teacher.kind,
                teacher.feature_dim)
    return teacher, extractor


def build_model(model_args: ModelArguments, config: AudioMosaicConfig, teacher=None) -> AudioMosaicForPreTraining:
    if model_args.model_name_or_path:
        model = AudioMosaicForPreTraining.from_pretrained(model_args.model_name_or_path, config=config)
    else:
        model = AudioMosaicForPreTraining(config)
    if "distill" in config.objectives:
        if teacher is None:
            raise ValueError("--objective with distill needs --teacher_name_or_path (a frozen teacher model folder)")
        if teacher.kind == "audiomosaic" and teacher.model.config.num_mel_bins != config.num_mel_bins:
            raise ValueError(
                f"the AudioMosaic teacher reads {teacher.model.config.num_mel_bins} mel bins, the student "
                f"{config.num_mel_bins}: they must match (the teacher reads the student's spectrogram)."
            )
        model.set_distillation_teacher(teacher)
    if model_args.checkpointing_fraction > 0:
        model.audiomosaic.set_activation_checkpointing(True, model_args.checkpointing_fraction)
    return model


def resolve_views_on_device(requested: bool | None, device: torch.device | str) -> bool:
    """``--views_on_device``: unset, on for an accelerator that can compute them (not the CPU; not Apple's MPS, which
    has no float64); asked for where they cannot run, a `ValueError` naming the device and the fix."""
    problem = device_views_problem(device)
    if requested is None:
        return torch.device(device).type != "cpu" and problem is None
    if requested and problem is not None:
        raise ValueError(f"--views_on_device true: {problem}.")
    return bool(requested)


def build_dataset(data_args: DataArguments, training_args: TrainingArguments):
    # no cropping here: the collator cuts long clips with a generator seeded by (seed, epoch, ids), so resumed runs
    # see exactly the same windows
    common = dict(label_column=data_args.label_column, streaming=data_args.streaming)
    if data_args.audio_column != "auto":
        common["audio_column"] = data_args.audio_column
    if data_args.dataset_name:
        dataset = load_audio_dataset(
            dataset_name=data_args.dataset_name, config_name=data_args.dataset_config_name,
            split=data_args.dataset_split, data_files=data_args.data_files, **common,
        )
    elif data_args.train_path:
        dataset = load_audio_dataset(data_args.train_path, source_type=data_args.source_type, **common)
    else:
        raise ValueError("give --train_path (local audio) or --dataset_name (datasets.load_dataset)")
    if data_args.streaming:
        dataset = dataset.shuffle(seed=training_args.seed, buffer_size=data_args.shuffle_buffer_size,
                                  max_input_shards=data_args.shuffle_input_shards)
        if data_args.max_train_samples:
            dataset = dataset.take(data_args.max_train_samples)
        # a real `datasets.IterableDataset`, so that accelerate (dispatch_batches=False) gives each rank its own
        # shards instead of every rank decoding everything; rows carry `num_skipped` (bad items dropped before them)
        return tag_stream_order(dataset.hf_dataset, shuffle_buffer_size=data_args.shuffle_buffer_size,
                                shuffle_input_shards=data_args.shuffle_input_shards,
                                max_train_samples=data_args.max_train_samples)
    if data_args.max_train_samples:
        dataset = dataset.select(range(min(data_args.max_train_samples, len(dataset))))
    return EpochTaggedDataset(dataset)


def keep_float32_parts_in_ieee(training_args: TrainingArguments) -> bool:
    """Turns TF32 matmuls back off where transformers turned them on for a bf16 / fp16 run; True if it did.

    `TrainingArguments` enables TF32 process-wide when ``torch_compile`` is on with bf16 and ``--tf32`` is unset (the
    paper recipe), "to speed up torch.compile". Under mixed precision the encoder's matmuls already run in bf16; TF32
    only reaches the matmuls kept in float32 on purpose: the contrastive projector and the NT-Xent logits
    (`objective_contrastive`: a 10-bit mantissa moves a logit at τ = 0.1 by ~5e-3), the views' mel filterbank on the
    device (which should equal the host path's features to 1e-4) and the metrics, whose cost is negligible next to the
    encoder's. Only CUDA matmuls are set back to IEEE float32 (cuDNN keeps its own setting: the convolutions run in
    bf16 under autocast). ``--tf32 true`` keeps TF32; a float32 run keeps transformers' choice; without
    ``torch_compile`` transformers changes nothing, and neither does this.
    """
    mixed = training_args.bf16 or training_args.fp16
    if training_args.tf32 is not None or not mixed or not training_args.torch_compile:
        return False
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9
        matmul.fp32_precision = "ieee"
    else:
        matmul.allow_tf32 = False
    return True


def copy_batches_without_blocking(training_args: TrainingArguments) -> bool:
    """Turns on accelerate's ``non_blocking`` batch copies when training on CUDA with pinned memory; True if it did.

    A blocking copy to the GPU makes torch synchronise the stream: the host waits until every kernel queued before
    it has run, at the start of every step (the waveform batch of 512 clips is 327 MB), so the host cannot queue the
    step while the previous one finishes. From pinned memory (``dataloader_pin_memory``, on by default) the copy is
    asynchronous and ordered on the stream before the step's kernels; torch's pinned-memory allocator keeps the
    buffer until the copy is done.
    """
    if training_args.device.type != "cuda" or not training_args.dataloader_pin_memory:
        return False
    config = training_args.accelerator_config
    if getattr(config, "non_blocking", True):
        return False
    config.non_blocking = True
    return True


def run_pretraining(argv: list[str] | None = None, callbacks: list[TrainerCallback] | None = None) -> dict:
    """Parse `argv` (a recipe via ``--config`` and flags, as run_scripts/run_pretrain.py's command line), pre-train
    with `AudioMosaicPretrainingTrainer`, save the model, its feature extractor and ``pretrain_summary.json`` to
    ``--output_dir``; returns the training loss, the global step and the log history. ``callbacks``: extra
    `TrainerCallback`s (trackers, probes).

    Multi-node runs (README "Multi-node pre-training"): the data loading and the checkpoint to resume from are checked
    on every rank and any failure stops every rank with one message (`modeling_audiomosaic.multinode`), instead of
    leaving the other nodes waiting in a collective.

    Under multi-process training, the caller should leave with ``os._exit`` once it returns (run_pretrain.py does):
    see the comment at the end of this function."""
    model_args, data_args, training_args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    training_args.remove_unused_columns = False  # the collator's keys are the model's inputs
    training_args.dataloader_drop_last = True  # all_gather needs equal batch sizes on every rank
    if data_args.streaming:
        if training_args.max_steps <= 0:
            raise ValueError("--streaming needs --max_steps (an iterable dataset has no length)")
        training_args.accelerator_config.dispatch_batches = False  # each rank reads its own shards
    set_seed(training_args.seed)
    world_size, rank = training_args.world_size, training_args.process_index  # global rank, over all nodes
    # multi-node: who writes the checkpoint where (a shared --output_dir, or one per node); see multinode.py
    check_output_dir_sharing(training_args.output_dir, rank, training_args.local_process_index, world_size,
                             training_args.save_on_each_node, fsdp_sharded_checkpoints(training_args))
    check_cpu_bf16(training_args.bf16, training_args.device)  # bf16 on CPU: see cpu_bf16.py
    keep_float32_parts_in_ieee(training_args)
    if copy_batches_without_blocking(training_args):
        logger.info("batches are copied to %s without blocking (pinned memory)", training_args.device)

    if model_args.supervised_weight > 0 and not data_args.label_column:
        raise ValueError("--supervised_weight > 0 (SupMAM) needs --label_column (the clip labels)")
    if model_args.supervised_weight > 0 and data_args.streaming:  # before anything is loaded
        raise ValueError("the supervised branch needs a label vocabulary: not available with --streaming yet")
    # a path on one node only must stop every rank, not leave the others waiting in a collective (multinode.py)
    teacher, teacher_extractor = on_every_rank(lambda: load_teacher(model_args), "loading the distillation teacher")
    train_dataset = on_every_rank(lambda: build_dataset(data_args, training_args), "loading the training data")
    if not data_args.streaming:
        check_same_dataset(train_dataset, world_size)  # every rank must split the same item list
    else:
        n_shards = int(getattr(train_dataset, "n_shards", 0))
        check_same_stream(n_shards, world_size)  # every rank must split the same shard list
    vocabulary = None
    if model_args.supervised_weight > 0:
        vocabulary = on_every_rank(  # a read error on one node must stop every rank (multinode.py)
            lambda: build_label_vocabulary(train_dataset.dataset, multi_label=model_args.supervised_loss == "bce"),
            "building the label vocabulary")
        logger.info("supervised branch: %d labels (%s)", vocabulary.num_labels, model_args.supervised_loss)
    config = on_every_rank(lambda: build_config(model_args, teacher, vocabulary), "building the model config")
    model = on_every_rank(lambda: build_model(model_args, config, teacher), "building the model")
    if model_args.sync_batchnorm and training_args.world_size > 1:
        model.synchronize_batchnorm(True)  # projector BNs over the global batch, any backend (gloo too) and FSDP2
    feature_extractor = AudioMosaicFeatureExtractor.from_preset(model_args.input_preset, max_length=config.max_length)
    view_generator = ContrastiveViewGenerator(
        feature_extractor, augmentation=data_args.augmentation, num_views=config.pretraining_num_views,
        roll_and_gain=data_args.roll_and_gain,
    )
    views_on_device = resolve_views_on_device(data_args.views_on_device, training_args.device)
    logger.info("views computed on %s", f"the device ({training_args.device})" if views_on_device else "the host")
    accelerator_config = training_args.accelerator_config
    if views_on_device and (accelerator_config.dispatch_batches or accelerator_config.split_batches):
        raise ValueError(
            "views on the device need every process to collate its own batches: accelerate's dispatch_batches / "
            "split_batches (--accelerator_config) would cut the views' per-row parameters, which stay on the host. "
            "Leave them off, or compute the views on the host (--views_on_device false)."
        )
    collator = PretrainingViewsCollator(
        view_generator,
        seed=training_args.seed,
        crop_samples=None if data_args.crop_seconds is None else int(data_args.crop_seconds * 16000),
        label_vocabulary=vocabulary,
        teacher_feature_extractor=teacher_extractor,
        views_on_device=views_on_device,
    )
    time_budget = TimeBudgetCallback(data_args.max_train_minutes * 60.0) if data_args.max_train_minutes else None
    if training_args.data_seed is None:
        # the sampler's seed, explicit (accelerate otherwise reads the global RNG's seed, which differs per rank below);
        # the same value it read before, so the data order is unchanged
        training_args.data_seed = training_args.seed
    trainer = AudioMosaicPretrainingTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=collator,
        view_generator=view_generator,
        # the trainer itself tells the dataset and the collator the epoch (exact resumption: `DataEpochCallback`;
        # streams: `StreamPositionCallback`, which also saves each rank's position in its stream)
        callbacks=([time_budget] if time_budget else []) + list(callbacks or []),
    )
    if rank > 0:
        # Trainer seeded every rank alike, so every rank drew the same masks and drop-path patterns: a global batch
        # over W ranks held each mask pattern W times. One stream per global rank, as the original training script
        # (its seed is `--seed` + rank); rank 0 (and every single-process run) keeps `seed`. Resuming restores each
        # rank's stream from its rng_state_<rank>.pth (README "Multi-node pre-training").
        set_seed(training_args.seed + rank)
    # "last": the newest checkpoint-* of output_dir complete for every rank; a folder: checked on every rank (each
    # loads its own rng_state_<global rank>.pth), any problem stops every rank with one message
    checkpoint = resolve_resume_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir,
                                           world_size, rank, streaming=data_args.streaming,
                                           local_rank=training_args.local_process_index)
    if checkpoint is not None:
        logger.info("resuming from %s", checkpoint)
        change = layout_change(checkpoint, world_size)  # a stream refuses this (resolve_resume_checkpoint)
        if change and rank == 0:
            logger.warning(
                "%s was %s: the global batch changes, and Trainer skips the steps already trained in the current "
                "epoch by the new layout's batches, so that epoch's data is not the uninterrupted run's (some clips "
                "twice or not at all). Resume with the same number of processes for an exact continuation.",
                checkpoint, change,
            )
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(training_args.output_dir)
    # counted from the batches (decoding runs in DataLoader workers, whose own counters the main process never sees),
    # summed over the ranks: a collective, so every rank calls it
    data = trainer.data_summary()
    train_loss = trainer.mean_training_loss(result.training_loss)  # skipped batches left out (a collective, too)
    if trainer.is_world_process_zero():
        feature_extractor.save_pretrained(training_args.output_dir)
        summary = {
            "train_loss": train_loss,
            "global_step": result.global_step,
            "scheduled_steps": trainer.state.max_steps,
            "stopped_by_time_budget": bool(time_budget and time_budget.stopped_at_step is not None),
            "data_items_skipped": data["skip_events"],  # every skip event, all ranks (kept for older readers)
            "data": data,
            "nonfinite_losses_skipped": trainer.nonfinite_losses,
            "log_history": trainer.state.log_history,
        }
        with open(os.path.join(training_args.output_dir, "pretrain_summary.json"), "w") as handle:
            json.dump(summary, handle, indent=2, default=str)
        logger.info("data: %s", data["text"])
        logger.info("finished: loss %.4f after %d steps", result.training_loss, result.global_step)
    history = trainer.state.log_history
    result_dict = {"train_loss": result.training_loss, "global_step": result.global_step, "log_history": history}
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Multi-process: wait until every rank is done, then let the caller leave with os._exit WITHOUT destroying the
        # process group or freeing the DDP model. `accelerator.end_training()` destroys the group, which leaves the
        # DDP reducer holding its last reference; freeing the reducer then runs ~ProcessGroupGloo, which joins gloo's
        # worker thread while holding the GIL, while that thread may still be releasing a finished collective whose
        # tensors need the GIL: a deadlock at exit (found with py-spy; it hung ~1 run in 3 under load).
        torch.distributed.barrier()
        for callback in trainer.callback_handler.callbacks:  # flush trackers (TensorBoard closes on train end too)
            if hasattr(callback, "tb_writer") and callback.tb_writer is not None:
                callback.tb_writer.flush()
        _KEEP_ALIVE.append((trainer, model))
        return result_dict
    trainer.accelerator.end_training()
    return result_dict


# distributed runs: objects that must not be freed before os._exit (see the end of run_pretraining)
_KEEP_ALIVE: list = []
