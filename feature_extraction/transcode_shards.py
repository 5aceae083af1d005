"""Transcode a pre-training source once to 16 kHz mono 16-bit WAV WebDataset shards (``<key>.wav`` + ``<key>.json``).

Why: once the views run on the accelerator (``--views_on_device``), a data worker's cost is decoding + resampling,
5.7-8.9 ms per 10 s clip for the 32-48 kHz FLAC / MP3 of the AudioSet mirrors against 0.26 ms for 16 kHz 16-bit WAV
(docs/RESULTS.md, "`data_path` -- host CPU per pre-training clip"). A 400-epoch run decodes every clip 400 times;
transcoding pays for itself after the first epoch or two.

What [`transcode_shards`] does:

* reads any source ``load_audio_dataset`` loads (a Hub id or local dataset folder with ``data_files`` /
  ``config_name`` / ``split``, or a local folder / manifest / parquet / tar ``path``), in streaming mode;
* decodes each item with the loader's own ``ExampleDecoder`` (``decode_audio``: mono, the project's one resampler, to
  16 kHz; bad items are skipped and counted per reason with their ids), rounds it to 16-bit PCM (``round(x * 32768)``,
  so reading it back as ``int16 / 32768`` is within half a quantisation step of the decode; samples beyond full scale
  are clipped and counted);
* writes ``<out>/<split>-SSSSS-CCCC.tar`` (source shard ``S``, chunk ``C`` of ``shard_size`` clips): members
  ``<key>.wav`` and ``<key>.json`` = ``{"id": source id, "labels": [...], "seconds", ...source metadata}``. The key is
  the source id made tar-safe (characters other than ``A-Za-z0-9_-`` become ``_``, long ids are cut and hashed) and
  unique (a repeated key gets ``_2``, ``_3``, ... in shard order), so the loader's id (``__key__``) is the source id
  whenever that is already safe and unique (AudioSet video ids are);
* ``num_workers`` processes each take the source shards ``s`` with ``s % num_workers == worker``; output names depend
  only on the source shard and the chunk, so any number of workers writes the same files;
* resumable: a shard is written under ``.transcode/tmp/`` and renamed into place when complete, then its record
  (``.transcode/<name>.json``: source range, keys, skipped items) is written. A rerun keeps every complete shard
  (tar + record) and continues each source shard after its last complete one, so no clip is written twice;
* ``transcode_summary.json``: clips, shards, skip counts per reason with the ids, keys that differ from their ids
  (count, examples, every de-duplicated one), clipped samples per clip.

The output folder loads as a local WebDataset folder (``load_audio_dataset(dataset_name=out_dir, streaming=True)``,
``run_pretrain.py --dataset_name <out_dir> --streaming true``): only its ``.tar`` files are data files, the hidden
``.transcode/`` folder is ignored by `datasets`.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import multiprocessing
import os
import re
import shutil
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from .audio_io import TARGET_SAMPLING_RATE
from .records import DecodeOptions
from .skips import SkipCounter

STATE_DIR = ".transcode"
"""Hidden folder of the output holding shard records, the run config and temporary shards (ignored by `datasets`)."""

SUMMARY_NAME = "transcode_summary.json"
MAX_KEY_LENGTH = 80
"""Longest key kept as is (tar USTAR names hold 100 characters; ``.json`` and a ``_N`` suffix must fit)."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_PCM16_MAX = 32767


