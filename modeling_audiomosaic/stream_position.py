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
that pass with the same shuffle and skips exactly the batches already trained on, so the resumed run sees the
uninterrupted run's batches, views and losses (``tests/test_streaming_shards.py``).

Skipping without decoding: each batch of a stream says which DataLoader worker made it and where in that worker's raw
records it ends (``stream_rows``, `feature_extraction/stream_rows.py`); `WorkerRows` keeps them and saves them with the
position. A DataLoader delivers a stream's batches round by round (worker 0, 1, ..., each while it has batches), and a
fresh one starts at worker 0: so a resumed run has every worker pass over, undecoded, its records up to the end of the
round before the last trained batch's (`ExampleDecoder.skip_rows`), and Trainer skips by iterating only the batches of
that last round trained already (fewer than the workers). Without positions (another collator, an older checkpoint, a
decoder with random crops) every batch is skipped by iterating: decoded and collated again, about as costly as the
steps' data loading.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence, Sized
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .feature_extraction.audio_datasets import stream_decoder

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


class WorkerRows:
    """Per DataLoader worker, the batches of the pass in progress trained on and where in the worker's raw records the
    last two of them end (``stream_rows`` of the batches), for a resume that passes over the records undecoded.

    Args:
        num_workers: the DataLoader's ``num_workers`` (0: one stream, in the main process).
    """

    def __init__(self, num_workers: int) -> None:
        workers = max(int(num_workers), 1)
        self.batches = [0] * workers
        self.rows = [0] * workers  # records up to the end of each worker's last batch
        self.rows_before = [0] * workers  # ... and up to the end of its batch before that
        self.last_worker: int | None = None
        self.unplaced = 0  # batches without ``stream_rows``

    def add(self, position: Sequence[int] | None) -> None:
        """A batch trained on: ``[worker, records up to its last]`` (``None``: a batch that did not say; a worker
        beyond ``num_workers``, a loader other than the one described: both make a resume skip by decoding)."""
        worker = int(position[0]) if position is not None else -1
        if not 0 <= worker < len(self.batches):
            self.unplaced += 1
            return
        self.rows_before[worker], self.rows[worker] = self.rows[worker], int(position[1])
        self.batches[worker] += 1
        self.last_worker = worker

    def state(self) -> dict[str, Any]:
        return {"batches": self.batches, "rows": self.rows, "rows_before": self.rows_before,
                "last_worker": self.last_worker, "unplaced": self.unplaced}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> WorkerRows:
        new = cls(len(state["batches"]))
        new.batches = [int(b) for b in state["batches"]]
        new.rows = [int(r) for r in state["rows"]]
        new.rows_before = [int(r) for r in state["rows_before"]]
        new.last_worker = None if state["last_worker"] is None else int(state["last_worker"])
        new.unplaced = int(state.get("unplaced", 0))
        return new

    def resume_plan(self, batches: int) -> tuple[list[int], int] | None:
        """``(records each worker passes over undecoded, batches then skipped by iterating)`` for resuming after
        ``batches`` trained batches of the pass, or ``None`` (skip them all by iterating) when the batches did not all
        say where they end or were not delivered round by round.

        The last trained batch is of round ``R`` (its worker's ``R + 1``-th). When that round is complete every worker
        passes over all it gave. Otherwise a fresh DataLoader delivers round ``R`` again from worker 0, so the workers
        that already gave a batch of round ``R`` stop before it (and Trainer skips those batches by iterating), the
        others after their last batch (a worker whose records ended earlier: after all it gave, what follows in it
        makes no batch)."""
        if self.last_worker is None or self.unplaced or sum(self.batches) != int(batches):
            return None
        last_round = self.batches[self.last_worker] - 1
        if max(self.batches) > last_round + 1:  # not round by round (e.g. ``dataloader_in_order`` off)
            return None
        if all(count < last_round for count in self.batches[self.last_worker + 1:]):
            # the round is complete (the workers after the last one gave no batch in the round before: their records
            # ended): the fresh DataLoader's first round is the next one
            return list(self.rows), 0
        in_last_round = [count == last_round + 1 for count in self.batches]
        rows = [before if again else after for before, after, again in zip(self.rows_before, self.rows, in_last_round)]
        return rows, sum(in_last_round)


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
        self.workers = WorkerRows(self._num_workers())  # where in each worker's records they end
        self._resume: tuple[int, int] | None = None
        self._resume_workers: WorkerRows | None = None
        self.resume_plan: tuple[list[int], int] | None = None  # see `WorkerRows.resume_plan`

    def _num_workers(self) -> int:
        return int(getattr(getattr(self.trainer, "args", None), "dataloader_num_workers", 0) or 0)

    def batch_trained(self, stream_rows: Sequence[int] | None) -> None:
        """A batch of this rank's stream went into a training step (``stream_rows``: its ``[worker, records]``)."""
        self.workers.add(stream_rows)

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
        saved = position.get("workers") if batches else None  # absent in older checkpoints
        self._resume_workers = WorkerRows.from_state(saved) if saved else None
        self.resume_plan = self._resume_workers.resume_plan(batches) if self._resume_workers is not None else None
        return epoch, batches

    def on_train_begin(self, args, state, control, **kwargs):
        if self._resume is None:
            self.epoch, self.batches = -1, 0

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self._resume is not None:
            self.epoch, self.batches = self._resume
            self.workers = self._resume_workers or WorkerRows(self._num_workers())
            self._resume, self._resume_workers = None, None
        else:
            self.epoch, self.batches = self.epoch + 1, 0
            self.workers = WorkerRows(self._num_workers())
        dataset = self.trainer.train_dataset
        for target in (dataset, self.trainer.data_collator, stream_decoder(dataset)):
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
                    "order": getattr(self.trainer.train_dataset, ORDER_SETTINGS, None),
                    "workers": self.workers.state()}
        tmp = folder / (POSITION_FILE.format(rank=rank) + ".tmp")
        tmp.write_text(json.dumps(position))
        os.replace(tmp, folder / POSITION_FILE.format(rank=rank))  # never half a file


__all__ = [
    "ORDER_SETTINGS",
    "POSITION_FILE",
    "StreamPositionCallback",
    "WorkerRows",
    "check_streaming_curriculum",
    "check_streaming_layout",
    "is_streaming_dataset",
    "stream_position_problems",
    "tag_stream_order",
]
