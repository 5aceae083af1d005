"""`run_pretraining` with the clip ids of every trained batch recorded, per rank (tests/test_streaming_shards.py).

Run as ``accelerate launch ... record_stream_batches.py <run_pretrain flags>`` (or call `record_batches` in-process)
with ``RECORD_BATCHES_DIR`` set: each rank appends ``{"step", "epoch", "ids", "skipped_ids"}`` per trained batch to
``<dir>/rank<r>.jsonl``. The collator adds the ids to the batch and the trainer's ``compute_loss`` takes them out
before the model call, so the batches that a resumed run skips (they never reach ``compute_loss``) are not recorded.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from modeling_audiomosaic.feature_extraction.collators import PretrainingViewsCollator
from modeling_audiomosaic.pretraining_trainer import AudioMosaicPretrainingTrainer

_ORIGINAL_CALL = PretrainingViewsCollator.__call__
_ORIGINAL_LOSS = AudioMosaicPretrainingTrainer.compute_loss


def record_batches(folder: str | os.PathLike, patch=setattr) -> None:
    """Patch the collator and the trainer so that trained batches are recorded under ``folder`` (idempotent).
    In-process tests pass ``patch=monkeypatch.setattr`` so that the classes are restored afterwards."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def call(self, examples):
        batch = _ORIGINAL_CALL(self, examples)
        batch["recorded_ids"] = [str(example.get("id")) for example in examples]
        batch["recorded_epoch"] = int(examples[0].get("epoch", self.epoch))
        return batch

    def compute_loss(self, model, inputs, *args, **kwargs):
        ids = inputs.pop("recorded_ids", None)
        epoch = inputs.pop("recorded_epoch", None)
        if model.training and ids is not None:
            row = {"step": self.state.global_step + 1, "epoch": epoch, "ids": ids,
                   "skipped_ids": list(inputs.get("skipped_ids") or [])}
            with open(folder / f"rank{self.args.process_index}.jsonl", "a") as handle:
                handle.write(json.dumps(row) + "\n")
        return _ORIGINAL_LOSS(self, model, inputs, *args, **kwargs)

    patch(PretrainingViewsCollator, "__call__", call)
    patch(AudioMosaicPretrainingTrainer, "compute_loss", compute_loss)


if __name__ == "__main__":
    from modeling_audiomosaic.pretraining_run import run_pretraining

    record_batches(os.environ["RECORD_BATCHES_DIR"])
    run_pretraining(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # as run_scripts/run_pretrain.py: never free the gloo group (see the end of run_pretraining)
