"""AudioSet-shaped shards for streaming tests and data-path benchmarks, and a timer for audio decoders.

The public AudioSet mirrors on the Hub (their dataset cards and file listings) come as

* parquet shards with an ``audio`` struct ``{"bytes", "path"}`` (declared as ``datasets.Audio`` in the schema's
  ``huggingface`` metadata), a ``video_id`` string and label lists (ontology ids and/or display names; the column
  names differ between mirrors), or
* WebDataset ``.tar`` shards with ``<key>.flac`` / ``<key>.mp3`` members and a ``<key>.json`` of metadata,

with 10 s clips at 16, 32, 44.1 or 48 kHz. [`write_audioset_shards`] writes the same shapes locally (nothing can be
downloaded here): ``<out>/parquet/train-00000-of-0000N.parquet`` and ``<out>/webdataset/train-00000-of-0000N.tar``,
clips encoded as FLAC and MP3 (soundfile's bundled libsndfile encodes both) at a mix of 32 / 44.1 / 48 kHz, with
1-3 labels of the 527-class AudioSet vocabulary (``modeling_audiomosaic/labels/audioset_class_labels_indices.csv``;
random: the shards have AudioSet's *shape*, not its content) and an 11-character YouTube-like ``video_id``.

Clip audio: 10 s mixes of a few sounds from a source -- any folder of audio files (e.g. the offline corpus of
``docs/offline_corpus.md``), a list of ``(array, sampling_rate)`` pairs, or ``None`` for synthetic tones, chirps and
noise bursts (fast; what the tests use). Everything is a pure function of ``seed``: the same call writes the same
bytes. ``num_bad`` deliberately bad items (garbage bytes, empty audio, a header-only file, a too-short clip) are
placed at seeded positions, for skip-count tests; ``<out>/shards.json`` lists every clip, its shard, codec, rate,
the id the data loader gives it, and the bad ones.

[`time_decoders`] times single-thread decoding of encoded clips with each available decoder (soundfile, PyAV,
miniaudio) and checks each against a reference decode (length, sample offset, max abs difference).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from .audio_io import resample_audio
from .sources import AUDIO_EXTENSIONS

CLIP_SECONDS = 10.0
"""AudioSet clip length (seconds)."""

AUDIOSET_SAMPLING_RATES: tuple[int, ...] = (32000, 44100, 48000)
"""Sampling rates of the mirrors the shards imitate (a clip's rate is drawn from the ``sampling_rates`` given)."""

CODECS: tuple[str, ...] = ("flac", "mp3")
"""Encodings of the mirrors, written by default (a clip's codec is drawn from the ``codecs`` given)."""

WRITABLE_CODECS: tuple[str, ...] = (*CODECS, "wav")
"""Every encoding ``codecs`` may name: the mirrors' ones and 16-bit PCM WAV (e.g. the output format of
``transcode_shards.py``, for comparisons)."""

SHARD_FORMATS: tuple[str, ...] = ("parquet", "webdataset")
"""Container formats: parquet with an ``audio`` struct column, WebDataset ``.tar``."""

BAD_KINDS: tuple[str, ...] = ("garbage", "empty", "header_only", "too_short")
"""Deliberately bad items, in the order they are used: random bytes (undecodable), zero bytes, the first 64 bytes of an
encoded clip (no audio frames), a valid 5 ms clip (shorter than one 25 ms fbank window after resampling)."""

YOUTUBE_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

_MP3_ENCODE = {"format": "MP3", "subtype": "MPEG_LAYER_III", "bitrate_mode": "CONSTANT", "compression_level": 0.6}
"""libsndfile MP3 settings: constant bit rate, 0.6 -> about 128 kbit/s (the usual rate of YouTube-derived mp3s)."""


@dataclass(frozen=True)
class ClipRecord:
    """One written clip, as listed in ``shards.json``.

    ``parquet_id`` / ``webdataset_id`` are the ids the data loader gives the clip (the audio ``path`` for parquet,
    which has no id column; the member key ``__key__`` for WebDataset)."""

    index: int
    video_id: str
    shard: int
    codec: str
    sampling_rate: int
    labels: tuple[str, ...]
    bad: str | None
    parquet_id: str
    webdataset_id: str


def audioset_vocabulary() -> list[tuple[str, str]]:
    """The 527 AudioSet classes as ``(ontology id, display name)`` in the released heads' order."""
    from ..labels import LABELS_DIR  # this package is installed as modeling_audiomosaic.feature_extraction

    with open(LABELS_DIR / "audioset_class_labels_indices.csv", newline="", encoding="utf-8") as handle:
        return [(row["mid"], row["display_name"]) for row in csv.DictReader(handle)]


def _video_id(rng: np.random.Generator) -> str:
    return "".join(YOUTUBE_ID_ALPHABET[i] for i in rng.integers(0, len(YOUTUBE_ID_ALPHABET), 11))


# ---------------------------------------------------------------------------------------------------------------------
# Clip audio
# ---------------------------------------------------------------------------------------------------------------------


def _synthetic_event(rng: np.random.Generator, seconds: float, rate: int) -> np.ndarray:
    """One synthetic sound: a harmonic tone with vibrato, a chirp, or band-limited noise bursts, with an envelope."""
    n = max(int(seconds * rate), 1)
    t = np.arange(n) / rate
    kind = rng.integers(0, 3)
    if kind == 0:
        f0 = rng.uniform(80, 800)
        phase = 2 * np.pi * f0 * t + rng.uniform(0.5, 4) * np.sin(2 * np.pi * rng.uniform(3, 7) * t)
        wave = sum(np.sin(k * phase) / k for k in range(1, int(rng.integers(2, 6))))
    elif kind == 1:
        f_start, f_end = rng.uniform(100, 4000, size=2)
        wave = np.sin(2 * np.pi * (f_start * t + (f_end - f_start) * t**2 / (2 * max(seconds, 1e-3))))
    else:
        noise = rng.standard_normal(n)
        width = int(rng.integers(2, 40))  # a moving average: low-passed noise of varying brightness
        wave = np.convolve(noise, np.ones(width) / width, mode="same") * np.sqrt(width)
        wave *= (np.sin(2 * np.pi * rng.uniform(0.5, 4) * t) > rng.uniform(-0.5, 0.5)).astype(np.float64)
    envelope = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02 + 1e-3)  # 20 ms fades
    return (wave * envelope).astype(np.float32)