@dataclass
class TranscodeSource:
    """Where the clips come from: the arguments of ``load_audio_dataset`` (give ``dataset_name`` or ``path``)."""

    dataset_name: str | None = None
    path: str | None = None
    config_name: str | None = None
    data_files: Any = None
    split: str = "train"
    source_type: str = "auto"
    audio_column: Any = "auto"
    label_column: Any = "auto"
    id_column: str | None = "auto"
    webdataset_features: bool = False
    """A Hub repository stored as WebDataset shards: load it with explicit features (see ``webdataset_features``)."""
    decode_options: dict[str, Any] = field(default_factory=dict)
    """Further ``DecodeOptions`` fields (e.g. ``label_delimiter``); the output rate is always 16 kHz."""

    def load(self, skip_counter: SkipCounter | None = None):
        """The streaming ``AudioIterableDataset`` of this source."""
        from .loading import load_audio_dataset, webdataset_features

        if (self.dataset_name is None) == (self.path is None):
            raise ValueError("give exactly one source: dataset_name (Hub id / dataset folder) or path (local files)")
        load_kwargs = {"features": webdataset_features()} if self.webdataset_features else None
        options = DecodeOptions.build(
            None, caller="transcode_shards", audio_column=self.audio_column, label_column=self.label_column,
            id_column=self.id_column, sampling_rate=TARGET_SAMPLING_RATE, max_seconds=None, **self.decode_options,
        )
        common = dict(split=self.split, streaming=True, load_kwargs=load_kwargs, skip_counter=skip_counter,
                      options=options)
        if self.dataset_name is not None:
            return load_audio_dataset(dataset_name=self.dataset_name, config_name=self.config_name,
                                      data_files=self.data_files, **common)
        return load_audio_dataset(self.path, source_type=self.source_type, config_name=self.config_name, **common)

    def describe(self) -> dict[str, Any]:
        """JSON-able description (stored in the output to refuse resuming from another source)."""
        return json.loads(json.dumps(asdict(self), default=str))


def tar_safe_key(example_id: str) -> str:
    """``example_id`` as a WebDataset key: ``A-Za-z0-9_-`` kept, anything else ``_``; longer than
    [`MAX_KEY_LENGTH`]: cut and suffixed with a hash of the whole id."""
    key = _UNSAFE.sub("_", str(example_id)) or "_"
    if len(key) > MAX_KEY_LENGTH:
        key = key[: MAX_KEY_LENGTH - 13] + "_" + hashlib.sha1(str(example_id).encode()).hexdigest()[:12]
    return key


def to_pcm16(wave: np.ndarray) -> tuple[np.ndarray, int]:
    """Float samples → int16 by ``round(x * 32768)`` (read back as ``q / 32768``: within half a step of ``x``),
    clipped to the int16 range; returns the samples and how many were clipped."""
    scaled = np.rint(np.asarray(wave, dtype=np.float64) * 32768.0)
    clipped = int(np.count_nonzero((scaled > _PCM16_MAX) | (scaled < -_PCM16_MAX - 1)))
    return np.clip(scaled, -_PCM16_MAX - 1, _PCM16_MAX).astype(np.int16), clipped


