"""run_scripts/run_pretrain.py's training (`run_pretraining`) with a probe, for tests/test_multinode.py.

Run under ``accelerate launch`` (any number of nodes and processes) with run_pretrain.py's flags. The probe:

* keeps the projector's BatchNorms in eval mode (running statistics, not batch statistics), so that the gradient
  check isolates the data split, the all-gather and DDP's reduction across nodes (the synchronised batch statistics
  have their own check: tests/dist_scripts/gather_ntxent.py ``sync_bn``). It is applied in every run of a comparison;
* with ``AUDIOMOSAIC_PROBE_DIR`` set, dumps what one process needs to recompute the first optimizer step on the global
  batch: the initial weights (rank 0), each rank's first-step model inputs (views) and drawn masks (``ids_keep``) and
  loss, and each rank's gradients right before the first optimizer step (after DDP's all-reduce).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

from modeling_audiomosaic.pretraining_run import run_pretraining


class FirstStepProbe(TrainerCallback):
    """See the module docstring."""

    def __init__(self, dump_dir: str | None) -> None:
        self.dump_dir = Path(dump_dir) if dump_dir else None
        self.captured = False

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        def freeze_projector_statistics(module, inputs):  # after Trainer's model.train(), before the forward
            module.projector.eval()  # returns None: a pre-hook's return value would replace the inputs

        model.register_forward_pre_hook(freeze_projector_statistics)
        if self.dump_dir is None or state.global_step != 0:
            return
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        if args.process_index == 0:
            torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, self.dump_dir / "initial.pt")
        rank = args.process_index

        def capture(module, inputs, kwargs, output):
            if self.captured:
                return
            self.captured = True
            torch.save({
                "input_values": kwargs["input_values"].detach().clone(),
                "ids_keep": [None if ids is None else ids.detach().clone() for ids in output.ids_keep],
                "loss": output.loss.detach().clone(),
            }, self.dump_dir / f"batch_rank{rank}.pt")

        model.register_forward_hook(capture, with_kwargs=True)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.dump_dir is None or state.global_step != 0:
            return
        grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
        torch.save(grads, self.dump_dir / f"grads_rank{args.process_index}.pt")


if __name__ == "__main__":
    run_pretraining(sys.argv[1:], callbacks=[FirstStepProbe(os.environ.get("AUDIOMOSAIC_PROBE_DIR"))])
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # as run_pretrain.py: leave without freeing the process group (see the end of `run_pretraining`)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
