"""run_scripts/run_pretrain.py's training (`run_pretraining`) with a probe, for tests/test_multinode.py.

Run under ``accelerate launch`` (any number of nodes and processes) with run_pretrain.py's flags. The probe:

* keeps the projector's BatchNorms in eval mode (running statistics, not batch statistics), so that the gradient
  check isolates the data split, the all-gather and DDP's reduction across nodes (the synchronised batch statistics
  have their own check: tests/dist_scripts/gather_ntxent.py ``sync_bn``). It is applied in every run of a comparison;
* with ``AUDIOMOSAIC_PROBE_DIR`` set, dumps what one process needs to recompute the first optimizer step on the global
  batch: the initial weights (rank 0), each rank's first-step model inputs (views) and drawn masks (``ids_keep``) and
  loss, and each rank's gradients right before the first optimizer step (after DDP's all-reduce);
* with ``AUDIOMOSAIC_PROBE_PRECISION=<file>``, writes the dtypes FSDP2 uses for a block's parameters and gradient
  reduction (`FsdpPrecisionProbe`, for fsdp_probe.py runs);
* with ``AUDIOMOSAIC_PROBE_NONFINITE=<ranks>@<step>`` (e.g. ``1@2`` or ``0,1@2``), makes the training loss of those
  global ranks non-finite at that optimizer step (1-based): `NonFiniteLoss`, also used by fsdp_probe.py.
"""

from __future__ import annotations

import json
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


class NonFiniteLoss(TrainerCallback):
    """Makes the training loss non-finite on some ranks at one step (see the module docstring): the pre-training
    objective stays finite, as when only one rank's extra objective (MAE, distillation) overflows."""

    def __init__(self, spec: str | None) -> None:
        ranks, _, step = (spec or "").partition("@")
        self.ranks = {int(r) for r in ranks.split(",") if r}
        self.step = int(step) if step else None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.step is None or args.process_index not in self.ranks:
            return

        def poison(module, inputs, output):
            if module.training and state.global_step + 1 == self.step:
                output.loss = output.loss + float("inf")
            return output

        model.register_forward_hook(poison)


class FsdpPrecisionProbe(TrainerCallback):
    """Writes, at the first optimizer step, the dtypes FSDP2 really uses for a sharded block's parameters and gradient
    reduction (`FSDPParam.param_dtype` / `reduce_dtype`, set at FSDP's lazy init in the first forward) and the dtype
    of the spectrograms the model's forward received (after FSDP's input casting) to a JSON file (global rank 0)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.input_dtype = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        def record(module, inputs, kwargs):  # after FSDP's own pre-forward hook (registered when it was prepared)
            if self.input_dtype is None and "input_values" in kwargs:
                self.input_dtype = str(kwargs["input_values"].dtype)

        model.register_forward_pre_hook(record, with_kwargs=True)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step != 0 or args.process_index != 0:
            return
        for module in model.modules():
            get_state = getattr(module, "_get_fsdp_state", None)
            group = get_state()._fsdp_param_group if get_state is not None else None
            if group is not None and type(module).__name__.endswith("AudioMosaicLayer"):
                param = group.fsdp_params[0]
                self.path.write_text(json.dumps({"param_dtype": str(param.param_dtype),
                                                 "reduce_dtype": str(param.reduce_dtype),
                                                 "input_values": self.input_dtype}))
                return


def probe_callbacks() -> list[TrainerCallback]:
    """The callbacks the environment asks for (``AUDIOMOSAIC_PROBE_NONFINITE``, ``AUDIOMOSAIC_PROBE_PRECISION``)."""
    spec = os.environ.get("AUDIOMOSAIC_PROBE_NONFINITE")
    callbacks = [NonFiniteLoss(spec)] if spec else []
    if os.environ.get("AUDIOMOSAIC_PROBE_PRECISION"):
        callbacks.append(FsdpPrecisionProbe(os.environ["AUDIOMOSAIC_PROBE_PRECISION"]))
    return callbacks


if __name__ == "__main__":
    run_pretraining(sys.argv[1:],
                    callbacks=[FirstStepProbe(os.environ.get("AUDIOMOSAIC_PROBE_DIR")), *probe_callbacks()])
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # as run_pretrain.py: leave without freeing the process group (see the end of `run_pretraining`)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
