"""Dataset wrappers: map-style [`AudioDataset`] and streaming [`AudioIterableDataset`] over raw `datasets` records,
decoded on access by an ``ExampleDecoder``, and the rank sharding rule ([`shard_for_rank`]).

Sharding rule -- see [`shard_for_rank`]: under ``Trainer`` or ``accelerator.prepare`` do *not* shard yourself
(accelerate either dispatches batches from rank 0 or shards the dataset itself); call
``datasets.distributed.split_dataset_by_node`` (via ``shard_for_rank``) only for a hand-written loop whose DataLoader
is not prepared by accelerate.

`datasets` is imported lazily, so importing this module only needs numpy, soundfile and torch.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch.utils.data

from .records import Example, ExampleDecoder
from .skips import EmptyDatasetError, SkipCounter


def require_datasets():
    """The `datasets` module, or an `ImportError` saying how to install it."""
    try:
        import datasets  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "This feature needs the `datasets` package "
            "(pip install 'datasets>=5.2,<6', or the package's [train] extra)."
        ) from err
    return datasets


class AudioDataset(torch.utils.data.Dataset):
    """Map-style audio dataset: a `datasets.Dataset` of raw records decoded on access by an [`ExampleDecoder`].

    * ``len(ds)`` counts raw items (bad ones included: they are only known once decoded).
    * ``ds[i]`` returns example ``i``; if it is bad it is counted and the next good item is returned instead
      (``i+1, i+2, ...``, at most ``max_retries`` bad items in a row, then ``EmptyDatasetError``). Known-bad indices
      are remembered, so batch shapes and epoch lengths stay fixed (as the original's retry loop).
      [`get_with_skips`] also returns the ids of the bad items passed over (known-bad ones included).
    * ``iter(ds)`` yields only the good examples, in order; [`filter_valid`] decodes everything once and returns a
      dataset restricted to the good items (exact lengths, e.g. for evaluation).
    * ``skip_counter`` holds the statistics; ``raw`` is the underlying `datasets.Dataset`.
    """

    def __init__(self, raw: Any, decoder: ExampleDecoder, *, max_retries: int = 10, name: str = "audio"):
        self.raw = raw
        self.decoder = decoder
        self.max_retries = max_retries
        self.name = name
        self._bad: dict[int, str] = {}  # known-bad index -> its id (in this process)

    @property
    def skip_counter(self) -> SkipCounter:
        return self.decoder.skip_counter

    def __len__(self) -> int:
        return len(self.raw)

    def get(self, index: int) -> Example | None:
        """Example ``index`` or ``None`` if it is bad (no substitution)."""
        example = self.decoder.decode(self.raw[int(index)])
        if example is None:
            self._bad[int(index)] = self.skip_counter.recent_ids[-1]  # `decode` recorded exactly this one skip
        return example

    def __getitem__(self, index: int) -> Example:
        return self.get_with_skips(index)[0]

    def get_with_skips(self, index: int) -> tuple[Example, list[str]]:
        """``(ds[index], ids of the bad items passed over to produce it)``. Every pass over a bad item is listed,
        also over one already known to be bad (which `skip_counter` does not count again), so the list does not depend
        on which process decoded what before."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        index = int(index) % n
        failures = 0
        skipped: list[str] = []
        for step in range(n):
            j = (index + step) % n
            if j in self._bad:
                skipped.append(self._bad[j])
                continue
            example = self.get(j)
            if example is not None:
                return example, skipped
            skipped.append(self._bad[j])
            failures += 1
            if failures > self.max_retries:
                break
        raise EmptyDatasetError(
            f"{self.name}: no decodable item found from index {index} ({failures} bad in a row); "
            f"{self.skip_counter.summary()}"
        )

    def __iter__(self) -> Iterator[Example]:
        yielded = 0
        for i, record in enumerate(self.raw):
            example = self.decoder.decode(record)
            if example is None:
                self._bad[i] = self.skip_counter.recent_ids[-1]
                continue
            yielded += 1
            yield example
        if yielded == 0 and len(self) > 0:
            raise EmptyDatasetError(f"{self.name}: no item could be decoded; {self.skip_counter.summary()}")

    def iter_labels(self) -> Iterator[list | None]:
        """Labels of every raw item, without decoding audio (for [`build_label_vocabulary`])."""
        for record in self.raw:
            yield self.decoder.labels_of(record)

    def _derive(self, raw: Any) -> AudioDataset:
        return AudioDataset(raw, self.decoder, max_retries=self.max_retries, name=self.name)

    def select(self, indices: Iterable[int]) -> AudioDataset:
        return self._derive(self.raw.select(list(indices)))

    def shuffle(self, seed: int | None = None) -> AudioDataset:
        """A shuffled view (index mapping only; a sampler's shuffling is usually enough for training)."""
        return self._derive(self.raw.shuffle(seed=seed))

    def shard(self, num_shards: int, index: int, contiguous: bool = True) -> AudioDataset:
        return self._derive(self.raw.shard(num_shards=num_shards, index=index, contiguous=contiguous))

    def filter_valid(self) -> AudioDataset:
        """Decode every item once; return the dataset restricted to the good ones (bad ones are counted)."""
        good = []
        for i in range(len(self)):
            if i not in self._bad and self.get(i) is not None:
                good.append(i)
        if not good:
            raise EmptyDatasetError(f"{self.name}: no item could be decoded; {self.skip_counter.summary()}")
        return self.select(good)

    def to_iterable_dataset(self, num_shards: int = 1) -> AudioIterableDataset:
        """The streaming variant of this dataset (``num_shards`` shards for ranks / DataLoader workers)."""
        return AudioIterableDataset(self.raw.to_iterable_dataset(num_shards=num_shards), self.decoder, name=self.name)

    def __repr__(self) -> str:
        return f"AudioDataset(name={self.name!r}, num_items={len(self)}, {self.skip_counter.summary()})"


class AudioIterableDataset(torch.utils.data.IterableDataset):
    """Streaming audio dataset: a `datasets.IterableDataset` of raw records plus an [`ExampleDecoder`].

    Shuffling, repetition and sharding act on the *raw* records (so the shuffle buffer holds encoded bytes, not
    decoded waveforms); decoding runs as a batched ``map`` that drops bad items. ``hf_dataset`` is that decoded
    `datasets.IterableDataset`: pass it (not this wrapper) to ``Trainer``/``accelerator.prepare`` with
    ``dispatch_batches=False`` so that accelerate can give whole shards to each rank (it only does so for a
    `datasets.IterableDataset`; any other iterable is read in full by every rank and sliced). The skip counter is
    shared with ``hf_dataset`` in the same process.
    """

    def __init__(
        self,
        raw: Any,
        decoder: ExampleDecoder,
        *,
        name: str = "audio",
        decode_batch_size: int = 8,
        raise_if_empty: bool = True,
    ):
        self.raw = raw
        self.decoder = decoder
        self.name = name
        self.decode_batch_size = decode_batch_size
        self.raise_if_empty = raise_if_empty
        self._epoch = 0
        # built now (map is lazy) so that set_epoch reaches persistent DataLoader workers through datasets' shared
        # epoch counter
        columns = raw.column_names
        # with each record's index in its worker's pass (``stream_row``): a resumed run passes over the records it
        # already trained on without decoding them (`ExampleDecoder.skip_rows`)
        self._hf = raw.map(
            decoder, batched=True, batch_size=decode_batch_size, with_indices=True,
            remove_columns=list(columns) if columns else None,
        )
        setattr(self._hf, STREAM_DECODER, decoder)

    @property
    def skip_counter(self) -> SkipCounter:
        return self.decoder.skip_counter

    @property
    def hf_dataset(self) -> Any:
        """The decoded `datasets.IterableDataset` (columns ``audio``, ``labels``, ``id``, ``group``, and
        ``num_skipped``, ``skipped_ids``, ``stream_row``: see `ExampleDecoder.__call__`); `stream_decoder` gives its
        decoder back."""
        return self._hf

    @property
    def n_shards(self) -> int:
        return self.raw.n_shards

    num_shards = n_shards

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Re-seed the shuffle for a new epoch (``seed + epoch``); Trainer/accelerate call this."""
        self._epoch = int(epoch)
        self._hf.set_epoch(self._epoch)

    def __iter__(self) -> Iterator[Example]:
        yielded = 0
        seen_before = self.skip_counter.num_seen
        for example in self.hf_dataset:
            yielded += 1
            yield example
        if yielded == 0 and self.raise_if_empty and self.skip_counter.num_seen > seen_before:
            raise EmptyDatasetError(f"{self.name}: no item could be decoded; {self.skip_counter.summary()}")

    def iter_labels(self) -> Iterator[list | None]:
        """Labels of every raw item, without decoding audio (for [`build_label_vocabulary`])."""
        for record in self.raw:
            yield self.decoder.labels_of(record)

    def _derive(self, raw: Any) -> AudioIterableDataset:
        new = AudioIterableDataset(
            raw,
            self.decoder,
            name=self.name,
            decode_batch_size=self.decode_batch_size,
            raise_if_empty=self.raise_if_empty,
        )
        new.set_epoch(self._epoch)
        return new

    def shuffle(self, seed: int | None = None, buffer_size: int = 1000,
                max_input_shards: int | None = None) -> AudioIterableDataset:
        """Shuffle the shard order and, through a buffer of ``buffer_size`` raw records, the examples.

        ``max_input_shards``: how many shards feed the buffer at once in each worker (datasets'
        ``max_buffer_input_shards``; None: its default, 10). Each open shard holds about two row groups of encoded
        rows; when it interleaves parquet shards, datasets pauses 5 s at the end of each worker's stream (a guard
        against an Arrow crash at exit), and a DataLoader, which delivers batches in order, waits for that worker.
        1 reads the shards one after another (`run_pretrain.py`'s default)."""
        if max_input_shards is None:
            return self._derive(self.raw.shuffle(seed=seed, buffer_size=buffer_size))
        if max_input_shards < 1:
            raise ValueError(f"max_input_shards must be >= 1, got {max_input_shards}")
        if "max_buffer_input_shards" not in inspect.signature(self.raw.shuffle).parameters:
            raise ValueError("this datasets version has no IterableDataset.shuffle(max_buffer_input_shards=...): "
                             "upgrade datasets, or leave --shuffle_input_shards unset")
        return self._derive(self.raw.shuffle(seed=seed, buffer_size=buffer_size,
                                             max_buffer_input_shards=max_input_shards))

    def repeat(self, num_times: int | None = None) -> AudioIterableDataset:
        """Repeat ``num_times`` times (``None``: forever -- keeps ranks stepping with ``max_steps``)."""
        if not hasattr(self.raw, "repeat"):  # pragma: no cover - datasets < 3.4
            raise NotImplementedError("this datasets version has no IterableDataset.repeat")
        return self._derive(self.raw.repeat(num_times))

    def shard(self, num_shards: int, index: int, contiguous: bool = True) -> AudioIterableDataset:
        return self._derive(self.raw.shard(num_shards=num_shards, index=index, contiguous=contiguous))

    def take(self, n: int) -> AudioIterableDataset:
        """The first ``n`` *raw* records (bad ones among them are still dropped)."""
        return self._derive(self.raw.take(n))

    def __repr__(self) -> str:
        return f"AudioIterableDataset(name={self.name!r}, n_shards={self.n_shards}, {self.skip_counter.summary()})"


STREAM_DECODER = "audiomosaic_stream_decoder"
"""Attribute of an `AudioIterableDataset.hf_dataset` holding its [`ExampleDecoder`] (the ``map`` function that every
copy of the stream, accelerate's per-rank shard and the DataLoader workers' included, calls)."""


def stream_decoder(dataset: Any) -> ExampleDecoder | None:
    """The decoder of a stream made by `AudioIterableDataset` (its ``hf_dataset`` or the wrapper), else ``None``."""
    if isinstance(dataset, AudioIterableDataset):
        return dataset.decoder
    return getattr(dataset, STREAM_DECODER, None)


# ---------------------------------------------------------------------------------------------------------------------
# Distributed sharding
# ---------------------------------------------------------------------------------------------------------------------


def get_rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised torch.distributed group, else ``RANK``/``WORLD_SIZE``, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def shard_for_rank(
    ds: Any,
    rank: int | None = None,
    world_size: int | None = None,
    *,
    used_with_accelerate_prepare: bool,
    strategy: str = "auto",
) -> Any:
    """Give this rank its part of ``ds`` -- unless accelerate will do it (no double sharding).

    The rule:

    * ``used_with_accelerate_prepare=True`` -- the DataLoader goes through ``Trainer`` or ``accelerator.prepare``:
      ``ds`` is returned unchanged. For an iterable dataset accelerate either dispatches batches from rank 0
      (``dispatch_batches=True``, its default) or, with ``dispatch_batches=False``, calls ``ds.shard(world, rank)``
      itself when ``ds`` is a `datasets.IterableDataset` with ``n_shards >= world_size`` (else it wraps it in
      ``IterableDatasetShard``); for a map-style dataset its DistributedSampler splits the indices. Sharding here too
      would leave each rank ``1/world²`` of the data.
    * ``used_with_accelerate_prepare=False`` -- a hand-written loop with a plain DataLoader: the dataset is split with
      ``datasets.distributed.split_dataset_by_node(ds, rank, world_size, strategy=...)``. ``"auto"`` gives whole
      shards to each rank when ``n_shards % world_size == 0``, else every ``world_size``-th example (each rank then
      reads everything). Shuffle with the same seed on every rank. Uneven per-rank counts can hang collectives: use
      ``max_steps`` with ``.repeat(None)`` and ``drop_last``.

    Works on [`AudioDataset`], [`AudioIterableDataset`], `datasets.Dataset` and `datasets.IterableDataset`.
    ``rank``/``world_size`` default to [`get_rank_and_world_size`].
    """
    if rank is None or world_size is None:
        env_rank, env_world = get_rank_and_world_size()
        rank = env_rank if rank is None else rank
        world_size = env_world if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid rank {rank} for world_size {world_size}")
    if used_with_accelerate_prepare or world_size == 1:
        return ds
    datasets = require_datasets()
    from datasets.distributed import split_dataset_by_node

    if isinstance(ds, (AudioDataset, AudioIterableDataset)):
        return ds._derive(split_dataset_by_node(ds.raw, rank=rank, world_size=world_size, strategy=strategy))
    if isinstance(ds, (datasets.Dataset, datasets.IterableDataset)):
        return split_dataset_by_node(ds, rank=rank, world_size=world_size, strategy=strategy)
    raise TypeError(f"cannot shard a {type(ds).__name__}; expected an Audio(Iterable)Dataset or a datasets dataset")


def stream_sharding_problem(n_shards: int, world_size: int, num_workers: int = 0) -> str | None:
    """What is wrong with streaming ``n_shards`` shards to ``world_size`` processes through accelerate
    (``dispatch_batches=False``) with ``num_workers`` DataLoader workers each, or ``None``.

    * ``n_shards < world_size``: accelerate cannot give each process whole shards and wraps the stream in
      ``IterableDatasetShard``: **every process reads and decodes the whole stream** and keeps every
      ``world_size``-th batch, i.e. ``world_size`` times the decoding of the clips it trains on.
    * ``n_shards % world_size != 0``: processes get whole shards, but unequal numbers of them (their passes end at
      different steps, so the data of a pass is not spread evenly).
    * fewer shards per process than ``num_workers``: datasets deals each process's shards to its workers and stops
      the workers left without one, so only that many workers decode.
    """
    if n_shards <= 0:
        return None
    if world_size > 1:
        fix = (f"write the data as a multiple of {world_size} shards (run_scripts/transcode_shards.py --shard_size "
               "sets the clips per shard) or stream with fewer processes")
        if n_shards < world_size:
            return (f"the stream has {n_shards} shard(s) for {world_size} processes: accelerate then has every "
                    f"process read and decode the whole stream and keep every {world_size}-th batch ({world_size}x "
                    f"the decoding of the clips trained on); {fix}")
        if n_shards % world_size:
            low, high = n_shards // world_size, n_shards // world_size + 1
            return (f"the stream's {n_shards} shards do not split evenly over {world_size} processes ({low} or "
                    f"{high} each): the processes' passes over the data differ in length by up to 1/{high}; {fix}")
    per_process = n_shards // max(world_size, 1)
    if num_workers > per_process:
        return (f"each process streams {per_process} shard(s) with {num_workers} DataLoader workers: datasets gives "
                f"every worker whole shards and stops the {num_workers - per_process} left without one, so only "
                f"{per_process} decode; write at least {num_workers * max(world_size, 1)} shards "
                "(run_scripts/transcode_shards.py --shard_size) or use fewer --dataloader_num_workers")
    return None


__all__ = ["AudioDataset", "AudioIterableDataset", "get_rank_and_world_size", "require_datasets", "shard_for_rank",
           "stream_decoder", "stream_sharding_problem"]
