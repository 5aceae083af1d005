"""Positions in a stream's rows, for resuming a streaming run without decoding what it already trained on.

A stream ([`AudioIterableDataset`]) decodes its raw records in a batched ``datasets.map`` inside each DataLoader worker
(bad items dropped). Every decoded row carries ``stream_row``, the index of its raw record in that worker's pass
(datasets' ``with_indices``: counted from 0 in each worker and pass, bad records included), and
`PretrainingViewsCollator` puts ``stream_rows = [worker, last stream_row + 1]`` into each batch: where in its worker's
records the batch ends. The trainer keeps these per worker (``stream_position.py``), and a resumed run gives the
decoder a [`RowSkip`]: in the resumed pass each worker passes over its records up to that point without decoding them
(the raw rows are still read: the shuffle buffer and the shard order go on exactly as in the uninterrupted run).

* `SharedEpoch`: an epoch number in shared memory (set in the main process, read by DataLoader workers).
* `worker_index`: this DataLoader worker's index (0 in the main process).
* `RowSkip`: the records to pass over per worker in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.utils.data

__all__ = ["RowSkip", "SharedEpoch", "worker_index"]


class SharedEpoch:
    """An epoch number in shared memory: set in the main process, read by DataLoader workers (persistent ones too).

    A plain attribute is copied into each worker when the worker starts, so a persistent worker would keep reading
    the epoch it started in (and a resumed run would then see other epochs than the uninterrupted one)."""

    def __init__(self, epoch: int = 0) -> None:
        self._value = torch.zeros((), dtype=torch.int64).share_memory_()
        self.set(epoch)

    def set(self, epoch: int) -> None:
        self._value.fill_(int(epoch))

    def get(self) -> int:
        return int(self._value.item())


def worker_index() -> int:
    """The index of the DataLoader worker running this code; 0 in the main process (``num_workers=0``)."""
    info = torch.utils.data.get_worker_info()
    return 0 if info is None else int(info.id)


class RowSkip:
    """In pass ``epoch``, DataLoader worker ``w`` passes over its first ``rows_per_worker[w]`` raw records without
    decoding them; other passes are untouched.

    The decoder holding it travels to the workers when they start (persistent ones keep it for the whole run), so the
    pass in progress is read from shared memory: `set_epoch` in the main process reaches them.

    Args:
        epoch: the pass to resume.
        rows_per_worker: one count per DataLoader worker (one entry with ``num_workers=0``).
    """

    def __init__(self, epoch: int, rows_per_worker: Sequence[int]) -> None:
        rows = [int(r) for r in rows_per_worker]
        if not rows or min(rows) < 0:
            raise ValueError(f"rows_per_worker must hold one count >= 0 per DataLoader worker, got {rows}")
        self.epoch = int(epoch)
        self.rows_per_worker = rows
        self._pass = SharedEpoch(self.epoch)

    def set_epoch(self, epoch: int) -> None:
        """The pass now starting (the trainer calls it at the start of every pass)."""
        self._pass.set(epoch)

    @property
    def pass_in_progress(self) -> int:
        """The pass now running, as the main process set it last."""
        return self._pass.get()

    def rows_to_skip(self) -> int:
        """How many of this worker's first records to pass over in the pass in progress (0 outside the resumed
        pass)."""
        if self.pass_in_progress != self.epoch:
            return 0
        worker = worker_index()
        if worker >= len(self.rows_per_worker):
            raise RuntimeError(
                f"a stream resumed with {len(self.rows_per_worker)} DataLoader worker(s) runs in worker {worker}: "
                "resume with the number of workers the run was written with"
            )
        return self.rows_per_worker[worker]

    def __repr__(self) -> str:
        return f"RowSkip(epoch={self.epoch}, rows_per_worker={self.rows_per_worker})"
