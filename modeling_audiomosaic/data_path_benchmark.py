"""The ``data_path`` benchmark: host CPU cost per pre-training clip with views on the host vs views on the device.

What a data worker does per clip, on ONE thread, for 10 s clips shaped like the public AudioSet mirrors (FLAC and MP3
at 32 / 44.1 / 48 kHz, 16 kHz FLAC and WAV; the clips and encodings of `write_audioset_shards`: `make_clip`,
`encode_clip`):

* **decode**: `decode_audio` (miniaudio for FLAC / WAV bytes, soundfile for MP3; mono; resampled to 16 kHz with the
  project's one resampler);
* **collate, host views**: `PretrainingViewsCollator` (random crop, roll + gain, the augmentation chain, Kaldi fbank
  and normalisation of two views) -- today's path;
* **collate, device views**: `PretrainingViewsCollator(views_on_device=True)` (crop, the views' random parameters,
  one padded waveform tensor) -- the workers' share when the views run on the accelerator;
* **device part** (context): `ContrastiveViewGenerator.views_from_parameters` on the CPU, i.e. what the accelerator
  takes over, measured here on the CPU with one thread and with all threads;
* **MAM-CLAP teacher** (``clap_teacher``): the same two collations with a CLAP teacher's features
  (`ClapFeatureExtractor`, 10 s at 48 kHz, ``fusion`` and ``rand_trunc``): on the host path the extractor's numpy
  spectrogram runs in the worker; on the device path the worker only draws and lays out (`ClapFeaturesOnDevice.plan`)
  and the resampling to 48 kHz and the spectrogram are device work (measured here on the CPU, one thread);
* **worker hand-over** (``worker_transfer``): a DataLoader worker process building a batch and handing it to the
  training process, made in shared memory as the library does in a worker vs a private tensor, which torch copies
  into shared memory to send it: the device path's padded waveforms (128 clips of 10.255 s, 80 MiB) and the host
  path's views (128 clips x 2 views x 1024 x 128, 128 MiB);
* **end of a stream's pass** (``stream_pass``): the seconds of one pass over 8 parquet shards with 2 DataLoader
  workers when each worker interleaves its shards into its shuffle buffer (datasets' default) vs reads them one after
  another (`--shuffle_input_shards 1`, the runs' default): datasets sleeps at the end of an interleaved parquet stream
  and the DataLoader, which delivers batches in order, waits for that worker;
* **resuming a stream** (``stream_resume``): getting past the trained part of a pass of 10 s clips (the mirrors' FLAC
  and MP3) with 2 DataLoader workers before the resumed step trains, skipping its batches by iterating (decoded, host
  views collated, dropped: what `skip_first_batches` does) vs the workers passing over the trained records undecoded
  (`ExampleDecoder.skip_rows`, what a resumed streaming run does): wall ms per clip.

Reported: milliseconds per clip for each stage and format, and "host cores needed per 1,000 clips/s" (= ms per clip
on one core), for each path. ``ratio`` = host cost of the device-view path / host cost of the host-view path, decode
included, for shards at the model's 16 kHz as 16-bit WAV (target <= 0.2), and ``mirror_formats_ratio`` the same for
the mirrors' 32-48 kHz FLAC and MP3 (mean). Once the views leave the host, decoding (and resampling) is what the
workers spend their time on: 3.5-9.4 ms per 10 s clip for 32-48 kHz FLAC/MP3 on this machine's cores, against 1.3 ms
for 16 kHz FLAC and 0.12 ms for 16 kHz WAV (docs/RESULTS.md). For 400 epochs, transcoding the shards once to 16 kHz
(`run_scripts/transcode_shards.py`) pays for itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .benchmark_timing import fastest, interleaved

#: (codec, sampling rate) of the benchmarked encodings: the AudioSet mirrors' formats, plus 16 kHz WAV (no
#: decoding or resampling cost: the views alone).
FORMATS: tuple[tuple[str, int], ...] = (
    ("flac", 32000), ("flac", 44100), ("flac", 48000), ("mp3", 32000), ("mp3", 44100), ("mp3", 48000),
    ("flac", 16000), ("wav", 16000),
)
#: The recommended training shards: transcoded once to the model's 16 kHz as 16-bit WAV, so that the workers neither
#: resample nor decode (the headline ratio). 16 kHz FLAC (half the disk, a real decoder) is reported next to it.
RECOMMENDED = "wav_16k"


def bench_data_path(args: Any) -> dict:
    """See the module docstring. `args`: ``quick`` (fewer clips), ``repeats``."""
    from .feature_extraction import AudioMosaicFeatureExtractor, ContrastiveViewGenerator  # noqa: PLC0415
    from .feature_extraction.audio_io import decode_audio  # noqa: PLC0415
    from .feature_extraction.audioset_shards import encode_clip, make_clip  # noqa: PLC0415
    from .feature_extraction.collators import PretrainingViewsCollator  # noqa: PLC0415

    batch = 4 if getattr(args, "quick", False) else 16
    repeats = max(1, int(getattr(args, "repeats", 3)))
    rng = np.random.default_rng(0)
    encoded = {
        f"{codec}_{rate // 1000 if rate % 1000 == 0 else rate / 1000:g}k": [
            encode_clip(make_clip(None, rng, rate), rate, codec) for _ in range(batch)
        ]
        for codec, rate in FORMATS
    }
    fe = AudioMosaicFeatureExtractor.from_preset("audioset")
    views = ContrastiveViewGenerator(fe, augmentation="original")
    host = PretrainingViewsCollator(views, seed=0)
    device = PretrainingViewsCollator(views, seed=0, views_on_device=True)
    decoded = [decode_audio(item) for item in encoded["flac_48k"]]
    examples = [{"audio": wave, "id": f"clip{i}"} for i, wave in enumerate(decoded)]
    device_batch = device(examples)

    def device_part():
        return views.views_from_parameters(device_batch["waveforms"], device_batch["waveform_lengths"],
                                           device_batch["view_parameters"])

    teacher_fns = _clap_teacher_fns(views, examples)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fns = {f"decode_{name}": (lambda items=items: [decode_audio(item) for item in items])
               for name, items in encoded.items()}
        fns["collate_host_views"] = lambda: host(examples)
        fns["collate_device_views"] = lambda: device(examples)
        fns["device_part_on_cpu_1_thread"] = device_part
        fns.update(teacher_fns)
        best = fastest(interleaved(fns, repeats=repeats))
    finally:
        torch.set_num_threads(threads)
    all_threads = fastest(interleaved({"device_part_on_cpu_all_threads": device_part}, repeats=repeats))
    ms = {name: 1000.0 * seconds / batch for name, seconds in {**best, **all_threads}.items()}
    per_format = {}
    for name in encoded:
        decode = ms[f"decode_{name}"]
        host_cost = decode + ms["collate_host_views"]
        device_cost = decode + ms["collate_device_views"]
        per_format[name] = {
            "decode_ms": round(decode, 3),
            "host_views_ms": round(host_cost, 3),
            "device_views_ms": round(device_cost, 3),
            "ratio": round(device_cost / host_cost, 3),
            # ms of one core per clip = cores busy at 1,000 clips/s
            "host_cores_per_1000_clips_per_s": {
                "host_views": round(host_cost, 1), "device_views": round(device_cost, 1),
            },
        }
    mirror = [name for name in encoded if not name.endswith("_16k")]
    mirror_ratio = float(np.mean([per_format[name]["ratio"] for name in mirror]))
    ratio = per_format[RECOMMENDED]["ratio"]
    return {
        "name": "data_path",
        "ratio": round(ratio, 3),
        "target": "<= 0.2x host CPU per clip with views on the device vs on the host, decode included, for 16 kHz "
        "16-bit WAV shards; 16 kHz FLAC and the mirrors' 32-48 kHz FLAC/MP3 (`mirror_formats_ratio`) reported",
        "passed": bool(ratio <= 0.2),
        "mirror_formats_ratio": round(mirror_ratio, 3),
        "per_format": per_format,
        "ms_per_clip": {name: round(value, 3) for name, value in ms.items()},
        "views_only_ratio": round(ms["collate_device_views"] / ms["collate_host_views"], 4),
        "clap_teacher": _clap_teacher_report(ms),
        "worker_transfer": worker_transfer(repeats=max(repeats, 3)),
        "stream_pass": stream_pass(),
        "stream_resume": stream_resume(clips=(8, 24), repeats=1) if getattr(args, "quick", False) else stream_resume(),
        "clips": f"{batch} x 10 s per batch, two views of 1024 x 128, augmentation 'original', one worker thread",
        "repeats": repeats,
    }


def _clap_teacher_fns(views: Any, examples: list[dict]) -> dict[str, Any]:
    """The collations with a CLAP teacher (both truncations), and the teacher's device part on this CPU."""
    from transformers import ClapFeatureExtractor  # noqa: PLC0415

    from .feature_extraction.collators import PretrainingViewsCollator  # noqa: PLC0415

    fns = {}
    for truncation in ("fusion", "rand_trunc"):
        extractor = ClapFeatureExtractor(truncation=truncation)
        host = PretrainingViewsCollator(views, seed=0, teacher_feature_extractor=extractor)
        device = PretrainingViewsCollator(views, seed=0, views_on_device=True, teacher_feature_extractor=extractor)
        batch = device(examples)
        fns[f"collate_host_views_clap_{truncation}"] = lambda host=host: host(examples)
        fns[f"collate_device_views_clap_{truncation}"] = lambda device=device: device(examples)
        fns[f"clap_{truncation}_device_part_on_cpu_1_thread"] = (
            lambda device=device, batch=batch: _device_teacher_inputs(device.teacher_on_device, batch)
        )
    return fns


