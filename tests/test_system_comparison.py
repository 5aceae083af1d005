"""run_system_comparison.py: the analytic compute count against torch's FLOP counter, and a tiny end-to-end run."""

from __future__ import annotations

import json

import pytest
import run_system_comparison as rsc
import torch
from torch.utils.flop_counter import FlopCounterMode

from modeling_audiomosaic import AudioMosaicForPreTraining
from modeling_audiomosaic.modeling_audiomosaic import AudioMosaicModel


@pytest.mark.parametrize("system", ["audiomosaic_tf", "contrastive_original", "msm_mae_random", "mam_clap"])
def test_analytic_macs_match_torch_flop_counter(system):
    """The count that sets each system's steps equals what torch counts for a real forward (matmuls + convs)."""
    config = rsc.system_config(rsc.BASE_SYSTEMS[system])
    config._attn_implementation = "eager"  # plain matmuls, which the FLOP counter sees on CPU
    counted = rsc.step_macs_per_clip(config)
    torch.manual_seed(0)
    model = AudioMosaicForPreTraining(config).train()
    teacher = None
    if "distill" in config.objectives:
        teacher = AudioMosaicModel(config).eval()
        model.set_distillation_teacher(teacher)
    views = config.pretraining_num_views
    spec = torch.randn(2, views, config.max_length, config.num_mel_bins)
    with FlopCounterMode(display=False) as flops:
        out = model(spec, generator=torch.Generator().manual_seed(0))
    assert [n for n in out.num_kept_tokens] == counted["tokens_per_view"]
    measured_forward_macs = flops.get_total_flops() / 2 / 2  # FLOPs -> MACs, per clip (batch 2)
    teacher_macs = counted["teacher_forward_macs"]
    assert (teacher_macs > 0) == (teacher is not None)
    analytic_forward = (counted["train_macs"] - teacher_macs) / 3 + teacher_macs
    assert measured_forward_macs == pytest.approx(analytic_forward, rel=1e-3)


def test_equal_budget_steps():
    reference = rsc.step_macs_per_clip(rsc.system_config(rsc.BASE_SYSTEMS["audiomosaic_tf"]))["train_macs"]
    for name, flags in rsc.BASE_SYSTEMS.items():
        macs = rsc.step_macs_per_clip(rsc.system_config(flags))["train_macs"]
        steps = round(200 * reference / macs)
        assert abs(steps * macs - 200 * reference) <= macs  # equal compute up to one step
    mae = rsc.step_macs_per_clip(rsc.system_config(rsc.BASE_SYSTEMS["msm_mae_random"]))["train_macs"]
    assert mae < reference / 2  # MAE's encoder sees 25% of one view: many more steps for the same compute


def test_tiny_comparison_end_to_end(tmp_path):
    from modeling_audiomosaic.feature_extraction.offline_corpus import build_corpus

    corpus = build_corpus(str(tmp_path / "corpus"), size="tiny", seed=0)
    result = rsc.main([
        "--corpus_dir", str(corpus), "--corpus_size", "tiny", "--output_dir", str(tmp_path / "cmp"), "--seeds", "0",
        "--budget_steps", "2", "--systems", "audiomosaic_tf", "msm_mae_dwm",
        "--extra_args", "--per_device_train_batch_size 8 --dataloader_num_workers 0 --config_overrides " + json.dumps(
            {"max_length": 256, "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
             "intermediate_size": 64, "projection_hidden_size": 32, "projection_dim": 16, "decoder_hidden_size": 16,
             "decoder_num_hidden_layers": 1, "decoder_num_attention_heads": 2, "decoder_intermediate_size": 32,
             "dwm_start_epoch": 1}, separators=(",", ":")),
    ])
    assert set(result["best_two"]) == {"audiomosaic_tf", "msm_mae_dwm"}
    data = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert {"audiomosaic_tf", "msm_mae_dwm", "supmam+audiomosaic_tf", "supmam+msm_mae_dwm", "baseline_logmel",
            "baseline_random_init"} <= set(data["table"])
    steps = {k: v["pretrain"]["steps"] for k, v in ((k, data["results"][k]["0"]) for k in ("audiomosaic_tf",
                                                                                          "msm_mae_dwm"))}
    assert steps["audiomosaic_tf"] == 2 and steps["msm_mae_dwm"] > 2  # equal MACs, cheaper steps
    assert (tmp_path / "cmp" / "comparison.png").stat().st_size > 10_000
    assert "| audiomosaic_tf |" in (tmp_path / "cmp" / "comparison.md").read_text()
