"""Per-process state of the rendering workers: subprocess calls, temporary folders, cached recordings and the
writing of one finished clip."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..feature_extraction_audiomosaic import resample_audio
from .audio import _decode
from .catalogue import SR
from .recordings import _read_rec_bytes

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
        return resample_audio(x.mean(axis=1), sr, SR)
    cache = _STATE.setdefault("recs", {})
    if rec_id not in cache:
        cache[rec_id] = _decode(blob)
    return cache[rec_id]


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
