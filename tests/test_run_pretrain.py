"""run_scripts/run_pretrain.py end to end on tiny generated audio: single process, resume, streaming, 2 processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import run_pretrain
import soundfile as sf

from modeling_audiomosaic.pretraining_run import parse_args

REPO = Path(__file__).resolve().parents[1]

TINY_OVERRIDES = ('{"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64, '
                  '"projection_hidden_size": 16, "projection_dim": 8}')


def tiny_recipe(**settings) -> str:
    """A run_pretrain.py recipe (YAML) for a tiny model on CPU, with ``settings`` replacing or adding keys (a value
    of None drops the key, so run_pretrain's default applies). Tests that train write one of these."""
    recipe = {
        "input_preset": "speechcommands",
        "config_overrides": TINY_OVERRIDES,
        "augmentation": "light",
        "per_device_train_batch_size": 4,
        "learning_rate": 1.0e-3,
        "max_grad_norm": 0.0,
        "use_cpu": True,
        "logging_steps": 1,
        "report_to": "none",
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "seed": 0,
    }
    recipe.update(settings)
    lines = []
    for key, value in recipe.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif key == "config_overrides":
            value = "'" + value + "'"  # a JSON string in YAML
        lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


TINY_RECIPE = tiny_recipe(max_steps=6, save_steps=3)


def _clip(rng, seconds):
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(len(t))).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrain_audio")
    rng = np.random.default_rng(0)
    for i in range(24):
        sf.write(folder / f"clip{i:02d}.wav", _clip(rng, rng.uniform(1.0, 3.0)), 16000)
    (folder / "corrupt.wav").write_bytes(b"definitely not a RIFF file" * 20)
    return folder


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(TINY_RECIPE)
    return path


def _losses(history):
    return {h["step"]: h["loss"] for h in history if "loss" in h}


def test_single_process_run_skips_corrupt_file_and_saves(audio_dir, recipe, tmp_path):
    from transformers import AutoModel, AutoModelForPreTraining

    out = tmp_path / "run"
    result = run_pretrain.main(["--config", str(recipe), "--train_path", str(audio_dir), "--output_dir", str(out)])
    assert result["global_step"] == 6
    losses = _losses(result["log_history"])
    assert len(losses) == 6 and all(np.isfinite(list(losses.values())))
    summary = json.loads((out / "pretrain_summary.json").read_text())
    assert summary["data_items_skipped"] >= 1  # the corrupt file, counted, the run went on
    logged = [h for h in result["log_history"] if "loss" in h][-1]
    assert logged["kept_tokens_view0"] == 25 and logged["kept_tokens_view1"] == 33  # tf masks on 8x8 patches
    assert {"accuracy", "alignment", "uniformity", "lid_mean"} <= set(logged)
    assert type(AutoModelForPreTraining.from_pretrained(out)).__name__ == "AudioMosaicForPreTraining"
    assert type(AutoModel.from_pretrained(out)).__name__ == "AudioMosaicModel"
    assert (out / "preprocessor_config.json").exists()


@pytest.mark.parametrize("workers", [[], ["--dataloader_num_workers", "2", "--dataloader_persistent_workers", "true"]],
                         ids=["main_process", "persistent_workers"])
def test_resume_reproduces_uninterrupted_run(audio_dir, recipe, tmp_path, workers):
    """Resumed mid-epoch from step 4, the run continues with the uninterrupted run's losses. With persistent workers
    the resumed run makes one DataLoader more (Trainer's skip of the trained batches): its workers' seed must not be
    drawn from the global generator, whose stream draws the masks (the epoch after the resumed one differed)."""
    full = run_pretrain.main(["--config", str(recipe), "--train_path", str(audio_dir), *workers,
                              "--output_dir", str(tmp_path / "full"), "--max_steps", "8", "--save_steps", "4"])
    resumed = run_pretrain.main(["--config", str(recipe), "--train_path", str(audio_dir), *workers,
                                 "--output_dir", str(tmp_path / "resumed"), "--max_steps", "8", "--save_steps", "4",
                                 "--resume_from_checkpoint", str(tmp_path / "full" / "checkpoint-4")])
    a, b = _losses(full["log_history"]), _losses(resumed["log_history"])
    assert sorted(a) == sorted(b) == list(range(1, 9))
    for step in range(5, 9):  # steps after the interruption (an epoch boundary at step 6 included)
        assert abs(a[step] - b[step]) <= 1e-6, (step, a[step], b[step])
    # the counters go on from the checkpoint's (run_counters.json): the same logs and data accounting at the end
    summaries = [json.loads((tmp_path / name / "pretrain_summary.json").read_text()) for name in ("full", "resumed")]
    assert summaries[0]["data"] == summaries[1]["data"] and summaries[0]["data"]["examples_trained"] == 32
    assert summaries[0]["data"]["skip_events"] >= 1  # the corrupt file, met before and after the interruption
    last = [[h for h in r["log_history"] if "loss" in h][-1] for r in (full, resumed)]
    assert last[0]["data_items_skipped"] == last[1]["data_items_skipped"]


