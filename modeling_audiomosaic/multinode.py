"""Checks that keep a multi-node pre-training run from hanging or diverging when the nodes do not see the same files.

Under ``accelerate launch --num_machines N`` (or ``torchrun --nnodes N``) every node has its own disk unless the
output and data folders sit on a shared filesystem. What then goes wrong only across nodes (README "Multi-node
pre-training"):

* an error raised on one node only (a data path that exists only on node 0, a checkpoint that only node 0 holds)
  leaves the other nodes waiting in their next collective until the process-group timeout. [`on_every_rank`] and
  [`resolve_resume_checkpoint`] gather every rank's verdict, so every rank stops with the same message;
* ``--resume_from_checkpoint last`` picked per rank could name different checkpoints on different nodes:
  [`resolve_resume_checkpoint`] agrees on the newest checkpoint complete for every rank;
* Trainer writes the model, optimizer, scheduler and trainer state from global rank 0 only (``save_on_each_node``
  False, the default) and each rank's ``rng_state_<global rank>.pth`` from that rank. With node-local output dirs the
  other nodes' disks then hold only their ranks' RNG files; with ``--save_on_each_node true`` and a *shared* output
  dir, the local rank 0 of every node writes the same files at once. [`check_output_dir_sharing`] finds out which
  case a run is in (a file written by global rank 0, looked for by every rank): the latter is an error, the former a
  warning;
* ranks that read different data (a folder synced differently on one node) silently break the sampler's disjoint
  split: [`check_same_dataset`] compares the length and the item ids of the map-style training set on every rank.

In a single process every function reduces to its local check (no collective is called).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .checkpoints import checkpoint_problems
from .distributed import gather_objects

logger = logging.getLogger(__name__)

T = TypeVar("T")

SHARED_CHECKPOINT_HINT = (
    "every rank loads the checkpoint from its own node's disk: put --output_dir on a filesystem all nodes share, or "
    "copy the checkpoint folder (with every node's rng_state_<rank>.pth) to each node, or train with "
    "--save_on_each_node true when every node has its own local --output_dir"
)


def _where(rank: int, host: str) -> str:
    return f"rank {rank} (host {host})"


def on_every_rank(fn: Callable[[], T], what: str) -> T:
    """Run ``fn()`` on every rank; if it raises on any rank, raise on *every* rank, naming the ranks that failed.

    Without this, a rank whose ``fn`` fails (a path that exists on one node only) exits while the others go on to
    their first collective and wait there until the process-group timeout. A collective: every rank must call it.
    In a single process ``fn`` runs unwrapped."""
    try:
        value = fn()
        error = None
    except Exception as err:  # reported to every rank below, then re-raised here
        value, error = None, err
    reports = gather_objects((error is None, None if error is None else f"{type(error).__name__}: {error}",
                              socket.gethostname()))
    if len(reports) == 1:
        if error is not None:
            raise error
        return value
    failed = [(rank, message, host) for rank, (ok, message, host) in enumerate(reports) if not ok]
    if failed:
        details = "; ".join(f"{_where(rank, host)}: {message}" for rank, message, host in failed)
        summary = f"{what} failed on {len(failed)} of {len(reports)} ranks: {details}"
        if error is not None:
            raise RuntimeError(summary) from error
        raise RuntimeError(summary)
    return value


def _checkpoint_steps(output_dir: str | os.PathLike) -> list[int]:
    folders = [p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted((int(p.name.split("-")[-1]) for p in folders), reverse=True)


def resolve_resume_checkpoint(
    requested: str | None, output_dir: str | os.PathLike, world_size: int = 1, rank: int = 0, *,
    streaming: bool = False, local_rank: int | None = None,
) -> str | None:
    """The checkpoint folder to resume from, checked on every rank (a collective when ``world_size > 1``).

    ``requested``: ``None`` (no resume), ``"last"`` (the newest ``checkpoint-<step>`` of ``output_dir`` that is
    complete as *every* rank sees it: ranks agree round by round on the newest step complete for all) or a folder.
    Each rank checks the folder as it sees it (`checkpoint_problems` with its own RNG file, ``rng_state_<rank>.pth``);
    if any rank finds a problem, every rank raises ``ValueError`` naming the ranks, their hosts and the problems.
    ``streaming``: the checkpoint must also hold the ranks' stream positions (`stream_position`). ``local_rank``: this
    process's index on its node (the first process of each node checks the CRCs of the files it sees).
    """
    if requested is None:
        return None
    own_rank = rank if world_size > 1 else None
    host = socket.gethostname()
    if requested != "last":
        problems = checkpoint_problems(requested, world_size, own_rank, streaming=streaming, local_rank=local_rank)
        if world_size <= 1:
            if problems:
                raise ValueError(f"--resume_from_checkpoint {requested} is incomplete: {'; '.join(problems)}")
            return requested
        bad = [(r, h, p) for r, (h, p) in enumerate(gather_objects((host, problems))) if p]
        if bad:
            details = "; ".join(f"{_where(r, h)}: {', '.join(p)}" for r, h, p in bad)
            raise ValueError(f"--resume_from_checkpoint {requested} is incomplete on {len(bad)} of {world_size} "
                             f"ranks: {details}. In a multi-node run {SHARED_CHECKPOINT_HINT}.")
        return requested

    verdicts: dict[int, list[str]] = {}

    def complete(step: int) -> bool:
        if step not in verdicts:
            verdicts[step] = checkpoint_problems(Path(output_dir) / f"checkpoint-{step}", world_size, own_rank,
                                                 streaming=streaming, local_rank=local_rank)
            if verdicts[step]:
                logger.warning("skipping incomplete checkpoint %s: %s", Path(output_dir) / f"checkpoint-{step}",
                               "; ".join(verdicts[step]))
        return not verdicts[step]

    steps = _checkpoint_steps(output_dir)
    bound = None
    while True:  # each round the bound drops or every rank agrees: at most one round per checkpoint
        mine = next((s for s in steps if (bound is None or s <= bound) and complete(s)), None)
        if world_size <= 1:
            agreed = mine
            break
        newest = gather_objects((host, mine))
        if any(step is None for _, step in newest):
            agreed = None
            break
        if len({step for _, step in newest}) == 1:
            agreed = mine
            break
        bound = min(step for _, step in newest)
    if agreed is None:
        message = f"--resume_from_checkpoint last: no complete checkpoint in {output_dir}"
        if world_size > 1:
            message += (" that every rank sees complete. In a multi-node run " + SHARED_CHECKPOINT_HINT)
        raise ValueError(message)
    return str(Path(output_dir) / f"checkpoint-{agreed}")


def sharing_verdict(reports: list[tuple[int, int, bool]], save_on_each_node: bool,
                    sharded_checkpoints: bool = False) -> tuple[str, str | None]:
    """Decide from ``(global rank, local rank, saw rank 0's file)`` per rank whether the output dir is shared.

    Returns ``(kind, message)``: ``kind`` is ``"single-node"`` (one local rank 0), ``"shared"`` or ``"per-node"``
    (some node did not see rank 0's file), and ``message`` is an error (``kind == "error"``: save_on_each_node with a
    shared dir, or per-rank FSDP shards (``sharded_checkpoints``) on node-local dirs), a warning (per-node dirs
    without save_on_each_node) or ``None``."""
    nodes = sum(1 for _, local, _ in reports if local == 0)
    if nodes <= 1:
        return "single-node", None
    blind = sorted(rank for rank, _, saw in reports if not saw)
    if blind and sharded_checkpoints:
        return "error", (
            f"--output_dir is not shared by all nodes (ranks {blind} did not see a file global rank 0 wrote there), "
            "but FSDP with fsdp_state_dict_type SHARDED_STATE_DICT writes one shard per rank into the checkpoint: no "
            "node would hold a checkpoint it can resume from. Put --output_dir on a filesystem all nodes share, or "
            "set fsdp_state_dict_type: FULL_STATE_DICT in the accelerate config."
        )
    if not blind:
        if save_on_each_node:
            return "error", (
                "--save_on_each_node true with an --output_dir shared by all nodes: the local rank 0 of every node "
                "would write the same checkpoint files at the same time. Drop --save_on_each_node (global rank 0 "
                "writes the one checkpoint) or give each node its own local --output_dir."
            )
        return "shared", None
    if save_on_each_node:
        return "per-node", None
    return "per-node", (
        f"--output_dir is not shared by all nodes (ranks {blind} did not see a file global rank 0 wrote there): "
        "only node 0 gets the model, optimizer and trainer state, the other nodes keep just their ranks' "
        f"rng_state_<rank>.pth. To resume, {SHARED_CHECKPOINT_HINT}."
    )


def fsdp_sharded_checkpoints(training_args: Any = None) -> bool:
    """Whether this run trains under FSDP with per-rank sharded checkpoints: from `accelerate launch`'s environment
    (``ACCELERATE_USE_FSDP``, ``FSDP_STATE_DICT_TYPE``; accelerate's default is sharded) or from
    `TrainingArguments.fsdp` / ``fsdp_config["state_dict_type"]`` (transformers' default is the full state dict)."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        kind = os.environ.get("FSDP_STATE_DICT_TYPE") or "SHARDED_STATE_DICT"
    elif getattr(training_args, "fsdp", None):
        config = dict(getattr(training_args, "fsdp_config", None) or {})
        kind = config.get("state_dict_type") or config.get("fsdp_state_dict_type") or "FULL_STATE_DICT"
    else:
        return False
    return "FULL_STATE_DICT" not in str(kind).upper()


def check_output_dir_sharing(output_dir: str | os.PathLike, rank: int, local_rank: int, world_size: int,
                             save_on_each_node: bool, sharded_checkpoints: bool = False) -> str:
    """Find out whether ``output_dir`` is shared by the nodes of this run (a collective when ``world_size > 1``).

    Global rank 0 writes a marker file there; every rank looks for it; the verdicts are gathered and judged by
    [`sharing_verdict`]: ``ValueError`` on every rank for save_on_each_node on a shared dir and for FSDP's per-rank
    shards (``sharded_checkpoints``) on node-local dirs, a warning (from rank 0) for node-local dirs without
    save_on_each_node. Returns the kind (``"single-process"`` without a process group)."""
    if world_size <= 1:
        return "single-process"
    marker, error = None, None
    if rank == 0:
        try:
            os.makedirs(output_dir, exist_ok=True)
            marker = Path(output_dir) / f".audiomosaic_node_check_{uuid.uuid4().hex}"
            marker.write_text("written by global rank 0 to find out which nodes share this folder\n")
        except OSError as err:  # reported to every rank below, so none is left waiting in the next collective
            error = f"{type(err).__name__}: {err}"
    name, error = gather_objects((None if marker is None else marker.name, error))[0]  # a barrier too
    if error is not None:
        raise ValueError(f"--output_dir {output_dir}: global rank 0 cannot write there ({error})")
    saw = (Path(output_dir) / name).exists()
    reports = [(r, local, seen) for r, (local, seen) in enumerate(gather_objects((local_rank, saw)))]
    if marker is not None:
        marker.unlink(missing_ok=True)
    kind, message = sharing_verdict(reports, save_on_each_node, sharded_checkpoints)
    if kind == "error":
        raise ValueError(message)
    if message and rank == 0:
        logger.warning(message)
    return kind


def dataset_fingerprint(dataset: Any) -> tuple[int, str | None]:
    """``(len, blake2b of the item ids in order)`` of a map-style training set (ids: the ``id`` column of the
    underlying `datasets.Dataset`, which the sampler indexes); ``(len, None)`` where no ids are known."""
    inner = getattr(dataset, "dataset", dataset)
    raw = getattr(inner, "raw", None)
    length = len(dataset)
    if raw is None or "id" not in getattr(raw, "column_names", ()):
        return length, None
    digest = hashlib.blake2b(digest_size=16)
    for item in raw["id"]:
        digest.update(str(item).encode())
        digest.update(b"\0")
    return length, digest.hexdigest()


def check_same_dataset(dataset: Any, world_size: int) -> None:
    """Raise on every rank when the ranks' map-style training sets differ (a collective when ``world_size > 1``).

    The distributed sampler gives rank ``r`` the indices ``r, r + world, ...`` of the same shuffled order on every
    rank; that is a disjoint split of one dataset only if every rank lists the same items in the same order. Local
    paths are listed per node, so a data folder synced differently on one node would otherwise train silently on
    duplicated and missing clips."""
    if world_size <= 1:
        return
    reports = gather_objects((socket.gethostname(), dataset_fingerprint(dataset)))
    if len({fingerprint for _, fingerprint in reports}) > 1:
        details = "; ".join(f"{_where(r, h)}: {n} items, ids {digest or 'unknown'}"
                            for r, (h, (n, digest)) in enumerate(reports))
        raise ValueError("the ranks see different training data (every node must list the same items in the same "
                         f"order: sync the data folder or put it on a shared filesystem): {details}")


def check_same_stream(n_shards: int, world_size: int) -> None:
    """Raise on every rank when the ranks' streams have different numbers of shards (a collective when
    ``world_size > 1``).

    accelerate splits the shard list each rank sees itself (whole shards per rank, or with fewer shards than processes
    every ``world_size``-th batch of the whole stream), so ranks that list different shards (a data folder synced
    differently on one node) would train on duplicated and missing clips, or split the stream in two ways."""
    if world_size <= 1:
        return
    reports = gather_objects((socket.gethostname(), int(n_shards)))
    if len({count for _, count in reports}) > 1:
        details = "; ".join(f"{_where(r, h)}: {count} shards" for r, (h, count) in enumerate(reports))
        raise ValueError("the ranks see different streams (every node must list the same shards: sync the data "
                         f"folder or put it on a shared filesystem): {details}")


__all__ = [
    "SHARED_CHECKPOINT_HINT",
    "check_output_dir_sharing",
    "check_same_stream",
    "fsdp_sharded_checkpoints",
    "check_same_dataset",
    "dataset_fingerprint",
    "on_every_rank",
    "resolve_resume_checkpoint",
    "sharing_verdict",
]
