"""FSDP pre-training with the shipped accelerate config (run_scripts/accelerate/fsdp.yaml: FSDP2, every
`AudioMosaicLayer` sharded, SHARDED_STATE_DICT checkpoints), on 2 CPU processes over gloo.

accelerate routes FSDP to accelerators only; tests/dist_scripts/fsdp_probe.py puts the plugin back on CPU processes
so that a GPU FSDP run's code path runs here (see its docstring). Checked: 2-process FSDP training equals 2-process
DDP training step for step (fp32), the output folder and every checkpoint hold a loadable model with the package's
own remote code (transformers writes none with sharded state dicts, and names torch's FSDP modules under FSDP2), the
sharded checkpoint is seen as complete and resumes exactly (the projector's synchronised BatchNorms keep their running
statistics equal on every rank, so the one copy a sharded checkpoint stores is every rank's), and bf16 mixed precision
(FSDP2 casts parameters, not buffers) trains. Plus the projector layers that make the bf16 head work, on one
process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file
from test_multinode import _finish
from test_run_pretrain import TINY_RECIPE, _clip, _free_port, _losses

from modeling_audiomosaic.checkpoints import checkpoint_problems
from modeling_audiomosaic.modeling_pretraining import ProjectorBatchNorm1d, ProjectorLinear

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "tests" / "dist_scripts" / "fsdp_probe.py"
FSDP_CONFIG = REPO / "run_scripts" / "accelerate" / "fsdp.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
STEPS = 4  # 24 clips / (2 ranks x 4): 3 steps per epoch, so step 4 is in epoch 1


def _launch(kind, args, log_path, env=ENV, mixed_precision="no", node=None, port=None):
    """Start `accelerate launch` of the probe with 2 processes in all: ``kind`` "fsdp" (the shipped fsdp.yaml), "ddp",
    or "multi_node_fsdp" (multi_node_fsdp.yaml; one process on loopback node ``node`` of 2, rendezvous ``port``)."""
    if kind == "multi_node_fsdp":
        layout = ["--config_file", str(FSDP_CONFIG.with_name("multi_node_fsdp.yaml")), "--num_machines", "2",
                  "--machine_rank", str(node), "--main_process_ip", "127.0.0.1"]
    else:
        layout = ["--config_file", str(FSDP_CONFIG)] if kind == "fsdp" else ["--multi_gpu"]
        layout += ["--num_machines", "1"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *layout, "--num_processes", "2",
           "--mixed_precision", mixed_precision, "--dynamo_backend", "no",
           "--main_process_port", str(port or _free_port()), str(PROBE), *args]
    log = open(log_path, "w")  # a file, not a pipe: a hung worker must not block the test on its pipe
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    return proc, log, log_path


def _summary(folder):
    return json.loads((Path(folder) / "pretrain_summary.json").read_text())


def tiny_run_inputs(root: Path, clips: int, seed: int) -> tuple[Path, Path]:
    """``clips`` one-second WAV clips (``root/audio``) and the tiny recipe (``root/tiny.yaml``): the inputs of the
    2-process runs here and in test_nonfinite_distributed.py."""
    audio = root / "audio"
    audio.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(clips):
        sf.write(audio / f"clip{i:02d}.wav", _clip(rng, 1.0), 16000)
    recipe = root / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    return audio, recipe


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """FSDP and DDP runs of the same 4 steps (side by side), then the FSDP run resumed from its checkpoint-2."""
    root = tmp_path_factory.mktemp("fsdp")
    audio, recipe = tiny_run_inputs(root, 24, seed=3)
    # half of the blocks under activation checkpointing, as the paper recipe's 0.7: recomputed inside FSDP units
    common = ["--config", str(recipe), "--train_path", str(audio), "--max_steps", str(STEPS), "--save_steps", "2",
              "--drop_path_rate", "0.0", "--checkpointing_fraction", "0.5"]
    _finish([_launch("fsdp", common + ["--output_dir", str(root / "fsdp")], root / "fsdp.log"),
             _launch("ddp", common + ["--output_dir", str(root / "ddp")], root / "ddp.log")])
    shutil.copytree(root / "fsdp" / "checkpoint-2", root / "resumed" / "checkpoint-2")
    _finish([_launch("fsdp", common + ["--output_dir", str(root / "resumed"), "--resume_from_checkpoint", "last"],
                     root / "resumed.log")])
    return {"root": root, "common": common}


@pytest.mark.dist
def test_fsdp_trains_as_ddp_and_resumes_exactly(runs):
    root = runs["root"]
    fsdp, ddp = _losses(_summary(root / "fsdp")["log_history"]), _losses(_summary(root / "ddp")["log_history"])
    assert sorted(fsdp) == list(range(1, STEPS + 1))
    for step in fsdp:  # sharded parameters, the same arithmetic: measured equal to the last bit
        assert abs(fsdp[step] - ddp[step]) <= 1e-6, (step, fsdp[step], ddp[step])
    final = load_file(root / "fsdp" / "model.safetensors")
    reference = load_file(root / "ddp" / "model.safetensors")
    assert final.keys() == reference.keys()
    for name in final:
        torch.testing.assert_close(final[name], reference[name], rtol=0, atol=1e-6)

    # the resumed run loaded the sharded model and optimizer state (Adam's moments: step 4 depends on them) and
    # continued with the batches of the uninterrupted run, across the epoch boundary after step 3
    resumed = _summary(root / "resumed")
    assert resumed["global_step"] == STEPS
    again = _losses(resumed["log_history"])
    assert sorted(again) == list(range(1, STEPS + 1))  # steps 1-2 from the checkpoint's trainer state
    for step in range(3, STEPS + 1):
        assert abs(again[step] - fsdp[step]) <= 1e-6, (step, again[step], fsdp[step])
    resumed_final = load_file(root / "resumed" / "model.safetensors")
    for name in final:
        torch.testing.assert_close(resumed_final[name], final[name], rtol=0, atol=1e-6)
    log = (root / "resumed.log").read_text()
    assert "Loading Optimizer from" in log and "optimizer step" not in log  # no step skipped while loading


@pytest.mark.dist
def test_logged_metrics_are_means_over_all_processes(runs):
    """Trainer logs the loss averaged over the processes; the model's metrics are averaged the same way (each process
    computes them on its own batches), so with the contrastive objective alone `contrastive_loss` is `loss` (up to
    the logs' rounding), under DDP and FSDP. Rank 0's own value differs from the mean (the ranks' batches differ)."""
    for kind in ("ddp", "fsdp"):
        logged = [h for h in _summary(runs["root"] / kind)["log_history"] if "loss" in h]
        assert len(logged) == STEPS
        for h in logged:
            assert abs(h["contrastive_loss"] - h["loss"]) <= 1e-4 * max(1.0, abs(h["loss"])), (kind, h)
            assert h["data_items_skipped"] == 0 and 0 <= h["accuracy"] <= 1


@pytest.mark.dist
def test_fsdp_saves_a_loadable_model_with_its_own_code(runs):
    from transformers import AutoModel, AutoModelForPreTraining

    out = runs["root"] / "fsdp"
    for folder in (out, out / "checkpoint-2", out / f"checkpoint-{STEPS}"):
        names = set(os.listdir(folder))
        assert {"model.safetensors", "config.json", "modeling_audiomosaic.py", "modeling_pretraining.py"} <= names
        assert not [n for n in names if n.startswith("_fsdp")], sorted(names)  # torch's FSDP2 files, not ours
        auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
        assert auto_map["AutoModelForPreTraining"] == "modeling_pretraining.AudioMosaicForPreTraining", auto_map
    checkpoint = out / "checkpoint-2"
    assert {"pytorch_model_fsdp_0", "optimizer_0"} <= set(os.listdir(checkpoint))  # the shards, for resuming
    assert not (checkpoint / "optimizer.pt").exists()

    weights = load_file(out / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in weights.values() if t.is_floating_point())
    model = AutoModelForPreTraining.from_pretrained(out)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, weights[name]), name
    encoder = AutoModel.from_pretrained(out)
    assert torch.equal(encoder.embeddings.patch_embeddings.projection.weight,
                       weights["audiomosaic.embeddings.patch_embeddings.projection.weight"])

    # a sharded checkpoint is complete without optimizer.pt; a shard folder without its .metadata is not
    assert checkpoint_problems(checkpoint, world_size=2) == []
    broken = runs["root"] / "broken" / "checkpoint-2"
    shutil.copytree(checkpoint, broken)
    (broken / "optimizer_0" / ".metadata").unlink()
    assert checkpoint_problems(broken, world_size=2) == [
        "optimizer_0/.metadata missing (sharded state not completely written)"
    ]
    shutil.rmtree(broken / "optimizer_0")
    assert checkpoint_problems(broken, world_size=2) == ["optimizer.pt missing"]


@pytest.mark.dist
def test_fsdp_bf16_mixed_precision_trains(runs):
    """fsdp.yaml's own precision (bf16): FSDP2 gathers bf16 parameters while BatchNorm buffers stay fp32, and reduces
    the gradients in fp32 without casting the inputs (`adjust_fsdp_mixed_precision`). The first step's loss (same
    weights, views and masks) stays within bf16 rounding of fp32's; the saved weights are the fp32 master copy. On a
    CPU without native bf16 this runs on torch's emulated bf16 kernels (slow, tiny model)."""
    root = runs["root"]
    precision = root / "bf16_precision.json"
    env = {**ENV, "AUDIOMOSAIC_ALLOW_EMULATED_BF16": "1", "AUDIOMOSAIC_PROBE_PRECISION": str(precision)}
    args = runs["common"] + ["--max_steps", "2", "--output_dir", str(root / "bf16"), "--bf16", "true"]
    _finish([_launch("fsdp", args, root / "bf16.log", env=env, mixed_precision="bf16")])
    # accelerate's policy for --mixed_precision bf16 reduces (and, FSDP2, accumulates) gradients in bf16
    # and casts the spectrograms to bf16 on the way in (the MAE targets, DWM weights, teacher inputs with them)
    assert json.loads(precision.read_text()) == {"param_dtype": "torch.bfloat16", "reduce_dtype": "torch.float32",
                                                 "input_values": "torch.float32"}
    bf16 = _losses(_summary(root / "bf16")["log_history"])
    fp32 = _losses(_summary(root / "fsdp")["log_history"])
    assert sorted(bf16) == [1, 2]
    assert abs(bf16[1] - fp32[1]) <= 2e-2 * abs(fp32[1]), (bf16[1], fp32[1])
    assert bf16[1] != fp32[1]  # it did run in bf16
    weights = load_file(root / "bf16" / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in weights.values() if t.is_floating_point())


@pytest.mark.dist
def test_fsdp_learns_the_temperature(runs):
    """`--learnable_temperature true` under FSDP2: `fully_shard` refuses 0-dim parameters, so the learnable τ's
    ``logit_scale`` has shape (1,). It is sharded, learned and saved like any other parameter, and the saved model
    loads with its τ."""
    from transformers import AutoModelForPreTraining

    root = runs["root"]
    args = runs["common"] + ["--max_steps", "2", "--output_dir", str(root / "tau"), "--learnable_temperature", "true"]
    _finish([_launch("fsdp", args, root / "tau.log")])
    assert sorted(_losses(_summary(root / "tau")["log_history"])) == [1, 2]
    scale = load_file(root / "tau" / "model.safetensors")["learnable_temperature.logit_scale"]
    assert scale.shape == (1,)
    initial = torch.tensor([np.log(1 / 0.1)], dtype=torch.float32)  # the tiny recipe's temperature
    assert not torch.allclose(scale, initial, rtol=0, atol=1e-7)  # learned
    model = AutoModelForPreTraining.from_pretrained(root / "tau")
    torch.testing.assert_close(model.learnable_temperature.logit_scale.detach(), scale)


def test_projector_layers_compute_in_the_input_dtype():
    """What FSDP2 mixed precision hands the projector: bf16 parameters, fp32 buffers, fp32 input."""
    torch.manual_seed(0)
    reference = torch.nn.BatchNorm1d(6)
    layer = ProjectorBatchNorm1d(6)
    weight, bias = torch.randn(6).bfloat16().float(), torch.randn(6).bfloat16().float()  # exact in bf16
    with torch.no_grad():
        for module in (reference, layer):
            module.weight.copy_(weight)
            module.bias.copy_(bias)
    layer.weight.data = layer.weight.data.bfloat16()
    layer.bias.data = layer.bias.data.bfloat16()
    x = torch.randn(5, 6)
    for momentum in (0.1, None):  # None: cumulative average over num_batches_tracked
        reference.momentum = layer.momentum = momentum
        for training in (True, False):
            reference.train(training)
            layer.train(training)
            out, expected = layer(x), reference(x)
            assert out.dtype == torch.float32
            assert torch.equal(out, expected)
            assert torch.equal(layer.running_mean, reference.running_mean)
            assert torch.equal(layer.running_var, reference.running_var)
            assert int(layer.num_batches_tracked) == int(reference.num_batches_tracked)
    # matching dtypes: nn.BatchNorm1d itself; and a plain BatchNorm1d refuses the mixed case the subclass handles
    same = ProjectorBatchNorm1d(6, momentum=None)
    same.load_state_dict(reference.state_dict())
    for training in (True, False):
        same.train(training)
        reference.train(training)
        assert torch.equal(same(x), reference(x))
    plain = torch.nn.BatchNorm1d(6)
    plain.weight.data, plain.bias.data = layer.weight.data, layer.bias.data
    with pytest.raises(RuntimeError):
        plain(x)

    linear = ProjectorLinear(6, 3, bias=True)
    linear.weight.data = linear.weight.data.bfloat16()
    linear.bias.data = linear.bias.data.bfloat16()
    out = linear(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x @ linear.weight.float().T + linear.bias.float(), rtol=0, atol=1e-6)


def test_contrastive_head_runs_in_fp32_on_bf16_parameters():
    """`project` with the projector's parameters in bf16 and its buffers in fp32 (FSDP2 mixed precision) returns fp32
    and equals the fp32 head with the same (bf16-rounded) weights; a model cast to bf16 as a whole stays bf16."""
    from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicForPreTraining

    config = AudioMosaicConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                               projection_hidden_size=16, projection_dim=8, max_length=32)
    model = AudioMosaicForPreTraining(config).train()
    with torch.no_grad():
        for param in model.projector.parameters():
            param.copy_(param.bfloat16().float())
    pooled = torch.randn(6, 32)
    state = {k: v.clone() for k, v in model.projector.state_dict().items()}
    expected = model.project(pooled)
    model.projector.load_state_dict(state)  # undo the running-statistics update
    for param in model.projector.parameters():
        param.data = param.data.bfloat16()
    assert model.projector[1].running_mean.dtype == torch.float32
    out = model.project(pooled)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    whole = AudioMosaicForPreTraining(config).to(torch.bfloat16)
    assert whole.project(pooled.bfloat16()).dtype == torch.bfloat16


