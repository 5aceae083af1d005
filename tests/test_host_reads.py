"""The pre-training step reads no device value on the host (each read would make the CPU wait for the accelerator's
queued work, once per view and step), while on the CPU the validity checks raise the same errors as ever.

The ``meta`` device stands in for the accelerator: meta tensors have shapes but no values, so any host read of one
(``bool()``, ``.item()``, boolean indexing, a copy to the CPU) fails. One shim is needed: ``torch.autocast`` takes no
``device_type="meta"`` (the model turns autocast off around its fp32 heads with ``device_type=tensor.device.type``);
the tests map it to ``"cpu"``, a context manager that reads no tensor at all.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from modeling_audiomosaic import AudioMosaicConfig, AudioMosaicForPreTraining
from modeling_audiomosaic.device_checks import check_on_device
from modeling_audiomosaic.masking import apply_masking, dwm_masking, keep_count
from modeling_audiomosaic.modeling_audiomosaic import AudioMosaicModel, classification_loss
from modeling_audiomosaic.objective_supervised import supervised_loss

TINY = dict(
    max_length=128, num_mel_bins=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=64, projection_hidden_size=16, projection_dim=8, drop_path_rate=0.0,
    decoder_hidden_size=24, decoder_num_hidden_layers=1, decoder_num_attention_heads=4, decoder_intermediate_size=48,
)
HOST_READS = {
    torch.ops.aten._local_scalar_dense.default,  # bool(), .item(), int(), float(), `if tensor:`
    torch.ops.aten.nonzero.default,  # boolean indexing, .nonzero()
    torch.ops.aten.masked_select.default,
    torch.ops.aten.equal.default,
}


class HostReads(TorchDispatchMode):
    """Fails on the first read of a non-CPU tensor's values on the host, naming the line of the package that did it."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        on_device = any(t.device.type != "cpu" for t in tensors)
        to_host = (func is torch.ops.aten._to_copy.default and on_device
                   and torch.device(kwargs.get("device") or tensors[0].device).type == "cpu")
        boolean_index = func is torch.ops.aten.index.Tensor and any(
            i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1])  # its size is a nonzero count
        if on_device and (func in HOST_READS or to_host or boolean_index):
            frames = [f for f in traceback.extract_stack()[:-1] if "modeling_audiomosaic" in f.filename]
            where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} {frames[-1].line}" if frames else "?"
            raise AssertionError(f"host read of a device value ({func}) at {where}")
        return func(*args, **kwargs)