def _device_teacher_inputs(front_end: Any, batch: dict) -> dict:
    """The training step's part of a CLAP teacher (`AudioMosaicPretrainingTrainer.device_teacher_inputs`)."""
    waves = batch.get("teacher_waveforms")
    if waves is None:  # resampled from the views' crops
        waves = front_end.teacher_waveforms(batch["waveforms"], batch["teacher_plan"])
    return front_end(waves, batch["teacher_plan"])


def _clap_teacher_report(ms: dict[str, float]) -> dict[str, Any]:
    """Per truncation: the collations' host ms per clip with a CLAP teacher, their ratio, and the teacher's share."""
    report = {}
    for truncation in ("fusion", "rand_trunc"):
        host, device = ms[f"collate_host_views_clap_{truncation}"], ms[f"collate_device_views_clap_{truncation}"]
        report[truncation] = {
            "host_views_ms": round(host, 3),
            "device_views_ms": round(device, 3),
            "ratio": round(device / host, 4),
            "teacher_host_ms": {"host_path": round(host - ms["collate_host_views"], 3),
                                "device_path": round(device - ms["collate_device_views"], 3)},
            "device_part_on_cpu_1_thread_ms": round(ms[f"clap_{truncation}_device_part_on_cpu_1_thread"], 3),
        }
    return report


