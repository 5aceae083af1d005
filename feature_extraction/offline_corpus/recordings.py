"""Real recordings of the Debian game/sample packages: the inventory per source, the groups of takes that share a
split (name rules, ``GROUP_ALIASES``, byte-identical and highly correlated files) and reading their bytes."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

from .catalogue import GROUP_ALIASES


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
