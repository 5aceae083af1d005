"""Views on the accelerator: the feature extractor's batched tensor method, the torch IIR filters, the device view
path against the host path (same seeds, <= 1e-4 in fp32 on CPU), the collator / trainer wiring and exact resume."""

from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np
import pytest
import run_pretrain
import soundfile as sf
import torch
from scipy.signal import sosfilt
from test_run_pretrain import tiny_recipe
from torch.utils._python_dispatch import TorchDispatchMode

from modeling_audiomosaic.feature_extraction import (
    AudioMosaicFeatureExtractor,
    ContrastiveViewGenerator,
    PretrainingViewsCollator,
)
from modeling_audiomosaic.feature_extraction.augmentation_device import sosfilt_steady
from modeling_audiomosaic.feature_extraction.augmentation_filters import (
    butterworth_bandstop_sos,
    butterworth_highpass_sos,
    sos_steady_state,
)
from modeling_audiomosaic.pretraining_trainer import AudioMosaicPretrainingTrainer


@pytest.fixture(scope="module")
def fe():
    return AudioMosaicFeatureExtractor.from_preset("speechcommands")  # 128 frames: 20,720 samples per view


def _clips(generator, lengths, silent=()):
    clips = [(torch.randn(n, generator=generator) * 0.1).numpy() for n in lengths]
    for i in silent:
        clips[i][:] = 0.0
    return clips


def _padded(clips):
    lengths = torch.tensor([len(c) for c in clips])
    waves = torch.zeros(len(clips), int(lengths.max()))
    for row, clip in zip(waves, clips):
        row[: len(clip)] = torch.from_numpy(clip)
    return waves, lengths


