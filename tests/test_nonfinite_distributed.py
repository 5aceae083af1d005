"""A non-finite loss on some ranks only, in a 2-process run (DDP and FSDP2 over gloo).

The backward of a pre-training step holds collectives of its own (the contrastive all-gather's gradient all-reduce, the
synchronised projector BatchNorm), besides DDP's bucket reduction or FSDP's reduce-scatter. A rank that skipped its
batch alone would leave them out while the other ranks made them: with NCCL a hang until the watchdog (or reductions
paired with the wrong tensors). The skip is one decision of all ranks: a batch whose loss is non-finite on any rank is
skipped on every rank, so a run with rank 1's loss non-finite at step 2 is the run with every rank's loss non-finite
there, step for step and weight for weight.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_fsdp import ENV, _launch, tiny_run_inputs
from test_multinode import _finish
from test_run_pretrain import _losses

STEPS = 3


@pytest.fixture(scope="module")
def common(tmp_path_factory):
    root = tmp_path_factory.mktemp("nonfinite")
    audio, recipe = tiny_run_inputs(root, 16, seed=5)
    return root, ["--config", str(recipe), "--train_path", str(audio), "--max_steps", str(STEPS), "--save_steps",
                  "100", "--drop_path_rate", "0.0"]


@pytest.mark.dist
@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_a_loss_nonfinite_on_one_rank_skips_the_batch_on_every_rank(kind, common):
    root, args = common
    runs = {}
    for name, ranks in (("one_rank", "1"), ("all_ranks", "0,1")):
        out = root / f"{kind}_{name}"
        env = {**ENV, "AUDIOMOSAIC_PROBE_NONFINITE": f"{ranks}@2"}
        runs[name] = (out, _launch(kind, args + ["--output_dir", str(out)], root / f"{kind}_{name}.log", env=env))
    logs = dict(zip(runs, _finish([launch for _, launch in runs.values()], timeout=300)))
    summaries = {name: json.loads((out / "pretrain_summary.json").read_text()) for name, (out, _) in runs.items()}
    one, every = (_losses(summaries[name]["log_history"]) for name in ("one_rank", "all_ranks"))
    assert sorted(one) == sorted(every) == list(range(1, STEPS + 1)), (one, every)
    assert np.isnan(one[2]) and np.isnan(every[2])  # no batch trained on at step 2: no loss (not a 0)
    assert all(one[step] == every[step] and np.isfinite(one[step]) and one[step] > 0 for step in (1, 3)), (one, every)
    for name in runs:
        last = summaries[name]["log_history"][-2]  # the last step's log (the train summary follows)
        assert last["nonfinite_losses_skipped"] == 1 and last["optimizer_steps_skipped"] == 1, (name, last)
    assert "non-finite on another process" in logs["one_rank"]  # rank 0, whose own loss was finite, says why
    final = {name: load_file(out / "model.safetensors") for name, (out, _) in runs.items()}
    for key, value in final["one_rank"].items():
        assert torch.isfinite(value).all(), key
        torch.testing.assert_close(value, final["all_ranks"][key], rtol=0, atol=0)
