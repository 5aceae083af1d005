"""The README main job end to end at a tiny size: corpus -> pre-training -> probes -> saved models -> report, and the
demo's plots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def _cpu_burners(count: int) -> list[subprocess.Popen]:
    """Busy processes that load the machine (a 'loaded 2-core machine'); the caller kills them."""
    code = "import time\nend = time.time() + 600\nwhile time.time() < end:\n    pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]


def _run_demo(out: Path, corpus: Path, extra: tuple[str, ...] = ()) -> dict:
    import run_demo

    return run_demo.main(["--output_dir", str(out), "--corpus_size", "tiny", "--corpus_dir", str(corpus),
                          "--pretrain_max_steps", "3", *extra])


def test_demo_tiny_end_to_end(tmp_path, capsys):
    from transformers import AutoModel, pipeline

    out = tmp_path / "outputs"
    report = _run_demo(out, tmp_path / "c")
    printed = capsys.readouterr().out
    for task in ("keywords", "esc", "instruments"):  # the probe stage shows progress per task
        assert f"probes: {task}" in printed
    for name in ("report.md", "results.json", "timings.json", "pretrain_loss.png", "probe_accuracy.png",
                 "masked_views.png", "embedding_map_keywords.png", "embedding_map_esc.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert set(results["probe"]) == {"keywords", "esc", "instruments"}
    for task in results["probe"].values():
        assert len(task) == 3 and all(0.0 <= v["test_accuracy"] <= 1.0 for v in task.values())
    assert report["pretrain"]["steps"] == 3 and report["pretrain"]["schedule_complete"]
    assert "3 of 3 scheduled steps (complete)" in (out / "report.md").read_text()
    assert set(json.loads((out / "timings.json").read_text())) >= {"corpus_s", "pretrain_s", "probes_s", "total_s"}
    assert type(AutoModel.from_pretrained(out / "audiomosaic-demo-encoder")).__name__ == "AudioMosaicModel"
    pipe = pipeline("audio-classification", model=str(out / "audiomosaic-demo-keywords"))

    labels = {r["label"] for r in pipe(np.zeros(16000, dtype=np.float32) + 0.01, top_k=20)}
    assert "_silence_" in labels and len(labels) == 12
    assert "license:" in (out / "audiomosaic-demo-encoder" / "README.md").read_text()
    assert "| keywords |" in (out / "report.md").read_text()


@pytest.mark.slow  # two demo runs, the second at half speed (3-5 min on 2 cores)
def test_demo_writes_the_same_report_on_a_loaded_machine(tmp_path):
    """The same command on a loaded machine writes the same report (no wall-clock decision, no timings in it)."""
    out = tmp_path / "outputs"
    _run_demo(out, tmp_path / "c", ("--no_progress",))
    burners = _cpu_burners(2)  # both cores busy
    try:
        _run_demo(tmp_path / "outputs_loaded", tmp_path / "c", ("--no_progress",))
    finally:
        for proc in burners:
            proc.kill()
    for name in ("report.md", "results.json"):
        assert (tmp_path / "outputs_loaded" / name).read_text() == (out / name).read_text(), name


def test_schedule_status_marks_a_cut_run():
    import run_demo

    assert run_demo.schedule_status(400, 400, None)["complete"]
    cut = run_demo.schedule_status(397, 400, 15.0)
    assert not cut["complete"] and "cut by the 15-minute wall-clock cap at 397 of 400" in cut["text"]
    assert "depend on the machine" in cut["text"]


def _bar_patches(fig):
    return [p for ax in fig.axes for container in ax.containers for p in getattr(container, "patches", ())]


def test_probe_plot_legend_does_not_cover_bars(tmp_path):
    from modeling_audiomosaic import plots

    names = ("AudioMosaic (pre-trained)", "same architecture, random init", "log-mel statistics")
    results = {t: dict(zip(names, (0.97, 0.95, 0.99))) for t in ("keywords", "esc", "instruments")}
    fig = plots.plot_probe_bars(results, tmp_path / "bars.png")
    assert (tmp_path / "bars.png").stat().st_size > 0
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    legend = fig.axes[0].get_legend().get_window_extent(renderer)
    bars = _bar_patches(fig)
    assert len(bars) == 9
    for bar in bars:
        assert not legend.overlaps(bar.get_window_extent(renderer)), "the legend covers a bar"
    for text in fig.axes[0].texts:  # the value labels above the bars
        assert not legend.overlaps(text.get_window_extent(renderer)), "the legend covers a value label"


def test_system_comparison_plot_gives_every_system_its_own_colour(tmp_path):
    import run_system_comparison

    groups = (*run_system_comparison.TASKS, "mean")
    table = {f"system_{i:02d}": {g: (0.5 + 0.01 * i, 0.02) for g in groups} for i in range(12)}
    fig = run_system_comparison.plot(table, tmp_path / "comparison.png")
    colours = {tuple(np.round(container.patches[0].get_facecolor(), 4)) for container in fig.axes[0].containers
               if hasattr(container, "patches")}
    assert len(colours) == 12, "two systems share a colour"
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    legend = fig.axes[0].get_legend().get_window_extent(renderer)
    assert not any(legend.overlaps(p.get_window_extent(renderer)) for p in _bar_patches(fig))


@pytest.mark.parametrize("count", [3, 10, 12, 20, 25])
def test_distinct_colors(count):
    from modeling_audiomosaic import plots

    assert len({tuple(c) for c in plots.distinct_colors(count)}) == count


def test_plots_leave_pyplot_and_the_backend_alone(tmp_path):
    """`modeling_audiomosaic.plots` imports matplotlib only when it draws, and never pyplot: a notebook's or an
    application's backend stays as it was (the PNG is drawn on the figure's own Agg canvas)."""
    code = (
        "import sys\n"
        "from modeling_audiomosaic import plots\n"
        "assert 'matplotlib' not in sys.modules, 'imported at module import'\n"
        "plots.plot_training_loss([{'step': 1, 'loss': 2.0}, {'step': 2, 'loss': 1.5}], "
        f"{str(tmp_path / 'l.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "l.png").stat().st_size > 0