# ---------------------------------------------------------------------------------------------------------------------
# 1. The feature extractor's batched tensor method
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vectorized", [False, True])
def test_batch_features_equal_call_for_mixed_lengths(fe, vectorized):
    generator = torch.Generator().manual_seed(0)
    lengths = [24000, 20720, 9000, 400]  # longer than 128 frames, exactly 128, shorter, one frame
    clips = _clips(generator, lengths)
    waves, lengths_t = _padded(clips)
    reference = fe(clips, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    out = fe.batch_features(waves, lengths_t, vectorized=vectorized)
    assert out["input_values"].dtype == torch.float32 and out["input_values"].shape == (4, 128, 128)
    torch.testing.assert_close(out["input_values"], reference["input_values"], rtol=0, atol=1e-5)
    assert torch.equal(out["attention_mask"], reference["attention_mask"])
    assert out["attention_mask"][2].sum() == 1 + (9000 - 400) // 160 and out["attention_mask"][3].sum() == 1


def test_batch_features_stay_float32_under_bf16_autocast_and_take_any_float_dtype(fe):
    waves = torch.randn(2, 20720, generator=torch.Generator().manual_seed(1)) * 0.1
    plain = fe.batch_features(waves)["input_values"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = fe.batch_features(waves)["input_values"]
    assert inside.dtype == torch.float32 and torch.equal(inside, plain)
    doubled = fe.batch_features(waves.double())["input_values"]
    torch.testing.assert_close(doubled, plain, rtol=0, atol=1e-5)


def test_batch_features_errors_name_the_problem(fe):
    waves = torch.zeros(2, 1000)
    with pytest.raises(TypeError, match="torch.Tensor"):
        fe.batch_features(waves.numpy())
    with pytest.raises(TypeError, match="floating-point"):
        fe.batch_features(torch.zeros(2, 1000, dtype=torch.int16))
    with pytest.raises(ValueError, match="3 entries for a batch of 2"):
        fe.batch_features(waves, [1000, 1000, 1000])
    with pytest.raises(ValueError, match="clip 1 has 399 samples"):
        fe.batch_features(waves, [1000, 399])
    with pytest.raises(ValueError, match="<= the 1000 samples"):
        fe.batch_features(waves, [1001, 1000])
    bad = waves.clone()
    bad[1, 10] = float("nan")
    with pytest.raises(ValueError, match="clip 1 contains NaN"):
        fe.batch_features(bad)
    bad[1, 10] = 0.0
    bad[1, 999] = float("inf")  # past the valid length: never read, so accepted
    fe.batch_features(bad, [1000, 900])
    with pytest.raises(ValueError, match="sampling_rate=8000"):
        fe.batch_features(waves, sampling_rate=8000)
    with pytest.raises(ValueError, match="empty batch"):
        fe.batch_features(torch.zeros(0, 1000))


# ---------------------------------------------------------------------------------------------------------------------
# 2. IIR filters as block-parallel recurrences
# ---------------------------------------------------------------------------------------------------------------------


def test_sosfilt_steady_matches_scipy_for_each_rows_own_cascade():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 5000)) * 0.1 + 0.3).astype(np.float32)  # a DC offset: the steady start matters
    cascades = [
        np.concatenate([butterworth_highpass_sos(np.array([20.0]), 4, 16000)[0],  # poles closest to z = 1
                        butterworth_bandstop_sos(np.array([300.0]), np.array([700.0]), 4, 16000)[0]]),
        butterworth_highpass_sos(np.array([2400.0]), 3, 16000)[0],  # odd order: a first-order section
        butterworth_bandstop_sos(np.array([3000.0]), np.array([7999.0]), 2, 16000)[0],
        None,  # no filter: identity sections only
    ]
    sections = max(c.shape[0] for c in cascades if c is not None)
    sos = np.tile([1.0, 0.0, 0.0, 1.0, 0.0, 0.0], (4, sections, 1))
    reference = x.astype(np.float64).copy()
    for i, cascade in enumerate(cascades):
        if cascade is not None:
            sos[i, : cascade.shape[0]] = cascade
            reference[i] = sosfilt(cascade, reference[i], zi=sos_steady_state(cascade) * reference[i, 0])[0]
    for block in (64, 1024, 8192):  # 5000 is a multiple of none of them; 8192: a single block
        y = sosfilt_steady(torch.from_numpy(x).double(), torch.from_numpy(sos), block=block)
        assert np.abs(y.numpy() - reference).max() < 1e-6, block
    identity = sosfilt_steady(torch.from_numpy(x), torch.from_numpy(sos))[3]  # float32 rows, identity sections
    torch.testing.assert_close(identity, torch.from_numpy(x)[3], rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------------
# 3. Device views = host views for the same seeds
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["original", "light", "none"])
def test_device_views_equal_host_views(fe, preset):
    views = ContrastiveViewGenerator(fe, augmentation=preset)
    generator = torch.Generator().manual_seed(3)
    # longer than a view (rolled over its whole length, then cropped), exact, short, one frame, silent (no noise)
    clips = _clips(generator, [30000, views.num_samples, 9000, 400, 20000], silent=[4])
    waves, lengths = _padded(clips)
    worst = 0.0
    for seed in range(4):
        host = views(clips, generator=torch.Generator().manual_seed(seed))
        parameters = views.sample_view_parameters(lengths, torch.Generator().manual_seed(seed))
        device = views.views_from_parameters(waves, lengths, parameters)
        assert device.shape == host.shape == (5, 2, 128, 128) and device.dtype == torch.float32
        worst = max(worst, float((device - host).abs().max()))
        if preset == "original":
            assert bool(parameters["filtered"].any()) and bool(parameters["apply_noise"].any())
    assert worst <= 1e-4, worst
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16-safe: the views are computed in float32 regardless
        inside = views.views_from_parameters(waves, lengths, parameters)
    assert inside.dtype == torch.float32 and torch.equal(inside, device)


class BlockingHostToDevice(TorchDispatchMode):
    """Records copies from the host to another device that do not pass ``non_blocking=True``: torch synchronises
    the device's stream after such a copy, so on a GPU each one waits for all the work queued before it."""

    def __init__(self) -> None:
        super().__init__()
        self.blocking: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._to_copy.default and kwargs.get("device") is not None:
            source, target = args[0].device, torch.device(kwargs["device"])
            if source.type == "cpu" and target.type != "cpu" and not kwargs.get("non_blocking", False):
                frame = next(f for f in reversed(traceback.extract_stack()[:-1]) if "modeling_audiomosaic" in f.filename
                             or "feature_extraction" in f.filename)
                self.blocking.append(f"{Path(frame.filename).name}:{frame.lineno} {frame.line}")
        return func(*args, **kwargs)


