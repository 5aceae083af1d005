"""Pre-training checkpoints beyond what Trainer writes, and whether a checkpoint can be resumed from.

* `ProcessLayoutCallback` / `layout_change`: the process layout of the run that wrote a checkpoint
  (``process_layout.json``), so that a resume with another number of processes is told (a stream refuses it);
* `RunCountersCallback` / `restore_run_counters`: the run's counters (skipped batches and optimizer steps, the data
  accounting) in every checkpoint (``run_counters.json``), so that a resumed run's logs and summary go on from them;
* `checkpoint_problems` / `last_complete_checkpoint`: what makes a ``checkpoint-*`` folder unusable (a run killed
  while saving), checked before a resume;
* `single_checkpoint_risk`: why ``save_total_limit: 1`` can leave nothing to resume from.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from safetensors import safe_open
from transformers import TrainerCallback
from transformers.utils import logging

from .stream_position import stream_position_problems

logger = logging.get_logger(__name__)


COUNTERS_FILE = "run_counters.json"


class RunCountersCallback(TrainerCallback):
    """Writes the run's counters into every checkpoint (`COUNTERS_FILE`, global rank 0) so that a resumed run's logs
    and ``pretrain_summary.json`` go on counting from them, as the uninterrupted run's do: skipped non-finite batches
    and optimizer steps (the same on every rank) and the data accounting totalled over all ranks (examples trained,
    skip events, skip events per bad item). Every rank takes part in the gather of its save."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        trainer = self.trainer
        trained, events, by_item = trainer.data_totals()  # a collective: every rank
        if not state.is_world_process_zero:
            return
        counters = {"nonfinite_losses": trainer.nonfinite_losses,
                    "optimizer_steps_skipped": trainer.optimizer_steps_skipped,
                    "data_items_trained": trained, "data_items_skipped": events,
                    "skipped_item_events": dict(by_item)}
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / COUNTERS_FILE).write_text(json.dumps(counters))


def restore_run_counters(trainer: Any, folder: str | os.PathLike) -> bool:
    """Sets `trainer`'s counters from a checkpoint's `COUNTERS_FILE` (True if it has one): the skip counters on every
    rank, the data totals on global rank 0 only (the logs and the summary sum them over the ranks)."""
    path = Path(folder) / COUNTERS_FILE
    if not path.is_file():
        return False
    counters = json.loads(path.read_text())
    trainer.nonfinite_losses = int(counters["nonfinite_losses"])
    trainer.optimizer_steps_skipped = int(counters["optimizer_steps_skipped"])
    if trainer.args.process_index == 0:
        trainer.data_items_trained = int(counters["data_items_trained"])
        trainer.data_items_skipped = int(counters["data_items_skipped"])
        trainer.skipped_item_events = Counter({str(k): int(v) for k, v in counters["skipped_item_events"].items()})
    return True


LAYOUT_FILE = "process_layout.json"


class ProcessLayoutCallback(TrainerCallback):
    """Global rank 0 writes the run's process layout into every checkpoint (`LAYOUT_FILE`: processes, batch per
    process, accumulation steps), so that a resume with another number of processes is told (`layout_change`)."""

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        layout = {"world_size": int(args.world_size), "per_device_train_batch_size": args.per_device_train_batch_size,
                  "gradient_accumulation_steps": args.gradient_accumulation_steps}
        (folder / LAYOUT_FILE).write_text(json.dumps(layout))


def layout_change(folder: str | os.PathLike, world_size: int) -> str | None:
    """``"written by a run of N processes, resumed with M"`` when the checkpoint's `LAYOUT_FILE` names another
    number of processes than ``world_size``; ``None`` when it is the same or unknown (older checkpoints, or a node
    that does not see global rank 0's files)."""
    path = Path(folder) / LAYOUT_FILE
    if not path.is_file():
        return None
    saved = int(json.loads(path.read_text())["world_size"])
    return None if saved == world_size else f"written by a run of {saved} processes, resumed with {world_size}"


