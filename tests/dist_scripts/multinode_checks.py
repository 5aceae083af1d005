"""Run under torchrun with 2 processes, each acting as its own node (local rank 0, its own folder as its disk): the
collective checks of `modeling_audiomosaic.multinode`. Each rank writes ``result<rank>.json`` with the verdicts it
reached (paths made rank-independent) into the folder given as the only argument; tests/test_multinode.py compares."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from modeling_audiomosaic.multinode import (
    check_output_dir_sharing,
    check_same_dataset,
    on_every_rank,
    resolve_resume_checkpoint,
)


def write_checkpoint(folder: Path, rank: int, optimizer: bool = True, rng: bool = True) -> None:
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}")
    save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))
    torch.save({}, folder / "scheduler.pt")
    if optimizer:
        torch.save({}, folder / "optimizer.pt")
    if rng:
        torch.save({"cpu": torch.zeros(1)}, folder / f"rng_state_{rank}.pth")


class FakeDataset:
    """A map-style training set as `check_same_dataset` reads it: a length and an ``id`` column under ``.raw``."""

    def __init__(self, ids):
        self.raw = type("Raw", (), {"column_names": ["id"], "__getitem__": lambda s, key: list(ids)})()
        self.ids = ids

    def __len__(self):
        return len(self.ids)


def verdict(fn):
    try:
        return str(fn())
    except Exception as err:  # the message every rank got
        return f"{type(err).__name__}: {err}"


def main(base: Path) -> None:
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    own = base / f"node{rank}"  # this "node"'s disk

    def load():
        if rank == 1:
            raise FileNotFoundError("no such folder on this node: data/audio")
        return "loaded"

    # rank 0's disk: checkpoints 1-3 complete; rank 1's: checkpoint-1 lacks its RNG file, checkpoint-3 its optimizer
    write_checkpoint(own / "checkpoint-1", rank, rng=rank == 0)
    write_checkpoint(own / "checkpoint-2", rank)
    write_checkpoint(own / "checkpoint-3", rank, optimizer=rank == 0)
    results = {
        "on_every_rank": verdict(lambda: on_every_rank(load, "loading the training data")),
        "last": verdict(lambda: Path(resolve_resume_checkpoint("last", own, world, rank)).name),
        "explicit": verdict(lambda: resolve_resume_checkpoint(str(own / "checkpoint-1"), own, world, rank)),
        "sharing_own_dirs": verdict(lambda: check_output_dir_sharing(own, rank, 0, world, False)),
        "sharing_shared_dir": verdict(lambda: check_output_dir_sharing(base / "shared", rank, 0, world, False)),
        "sharing_shared_dir_each_node": verdict(lambda: check_output_dir_sharing(base / "shared", rank, 0, world,
                                                                                  True)),
        "data": verdict(lambda: check_same_dataset(FakeDataset(["a", "b", "c"][: 3 - rank]), world)),
        "data_same": verdict(lambda: check_same_dataset(FakeDataset(["a", "b"]), world)),
    }
    results = {k: v.replace(str(own), "<own dir>") for k, v in results.items()}
    (base / f"result{rank}.json").write_text(json.dumps(results, indent=1))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
