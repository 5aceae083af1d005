"""`Trainer` subclass for AudioMosaic pre-training (any `AudioMosaicForPreTraining` objective).

What it adds to `transformers.Trainer`:

* the loss comes from the model (`outputs.loss`, a per-batch mean); `loss_is_scaled_for_ga = False` so Trainer divides
  it by the gradient-accumulation steps (and the model sets `accepts_loss_kwargs = False`, see `Trainer.training_step`);
* the weight-decay exclusions the model declares (`model.no_weight_decay()`: every 1-D parameter such as biases,
  norms and the learnable temperature, plus `cls_token`, the position table and the MAE mask token, as the original);
* the DWM hint curriculum: `MaskingCurriculumCallback` calls `model.set_masking_epoch(epoch, epochs)` every epoch;
* the model's monitoring metrics (each objective's loss, positive-pair accuracy, alignment, uniformity, LID,
  temperature, DWM hint ratio, kept tokens per view)
  averaged over the logging interval and logged next to the loss (TensorBoard via `report_to="tensorboard"`);
* non-finite losses are skipped and counted in the logs (`nonfinite_losses_skipped`) instead of poisoning the run:
  a batch whose loss is non-finite on any rank is skipped on every rank (one collective decision, so the ranks'
  backward collectives stay paired), its BatchNorm statistics are undone, and the optimizer step of its accumulation
  window is not taken (`optimizer_steps_skipped`: Adam's moments and the weights stay exactly as they were, the
  learning-rate schedule does not advance) and the logged loss is the mean of the batches not skipped;
* bad audio items skipped by the data layer (reported through the batches as ``num_skipped`` / ``skipped_ids``, since
  decoding runs in DataLoader workers) are counted and logged, and [`~AudioMosaicPretrainingTrainer.data_summary`]
  totals them over all ranks: examples trained on, skip events, distinct bad items and their ids;
* exact resumption: `DataEpochCallback` tells the training dataset and the collator the epoch at the start of every
  epoch (accelerate's `set_epoch` does not reach the dataset in the data loader Trainer builds to skip the batches
  of a resumed epoch, nor under multi-process training), so a resumed run draws the views of the uninterrupted one.
  A streaming dataset gets `StreamPositionCallback` instead (``stream_position.py``): each rank's data epoch and
  position in it are saved per checkpoint, and a resumed run continues with exactly the batches it would have seen.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers import __version__ as transformers_version
from transformers.utils import logging

from .checkpoints import ProcessLayoutCallback, RunCountersCallback, restore_run_counters, single_checkpoint_risk
from .distributed import gather_objects
from .distributed import world_size as process_count
from .feature_extraction.audio_datasets import stream_decoder, stream_sharding_problem
from .finetuning import no_weight_decay_parameters
from .stream_position import (
    StreamPositionCallback,
    check_streaming_curriculum,
    check_streaming_layout,
    is_streaming_dataset,
)

logger = logging.get_logger(__name__)

LOGGED_METRICS = (
    "contrastive_loss", "mae_loss", "distill_loss", "distill_loss_masked", "distill_loss_visible", "supervised_loss",
    "accuracy", "alignment", "uniformity", "lid_mean", "lid_var", "temperature",
)


class MaskingCurriculumCallback(TrainerCallback):
    """Sets the model's per-epoch masking state (the DWM hint ratio) at the start of every epoch.

    The epoch is Trainer's (0-based, integer part) and the total is `state.num_train_epochs` (Trainer derives it from
    `max_steps` when training is step-based), so `h = 1 - (epoch / total) ** k` follows DWM's curriculum.
    """

    def on_epoch_begin(self, args, state, control, model=None, **kwargs):
        target = getattr(model, "module", model)  # unwrap DDP if a wrapper is passed
        if target is not None and hasattr(target, "set_masking_epoch"):
            epoch = int(state.epoch or 0)
            total = max(int(math.ceil(state.num_train_epochs or 1)), 1)
            target.set_masking_epoch(epoch, total)


class DataEpochCallback(TrainerCallback):
    """Calls ``set_epoch(epoch)`` on the trainer's training dataset and data collator at the start of every epoch.

    Trainer only calls ``set_epoch`` on its data loader, and accelerate's `DataLoaderShard.set_epoch` forwards it to
    the dataset only when the batch sampler has no inner sampler taking it: in the loader that skips the batches
    already trained on when a run resumes mid-epoch (`SkipBatchSampler`), and in every multi-process loader
    (`BatchSamplerShard`), the dataset never heard of the epoch. A run resumed in epoch ``e >= 1`` then tagged its
    examples with epoch 0 and drew other views than the uninterrupted run. The epoch is the integer part of
    ``state.epoch`` (for a resumed run Trainer restores it from the checkpoint: ``epochs_trained`` + a fraction < 1).
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        epoch = int(math.floor(state.epoch or 0))
        for target in (self.trainer.train_dataset, self.trainer.data_collator):
            if hasattr(target, "set_epoch"):
                target.set_epoch(epoch)


