"""Instrument notes rendered with FluidSynth (``instruments`` and the pool's non-family programs), independent of
the synth's history; near-silent renders are re-drawn."""

from __future__ import annotations

import ctypes

import numpy as np

from .audio import _limit, _rms
from .catalogue import EXTRA_PROGRAMS, FAMILIES, MIN_NOTE_RMS, SR
from .worker import _STATE, _write

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
