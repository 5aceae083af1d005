"""torch.compile (inductor) equals eager for inference and for a pre-training step; ONNX export of the encoder and
the classifier matches PyTorch in onnxruntime (<= 1e-4)."""

from __future__ import annotations

import copy

import pytest
import torch

from modeling_audiomosaic import (
    AudioMosaicConfig,
    AudioMosaicForAudioClassification,
    AudioMosaicForPreTraining,
    AudioMosaicModel,
)

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)


def _classifier():
    torch.manual_seed(0)
    model = AudioMosaicForAudioClassification(AudioMosaicConfig.from_preset("speechcommands", num_labels=5, **TINY))
    with torch.no_grad():
        model.classifier.dense.weight.normal_(0, 0.2)
    return model.eval()


def test_compiled_inference_equals_eager():
    model = _classifier()
    compiled = torch.compile(model)
    x = torch.randn(3, 128, 128)
    with torch.no_grad():
        expected = model(x, output_hidden_states=False)
        got = compiled(x)
    torch.testing.assert_close(got.logits, expected.logits, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # a second batch size: recompiles (or a dynamic graph), same answer
        torch.testing.assert_close(compiled(x[:1]).logits, model(x[:1]).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", [
    "aot_eager",  # dynamo's graphs + AOTAutograd's joint forward / backward, without code generation
    # inductor's C++ code for the forward and backward: about 65 s to compile on 2 cores with a cold cache (the
    # inference test above keeps inductor in the default suite; GPUs compile to Triton instead)
    pytest.param("inductor", marks=pytest.mark.slow),
])
def test_compiled_pretraining_step_equals_eager(backend):
    """Same masks (same generator), same loss and gradients; the masking runs eagerly (one graph break)."""
    config = AudioMosaicConfig.from_preset("speechcommands", projection_hidden_size=16, projection_dim=8, **TINY)
    torch.manual_seed(0)
    eager = AudioMosaicForPreTraining(config).train()
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, backend=backend)
    x = torch.randn(4, 2, 128, 128)
    out_e = eager(x, generator=torch.Generator().manual_seed(0))
    out_c = compiled(x, generator=torch.Generator().manual_seed(0))
    assert out_e.num_kept_tokens == out_c.num_kept_tokens
    for a, b in zip(out_e.ids_keep, out_c.ids_keep):
        assert torch.equal(a, b)
    torch.testing.assert_close(out_c.loss, out_e.loss, rtol=1e-5, atol=1e-5)
    out_e.loss.backward()
    out_c.loss.backward()
    for (name, p_e), p_c in zip(eager.named_parameters(), compiled_model.parameters()):
        if p_e.grad is None:
            assert p_c.grad is None, name
            continue
        # float32 re-association: relative to the parameter's largest gradient, plus a floor for gradients that are
        # zero in exact arithmetic (the LayerNorm bias before the projector's BatchNorm)
        assert (p_c.grad - p_e.grad).abs().max() <= 1e-4 * p_e.grad.abs().max() + 1e-5, name


def test_pretraining_graph_breaks_only_at_the_masking():
    config = AudioMosaicConfig.from_preset("speechcommands", projection_hidden_size=16, projection_dim=8, **TINY)
    model = AudioMosaicForPreTraining(config).train()
    explanation = torch._dynamo.explain(model)(torch.randn(2, 2, 128, 128), generator=torch.Generator().manual_seed(0))
    assert explanation.graph_break_count == 1, [str(b.reason)[:200] for b in explanation.break_reasons]
    assert "draw_masks" in str(explanation.break_reasons[0].reason)
    classifier = torch._dynamo.explain(_classifier())(torch.randn(2, 128, 128))
    assert classifier.graph_break_count == 0


def test_synchronised_batchnorm_keeps_the_compiled_step_whole(monkeypatch):
    """The paper recipe's multi-GPU runs synchronise the projector's BatchNorm: its collectives are traced, so the
    step still breaks only at the masking (an eager island there broke the graph inside the per-view loop, where
    dynamo cannot resume: the whole forward after the masking ran eagerly). A one-process gloo group stands in for the
    processes (its all-reduces are identities), with the world size read as 2 so that the collectives run."""
    import socket

    import torch.distributed as dist

    from modeling_audiomosaic import distributed, modeling_pretraining

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        monkeypatch.setattr(modeling_pretraining, "distributed_world_size", lambda: 2)
        monkeypatch.setattr(distributed, "world_size", lambda: 2)
        config = AudioMosaicConfig.from_preset("speechcommands", projection_hidden_size=16, projection_dim=8,
                                               gather_distributed=False, drop_path_rate=0.0, **TINY)
        torch.manual_seed(0)
        model = AudioMosaicForPreTraining(config).train()
        model.synchronize_batchnorm()
        x = torch.randn(2, 2, 128, 128)
        explanation = torch._dynamo.explain(model)(x, generator=torch.Generator().manual_seed(0))
        assert explanation.graph_break_count == 1, [str(b.reason)[:200] for b in explanation.break_reasons]
        assert "draw_masks" in str(explanation.break_reasons[0].reason)
        # and the compiled synchronised step equals the eager one
        eager = copy.deepcopy(model)
        out_c = torch.compile(model, backend="aot_eager")(x, generator=torch.Generator().manual_seed(1))
        out_e = eager(x, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(out_c.loss, out_e.loss, rtol=1e-5, atol=1e-5)
        out_c.loss.backward()
        out_e.loss.backward()
        grad_c = model.projector[1].weight.grad
        torch.testing.assert_close(grad_c, eager.projector[1].weight.grad, rtol=1e-4, atol=1e-5)
    finally:
        dist.destroy_process_group()
        torch._dynamo.reset()


onnx = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("kind", ["classifier", "encoder"])
def test_onnx_export_matches_pytorch(kind, tmp_path):
    pytest.importorskip("onnxscript")
    from modeling_audiomosaic.onnx_export import export_onnx, validate_onnx

    model = _classifier() if kind == "classifier" else AudioMosaicModel(AudioMosaicConfig.from_preset(
        "speechcommands", **TINY)).eval()
    path = export_onnx(model, tmp_path / f"{kind}.onnx")
    assert path.stat().st_size > 0
    assert validate_onnx(path, model, batch_sizes=(1, 3)) <= 1e-4
    with pytest.raises(ValueError, match="differ by"):  # the check can fail: a perturbed model is caught
        perturbed = copy.deepcopy(model)
        with torch.no_grad():
            for param in perturbed.parameters():
                param.add_(0.05)
        validate_onnx(path, perturbed)


def test_export_onnx_cli(tmp_path):
    pytest.importorskip("onnxscript")
    import export_onnx as cli

    model = _classifier()
    model.save_pretrained(tmp_path / "clf")
    result = cli.main(["--model", str(tmp_path / "clf"), "--output", str(tmp_path / "clf.onnx")])
    assert result["task"] == "classifier" and result["max_abs_diff"] <= 1e-4
    with pytest.raises(TypeError, match="supports AudioMosaicModel"):
        from modeling_audiomosaic.onnx_export import export_onnx

        export_onnx(AudioMosaicForPreTraining(AudioMosaicConfig(**TINY)), tmp_path / "x.onnx")