class _WindowEnd(TrainerCallback):
    """Closes the trainer's accumulation window after every optimizer step (the one place it is closed), also one
    the optimizer never saw (fp16's gradient scaler skips the step on inf / NaN gradients without calling it), so that
    a skipped batch's window does not carry into the next one."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer._skipped_in_window = 0
        self.trainer._batches_in_window = 0


def _off_the_global_generator(loader: Any, seed: int) -> Any:
    """Give a (prepared) DataLoader a generator of its own for its workers' seeds if it has none (see
    `AudioMosaicPretrainingTrainer.get_train_dataloader`); accelerate's copies (e.g. `skip_first_batches`) share it."""
    base = getattr(loader, "base_dataloader", loader)  # accelerate's DataLoaderShard wraps the torch DataLoader
    if getattr(base, "generator", None) is None:
        base.generator = torch.Generator().manual_seed(int(seed))
    return loader


def decay_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters that get weight decay: all but those the model lists in `model.no_weight_decay()`."""
    excluded = no_weight_decay_parameters(model)
    return [name for name, param in model.named_parameters() if id(param) not in excluded]


@contextmanager
def _plain_model_class(model: nn.Module):
    """Inside, an FSDP2-sharded model has its own class again (FSDP2's `fully_shard` swaps in a subclass
    `FSDP<Name>` defined in torch); nothing changes for other models. Only for saving, which reads the class (its
    module names the remote-code files and the `auto_map` entry), not the sharded parameters."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch without FSDP2
        yield
        return
    swapped = type(model)
    if not isinstance(model, FSDPModule):
        yield
        return
    model.__class__ = next(base for base in swapped.__bases__ if not issubclass(base, FSDPModule))
    try:
        yield
    finally:
        model.__class__ = swapped


def _running_statistics(model: torch.nn.Module) -> list[torch.Tensor]:
    """The running-statistics buffers of the model's BatchNorm layers (the projector's), updated by a training
    forward: saved before each training batch so that a skipped one can be undone."""
    return [buffer for module in model.modules() if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
            for buffer in (module.running_mean, module.running_var, module.num_batches_tracked) if buffer is not None]


def set_find_unused_parameters(model: nn.Module | None, args: Any) -> bool:
    """Sets ``args.ddp_find_unused_parameters`` from the model when the caller left it unset (None); True if it did
    (`AudioMosaicPretrainingTrainer` sets it back to None once its accelerator has the setting, so that arguments
    reused for another model get that model's choice).

    transformers' default follows activation checkpointing only: off with it, on without. Both are wrong for some
    objectives here: with checkpointing, the MAE and distillation objectives (whose loss does not reach the pooler's
    `fc_norm`) fail at DDP's second step ("Expected to have finished reduction in the prior iteration"); without it,
    the contrastive objective (every parameter in the loss) pays an extra autograd-graph traversal per step and DDP's
    warning that the flag was not needed. The model says which of its parameters the loss never reaches
    (`parameters_outside_the_loss`); DDP looks for unused parameters exactly when there are some.
    """
    if args is None or getattr(args, "ddp_find_unused_parameters", False) is not None:
        return False
    outside = getattr(model, "parameters_outside_the_loss", None)
    if outside is None:
        return False
    names = outside()
    args.ddp_find_unused_parameters = bool(names)
    if names and args.world_size > 1 and args.process_index == 0:
        logger.info("the objectives do not reach %s: ddp_find_unused_parameters=True (DDP runs)", ", ".join(names))
    return True