@pytest.fixture
def meta_autocast(monkeypatch):
    real = torch.autocast

    class Autocast(real):
        def __init__(self, device_type, *args, **kwargs):
            super().__init__("cpu" if device_type == "meta" else device_type, *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", Autocast)


def meta(*shape, dtype=torch.float32):
    return torch.empty(*shape, dtype=dtype, device="meta")


def test_the_detector_catches_host_reads():
    with HostReads(), pytest.raises(AssertionError, match="host read"):
        bool(meta(4).any())
    with HostReads(), pytest.raises(AssertionError, match="host read"):
        meta(4, 3)[meta(4, dtype=torch.bool)]
    with HostReads():
        check_on_device(meta(4).isfinite().all(), "queued, not read")


CASES = {
    "contrastive_dwm": (dict(objective="contrastive", masking_mode="dwm"), None, False),
    "supmam_ce": (dict(objective="contrastive", supervised_weight=0.3, supervised_loss="ce"), "ce", False),
    "supmam_bce_dwm": (dict(objective="mae", masking_mode="dwm", supervised_weight=0.3, supervised_loss="bce"), "bce",
                       False),
    "mae_padded": (dict(objective="mae"), None, True),
    "contrastive_mae_padded": (dict(objective="contrastive+mae"), None, True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_step_reads_no_device_value_on_the_host(case, meta_autocast):
    """Forward, loss and backward of a training step with every tensor on the device: masks (DWM with its patch
    weights read, i.e. hint ratio < 1), SupMAM labels, padded clips (attention_mask) in encoder and decoder."""
    kwargs, labels, padded = CASES[case]
    config = AudioMosaicConfig(**TINY, num_labels=5, gather_distributed=False, **kwargs)
    model = AudioMosaicForPreTraining(config).train()
    if config.masking_mode == "dwm":
        assert model.set_masking_epoch(200, 300) < 1  # the weights are computed and checked
    model.to("meta")
    inputs = {"input_values": meta(4, config.pretraining_num_views, 128, 128)}
    if labels == "ce":
        inputs["labels"] = meta(4, dtype=torch.long)
    elif labels == "bce":
        inputs["labels"] = meta(4, 5)
    if padded:
        inputs["attention_mask"] = meta(4, 128, dtype=torch.long)
    with HostReads():
        out = model(**inputs)
        out.loss.backward()
    assert out.loss.device.type == "meta" and out.loss.shape == ()
    if labels:
        assert out.supervised_loss is not None
    assert model.audiomosaic.embeddings.cls_token.grad is not None


# ------------------------------------------------------------------------------------------ the same errors on the CPU
def test_cpu_errors_are_unchanged():
    logits = torch.randn(4, 3)
    for bad in ([0, 1, 2, 3], [0, -3, 1, 2]):
        with pytest.raises(ValueError, match=r"^'ce' labels must be in \[0, 3\) or -100\.$"):
            supervised_loss(logits, torch.tensor(bad), "ce")
    with pytest.raises(ValueError, match="labels must be class indices in \\[0, 2\\]; got min 0, max 3"):
        classification_loss(logits, torch.tensor([0, 1, 2, 3]))
    grid, weights = (8, 8), torch.rand(2, 64)
    with pytest.raises(ValueError, match=r"^patch_weights must be finite \(found NaN or inf\)\.$"):
        apply_masking("dwm", grid, 2, 0.8, patch_weights=torch.full((2, 64), float("inf")))
    with pytest.raises(ValueError, match="^patch_weights must be non-negative.$"):
        apply_masking("dwm", grid, 2, 0.8, patch_weights=-weights)
    with pytest.raises(ValueError, match="need at least n_mask = 52 positive entries per sample"):
        apply_masking("dwm", grid, 2, 0.8, patch_weights=weights * (torch.arange(64) < 51))
    encoder = AudioMosaicModel(AudioMosaicConfig(**TINY))
    with pytest.raises(ValueError, match="ids_keep must index the 64 patch tokens of the input"):
        encoder(torch.randn(2, 128, 128), ids_keep=torch.tensor([[0, 64], [1, 2]]))
    # through the model: labels out of range, and a spectrogram whose DWM weights are NaN
    config = AudioMosaicConfig(**TINY, objective="mae", masking_mode="dwm", supervised_weight=0.3,
                               supervised_loss="ce", num_labels=5)
    model = AudioMosaicForPreTraining(config).train()
    model.set_masking_epoch(200, 300)
    spec = torch.randn(2, 128, 128)
    with pytest.raises(ValueError, match=r"'ce' labels must be in \[0, 5\) or -100"):
        model(spec, labels=torch.tensor([1, 5]))
    with pytest.raises(ValueError, match="patch_weights must be finite"):
        model(spec.index_fill(1, torch.tensor([0]), float("nan")), labels=torch.tensor([1, 4]))


def _supervised_by_indexing(logits, labels, loss_type):
    """The definition: the mean loss over the labelled rows, picked by boolean indexing (0 if none is labelled)."""
    keep = labels != -100 if loss_type == "ce" else (labels >= 0).all(dim=1)
    if not keep.any():
        return torch.zeros(())
    if loss_type == "ce":
        return torch.nn.functional.cross_entropy(logits[keep].float(), labels[keep])
    return torch.nn.functional.binary_cross_entropy_with_logits(logits[keep].float(), labels[keep].float())


@pytest.mark.parametrize("loss_type", ["ce", "bce"])
@pytest.mark.parametrize("labelled", ["all", "part", "none"])
def test_supervised_loss_equals_the_mean_over_labelled_rows(loss_type, labelled):
    generator = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, torch.bfloat16):
        logits = (3 * torch.randn(6, 7, generator=generator)).to(dtype).requires_grad_()
        rows = {"all": torch.ones(6, dtype=torch.bool), "none": torch.zeros(6, dtype=torch.bool),
                "part": torch.tensor([True, False, True, True, False, True])}[labelled]
        if loss_type == "ce":
            labels = torch.randint(0, 7, (6,), generator=generator).masked_fill(~rows, -100)
        else:
            labels = (torch.rand(6, 7, generator=generator) < 0.3).float().masked_fill(~rows[:, None], -100)
        loss = supervised_loss(logits, labels, loss_type)
        (grad,) = torch.autograd.grad(loss, logits)
        assert loss.dtype == torch.float32 and loss.shape == ()
        if labelled == "none":  # exactly 0, and still a (zero) gradient path to the logits
            assert loss.item() == 0.0 and torch.equal(grad, torch.zeros_like(grad))
            continue
        reference = logits.detach().clone().requires_grad_()
        expected = _supervised_by_indexing(reference, labels, loss_type)
        (expected_grad,) = torch.autograd.grad(expected, reference)
        torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-6, atol=1e-7 if dtype == torch.float32 else 1e-3)


def test_dwm_draws_what_torch_multinomial_draws():
    """The masked patches are `torch.multinomial(weights, n_mask, replacement=False)`'s, for the same generator."""
    weights = torch.rand(3, 64, generator=torch.Generator().manual_seed(0)) * (torch.arange(64) % 3 > 0)
    n_mask = 64 - keep_count(64, 0.6)
    for seed in range(5):
        out = dwm_masking((8, 8), 3, 0.6, patch_weights=weights, generator=torch.Generator().manual_seed(seed),
                          hint_ratio=0.0)
        drawn = torch.multinomial(weights, n_mask, replacement=False, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(out.mask, torch.zeros(3, 64, dtype=torch.bool).scatter_(1, drawn, True))


def test_check_on_device():
    with pytest.raises(TypeError, match="^bad$"):
        check_on_device(torch.tensor(False), "bad", TypeError)
    check_on_device(torch.tensor(True), "fine")
    check_on_device(meta((), dtype=torch.bool), "a meta tensor has no value to check")
