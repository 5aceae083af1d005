"""run_scripts/run_pretrain.py's training (`run_pretraining`) under accelerate's FSDP, on CPU processes (gloo).

accelerate enables FSDP only for accelerator processes: on CPU (`MULTI_CPU`) it drops the FSDP plugin and trains
with DDP. This shim puts the plugin back as accelerate does on GPUs (`AcceleratorState`: distributed type `FSDP`,
the plugin's mixed-precision policy set from `--mixed_precision`), so that the code path of a GPU FSDP run (accelerate's
`fsdp2_prepare_model`: `fully_shard` of every `AudioMosaicLayer`, of `get_input_embeddings()` and of the root;
DTensor parameters; sharded `torch.distributed.checkpoint` saves and loads; the full-state gather for saving) runs
over gloo on the CPU. ``AUDIOMOSAIC_PROBE_NONFINITE`` works as in pretrain_probe.py. Used by tests/test_fsdp.py and
tests/test_nonfinite_distributed.py; launch it like run_pretrain.py:

    accelerate launch --config_file run_scripts/accelerate/fsdp.yaml --num_processes 2 --mixed_precision no \
        tests/dist_scripts/fsdp_probe.py --config ... --output_dir ...
"""

from __future__ import annotations

import os
import sys

import accelerate.state as accelerate_state
from accelerate.utils import DistributedType
from pretrain_probe import probe_callbacks  # this folder: sys.path[0] of a script

from modeling_audiomosaic.pretraining_run import run_pretraining

_original_init = accelerate_state.AcceleratorState.__init__


def _init_with_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
    _original_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and getattr(self, "fsdp_plugin", None) is None:
        if self._mixed_precision != "no":
            fsdp_plugin.set_mixed_precision(self._mixed_precision)  # as accelerate does for accelerators
        self.fsdp_plugin = fsdp_plugin
    if getattr(self, "fsdp_plugin", None) is not None and self.distributed_type == DistributedType.MULTI_CPU:
        # every later `AcceleratorState()` copies PartialState's type over its own: set both
        self.distributed_type = DistributedType.FSDP
        accelerate_state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP


accelerate_state.AcceleratorState.__init__ = _init_with_fsdp_on_cpu

if __name__ == "__main__":
    run_pretraining(sys.argv[1:], callbacks=probe_callbacks())
    # as run_pretrain.py: leave without freeing the process group (see the end of `run_pretraining`)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