@pytest.mark.slow
@pytest.mark.dist
def test_fsdp_with_torch_compile_equals_eager(runs):
    """The paper recipe's `torch_compile: true` under FSDP2 (activation checkpointing and the synchronised projector
    BatchNorm included): the compiled run's losses equal the eager run's to float32 rounding (measured ≤ 5e-6), and
    the saved model has the plain parameter names. ~4 minutes of inductor compilation on 2 CPU cores."""
    root = runs["root"]
    _finish([_launch("fsdp", runs["common"] + ["--output_dir", str(root / "compiled"), "--torch_compile", "true"],
                     root / "compiled.log")], timeout=1200)
    compiled = _losses(_summary(root / "compiled")["log_history"])
    eager = _losses(_summary(root / "fsdp")["log_history"])
    assert sorted(compiled) == sorted(eager)
    for step in eager:
        assert abs(compiled[step] - eager[step]) <= 1e-4 * abs(eager[step]), (step, compiled[step], eager[step])
    weights = load_file(root / "compiled" / "model.safetensors")
    assert weights.keys() == load_file(root / "fsdp" / "model.safetensors").keys()  # no `_orig_mod.` prefixes


@pytest.mark.slow
@pytest.mark.dist
def test_fsdp_on_two_nodes_trains_as_one_and_refuses_node_local_dirs(runs):
    """run_scripts/accelerate/multi_node_fsdp.yaml on two loopback "nodes" of one process each: with a shared
    --output_dir the losses and final weights equal the single-node FSDP run's; with one --output_dir per node every
    rank stops at start with the message naming the fix (no node could resume from per-rank shards)."""
    root, common = runs["root"], runs["common"]

    def two_nodes(output_dirs, name):
        port = _free_port()
        return [_launch("multi_node_fsdp", common + ["--output_dir", str(output_dir)], root / f"{name}{node}.log",
                        node=node, port=port) for node, output_dir in enumerate(output_dirs)]

    _finish(two_nodes([root / "two_nodes"] * 2, "two_nodes"))
    assert _losses(_summary(root / "two_nodes")["log_history"]) == _losses(_summary(root / "fsdp")["log_history"])
    final = load_file(root / "two_nodes" / "model.safetensors")
    reference = load_file(root / "fsdp" / "model.safetensors")
    for name in reference:
        torch.testing.assert_close(final[name], reference[name], rtol=0, atol=1e-6)

    refused = two_nodes([root / "node_local0", root / "node_local1"], "node_local")
    for proc, log, log_path in refused:
        proc.wait(timeout=300)
        log.close()
        assert proc.returncode != 0
        assert "FSDP with fsdp_state_dict_type SHARDED_STATE_DICT writes one shard per rank" in log_path.read_text()


