"""Multi-node pre-training, simulated on the loopback: two `accelerate launch --num_machines 2 --machine_rank 0|1`
launches of one process each (gloo), then a resume on 1 node x 2 processes (issue 17, "Multi-node").

One 2-node run serves several checks: the first step's gradients equal one process's on the same global batch, global
rank 0 alone writes the checkpoint (node 1 writes only its rank's RNG state), and resuming that checkpoint on one node
with two processes continues exactly as the 2-node run did. Plus the collective checks of
`modeling_audiomosaic.multinode` (2 processes, no training) and the multi-node accelerate configs of run_scripts/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file
from test_run_pretrain import TINY_RECIPE, _clip, _free_port, _losses

from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicForPreTraining
from modeling_audiomosaic.multinode import dataset_fingerprint, sharing_verdict

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "tests" / "dist_scripts" / "pretrain_probe.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
STEPS = 4  # 24 clips / (2 ranks x 4): 3 steps per epoch, so step 4 is in epoch 1


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multinode_audio")
    rng = np.random.default_rng(3)
    for i in range(24):
        sf.write(folder / f"clip{i:02d}.wav", _clip(rng, 1.0), 16000)
    return folder


def _start(launch_args, script_args, log_path, env):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--mixed_precision", "no",
           "--dynamo_backend", "no", *launch_args, str(PROBE), *script_args]
    log = open(log_path, "w")  # a file, not a pipe: a hung worker must not block the test on its pipe
    # its own session, so that a hung launch can be killed with its workers (by this process group's id only)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    return proc, log


def _finish(runs, timeout=400):
    """Wait for every (proc, log, log_path); on a timeout kill every launch's process group. Returns the logs."""
    try:
        for proc, _, _ in runs:
            proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for proc, _, _ in runs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for _, log, _ in runs:
        log.close()
    texts = [Path(path).read_text() for _, _, path in runs]
    for (proc, _, _), text in zip(runs, texts):
        assert proc.returncode == 0, text[-5000:]
    return texts


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def two_node_run(audio_dir, tmp_path_factory):
    """Two launches, machine ranks 0 and 1, one process each; node 1 gets its own --output_dir (a node-local disk),
    so what each node writes can be told apart."""
    root = tmp_path_factory.mktemp("two_nodes")
    recipe = root / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    port = _free_port()
    common = ["--config", str(recipe), "--train_path", str(audio_dir), "--max_steps", str(STEPS), "--save_steps", "2",
              "--drop_path_rate", "0.0"]
    runs = []
    for node in (0, 1):
        launch = ["--num_machines", "2", "--machine_rank", str(node), "--main_process_ip", "127.0.0.1",
                  "--main_process_port", str(port), "--num_processes", "2"]
        env = {**ENV, "AUDIOMOSAIC_PROBE_DIR": str(root / "probe")}
        log_path = root / f"node{node}.log"
        runs.append((*_start(launch, common + ["--output_dir", str(root / f"node{node}")], log_path, env), log_path))
    logs = _finish(runs)
    return {"root": root, "common": common, "logs": logs}