def worker_transfer(repeats: int = 10, clips: int = 128) -> dict[str, Any]:
    """Milliseconds per clip for a DataLoader worker process to build a batch and hand it to this process, made in
    shared memory (what the library does in a worker) vs a private tensor (torch then copies it into shared memory as
    it sends it), for the two paths' batches of ``clips`` clips:

    * ``device_views``: the device path's padded waveforms (`padded_rows`, 10.255 s clips: 80 MiB at 128 clips);
    * ``host_views``: the host path's views, two ``1024 x 128`` float32 spectrograms per clip (128 MiB at 128 clips),
      allocated as `AudioMosaicFeatureExtractor.batch_features` allocates them and filled (the views' computation
      itself is timed by the collations above).

    The median time between batches over ``repeats`` batches after two, with one worker and nothing else to do here.
    """
    import time  # noqa: PLC0415

    from torch.utils.data import DataLoader  # noqa: PLC0415

    from .feature_extraction import augmentation_device  # noqa: PLC0415
    from .feature_extraction.feature_extraction_audiomosaic import empty_batch_float32  # noqa: PLC0415

    rows = [np.random.default_rng(i).standard_normal(164080).astype(np.float32) for i in range(clips)]
    shared = augmentation_device._empty_batch_tensor
    views_shape = (clips * 2, 1024, 128)

    def private(count: int, length: int) -> torch.Tensor:
        return torch.empty(count, length, dtype=torch.float32)

    def ms_per_clip(collate: Any) -> float:
        loader = DataLoader(range(repeats + 2), batch_size=None, num_workers=1, prefetch_factor=1, collate_fn=collate,
                            multiprocessing_context="fork")
        stamps = [time.perf_counter()]
        for _ in loader:
            stamps.append(time.perf_counter())
        return 1000.0 * float(np.median(np.diff(stamps)[2:])) / clips

    def waveforms(allocate: Any) -> float:
        augmentation_device._empty_batch_tensor = allocate  # read by the forked worker
        try:
            return ms_per_clip(lambda _: augmentation_device.padded_rows(rows)[0])
        finally:
            augmentation_device._empty_batch_tensor = shared

    def views(shared_memory: bool) -> float:
        if shared_memory:
            return ms_per_clip(lambda _: empty_batch_float32(views_shape).fill_(0.5))
        return ms_per_clip(lambda _: torch.empty(views_shape, dtype=torch.float32).fill_(0.5))

    report: dict[str, Any] = {"clips_per_batch": clips}
    for name, measure, (as_private, as_shared) in (("device_views", waveforms, (private, shared)),
                                                   ("host_views", views, (False, True))):
        private_ms = min(measure(as_private), measure(as_private))
        shared_ms = min(measure(as_shared), measure(as_shared))
        report[name] = {"private_then_copied_ms": round(private_ms, 3), "shared_memory_ms": round(shared_ms, 3),
                        "ratio": round(shared_ms / private_ms, 3)}
    return report