def test_recipe_errors(recipe, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_RECIPE + "mask_ratio_tme: 0.5\n")
    with pytest.raises(ValueError, match="unknown option"):
        parse_args(["--config", str(bad)])
    with pytest.raises(ValueError, match="train_path"):
        run_pretrain.main(["--config", str(recipe), "--output_dir", str(tmp_path / "x")])


def test_streaming_parquet_through_datasets(audio_dir, recipe, tmp_path):
    """The Hub code path (`--dataset_name ... --streaming`) on local parquet shards, a corrupt row included."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(audio_dir.glob("*.wav"))
    shard_dir = tmp_path / "pq"
    shard_dir.mkdir()
    for shard in range(2):
        rows = [{"bytes": f.read_bytes(), "path": f.name} for f in files[shard::2]]
        pq.write_table(pa.table({"audio": rows}), shard_dir / f"train-{shard}.parquet")
    result = run_pretrain.main([
        "--config", str(recipe), "--dataset_name", "parquet", "--data_files", str(shard_dir / "*.parquet"),
        "--streaming", "true", "--max_steps", "3", "--output_dir", str(tmp_path / "stream"),
    ])
    assert result["global_step"] == 3
    assert all(np.isfinite(list(_losses(result["log_history"]).values())))
    data = json.loads((tmp_path / "stream" / "pretrain_summary.json").read_text())["data"]
    assert data["examples_trained"] == 12 and data["skip_events_without_id"] == 0, data
    assert data["bad_item_ids"] == (["corrupt.wav"] if data["skip_events"] else []), data


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.dist
def test_two_process_accelerate_launch(audio_dir, recipe, tmp_path):
    out = tmp_path / "dist"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(REPO / "run_scripts" / "run_pretrain.py"),
           "--config", str(recipe), "--train_path", str(audio_dir), "--output_dir", str(out), "--max_steps", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    log_path = tmp_path / "launch.log"
    with open(log_path, "w") as log:  # a file, not a pipe: a hung worker must not block the test on its pipe
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
                                stdin=subprocess.DEVNULL)
        try:
            proc.wait(timeout=400)
        except subprocess.TimeoutExpired:
            # the launcher starts workers in their own sessions: kill everything that names this test's folder
            subprocess.run(["pkill", "-9", "-f", str(out)], check=False)
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log_path.read_text()[-5000:]
    summary = json.loads((out / "pretrain_summary.json").read_text())
    assert summary["global_step"] == 4
    # 25 items (24 clips + 1 corrupt, replaced by a good one) split over 2 ranks x 4 clips: 3 steps per epoch, so
    # step 4 is epoch 1.33 (a single process would be at 0.67)
    epochs = [h["epoch"] for h in summary["log_history"] if "loss" in h]
    assert abs(epochs[-1] - 4 / 3) < 0.01, epochs
    assert all(np.isfinite(list(_losses(summary["log_history"]).values())))
    # the data accounting is summed over both ranks: 4 steps x 2 ranks x 4 examples
    data = summary["data"]
    assert data["examples_trained"] == 32, data
    assert data["bad_item_ids"] == ["corrupt.wav"] and data["skip_events"] >= 1, data
    # every parameter reaches the contrastive loss: DDP does not traverse the graph for unused ones every step
    assert "find_unused_parameters=True was specified" not in log_path.read_text()


@pytest.mark.dist
def test_two_process_mae_with_activation_checkpointing(audio_dir, tmp_path):
    """MSM-MAE under DDP with activation checkpointing: its loss does not reach the pooler's fc_norm, so DDP must
    look for unused parameters (transformers turns that off under checkpointing: the second step failed with
    "Expected to have finished reduction in the prior iteration")."""
    overrides = TINY_OVERRIDES[:-1] + (', "decoder_hidden_size": 16, "decoder_num_hidden_layers": 1, '
                                       '"decoder_num_attention_heads": 2, "decoder_intermediate_size": 32}')
    recipe = tmp_path / "mae.yaml"
    recipe.write_text(tiny_recipe(max_steps=3, objective="mae", masking_mode="random", config_overrides=overrides,
                                  checkpointing_fraction=0.5))
    out, log_path = tmp_path / "mae", tmp_path / "mae.log"
    proc, log = _launch(["--config", str(recipe), "--train_path", str(audio_dir), "--output_dir", str(out)], out,
                        log_path)
    with log:
        summary = _wait(proc, out, log_path)
    assert summary["global_step"] == 3
    assert all(np.isfinite(list(_losses(summary["log_history"]).values())))
    told = "do not reach audiomosaic.pooler.fc_norm.weight, audiomosaic.pooler.fc_norm.bias: ddp_find_unused_parameters"
    assert told + "=True" in log_path.read_text()


def test_time_budget_stops_training(audio_dir, recipe, tmp_path):
    result = run_pretrain.main(["--config", str(recipe), "--train_path", str(audio_dir),
                                "--output_dir", str(tmp_path / "budget"), "--max_steps", "1000",
                                "--max_train_minutes", "0.0001"])
    assert 1 <= result["global_step"] < 1000
    assert (tmp_path / "budget" / "model.safetensors").exists()
    summary = json.loads((tmp_path / "budget" / "pretrain_summary.json").read_text())
    assert summary["stopped_by_time_budget"] and summary["scheduled_steps"] == 1000, summary


def _launch(args, out, log_path):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(REPO / "run_scripts" / "run_pretrain.py"), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    log = open(log_path, "w")  # a file, not a pipe: a hung worker must not block the test on its pipe
    # its own session, so that kill -9 of the group reaches the launcher and both workers
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env, stdin=subprocess.DEVNULL,
                            start_new_session=True), log


def _wait(proc, out, log_path, timeout=400):
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        subprocess.run(["pkill", "-9", "-f", str(out)], check=False)
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, log_path.read_text()[-5000:]
    return json.loads((out / "pretrain_summary.json").read_text())


@pytest.mark.dist
def test_kill_9_two_process_run_then_resume_gives_the_same_final_loss(audio_dir, recipe, tmp_path):
    """kill -9 of a 2-process run at a random step (right after a checkpoint, or while the next one is written), then
    `--resume_from_checkpoint last`: the losses after the resume point and the final loss equal the uninterrupted
    run's."""
    import random
    import signal
    import time

    from modeling_audiomosaic.checkpoints import checkpoint_problems

    steps = 8
    common = ["--config", str(recipe), "--train_path", str(audio_dir), "--max_steps", str(steps), "--save_steps", "1"]
    full_out = tmp_path / "full"
    proc, log = _launch(common + ["--output_dir", str(full_out)], full_out, tmp_path / "full.log")
    full = _wait(proc, full_out, tmp_path / "full.log")
    log.close()

    kill_after = random.Random().randint(2, steps - 2)  # a fresh random step each run; printed on failure
    out = tmp_path / "killed"
    proc, log = _launch(common + ["--output_dir", str(out)], out, tmp_path / "killed.log")
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if (out / f"checkpoint-{kill_after}" / "trainer_state.json").exists():
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"ended before step {kill_after}: " + (tmp_path / "killed.log").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    subprocess.run(["pkill", "-9", "-f", str(out)], check=False)  # anything that left the group
    proc.wait()
    log.close()
    assert not (out / "pretrain_summary.json").exists()
    complete = [int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if not checkpoint_problems(p)]
    assert kill_after <= max(complete) < steps, (kill_after, complete)

    proc, log = _launch(common + ["--output_dir", str(out), "--resume_from_checkpoint", "last"], out,
                        tmp_path / "resumed.log")
    resumed = _wait(proc, out, tmp_path / "resumed.log")
    log.close()
    assert resumed["global_step"] == full["global_step"] == steps
    a, b = _losses(full["log_history"]), _losses(resumed["log_history"])
    assert sorted(a) == sorted(b) == list(range(1, steps + 1))
    for step in range(max(complete) + 1, steps + 1):
        assert abs(a[step] - b[step]) <= 1e-5, (kill_after, step, a[step], b[step])
    # the final loss (Trainer's `train_loss` of a resumed run averages only the steps run after resuming, so the
    # per-step losses are the comparison)
    assert abs(a[steps] - b[steps]) <= 1e-5, (kill_after, a[steps], b[steps])