@pytest.mark.dist
def test_two_nodes_match_one_process_write_one_checkpoint_and_resume_on_one_node(two_node_run):
    root, logs = two_node_run["root"], two_node_run["logs"]
    node0, node1, probe = root / "node0", root / "node1", root / "probe"
    summary = json.loads((node0 / "pretrain_summary.json").read_text())
    full = _losses(summary["log_history"])
    assert sorted(full) == list(range(1, STEPS + 1))
    assert summary["data"]["examples_trained"] == STEPS * 2 * 4  # both nodes' batches, summed by global rank 0

    # (a) the first step's gradients (after DDP's all-reduce across the nodes) equal one process's on the global batch
    grads = [torch.load(probe / f"grads_rank{r}.pt") for r in (0, 1)]
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.equal(grads[0][name], grads[1][name]), name  # the replicas on both nodes took the same step
    batches = [torch.load(probe / f"batch_rank{r}.pt") for r in (0, 1)]
    assert not torch.equal(batches[0]["input_values"], batches[1]["input_values"])  # each node trained on its share
    # each global rank draws its own masks (seed + rank, as the original), not a copy of rank 0's
    assert not any(torch.equal(a, b) for a, b in zip(batches[0]["ids_keep"], batches[1]["ids_keep"]))
    model = AudioMosaicForPreTraining(AudioMosaicConfig.from_pretrained(node0))
    model.load_state_dict(torch.load(probe / "initial.pt"))
    model.train()
    model.projector.eval()  # as the probe did in the 2-node run (running statistics)

    def one_process_grads(parts):
        model.zero_grad()
        views = torch.cat([b["input_values"] for b in parts])
        ids = [torch.cat([b["ids_keep"][v] for b in parts]) for v in range(len(parts[0]["ids_keep"]))]
        out = model(input_values=views, ids_keep=ids)
        out.loss.backward()
        return out.loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, reference = one_process_grads(batches)
    assert reference.keys() == grads[0].keys()
    # fp32: the only differences are summation orders (the 8x8 similarity matrix split in two 4-row halves, DDP's
    # all-reduce of the two halves' gradients, batched matmuls of 4 vs 8 rows): about 10 float32 ulps of each
    # tensor's largest entry (measured 1.2e-6 relative, 3.4e-5 absolute on entries up to ~30), so 1e-5 of each
    # tensor's largest entry bounds it with margin while a wrong batch or reduction is off by > 1e-2 (checked below)
    worst = max(((grads[0][n] - reference[n]).abs().max() / reference[n].abs().max().clamp_min(1e-12)).item()
                for n in reference)
    assert worst < 1e-5, worst
    assert abs(full[1] - loss) < 1e-6, (full[1], loss)  # the logged loss: the mean of the two nodes' losses
    # the check can fail: one node's half alone gives other gradients
    _, half = one_process_grads(batches[:1])
    assert max(((half[n] - reference[n]).abs().max() / reference[n].abs().max()).item() for n in reference) > 1e-2

    # (b) one checkpoint: global rank 0 writes model, optimizer, scheduler and trainer state; node 1 (its own disk here)
    # gets only its rank's RNG state, named by the global rank
    for step in (2, STEPS):
        names = set(os.listdir(node0 / f"checkpoint-{step}"))
        assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state_0.pth"} <= names
        assert not any(n.startswith("rng_state_1") for n in names), names
    assert _files(node1) == ["checkpoint-2/rng_state_1.pth", f"checkpoint-{STEPS}/rng_state_1.pth"]
    assert not list(node0.glob(".audiomosaic_node_check_*"))  # the sharing probe cleans up
    assert "is not shared by all nodes" in logs[0]  # and it told the user what node-local disks mean for resuming

    # (c) resume checkpoint-2 on 1 node x 2 processes (the node-1 RNG file copied in, as the README says for
    # node-local disks): it continues with the batches and the random streams the 2-node run had
    resumed_dir = root / "resumed"
    shutil.copytree(node0 / "checkpoint-2", resumed_dir / "checkpoint-2")
    shutil.copy(node1 / "checkpoint-2" / "rng_state_1.pth", resumed_dir / "checkpoint-2")
    launch = ["--num_machines", "1", "--num_processes", "2", "--main_process_port", str(_free_port())]
    args = two_node_run["common"] + ["--output_dir", str(resumed_dir), "--resume_from_checkpoint", "last"]
    _finish([(*_start(launch, args, root / "resumed.log", ENV), root / "resumed.log")])
    resumed = json.loads((resumed_dir / "pretrain_summary.json").read_text())
    assert resumed["global_step"] == STEPS
    again = _losses(resumed["log_history"])
    for step in range(3, STEPS + 1):  # step 3 ends epoch 0, step 4 is in epoch 1
        assert abs(full[step] - again[step]) <= 1e-6, (step, full[step], again[step])
    final, final_resumed = load_file(node0 / "model.safetensors"), load_file(resumed_dir / "model.safetensors")
    for name in final:
        torch.testing.assert_close(final_resumed[name], final[name], rtol=0, atol=1e-6)
    # the RNG streams went on per global rank: rank r's state at step 4 is the 2-node run's rank r state
    # (weights-only unpickling, with the numpy types an RNG state holds allowed explicitly)
    numpy_types = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype("uint32"))]
    for rank, node_dir in ((0, node0), (1, node1)):
        with torch.serialization.safe_globals(numpy_types):
            a = torch.load(node_dir / f"checkpoint-{STEPS}" / f"rng_state_{rank}.pth", weights_only=True)
            b = torch.load(resumed_dir / f"checkpoint-{STEPS}" / f"rng_state_{rank}.pth", weights_only=True)
        assert torch.equal(a["cpu"], b["cpu"]) and a["python"] == b["python"], rank
        assert all(np.array_equal(x, y) for x, y in zip(a["numpy"], b["numpy"])), rank