def test_device_views_read_no_device_value_on_the_host(fe):
    """On an accelerator the views must be queued without waiting for the device: no device value read on the host
    (``.item()``, ``bool()``, ``.tolist()``, ``.nonzero()``, a copy back to the CPU) and no blocking copy to it. The
    ``meta`` device stands in for the accelerator: its tensors have shapes but no values, so any host read of one
    raises, while the control flow reads the collator's host tensors (`HostTensors`)."""
    views = ContrastiveViewGenerator(fe, augmentation="original")
    clips = _clips(torch.Generator().manual_seed(9), [30000, 20000, 12000, 9000])
    examples = [{"audio": clip, "id": f"c{i}"} for i, clip in enumerate(clips)]
    batch = PretrainingViewsCollator(views, seed=1, views_on_device=True)(examples)
    parameters = batch["view_parameters"]
    assert bool(parameters["filtered"].any()) and bool(parameters["apply_noise"].any())  # every stage runs
    trainer = AudioMosaicPretrainingTrainer.__new__(AudioMosaicPretrainingTrainer)  # device_views needs no model
    trainer.view_generator, trainer.data_collator = views, None
    waveforms = torch.empty(batch["waveforms"].shape, device="meta")  # "moved to the device" with the batch
    lengths = torch.empty(batch["waveform_lengths"].shape, dtype=torch.long, device="meta")
    for call in range(2):  # the first call also builds the device's cached fbank constants (once per device)
        with BlockingHostToDevice() as copies:
            features = trainer.device_views(dict(batch, waveforms=waveforms, waveform_lengths=lengths))
    assert features.device.type == "meta" and features.shape == (4, 2, 128, 128)
    assert copies.blocking == [], "\n".join(copies.blocking)
    # parameters given on the device instead are read back to the host (once): here, where meta has no values, that
    # read is what fails
    on_device = {key: torch.empty(value.shape, dtype=value.dtype, device="meta") for key, value in parameters.items()}
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):
        views.views_from_parameters(waveforms, parameters["lengths"], on_device)


def test_host_tensors_read_like_a_dict_and_views_on_device_refuse_batch_dispatching(tmp_path):
    import pickle

    from modeling_audiomosaic.feature_extraction.augmentation_device import HostTensors
    from modeling_audiomosaic.pretraining_run import run_pretraining

    holder = pickle.loads(pickle.dumps(HostTensors({"a": torch.arange(3), "b": torch.ones(2)})))  # worker -> main
    assert list(holder) == ["a", "b"] and len(holder) == 2 and dict(holder).keys() == {"a", "b"}
    assert [v.numel() for v in holder.values()] == [3, 2] and "a" in holder and holder.get("c") is None
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)
    (tmp_path / "audio").mkdir()
    for i, clip in enumerate(_clips(torch.Generator().manual_seed(0), [16000, 16000])):
        sf.write(tmp_path / "audio" / f"c{i}.wav", clip, 16000)
    with pytest.raises(ValueError, match="dispatch_batches / split_batches"):
        run_pretraining(["--config", str(recipe), "--train_path", str(tmp_path / "audio"), "--output_dir",
                         str(tmp_path / "o"),
                         "--views_on_device", "true", "--accelerator_config", '{"dispatch_batches": true}'])


