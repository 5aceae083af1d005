"""Exact mid-epoch resumption of streaming pre-training runs (``--streaming true``).

Trainer knows no epoch length for an iterable dataset: it sets ``num_update_steps_per_epoch = max_steps`` and, on
resume, skips ``global_step`` batches of its epoch 0 (``Trainer._init_training_state``). A stream, though, ends after
one pass over its shards (Trainer then starts its next epoch, and ``set_epoch`` reshuffles the shards and the buffer
with ``seed + epoch``), so a run resumed after the first pass skipped the wrong batches of the wrong epoch; and every
rank reaches the end of its own shards at its own step. The view seeds depended on the epoch too
(``collators.batch_seed(seed, epoch, ids)``), and Trainer's ``state.epoch`` (``epoch + step / max_steps``) does not
tell it at the start of a pass.

[`StreamPositionCallback`] keeps, per rank, the data epoch in progress and the batches of it consumed; it writes them
to ``stream_position_<rank>.json`` in every checkpoint, tells the dataset and the collator the epoch at the start of
every pass, and gives `AudioMosaicPretrainingTrainer` the ``(epoch, batches)`` to resume from. Trainer then restarts
that pass with the same shuffle and skips exactly the batches already trained on (by iterating: skipped examples are
decoded and collated again, about as costly as the steps' data loading), so the resumed run sees the uninterrupted
run's batches, views and losses (``tests/test_streaming_shards.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sized
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

POSITION_FILE = "stream_position_{rank}.json"
"""Per-rank position file written into every checkpoint of a streaming run."""

ORDER_SETTINGS = "audiomosaic_stream_order"
"""Attribute of a stream holding the run's settings that fix its order (besides the seed and the DataLoader workers),
saved in the position files and compared when a run resumes (`tag_stream_order`)."""


def tag_stream_order(stream: Any, **settings: Any) -> Any:
    """Record on ``stream`` the flags that fix the order of its rows (``--shuffle_buffer_size``,
    ``--shuffle_input_shards``, ``--max_train_samples``): a run resumed with other values would skip other batches
    than it trained on. Returns ``stream``."""
    setattr(stream, ORDER_SETTINGS, dict(settings))
    return stream


def is_streaming_dataset(dataset: Any) -> bool:
    """A dataset without a length (an iterable stream), for which Trainer cannot place a resumed step in an epoch."""
    return dataset is not None and not isinstance(dataset, Sized)


def stream_position_problems(folder: str | os.PathLike, world_size: int | None, rank: int | None = None) -> list[str]:
    """What is missing for resuming a streaming run from ``folder``: the position file of each rank (with ``rank``:
    of that rank only, as a node-local copy of the checkpoint holds it)."""
    ranks = [rank] if rank is not None else range(max(int(world_size or 1), 1))
    missing = [r for r in ranks if not (Path(folder) / POSITION_FILE.format(rank=r)).is_file()]
    if not missing:
        return []
    return [f"stream positions of ranks {missing} missing (a streaming run saves stream_position_<rank>.json; the "
            "checkpoint comes from a non-streaming run, or its save was interrupted)"]


def check_streaming_layout(training_args: Any, world_size: int) -> None:
    """Refuse what a multi-process stream cannot do: each rank's pass over its own shards ends at its own step (shards
    differ in length, bad items are dropped), and Trainer ends an epoch on that rank alone. Then

    * gradient accumulation would end the rank's last accumulation window early and reduce its gradients while the
      other ranks are still accumulating (a collective mismatch: a crash or a hang);
    * ``epoch`` logging or saving would log (a collective) or save (a collective under FSDP; a checkpoint without
      the other ranks' files under DDP) on that rank alone.

    Steps stay in lockstep otherwise (one batch per rank per step; a rank past its pass reads its next pass).
    """
    if world_size <= 1:
        return
    problems = []
    if training_args.gradient_accumulation_steps > 1:
        problems.append(f"--gradient_accumulation_steps {training_args.gradient_accumulation_steps} (use a larger "
                        "--per_device_train_batch_size or more processes for the same global batch)")
    for name in ("logging_strategy", "save_strategy"):
        if str(getattr(getattr(training_args, name), "value", getattr(training_args, name))) == "epoch":
            problems.append(f"--{name} epoch (use steps: --{name.split('_')[0]}_steps N)")
    if problems:
        raise ValueError(
            f"streaming with {world_size} processes: each process's pass over its shards ends at its own step, so "
            f"these would pair collectives of different processes or save one process's part: {'; '.join(problems)}."
        )


def check_streaming_curriculum(config: Any) -> None:
    """Refuse DWM's epoch curriculum on a stream: the hint ratio ``1 - (epoch / epochs) ** k`` needs the number of
    epochs, and a stream has none (Trainer counts passes against ``sys.maxsize``), so the ratio would stay 1.0 (plain
    random masking) for the whole run. A fixed ratio (``dwm_abs_hint_ratio``) works."""
    if any(name == "dwm" for name, _ in config.view_masking_specs()) and config.dwm_abs_hint_ratio < 0:
        raise ValueError(
            "--masking_mode dwm with --streaming: DWM's hint curriculum runs over a known number of epochs and a "
            "stream has none, so the hint ratio would stay 1.0 (random masking) all run. Fix the ratio with "
            "--config_overrides '{\"dwm_abs_hint_ratio\": 0.5}' (any value in [0, 1]), or train on map-style data."
        )


class StreamPositionCallback(TrainerCallback):
    """Tracks ``(data epoch, batches consumed in it)`` of this rank, saves it per checkpoint and restores it.

    Args:
        trainer: the Trainer whose ``train_dataset`` and ``data_collator`` get ``set_epoch(epoch)`` at the start of
            every pass (replacing `DataEpochCallback`, whose ``floor(state.epoch)`` is wrong for streams).
    """

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.epoch = -1  # the pass in progress (-1: none started)
        self.batches = 0  # batches of it consumed by this rank
        self._resume: tuple[int, int] | None = None

    def load(self, checkpoint: str | os.PathLike, skip_data: bool = True) -> tuple[int, int]:
        """Read this rank's position from ``checkpoint``: ``(epoch, batches to skip)`` for Trainer's resumption
        (``batches`` is 0 when ``skip_data`` is off: ``--ignore_data_skip``)."""
        rank = int(getattr(self.trainer.args, "process_index", 0))
        path = Path(checkpoint) / POSITION_FILE.format(rank=rank)
        if not path.is_file():
            raise ValueError(
                f"cannot resume a streaming run from {checkpoint}: {path.name} is missing (the checkpoint was written "
                "by a non-streaming run, with another number of processes, or its save was interrupted). Resume from "
                "a checkpoint of a streaming run with the same number of processes."
            )
        position = json.loads(path.read_text())
        saved_workers = position.get("dataloader_num_workers")  # absent in older checkpoints
        workers = int(getattr(self.trainer.args, "dataloader_num_workers", 0))
        if skip_data and saved_workers is not None and int(saved_workers) != workers:  # 0 and 1 differ too (test)
            # datasets deals a stream's shards to the DataLoader workers and seeds each worker's shuffle buffer
            # with its worker id; the loader takes batches from the workers in turn: the batch order is the workers'
            raise ValueError(
                f"cannot resume the streaming run from {checkpoint} with --dataloader_num_workers {workers}: it was "
                f"written with {saved_workers}, and a stream's batch order depends on the number of DataLoader "
                "workers (each reads its own shards through its own shuffle buffer), so the batches skipped and "
                f"those that follow would not be the uninterrupted run's. Resume with --dataloader_num_workers "
                f"{saved_workers} (or --ignore_data_skip true to start the pass over without skipping)."
            )
        saved_order = position.get("order")  # absent in older checkpoints
        order = getattr(self.trainer.train_dataset, ORDER_SETTINGS, None)
        if skip_data and saved_order is not None and order is not None and saved_order != order:
            def shown(value: Any) -> str:
                return "unset" if value is None else str(value)

            changed = [f"--{key} {shown(order.get(key))} (it was written with {shown(saved_order.get(key))})"
                       for key in sorted(set(order) | set(saved_order)) if order.get(key) != saved_order.get(key)]
            raise ValueError(
                f"cannot resume the streaming run from {checkpoint} with {', '.join(changed)}: these flags fix the "
                "order of the stream's rows, so the batches skipped and those that follow would not be the "
                "uninterrupted run's. Resume with the values it was written with (or --ignore_data_skip true to start "
                "the pass over without skipping)."
            )
        epoch, batches = int(position["epoch"]), int(position["batches"]) if skip_data else 0
        self._resume = (epoch, batches)
        return epoch, batches

    def on_train_begin(self, args, state, control, **kwargs):
        if self._resume is None:
            self.epoch, self.batches = -1, 0

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self._resume is not None:
            self.epoch, self.batches = self._resume
            self._resume = None
        else:
            self.epoch, self.batches = self.epoch + 1, 0
        for target in (self.trainer.train_dataset, self.trainer.data_collator):
            if hasattr(target, "set_epoch"):
                target.set_epoch(self.epoch)

    def on_step_end(self, args, state, control, **kwargs):
        self.batches += int(args.gradient_accumulation_steps)

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.batches == 0 and int(getattr(args, "world_size", 1)) > 1:
            # Trainer stops a process whose pass gave no batch, alone: the others would wait for it in their next
            # collective until the timeout (NCCL) or pair it with its final save's (gloo)
            raise RuntimeError(
                f"process {getattr(args, 'process_index', 0)}'s pass {self.epoch} over its shards gave no full batch "
                f"of {args.per_device_train_batch_size} clips (its shards hold fewer good clips than "
                "--per_device_train_batch_size), so it would stop training alone while the other processes wait for "
                "it. Use fewer processes, a smaller --per_device_train_batch_size, or more clips per shard."
            )

    def on_save(self, args, state, control, **kwargs):
        # every rank writes its own file, as Trainer does with rng_state_<rank>.pth (multi-node: each node's disk)
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        rank = int(getattr(args, "process_index", 0))
        position = {"epoch": self.epoch, "batches": self.batches, "global_step": state.global_step,
                    "dataloader_num_workers": int(args.dataloader_num_workers),
                    "order": getattr(self.trainer.train_dataset, ORDER_SETTINGS, None)}
        tmp = folder / (POSITION_FILE.format(rank=rank) + ".tmp")
        tmp.write_text(json.dumps(position))
        os.replace(tmp, folder / POSITION_FILE.format(rank=rank))  # never half a file


__all__ = [
    "ORDER_SETTINGS",
    "POSITION_FILE",
    "StreamPositionCallback",
    "check_streaming_curriculum",
    "check_streaming_layout",
    "is_streaming_dataset",
    "stream_position_problems",
    "tag_stream_order",
]