def test_streams_with_different_shard_lists_stop_every_rank(monkeypatch):
    """Ranks listing different shards (a data folder synced differently on one node) would split the stream in
    different ways: every rank gets one message naming the ranks, hosts and counts (the gather stubbed here; the
    collective itself is exercised by test_collective_checks_stop_every_rank_with_one_message)."""
    from modeling_audiomosaic import multinode

    reports = [("node-a", 8), ("node-b", 6)]
    monkeypatch.setattr(multinode, "gather_objects", lambda mine: reports)
    expected = r"different streams.*rank 0 \(host node-a\): 8 shards; rank 1 \(host node-b\): 6 shards"
    with pytest.raises(ValueError, match=expected):
        multinode.check_same_stream(8, 2)
    reports[1] = ("node-b", 8)
    multinode.check_same_stream(8, 2)
    multinode.check_same_stream(3, 1)  # one process: nothing to compare


def test_sharing_verdict():
    two_nodes = [(0, 0), (1, 1), (2, 0), (3, 1)]  # (global rank, local rank): 2 nodes x 2 processes
    shared = [(r, local, True) for r, local in two_nodes]
    per_node = [(r, local, r < 2) for r, local in two_nodes]
    assert sharing_verdict(shared, save_on_each_node=False) == ("shared", None)
    kind, message = sharing_verdict(shared, save_on_each_node=True)
    assert kind == "error" and "same checkpoint files" in message
    kind, message = sharing_verdict(per_node, save_on_each_node=False)
    assert kind == "per-node" and "ranks [2, 3]" in message and "rng_state_<rank>.pth" in message
    assert sharing_verdict(per_node, save_on_each_node=True) == ("per-node", None)
    one_node = [(0, 0, True), (1, 1, False)]
    assert sharing_verdict(one_node, save_on_each_node=True) == ("single-node", None)
    # FSDP's per-rank shards: fine on a shared dir or one node, an error on node-local dirs (no node could resume)
    assert sharing_verdict(shared, save_on_each_node=False, sharded_checkpoints=True) == ("shared", None)
    assert sharing_verdict(one_node, save_on_each_node=False, sharded_checkpoints=True) == ("single-node", None)
    for each_node in (False, True):
        kind, message = sharing_verdict(per_node, save_on_each_node=each_node, sharded_checkpoints=True)
        assert kind == "error" and "one shard per rank" in message and "FULL_STATE_DICT" in message


def test_fsdp_sharded_checkpoints_reads_the_launch_environment(monkeypatch):
    from types import SimpleNamespace

    from modeling_audiomosaic.multinode import fsdp_sharded_checkpoints

    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    monkeypatch.delenv("FSDP_STATE_DICT_TYPE", raising=False)
    assert not fsdp_sharded_checkpoints(SimpleNamespace(fsdp=[], fsdp_config={}))  # DDP
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # accelerate launch --use_fsdp / an FSDP config file
    assert fsdp_sharded_checkpoints(None)  # accelerate's default state-dict type is sharded
    monkeypatch.setenv("FSDP_STATE_DICT_TYPE", "FULL_STATE_DICT")
    assert not fsdp_sharded_checkpoints(None)
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    monkeypatch.delenv("FSDP_STATE_DICT_TYPE")
    args = SimpleNamespace(fsdp=["full_shard"], fsdp_config={"state_dict_type": "SHARDED_STATE_DICT"})
    assert fsdp_sharded_checkpoints(args)  # TrainingArguments --fsdp
    args.fsdp_config = {"state_dict_type": "FULL_STATE_DICT"}
    assert not fsdp_sharded_checkpoints(args)
    args.fsdp_config = {}
    assert not fsdp_sharded_checkpoints(args)  # transformers' own default there is the full state dict