def contrastive_accumulation_note(model: nn.Module | None, args: Any) -> str | None:
    """What gradient accumulation does not do for the contrastive objective (None when it does not apply).

    The NT-Xent negatives (the all-gathered views) and the synchronised projector BatchNorm statistics are those of
    one micro-batch of all processes (``world_size x per_device_train_batch_size`` clips); accumulating ``k``
    micro-batches averages ``k`` such losses, it does not train with a ``k`` times larger contrastive batch. So halving
    the per-device batch and doubling the accumulation changes the objective (fewer negatives, noisier BatchNorm
    statistics), unlike for a per-example loss.
    """
    config = getattr(model, "config", None)
    steps = int(getattr(args, "gradient_accumulation_steps", 1) or 1)
    if steps <= 1 or "contrastive" not in getattr(config, "objectives", ()):
        return None
    per_step = int(args.world_size) * int(args.per_device_train_batch_size)
    return (
        f"gradient accumulation ({steps} steps) does not enlarge the contrastive batch: each micro-batch's NT-Xent "
        f"loss and projector BatchNorm statistics see {per_step} clips (2 x {per_step} views) of all processes, not "
        f"{per_step * steps}; the optimizer step averages {steps} such losses. For the paper's batch of 512 clips per "
        "process use more processes or a larger --per_device_train_batch_size (with --checkpointing_fraction to fit "
        "memory)."
    )


def adjust_fsdp_mixed_precision(plugin: Any) -> bool:
    """Makes accelerate's FSDP mixed-precision policy reduce gradients in float32 and leave the model's inputs alone;
    True if it changed the policy.

    accelerate turns ``--mixed_precision bf16`` into the policy ``param_dtype = reduce_dtype = bf16`` with FSDP's input
    casting on. Then

    * FSDP reduce-scatters the gradients across ranks in bf16 (8-bit mantissa: a sum over 8-64 ranks loses the low
      bits of every gradient; DDP under autocast reduces float32 gradients), and FSDP2 sums the unsharded gradients of
      an accumulation window in bf16 (torch upcasts them only when ``reduce_dtype != param_dtype``; FSDP1 sums them in
      the parameter dtype either way). With ``reduce_dtype = float32`` the reduce-scatter moves twice the bytes;
      parameters are still gathered and computed in bf16.
    * the root module casts every floating input of the forward to bf16 (FSDP2 ``cast_forward_inputs``, FSDP1
      ``cast_root_forward_inputs``): the spectrograms the MAE targets (and their per-patch normalisation), the DWM
      weights and an AudioMosaic teacher read, the teacher's own inputs and multi-hot labels, all rounded to 8 bits
      of mantissa, unlike under DDP. Autocast still runs the encoder's matmuls in bf16.

    A policy of another shape (a reduce dtype the user chose) is kept.
    """
    policy = getattr(plugin, "mixed_precision_policy", None)
    low = (torch.bfloat16, torch.float16)
    if policy is None or getattr(policy, "param_dtype", None) not in low:
        return False
    if getattr(policy, "reduce_dtype", None) not in (None, policy.param_dtype):
        return False
    changes = {"reduce_dtype": torch.float32}
    for flag in ("cast_forward_inputs", "cast_root_forward_inputs"):  # FSDP2 has the first, FSDP1 both
        if hasattr(policy, flag):
            changes[flag] = False
    plugin.mixed_precision_policy = dataclasses.replace(policy, **changes)
    return True


