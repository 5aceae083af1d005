"""Resuming a stream without decoding what was trained on: the per-worker positions (`WorkerRows`), the decoder's
`skip_rows` and the DataLoader order they rely on (`feature_extraction/stream_rows.py`, `stream_position.py`)."""

from __future__ import annotations

import pickle

import pytest
import torch

from modeling_audiomosaic.feature_extraction.records import ExampleDecoder
from modeling_audiomosaic.feature_extraction.stream_rows import RowSkip, worker_index
from modeling_audiomosaic.stream_position import WorkerRows

BATCH = 2

pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create")


class ToyStream(torch.utils.data.IterableDataset):
    """Worker ``w`` reads ``lengths[w]`` records; those whose index is in ``bad`` are dropped (as bad audio items);
    ``skip[w]`` records are passed over first (the resumed pass)."""

    def __init__(self, lengths, bad=(), skip=None):
        self.lengths, self.bad, self.skip = list(lengths), set(bad), skip

    def __iter__(self):
        worker = worker_index()
        first = self.skip[worker] if self.skip else 0
        for row in range(first, self.lengths[worker]):
            if (worker, row) not in self.bad:
                yield {"worker": worker, "row": row}


def collate(examples):
    return {"items": [(e["worker"], e["row"]) for e in examples],
            "stream_rows": [worker_index(), max(e["row"] for e in examples) + 1]}


def batches(dataset, workers):
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, num_workers=workers, collate_fn=collate,
                                         drop_last=True)
    return list(loader)


@pytest.mark.parametrize("lengths, bad", [
    ([9, 9, 9], ()),  # every worker as long: plain rounds
    ([11, 4, 8], {(0, 2), (2, 0), (2, 5), (1, 3)}),  # uneven, bad records, a worker ending early, partial batches
    ([5, 0, 7], {(2, 6)}),  # a worker with no record at all
])
def test_resume_plan_reproduces_every_suffix_of_a_multi_worker_pass(lengths, bad):
    """For every number of trained batches, the workers passing over the planned records and then the planned batches
    skipped by iterating give exactly the rest of the uninterrupted pass: the DataLoader delivers a stream round by
    round, and a fresh one starts at worker 0 (checked on torch's own multi-worker DataLoader)."""
    workers = len(lengths)
    full = batches(ToyStream(lengths, bad), workers)
    assert len({b["stream_rows"][0] for b in full}) > 1  # the batches do come from several workers
    skipped_by_rows = 0
    for trained in range(1, len(full) + 1):
        rows = WorkerRows(workers)
        for batch in full[:trained]:
            rows.add(batch["stream_rows"])
        plan = rows.resume_plan(trained)
        assert plan is not None
        per_worker, then_skip = plan
        assert then_skip < workers
        if lengths[0] == lengths[-1] and not bad:  # equal workers: a completed round is passed over whole
            assert (then_skip == 0) == (trained % workers == 0), (trained, plan)
        resumed = batches(ToyStream(lengths, bad, skip=per_worker), workers)[then_skip:]
        assert [b["items"] for b in resumed] == [b["items"] for b in full[trained:]], (trained, plan)
        skipped_by_rows += trained - then_skip
    assert skipped_by_rows > 0


def test_resume_plan_falls_back_when_batches_do_not_say_or_arrive_out_of_rounds():
    rows = WorkerRows(2)
    rows.add([0, 4])
    rows.add([1, 3])
    rows.add([0, 9])
    assert rows.resume_plan(3) == ([4, 3], 1)  # round 1 started by worker 0: it stops before its second batch
    assert rows.resume_plan(4) is None  # a batch counted that did not pass through `add`
    restored = WorkerRows.from_state(pickle.loads(pickle.dumps(rows.state())))
    assert restored.state() == rows.state() and restored.resume_plan(3) == ([4, 3], 1)
    rows.add([1, 8])
    assert rows.resume_plan(4) == ([9, 8], 0)  # round 1 complete: both pass over all they gave
    rows.add(None)  # a batch without `stream_rows` (another collator)
    assert rows.resume_plan(5) is None
    out_of_rounds = WorkerRows(2)
    for position in ([0, 2], [0, 4], [0, 6], [1, 2]):  # worker 0 three times before worker 1 once (not in order)
        out_of_rounds.add(position)
    assert out_of_rounds.resume_plan(4) is None
    other_loader = WorkerRows(2)
    other_loader.add([2, 1])  # a worker the run does not have: counted, and the resume decodes
    assert other_loader.unplaced == 1 and other_loader.resume_plan(1) is None


def _records(n):
    return {"audio": [{"array": [0.1] * 1600, "sampling_rate": 16000}] * n, "id": [f"clip{i}" for i in range(n)]}


def test_decoder_passes_over_rows_undecoded_in_the_resumed_pass_only():
    decoder = ExampleDecoder()
    out = decoder(_records(4), indices=[0, 1, 2, 3])
    assert out["stream_row"] == [0, 1, 2, 3] and decoder.skip_counter.num_seen == 4
    decoder.skip_rows(epoch=2, rows_per_worker=[3])
    decoder.set_epoch(2)
    out = decoder(_records(4), indices=[0, 1, 2, 3])
    assert out["id"] == ["clip3"] and out["stream_row"] == [3]
    assert decoder.skip_counter.num_seen == 5  # the three records passed over were not decoded (nor counted)
    out = decoder(_records(2), indices=[4, 5])
    assert out["stream_row"] == [4, 5]
    decoder.set_epoch(3)  # the next pass reads everything
    assert decoder(_records(4), indices=[0, 1, 2, 3])["stream_row"] == [0, 1, 2, 3]
    assert "stream_row" not in decoder(_records(1))  # without indices: no positions, nothing passed over
    copy = pickle.loads(pickle.dumps(decoder))  # how it reaches spawned DataLoader workers
    copy.set_epoch(2)
    assert copy(_records(4), indices=[0, 1, 2, 3])["id"] == ["clip3"]


def test_row_skip_refuses_what_it_cannot_do_exactly():
    with pytest.raises(ValueError, match="one count >= 0 per DataLoader worker"):
        RowSkip(0, [])
    decoder = ExampleDecoder(max_seconds=1.0, crop="random", crop_seed=0)
    assert not decoder.skips_rows_exactly
    with pytest.raises(ValueError, match="random positions drawn in record order"):
        decoder.skip_rows(0, [3])
    assert ExampleDecoder(max_seconds=1.0, crop="start").skips_rows_exactly