def test_views_on_device_default_and_devices_without_float64():
    """Unset, views go to an accelerator, not to the CPU nor to Apple's MPS (no float64 tensors: the filter states
    and noise levels need them); asked for on MPS, an error naming the device and the fix, before any training."""
    from modeling_audiomosaic.feature_extraction.augmentation_device import device_views_problem
    from modeling_audiomosaic.pretraining_run import resolve_views_on_device

    assert [resolve_views_on_device(None, d) for d in ("cpu", "cuda:1", "xpu", "mps")] == [False, True, True, False]
    assert resolve_views_on_device(True, "cpu") and not resolve_views_on_device(False, "cuda")
    with pytest.raises(ValueError, match="mps device has no float64.*--views_on_device false"):
        resolve_views_on_device(True, torch.device("mps"))
    assert device_views_problem("cpu") is None and device_views_problem("cuda") is None
    assert "no float64" in device_views_problem(torch.device("mps"))


def _padded_in_worker(rows):
    from modeling_audiomosaic.feature_extraction.augmentation_device import padded_rows

    padded, lengths = padded_rows(rows)
    return padded, lengths, padded.is_shared()


def test_padded_rows_are_made_in_shared_memory_in_a_worker_and_zero_padded(monkeypatch):
    """In a DataLoader worker the batch tensor is allocated in shared memory (torch then sends it without copying it
    again), its padding is zeros though the memory is allocated uninitialised, and the main process gets the same
    values as a collation in the main process."""
    from torch.utils.data import DataLoader

    from modeling_audiomosaic.feature_extraction import augmentation_device
    from modeling_audiomosaic.feature_extraction.augmentation_device import padded_rows

    rows = [np.full(5, 1.5, dtype=np.float32), np.arange(3, dtype=np.float32), torch.full((7,), -2.0)]
    expected = torch.tensor([[1.5] * 5 + [0.0] * 2, [0.0, 1.0, 2.0] + [0.0] * 4, [-2.0] * 7])
    padded, lengths = padded_rows(rows)  # main process: a private tensor
    assert torch.equal(padded, expected) and lengths.tolist() == [5, 3, 7] and not padded.is_shared()
    loader = DataLoader([rows] * 3, batch_size=None, num_workers=1, collate_fn=_padded_in_worker)
    for padded, lengths, shared_in_worker in loader:
        assert shared_in_worker and torch.equal(padded, expected) and lengths.tolist() == [5, 3, 7]
    # the memory is not zeroed when allocated: padded_rows writes the padding itself
    monkeypatch.setattr(augmentation_device, "_empty_batch_tensor", lambda r, c: torch.full((r, c), float("nan")))
    assert torch.equal(padded_rows(rows)[0], expected)


def _host_views_in_worker(collator, examples):
    values = collator(examples)["input_values"]
    return values, values.is_shared()


def test_host_views_are_made_in_shared_memory_in_a_worker(fe, monkeypatch):
    """The host path's views (the feature extractor's `batch_features` output, 512 MiB at 512 clips) are allocated in
    shared memory in a DataLoader worker, as the device path's waveforms are: torch sends them without copying them
    again. Same values as a collation in this process, and every value is written (a NaN-filled allocation gives the
    same views: the short clip's padding frames included)."""
    import functools

    from torch.utils.data import DataLoader

    from modeling_audiomosaic.feature_extraction import feature_extraction_audiomosaic

    collator = PretrainingViewsCollator(ContrastiveViewGenerator(fe, augmentation="original"), seed=3)
    clips = _clips(torch.Generator().manual_seed(6), [30000, 9000])
    examples = [{"audio": clip, "id": i} for i, clip in enumerate(clips)]
    expected = collator(examples)["input_values"]
    assert not expected.is_shared() and expected.shape == (2, 2, 128, 128)
    loader = DataLoader([examples] * 2, batch_size=None, num_workers=1,
                        collate_fn=functools.partial(_host_views_in_worker, collator))
    for values, shared_in_worker in loader:
        assert shared_in_worker and torch.equal(values, expected)
    monkeypatch.setattr(feature_extraction_audiomosaic, "empty_batch_float32",
                        lambda shape, device="cpu": torch.full(tuple(shape), float("nan"), device=device))
    assert torch.equal(collator(examples)["input_values"], expected)