def test_incomplete_checkpoints_are_detected_and_skipped(audio_dir, recipe, tmp_path):
    from modeling_audiomosaic.checkpoints import checkpoint_problems, last_complete_checkpoint

    out = tmp_path / "run"
    run_pretrain.main(["--config", str(recipe), "--train_path", str(audio_dir), "--output_dir", str(out),
                       "--max_steps", "4", "--save_steps", "2"])
    assert checkpoint_problems(out / "checkpoint-4") == []
    assert last_complete_checkpoint(out) == str(out / "checkpoint-4")
    optimizer = out / "checkpoint-4" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])  # killed while writing it
    assert any("optimizer.pt" in p for p in checkpoint_problems(out / "checkpoint-4"))
    assert any("optimizer.pt" in p for p in checkpoint_problems(out / "checkpoint-4", world_size=2, rank=1))
    # a flipped byte inside a member: its CRC, which rank 0 reads (rank 1 only checks the archive is whole)
    scheduler = out / "checkpoint-4" / "scheduler.pt"
    data = bytearray(scheduler.read_bytes())
    with zipfile.ZipFile(scheduler) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)  # stored uncompressed by torch.save
    local = member.header_offset  # local header: 30 bytes, then the name and extra field, whose lengths it gives
    name_length, extra_length = (int.from_bytes(data[local + k:local + k + 2], "little") for k in (26, 28))
    start = local + 30 + name_length + extra_length
    data[start + member.file_size // 2] ^= 0xFF
    scheduler.write_bytes(bytes(data))
    assert any("scheduler.pt: corrupt member" in p for p in checkpoint_problems(out / "checkpoint-4", 2, 0))
    assert not any("scheduler.pt" in p for p in checkpoint_problems(out / "checkpoint-4", 2, 1))
    # ... unless it is the first process of its node (node-local copies: each node checks its own)
    assert any("scheduler.pt: corrupt" in p for p in checkpoint_problems(out / "checkpoint-4", 2, 1, local_rank=0))
    (out / "checkpoint-2" / "trainer_state.json").unlink()
    assert last_complete_checkpoint(out) is None
    # a 2-process run resuming from a 1-process checkpoint's rng files: rank 1's state is missing
    assert any("expected [0, 1]" in p for p in checkpoint_problems(out / "checkpoint-2", world_size=2))
    with pytest.raises(ValueError, match="no complete checkpoint"):
        run_pretrain.main(["--config", str(recipe), "--train_path", str(audio_dir), "--output_dir", str(out),
                           "--max_steps", "6", "--resume_from_checkpoint", "last"])
    with pytest.raises(ValueError, match="is incomplete: optimizer.pt"):
        run_pretrain.main(["--config", str(recipe), "--train_path", str(audio_dir), "--output_dir", str(out),
                           "--max_steps", "6", "--resume_from_checkpoint", str(out / "checkpoint-4")])


@pytest.fixture(scope="module")
def small_audio_dir(tmp_path_factory):
    """12 items (11 clips, 1 s each, and one corrupt file): 3 steps of 4 clips per epoch in one process."""
    folder = tmp_path_factory.mktemp("pretrain_small")
    rng = np.random.default_rng(1)
    for i in range(11):
        sf.write(folder / f"clip{i:02d}.wav", _clip(rng, 1.0), 16000)
    (folder / "corrupt.wav").write_bytes(b"definitely not a RIFF file" * 20)
    return folder


def test_resume_at_and_after_epoch_boundaries_reproduces_uninterrupted_run(small_audio_dir, recipe, tmp_path):
    """Resuming at the end of epoch 0 (step 3), right after it (step 4) and mid-epoch 1 (step 5) gives, for every later
    step, the uninterrupted run's loss (3 steps per epoch; 8 steps cross two more epoch boundaries)."""
    steps = 8
    common = ["--config", str(recipe), "--train_path", str(small_audio_dir), "--max_steps", str(steps)]
    full = run_pretrain.main(common + ["--output_dir", str(tmp_path / "full"), "--save_steps", "1"])
    a = _losses(full["log_history"])
    assert sorted(a) == list(range(1, steps + 1))
    for resume_at in (3, 4, 5):
        resumed = run_pretrain.main(common + [
            "--output_dir", str(tmp_path / f"resumed{resume_at}"), "--save_steps", str(steps),
            "--resume_from_checkpoint", str(tmp_path / "full" / f"checkpoint-{resume_at}"),
        ])
        b = _losses(resumed["log_history"])
        assert resumed["global_step"] == steps
        for step in range(resume_at + 1, steps + 1):
            assert abs(a[step] - b[step]) <= 1e-6, (resume_at, step, a[step], b[step])


@pytest.mark.dist
@pytest.mark.slow
def test_two_process_resume_at_and_after_epoch_boundaries(small_audio_dir, recipe, tmp_path):
    """2 processes x 2 clips: 3 steps per epoch. Resuming at the end of epoch 0 (step 3), right after it (step 4) and
    mid-epoch 1 (step 5) reproduces every later loss of the uninterrupted run."""
    steps = 7
    common = ["--config", str(recipe), "--train_path", str(small_audio_dir), "--max_steps", str(steps),
              "--per_device_train_batch_size", "2"]
    full_out = tmp_path / "full"
    proc, log = _launch(common + ["--output_dir", str(full_out), "--save_steps", "1"], full_out, tmp_path / "full.log")
    full = _wait(proc, full_out, tmp_path / "full.log")
    log.close()
    a = _losses(full["log_history"])
    assert sorted(a) == list(range(1, steps + 1))
    assert abs([h["epoch"] for h in full["log_history"] if "loss" in h][-1] - steps / 3) < 0.01
    for resume_at in (3, 4, 5):
        out = tmp_path / f"resumed{resume_at}"
        args = common + ["--output_dir", str(out), "--save_steps", str(steps),
                         "--resume_from_checkpoint", str(full_out / f"checkpoint-{resume_at}")]
        proc, log = _launch(args, out, tmp_path / f"resumed{resume_at}.log")
        b = _losses(_wait(proc, out, tmp_path / f"resumed{resume_at}.log")["log_history"])
        log.close()
        for step in range(resume_at + 1, steps + 1):
            assert abs(a[step] - b[step]) <= 1e-6, (resume_at, step, a[step], b[step])


def test_summary_counts_skips_made_in_dataloader_workers(recipe, tmp_path):
    """Decoding runs in 2 DataLoader workers, so the main process's own counters stay at 0: the summary must still
    carry what the workers met. 12 files, 2 of them corrupt, 2 epochs of 3 batches of 4."""
    folder = tmp_path / "audio"
    folder.mkdir()
    rng = np.random.default_rng(2)
    bad = {"clip03.wav", "clip08.wav"}
    for i in range(12):
        name = f"clip{i:02d}.wav"
        if name in bad:
            (folder / name).write_bytes(b"definitely not a RIFF file" * 20)
        else:
            sf.write(folder / name, _clip(rng, 1.0), 16000)
    out = tmp_path / "run"
    result = run_pretrain.main(["--config", str(recipe), "--train_path", str(folder), "--output_dir", str(out),
                                "--max_steps", "6", "--save_steps", "100", "--dataloader_num_workers", "2"])
    assert result["global_step"] == 6
    summary = json.loads((out / "pretrain_summary.json").read_text())
    data = summary["data"]
    assert data["examples_trained"] == 24  # 6 batches of 4 decoded examples
    assert data["skip_events"] == summary["data_items_skipped"] == 4  # each bad file once per epoch
    assert data["distinct_bad_items"] == 2 and data["bad_item_ids"] == sorted(bad)
    assert data["skip_events_by_item"] == {name: 2 for name in bad} and data["skip_events_without_id"] == 0
    assert "bad items skipped 4 times: 2 distinct bad items (clip03.wav, clip08.wav)" in data["text"]
    assert [h for h in summary["log_history"] if "loss" in h][-1]["data_items_skipped"] == 4
