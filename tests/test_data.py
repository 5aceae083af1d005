"""Tests of the data layer (modeling_audiomosaic.feature_extraction's audio_io, skips, labels, records, sources,
audio_datasets, loading and the classification collator): every source, decoding parity, skip accounting, streaming,
shuffling, sharding, cropping, label vocabulary and collation. All audio is synthesised into a temporary folder
(numpy + soundfile)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import soxr

from modeling_audiomosaic.feature_extraction.audio_datasets import AudioDataset, AudioIterableDataset, shard_for_rank
from modeling_audiomosaic.feature_extraction.audio_io import crop_or_pad, decode_audio, resample_audio
from modeling_audiomosaic.feature_extraction.collators import AudioClassificationCollator
from modeling_audiomosaic.feature_extraction.labels import (
    LabelVocabulary,
    build_label_vocabulary,
    normalize_labels,
    read_label_csv,
)
from modeling_audiomosaic.feature_extraction.loading import load_audio_dataset, wrap_hf_dataset
from modeling_audiomosaic.feature_extraction.records import DecodeOptions, ExampleDecoder
from modeling_audiomosaic.feature_extraction.skips import AudioDecodeError, EmptyDatasetError, SkipCounter
from modeling_audiomosaic.feature_extraction.sources import detect_source_type, read_csv_manifest, read_manifest

datasets = pytest.importorskip("datasets")

SR = 16000

# name -> (subfolder/label, sampling rate, channels, format, subtype, seconds)
GOOD_FILES = {
    "dog/a16k_mono.wav": (16000, 1, "WAV", "PCM_16", 0.50),
    "dog/b44k_stereo.flac": (44100, 2, "FLAC", "PCM_16", 0.40),
    "cat/c8k_mono.ogg": (8000, 1, "OGG", "VORBIS", 0.60),
    "cat/d44k_mono.wav": (44100, 1, "WAV", "FLOAT", 0.30),
    "bird/e8k_stereo.wav": (8000, 2, "WAV", "PCM_16", 0.45),
    "bird/f16k_stereo.ogg": (16000, 2, "OGG", "VORBIS", 0.35),
}
BAD_FILES = {  # name -> expected skip reason
    "bird/corrupt.wav": "undecodable",
    "cat/empty.wav": "empty",
    "dog/short.wav": "too_short",
    "dog/nan.wav": "non_finite",
}


@pytest.fixture(autouse=True)
def _no_thread_shutdown_sleep(monkeypatch):
    """datasets 5.2 sleeps `config.SLEEP_TIME_ON_THREADS_SHUTDOWN` (5 s) at the end of every pass over a shuffled
    multi-shard parquet stream (a pyarrow thread-shutdown workaround). Harmless in training, slow in tests."""
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)


def _signal(sr: int, channels: int, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(round(sr * seconds))
    t = np.arange(n) / sr
    chans = [
        0.3 * np.sin(2 * np.pi * (220 + 110 * c + 37 * seed) * t) + 0.05 * rng.standard_normal(n)
        for c in range(channels)
    ]
    return np.stack(chans, axis=1).astype(np.float32)


def _wav_bytes(sr: int = SR, seconds: float = 0.3, seed: int = 0, fmt: str = "WAV", channels: int = 1) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, _signal(sr, channels, seconds, seed), sr, format=fmt)
    return buf.getvalue()


def reference_decode(path_or_bytes) -> np.ndarray:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    data, sr = sf.read(src, dtype="float32", always_2d=True)
    wave = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if sr != SR:
        wave = soxr.resample(wave, sr, SR)
    return wave.astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    audio = root / "audio"
    for i, (name, (sr, ch, fmt, subtype, sec)) in enumerate(GOOD_FILES.items()):
        (audio / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(audio / name, _signal(sr, ch, sec, i), sr, format=fmt, subtype=subtype)
    (audio / "bird/corrupt.wav").write_bytes(np.random.default_rng(1).bytes(2048))
    sf.write(audio / "cat/empty.wav", np.zeros((0, 1), np.float32), SR, subtype="PCM_16")
    sf.write(audio / "dog/short.wav", _signal(SR, 1, 0.01, 9), SR)  # 160 samples < 400
    nan = _signal(SR, 1, 0.2, 10)
    nan[100] = np.nan
    sf.write(audio / "dog/nan.wav", nan, SR, subtype="FLOAT")

    # AudioSet-style JSON manifest next to the audio folder (relative paths) + one missing file
    entries = [{"wav": f"audio/{name}", "labels": f"/m/{Path(name).parent.name},/m/all"} for name in GOOD_FILES]
    entries += [{"wav": "audio/bird/corrupt.wav", "labels": "/m/bird"}, {"wav": "audio/missing.wav", "labels": "/m/x"}]
    (root / "manifest.json").write_text(json.dumps({"data": entries}))

    # CSV with custom column names
    lines = ["filepath,category,speaker"]
    lines += [f"audio/{name},{Path(name).parent.name},spk{i % 2}" for i, name in enumerate(GOOD_FILES)]
    lines += ["audio/cat/empty.wav,cat,spk9"]
    (root / "list.csv").write_text("\n".join(lines) + "\n")

    # 4 parquet shards, struct column {bytes, path}, string labels; one corrupt row
    pq_dir = root / "pq"
    pq_dir.mkdir()
    pq_ids = []
    for s in range(4):
        rows = []
        for j in range(4):
            k = s * 4 + j
            sr = (16000, 44100, 8000, 22050)[k % 4]
            data = _wav_bytes(sr, 0.1 + 0.01 * k, seed=k, fmt="FLAC" if k % 3 == 0 else "WAV", channels=1 + k % 2)
            if k == 6:
                data = b"not audio at all" * 10
            rows.append({"audio": {"bytes": data, "path": f"clip{k:02d}.wav"}, "label": f"c{k % 3}"})
            if k != 6:
                pq_ids.append(f"clip{k:02d}.wav")
        pq.write_table(pa.Table.from_pylist(rows), pq_dir / f"part-{s}.parquet")

    # the same kind of data as a Hub dataset would publish it: parquet whose metadata declares datasets' Audio
    hub_dir = root / "hub_like"
    (hub_dir / "data").mkdir(parents=True)
    rows = [{"audio": {"bytes": _wav_bytes(SR, 0.1, seed=k), "path": f"h{k}.wav"}, "label": k % 2} for k in range(5)]
    meta = {
        "info": {"features": {"audio": {"_type": "Audio"}, "label": {"_type": "ClassLabel", "names": ["no", "yes"]}}}
    }
    table = pa.Table.from_pylist(rows).replace_schema_metadata({"huggingface": json.dumps(meta)})
    pq.write_table(table, hub_dir / "data" / "train-00000-of-00001.parquet")

    # 2 WebDataset shards: wav / flac / ogg members, labels from .json, .cls or .txt; one corrupt member
    wds_dir = root / "wds"
    wds_dir.mkdir()
    wds_expected = {}
    for s in range(2):
        with tarfile.open(wds_dir / f"shard-{s:04d}.tar", "w") as tf:
            for j in range(4):
                key = f"s{s}_{j:02d}"
                ext, fmt = [("wav", "WAV"), ("flac", "FLAC"), ("ogg", "OGG"), ("wav", "WAV")][j]
                payload = _wav_bytes(
                    (16000, 44100, 8000, 16000)[j], 0.12, seed=10 + 4 * s + j, fmt=fmt, channels=1 + j % 2
                )
                members = {f"{key}.{ext}": payload}
                if j == 0:
                    members[f"{key}.json"] = json.dumps({"labels": ["speech", "music"]}).encode()
                    wds_expected[key] = ["speech", "music"]
                elif j == 1:
                    members[f"{key}.cls"] = b"3"
                    wds_expected[key] = [3]
                elif j == 2:
                    members[f"{key}.txt"] = b"dog"
                    wds_expected[key] = ["dog"]
                else:
                    members[f"{key}.{ext}"] = b"\x00garbage" * 8  # corrupt
                for name, data in members.items():
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    return {
        "root": root,
        "audio": audio,
        "pq_dir": pq_dir,
        "pq_ids": pq_ids,
        "hub_dir": hub_dir,
        "wds_dir": wds_dir,
        "wds_expected": wds_expected,
        "cache": root / "hf_cache",
    }


def _by_id(examples):
    return {ex["id"]: ex for ex in examples}


# ---------------------------------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------------------------------


def test_decode_matches_soundfile_soxr_reference(corpus):
    for name, (sr, _ch, *_rest, sec) in GOOD_FILES.items():
        path = corpus["audio"] / name
        wave = decode_audio(path)
        ref = reference_decode(str(path))
        n = int(round(sec * sr))
        assert wave.dtype == np.float32 and wave.ndim == 1
        assert abs(len(wave) - round(n * SR / sr)) <= 1, name
        np.testing.assert_allclose(wave, ref, rtol=0, atol=1e-6)
        # same result from bytes and from a {"bytes", "path"} struct
        np.testing.assert_array_equal(decode_audio(path.read_bytes()), wave)
        np.testing.assert_array_equal(decode_audio({"bytes": path.read_bytes(), "path": "x"}), wave)


def test_stereo_is_mixed_down(tmp_path):
    left = np.linspace(-0.5, 0.5, 1000, dtype=np.float32)
    right = np.full(1000, 0.25, np.float32)
    sf.write(tmp_path / "st.wav", np.stack([left, right], 1), SR, subtype="FLOAT")
    np.testing.assert_allclose(decode_audio(tmp_path / "st.wav"), (left + right) / 2, atol=1e-7)


def test_decode_errors_have_reasons(corpus, tmp_path):
    for name, reason in BAD_FILES.items():
        with pytest.raises(AudioDecodeError) as info:
            decode_audio(corpus["audio"] / name, min_samples=400)
        assert info.value.reason == reason, name
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(tmp_path / "nope.wav")
    assert info.value.reason == "missing_file"
    (tmp_path / "zero.wav").write_bytes(b"")
    with pytest.raises(AudioDecodeError) as info:
        decode_audio(tmp_path / "zero.wav")
    assert info.value.reason == "empty"
    # in-memory arrays
    np.testing.assert_array_equal(decode_audio({"array": np.ones(500), "sampling_rate": SR}), np.ones(500, np.float32))


def test_resample_scipy_fallback_close_to_soxr(monkeypatch):
    import sys

    x = _signal(44100, 1, 0.2, 3)[:, 0]
    ref = resample_audio(x, 44100, SR)
    monkeypatch.setitem(sys.modules, "soxr", None)  # makes `import soxr` fail
    alt = resample_audio(x, 44100, SR)
    assert abs(len(alt) - len(ref)) <= 1
    m = min(len(alt), len(ref))
    assert np.max(np.abs(alt[100 : m - 100] - ref[100 : m - 100])) < 2e-2


# ---------------------------------------------------------------------------------------------------------------------
# local sources
# ---------------------------------------------------------------------------------------------------------------------


def test_folder_source_labels_and_skips(corpus, caplog):
    assert detect_source_type(corpus["audio"]) == "folder"
    with caplog.at_level(logging.WARNING, logger="modeling_audiomosaic.feature_extraction.skips"):
        ds = load_audio_dataset(corpus["audio"])
        assert isinstance(ds, AudioDataset)
        assert len(ds) == len(GOOD_FILES) + len(BAD_FILES)
        examples = list(ds)
    assert sorted(ex["id"] for ex in examples) == sorted(GOOD_FILES)
    for ex in examples:
        assert ex["labels"] == [ex["id"].split("/")[0]]
        assert ex["group"] is None
        np.testing.assert_allclose(ex["audio"], reference_decode(str(corpus["audio"] / ex["id"])), atol=1e-6)
    stats = ds.skip_counter.as_dict()
    assert stats["ok"] == len(GOOD_FILES)
    assert stats["by_reason"] == {reason: 1 for reason in BAD_FILES.values()}
    for name, reason in BAD_FILES.items():
        assert stats["examples"][reason] == [name]
    assert sum("skipping item" in r.getMessage() for r in caplog.records) == 4
    assert "skipped 4 of 10" in ds.skip_counter.summary()
    # without folder labels
    ds = load_audio_dataset(corpus["audio"], folder_labels=False)
    assert all(ex["labels"] is None for ex in ds)


def test_map_style_getitem_substitutes_bad_items(corpus):
    ds = load_audio_dataset(corpus["audio"], source_type="folder")
    ids = list(ds.raw["id"])
    bad = ids.index("bird/corrupt.wav")
    ex = ds[bad]  # replaced by the next good item
    assert ex["id"] == next(i for i in ids[bad + 1 :] if i in GOOD_FILES)
    assert ds.skip_counter.counts["undecodable"] == 1
    ds[bad]  # known-bad index: not decoded (nor counted) again
    assert ds.skip_counter.counts["undecodable"] == 1
    # get_with_skips lists every pass over a bad item, known-bad ones included (what a training run reports)
    example, skipped = ds.get_with_skips(bad)
    assert example["id"] == ex["id"] and skipped == ["bird/corrupt.wav"]
    assert ds.get_with_skips(ids.index(ex["id"]))[1] == []  # a good item: nothing skipped
    assert ds.skip_counter.counts["undecodable"] == 1 and list(ds.skip_counter.recent_ids) == ["bird/corrupt.wav"]
    assert ds.get(bad) is None
    valid = ds.filter_valid()
    assert len(valid) == len(GOOD_FILES) and sorted(valid.raw["id"]) == sorted(GOOD_FILES)


def test_manifest_source(corpus):
    ds = load_audio_dataset(corpus["root"] / "manifest.json")
    examples = list(ds)
    assert sorted(ex["id"] for ex in examples) == sorted(f"audio/{n}" for n in GOOD_FILES)
    for ex in examples:
        assert ex["labels"] == [f"/m/{ex['id'].split('/')[1]}", "/m/all"]
        np.testing.assert_allclose(ex["audio"], reference_decode(str(corpus["root"] / ex["id"])), atol=1e-6)
    assert ds.skip_counter.as_dict()["by_reason"] == {"undecodable": 1, "missing_file": 1}


def test_csv_source_custom_columns(corpus):
    ds = load_audio_dataset(
        corpus["root"] / "list.csv", audio_column="filepath", label_column="category", group_column="speaker"
    )
    examples = list(ds)
    assert len(examples) == len(GOOD_FILES)
    for i, name in enumerate(GOOD_FILES):
        ex = examples[i]
        assert ex["id"] == f"audio/{name}" and ex["labels"] == [name.split("/")[0]] and ex["group"] == f"spk{i % 2}"
    assert ds.skip_counter.as_dict()["by_reason"] == {"empty": 1}
    with pytest.raises(ValueError, match="available columns: \\['filepath', 'category', 'speaker'\\]"):
        load_audio_dataset(corpus["root"] / "list.csv", audio_column="path")
    with pytest.raises(ValueError, match="no audio column found"):
        load_audio_dataset(corpus["root"] / "list.csv")  # no auto-detectable path column


def test_webdataset_source_map_and_streaming(corpus):
    assert detect_source_type(corpus["wds_dir"]) == "webdataset"
    expected = corpus["wds_expected"]
    for streaming in (False, True):
        ds = load_audio_dataset(corpus["wds_dir"], streaming=streaming, cache_dir=corpus["cache"])
        assert isinstance(ds, AudioIterableDataset if streaming else AudioDataset)
        got = _by_id(ds)
        assert sorted(got) == sorted(expected)
        for key, labels in expected.items():
            assert got[key]["labels"] == labels
            assert got[key]["audio"].dtype == np.float32
        assert ds.skip_counter.as_dict()["by_reason"] == {"undecodable": 2}
    # audio parity against the raw member bytes
    with tarfile.open(corpus["wds_dir"] / "shard-0000.tar") as tf:
        payload = tf.extractfile("s0_01.flac").read()
    np.testing.assert_allclose(got["s0_01"]["audio"], reference_decode(payload), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# datasets-backed sources: parquet / Hub path
# ---------------------------------------------------------------------------------------------------------------------


def test_parquet_map_style_equals_streaming_hub_path(corpus):
    files = sorted(str(p) for p in corpus["pq_dir"].glob("*.parquet"))
    mapped = load_audio_dataset(corpus["pq_dir"], cache_dir=corpus["cache"])
    assert isinstance(mapped, AudioDataset) and len(mapped) == 16
    stream = load_audio_dataset(
        dataset_name="parquet", data_files={"train": files}, split="train", streaming=True, cache_dir=corpus["cache"]
    )
    assert isinstance(stream, AudioIterableDataset) and stream.n_shards == 4
    a, b = list(mapped), list(stream)
    assert [ex["id"] for ex in a] == [ex["id"] for ex in b] == corpus["pq_ids"]
    for x, y in zip(a, b, strict=True):
        assert x["labels"] == y["labels"] == [f"c{int(x['id'][4:6]) % 3}"]
        np.testing.assert_array_equal(x["audio"], y["audio"])
    assert mapped.skip_counter.as_dict()["examples"] == {"undecodable": ["clip06.wav"]}
    assert stream.skip_counter.as_dict()["by_reason"] == {"undecodable": 1}
    # the decoded datasets.IterableDataset (what to give Trainer/accelerate) shares the counter
    hf = stream.hf_dataset
    assert isinstance(hf, datasets.IterableDataset)
    rows = list(hf)
    assert len(rows) == 15 and stream.skip_counter.counts["undecodable"] == 2
    # the row after the bad item carries it (streams report skips through the rows, e.g. from DataLoader workers)
    assert [(r["num_skipped"], r["skipped_ids"]) for r in rows if r["num_skipped"]] == [(1, ["clip06.wav"])]
    assert sum(r["num_skipped"] for r in rows) == 1
    assert all(r["skipped_ids"] == [] for r in rows if not r["num_skipped"])
    # a local directory name goes through the same load_dataset path as a Hub id
    by_dir = load_audio_dataset(dataset_name=str(corpus["pq_dir"]), streaming=True, cache_dir=corpus["cache"])
    assert [ex["id"] for ex in by_dir] == corpus["pq_ids"]


def test_hub_audio_feature_without_torchcodec(corpus):
    """A dataset whose metadata declares `Audio` (as Hub parquet does) loads without torchcodec."""
    for streaming in (True, False):
        ds = load_audio_dataset(dataset_name=str(corpus["hub_dir"]), streaming=streaming, cache_dir=corpus["cache"])
        examples = list(ds)
        assert [ex["id"] for ex in examples] == [f"h{k}.wav" for k in range(5)]
        assert [ex["labels"] for ex in examples] == [["no"], ["yes"], ["no"], ["yes"], ["no"]]  # ClassLabel names
        assert all(len(ex["audio"]) == 1600 for ex in examples)
    raw = load_audio_dataset(dataset_name=str(corpus["hub_dir"]), decode_class_labels=False, cache_dir=corpus["cache"])
    assert [ex["labels"] for ex in raw][:2] == [[0], [1]]


def test_wrap_errors_list_columns(corpus):
    raw = datasets.load_dataset(
        "parquet", data_files=str(corpus["pq_dir"] / "part-0.parquet"), split="train", streaming=True
    )
    with pytest.raises(ValueError, match=r"available columns: \['audio', 'label'\]"):
        wrap_hf_dataset(raw, label_column="category")
    with pytest.raises(ValueError, match=r"available columns: \['audio', 'label'\]"):
        wrap_hf_dataset(raw, audio_column="wav")
    ds = wrap_hf_dataset(raw, label_column=None)
    assert all(ex["labels"] is None for ex in ds)


def test_argument_errors(corpus, tmp_path):
    with pytest.raises(ValueError, match="unknown source_type"):
        load_audio_dataset(corpus["audio"], source_type="zip")
    with pytest.raises(ValueError, match="exactly one"):
        load_audio_dataset()
    with pytest.raises(ValueError, match="exactly one"):
        load_audio_dataset(corpus["audio"], dataset_name="parquet")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(EmptyDatasetError):
        load_audio_dataset(tmp_path / "empty_dir")
    (tmp_path / "m.json").write_text(json.dumps({"data": []}))
    with pytest.raises(EmptyDatasetError):
        load_audio_dataset(tmp_path / "m.json")
    with pytest.raises(FileNotFoundError):
        load_audio_dataset(tmp_path / "missing_dir" / "x.csv")
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.wav").write_bytes(b"junk" * 30)
    ds = load_audio_dataset(only_bad)
    with pytest.raises(EmptyDatasetError, match="undecodable=1"):
        list(ds)
    with pytest.raises(EmptyDatasetError):
        ds[0]


def test_decode_options_object_equals_keyword_arguments(corpus):
    """One frozen options object: passing it or the same names as keyword arguments gives the same dataset; keyword
    arguments override it; it is shared, never mutated."""
    options = DecodeOptions(audio_column="filepath", label_column="category", group_column="speaker", max_seconds=0.2,
                            crop="start")
    by_object = list(load_audio_dataset(corpus["root"] / "list.csv", options=options))
    by_keywords = list(load_audio_dataset(corpus["root"] / "list.csv", audio_column="filepath",
                                          label_column="category", group_column="speaker", max_seconds=0.2,
                                          crop="start"))
    assert [ex["id"] for ex in by_object] == [ex["id"] for ex in by_keywords]
    assert all(np.array_equal(a["audio"], b["audio"]) and a["labels"] == b["labels"] and a["group"] == b["group"]
               for a, b in zip(by_object, by_keywords))
    assert all(len(ex["audio"]) <= 3200 for ex in by_object)
    longer = list(load_audio_dataset(corpus["root"] / "list.csv", options=options, max_seconds=None))
    assert max(len(ex["audio"]) for ex in longer) > 3200  # the keyword won over the object
    assert options.max_seconds == 0.2  # ... without changing it
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.crop = "random"
    # the readers and the decoder take the same object
    assert read_csv_manifest(corpus["root"] / "list.csv", options) == read_csv_manifest(
        corpus["root"] / "list.csv", audio_column="filepath", label_column="category", group_column="speaker"
    )
    assert ExampleDecoder(options).options is options
    assert ExampleDecoder(options, pad=True).options == options.replace(pad=True)


def test_decode_options_errors(corpus):
    for call in (
        lambda: load_audio_dataset(corpus["audio"], max_second=2.0),
        lambda: wrap_hf_dataset(datasets.Dataset.from_dict({"audio": ["x.wav"]}), max_second=2.0),
        lambda: read_manifest(corpus["root"] / "manifest.json", max_second=2.0),
        lambda: ExampleDecoder(max_second=2.0),
        lambda: DecodeOptions().replace(max_second=2.0),
    ):
        with pytest.raises(TypeError, match=r"\['max_second'\].*Did you mean 'max_seconds'.*Decoding options are: "
                                            r"audio_column, .*crop_seed"):
            call()
    with pytest.raises(TypeError, match="options must be a DecodeOptions, got dict"):
        load_audio_dataset(corpus["audio"], options={"max_seconds": 2.0})
    with pytest.raises(ValueError, match="crop must be 'random', 'start' or 'center'"):
        DecodeOptions(crop="middle")
    with pytest.raises(ValueError, match="max_seconds must be positive"):
        load_audio_dataset(corpus["audio"], max_seconds=0)
    with pytest.raises(ValueError, match="audio_column cannot be None"):
        DecodeOptions(audio_column=None)
    assert DecodeOptions(max_seconds=0.5, sampling_rate=8000).max_samples == 4000
    assert DecodeOptions(label_column=["a", "b"]).label_column == ("a", "b")


# ---------------------------------------------------------------------------------------------------------------------
# streaming: shuffle, epochs, repeat, sharding
# ---------------------------------------------------------------------------------------------------------------------


def _stream(corpus, **kw):
    files = sorted(str(p) for p in corpus["pq_dir"].glob("*.parquet"))
    return load_audio_dataset(dataset_name="parquet", data_files={"train": files}, streaming=True, **kw)


def test_streaming_shuffle_is_seeded(corpus):
    base = _stream(corpus)
    order = lambda ds: [ex["id"] for ex in ds]  # noqa: E731
    a1 = order(base.shuffle(seed=1, buffer_size=8))
    a2 = order(base.shuffle(seed=1, buffer_size=8))
    b = order(base.shuffle(seed=2, buffer_size=8))
    assert a1 == a2
    assert a1 != b
    assert sorted(a1) == sorted(b) == sorted(corpus["pq_ids"])
    shuffled = base.shuffle(seed=1, buffer_size=8)
    shuffled.set_epoch(1)
    assert order(shuffled) != a1 and sorted(order(shuffled)) == sorted(a1)
    assert order(base.repeat(2)) == corpus["pq_ids"] * 2


def test_shard_for_rank_disjoint_and_complete(corpus):
    for shuffle_seed in (None, 3):
        base = _stream(corpus)
        if shuffle_seed is not None:
            base = base.shuffle(seed=shuffle_seed, buffer_size=4)
        parts = [
            [ex["id"] for ex in shard_for_rank(base, rank, 2, used_with_accelerate_prepare=False)] for rank in range(2)
        ]
        assert parts[0] and parts[1]
        assert not set(parts[0]) & set(parts[1])
        assert sorted(parts[0] + parts[1]) == sorted(corpus["pq_ids"])
        # 4 shards / 2 ranks: whole shards per rank
        assert shard_for_rank(base, 0, 2, used_with_accelerate_prepare=False).n_shards == 2
    # Trainer / accelerate.prepare shard by themselves: unchanged
    base = _stream(corpus)
    assert shard_for_rank(base, 1, 2, used_with_accelerate_prepare=True) is base
    assert shard_for_rank(base.hf_dataset, 1, 2, used_with_accelerate_prepare=True) is base.hf_dataset
    # map-style and plain datasets objects too
    mapped = load_audio_dataset(corpus["audio"])
    halves = [shard_for_rank(mapped, r, 2, used_with_accelerate_prepare=False) for r in range(2)]
    assert sorted(list(halves[0].raw["id"]) + list(halves[1].raw["id"])) == sorted(mapped.raw["id"])
    assert not set(halves[0].raw["id"]) & set(halves[1].raw["id"])
    plain = shard_for_rank(base.hf_dataset, 0, 2, used_with_accelerate_prepare=False)
    assert isinstance(plain, datasets.IterableDataset)


def test_local_folder_streaming_and_dataloader(corpus):
    import torch

    stream = load_audio_dataset(
        corpus["audio"], streaming=True, num_shards=2, max_seconds=0.25, crop="start", pad=True
    )
    assert stream.n_shards == 2
    examples = list(stream)
    assert sorted(ex["id"] for ex in examples) == sorted(GOOD_FILES)
    assert all(len(ex["audio"]) == 4000 for ex in examples)
    vocab = build_label_vocabulary(stream)
    assert vocab.labels == ["bird", "cat", "dog"] and not vocab.multi_label
    loader = torch.utils.data.DataLoader(stream, batch_size=3, collate_fn=AudioClassificationCollator(_toy_fe, vocab))
    batches = list(loader)
    assert [b["input_values"].shape[0] for b in batches] == [3, 3]
    assert all(b["labels"].dtype == torch.int64 for b in batches)


def test_streaming_with_dataloader_workers(corpus):
    """Pickling to 2 DataLoader workers: each parquet shard is read by one worker, nothing lost or duplicated."""
    import torch

    stream = _stream(corpus).shuffle(seed=0, buffer_size=4)
    stream.set_epoch(2)
    assert stream.hf_dataset.epoch == 2
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
    ids = [ex["id"] for ex in loader]
    assert sorted(ids) == sorted(corpus["pq_ids"])
    # the decoded datasets.IterableDataset splits like any datasets stream (what accelerate does with 4 shards)
    hf = _stream(corpus).hf_dataset
    halves = [[ex["id"] for ex in hf.shard(num_shards=2, index=i)] for i in range(2)]
    assert not set(halves[0]) & set(halves[1]) and sorted(halves[0] + halves[1]) == sorted(corpus["pq_ids"])


# ---------------------------------------------------------------------------------------------------------------------
# cropping
# ---------------------------------------------------------------------------------------------------------------------


def test_crop_or_pad():
    wave = np.arange(1000, dtype=np.float32)
    a = crop_or_pad(wave, 300, rng=np.random.default_rng(5))
    b = crop_or_pad(wave, 300, rng=np.random.default_rng(5))
    assert len(a) == 300 and np.array_equal(a, b)
    assert np.array_equal(a, np.arange(a[0], a[0] + 300, dtype=np.float32))  # contiguous window
    starts = {int(crop_or_pad(wave, 300, rng=np.random.default_rng(s))[0]) for s in range(10)}
    assert len(starts) > 1
    np.testing.assert_array_equal(crop_or_pad(wave, 300, mode="start"), wave[:300])
    np.testing.assert_array_equal(crop_or_pad(wave, 300, mode="center"), wave[350:650])
    assert len(crop_or_pad(wave, 2000)) == 1000
    padded = crop_or_pad(wave, 2000, pad=True)
    assert len(padded) == 2000 and not padded[1000:].any()


def test_random_crop_in_dataset_is_deterministic(corpus):
    def crops(seed):
        ds = load_audio_dataset(corpus["audio"], max_seconds=0.2, crop="random", crop_seed=seed)
        return {ex["id"]: ex["audio"] for ex in ds}

    a, b, c = crops(7), crops(7), crops(8)
    assert all(len(w) == 3200 for w in a.values())
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    # each crop is a window of the full decoded clip
    full = decode_audio(corpus["audio"] / "dog/a16k_mono.wav")
    win = a["dog/a16k_mono.wav"]
    starts = [s for s in range(len(full) - len(win) + 1) if np.array_equal(full[s : s + len(win)], win)]
    assert len(starts) == 1


# ---------------------------------------------------------------------------------------------------------------------
# labels and collation
# ---------------------------------------------------------------------------------------------------------------------


def _toy_fe(waves, sampling_rate, return_tensors="pt"):
    """A stand-in feature extractor: pads to the longest clip."""
    import torch

    assert sampling_rate == SR
    n = max(len(w) for w in waves)
    out = np.zeros((len(waves), n), np.float32)
    for i, w in enumerate(waves):
        out[i, : len(w)] = w
    return {"input_values": torch.from_numpy(out) if return_tensors == "pt" else out}


def test_normalize_labels():
    assert normalize_labels("/m/a, /m/b,") == ["/m/a", "/m/b"]
    assert normalize_labels("a,b", delimiter=None) == ["a,b"]
    assert normalize_labels(2, class_names=["x", "y", "z"]) == ["z"]
    assert normalize_labels(-1, class_names=["x"]) is None
    assert normalize_labels(np.int64(4)) == [4]
    assert normalize_labels({"label": "dog"}) == ["dog"]
    assert normalize_labels(["a,b", "c"]) == ["a", "b", "c"]
    assert normalize_labels(None) is None


def test_label_vocabulary_and_collator(corpus, tmp_path):
    ds = load_audio_dataset(corpus["root"] / "manifest.json")
    vocab = build_label_vocabulary(ds)
    assert vocab.multi_label
    assert vocab.labels == sorted({f"/m/{n.split('/')[0]}" for n in GOOD_FILES} | {"/m/all", "/m/x"})
    hot = vocab.encode(["/m/dog", "/m/all"])
    assert hot.dtype == np.float32 and hot.sum() == 2 and hot[vocab.label2id["/m/dog"]] == 1
    assert vocab.decode(hot) == sorted(["/m/dog", "/m/all"])
    with pytest.raises(KeyError):
        vocab.encode(["/m/unknown"])
    assert vocab.encode(["/m/unknown", "/m/all"], unknown="ignore").sum() == 1
    kwargs = vocab.config_kwargs()
    assert kwargs["problem_type"] == "multi_label_classification" and kwargs["num_labels"] == len(vocab)

    examples = list(ds)[:3]
    batch = AudioClassificationCollator(_toy_fe, vocab, return_ids=True)(examples)
    assert tuple(batch["input_values"].shape) == (3, max(len(ex["audio"]) for ex in examples))
    assert batch["labels"].shape == (3, len(vocab)) and str(batch["labels"].dtype) == "torch.float32"
    assert batch["ids"] == [ex["id"] for ex in examples]

    single = build_label_vocabulary([["dog"], ["cat"], ["dog"]])
    assert not single.multi_label and single.encode(["dog"]) == 1
    with pytest.raises(ValueError):
        single.encode(["dog", "cat"])
    ints = build_label_vocabulary([[0], [3]])
    assert ints.labels == ["0", "1", "2", "3"] and ints.encode([3]) == 3
    np_batch = AudioClassificationCollator(_toy_fe, single, return_tensors="np")(
        [{"audio": np.zeros(500, np.float32), "labels": ["cat"], "id": "a"}]
    )
    assert np_batch["labels"].tolist() == [0]

    csv_path = tmp_path / "class_labels_indices.csv"
    csv_path.write_text('index,mid,display_name\n1,/m/b,"Bee"\n0,/m/a,"Ant, small"\n')
    fixed = LabelVocabulary.from_class_labels_csv(csv_path)
    assert fixed.labels == ["/m/a", "/m/b"] and fixed.config_kwargs()["id2label"] == {0: "Ant, small", 1: "Bee"}


def test_one_label_csv_reader(tmp_path):
    """`read_label_csv` is the reader behind the vocabulary, the released label sets and --label_file."""
    from modeling_audiomosaic import load_label_file
    from modeling_audiomosaic.labels import LABEL_FILES, LABELS_DIR

    path = tmp_path / "labels.csv"
    path.write_text('Index,MID,display_name\n2,/m/c, Cat \n0,/m/a,"Ant, small"\n\n1,/m/b,Bee\n')
    table = read_label_csv(path)
    assert table.has_header and table.columns == ("index", "mid", "display_name") and len(table) == 3
    assert table.column("mid") == ["/m/a", "/m/b", "/m/c"] and table.column("display_name") == ["Ant, small", "Bee",
                                                                                                 "Cat"]
    assert load_label_file(str(path)) == {0: "Ant, small", 1: "Bee", 2: "Cat"}
    vocab = LabelVocabulary.from_class_labels_csv(path)
    assert vocab.labels == table.column("mid") and vocab.display_names == table.column("display_name")
    # the released label sets read the same through every consumer
    for name, file in LABEL_FILES.items():
        released = read_label_csv(LABELS_DIR / file)
        assert load_label_file(name) == dict(enumerate(released.column("display_name")))
        assert LabelVocabulary.from_class_labels_csv(LABELS_DIR / file).labels == released.column("mid")
    # one label per line, no header
    (tmp_path / "plain.csv").write_text("dog\ncat\n")
    plain = read_label_csv(tmp_path / "plain.csv")
    assert not plain.has_header and plain.column("label") == ["dog", "cat"]
    # errors name the file and the problem
    (tmp_path / "gap.csv").write_text("index,mid\n0,/m/a\n2,/m/b\n")
    with pytest.raises(ValueError, match=r"gap.csv: the indices are not 0..1"):
        read_label_csv(tmp_path / "gap.csv")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['display_name'\]; its columns are \['index', 'mi"):
        load_label_file(str(tmp_path / "gap.csv"))
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(EmptyDatasetError, match="is empty"):
        read_label_csv(tmp_path / "empty.csv")


def test_collator_with_audiomosaic_feature_extractor(corpus):
    fe_mod = pytest.importorskip("modeling_audiomosaic.feature_extraction.feature_extraction_audiomosaic")
    fe = fe_mod.AudioMosaicFeatureExtractor.from_preset("speechcommands")
    ds = load_audio_dataset(corpus["audio"])
    vocab = build_label_vocabulary(ds)
    batch = AudioClassificationCollator(fe, vocab)(list(ds)[:2])
    assert batch["input_values"].shape[0] == 2 and batch["input_values"].shape[-1] == 128
    assert batch["labels"].tolist() == [vocab.label2id[ex["id"].split("/")[0]] for ex in list(ds)[:2]]


def test_skip_counter_pickle_merge_and_log(caplog):
    import pickle

    counter = SkipCounter("t", max_warnings=1, summary_every=None)
    with caplog.at_level(logging.WARNING, logger="modeling_audiomosaic.feature_extraction.skips"):
        counter.record_skip("empty", "a", "x")
        counter.record_skip("empty", "b", "x")
    counter.record_ok()
    assert len([r for r in caplog.records if "skipping item" in r.getMessage()]) == 1
    clone = pickle.loads(pickle.dumps(counter))
    clone.record_skip("too_short", "c")
    counter.merge(clone)
    assert counter.as_dict()["by_reason"] == {"empty": 4, "too_short": 1} and counter.num_ok == 2
    assert "skipped 5 of 7" in counter.summary()


def test_stream_sharding_problem_matches_what_accelerate_does():
    """Fewer shards than processes: accelerate wraps the stream in IterableDatasetShard and every process decodes the
    whole stream (counted here on rank 0 of 2); whole shards per process otherwise. The warning says so."""
    import datasets
    import torch
    from accelerate.data_loader import prepare_data_loader

    from modeling_audiomosaic.feature_extraction.audio_datasets import stream_sharding_problem

    read = []

    def rows(shards):
        for shard in shards:
            for i in range(8):
                read.append(1)
                yield {"x": shard * 100 + i}

    for n_shards, share_read in ((1, 1.0), (4, 0.5)):
        read.clear()
        stream = datasets.IterableDataset.from_generator(rows, gen_kwargs={"shards": list(range(n_shards))})
        loader = prepare_data_loader(torch.utils.data.DataLoader(stream, batch_size=2, drop_last=True),
                                     num_processes=2, process_index=0, put_on_device=False, dispatch_batches=False)
        trained = sum(len(batch["x"]) for batch in loader)
        assert trained == 4 * n_shards  # half of the clips either way ...
        assert len(read) == share_read * 8 * n_shards  # ... but with one shard, decoded all of them
    assert "every process read and decode the whole stream" in stream_sharding_problem(1, 2)
    assert "8x the decoding" in stream_sharding_problem(7, 8)
    assert stream_sharding_problem(4, 2) is None and stream_sharding_problem(1, 1) is None
    assert "(2 or 3 each)" in stream_sharding_problem(10, 4)
    # DataLoader workers: datasets stops those left without a shard of their process's share (3 shards, 4 workers)
    def tagged(shards):
        for shard in shards:
            yield {"worker": torch.utils.data.get_worker_info().id, "x": shard}

    stream = datasets.IterableDataset.from_generator(tagged, gen_kwargs={"shards": [0, 1, 2]})
    workers = {int(row["worker"]) for row in torch.utils.data.DataLoader(stream, batch_size=None, num_workers=4)}
    assert len(workers) == 3
    # and the order of a shuffled stream depends on the number of workers, 0 and 1 included (so a resumed stream
    # must keep it: `StreamPositionCallback.load`)
    shuffled = datasets.IterableDataset.from_generator(rows, gen_kwargs={"shards": list(range(4))})
    shuffled = shuffled.shuffle(seed=3, buffer_size=5)
    orders = [[int(row["x"]) for row in torch.utils.data.DataLoader(shuffled, batch_size=None, num_workers=n)]
              for n in (0, 1, 2)]
    assert sorted(orders[0]) == sorted(orders[1]) == sorted(orders[2])
    assert orders[0] != orders[1] and orders[0] != orders[2] and orders[1] != orders[2]
    assert "stops the 6 left without one, so only 2 decode" in stream_sharding_problem(16, 8, num_workers=8)
    assert "write at least 64 shards" in stream_sharding_problem(16, 8, num_workers=8)
    assert "stops the 1 left without one" in stream_sharding_problem(3, 1, num_workers=4)
    assert stream_sharding_problem(64, 8, num_workers=8) is None and stream_sharding_problem(4, 1, 4) is None