class _Source:
    """Where clip audio comes from: ``None`` (synthetic), a folder / list of audio files, or ``(array, rate)`` pairs.

    Files are decoded lazily and kept (mono float32 at their own rate) until the writer is done."""

    def __init__(self, source: Any) -> None:
        self.items: list[Any] = []
        self._cache: dict[int, tuple[np.ndarray, int]] = {}
        if source is None:
            return
        if isinstance(source, (str, os.PathLike)):
            root = Path(source)
            if not root.is_dir():
                raise FileNotFoundError(f"audio source folder {root} does not exist")
            exts = tuple(AUDIO_EXTENSIONS)
            self.items = sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
            if not self.items:
                raise ValueError(f"no audio files ({', '.join(exts)}) under {root}")
        else:
            self.items = list(source)
            if not self.items:
                raise ValueError("the audio source list is empty")

    @property
    def synthetic(self) -> bool:
        return not self.items

    def _load(self, i: int) -> tuple[np.ndarray, int]:
        if i not in self._cache:
            item = self.items[i]
            if isinstance(item, tuple):
                wave, rate = np.asarray(item[0], dtype=np.float32), int(item[1])
            else:
                wave, rate = sf.read(item, dtype="float32", always_2d=True)
                wave = wave.mean(axis=1)
            self._cache[i] = (np.asarray(wave, dtype=np.float32).reshape(-1), int(rate))
        return self._cache[i]

    def event(self, rng: np.random.Generator, max_seconds: float, rate: int) -> np.ndarray:
        """One sound of at most ``max_seconds`` at ``rate``."""
        if self.synthetic:
            return _synthetic_event(rng, rng.uniform(0.3, max_seconds), rate)
        wave, source_rate = self._load(int(rng.integers(0, len(self.items))))
        limit = int(max_seconds * source_rate)
        if wave.shape[0] > limit:
            start = int(rng.integers(0, wave.shape[0] - limit + 1))
            wave = wave[start : start + limit]
        if source_rate != rate:
            wave = resample_audio(wave, source_rate, rate)
        peak = float(np.max(np.abs(wave))) if wave.size else 0.0
        return wave / peak if peak > 0 else wave


