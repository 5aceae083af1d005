"""AudioSet-shaped shards (`feature_extraction/audioset_shards.py`) and streaming pre-training on them: per-rank shard
assignment, skip counts for bad items, and an exact mid-epoch resume in streaming mode (issue 17, point 3)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_run_pretrain import tiny_recipe

from modeling_audiomosaic.feature_extraction.audioset_shards import (
    BAD_KINDS,
    audioset_vocabulary,
    decoder_benchmark_items,
    encode_clip,
    make_clip,
    time_decoders,
    write_audioset_shards,
)
from modeling_audiomosaic.feature_extraction.loading import load_audio_dataset

REPO = Path(__file__).resolve().parents[1]
RECORDER = Path(__file__).parent / "dist_scripts" / "record_stream_batches.py"

TINY_RECIPE = tiny_recipe()

# 4 shards x 5 items, the first item of each shard bad: 16 good clips, 8 per rank with 2 processes (2 batches of 4 per
# epoch, none dropped), and every bad item is followed by a good one of its shard
NUM_CLIPS, NUM_SHARDS, BAD = 20, 4, (0, 5, 10, 15)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("audioset_shards")
    summary = write_audioset_shards(out, NUM_CLIPS, NUM_SHARDS, seconds=2.0, bad_indices=BAD, seed=3)
    return out, summary


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(TINY_RECIPE)
    return path


def test_shards_have_the_audioset_shape_and_are_deterministic(shards, tmp_path):
    import pyarrow.parquet as pq

    out, summary = shards
    vocabulary = dict(audioset_vocabulary())
    assert len(vocabulary) == 527
    clips = summary["clips"]
    assert [c["shard"] for c in clips] == [i // 5 for i in range(NUM_CLIPS)]
    assert {c["bad"] for c in clips if c["index"] in BAD} == set(BAD_KINDS)
    good = [c for c in clips if not c["bad"]]
    assert {c["codec"] for c in good} == {"flac", "mp3"}
    assert {c["sampling_rate"] for c in clips} == {32000, 44100, 48000}
    table = pq.read_table(summary["files"]["parquet"][0])
    assert table.column_names == ["video_id", "audio", "labels", "human_labels"]
    assert "Audio" in table.schema.metadata[b"huggingface"].decode()  # as a mirror pushed with datasets
    row = table.slice(1, 1).to_pylist()[0]
    clip = clips[1]
    assert row["video_id"] == clip["video_id"] and len(clip["video_id"]) == 11
    assert row["audio"]["path"] == clip["parquet_id"] == f"{clip['video_id']}.{clip['codec']}"
    assert row["labels"] == clip["labels"] and 1 <= len(row["labels"]) <= 3
    assert row["human_labels"] == [vocabulary[m] for m in row["labels"]]
    wave, rate = sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="float32")
    assert rate == clip["sampling_rate"] and wave.shape == (2 * rate,) and 0.2 < np.abs(wave).max() < 1.0
    with tarfile.open(summary["files"]["webdataset"][0]) as tar:
        names = tar.getnames()
        meta = json.loads(tar.extractfile(f"{clip['video_id']}.json").read())
    assert names[2:4] == [f"{clip['video_id']}.{clip['codec']}", f"{clip['video_id']}.json"]
    assert meta["labels"] == clip["labels"] and meta["sampling_rate"] == clip["sampling_rate"]
    again = write_audioset_shards(tmp_path, NUM_CLIPS, NUM_SHARDS, seconds=2.0, bad_indices=BAD, seed=3)
    for fmt in ("parquet", "webdataset"):
        for a, b in zip(summary["files"][fmt], again["files"][fmt]):
            assert Path(a).read_bytes() == Path(b).read_bytes(), (fmt, a)
    other = write_audioset_shards(tmp_path / "other", 4, 1, seconds=1.0, seed=4, formats=["webdataset"])
    assert other["clips"][0]["video_id"] != clips[0]["video_id"] and "parquet" not in other["files"]


@pytest.mark.parametrize("fmt", ["parquet", "webdataset"])
def test_streaming_loader_reads_the_shards_and_counts_the_bad_items(shards, fmt):
    out, summary = shards
    ds = load_audio_dataset(dataset_name=str(out / fmt), streaming=True)
    examples = list(ds)
    key = "parquet_id" if fmt == "parquet" else "webdataset_id"
    good = [c[key] for c in summary["clips"] if not c["bad"]]
    assert [e["id"] for e in examples] == good  # unshuffled: shard order, bad items dropped
    assert all(e["audio"].dtype == np.float32 and e["audio"].shape == (32000,) for e in examples)  # 2 s at 16 kHz
    assert examples[0]["labels"] == summary["clips"][1]["labels"]
    assert sorted(ds.skip_counter.recent_ids) == summary["bad_ids"][fmt]
    assert ds.skip_counter.num_skipped == len(BAD)
    # each bad item is reported with the good row after it (the skip accounting of streams)
    assert sorted(i for e in examples for i in e["skipped_ids"]) == summary["bad_ids"][fmt]


def test_shuffle_input_shards_reads_one_shard_at_a_time_without_the_pass_end_pause(shards, monkeypatch):
    """`--shuffle_input_shards 1` (datasets' `max_buffer_input_shards`, the runs' default): the buffer is fed by one
    shard at a time (each shard's rows come out together), and the pass ends without datasets' pause (its sleep
    guarding Arrow's read-ahead threads, taken when several shards are interleaved: datasets' default)."""
    import datasets.iterable_dataset as iterable_module

    out, summary = shards
    shard_of = {c["parquet_id"]: c["shard"] for c in summary["clips"]}
    sleeps = []
    monkeypatch.setattr(iterable_module.time, "sleep", sleeps.append)
    stream = load_audio_dataset(dataset_name=str(out / "parquet"), streaming=True)
    one = [shard_of[e["id"]] for e in stream.shuffle(seed=0, buffer_size=1, max_input_shards=1)]
    assert sorted(one) == sorted(shard_of[i] for i in shard_of if i not in summary["bad_ids"]["parquet"])
    assert [s for i, s in enumerate(one) if i == 0 or s != one[i - 1]] == sorted(set(one), key=one.index)  # runs
    assert sleeps == []
    mixed = [shard_of[e["id"]] for e in stream.shuffle(seed=0, buffer_size=1)]
    assert sorted(mixed) == sorted(one) and len(set(mixed[:4])) > 1  # the default interleaves the shards
    assert sleeps  # and pauses at the pass end
    with pytest.raises(ValueError, match="max_input_shards must be >= 1"):
        stream.shuffle(seed=0, max_input_shards=0)


def test_make_clip_from_a_folder_source_and_the_decoder_timer(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        sf.write(tmp_path / f"s{i}.wav", (0.5 * rng.standard_normal(8000)).astype(np.float32), 16000)
    clip = make_clip(str(tmp_path), np.random.default_rng(1), 32000, seconds=3.0)
    assert clip.shape == (96000,) and clip.dtype == np.float32 and 0.2 < np.abs(clip).max() < 1.0
    items = [("flac", encode_clip(clip, 32000, "flac")), ("wav", encode_clip(clip, 32000, "wav"))]
    rows = time_decoders(items, ["soundfile"], repeats=1)
    assert {r["codec"] for r in rows} == {"flac", "wav"}
    assert all(r["ms_per_10s"] > 0 and r["length_diff"] == 0 and r["error"] is None for r in rows)
    out = tmp_path / "shards"
    write_audioset_shards(out, 3, 1, seconds=1.0, bad_indices=[1], formats=["webdataset"], codecs=["mp3"])
    items = decoder_benchmark_items(out)
    assert [codec for codec, _ in items] == ["mp3", "mp3", "wav", "wav"]  # the bad item left out


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args, out, record_dir, log_path, timeout=400):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(RECORDER), *args, "--output_dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "RECORD_BATCHES_DIR": str(record_dir)}
    with open(log_path, "w") as log:  # a file, not a pipe: a hung worker must not block the test on its pipe
        # its own session, so that a hung run is ended as one process group (the launcher and both workers)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, log_path.read_text()[-5000:]
    return json.loads((out / "pretrain_summary.json").read_text())


def _records(folder):
    return {int(p.stem[4:]): [json.loads(line) for line in p.read_text().splitlines()]
            for p in sorted(Path(folder).glob("rank*.jsonl"))}


def _batches(rows):
    return [(r["step"], r["epoch"], r["ids"]) for r in rows]


def _losses(history):
    return {h["step"]: h["loss"] for h in history if "loss" in h}


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "model.safetensors"))


@pytest.mark.dist
def test_two_process_streaming_shards_skips_and_mid_epoch_resume(shards, recipe, tmp_path):
    """Two processes stream the parquet shards (`--dataset_name <dir> --streaming true`), 6 steps = 3 epochs of 2
    batches per rank. (a) each rank reads its own shards: in every epoch no clip twice, every good clip once over the
    ranks, reshuffled between epochs; (b) the bad items are counted with their ids; (c) resuming from the checkpoint
    of step 3 (mid-epoch 1) trains on exactly the batches of the uninterrupted run, with its losses and weights."""
    out, summary = shards
    steps = 6
    common = ["--config", str(recipe), "--dataset_name", str(out / "parquet"), "--streaming", "true",
              "--max_steps", str(steps)]
    full = _launch(common + ["--save_steps", "1"], tmp_path / "full", tmp_path / "rec_full", tmp_path / "full.log")
    records = _records(tmp_path / "rec_full")
    assert sorted(records) == [0, 1] and all(len(r) == steps for r in records.values())
    good = sorted(c["parquet_id"] for c in summary["clips"] if not c["bad"])
    orders = {}
    for epoch in range(3):
        per_rank = {rank: [i for r in rows if r["epoch"] == epoch for i in r["ids"]] for rank, rows in records.items()}
        assert all(len(ids) == len(set(ids)) == 8 for ids in per_rank.values()), per_rank  # no clip twice
        assert not set(per_rank[0]) & set(per_rank[1])  # the ranks read different shards
        assert sorted(per_rank[0] + per_rank[1]) == good  # every clip once over the ranks
        orders[epoch] = per_rank
    assert [r["epoch"] for r in records[0]] == [0, 0, 1, 1, 2, 2]
    assert orders[0] != orders[1] or orders[1] != orders[2]  # set_epoch reshuffles
    data = full["data"]
    assert data["examples_trained"] == steps * 2 * 4, data
    assert data["bad_item_ids"] == summary["bad_ids"]["parquet"] and data["distinct_bad_items"] == len(BAD), data
    # each bad item is met once per epoch and reported with the next good row of the stream: the meetings of epochs 0
    # and 1 are all reported by the first batch of epoch 2; one in epoch 2 stays unreported if the shuffle puts the
    # bad item last in its rank's stream
    by_item = data["skip_events_by_item"]
    assert set(by_item) == set(summary["bad_ids"]["parquet"]) and set(by_item.values()) <= {2, 3}, data
    assert data["skip_events"] == sum(by_item.values()) and data["skip_events_without_id"] == 0, data

    resume_at = 3  # epoch 1, one of its two batches done
    position = json.loads((tmp_path / "full" / f"checkpoint-{resume_at}" / "stream_position_1.json").read_text())
    workers = position.pop("workers")  # where the batch ends in the worker's records: 4 good ones and the bad before
    assert position == {"epoch": 1, "batches": 1, "global_step": resume_at, "dataloader_num_workers": 0,
                        "order": {"shuffle_buffer_size": 1000, "shuffle_input_shards": 1, "max_train_samples": None}}
    assert workers["batches"] == [1] and workers["last_worker"] == 0 and workers["rows_before"] == [0], workers
    assert 4 <= workers["rows"][0] <= 6, workers
    resumed = _launch(common + ["--save_steps", "100", "--resume_from_checkpoint",
                                str(tmp_path / "full" / f"checkpoint-{resume_at}")],
                      tmp_path / "resumed", tmp_path / "rec_resumed", tmp_path / "resumed.log")
    again = _records(tmp_path / "rec_resumed")
    for rank in (0, 1):
        # the same batches in the same epochs (skip accounting aside: a bad item skipped at the end of a pass is
        # reported with the first row of the next one, which a run resumed in that next pass never met)
        assert _batches(again[rank]) == _batches([r for r in records[rank] if r["step"] > resume_at]), rank
    a, b = _losses(full["log_history"]), _losses(resumed["log_history"])
    for step in range(resume_at + 1, steps + 1):
        assert abs(a[step] - b[step]) <= 1e-5, (step, a[step], b[step])
    wa, wb = _weights(tmp_path / "full"), _weights(tmp_path / "resumed")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-5


@pytest.mark.dist
def test_two_process_stream_with_uneven_shares_trains_full_batches(recipe, tmp_path):
    """Uneven bad items: one rank's shards hold 7 good clips, the other's 9, so each pass ends with a partial batch (3
    and 1 clips) that the all-gathers would pair with the other rank's batch of another size. Dropped: every trained
    batch is full, one rank's passes are one batch long and the other's two, and the steps stay in lockstep."""
    out = tmp_path / "uneven"
    write_audioset_shards(out, 20, 4, seconds=1.0, bad_indices=(0, 5, 10, 11), seed=4, formats=["parquet"])
    summary = _launch(["--config", str(recipe), "--dataset_name", str(out / "parquet"), "--streaming", "true",
                       "--max_steps", "4", "--save_steps", "100"], tmp_path / "run", tmp_path / "rec",
                      tmp_path / "run.log")
    records = _records(tmp_path / "rec")
    assert summary["global_step"] == 4 and all(len(rows) == 4 for rows in records.values())
    assert all(len(r["ids"]) == 4 for rows in records.values() for r in rows)
    assert sorted([r["epoch"] for r in rows] for rows in records.values()) == [[0, 0, 1, 1], [0, 1, 2, 3]]


@pytest.mark.dist
def test_two_processes_on_fewer_shards_than_processes_resume_exactly(recipe, tmp_path):
    """One shard for two processes: accelerate has both read the whole stream and keep their slices of each global
    batch, so a process's records end inside a global batch and cannot be passed over undecoded. The resume skips by
    decoding (said in the log) and continues with the uninterrupted run's batches and losses (passing over the
    records gave other batches)."""
    out = tmp_path / "one_shard"
    write_audioset_shards(out, 24, 1, seconds=1.0, bad_indices=(3,), seed=5, formats=["parquet"])
    common = ["--config", str(recipe), "--dataset_name", str(out / "parquet"), "--streaming", "true",
              "--max_steps", "4"]
    full = _launch(common + ["--save_steps", "1"], tmp_path / "full", tmp_path / "rec_full", tmp_path / "full.log")
    records = _records(tmp_path / "rec_full")
    resume_at = 3  # the second pass, one batch in
    resumed = _launch(common + ["--save_steps", "100", "--resume_from_checkpoint",
                                str(tmp_path / "full" / f"checkpoint-{resume_at}")],
                      tmp_path / "resumed", tmp_path / "rec_resumed", tmp_path / "resumed.log")
    assert (tmp_path / "resumed.log").read_text().count("fewer shards than processes") == 2  # one per process
    again = _records(tmp_path / "rec_resumed")
    for rank in (0, 1):
        assert _batches(again[rank]) == _batches([r for r in records[rank] if r["step"] > resume_at]), rank
    a, b = _losses(full["log_history"]), _losses(resumed["log_history"])
    assert abs(a[4] - b[4]) <= 1e-5, (a[4], b[4])


def _resume_in_process(common, tmp_path, monkeypatch, resume_at, rows, losses):
    """Resume ``common``'s run (the uninterrupted one in ``tmp_path / "full"``, its trained batches ``rows`` and
    ``losses``) from its checkpoint at ``resume_at``: the same batches and losses until the end."""
    from dist_scripts.record_stream_batches import record_batches

    from modeling_audiomosaic.pretraining_run import run_pretraining

    record_batches(tmp_path / f"rec{resume_at}", monkeypatch.setattr)
    resumed = run_pretraining(common + [
        "--save_steps", "100", "--output_dir", str(tmp_path / f"resumed{resume_at}"),
        "--resume_from_checkpoint", str(tmp_path / "full" / f"checkpoint-{resume_at}"),
    ])
    assert _batches(_records(tmp_path / f"rec{resume_at}")[0]) == _batches(rows[resume_at:]), resume_at
    b = _losses(resumed["log_history"])  # the checkpoint's history, then the resumed steps
    for step in range(resume_at + 1, len(rows) + 1):
        assert abs(losses[step] - b[step]) <= 1e-6, (resume_at, step, losses[step], b[step])


def test_one_process_streaming_resume_in_epoch_0_and_epoch_1(shards, recipe, tmp_path, monkeypatch):
    """One process over the WebDataset shards (16 good clips: 4 batches per epoch): resuming mid-epoch 0 (step 2), at
    the end of it (step 4) and mid-epoch 1 (step 5) continues with the uninterrupted run's batches and losses. With
    datasets' interleaving of the shards into the shuffle buffer (`--shuffle_input_shards 4`; the runs' default, one
    shard at a time, is resumed in the two-process test)."""
    from dist_scripts.record_stream_batches import record_batches  # tests/ is on pytest's path

    from modeling_audiomosaic.pretraining_run import run_pretraining

    out, summary = shards
    steps = 6
    common = ["--config", str(recipe), "--dataset_name", str(out / "webdataset"), "--streaming", "true",
              "--max_steps", str(steps), "--shuffle_input_shards", "4"]
    record_batches(tmp_path / "rec_full", monkeypatch.setattr)
    full = run_pretraining(common + ["--save_steps", "1", "--output_dir", str(tmp_path / "full")])
    rows = _records(tmp_path / "rec_full")[0]
    assert [r["epoch"] for r in rows] == [0, 0, 0, 0, 1, 1]
    good = sorted(c["webdataset_id"] for c in summary["clips"] if not c["bad"])
    assert sorted(i for r in rows[:4] for i in r["ids"]) == good
    a = _losses(full["log_history"])
    for resume_at in (2, 4, 5):
        _resume_in_process(common, tmp_path, monkeypatch, resume_at, rows, a)


def test_streaming_resume_with_workers_passes_over_the_trained_records_undecoded(shards, recipe, tmp_path,
                                                                                  monkeypatch):
    """Two persistent DataLoader workers, two parquet shards each: a pass is 4 batches of 4, delivered by workers 0,
    1, 0, 1. Resumed after step 2 (round 0 complete) or step 3 (round 1 started by worker 0), the workers pass over
    the records of the rounds done without decoding them (Trainer skips step 3's batch by iterating), read the next
    pass whole, and the run continues with the uninterrupted run's batches and losses."""
    from dist_scripts.record_stream_batches import record_batches

    from modeling_audiomosaic.feature_extraction.records import ExampleDecoder
    from modeling_audiomosaic.pretraining_run import run_pretraining

    decode = ExampleDecoder.decode

    def logged_decode(self, record):  # DataLoader workers are forked: they write what they decode, and in which pass
        example = decode(self, record)
        if example is not None and self.row_skip is not None and self.row_skip.pass_in_progress == 0:
            with open(tmp_path / f"decoded-{os.getpid()}.txt", "a") as handle:
                handle.write(example["id"] + "\n")
        return example

    def decoded_ids():
        found = [i for p in tmp_path.glob("decoded-*.txt") for i in p.read_text().split()]
        for p in tmp_path.glob("decoded-*.txt"):
            p.unlink()
        return found

    monkeypatch.setattr(ExampleDecoder, "decode", logged_decode)
    out, _ = shards
    common = ["--config", str(recipe), "--dataset_name", str(out / "parquet"), "--streaming", "true",
              "--max_steps", "6", "--dataloader_num_workers", "2", "--dataloader_persistent_workers", "true",
              "--dataloader_multiprocessing_context", "fork"]
    record_batches(tmp_path / "rec_full", monkeypatch.setattr)
    full = run_pretraining(common + ["--save_steps", "1", "--output_dir", str(tmp_path / "full")])
    rows = _records(tmp_path / "rec_full")[0]
    assert [r["epoch"] for r in rows] == [0, 0, 0, 0, 1, 1]
    a = _losses(full["log_history"])
    for resume_at, then_iterated in ((2, 0), (3, 1)):
        position = json.loads((tmp_path / "full" / f"checkpoint-{resume_at}" / "stream_position_0.json").read_text())
        assert position["workers"]["batches"] == [(resume_at + 1) // 2, resume_at // 2], position
        _resume_in_process(common, tmp_path, monkeypatch, resume_at, rows, a)
        decoded = decoded_ids()  # in the resumed pass
        passed_over = [i for r in rows[: resume_at - then_iterated] for i in r["ids"]]
        assert not set(passed_over) & set(decoded), resume_at  # the rounds done: not decoded again
        assert sorted(decoded) == sorted(i for r in rows[resume_at - then_iterated: 4] for i in r["ids"]), resume_at


def test_streaming_resume_needs_the_stream_positions(shards, recipe, tmp_path):
    from modeling_audiomosaic.checkpoints import checkpoint_problems
    from modeling_audiomosaic.pretraining_run import run_pretraining

    out, _ = shards
    common = ["--config", str(recipe), "--dataset_name", str(out / "webdataset"), "--streaming", "true",
              "--output_dir", str(tmp_path / "run")]
    run_pretraining(common + ["--max_steps", "1", "--save_steps", "1"])
    checkpoint = tmp_path / "run" / "checkpoint-1"
    assert checkpoint_problems(checkpoint, 1, streaming=True) == []
    layout = checkpoint / "process_layout.json"  # written by global rank 0 into every checkpoint
    assert json.loads(layout.read_text())["world_size"] == 1
    saved = layout.read_text()
    layout.write_text(json.dumps({**json.loads(saved), "world_size": 4}))  # as if 4 processes had written it
    assert checkpoint_problems(checkpoint, 1) == []  # map-style data resumes (run_pretraining warns)
    assert any("written by a run of 4 processes, resumed with 1: a stream resumes only with the same number" in p
               for p in checkpoint_problems(checkpoint, 1, streaming=True))
    layout.write_text(saved)
    # the batch order of a stream is that of its DataLoader workers (each its own shards and shuffle buffer)
    assert json.loads((checkpoint / "stream_position_0.json").read_text())["dataloader_num_workers"] == 0
    with pytest.raises(ValueError, match="--dataloader_num_workers 2: it was written with 0"):
        run_pretraining(common + ["--max_steps", "2", "--resume_from_checkpoint", str(checkpoint),
                                  "--dataloader_num_workers", "2"])
    # so is the order of its rows: the shuffle buffer, the shards feeding it, a take()
    assert json.loads((checkpoint / "stream_position_0.json").read_text())["order"] == {
        "shuffle_buffer_size": 1000, "shuffle_input_shards": 1, "max_train_samples": None}
    with pytest.raises(ValueError, match=r"--shuffle_buffer_size 50 \(it was written with 1000\), "
                                         r"--shuffle_input_shards 10 \(it was written with 1\)"):
        run_pretraining(common + ["--max_steps", "2", "--resume_from_checkpoint", str(checkpoint),
                                  "--shuffle_input_shards", "10", "--shuffle_buffer_size", "50"])
    (checkpoint / "stream_position_0.json").unlink()
    assert checkpoint_problems(checkpoint, 1) == []  # a map-style run does not need it
    assert any("stream positions of ranks [0]" in p for p in checkpoint_problems(checkpoint, 1, streaming=True))
    with pytest.raises(ValueError, match="stream positions of ranks"):
        run_pretraining(common + ["--max_steps", "2", "--resume_from_checkpoint", str(checkpoint)])


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "PCM_U8"])
def test_fast_bytes_decoder_matches_soundfile(subtype, monkeypatch):
    """FLAC and PCM WAV bytes decoded by miniaudio (when installed) give soundfile's samples exactly; other WAV
    encodings, MP3 and anything it cannot read go to soundfile and are classified as before."""
    pytest.importorskip("miniaudio")
    from modeling_audiomosaic.feature_extraction import audio_io
    from modeling_audiomosaic.feature_extraction.skips import AudioDecodeError

    if audio_io.BYTES_DECODER != "miniaudio":
        pytest.skip(f"{audio_io.DECODER_ENV} selects soundfile")
    rng = np.random.default_rng(0)
    stereo = (0.4 * rng.standard_normal((44100, 2))).astype(np.float32)  # overs > 1 for the float WAV
    encoded = {}
    flac_subtype = {"FLOAT": "PCM_16", "PCM_32": "PCM_24", "PCM_U8": "PCM_S8"}.get(subtype, subtype)
    for fmt, sub in (("WAV", subtype), ("FLAC", flac_subtype)):
        buffer = io.BytesIO()
        sf.write(buffer, stereo, 44100, format=fmt, subtype=sub)
        encoded[fmt] = buffer.getvalue()
    encoded["MP3"] = encode_clip(stereo[:, 0], 44100, "mp3")
    routed = {name: audio_io._fast_read_bytes(data) is not None for name, data in encoded.items()}
    assert routed == {"WAV": subtype.startswith("PCM_") and subtype != "PCM_U8", "FLAC": True, "MP3": False}
    fast = {name: audio_io.read_audio(data) for name, data in encoded.items()}
    monkeypatch.setattr(audio_io, "_MINIAUDIO", None)
    slow = {name: audio_io.read_audio(data) for name, data in encoded.items()}
    for name in encoded:
        (a, rate_a), (b, rate_b) = fast[name], slow[name]
        assert rate_a == rate_b == 44100 and a.shape == b.shape and a.dtype == np.float32, name
        assert np.array_equal(a, b) and a.flags.writeable, name
    monkeypatch.undo()
    for data in (encoded["FLAC"][:64], encoded["WAV"][:40], b"RIFF1234WAVEfmt " + bytes(30)):
        with pytest.raises(AudioDecodeError):
            audio_io.decode_audio(data)
