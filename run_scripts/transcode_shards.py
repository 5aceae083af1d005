#!/usr/bin/env python
"""Transcode a pre-training source once into 16 kHz mono 16-bit WAV WebDataset shards (resumable, parallel).

    python run_scripts/transcode_shards.py --dataset_name .cache/as512/webdataset --out_dir .cache/as512_wav16
    python run_scripts/transcode_shards.py --dataset_name org/audioset-mirror --data_files "data/bal_train*.parquet" \\
        --out_dir /data/audioset_wav16 --num_workers 16 --shard_size 1000
    python run_scripts/run_pretrain.py --dataset_name /data/audioset_wav16 --streaming true ...

Sources are those `run_pretrain.py` reads (``--dataset_name`` Hub id or local dataset folder with ``--data_files`` /
``--dataset_config_name`` / ``--split``, or ``--train_path`` a local folder / manifest / parquet / tar), read in
streaming mode. Output: ``<out_dir>/<split>-SSSSS-CCCC.tar`` (``<key>.wav`` + ``<key>.json`` with the source ``id``
and ``labels``), ``transcode_summary.json`` (clips, skipped items per reason with their ids) and the hidden
``.transcode/`` state. Rerunning the same command continues after the complete shards. Decoding 32-48 kHz FLAC / MP3
costs 5.7-8.9 ms per 10 s clip, a 16 kHz 16-bit WAV 0.26 ms (docs/RESULTS.md, `data_path`).
The library function is `modeling_audiomosaic.feature_extraction.transcode_shards.transcode_shards`.
"""

from __future__ import annotations

import argparse
import json

from modeling_audiomosaic.feature_extraction.transcode_shards import TranscodeSource, transcode_shards


def _column(value: str) -> str | None:
    return None if value.lower() in ("", "none") else value


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_argument_group("source (give --dataset_name or --train_path)")
    src.add_argument("--dataset_name", default=None, help="datasets.load_dataset name: Hub id or local dataset folder")
    src.add_argument("--dataset_config_name", default=None)
    src.add_argument("--data_files", default=None, help="data_files for the builder (a glob or file)")
    src.add_argument("--split", "--dataset_split", dest="split", default="train")
    src.add_argument("--train_path", default=None, help="local folder / manifest / csv / parquet / tar")
    src.add_argument("--source_type", default="auto", help="type of --train_path (auto-detected by default)")
    src.add_argument("--audio_column", default="auto")
    src.add_argument("--label_column", default="auto", help="label column ('auto': labels / label / WebDataset "
                                                            "json; 'none': no labels)")
    src.add_argument("--id_column", default="auto", help="id column ('auto': id / __key__, else the audio path)")
    src.add_argument("--label_delimiter", default=",", help="splits string labels ('none': keep them whole)")
    src.add_argument("--webdataset_source", action="store_true",
                     help="--dataset_name is a Hub repository of WebDataset .tar shards (explicit features)")
    out = ap.add_argument_group("output")
    out.add_argument("--out_dir", required=True, help="output folder; an earlier run's folder is resumed")
    out.add_argument("--shard_size", type=int, default=1000, help="clips per output shard")
    out.add_argument("--num_workers", type=int, default=1, help="processes (each takes a share of the source shards)")
    out.add_argument("--prefix", default=None, help="output file prefix (default: the split)")
    out.add_argument("--progress_every", type=float, default=20.0, help="seconds between progress lines")
    out.add_argument("--overwrite", action="store_true", help="delete an earlier run's output instead of resuming")
    args = ap.parse_args(argv)

    if (args.dataset_name is None) == (args.train_path is None):
        ap.error("give exactly one of --dataset_name or --train_path")
    source = TranscodeSource(
        dataset_name=args.dataset_name, path=args.train_path, config_name=args.dataset_config_name,
        data_files=args.data_files, split=args.split, source_type=args.source_type, audio_column=args.audio_column,
        label_column=_column(args.label_column), id_column=_column(args.id_column),
        webdataset_features=args.webdataset_source,
        decode_options={} if args.label_delimiter == "," else {"label_delimiter": _column(args.label_delimiter)},
    )
    summary = transcode_shards(source, args.out_dir, shard_size=args.shard_size, num_workers=args.num_workers,
                               prefix=args.prefix, progress_every=args.progress_every, overwrite=args.overwrite)
    print(json.dumps({k: summary[k] for k in ("out_dir", "num_clips", "num_shards", "num_skipped",
                                              "skipped_by_reason", "audio_hours", "bytes")}, indent=1))
    return summary


if __name__ == "__main__":
    main()