def make_clip(source: Any, rng: np.random.Generator, rate: int, seconds: float = CLIP_SECONDS) -> np.ndarray:
    """A ``seconds``-long mono float32 clip at ``rate``: 2-5 sounds from ``source`` (a `_Source`, or anything it
    accepts) at random offsets and gains over a quiet noise floor, peak-normalised to 0.3-0.9."""
    source = source if isinstance(source, _Source) else _Source(source)
    n = int(round(seconds * rate))
    clip = (rng.uniform(1e-3, 1e-2) * rng.standard_normal(n)).astype(np.float32)
    for _ in range(int(rng.integers(2, 6))):
        sound = source.event(rng, min(seconds, 5.0), rate)[:n]
        start = int(rng.integers(0, n - sound.shape[0] + 1))
        clip[start : start + sound.shape[0]] += rng.uniform(0.2, 1.0) * sound
    peak = float(np.max(np.abs(clip)))
    return (clip * (rng.uniform(0.3, 0.9) / peak)).astype(np.float32)


def encode_clip(wave: np.ndarray, rate: int, codec: str) -> bytes:
    """Encode a mono float32 clip as ``"flac"`` (16-bit) or ``"mp3"`` (CBR, about 128 kbit/s) bytes with soundfile."""
    buffer = io.BytesIO()
    if codec == "flac":
        sf.write(buffer, wave, rate, format="FLAC", subtype="PCM_16")
    elif codec == "mp3":
        sf.write(buffer, wave, rate, **_MP3_ENCODE)
    elif codec == "wav":
        sf.write(buffer, wave, rate, format="WAV", subtype="PCM_16")
    else:
        raise ValueError(f"unknown codec {codec!r}; use one of {WRITABLE_CODECS}")
    return buffer.getvalue()


def _bad_bytes(kind: str, rng: np.random.Generator, rate: int, codec: str) -> bytes:
    if kind == "garbage":
        return rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    if kind == "empty":
        return b""
    if kind == "header_only":
        return encode_clip(_synthetic_event(rng, 1.0, rate), rate, codec)[:64]
    if kind == "too_short":  # 5 ms: fewer than MIN_NUM_SAMPLES (400) samples at 16 kHz
        return encode_clip(_synthetic_event(rng, 0.005, rate), rate, "flac")
    raise ValueError(f"unknown bad item kind {kind!r}; use one of {BAD_KINDS}")


# ---------------------------------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------------------------------