def stream_pass(workers: int = 2) -> dict[str, Any]:
    """Seconds of one pass (batches of 4) over 8 parquet shards of 1 s clips (6 bad items) with `workers` DataLoader
    workers: each worker's shards interleaved into its shuffle buffer (datasets' ``max_buffer_input_shards`` default)
    vs read one after another (1); and datasets' pause at the end of an interleaved parquet stream
    (``datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN``)."""
    import tempfile  # noqa: PLC0415
    import time  # noqa: PLC0415

    from datasets import config as datasets_config  # noqa: PLC0415
    from torch.utils.data import DataLoader  # noqa: PLC0415

    from .feature_extraction.audioset_shards import write_audioset_shards  # noqa: PLC0415
    from .feature_extraction.loading import load_audio_dataset  # noqa: PLC0415

    report: dict[str, Any] = {"workers": workers, "shards": 8,
                              "datasets_pause_s": float(datasets_config.SLEEP_TIME_ON_THREADS_SHUTDOWN)}
    with tempfile.TemporaryDirectory() as folder:
        write_audioset_shards(folder, 48, 8, seconds=1.0, bad_indices=(0, 7, 13, 22, 23, 40), seed=1,
                              formats=["parquet"])
        for name, inputs in (("interleaved_s", None), ("one_shard_at_a_time_s", 1)):
            stream = load_audio_dataset(dataset_name=f"{folder}/parquet", streaming=True)
            stream = stream.shuffle(seed=0, buffer_size=8, max_input_shards=inputs).hf_dataset
            loader = DataLoader(stream, batch_size=4, num_workers=workers, collate_fn=len, drop_last=True)
            begin = time.perf_counter()
            report["batches"] = sum(1 for _ in loader)
            report[name] = round(time.perf_counter() - begin, 3)
    return report


def stream_resume(workers: int = 2, clips: tuple[int, int] = (16, 64), repeats: int = 3) -> dict[str, Any]:
    """Getting past the trained part of a stream's pass (parquet, 10 s FLAC / MP3 clips at 32-48 kHz, batches of 4,
    host views) with ``workers`` DataLoader workers: iterating the DataLoader and dropping its batches vs the workers
    passing over the records undecoded (`ExampleDecoder.skip_rows`). Wall milliseconds per clip beyond the pass's
    fixed cost (starting the workers, opening the shards): the difference of passes over ``clips[1]`` and
    ``clips[0]`` clips, fastest of ``repeats``."""
    import tempfile  # noqa: PLC0415
    import time  # noqa: PLC0415

    from torch.utils.data import DataLoader  # noqa: PLC0415

    from .feature_extraction import AudioMosaicFeatureExtractor, ContrastiveViewGenerator  # noqa: PLC0415
    from .feature_extraction.audioset_shards import write_audioset_shards  # noqa: PLC0415
    from .feature_extraction.collators import PretrainingViewsCollator  # noqa: PLC0415
    from .feature_extraction.loading import load_audio_dataset  # noqa: PLC0415

    views = ContrastiveViewGenerator(AudioMosaicFeatureExtractor.from_preset("audioset"), augmentation="original")
    collator = PretrainingViewsCollator(views, seed=0)
    report: dict[str, Any] = {"workers": workers, "clips": list(clips), "batch": 4}

    def seconds(folder: str, skip: bool) -> tuple[float, int]:
        stream = load_audio_dataset(dataset_name=f"{folder}/parquet", streaming=True)
        stream = stream.shuffle(seed=0, buffer_size=8, max_input_shards=1)
        if skip:  # more records than any worker has: the whole pass
            stream.decoder.skip_rows(0, [max(clips)] * workers)
        loader = DataLoader(stream.hf_dataset, batch_size=4, num_workers=workers, collate_fn=collator, drop_last=True)
        begin = time.perf_counter()
        count = sum(1 for _ in loader)
        return time.perf_counter() - begin, count

    with tempfile.TemporaryDirectory() as root:
        folders = {}
        for n in clips:
            folders[n] = f"{root}/{n}"
            write_audioset_shards(folders[n], n, 2 * workers, seed=2, formats=["parquet"])
        best: dict[tuple[int, bool], float] = {}
        for _ in range(repeats):
            for n in clips:
                for skip in (False, True):
                    took, count = seconds(folders[n], skip)
                    best[n, skip] = min(best.get((n, skip), took), took)
                    report[f"batches_{'left' if skip else 'of_the_pass'}_{n}"] = count
    small, large = clips
    for skip, name in ((False, "iterating"), (True, "passing_over")):
        report[f"{name}_s"] = {n: round(best[n, skip], 3) for n in clips}
        report[f"{name}_ms_per_clip"] = round(1000.0 * (best[large, skip] - best[small, skip]) / (large - small), 3)
    report["ratio"] = round(report["passing_over_ms_per_clip"] / report["iterating_ms_per_clip"], 3)
    return report
