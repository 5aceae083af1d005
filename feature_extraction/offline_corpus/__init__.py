"""The offline AudioMosaic benchmark corpus, built from Debian and PyPI packages (no downloads at build time).

Three labelled tasks plus an unlabelled pre-training pool, all 16 kHz mono 16-bit PCM:

* ``keywords`` (Speech Commands-like, 1 s): 10 command words + ``_unknown_`` (other Speech Commands v2 words) +
  ``_silence_`` (background-noise clips), spoken by 7 synthesis engines (espeak-ng variants, MBROLA, SVOX Pico, Flite,
  Festival, Piper, Kokoro-82M); speed perturbation and background noise; split by *speaker* so that validation and
  test voices are never heard in training.
* ``esc`` (ESC-50-like, 5 s): 12 classes of real recordings from the UFO:AI, Wesnoth, Hedgewars and Sonic Pi packages,
  derived from folder/file names; split by *source recording* (with near-duplicate and take-variant merging).
* ``instruments`` (NSynth-like, 4 s): the 11 NSynth families rendered from General-MIDI programs with FluidSynth and
  four SoundFonts; random pitch/velocity; split by *SoundFont*; near-silent renders are re-drawn.
* ``pretrain_pool``: every train/validation clip of the three tasks plus extra unlabelled clips (unused recordings,
  extra words from train/validation voices, non-family GM programs of train/validation SoundFonts); never a test clip.
* ``pretrain_pool_speech`` (optional, ``--speech-pool``; not part of the default build): the pool plus sentences and
  words without any keyword-task word, from train/validation voices of the cheap engines, until speech is half of the
  clips (``SPEECH_POOL_SHARE``).

Usage (the command line is ``run_scripts/build_offline_corpus.py``; docs/offline_corpus.md describes both)::

    from modeling_audiomosaic.feature_extraction.offline_corpus import build_corpus
    out = build_corpus(size="tiny", out_dir="/tmp/c")

Layout (per task): ``<out>/<task>/audio/<split>/<label>/*.wav``, ``<split>.json`` (AudioSet-style
``{"data": [{"wav", "labels", "group", "source"}]}``), ``<split>.csv`` (``path,label,group,source``), ``labels.csv``
(``index,mid,display_name``) and ``metadata.jsonl`` (generation parameters per clip); ``<out>/pretrain_pool/train.json``
(+ csv); ``<out>/corpus_stats.json``; ``<out>/README.md`` (the dataset card with the actual counts).

Determinism: every clip has its own numpy Generator seeded from (seed, task, clip name), so the output does not depend
on the number of workers or the job order. Engines that are random by design are made deterministic: Piper runs
with ``noise_scale = noise_w = 0`` (its ONNX random ops ignore any seed), FluidSynth renders without reverb/chorus and
the first 64-sample block (the only one that depends on the synth's history) is dropped.

Caching: finished jobs are recorded in ``<task>/.jobs/``; a rerun with the same configuration skips them (and whole
finished tasks); a different configuration rebuilds the task; ``force=True`` rebuilds everything.

Modules, in build order: ``catalogue`` (what the corpus is made of), ``dependencies`` (what must be installed),
``planning`` (configuration, splits and the clip specs of every job), ``recordings``, ``speech``, ``sounds`` and
``instruments`` (the sources and their renderers, run by ``worker`` processes on ``audio`` helpers), ``build`` (cache,
jobs and the entry point), ``manifests`` (manifests and statistics) and ``card`` (the dataset card).
"""

from .build import build_corpus, default_out_dir, pool_tasks, run_job
from .card import render_card
from .catalogue import (
    ALL_TASKS,
    BANNED_SPEECH_WORDS,
    CHEAP_ENGINES,
    COMMANDS,
    DEFAULT_CACHE,
    DEFAULT_PATHS,
    DURATION,
    ENGINES,
    ESC_CLASSES,
    EXTRA_WORDS,
    FAMILIES,
    KEYWORD_LABELS,
    KNOWN_TASKS,
    MAX_SENTENCE_SECONDS,
    MIN_NOTE_RMS,
    POOL,
    POOLS,
    REC_SOURCES,
    SENTENCES,
    SIZES,
    SKIPPABLE,
    SOUNDFONTS,
    SOURCE_PACKAGE,
    SPEECH_POOL,
    SPEECH_POOL_SHARE,
    SPEECH_WORDS,
    SPLITS,
    SR,
    TASKS,
    UNKNOWN_WORDS,
)
from .dependencies import MissingPackagesError, check_dependencies, required_components
from .instruments import render_note
from .planning import Config, Plan, keyword_voices, make_plan

__all__ = [
    "build_corpus",
    "default_out_dir",
    "pool_tasks",
    "run_job",
    "render_card",
    "MissingPackagesError",
    "check_dependencies",
    "required_components",
    "render_note",
    "Config",
    "Plan",
    "keyword_voices",
    "make_plan",
    "ALL_TASKS",
    "BANNED_SPEECH_WORDS",
    "CHEAP_ENGINES",
    "COMMANDS",
    "DEFAULT_CACHE",
    "DEFAULT_PATHS",
    "DURATION",
    "ENGINES",
    "ESC_CLASSES",
    "EXTRA_WORDS",
    "FAMILIES",
    "KEYWORD_LABELS",
    "KNOWN_TASKS",
    "MAX_SENTENCE_SECONDS",
    "MIN_NOTE_RMS",
    "POOL",
    "POOLS",
    "REC_SOURCES",
    "SENTENCES",
    "SIZES",
    "SKIPPABLE",
    "SOUNDFONTS",
    "SOURCE_PACKAGE",
    "SPEECH_POOL",
    "SPEECH_POOL_SHARE",
    "SPEECH_WORDS",
    "SPLITS",
    "SR",
    "TASKS",
    "UNKNOWN_WORDS",
]