def test_adjust_fsdp_mixed_precision_changes_only_accelerates_low_precision_policy():
    from types import SimpleNamespace

    from torch.distributed.fsdp import MixedPrecision, MixedPrecisionPolicy

    from modeling_audiomosaic.pretraining_trainer import adjust_fsdp_mixed_precision

    plugin = SimpleNamespace(mixed_precision_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16,
                                                                         reduce_dtype=torch.bfloat16))
    assert adjust_fsdp_mixed_precision(plugin)  # FSDP2, as accelerate builds it
    assert plugin.mixed_precision_policy == MixedPrecisionPolicy(param_dtype=torch.bfloat16,
                                                                 reduce_dtype=torch.float32, cast_forward_inputs=False)
    plugin = SimpleNamespace(mixed_precision_policy=MixedPrecision(param_dtype=torch.bfloat16,
                                                                   reduce_dtype=torch.bfloat16))
    assert adjust_fsdp_mixed_precision(plugin)  # FSDP1
    assert plugin.mixed_precision_policy == MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.float32,
                                                           cast_forward_inputs=False, cast_root_forward_inputs=False)
    chosen = SimpleNamespace(mixed_precision_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16,
                                                                         reduce_dtype=torch.float16))
    assert not adjust_fsdp_mixed_precision(chosen)  # a reduce dtype the user chose stays
    assert chosen.mixed_precision_policy.reduce_dtype == torch.float16
    fp32 = SimpleNamespace(mixed_precision_policy=MixedPrecisionPolicy())
    assert not adjust_fsdp_mixed_precision(fp32) and not adjust_fsdp_mixed_precision(None)
