"""Everything decided before rendering: the build configuration (and its cache key), seeded random generators,
split assignments (by speaker, source recording and SoundFont) and the clip specs of every job, per task."""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from .catalogue import (
    ALL_TASKS,
    BUILDER_VERSION,
    CHEAP_ENGINES,
    COMMANDS,
    ENGINES,
    ESC_CLASSES,
    ESPEAK_ACCENTS,
    ESPEAK_VARIANTS,
    EXTRA_PROGRAMS,
    EXTRA_WORDS,
    FAMILIES,
    FESTIVAL_VOICES,
    FLITE_VOICES,
    KNOWN_TASKS,
    KOKORO_STYLES,
    MBROLA_VOICES,
    NOISE_RULES,
    PICO_VOICES,
    PIPER_VOICE,
    POOL,
    REC_SOURCES,
    SENTENCE_FRACTION,
    SENTENCES,
    SIZES,
    SOUNDFONTS,
    SOURCE_PACKAGE,
    SPEECH_POOL,
    SPEECH_POOL_SHARE,
    SPEECH_WORDS,
    SPLITS,
    TASKS,
    UNKNOWN_WORDS,
)
from .recordings import _canonical_group, _inventory, _merge_duplicates


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
