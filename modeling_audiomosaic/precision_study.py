"""Is a bf16 pre-training run's loss curve within seed noise of fp32's? The analysis behind
run_scripts/run_bf16_study.py (docs/RESULTS.md, "bf16 pre-training on CPU").

Runs are keyed ``"<precision>-seed<seed>"`` (``fp32-seed0``, ``bf16-seed0``, ...) and hold a Trainer log history
logged every step. The criterion: smooth every loss curve with a centred moving average (`smooth`), then

* **seed noise** = the mean |difference| between the smoothed fp32 curves of two seeds (`curve_gap`);
* **precision gap** = the mean |difference| between the smoothed bf16 and fp32 curves of the same seed;

and bf16 is *within seed noise* when every precision gap is no larger than the seed noise. Same-seed runs share the
initial weights, the data order and the views, so their gap is what bf16 rounding (and the trajectories it makes
diverge) adds; different seeds change all three, the variation any single run carries anyway.
"""

from __future__ import annotations

import re

import numpy as np

RUN_NAME = re.compile(r"^(fp32|bf16)-seed(\d+)$")


def run_name(precision: str, seed: int) -> str:
    """``"<precision>-seed<seed>"``, the key of a run (see the module docstring)."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")
    return f"{precision}-seed{seed}"


def loss_curve(log_history: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, losses) of the training-loss rows of a Trainer log history, sorted by step."""
    rows = sorted((h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h)
    if not rows:
        raise ValueError("the log history has no training-loss rows (was --logging_steps larger than the run?)")
    steps, losses = zip(*rows)
    return np.asarray(steps, dtype=np.int64), np.asarray(losses, dtype=np.float64)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of `window` points; the ends average the points that exist (same length as `values`)."""
    values = np.asarray(values, dtype=np.float64)
    window = max(1, min(int(window), len(values)))
    kernel = np.ones(window)
    sums = np.convolve(values, kernel, mode="same")
    counts = np.convolve(np.ones_like(values), kernel, mode="same")
    return sums / counts


def curve_gap(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], window: int) -> dict[str, float]:
    """Mean and max |difference| of two smoothed loss curves over the steps both logged."""
    common, ia, ib = np.intersect1d(a[0], b[0], return_indices=True)
    if len(common) == 0:
        raise ValueError("the two runs logged no common step")
    diff = np.abs(smooth(a[1], window)[ia] - smooth(b[1], window)[ib])
    return {"mean_abs": float(diff.mean()), "max_abs": float(diff.max()), "steps": int(len(common))}


def compare_precisions(histories: dict[str, list[dict]], window: int = 20, tail: int = 20) -> dict:
    """The study's verdict from the runs' log histories (keys: `run_name`); needs fp32 runs of two seeds and at least
    one bf16 run whose seed has an fp32 run.

    Returns ``seed_noise`` (the `curve_gap` of the first two fp32 seeds), ``precision_gaps`` (per bf16 seed: its gap
    to the fp32 run of that seed), ``final_loss`` (mean raw loss of every run's last `tail` logged steps),
    ``within_seed_noise`` (every precision gap's mean ≤ the seed noise's mean) and ``ratio`` (largest precision gap /
    seed noise).
    """
    curves, seeds = {}, {"fp32": [], "bf16": []}
    for name, history in histories.items():
        match = RUN_NAME.match(name)
        if match is None:
            raise ValueError(f"run names look like fp32-seed0 / bf16-seed1, got {name!r}")
        curves[name] = loss_curve(history)
        seeds[match.group(1)].append(int(match.group(2)))
    fp32_seeds = sorted(seeds["fp32"])
    if len(fp32_seeds) < 2:
        raise ValueError(f"seed noise needs fp32 runs of two seeds; got fp32 seeds {fp32_seeds}")
    paired = sorted(s for s in seeds["bf16"] if s in fp32_seeds)
    if not paired:
        raise ValueError(f"no bf16 run has an fp32 run of the same seed (bf16 seeds {sorted(seeds['bf16'])})")
    noise = curve_gap(curves[run_name("fp32", fp32_seeds[0])], curves[run_name("fp32", fp32_seeds[1])], window)
    gaps = {seed: curve_gap(curves[run_name("bf16", seed)], curves[run_name("fp32", seed)], window) for seed in paired}
    worst = max(gap["mean_abs"] for gap in gaps.values())
    return {
        "smoothing_window": window,
        "seed_noise": {"seeds": fp32_seeds[:2], **noise},
        "precision_gaps": {str(seed): gap for seed, gap in gaps.items()},
        "final_loss": {name: float(curve[1][-tail:].mean()) for name, curve in sorted(curves.items())},
        "within_seed_noise": bool(worst <= noise["mean_abs"]),
        "ratio": float(worst / noise["mean_abs"]) if noise["mean_abs"] > 0 else float("inf"),
    }


__all__ = ["compare_precisions", "curve_gap", "loss_curve", "run_name", "smooth"]