def _parquet_schema(label_column: str | None, names_column: str | None, hf_features: bool):
    import pyarrow as pa

    fields = [("video_id", pa.string()), ("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())]))]
    if label_column:
        fields.append((label_column, pa.list_(pa.string())))
    if names_column:
        fields.append((names_column, pa.list_(pa.string())))
    schema = pa.schema(fields)
    if hf_features:  # what `datasets` writes for an Audio column (mirrors pushed with push_to_hub carry it)
        features: dict[str, Any] = {
            "video_id": {"dtype": "string", "_type": "Value"},
            "audio": {"_type": "Audio"},
        }
        for column in (label_column, names_column):
            if column:
                features[column] = {"feature": {"dtype": "string", "_type": "Value"}, "_type": "List"}
        schema = schema.with_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    return schema


def _write_parquet(path: Path, rows: list[dict[str, Any]], schema, row_group_size: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path, row_group_size=row_group_size, compression="none")  # audio bytes are compressed


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: same seed, same bytes
            tar.addfile(info, io.BytesIO(data))


def write_audioset_shards(
    out_dir: str | os.PathLike,
    num_clips: int = 64,
    num_shards: int = 4,
    *,
    source: Any = None,
    formats: Sequence[str] = SHARD_FORMATS,
    codecs: Sequence[str] = CODECS,
    sampling_rates: Sequence[int] = AUDIOSET_SAMPLING_RATES,
    seconds: float = CLIP_SECONDS,
    label_column: str | None = "labels",
    names_column: str | None = "human_labels",
    num_bad: int = 0,
    bad_indices: Sequence[int] | None = None,
    seed: int = 0,
    hf_features: bool = True,
    row_group_size: int = 16,
    split: str = "train",
) -> dict[str, Any]:
    """Write ``num_clips`` AudioSet-shaped clips into ``num_shards`` parquet and/or WebDataset shards.

    Args:
        out_dir: output folder; gets ``parquet/{split}-0000i-of-0000N.parquet``, ``webdataset/...tar`` and
            ``shards.json`` (existing shard files of those names are overwritten).
        num_clips: clips in total, ``num_bad`` bad ones included; clips are split into contiguous blocks per shard.
        num_shards: shards per format (>= 1, <= ``num_clips``).
        source: ``None`` (synthetic sounds), a folder of audio files (e.g. an offline-corpus root), or a list of
            file paths / ``(array, sampling_rate)`` pairs; each clip mixes 2-5 sounds of it.
        formats: any of [`SHARD_FORMATS`].
        codecs: any of [`WRITABLE_CODECS`] (default: [`CODECS`], FLAC and MP3); each clip's codec is drawn from
            them.
        sampling_rates: each clip's rate is drawn from them (default [`AUDIOSET_SAMPLING_RATES`]).
        seconds: clip length (AudioSet: 10 s).
        label_column: parquet column (and WebDataset json key) of the ontology-id lists (``None``: none).
        names_column: parquet column / json key of the display-name lists (``None``: none).
        num_bad: deliberately bad items, kinds cycling through [`BAD_KINDS`], at seeded positions.
        bad_indices: the clip indices of the bad items instead (overrides ``num_bad``), e.g. the first item of
            every shard.
        seed: everything (audio, ids, labels, codecs, rates, bad positions) is a pure function of it.
        hf_features: declare ``audio`` as ``datasets.Audio`` in the parquet metadata, as mirrors pushed with
            ``push_to_hub`` do (the loader then reads it with ``Audio(decode=False)``).
        row_group_size: parquet rows per row group.
        split: the file-name prefix (``train``).

    Returns:
        The ``shards.json`` content: ``{"num_clips", "num_shards", "seed", "formats", "files": {format: [paths]},
        "clips": [ClipRecord as dict], "bad_ids": {format: [ids]}, "seconds", "bytes": {format: total}}``.
    """
    formats, codecs = tuple(formats), tuple(codecs)
    for name, values, allowed in (("formats", formats, SHARD_FORMATS), ("codecs", codecs, WRITABLE_CODECS)):
        if not values or any(v not in allowed for v in values):
            raise ValueError(f"{name} must be a non-empty subset of {allowed}, got {values}")
    if not 1 <= num_shards <= num_clips:
        raise ValueError(f"need 1 <= num_shards <= num_clips, got num_shards={num_shards}, num_clips={num_clips}")
    if bad_indices is not None:
        bad_indices = sorted({int(i) for i in bad_indices})
        if any(not 0 <= i < num_clips for i in bad_indices) or len(bad_indices) >= num_clips:
            raise ValueError(f"bad_indices must be fewer than num_clips indices in [0, {num_clips}), got {bad_indices}")
        num_bad = len(bad_indices)
    if not 0 <= num_bad < num_clips:
        raise ValueError(f"need 0 <= num_bad < num_clips, got num_bad={num_bad}")
    if not sampling_rates or any(int(r) < 8000 for r in sampling_rates):
        raise ValueError(f"sampling_rates must be rates >= 8000 Hz, got {sampling_rates}")
    out = Path(out_dir)
    clip_source = _Source(source)
    vocabulary = audioset_vocabulary()
    plan_rng = np.random.default_rng([seed, 0])
    if bad_indices is not None:
        bad_positions = set(bad_indices)
    else:
        bad_positions = set(plan_rng.choice(num_clips, size=num_bad, replace=False).tolist()) if num_bad else set()
    bad_kind = {pos: BAD_KINDS[k % len(BAD_KINDS)] for k, pos in enumerate(sorted(bad_positions))}
    # label popularity: AudioSet is dominated by Speech (index 0) and Music (137)
    weights = np.ones(len(vocabulary))
    weights[[0, 137]] = 40.0
    weights /= weights.sum()

    clips: list[ClipRecord] = []
    shard_rows: list[list[dict[str, Any]]] = [[] for _ in range(num_shards)]
    shard_members: list[list[tuple[str, bytes]]] = [[] for _ in range(num_shards)]
    seen_ids: set[str] = set()
    for index in range(num_clips):
        rng = np.random.default_rng([seed, 1, index])
        video_id = _video_id(rng)
        while video_id in seen_ids:  # 64**11 ids: never in practice, but ids must be unique
            video_id = _video_id(rng)
        seen_ids.add(video_id)
        rate = int(sampling_rates[int(rng.integers(0, len(sampling_rates)))])
        codec = codecs[int(rng.integers(0, len(codecs)))]
        picks = rng.choice(len(vocabulary), size=int(rng.integers(1, 4)), replace=False, p=weights)
        mids = tuple(vocabulary[i][0] for i in sorted(picks))
        names = [vocabulary[i][1] for i in sorted(picks)]
        bad = bad_kind.get(index)
        data = _bad_bytes(bad, rng, rate, codec) if bad else encode_clip(make_clip(clip_source, rng, rate, seconds),
                                                                            rate, codec)
        shard = index * num_shards // num_clips
        path = f"{video_id}.{codec}"
        clips.append(ClipRecord(index, video_id, shard, codec, rate, mids, bad, path, video_id))
        row = {"video_id": video_id, "audio": {"bytes": data, "path": path}}
        meta: dict[str, Any] = {"video_id": video_id, "sampling_rate": rate}
        if label_column:
            row[label_column] = list(mids)
            meta[label_column] = list(mids)
        if names_column:
            row[names_column] = names
            meta[names_column] = names
        shard_rows[shard].append(row)
        shard_members[shard] += [(f"{video_id}.{codec}", data), (f"{video_id}.json", json.dumps(meta).encode())]

    files: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    name = f"{split}-{{:05d}}-of-{num_shards:05d}"
    if "parquet" in formats:
        (out / "parquet").mkdir(parents=True, exist_ok=True)
        schema = _parquet_schema(label_column, names_column, hf_features)
        files["parquet"] = []
        for shard, rows in enumerate(shard_rows):
            path = out / "parquet" / (name.format(shard) + ".parquet")
            _write_parquet(path, rows, schema, row_group_size)
            files["parquet"].append(str(path))
    if "webdataset" in formats:
        (out / "webdataset").mkdir(parents=True, exist_ok=True)
        files["webdataset"] = []
        for shard, members in enumerate(shard_members):
            path = out / "webdataset" / (name.format(shard) + ".tar")
            _write_tar(path, members)
            files["webdataset"].append(str(path))
    for fmt, paths in files.items():
        sizes[fmt] = sum(os.path.getsize(p) for p in paths)
    summary = {
        "num_clips": num_clips,
        "num_shards": num_shards,
        "seed": seed,
        "seconds": seconds,
        "formats": list(files),
        "files": files,
        "bytes": sizes,
        "label_column": label_column,
        "names_column": names_column,
        "clips": [asdict(c) for c in clips],
        "bad_ids": {
            fmt: sorted((c.parquet_id if fmt == "parquet" else c.webdataset_id) for c in clips if c.bad)
            for fmt in files
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(summary, indent=1)
    (out / "shards.json").write_text(text)
    return json.loads(text)  # exactly what shards.json holds (lists, not tuples)


def iter_shard_audio(shard_dir: str | os.PathLike, fmt: str = "webdataset") -> Iterable[tuple[str, str, bytes]]:
    """``(id, codec, encoded bytes)`` of every item in the shards written by [`write_audioset_shards`] (bad ones
    included), reading the files directly (no `datasets`): for decoder benchmarks."""
    root = Path(shard_dir)
    if fmt == "webdataset":
        for path in sorted((root / "webdataset").glob("*.tar")):
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    key, _, ext = member.name.partition(".")
                    if ext in WRITABLE_CODECS:
                        yield key, ext, tar.extractfile(member).read()
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        for path in sorted((root / "parquet").glob("*.parquet")):
            for audio in pq.read_table(path, columns=["audio"]).column("audio").to_pylist():
                yield audio["path"], audio["path"].rsplit(".", 1)[-1], audio["bytes"]
    else:
        raise ValueError(f"fmt must be one of {SHARD_FORMATS}, got {fmt!r}")


def decoder_benchmark_items(
    shard_dir: str | os.PathLike, fmt: str = "webdataset", *, with_wav: bool = True, limit: int | None = None
) -> list[tuple[str, bytes]]:
    """``(codec, bytes)`` of the good clips of the shards in ``shard_dir`` (``shards.json`` names the bad ones), at
    most ``limit`` of them, plus (``with_wav``) each one re-encoded as 16-bit WAV at its own rate: the inputs of
    [`time_decoders`] for FLAC, MP3 and WAV."""
    summary = json.loads((Path(shard_dir) / "shards.json").read_text())
    bad = {c["webdataset_id"] for c in summary["clips"] if c["bad"]}
    items = [(codec, data) for key, codec, data in iter_shard_audio(shard_dir, fmt) if key.split(".")[0] not in bad]
    items = items[:limit] if limit is not None else items
    if with_wav:
        for _, data in list(items):
            wave, rate = sf.read(io.BytesIO(data), dtype="float32")
            items.append(("wav", encode_clip(wave, rate, "wav")))
    return items


# ---------------------------------------------------------------------------------------------------------------------
# Decoder timing
# ---------------------------------------------------------------------------------------------------------------------


def _decode_soundfile(data: bytes) -> tuple[np.ndarray, int]:
    wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return wave.mean(axis=1) if wave.shape[1] > 1 else wave[:, 0], int(rate)


def _decode_pyav(data: bytes) -> tuple[np.ndarray, int]:
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        stream.codec_context.thread_count = 1  # single thread, as the benchmark asks
        chunks = [frame.to_ndarray() for frame in container.decode(stream)]
        rate = int(stream.codec_context.sample_rate)
    wave = np.concatenate(chunks, axis=1) if chunks else np.zeros((1, 0), np.float32)
    if wave.dtype.kind == "i":
        wave = wave.astype(np.float32) / float(np.iinfo(wave.dtype).max + 1)
    return wave.mean(axis=0).astype(np.float32), rate  # planar (channels, samples)


def _decode_miniaudio(data: bytes) -> tuple[np.ndarray, int]:
    import miniaudio

    # the format's own reader (dr_mp3 / dr_flac / dr_wav): `miniaudio.decode` would resample to 44.1 kHz stereo
    if data[:4] == b"fLaC":
        decoded = miniaudio.flac_read_f32(data)
    elif data[:4] == b"RIFF":
        decoded = miniaudio.wav_read_f32(data)
    else:
        decoded = miniaudio.mp3_read_f32(data)
    wave = np.frombuffer(decoded.samples, dtype=np.float32)
    if decoded.nchannels > 1:
        wave = wave.reshape(-1, decoded.nchannels).mean(axis=1)
    return wave, int(decoded.sample_rate)


DECODERS: dict[str, tuple[str, Callable[[bytes], tuple[np.ndarray, int]]]] = {
    "soundfile": ("soundfile", _decode_soundfile),
    "pyav": ("av", _decode_pyav),
    "miniaudio": ("miniaudio", _decode_miniaudio),
}
"""Decoder name -> (module it needs, ``bytes -> (mono float32, rate)``)."""


def available_decoders() -> list[str]:
    """The [`DECODERS`] whose module imports here."""
    import importlib.util

    return [name for name, (module, _) in DECODERS.items() if importlib.util.find_spec(module) is not None]


def _alignment(wave: np.ndarray, reference: np.ndarray, max_shift: int = 4096) -> tuple[int, float]:
    """The shift ``s`` (``wave[i + s] ~ reference[i]``, ``|s| <= max_shift``) that best aligns the first two seconds
    (FFT cross-correlation), and the max abs difference over the aligned overlap."""
    from scipy.signal import correlate

    n = min(len(reference), len(wave), 96000)
    if n <= 2 * max_shift:
        lo = min(len(reference), len(wave))
        return 0, float(np.max(np.abs(wave[:lo] - reference[:lo]))) if lo else 0.0
    xcorr = correlate(wave[:n].astype(np.float64), reference[:n].astype(np.float64), mode="full", method="fft")
    lags = np.arange(-n + 1, n)
    window = np.abs(lags) <= max_shift
    best = int(lags[window][np.argmax(xcorr[window])])
    lo = max(0, -best)
    hi = min(len(reference), len(wave) - best)
    return best, float(np.max(np.abs(wave[lo + best : hi + best] - reference[lo:hi])))


def time_per_item(fn: Callable[[Any], Any], items: Sequence[Any], *, repeats: int = 3) -> float:
    """Milliseconds per item of ``fn(item)`` over ``items`` (after one warm-up pass), the fastest of ``repeats``
    passes: e.g. ``time_per_item(lambda data: decode_audio(data), [data for _, data in items])`` for the project's
    decode + resample to 16 kHz."""
    if not items:
        raise ValueError("no items to time")
    for item in items:
        fn(item)
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best / len(items)


def time_decoders(
    items: Sequence[tuple[str, bytes]],
    decoders: Sequence[str] | None = None,
    *,
    repeats: int = 3,
    reference: str = "soundfile",
    originals: Sequence[np.ndarray] | None = None,
    check_alignment: bool = True,
) -> list[dict[str, Any]]:
    """Time single-thread decoding of encoded clips, per decoder and codec, and check each decoder's output.

    Args:
        items: ``(codec, encoded bytes)`` pairs (e.g. from [`iter_shard_audio`] or [`encode_clip`]).
        decoders: names from [`DECODERS`] (default: every [`available_decoders`]).
        repeats: passes over ``items``; the fastest pass is reported (least disturbed by other load).
        reference: the decoder the others are compared with.
        originals: the PCM clips before encoding (same order as ``items``); if given, every decoder is also compared
            with them (the true signal, whatever any decoder does).
        check_alignment: search the sample offset between each decoder and the reference (costs some time).

    Returns:
        One row per (decoder, codec): ``{"decoder", "codec", "clips", "ms_per_clip", "audio_seconds",
        "ms_per_10s", "length_diff" (max |len - reference len|), "offset" (max |sample shift| to the reference),
        "max_abs_diff" (to the reference, aligned), "max_abs_diff_original", "error"}``. Decoders that fail on a
        codec get ``error`` set and no timing. Call it with ``torch.set_num_threads(1)`` / ``OMP_NUM_THREADS=1`` for a
        strict single-thread figure (the decoders themselves run one thread here: PyAV with ``thread_count = 1``).
    """
    names = list(decoders) if decoders is not None else available_decoders()
    codecs = sorted({codec for codec, _ in items})
    rows = []
    reference_out: dict[int, tuple[np.ndarray, int]] = {}
    ref_fn = DECODERS[reference][1]
    for i, (_, data) in enumerate(items):
        reference_out[i] = ref_fn(data)
    for name in names:
        fn = DECODERS[name][1]
        for codec in codecs:
            chosen = [(i, data) for i, (c, data) in enumerate(items) if c == codec]
            row: dict[str, Any] = {"decoder": name, "codec": codec, "clips": len(chosen), "error": None}
            try:
                outputs = {i: fn(data) for i, data in chosen}  # warm-up, and the outputs to check
                best = float("inf")
                for _ in range(max(1, repeats)):
                    start = time.perf_counter()
                    for _, data in chosen:
                        fn(data)
                    best = min(best, time.perf_counter() - start)
            except Exception as err:  # an unsupported codec is a result, not a crash
                row["error"] = f"{type(err).__name__}: {err}"
                rows.append(row)
                continue
            seconds = sum(len(w) / r for w, r in outputs.values())
            row["ms_per_clip"] = 1000 * best / max(len(chosen), 1)
            row["audio_seconds"] = seconds / max(len(chosen), 1)
            row["ms_per_10s"] = 1000 * best / max(seconds, 1e-9) * 10
            length_diff, offset, diff, diff_original = 0, 0, 0.0, 0.0
            for i, (wave, rate) in outputs.items():
                ref_wave, ref_rate = reference_out[i]
                if rate != ref_rate:
                    row["error"] = f"rate {rate} != reference rate {ref_rate}"
                length_diff = max(length_diff, abs(len(wave) - len(ref_wave)))
                if check_alignment and name != reference:
                    shift, d = _alignment(wave, ref_wave)
                    offset, diff = max(offset, abs(shift)), max(diff, d)
                if originals is not None:
                    original = np.asarray(originals[i], dtype=np.float32)
                    shift, d = _alignment(wave, original) if check_alignment else (0, np.nan)
                    diff_original = max(diff_original, d)
                    row.setdefault("offset_original", 0)
                    row["offset_original"] = max(row["offset_original"], abs(shift))
            row.update(length_diff=length_diff, offset=offset, max_abs_diff=diff)
            if originals is not None:
                row["max_abs_diff_original"] = diff_original
            rows.append(row)
    return rows


def format_decoder_table(rows: Sequence[dict[str, Any]]) -> str:
    """A markdown table of [`time_decoders`] rows."""
    lines = ["| decoder | codec | ms per 10 s clip | length diff | offset | max abs diff vs reference |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("error") and "ms_per_10s" not in r:
            lines.append(f"| {r['decoder']} | {r['codec']} | error: {r['error'][:60]} | | | |")
            continue
        lines.append(f"| {r['decoder']} | {r['codec']} | {r['ms_per_10s']:.2f} | {r['length_diff']} | "
                     f"{r['offset']} | {r['max_abs_diff']:.2e} |")
    return "\n".join(lines)


__all__ = [
    "AUDIOSET_SAMPLING_RATES",
    "BAD_KINDS",
    "CLIP_SECONDS",
    "CODECS",
    "DECODERS",
    "SHARD_FORMATS",
    "WRITABLE_CODECS",
    "ClipRecord",
    "audioset_vocabulary",
    "available_decoders",
    "decoder_benchmark_items",
    "encode_clip",
    "format_decoder_table",
    "iter_shard_audio",
    "make_clip",
    "time_decoders",
    "time_per_item",
    "write_audioset_shards",
]