def test_dataset_fingerprint_follows_ids_and_order(audio_dir, tmp_path):
    from modeling_audiomosaic.feature_extraction.collators import EpochTaggedDataset
    from modeling_audiomosaic.feature_extraction.loading import load_audio_dataset

    a = dataset_fingerprint(EpochTaggedDataset(load_audio_dataset(str(audio_dir))))
    copy = tmp_path / "copy"
    shutil.copytree(audio_dir, copy)  # the same files under another mount point: same ids
    assert dataset_fingerprint(EpochTaggedDataset(load_audio_dataset(str(copy)))) == a
    (copy / "clip05.wav").unlink()  # one node's copy lacks a file
    b = dataset_fingerprint(EpochTaggedDataset(load_audio_dataset(str(copy))))
    assert b[0] == a[0] - 1 and b[1] != a[1]


@pytest.mark.dist
def test_collective_checks_stop_every_rank_with_one_message(tmp_path):
    """2 processes, each acting as its own node (local rank 0) with its own disk: a failure seen by one rank only is
    raised on both, 'last' agrees on the newest checkpoint both see complete, sharing and data checks."""
    script = REPO / "tests" / "dist_scripts" / "multinode_checks.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(script), str(tmp_path)]
    log_path = tmp_path / "checks.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log_path.read_text()
    assert proc.returncode == 0, text[-5000:]
    results = [json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1)]
    assert results[0] == results[1], results  # every rank reached the same verdicts
    r = results[0]
    assert r["on_every_rank"].startswith("RuntimeError: loading the training data failed on 1 of 2 ranks: rank 1")
    assert "no such folder on this node" in r["on_every_rank"]
    assert r["last"].endswith("checkpoint-2")  # rank 1's disk has no complete checkpoint-3
    assert "is incomplete on 1 of 2 ranks: rank 1" in r["explicit"] and "rng_state_1.pth missing" in r["explicit"]
    assert r["sharing_own_dirs"] == "per-node" and r["sharing_shared_dir"] == "shared"
    assert "save_on_each_node" in r["sharing_shared_dir_each_node"]
    assert "the ranks see different training data" in r["data"] and r["data_same"] == "None"


def test_multi_node_accelerate_configs_parse():
    """Every accelerate config of run_scripts/accelerate loads with accelerate's own config class (unknown keys are
    errors there); the multi-node ones describe 2 nodes x 8 GPUs with placeholders for the machine rank and the main
    node's address, and say in their comments what to pass on each node."""
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType

    folder = REPO / "run_scripts" / "accelerate"
    configs = {path.name: ClusterConfig.from_yaml_file(path) for path in sorted(folder.glob("*.yaml"))}
    expected = {"multi_node_ddp.yaml": DistributedType.MULTI_GPU, "multi_node_fsdp.yaml": DistributedType.FSDP}
    assert expected.keys() <= configs.keys(), sorted(configs)
    for name, kind in expected.items():
        config = configs[name]
        assert config.distributed_type == kind, name
        assert config.num_machines == 2 and config.num_processes == 16, name  # processes over all nodes
        assert config.machine_rank == 0 and config.main_process_ip and config.main_process_port, name
        assert config.rdzv_backend == "static" and config.same_network, name
        assert "--machine_rank" in (folder / name).read_text(), name
    assert configs["multi_node_fsdp.yaml"].fsdp_config == configs["fsdp.yaml"].fsdp_config  # same sharding as 1 node
