"""`run_scripts/gpu_check.sh` (issue 17, point 7) without a GPU: the "no CUDA device" message, and the whole procedure
on the CPU (`--cpu_smoke`: tiny model) with its JSON report, parity numbers and markdown block. No timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modeling_audiomosaic import gpu_check

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "run_scripts" / "gpu_check.sh"


def _run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a GPU machine
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def _json_line(stdout: str) -> dict:
    last = stdout.strip().splitlines()[-1]
    return json.loads(last)


def test_script_without_cuda_says_so_and_exits_0(tmp_path):
    proc = _run_script(cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("no CUDA device: "), proc.stdout
    assert "--cpu_smoke" in proc.stdout and "{" not in proc.stdout  # nothing measured, no report


def test_cpu_smoke_host_views_report_parity_and_markdown(tmp_path):
    """The shell script end to end on the CPU: every field of the JSON line, eager and SDPA timed, flash skipped with
    its reason, parity of SDPA vs eager at fp32 rounding (bf16: at bf16 rounding), and the markdown block appended."""
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n")
    proc = _run_script("--cpu_smoke", "--views", "host", "--markdown", str(results), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = _json_line(proc.stdout)
    assert {"device", "torch", "transformers", "model", "tokens_per_view", "batch_size", "gflop_per_clip", "variants",
            "parity", "views", "views_seconds_per_batch", "peak_tflops", "wall_seconds"} <= set(report)
    assert report["device"] == "cpu (smoke)" and report["views"] == "host" and report["batch_size"] == 4
    assert report["host_syncs_per_step"] is None  # torch's sync debug mode is CUDA's
    assert report["clap_teacher_seconds_per_batch"] > 0 and "clap_teacher" not in report["errors"]
    assert "CLAP teacher spectrogram: " in proc.stdout
    assert report["tokens_per_view"] == [3, 5]  # 4 x 2 patch grid: time keeps 2 of 4 rows, frequency 1 of 2 columns
    assert report["views_seconds_per_batch"] > 0 and report["gflop_per_clip"] > 0
    for impl in ("eager", "sdpa"):
        variant = report["variants"][impl]
        assert "clips_per_second" in variant, variant  # else it holds the error
        assert variant["batch_size"] == 4 and variant["clips_per_second"] > 0
        assert variant["clips_per_second"] == pytest.approx(4 / variant["seconds_per_step"])
    assert "flash_attn" in report["variants"]["flash_attention_2"]["skipped"] or "CUDA" in \
        report["variants"]["flash_attention_2"]["skipped"]
    fp32 = report["parity"]["fp32"]["sdpa_vs_eager"]
    bf16 = report["parity"]["bf16"]["sdpa_vs_eager"]
    assert max(fp32.values()) < 1e-4, fp32
    rounding = report["parity"]["bf16_eager_vs_fp32_eager"]["encoder_max_abs"]
    assert 0 < rounding < 0.5 and bf16["encoder_max_abs"] <= 2 * rounding + 1e-3, (bf16, rounding)
    assert "attention" in proc.stdout and "parity (max abs)" in proc.stdout  # the human table
    block = results.read_text()
    assert block.startswith("# Results\n\n#### GPU check: cpu (smoke)")
    assert "| eager |" in block and "| sdpa |" in block and "| fp32 sdpa vs eager |" in block
    assert "bash run_scripts/gpu_check.sh --cpu_smoke --views host --markdown" in block


def test_cpu_smoke_precomputed_views_mfu_and_requested_implementations(capsys):
    """`--views none` in process: only the requested implementation is timed, MFU = FLOPs per step / time / peak."""
    assert gpu_check.main(["--cpu_smoke", "--views", "none", "--attention", "sdpa", "--peak_tflops", "0.001",
                           "--skip_parity"]) == 0
    report = _json_line(capsys.readouterr().out)
    assert report["views"] == "none" and report["views_seconds_per_batch"] is None and report["parity"] is None
    assert set(report["variants"]) == {"sdpa"} and report["peak_tflops_source"] == "--peak_tflops"
    for variant in report["variants"].values():
        expected = report["gflop_per_clip"] * 1e9 * 4 / variant["seconds_per_step"] / 1e9
        assert variant["mfu"] == pytest.approx(expected)


def test_cpu_smoke_device_views_run_the_generator_device_path(capsys):
    """`--views device` (the default) times the step with `ContrastiveViewGenerator`'s device path: parameters drawn
    on the CPU, views computed where the model is."""
    assert gpu_check.main(["--cpu_smoke", "--attention", "sdpa", "--skip_parity"]) == 0
    report = _json_line(capsys.readouterr().out)
    assert report["views"] == report["views_requested"] == "device" and report["views_note"] is None
    assert report["views_seconds_per_batch"] > 0 and report["variants"]["sdpa"]["clips_per_second"] > 0
    assert not gpu_check.has_device_views(object())


def test_a_failing_phase_keeps_the_rest_of_the_report(capsys, monkeypatch, tmp_path):
    """One short GPU session must always yield a report: a failing FLOP count (no MFU then) or parity check is
    recorded under `errors` while the timings go on; a failure outside the guarded phases keeps what was measured.
    Both reach the table and the markdown block."""
    def broken(*args, **kwargs):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(gpu_check, "count_step_flops", broken)
    monkeypatch.setattr(gpu_check, "attention_parity", broken)
    markdown = tmp_path / "block.md"
    assert gpu_check.main(["--cpu_smoke", "--views", "none", "--attention", "sdpa", "--peak_tflops", "0.001",
                           "--markdown", str(markdown)]) == 0
    out = capsys.readouterr().out
    report = _json_line(out)
    assert report["errors"] == {"flop_count": "RuntimeError: planted failure",
                                "parity": "RuntimeError: planted failure"}
    sdpa = report["variants"]["sdpa"]
    assert sdpa["clips_per_second"] > 0 and "mfu" not in sdpa and report["gflop_per_clip"] is None
    assert "error (flop_count): RuntimeError: planted failure" in out
    assert "Error (parity): RuntimeError: planted failure" in markdown.read_text()

    monkeypatch.setattr(gpu_check, "make_view_source", broken)  # outside the guarded phases: the check stops there
    assert gpu_check.main(["--cpu_smoke", "--views", "none", "--attention", "sdpa", "--skip_parity"]) == 0
    report = _json_line(capsys.readouterr().out)
    assert report["errors"]["check"] == "RuntimeError: planted failure" and report["variants"] == {}
    assert report["model"].startswith("tiny test encoder") and report["checkpointed_blocks"] == "0/2"


def test_an_interpreter_without_the_package_is_told_how_to_install_it(tmp_path):
    """`python -S` has no site-packages: the package is not importable, as on a fresh GPU node."""
    proc = subprocess.run([sys.executable, "-S", str(REPO / "run_scripts" / "gpu_check.py")], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot import 'modeling_audiomosaic'" in proc.stderr and "pip install -e ." in proc.stderr


def test_out_of_memory_names_the_batch_to_try(capsys, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(gpu_check, "time_implementation", out_of_memory)
    assert gpu_check.main(["--cpu_smoke", "--views", "none", "--attention", "sdpa", "--skip_parity"]) == 0
    error = _json_line(capsys.readouterr().out)["variants"]["sdpa"]["error"]
    assert error.startswith("out of memory at batch 4: rerun with --batch_size 2 (OutOfMemoryError: CUDA out of")


def test_matmul_throughput_is_a_positive_rate():
    assert gpu_check.measure_matmul_tflops(torch.device("cpu"), size=64, repeats=2) > 0


def test_peak_table_matches_specific_names_first():
    assert gpu_check.peak_bf16_tflops("NVIDIA H100 80GB HBM3") == (989.0, "H100 SXM")
    assert gpu_check.peak_bf16_tflops("NVIDIA H100 PCIe") == (756.0, "H100 PCIe")
    assert gpu_check.peak_bf16_tflops("NVIDIA L40S")[0] == 362.0 and gpu_check.peak_bf16_tflops("NVIDIA L4")[0] == 121
    assert gpu_check.peak_bf16_tflops("NVIDIA A100-SXM4-80GB")[0] == 312.0
    assert gpu_check.peak_bf16_tflops("Tesla T4") == (None, None)


def test_step_flops_count_forward_and_backward():
    """The MFU numerator: FlopCounterMode sees the forward and the backward (3x the forward's matmuls; the patch
    embedding has no input gradient, so 2x): blocks 6·params·tokens, attention 12·N²·D per block and view, at the
    paper's 1024x128 grid (201 + 257 tokens). For ViT-B the count is 246 GFLOP per clip (issue 17: ≈ 236 for the
    blocks' 6·N·T alone)."""
    from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicForPreTraining

    width, layers = 64, 2
    config = AudioMosaicConfig(hidden_size=width, num_hidden_layers=layers, num_attention_heads=4,
                               intermediate_size=4 * width, drop_path_rate=0.0, projection_hidden_size=16,
                               projection_dim=8, mask_grid="true")
    model = AudioMosaicForPreTraining(config).train()
    flops, tokens = gpu_check.count_step_flops(model, torch.randn(2, 2, 1024, 128), "fp32")  # BatchNorm: 2 clips
    flops /= 2
    assert tokens == (201, 257)
    blocks = 6 * (12 * width**2) * layers * sum(tokens)
    attention = 12 * width * layers * sum(n * n for n in tokens)
    patch_embedding = 2 * 2 * (2 * 512 * 256 * width)  # two views, forward + weight gradient
    assert flops == pytest.approx(blocks + attention + patch_embedding, rel=0.02)
    assert all(p.grad is None for p in model.parameters())  # counting leaves no gradients behind


def test_host_synchronisations_are_counted_by_source_line():
    """On CUDA the check counts the step's synchronisations from torch's sync debug mode warnings; their parsing and
    report lines, with warnings worded as torch words them."""
    import warnings

    from modeling_audiomosaic.gpu_check import _syncs_text, sync_sites

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for line in (10, 10, 20):
            warnings.warn_explicit("called a synchronizing CUDA operation", UserWarning, "/x/masking.py", line)
        warnings.warn_explicit("something else", UserWarning, "/x/other.py", 1)
    syncs = sync_sites(caught)
    assert syncs == {"count": 3, "sites": {"masking.py:10": 2, "masking.py:20": 1}}
    assert _syncs_text(syncs) == "3 (masking.py:10 ×2, masking.py:20 ×1)"
    assert _syncs_text({"count": 0, "sites": {}}) == "0"