def test_device_views_without_roll_and_errors(fe):
    views = ContrastiveViewGenerator(fe, augmentation="original", roll_and_gain=False, num_views=3)
    clips = _clips(torch.Generator().manual_seed(4), [21000, 15000])
    waves, lengths = _padded(clips)
    host = views(clips, generator=torch.Generator().manual_seed(0))
    device = views.views_from_parameters(waves, lengths, views.sample_view_parameters(lengths, 0))
    assert device.shape == (2, 3, 128, 128) and float((device - host).abs().max()) <= 1e-4
    speed = ContrastiveViewGenerator(fe, augmentation="original_speed")
    with pytest.raises(ValueError, match="speed change"):
        speed.sample_view_parameters(lengths, 0)


# ---------------------------------------------------------------------------------------------------------------------
# 4. Collator and trainer
# ---------------------------------------------------------------------------------------------------------------------


def test_collator_device_batches_give_the_host_batches_views(fe):
    views = ContrastiveViewGenerator(fe, augmentation="original")
    clips = _clips(torch.Generator().manual_seed(5), [40000, 20000, 12000])
    examples = [{"audio": clip, "id": f"clip{i}", "epoch": 2, "num_skipped": i % 2} for i, clip in enumerate(clips)]
    host = PretrainingViewsCollator(views, seed=7)(examples)
    device_batch = PretrainingViewsCollator(views, seed=7, views_on_device=True)(examples)
    assert "input_values" not in device_batch and device_batch["num_skipped"] == host["num_skipped"] == 1
    # the collator's random crop of the 40,000-sample clip comes first from the same generator
    assert device_batch["waveform_lengths"].tolist() == [views.num_samples, 20000, 12000]
    trainer = AudioMosaicPretrainingTrainer.__new__(AudioMosaicPretrainingTrainer)  # device_views needs no model
    trainer.view_generator, trainer.data_collator = None, PretrainingViewsCollator(views, views_on_device=True)
    computed = trainer.device_views(device_batch)
    assert "waveforms" not in device_batch and "view_parameters" not in device_batch
    assert float((computed - host["input_values"]).abs().max()) <= 1e-4
    with pytest.raises(TypeError, match="ContrastiveViewGenerator"):
        PretrainingViewsCollator(object(), views_on_device=True)


# ---------------------------------------------------------------------------------------------------------------------
# 5. Training: the same losses as host views, and exact resume
# ---------------------------------------------------------------------------------------------------------------------

RECIPE = tiny_recipe(augmentation="original")


def test_device_view_training_matches_host_views_and_resumes_exactly(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "audio"
    folder.mkdir()
    for i in range(12):
        t = np.arange(int(16000 * rng.uniform(1.0, 2.0))) / 16000
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(folder / f"clip{i:02d}.wav", wave.astype(np.float32), 16000)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    common = ["--config", str(recipe), "--train_path", str(folder), "--max_steps", "6"]

    def losses(result):
        return {h["step"]: h["loss"] for h in result["log_history"] if "loss" in h}

    host = losses(run_pretrain.main(common + ["--output_dir", str(tmp_path / "host"), "--save_steps", "6",
                                              "--views_on_device", "false"]))
    device = losses(run_pretrain.main(common + ["--output_dir", str(tmp_path / "device"), "--save_steps", "4",
                                                "--views_on_device", "true"]))
    assert sorted(host) == sorted(device) == list(range(1, 7))
    # features within ~4e-6 of each other: the first loss agrees to 1e-5; later ones drift only by the training's
    # amplification of that difference (gradient norms in the thousands at lr 1e-3), well below 1e-4 relative
    assert abs(host[1] - device[1]) <= 1e-5
    for step in host:
        assert abs(host[step] - device[step]) <= 1e-4 * abs(host[step]), (step, host[step], device[step])
    resumed = losses(run_pretrain.main(common + [
        "--output_dir", str(tmp_path / "resumed"), "--save_steps", "6", "--views_on_device", "true",
        "--resume_from_checkpoint", str(tmp_path / "device" / "checkpoint-4"),
    ]))
    for step in (5, 6):  # after the interruption, crossing the epoch boundary at step 3 of 12 clips / batch 4
        assert abs(resumed[step] - device[step]) <= 1e-6, (step, resumed[step], device[step])
