"""Transcoding a pre-training source once to 16 kHz 16-bit WAV WebDataset shards (`feature_extraction/
transcode_shards.py`, `run_scripts/transcode_shards.py`): exact audio, labels and ids kept, bad items counted,
resumable, parallel with the same output, and the result streams into pre-training."""

from __future__ import annotations

import inspect
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_run_pretrain import tiny_recipe

from modeling_audiomosaic.feature_extraction import transcode_shards as transcode_module
from modeling_audiomosaic.feature_extraction.audio_io import decode_audio
from modeling_audiomosaic.feature_extraction.audioset_shards import CODECS, iter_shard_audio, write_audioset_shards
from modeling_audiomosaic.feature_extraction.loading import load_audio_dataset
from modeling_audiomosaic.feature_extraction.transcode_shards import (
    STATE_DIR,
    SUMMARY_NAME,
    TranscodeSource,
    tar_safe_key,
    transcode_shards,
)

# 14 clips in 3 source shards (5 / 4 / 5), 3 of them bad; FLAC, MP3 and WAV at 16-48 kHz; 1 s each (fast)
NUM_CLIPS, NUM_SHARDS, NUM_BAD = 14, 3, 3
STEP = 1.0 / 32768.0  # one 16-bit quantisation step

TINY_RECIPE = tiny_recipe(learning_rate=None, max_grad_norm=None, logging_steps=None)


def _quiet(_: str) -> None:
    """Progress lines are not checked here."""


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("transcode_source")
    summary = write_audioset_shards(out, NUM_CLIPS, NUM_SHARDS, seconds=1.0, num_bad=NUM_BAD, seed=1,
                                    codecs=["flac", "mp3", "wav"], sampling_rates=[16000, 32000, 44100, 48000])
    return out, summary


@pytest.fixture(scope="module")
def transcoded(source, tmp_path_factory):
    src, _ = source
    out = tmp_path_factory.mktemp("transcoded") / "wav16"
    summary = transcode_shards(TranscodeSource(dataset_name=str(src / "webdataset")), out, shard_size=2,
                               print_fn=_quiet)
    return out, summary


