"""Environmental-sound clips (``esc`` and the pool's unused recordings): 5 s crops of real recordings with speed
perturbation, repetition of short events and pink background noise."""

from __future__ import annotations

import numpy as np

from .audio import _colored_noise, _crop, _limit, _mix_at_snr, _speed, _trim
from .catalogue import SR
from .worker import _load_rec, _write


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