def checkpoint_problems(
    folder: str | os.PathLike, world_size: int | None = None, rank: int | None = None, *, streaming: bool = False,
    local_rank: int | None = None,
) -> list[str]:
    """What makes a `checkpoint-*` folder unusable for resuming (empty list: complete).

    A run killed while saving (kill -9, pre-emption, OOM) leaves a folder that `get_last_checkpoint` would still pick.
    Checked: `trainer_state.json` parses (rank 0 writes it after the weights), the weights' safetensors headers parse
    (or FSDP's own model state is there), the optimizer state is there (`optimizer.pt`; under FSDP accelerate's
    `optimizer.bin` or sharded `optimizer_0/`), every sharded-state folder (`torch.distributed.checkpoint`,
    `pytorch_model_fsdp_0/`, `optimizer_0/`) has its `.metadata` (written last, once every rank's shard is
    complete), every torch file (`optimizer.pt`, `scheduler.pt`, `rng_state*.pth`) is an intact zip archive (CRCs),
    and the RNG states of ranks `0..world_size-1` are all there (`world_size` of the
    resuming run; without it, that the ranks present are contiguous from 0). ``streaming``: the checkpoint must
    also hold the stream position of every rank (`stream_position.StreamPositionCallback`; with ``rank``, of that
    rank).

    With ``rank`` (a multi-process run checking the folder as that rank sees it), only that rank's own RNG file
    ``rng_state_<rank>.pth`` is required: Trainer makes every rank load just its own (by global rank), and on
    node-local disks a node's copy holds only its own ranks' files. `modeling_audiomosaic.multinode` gathers every
    rank's verdict, so the checkpoint still has to be complete for all ranks. The members' CRCs (which read whole
    files) are checked by rank 0 and by the first process of every node (``local_rank`` 0: node-local copies), and
    each rank checks its own RNG file's; the others check that every torch file is a whole zip archive (what a save
    cut short is not), so a resume of many processes reads the optimizer state once per node, not once per process.
    """
    folder = Path(folder)
    problems = []
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError) as err:
        problems.append(f"trainer_state.json unreadable ({type(err).__name__})")
    weights = sorted(folder.glob("*.safetensors"))
    fsdp_model = sorted(folder.glob("pytorch_model_fsdp*"))  # FSDP: `_0/` folder (sharded) or `.bin` (full state)
    if not weights and not fsdp_model:
        problems.append("no safetensors weights")
    for path in weights:
        try:
            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        except Exception as err:  # truncated header / file
            problems.append(f"{path.name} unreadable ({type(err).__name__})")
    fsdp_optimizer = [p for p in folder.glob("optimizer_*") if p.is_dir()] + sorted(folder.glob("optimizer.bin"))
    if not (folder / "optimizer.pt").exists() and not fsdp_optimizer:
        problems.append("optimizer.pt missing")
    if not (folder / "scheduler.pt").exists():
        problems.append("scheduler.pt missing")
    for shards in sorted(p for p in fsdp_model + fsdp_optimizer if p.is_dir()):
        if not (shards / ".metadata").is_file():
            problems.append(f"{shards.name}/.metadata missing (sharded state not completely written)")
    rng = sorted(folder.glob("rng_state*.pth"))
    if rank is not None:
        own = "rng_state.pth" if not world_size or world_size <= 1 else f"rng_state_{rank}.pth"
        if not (folder / own).exists():
            problems.append(f"{own} missing (the RNG state of rank {rank})")
    elif not rng:
        problems.append("no rng_state*.pth")
    else:
        ranks = sorted(int(p.stem.rsplit("_", 1)[1]) for p in rng if p.stem != "rng_state")
        expected = list(range(world_size)) if world_size and world_size > 1 else list(range(len(ranks)))
        if ranks != expected:
            problems.append(f"rng states of ranks {ranks}, expected {expected}")
    own_rng = None if rank is None else (f"rng_state_{rank}.pth" if world_size and world_size > 1 else "rng_state.pth")
    for path in sorted(folder.glob("*.pt")) + rng:
        try:
            with zipfile.ZipFile(path) as archive:  # a file cut short has no central directory: BadZipFile
                # the CRCs of every member read the whole file (optimizer.pt: ~0.7 GB for ViT-B): one process per
                # node does that for the shared files (verdicts are gathered), each process for its own RNG file
                deep = rank in (None, 0) or local_rank == 0 or path.name == own_rng
                bad = archive.testzip() if deep else None
            if bad is not None:
                problems.append(f"{path.name}: corrupt member {bad}")
        except (OSError, zipfile.BadZipFile) as err:
            problems.append(f"{path.name} unreadable ({type(err).__name__})")
    if streaming:
        problems += stream_position_problems(folder, world_size, rank)
        change = layout_change(folder, world_size or 1)
        if change:  # the positions are those of the old split of the shards between the processes
            problems.append(f"{change}: a stream resumes only with the same number of processes (each process's "
                            "position is in its own share of the shards)")
    return problems


def last_complete_checkpoint(
    output_dir: str | os.PathLike, world_size: int | None = None, *, streaming: bool = False
) -> str | None:
    """The newest `checkpoint-<step>` folder of `output_dir` that [`checkpoint_problems`] finds complete; incomplete
    newer ones (a run killed while saving) are skipped with a warning. `None` if there is none."""
    folders = [p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    for folder in sorted(folders, key=lambda p: int(p.name.split("-")[-1]), reverse=True):
        problems = checkpoint_problems(folder, world_size, streaming=streaming)
        if not problems:
            return str(folder)
        logger.warning(f"skipping incomplete checkpoint {folder}: {'; '.join(problems)}")
    return None


def single_checkpoint_risk(args: Any, streaming: bool) -> str | None:
    """Why ``save_total_limit: 1`` can leave no resumable checkpoint in a multi-process or streaming run (else None).

    Trainer's rank 0 deletes the older checkpoints right after writing its own files of the new one, with no barrier:
    the other ranks may still be writing theirs (``rng_state_<rank>.pth``), and every rank writes its stream position
    (``stream_position_<rank>.json``) and rank 0 the process layout after that, in the save callbacks. A run killed in
    that window keeps only an incomplete checkpoint, which `--resume_from_checkpoint last` skips.
    """
    if args.save_total_limit != 1 or (int(args.world_size) <= 1 and not streaming):
        return None
    return ("save_total_limit 1: the previous checkpoint is deleted before every process has finished writing the "
            "new one (its RNG states" + (" and stream positions" if streaming else "") + "), so a run killed while "
            "saving can be left with no complete checkpoint to resume from; keep at least 2 (--save_total_limit 2).")


__all__ = [
    "COUNTERS_FILE",
    "LAYOUT_FILE",
    "ProcessLayoutCallback",
    "RunCountersCallback",
    "checkpoint_problems",
    "last_complete_checkpoint",
    "layout_change",
    "restore_run_counters",
    "single_checkpoint_risk",
]