def _members(tar_path):
    with tarfile.open(tar_path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def _outputs(out):
    """{file name: bytes} of the output shards and the shard records (the state that resuming must reproduce)."""
    files = {p.name: p.read_bytes() for p in sorted(Path(out).glob("*.tar"))}
    files |= {f"{STATE_DIR}/{p.name}": p.read_bytes() for p in sorted((Path(out) / STATE_DIR).glob("train-*.json"))}
    return files


def test_wav_is_a_writable_codec_and_the_defaults_are_the_mirrors(source):
    src, summary = source
    assert CODECS == ("flac", "mp3")
    assert inspect.signature(write_audioset_shards).parameters["codecs"].default == CODECS
    good = [c for c in summary["clips"] if not c["bad"]]
    assert {c["codec"] for c in good} == {"flac", "mp3", "wav"}
    rates = {c["sampling_rate"] for c in good}
    assert 16000 in rates and len(rates) >= 3  # WAV-to-WAV copies and resampled clips
    assert {codec for _, codec, _ in iter_shard_audio(src)} == {"flac", "mp3", "wav"}
    with pytest.raises(ValueError, match="codecs must be a non-empty subset"):
        write_audioset_shards(src / "x", 2, 1, seconds=0.5, codecs=["ogg"])


def test_output_is_16k_pcm16_equal_to_decode_audio_with_ids_and_labels(source, transcoded):
    src, written = source
    out, summary = transcoded
    clips = {c["webdataset_id"]: c for c in written["clips"]}
    encoded = {key: data for key, _, data in iter_shard_audio(src)}
    good = [c["webdataset_id"] for c in written["clips"] if not c["bad"]]
    keys, worst = [], 0.0
    for tar_path in sorted(out.glob("*.tar")):
        members = _members(tar_path)
        assert len(members) <= 2 * 2  # shard_size clips, a .wav and a .json each
        for (wav_name, wav), (json_name, meta_bytes) in zip(members[0::2], members[1::2]):
            key = wav_name.removesuffix(".wav")
            assert json_name == f"{key}.json"
            info = sf.info(io.BytesIO(wav))
            assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
            pcm, _ = sf.read(io.BytesIO(wav), dtype="int16")
            reference = decode_audio(encoded[key])  # the loader's decode + resample of the source item
            assert pcm.shape == reference.shape
            worst = max(worst, float(np.max(np.abs(pcm.astype(np.float64) / 32768.0 - reference))))
            meta = json.loads(meta_bytes)
            assert meta["id"] == key and meta["labels"] == clips[key]["labels"]
            assert meta["human_labels"] and meta["video_id"] == key  # the source's other metadata kept
            keys.append(key)
    assert worst <= STEP, worst
    assert keys == good  # every good clip once, in source order
    assert summary["num_clips"] == len(good) and summary["keys_not_ids"] == 0 and summary["deduplicated_keys"] == {}
    # bad items: counted per reason, with their ids
    assert summary["num_skipped"] == NUM_BAD == sum(summary["skipped_by_reason"].values())
    assert sorted(i for ids in summary["skipped_ids"].values() for i in ids) == written["bad_ids"]["webdataset"]
    assert json.loads((out / SUMMARY_NAME).read_text()) == summary
    # names: <split>-<source shard>-<chunk>, shard_size good clips each
    assert summary["files"] == sorted(summary["files"]) and summary["files"][0] == "train-00000-0000.tar"
    per_source = {s: sum(1 for c in written["clips"] if c["shard"] == s and not c["bad"]) for s in range(NUM_SHARDS)}
    assert len(summary["files"]) == sum(-(-n // 2) for n in per_source.values())


@pytest.fixture(scope="module")
def parquet_out(source, tmp_path_factory):
    """The parquet shards of the same clips, transcoded by the command line (one process)."""
    from transcode_shards import main  # run_scripts/ is on the tests' path (conftest.py)

    src, _ = source
    out = tmp_path_factory.mktemp("transcoded_parquet") / "wav16"
    summary = main(["--dataset_name", str(src / "parquet"), "--out_dir", str(out), "--shard_size", "2",
                    "--progress_every", "0"])
    return out, summary


def test_parquet_source_through_the_cli(source, parquet_out):
    """The same audio as from the WebDataset source; the ids (the audio paths, parquet has no id column) made
    tar-safe."""
    src, written = source
    out, summary = parquet_out
    assert summary["num_skipped"] == NUM_BAD and summary["num_workers"] == 1
    assert summary["keys_not_ids"] == summary["num_clips"] and summary["deduplicated_keys"] == {}
    good = [c for c in written["clips"] if not c["bad"]]
    audio = {}
    for tar_path in sorted(out.glob("*.tar")):
        for name, data in _members(tar_path):
            if name.endswith(".json"):
                meta = json.loads(data)
                assert name == tar_safe_key(meta["id"]) + ".json"
            else:
                audio[name.removesuffix(".wav")] = data
    assert list(audio) == [tar_safe_key(c["parquet_id"]) for c in good]  # "<video id>.flac" -> "<video id>_flac"
    encoded = {key: data for key, _, data in iter_shard_audio(src)}
    for clip in good:
        pcm, rate = sf.read(io.BytesIO(audio[tar_safe_key(clip["parquet_id"])]), dtype="float32")
        assert rate == 16000 and np.max(np.abs(pcm - decode_audio(encoded[clip["webdataset_id"]]))) <= STEP


@pytest.mark.slow  # 13-35 s on 2 busy cores: each spawned worker imports torch and the package
def test_two_worker_processes_write_the_same_files(source, parquet_out, tmp_path):
    src, _ = source
    out, summary = parquet_out
    two = transcode_shards(TranscodeSource(dataset_name=str(src / "parquet")), tmp_path / "two", shard_size=2,
                           num_workers=2, progress_every=0, print_fn=_quiet)
    assert two["num_workers"] == 2 and two["files"] == summary["files"]
    assert _outputs(tmp_path / "two") == _outputs(out)


def test_resume_after_an_interruption_gives_the_same_output(source, transcoded, tmp_path, monkeypatch):
    src, _ = source
    full, full_summary = transcoded
    target = _outputs(full)
    source_args = TranscodeSource(dataset_name=str(src / "webdataset"))
    out = tmp_path / "resumed"

    # (1) the run dies while writing its 6th clip (inside the third shard)
    real_encode, calls = transcode_module.encode_wav16, []

    def failing_encode(wave, *args):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt("simulated interruption")
        return real_encode(wave, *args)

    monkeypatch.setattr(transcode_module, "encode_wav16", failing_encode)
    with pytest.raises(KeyboardInterrupt):
        transcode_shards(source_args, out, shard_size=2, print_fn=_quiet)
    monkeypatch.setattr(transcode_module, "encode_wav16", real_encode)
    assert 1 <= len(list(out.glob("*.tar"))) < len(target) // 2
    assert list((out / STATE_DIR / "tmp").iterdir())  # the unfinished shard's temporary file is left behind
    assert not (out / SUMMARY_NAME).exists()

    # (2) rerun: continues after the complete shards; every clip once, the same bytes as the uninterrupted run
    calls.clear()
    monkeypatch.setattr(transcode_module, "encode_wav16", lambda *a: (calls.append(1), real_encode(*a))[1])
    summary = transcode_shards(source_args, out, shard_size=2, print_fn=_quiet)
    assert len(calls) < full_summary["num_clips"]  # the complete shards were not transcoded again
    assert _outputs(out) == target
    assert summary["skipped_ids"] == full_summary["skipped_ids"]  # skips counted once
    assert not list((out / STATE_DIR / "tmp").iterdir())

    # (3) the last shard deleted and a stray temporary file: rerun writes exactly that shard again
    last = sorted(out.glob("*.tar"))[-1]
    last.unlink()
    (out / STATE_DIR / "tmp" / f"{last.name}.999").write_bytes(b"partial")
    calls.clear()
    summary = transcode_shards(source_args, out, shard_size=2, print_fn=_quiet)
    assert 1 <= len(calls) <= 2 and _outputs(out) == target
    assert {k: summary[k] for k in ("num_clips", "skipped_by_reason", "files")} == \
        {k: full_summary[k] for k in ("num_clips", "skipped_by_reason", "files")}

    # other settings refuse to resume (they would mix two layouts); --overwrite starts again
    with pytest.raises(ValueError, match="other settings"):
        transcode_shards(source_args, out, shard_size=3, print_fn=_quiet)
    transcode_shards(source_args, out, shard_size=3, overwrite=True, print_fn=_quiet)
    assert not any(p.name.endswith("0003.tar") for p in out.glob("*.tar"))


def test_unsafe_and_repeated_ids_become_unique_tar_keys(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i, example_id in enumerate(["clip/1", "clip.1", "ok-id", "clip/1", "x" * 120]):
        path = tmp_path / f"a{i}.wav"
        sf.write(path, (0.3 * rng.standard_normal(8000)).astype(np.float32), 8000)
        rows.append({"wav": str(path), "id": example_id, "labels": f"l{i}"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "out"
    summary = transcode_shards(TranscodeSource(path=str(manifest)), out, shard_size=10, print_fn=_quiet)
    ds = load_audio_dataset(dataset_name=str(out), streaming=True)
    examples = list(ds)
    ids = [e["id"] for e in examples]
    long_key = tar_safe_key("x" * 120)
    assert ids == ["clip_1", "clip_1_2", "ok-id", "clip_1_3", long_key] and len(long_key) <= 80
    assert summary["deduplicated_keys"] == {"clip_1_2": "clip.1", "clip_1_3": "clip/1"}
    assert summary["keys_not_ids"] == 4 and summary["key_examples"]["clip_1"] == "clip/1"
    assert [e["labels"] for e in examples] == [[f"l{i}"] for i in range(5)]
    assert all(e["audio"].shape == (16000,) for e in examples)  # 8 kHz -> 16 kHz
    metas = [json.loads(data)["id"] for t in sorted(out.glob("*.tar")) for n, data in _members(t) if n.endswith("json")]
    assert metas == [r["id"] for r in rows]  # the json keeps the source ids
    # interrupted after a renamed shard was written but before its record: a rerun completes the renaming, no change
    before = _outputs(out)
    renamed = next(p for p in (out / STATE_DIR).glob("train-*.json") if "clip_1_2" in p.read_text())
    record = json.loads(renamed.read_text())
    renamed.write_text(json.dumps({**record, "keys": [tar_safe_key(i) for i in record["ids"]]}))
    again = transcode_shards(TranscodeSource(path=str(manifest)), out, shard_size=10, print_fn=_quiet)
    assert _outputs(out) == before and again["deduplicated_keys"] == summary["deduplicated_keys"]


def test_output_streams_into_pretraining(transcoded, tmp_path):
    """`run_pretrain.py --dataset_name <out_dir> --streaming true` reads the folder (its summary and hidden state
    beside the shards) and trains a step on its clips."""
    from modeling_audiomosaic.pretraining_run import run_pretraining

    out, summary = transcoded
    ds = load_audio_dataset(dataset_name=str(out), streaming=True)
    examples = list(ds)
    assert len(examples) == summary["num_clips"] and ds.skip_counter.num_skipped == 0
    assert ds.n_shards == summary["num_shards"]
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY_RECIPE)
    result = run_pretraining(["--config", str(recipe), "--dataset_name", str(out), "--streaming", "true",
                              "--max_steps", "1", "--save_steps", "100", "--output_dir", str(tmp_path / "run")])
    assert result["global_step"] == 1 and np.isfinite(result["train_loss"])
    data = json.loads((tmp_path / "run" / "pretrain_summary.json").read_text())["data"]
    assert data["examples_trained"] == 4 and data["skip_events"] == 0, data


def test_a_webdataset_folder_with_other_files_loads_its_tars_only(transcoded, tmp_path):
    """Shards without a split name in their file names (``--prefix shard``): `datasets` then takes every file of the
    folder as data, and the summary beside them (one ``.json`` per ``.tar`` here) would pick its json builder; the
    loader reads the ``.tar`` files only."""
    out, summary = transcoded
    folder = tmp_path / "renamed"
    folder.mkdir()
    for i, name in enumerate(summary["files"][:2]):
        shutil.copy(out / name, folder / f"shard-{i}.tar")
        (folder / f"shard-{i}.json").write_text("{}")
    (folder / "notes.txt").write_text("not a shard")
    examples = list(load_audio_dataset(dataset_name=str(folder), streaming=True))
    expected = [n.removesuffix(".wav") for f in summary["files"][:2] for n, _ in _members(out / f) if n.endswith("wav")]
    assert [e["id"] for e in examples] == expected