class AudioMosaicPretrainingTrainer(Trainer):
    """Trainer for `AudioMosaicForPreTraining`; see the module docstring."""

    loss_is_scaled_for_ga = False

    def __init__(self, *args, view_generator: Any = None, **kwargs) -> None:
        model = kwargs.get("model", args[0] if args else None)
        training_args = kwargs.get("args", args[1] if len(args) > 1 else None)
        chosen = set_find_unused_parameters(model, training_args)  # before Trainer builds its accelerator's DDP kwargs
        super().__init__(*args, **kwargs)
        if chosen:  # the accelerator holds it now: the caller's arguments stay as they were given
            training_args.ddp_find_unused_parameters = None
        if adjust_fsdp_mixed_precision(getattr(self.accelerator.state, "fsdp_plugin", None)):
            logger.info("FSDP mixed precision: parameters in %s, gradients reduced in float32, inputs not cast",
                        self.accelerator.state.fsdp_plugin.mixed_precision_policy.param_dtype)
        if self.args.n_gpu > 1:  # set when one process sees several GPUs outside a distributed launch
            gpus = self.args.n_gpu
            raise ValueError(
                f"this pre-training process sees {gpus} GPUs without a distributed launch, so transformers' Trainer "
                "would wrap the model in torch.nn.DataParallel, which AudioMosaic pre-training does not support "
                "(each replica's contrastive loss would see only its own slice of the batch as negatives, and the "
                "replicas' outputs cannot be gathered). Start one process per GPU: `accelerate launch --multi_gpu "
                f"--num_processes {gpus} run_scripts/run_pretrain.py ...` (or `torchrun --nproc_per_node {gpus}`), or "
                "keep this process to one GPU with CUDA_VISIBLE_DEVICES=0."
            )
        accumulation_note = contrastive_accumulation_note(self.model, self.args)
        if accumulation_note and self.args.process_index == 0:
            logger.warning(accumulation_note)
        # computes the views of batches that carry waveforms (views on the device); default: the collator's
        self.view_generator = view_generator
        self._metric_sums: dict[str, float] = defaultdict(float)  # finite values since the last log, this process
        self._metric_counts: Counter[str] = Counter()  # how many of them, per metric
        self.nonfinite_losses = 0
        self.data_items_skipped = 0  # skip events (a bad item met in two epochs counts twice), this process
        self.data_items_trained = 0  # examples in the training batches, this process
        self.skipped_item_events: Counter[str] = Counter()  # bad item id -> times skipped, this process
        self.optimizer_steps_skipped = 0
        self._skipped_in_window = 0  # batches skipped (non-finite loss on some rank) since the last optimizer step
        self._batches_in_window = 0  # training batches since the last optimizer step
        self._skipped_since_log = 0  # training batches (micro-batches) skipped since the last log
        # (sum, count) of the losses of the batches not skipped: since the last log, and in this `train()` call
        self._kept_losses = {"interval": [0.0, 0], "train": [0.0, 0]}
        self._skipped_at_train_start = 0
        self._stream_position = None
        if is_streaming_dataset(self.train_dataset):
            if not hasattr(Trainer, "_init_training_state"):  # the hook `_init_training_state` below overrides
                raise RuntimeError(
                    "exact resumption of streaming runs overrides transformers.Trainer._init_training_state, which "
                    f"this transformers version ({transformers_version}) does not have; install transformers>=5.23,<6 "
                    "(the versions this package supports)."
                )
            # what a stream cannot do (several processes: accumulation, epoch strategies; DWM's epoch curriculum)
            check_streaming_layout(self.args, self.args.world_size)
            if hasattr(self.model.config, "view_masking_specs"):
                check_streaming_curriculum(self.model.config)
            problem = stream_sharding_problem(int(getattr(self.train_dataset, "n_shards", 0)), self.args.world_size,
                                              int(self.args.dataloader_num_workers))
            if problem and self.args.process_index == 0:
                logger.warning(problem)
            self._stream_position = StreamPositionCallback(self)
            self.add_callback(self._stream_position)
        else:
            self.add_callback(DataEpochCallback(self))
        self.add_callback(ProcessLayoutCallback())
        self.add_callback(RunCountersCallback(self))
        self.add_callback(_WindowEnd(self))
        risk = single_checkpoint_risk(self.args, self._stream_position is not None)
        if risk and self.args.process_index == 0:
            logger.warning(risk)
        if hasattr(self.model, "set_masking_epoch"):
            self.add_callback(MaskingCurriculumCallback())
        specs = self.model.config.view_masking_specs() if hasattr(self.model.config, "view_masking_specs") else []
        self._log_hint_ratio = any(name == "dwm" for name, _ in specs)  # fixed by the config: decide once

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        """Trainer's training DataLoader; for a stream (an iterable dataset) with ``dataloader_drop_last``, one that
        drops each pass's last partial batch, as the map-style path does.

        transformers passes ``drop_last`` to map-style datasets only, so each rank's pass over its shards would end with
        a partial batch of its own size: the contrastive loss's all-gathers need the same batch size on every rank
        (a crash on gloo, a hang or wrong negatives on NCCL). accelerate keeps the loader's ``drop_last`` when it
        shards the stream.

        Either loader draws the seed of its workers from a generator of its own, not from torch's global one, whose
        stream draws the masks: with ``dataloader_persistent_workers`` a run resumed mid-pass makes one DataLoader
        more than the uninterrupted run (Trainer's skip of the trained batches), whose first pass would draw once
        more from the global generator, so every mask of the following passes differed from the uninterrupted run's.
        The workers' seeds do not reach the data: the views, crops and shuffles have seeds of their own.
        """
        dataset = self.train_dataset
        if not isinstance(dataset, torch.utils.data.IterableDataset) or not self.args.dataloader_drop_last:
            return _off_the_global_generator(super().get_train_dataloader(), self.args.seed)
        args = self.args
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=self._train_batch_size, collate_fn=self.data_collator, drop_last=True,
            num_workers=args.dataloader_num_workers, pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers,
            multiprocessing_context=args.dataloader_multiprocessing_context,
            prefetch_factor=args.dataloader_prefetch_factor, in_order=args.dataloader_in_order,
        )
        return _off_the_global_generator(self.accelerator.prepare(loader), args.seed)

    def _init_training_state(self, max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint,
                             trial):
        """Trainer's ``(epochs_trained, batches to skip)``; for a stream, this rank's saved position instead (Trainer
        would skip ``global_step`` batches of epoch 0: see `stream_position.py`)."""
        epochs, batches = super()._init_training_state(
            max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
        )
        if resume_from_checkpoint is not None and restore_run_counters(self, resume_from_checkpoint):
            self._skipped_at_train_start = self.nonfinite_losses  # `mean_training_loss` is of this call's batches
        if self._stream_position is not None and resume_from_checkpoint is not None:
            epochs, batches = self._stream_position.load(resume_from_checkpoint, not self.args.ignore_data_skip)
            capped = min(batches, num_update_steps_per_epoch * self.args.gradient_accumulation_steps)
            if capped != batches:  # the positions are those of all the batches
                self._stream_position.resume_plan = None
            batches = capped
            self._arm_row_skip(epochs, batches)
        return epochs, batches

    def _arm_row_skip(self, epoch: int, batches: int) -> None:
        """Have each DataLoader worker of the resumed pass pass over the records already trained on without decoding
        them (`stream_position.WorkerRows`); `get_resumed_dataloader` then skips the rest by iterating."""
        plan, decoder = self._stream_position.resume_plan, stream_decoder(self.train_dataset)
        self._batches_left_to_skip = None
        if batches == 0:
            return
        # fewer shards than processes: accelerate has every process read the whole stream and keep its slice of each
        # global batch (`IterableDatasetShard`), so a process's records end inside a global batch, not at its end
        shared = self.args.world_size > 1 and int(getattr(self.train_dataset, "n_shards", 0)) < self.args.world_size
        if plan is None or decoder is None or not decoder.skips_rows_exactly or shared:
            why = ("no per-worker positions in the checkpoint" if plan is None else
                   "the stream has no AudioMosaic decoder" if decoder is None else
                   "random crops in the decoder" if not decoder.skips_rows_exactly else
                   "every process reads the whole stream: fewer shards than processes")
            logger.info(f"resuming the stream by decoding and skipping its trained batches ({why})")
            return
        rows, then_skip = plan
        decoder.skip_rows(epoch, rows)
        self._batches_left_to_skip = then_skip
        logger.info(f"resuming the stream: DataLoader workers pass over {rows} records undecoded, then {then_skip} "
                    "batch(es) skipped by iterating")

    def get_resumed_dataloader(self, dataloader, num_batches: int):
        """Trainer's skip of the batches trained on in the resumed pass; for a stream whose workers already pass over
        their records undecoded (`_arm_row_skip`), only the few batches left."""
        left = getattr(self, "_batches_left_to_skip", None)
        if left is None:
            return super().get_resumed_dataloader(dataloader, num_batches)
        self._batches_left_to_skip = None
        return super().get_resumed_dataloader(dataloader, left) if left else dataloader

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        return decay_parameter_names(model)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Trainer's save; under FSDP, always a loadable model with the right remote code.

        transformers' own FSDP save falls short twice: with ``fsdp_state_dict_type: SHARDED_STATE_DICT`` (the
        multi-node FSDP config) it writes nothing (checkpoints get only the per-rank shards `pytorch_model_fsdp_0/`,
        enough to resume; the final `--output_dir` no weights and no config), and under FSDP2 it saves through the
        class FSDP2 swapped in (`FSDPAudioMosaicForPreTraining`, defined in torch), so the remote-code files and the
        `auto_map` name torch's FSDP modules instead of `modeling_audiomosaic.py`. Here every rank joins the gather of
        the full state dict (a collective; it lands on rank 0's CPU) and the main process saves it through the
        model's own class: `model.safetensors`, `config.json` and the code files, in every checkpoint and at the end,
        as in DDP runs.
        """
        if not self.is_fsdp_enabled:
            super().save_model(output_dir, _internal_call=_internal_call)
            return
        state_dict = self.accelerator.get_state_dict(self.model)
        with _plain_model_class(self.model):
            self._save(output_dir if output_dir is not None else self.args.output_dir, state_dict=state_dict)
        if self.args.push_to_hub and not _internal_call:  # as Trainer.save_model ends
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def create_optimizer(self, *args, **kwargs):
        optimizer = super().create_optimizer(*args, **kwargs)
        if not getattr(optimizer, "_audiomosaic_guarded", False):
            optimizer.step = self._guarded_step(optimizer.step)
            optimizer._audiomosaic_guarded = True
        return optimizer

    def _guarded_step(self, step):
        """Wraps `optimizer.step`: no step when a batch since the previous one was skipped for a non-finite loss
        (on any rank: the skip decision is collective, see `compute_loss`, so every rank takes or skips the step). Its
        gradients are then not to be trusted (the skipped batch's backward may have left non-finite values in them);
        Trainer zeroes them after the step.

        A call with no training batch since the previous step is not a training step and passes through untouched:
        loading an FSDP2 checkpoint's optimizer state first materialises the state with a step at learning rate 0
        (torch's `_init_optim_state`, on every rank alike); skipping it would leave the state empty, so the sharded
        state would not load and the resumed run would restart Adam's moments.
        """

        def guarded(*args, **kwargs):
            if self._batches_in_window == 0:
                return step(*args, **kwargs)
            skipped = self._skipped_in_window  # the window is closed after the step (`_WindowEnd`)
            # accelerate's wrapper tells Trainer whether the step was skipped (`optimizer_step_was_skipped`): then the
            # learning-rate schedule does not advance either, as for a step skipped by fp16's gradient scaler
            wrapper = getattr(self, "optimizer", None)
            scaled = getattr(wrapper, "scaler", None) is not None
            if skipped:
                self.optimizer_steps_skipped += 1
                logger.warning(f"optimizer step {self.state.global_step + 1} skipped: {skipped} of its batches had a "
                               "non-finite loss")
                if scaled and hasattr(wrapper, "_accelerate_step_called"):
                    # fp16: the scaler called this through accelerate's patched step, which has just set the flag;
                    # cleared, accelerate reports the step as skipped (an overflow) after the scaler's update
                    wrapper._accelerate_step_called = False
                elif hasattr(wrapper, "_is_overflow"):
                    wrapper._is_overflow = True
                return None
            if not scaled and hasattr(wrapper, "_is_overflow"):
                wrapper._is_overflow = False
            return step(*args, **kwargs)

        return guarded

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        skipped = inputs.pop("num_skipped", 0)
        skipped_ids = inputs.pop("skipped_ids", None) or []
        stream_rows = inputs.pop("stream_rows", None)
        if model.training and self._stream_position is not None:
            self._stream_position.batch_trained(stream_rows)
        if "teacher_plan" in inputs:  # first: it reads the views' waveforms, which `device_views` takes
            inputs["teacher_inputs"] = self.device_teacher_inputs(inputs)
        if "waveforms" in inputs:
            inputs["input_values"] = self.device_views(inputs)
        if model.training:
            self.data_items_skipped += int(skipped)
            self.skipped_item_events.update(str(i) for i in skipped_ids)
            values = inputs.get("input_values")
            self.data_items_trained += int(values.shape[0]) if values is not None else 0
        statistics = _running_statistics(model) if model.training else []
        saved = [buffer.clone() for buffer in statistics]
        if model.training:  # training never reads the MAE pixel predictions: no stacked copy (nor fp32 copy) of them
            inputs.setdefault("return_reconstruction", False)
        outputs = model(**inputs)
        loss = outputs.loss
        if model.training:
            loss_value = self._record_metrics(outputs)
            finite_here = math.isfinite(loss_value)
            self._batches_in_window += 1
            if self._finite_on_every_rank(finite_here, loss.device):
                # the losses of the batches trained on, for the means that leave skipped batches out
                self._kept_losses["interval"][0] += loss_value
                self._kept_losses["interval"][1] += 1
                self._kept_losses["train"][0] += loss_value
                self._kept_losses["train"][1] += 1
            else:
                self.nonfinite_losses += 1
                self._skipped_in_window += 1
                self._skipped_since_log += 1
                why = (f"non-finite loss {loss.item()}" if not finite_here
                       else "the loss was non-finite on another process")
                logger.warning(
                    f"step {self.state.global_step + 1}: {why}: batch skipped on every process "
                    f"({self.nonfinite_losses} so far)"
                )
                # the batch leaves no trace: BatchNorm statistics as before its forward (through `.data`: batch_norm
                # saved the buffers for its backward, which in training mode does not read them)
                for buffer, value in zip(statistics, saved):
                    buffer.data.copy_(value)
                # The backward still runs, through the real graph with a zero upstream gradient, so that every rank
                # makes the same collectives (DDP's or FSDP's reductions, the all-gather's gradient, the synchronised
                # BatchNorm); its gradients may be non-finite, and the optimizer step is skipped (`_guarded_step`).
                loss = loss.nan_to_num(0.0, 0.0, 0.0) * 0.0
        return (loss, outputs) if return_outputs else loss

    @staticmethod
    def _finite_on_every_rank(finite_here: bool, device: torch.device) -> bool:
        """Whether every process's loss is finite (one small all-reduce in a multi-process run).

        The skip of a non-finite batch must be one decision of all ranks: a backward holds collectives besides DDP's
        (the contrastive all-gather's gradient, the synchronised projector BatchNorm) or FSDP's, and a rank that
        skipped its batch alone would leave them out while the others made them (a collective mismatch: a crash on
        gloo, a hang on NCCL).
        """
        if process_count() == 1:
            return finite_here
        flag = torch.tensor([int(finite_here)], device=device, dtype=torch.int64)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        return bool(flag.item())

    def device_views(self, inputs: dict[str, Any]) -> torch.Tensor:
        """Views on the model's device from a batch of ``waveforms`` + ``view_parameters`` (pops them from `inputs`).

        The augmentation, Kaldi fbank and normalisation run batched where the waveforms are (moved to the training
        device with the rest of the batch), in float32 with autocast disabled, without gradients. The parameters and
        lengths the collator keeps on the host (`HostTensors`) drive the control flow there.
        """
        generator = self.view_generator or getattr(self.data_collator, "view_generator", None)
        if generator is None or not hasattr(generator, "views_from_parameters"):
            raise ValueError(
                "the batch carries waveforms (views on the device) but the trainer has no ContrastiveViewGenerator: "
                "pass view_generator= to AudioMosaicPretrainingTrainer or use PretrainingViewsCollator."
            )
        waveforms = inputs.pop("waveforms")
        lengths = inputs.pop("waveform_lengths")
        parameters = inputs.pop("view_parameters")
        if "lengths" in parameters:  # the collator's host copy (`HostTensors`): read without waiting for the device
            lengths = parameters["lengths"]
        return generator.views_from_parameters(waveforms, lengths, parameters)

    def device_teacher_inputs(self, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """A CLAP teacher's ``teacher_inputs`` on the model's device from the collator's ``teacher_plan`` and the
        views' ``waveforms`` (the teacher's waveforms resampled there), or its ``teacher_waveforms`` when it sent
        them (pops the teacher's entries from `inputs`; `.clap_device.ClapFeaturesOnDevice`)."""
        front_end = getattr(self.data_collator, "teacher_on_device", None)
        if front_end is None:
            raise ValueError(
                "the batch carries teacher_plan (a CLAP teacher's spectrogram on the device) but the trainer's "
                "data collator has no teacher_on_device: use PretrainingViewsCollator(..., views_on_device=True, "
                "teacher_feature_extractor=ClapFeatureExtractor(...))."
            )
        plan = inputs.pop("teacher_plan")
        waves = inputs.pop("teacher_waveforms", None)
        if waves is None:
            waves = front_end.teacher_waveforms(inputs["waveforms"], plan)
        return front_end(waves, plan)

    @torch.no_grad()
    def _record_metrics(self, outputs) -> float:
        """Adds this batch's metrics to the logging interval's sums; returns its loss as a Python float.

        The loss and every metric come to the host in one copy (on a GPU each separate read would wait for the device
        again).
        """
        names = [name for name in LOGGED_METRICS if getattr(outputs, name, None) is not None]
        values = torch.stack([outputs.loss.detach().float().reshape(())]
                             + [getattr(outputs, name).detach().float().reshape(()) for name in names]).tolist()
        for name, value in zip(names, values[1:]):
            if math.isfinite(value):
                self._metric_sums[name] += value
                self._metric_counts[name] += 1
        if self._log_hint_ratio:
            self._metric_sums["dwm_hint_ratio"] += float(self.model.masking_hint_ratio)
            self._metric_counts["dwm_hint_ratio"] += 1
        kept = getattr(outputs, "num_kept_tokens", None)
        if kept:
            for view, count in enumerate(kept):
                self._metric_sums[f"kept_tokens_view{view}"] += float(count)
                self._metric_counts[f"kept_tokens_view{view}"] += 1
        return values[0]

    def train(self, *args, **kwargs):
        self._kept_losses["train"] = [0.0, 0]
        self._skipped_at_train_start = self.nonfinite_losses
        return super().train(*args, **kwargs)

    def mean_training_loss(self, training_loss: float) -> float:
        """`train()`'s ``training_loss``, or, when batches were skipped for a non-finite loss, the mean loss of the
        batches trained on, over all processes (Trainer's mean counts a skipped batch as 0: its backward ran on a
        zeroed loss). NaN when every batch was skipped. Every rank must call it (a collective when batches were
        skipped; the skip decisions are the same on every rank).
        """
        if self.nonfinite_losses == self._skipped_at_train_start:
            return training_loss
        per_rank = gather_objects(tuple(self._kept_losses["train"]))
        total, count = sum(t for t, _ in per_rank), sum(c for _, c in per_rank)
        return total / count if count else float("nan")

    def data_totals(self) -> tuple[int, int, Counter[str]]:
        """Examples trained on, skip events and skip events per bad item id, totalled over all ranks (a collective:
        every rank must call it)."""
        per_rank = gather_objects((self.data_items_trained, self.data_items_skipped, dict(self.skipped_item_events)))
        by_id: Counter[str] = Counter()
        for _, _, ids in per_rank:
            by_id.update(ids)
        return sum(r[0] for r in per_rank), sum(r[1] for r in per_rank), by_id

    def data_summary(self, max_ids: int = 20) -> dict:
        """Data accounting of the batches trained on, totalled over all ranks (a collective: every rank must call it).
        A resumed run goes on from the counts its checkpoint saved (`RunCountersCallback`).

        Keys: ``examples_trained`` (decoded examples in the training batches), ``skip_events`` (each time a bad item
        was met and skipped; a bad file met in every epoch counts once per epoch), ``distinct_bad_items`` (bad items
        by id), ``bad_item_ids`` (the first ``max_ids`` of them, sorted) with ``skip_events_by_item``,
        ``skip_events_without_id`` (skips a data source reported without ids) and ``text`` (one readable sentence).
        """
        trained, events, by_id = self.data_totals()
        ids = sorted(by_id)
        without_id = events - sum(by_id.values())
        if events:
            listed = ", ".join(ids[:max_ids]) + (f", ... ({len(ids) - max_ids} more)" if len(ids) > max_ids else "")
            text = (f"{trained} decoded examples trained on; bad items skipped {events} times: "
                    f"{len(ids)} distinct bad items ({listed or 'no ids reported'})")
            if without_id and ids:
                text += f", plus {without_id} skips whose item ids were not reported"
        else:
            text = f"{trained} decoded examples trained on; no bad item met"
        return {
            "examples_trained": trained,
            "skip_events": events,
            "distinct_bad_items": len(ids),
            "bad_item_ids": ids[:max_ids],
            "skip_events_by_item": {i: by_id[i] for i in ids[:max_ids]},
            "skip_events_without_id": without_id,
            "text": text,
        }

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the model's metrics to the training logs: means over the logging interval **and over all processes**,
        like Trainer's ``loss`` (each process's metrics are of its own batches), and ``data_items_skipped`` summed over
        the processes. Trainer calls this with ``loss`` on every rank at the same steps: the gather is a collective."""
        if "loss" in logs:
            skipped = self._skipped_since_log  # the same on every rank (collective skip decisions)
            kept = tuple(self._kept_losses["interval"])
            self._skipped_since_log = 0
            self._kept_losses["interval"] = [0.0, 0]
            per_rank = gather_objects((dict(self._metric_sums), dict(self._metric_counts), self.data_items_skipped,
                                       kept))
            if skipped:
                # a skipped batch added 0 to Trainer's loss sum (its backward ran on a zeroed loss): the logged loss is
                # the mean over the interval's batches trained on, all processes (NaN when every batch was skipped)
                total, count = sum(r[3][0] for r in per_rank), sum(r[3][1] for r in per_rank)
                logs["loss"] = round(total / count, 4) if count else float("nan")
            per_rank = [r[:3] for r in per_rank]
            for name in sorted({name for _, counts, _ in per_rank for name in counts}):
                count = sum(counts.get(name, 0) for _, counts, _ in per_rank)  # a non-finite value is not counted
                logs[name] = round(sum(sums.get(name, 0.0) for sums, _, _ in per_rank) / count, 5)
            self._metric_sums.clear()
            self._metric_counts.clear()
            logs["data_items_skipped"] = sum(skipped for _, _, skipped in per_rank)  # undecodable / empty audio
        if self.nonfinite_losses:  # the same on every rank (the skip decisions are collective)
            logs["nonfinite_losses_skipped"] = self.nonfinite_losses
            logs["optimizer_steps_skipped"] = self.optimizer_steps_skipped
        super().log(logs, start_time)
