#!/usr/bin/env python
"""Write AudioSet-shaped shards (parquet + WebDataset, FLAC + MP3, 32/44.1/48 kHz, 10 s, 527-class labels).

    python run_scripts/write_audioset_shards.py --num_clips 256 --num_shards 8          # offline-corpus audio
    python run_scripts/write_audioset_shards.py --source synthetic --num_clips 64 --num_bad 4 --out /tmp/as
    python run_scripts/write_audioset_shards.py --decoders        # also time the decoders on the written clips

Output (default ``.cache/audioset_shards/<source>-n<clips>-s<shards>-seed<seed>``): ``parquet/train-*.parquet``
(``video_id``, ``audio`` {bytes, path}, label lists), ``webdataset/train-*.tar`` (``<key>.flac|mp3`` +
``<key>.json``) and ``shards.json`` (every clip, its shard, codec, rate, loader id; the bad items). Stream them with
``run_scripts/run_pretrain.py --dataset_name <out>/parquet --streaming true`` (or ``<out>/webdataset``).
The library function is `modeling_audiomosaic.feature_extraction.audioset_shards.write_audioset_shards`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from modeling_audiomosaic.feature_extraction.audioset_shards import (
    AUDIOSET_SAMPLING_RATES,
    CODECS,
    SHARD_FORMATS,
    WRITABLE_CODECS,
    decoder_benchmark_items,
    format_decoder_table,
    time_decoders,
    write_audioset_shards,
)

REPO = Path(__file__).resolve().parents[1]


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def corpus_source(size: str, seed: int = 0) -> Path:
    """The offline corpus of ``size`` under .cache/ (built on demand, `docs/offline_corpus.md`): the clip source."""
    from modeling_audiomosaic.feature_extraction.offline_corpus import build_corpus
    from modeling_audiomosaic.feature_extraction.offline_corpus.build import default_out_dir

    root = default_out_dir(size, seed)
    if not (root / "corpus_stats.json").is_file():
        print(f"building the offline corpus ({size}) in {root} ...", file=sys.stderr)
        root = Path(build_corpus(root, size=size, seed=seed, progress=False))
    return root


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="output folder (default under .cache/audioset_shards/)")
    ap.add_argument("--num_clips", type=int, default=64)
    ap.add_argument("--num_shards", type=int, default=4)
    ap.add_argument("--source", default="corpus",
                    help="'corpus' (the offline corpus, built on demand), 'synthetic', or a folder of audio files")
    ap.add_argument("--corpus_size", default="tiny", help="offline corpus size for --source corpus")
    ap.add_argument("--formats", default=",".join(SHARD_FORMATS), help=f"comma list of {SHARD_FORMATS}")
    ap.add_argument("--codecs", default=",".join(CODECS),
                    help=f"comma list of {WRITABLE_CODECS} (default: the mirrors' {CODECS})")
    ap.add_argument("--sampling_rates", default=",".join(map(str, AUDIOSET_SAMPLING_RATES)),
                    help="comma list of rates; each clip draws one (a mix by default)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--label_column", default="labels", help="ontology-id list column ('' for none)")
    ap.add_argument("--names_column", default="human_labels", help="display-name list column ('' for none)")
    ap.add_argument("--num_bad", type=int, default=0, help="deliberately bad items (garbage, empty, ...)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no_hf_features", action="store_true", help="plain parquet schema (no datasets.Audio metadata)")
    ap.add_argument("--decoders", action="store_true", help="time the available decoders on the written clips")
    args = ap.parse_args(argv)

    if args.source == "synthetic":
        source, tag = None, "synthetic"
    elif args.source == "corpus":
        source, tag = corpus_source(args.corpus_size), f"corpus-{args.corpus_size}"
    else:
        source, tag = Path(args.source), Path(args.source).name
    out = Path(args.out) if args.out else (
        REPO / ".cache" / "audioset_shards" / f"{tag}-n{args.num_clips}-s{args.num_shards}-seed{args.seed}"
    )
    summary = write_audioset_shards(
        out, args.num_clips, args.num_shards, source=source, formats=_csv(args.formats), codecs=_csv(args.codecs),
        sampling_rates=[int(r) for r in _csv(args.sampling_rates)], seconds=args.seconds,
        label_column=args.label_column or None, names_column=args.names_column or None, num_bad=args.num_bad,
        seed=args.seed, hf_features=not args.no_hf_features,
    )
    print(json.dumps({"out": str(out), "files": {k: len(v) for k, v in summary["files"].items()},
                      "bytes": summary["bytes"], "bad_ids": summary["bad_ids"]}, indent=1))
    if args.decoders:
        fmt = "webdataset" if "webdataset" in summary["files"] else "parquet"
        print(format_decoder_table(time_decoders(decoder_benchmark_items(out, fmt))))
    return summary


if __name__ == "__main__":
    main()