def encode_wav16(wave: np.ndarray, sampling_rate: int = TARGET_SAMPLING_RATE) -> tuple[bytes, int]:
    """Mono float32 → 16-bit PCM WAV bytes (see [`to_pcm16`]) and the number of clipped samples."""
    pcm, clipped = to_pcm16(wave)
    buffer = io.BytesIO()
    sf.write(buffer, pcm, sampling_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue(), clipped


def _jsonable(value: Any) -> Any:
    """``value`` if it is plain JSON data (strings, numbers, bools, lists / dicts of them), else ``None``."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


def _metadata(record: Mapping[str, Any], audio_columns: tuple[str, ...]) -> dict[str, Any]:
    """The source record's other metadata: a WebDataset ``.json`` dict's keys, and plain JSON-able columns."""
    meta: dict[str, Any] = {}
    for name, value in record.items():
        if name in audio_columns or name.startswith("__") or value is None:
            continue
        if name == "json" and isinstance(value, Mapping):
            meta.update({k: v for k, v in value.items() if _jsonable(v) is not None})
        elif not isinstance(value, (bytes, bytearray, memoryview, Mapping)) and _jsonable(value) is not None:
            meta[name] = value
    return meta


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: the same source, the same bytes
    tar.addfile(info, io.BytesIO(data))


def _write_json_atomic(path: Path, content: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=1))
    os.replace(tmp, path)


def shard_name(prefix: str, source_shard: int, chunk: int) -> str:
    """The output shard name of chunk ``chunk`` of source shard ``source_shard`` (without ``.tar``)."""
    return f"{prefix}-{source_shard:05d}-{chunk:04d}"


class _Progress:
    """Prints clips/s every ``every`` seconds (``print_fn``), from counts added by the workers."""

    def __init__(self, every: float, print_fn: Callable[[str], None], start_clips: int = 0) -> None:
        self.every, self.print_fn = every, print_fn
        self.start = self.last = time.perf_counter()
        self.start_clips = self.last_clips = start_clips

    def maybe_report(self, clips: int, skipped: int, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self.last < self.every:
            return
        recent = (clips - self.last_clips) / max(now - self.last, 1e-9)
        overall = (clips - self.start_clips) / max(now - self.start, 1e-9)
        self.print_fn(f"transcode: {clips} clips written, {skipped} skipped; {recent:.1f} clips/s now, "
                      f"{overall:.1f} clips/s since start ({now - self.start:.0f} s)")
        self.last, self.last_clips = now, clips


def _complete_chunks(out: Path, prefix: str, source_shard: int) -> list[dict[str, Any]]:
    """The records of the complete shards of a source shard (tar + record; a record alone for a stretch of bad items
    only), chunk 0 upwards without a gap."""
    records = []
    for chunk in range(1_000_000):
        name = shard_name(prefix, source_shard, chunk)
        record_path = out / STATE_DIR / f"{name}.json"
        if not record_path.is_file():
            break
        record = json.loads(record_path.read_text())
        if record["keys"] and not (out / f"{name}.tar").is_file():  # a record without its shard: written again
            break
        records.append(record)
    return records


def _remove_incomplete(out: Path, prefix: str, source_shard: int, first_chunk: int) -> None:
    """Delete the shards and records of ``source_shard`` from ``first_chunk`` on (they are written again)."""
    pattern = re.compile(re.escape(prefix) + rf"-{source_shard:05d}-(\d{{4}})\.(tar|json)$")
    for folder in (out, out / STATE_DIR):
        for path in folder.iterdir():
            match = pattern.match(path.name)
            if match and int(match[1]) >= first_chunk:
                path.unlink()


def _transcode_source_shard(
    raw_shard: Any, decoder: Any, out: Path, prefix: str, source_shard: int, shard_size: int,
    on_item: Callable[[bool], None],
) -> None:
    """Transcode one source shard, continuing after its complete output shards."""
    done = _complete_chunks(out, prefix, source_shard)
    _remove_incomplete(out, prefix, source_shard, len(done))
    position = done[-1]["end_record"] if done else 0
    chunk = len(done)
    records = raw_shard.skip(position) if position else raw_shard
    counter = decoder.skip_counter
    audio_columns = tuple(decoder.audio_columns)
    tmp_dir = out / STATE_DIR / "tmp"
    state: dict[str, Any] | None = None

    def finish(state: dict[str, Any]) -> None:
        state["tar"].close()
        name = state["name"]
        if state["keys"]:
            os.replace(state["tmp"], out / f"{name}.tar")  # the shard is complete: move it into place
        else:  # no good item (a source shard of bad items only): the record alone keeps the skips
            state["tmp"].unlink()
        record = {k: state[k] for k in ("name", "source_shard", "chunk", "first_record", "end_record", "keys",
                                        "ids", "skipped", "clipped", "seconds")}
        _write_json_atomic(out / STATE_DIR / f"{name}.json", record)  # ...then mark it complete

    def start(first_record: int) -> dict[str, Any]:
        name = shard_name(prefix, source_shard, chunk)
        tmp = tmp_dir / f"{name}.tar.{os.getpid()}"
        return {"name": name, "source_shard": source_shard, "chunk": chunk, "first_record": first_record,
                "end_record": first_record, "keys": [], "ids": [], "skipped": [], "clipped": {}, "seconds": 0.0,
                "tmp": tmp, "tar": tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT)}

    for offset, record in enumerate(records):
        index = position + offset
        if state is None:
            state = start(index)
        before = dict(counter.counts)
        example = decoder.decode(record)
        if example is None:
            reason = next(r for r, n in counter.counts.items() if n > before.get(r, 0))
            state["skipped"].append({"id": counter.recent_ids[-1], "reason": reason, "record": index})
        else:
            key = tar_safe_key(example["id"])
            data, clipped = encode_wav16(example["audio"])
            seconds = example["audio"].shape[0] / TARGET_SAMPLING_RATE
            meta = {**_metadata(record, audio_columns), "id": example["id"], "labels": example["labels"],
                    "seconds": seconds}
            _add_member(state["tar"], f"{key}.wav", data)
            _add_member(state["tar"], f"{key}.json", json.dumps(meta).encode())
            state["keys"].append(key)
            state["ids"].append(example["id"])
            state["seconds"] += seconds
            if clipped:
                state["clipped"][example["id"]] = clipped
        state["end_record"] = index + 1
        on_item(example is not None)
        if len(state["keys"]) >= shard_size:
            finish(state)
            chunk += 1
            state = None
    if state is not None and not state["keys"] and chunk > 0:
        # only bad items after the last full shard: they join its record (counted once, no empty shard)
        state["tar"].close()
        state["tmp"].unlink()
        _attach_skips_to_previous(out, prefix, source_shard, chunk - 1, state)
    elif state is not None:
        finish(state)


def _attach_skips_to_previous(out: Path, prefix: str, source_shard: int, chunk: int, state: dict[str, Any]) -> None:
    """Trailing bad items of a source shard join the record of its last shard (extending its source range), so that a
    rerun neither counts them twice nor writes an empty shard."""
    path = out / STATE_DIR / f"{shard_name(prefix, source_shard, chunk)}.json"
    record = json.loads(path.read_text())
    record["skipped"] += state["skipped"]
    record["end_record"] = state["end_record"]
    _write_json_atomic(path, record)


def _worker(source: TranscodeSource, out: str, prefix: str, shard_size: int, worker: int, num_workers: int,
            counts: Any = None, progress_every: float = 20.0, print_fn: Callable[[str], None] | None = None) -> None:
    """Transcode the source shards ``s % num_workers == worker``. ``counts``: a shared array (clips, skipped) per
    worker, or ``None`` to report progress here (one process)."""
    dataset = source.load(SkipCounter(f"transcode worker {worker}", summary_every=None, max_warnings=0))
    raw, decoder = dataset.raw, dataset.decoder
    progress = _Progress(progress_every, print_fn or print) if counts is None else None
    tally = [0, 0]

    def on_item(ok: bool) -> None:
        tally[0 if ok else 1] += 1
        if counts is not None:
            counts[2 * worker + (0 if ok else 1)] += 1
        else:
            progress.maybe_report(*tally)

    for source_shard in range(worker, raw.n_shards, num_workers):
        shard = raw.shard(num_shards=raw.n_shards, index=source_shard) if raw.n_shards > 1 else raw
        _transcode_source_shard(shard, decoder, Path(out), prefix, source_shard, shard_size, on_item)


def _dedupe_keys(out: Path, records: list[dict[str, Any]]) -> None:
    """Make keys unique over the whole output: in shard order, the tar-safe form of an id met again becomes
    ``key_2``, ``key_3``, ...; the affected shards are rewritten (tar, then record). Idempotent: the keys are computed
    from the records' source ids every time and applied by member position, so a rerun after an interruption between
    the two writes finishes the job."""
    seen: set[str] = set()
    for record in records:
        new_keys = []
        for example_id in record["ids"]:
            key = tar_safe_key(example_id)
            new, n = key, 1
            while new in seen:
                n += 1
                new = f"{key}_{n}"
            seen.add(new)
            new_keys.append(new)
        if new_keys == record["keys"]:
            continue
        path = out / f"{record['name']}.tar"
        tmp = out / STATE_DIR / "tmp" / f"{record['name']}.tar.rename"
        with tarfile.open(path) as src, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as dst:
            members = src.getmembers()
            for i, member in enumerate(members):
                _add_member(dst, f"{new_keys[i // 2]}.{member.name.rsplit('.', 1)[1]}", src.extractfile(member).read())
        os.replace(tmp, path)
        record["keys"] = new_keys
        _write_json_atomic(out / STATE_DIR / f"{record['name']}.json", record)


def _check_config(out: Path, config: dict[str, Any], overwrite: bool) -> None:
    state = out / STATE_DIR
    path = state / "config.json"
    ours = re.compile(re.escape(config["prefix"]) + r"-\d{5}-\d{4}\.tar$")
    if overwrite and out.exists():
        for item in [*(p for p in out.glob("*.tar") if ours.match(p.name)), out / SUMMARY_NAME]:
            item.unlink(missing_ok=True)
        shutil.rmtree(state, ignore_errors=True)
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != config:
            raise ValueError(
                f"{out} holds shards transcoded with other settings ({previous}); resuming needs the same source, "
                f"split, columns, prefix and shard_size ({config}). Use another --out_dir, or --overwrite to start "
                "again."
            )
    elif any(out.glob("*.tar")):
        raise ValueError(f"{out} already holds .tar files not written by transcode_shards; use another --out_dir")
    (state / "tmp").mkdir(parents=True, exist_ok=True)
    _write_json_atomic(path, config)


def transcode_shards(
    source: TranscodeSource,
    out_dir: str | os.PathLike,
    *,
    shard_size: int = 1000,
    num_workers: int = 1,
    prefix: str | None = None,
    progress_every: float = 20.0,
    overwrite: bool = False,
    print_fn: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Transcode ``source`` into 16 kHz PCM_16 WAV WebDataset shards under ``out_dir`` (see the module docstring).

    Args:
        source: the [`TranscodeSource`].
        out_dir: output folder; an existing one written by this function with the same settings is resumed.
        shard_size: good clips per output shard (the last shard of each source shard holds the rest).
        num_workers: processes (each takes every ``num_workers``-th source shard; more than the source's shards
            are not used).
        prefix: output name prefix (default: the split, so that `datasets` assigns the files to that split).
        progress_every: seconds between progress lines.
        overwrite: delete earlier output in ``out_dir`` first instead of resuming.
        print_fn: where progress lines go.

    Returns:
        The ``transcode_summary.json`` content.

    Raises:
        ValueError: bad arguments, or ``out_dir`` holds output of other settings (or foreign ``.tar`` files).
        RuntimeError: a worker process failed (rerunning resumes after its complete shards).
    """
    if shard_size < 1 or num_workers < 1:
        raise ValueError(f"shard_size and num_workers must be >= 1, got {shard_size}, {num_workers}")
    out = Path(out_dir)
    prefix = prefix or source.split
    if not re.fullmatch(r"[A-Za-z0-9_-]+", prefix):
        raise ValueError(f"prefix must be tar- and file-name safe (A-Za-z0-9_-), got {prefix!r}")
    config = {"source": source.describe(), "prefix": prefix, "shard_size": shard_size,
              "sampling_rate": TARGET_SAMPLING_RATE, "subtype": "PCM_16"}
    out.mkdir(parents=True, exist_ok=True)
    _check_config(out, config, overwrite)
    for stale in (out / STATE_DIR / "tmp").iterdir():  # temporary shards of an interrupted run
        stale.unlink()
    start = time.perf_counter()
    n_shards = source.load().raw.n_shards
    workers = min(num_workers, n_shards)
    if workers == 1:
        _worker(source, str(out), prefix, shard_size, 0, 1, None, progress_every, print_fn)
    else:
        _run_processes(source, out, prefix, shard_size, workers, progress_every, print_fn)
    records = sorted((json.loads(p.read_text()) for p in (out / STATE_DIR).glob(f"{prefix}-*.json")),
                     key=lambda r: r["name"])
    _dedupe_keys(out, records)
    summary = _summary(out, records, config, n_shards, workers, time.perf_counter() - start)
    _write_json_atomic(out / SUMMARY_NAME, summary)
    print_fn(f"transcode: done, {summary['num_clips']} clips in {summary['num_shards']} shards, "
             f"{summary['num_skipped']} skipped {summary['skipped_by_reason']}; summary in {out / SUMMARY_NAME}")
    return summary


def _run_processes(source: TranscodeSource, out: Path, prefix: str, shard_size: int, workers: int,
                   progress_every: float, print_fn: Callable[[str], None]) -> None:
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch / datasets threads
    counts = context.Array("q", 2 * workers, lock=False)  # (clips, skipped) per worker, each written by one process
    procs = [context.Process(target=_worker, args=(source, str(out), prefix, shard_size, w, workers, counts),
                             name=f"transcode-{w}") for w in range(workers)]
    for proc in procs:
        proc.start()
    progress = _Progress(progress_every, print_fn)
    try:
        while any(proc.is_alive() for proc in procs):
            for proc in procs:
                proc.join(timeout=0.5)
            progress.maybe_report(sum(counts[0::2]), sum(counts[1::2]))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
                proc.join()
    failed = [proc.name for proc in procs if proc.exitcode != 0]
    if failed:
        raise RuntimeError(f"transcode workers {failed} failed (see their traceback above); the complete shards are "
                           "kept: run the same command again to continue")


def _summary(out: Path, records: list[dict[str, Any]], config: dict[str, Any],
             n_source_shards: int, workers: int, seconds: float) -> dict[str, Any]:
    by_reason: dict[str, int] = {}
    ids_by_reason: dict[str, list[str]] = {}
    clipped: dict[str, int] = {}
    for record in records:
        for skip in record["skipped"]:
            by_reason[skip["reason"]] = by_reason.get(skip["reason"], 0) + 1
            ids_by_reason.setdefault(skip["reason"], []).append(skip["id"])
        clipped.update(record["clipped"])
    pairs = [(key, i) for record in records for key, i in zip(record["keys"], record["ids"])]
    files = [f"{r['name']}.tar" for r in records if (out / f"{r['name']}.tar").is_file()]
    num_clips = sum(len(r["keys"]) for r in records)
    audio_seconds = sum(r["seconds"] for r in records)
    return {
        **config,
        "out_dir": str(out),
        "num_clips": num_clips,
        "num_skipped": sum(by_reason.values()),
        "skipped_by_reason": by_reason,
        "skipped_ids": ids_by_reason,
        "num_shards": len(files),
        "files": files,
        "source_shards": n_source_shards,
        "audio_hours": audio_seconds / 3600.0,
        "bytes": sum(os.path.getsize(out / f) for f in files),
        # the loader's id is the key: the source id unless it was not tar-safe (counted, a few examples) or repeated
        "keys_not_ids": sum(key != i for key, i in pairs),
        "key_examples": dict(itertools.islice(((key, i) for key, i in pairs if key != i), 5)),
        "deduplicated_keys": {key: i for key, i in pairs if key != tar_safe_key(i)},
        "clipped_samples": clipped,
        "num_workers": workers,
        "last_run_seconds": seconds,
    }


__all__ = ["MAX_KEY_LENGTH", "STATE_DIR", "SUMMARY_NAME", "TranscodeSource", "encode_wav16", "shard_name",
           "tar_safe_key", "to_pcm16", "transcode_shards"]
