"""ONNX export of the AudioMosaic encoder and classifier, validated with onnxruntime.

```python
from modeling_audiomosaic import AudioMosaicForAudioClassification
from modeling_audiomosaic.onnx_export import export_onnx, validate_onnx

model = AudioMosaicForAudioClassification.from_pretrained("my_classifier")
path = export_onnx(model, "classifier.onnx")               # input `input_values` (batch, frames, mel_bins)
max_diff = validate_onnx(path, model)                       # onnxruntime vs PyTorch, raises above 1e-4
```

or `python run_scripts/export_onnx.py --model my_classifier --output classifier.onnx`.

The graph takes the normalised log-mel features of [`AudioMosaicFeatureExtractor`] (feature extraction stays in
Python / numpy), with a dynamic batch axis; the number of frames is fixed by the model's position table
(`config.max_length`). Outputs: `logits` for a classifier; `last_hidden_state` and `pooler_output` for the encoder
(`AudioMosaicModel`). Export uses `torch.onnx.export(..., dynamo=True)` (needs the `onnx` and `onnxscript` packages);
validation needs `onnxruntime`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .modeling_audiomosaic import AudioMosaicForAudioClassification, AudioMosaicModel


class _OnnxWrapper(nn.Module):
    """Plain tensors in, plain tensors out (no ModelOutput, no optional arguments)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor):
        out = self.model(input_values=input_values, return_dict=True)
        if isinstance(self.model, AudioMosaicForAudioClassification):
            return out.logits
        return out.last_hidden_state, out.pooler_output


def output_names(model: nn.Module) -> list[str]:
    """The ONNX output names of `model` (a classifier or the encoder)."""
    if isinstance(model, AudioMosaicForAudioClassification):
        return ["logits"]
    if isinstance(model, AudioMosaicModel):
        return ["last_hidden_state", "pooler_output"]
    raise TypeError(
        f"export_onnx supports AudioMosaicModel and AudioMosaicForAudioClassification, got {type(model).__name__}."
    )


def example_inputs(model: nn.Module, batch_size: int = 2, seed: int = 0) -> torch.Tensor:
    """Random normalised features of the model's input size (batch, frames, mel_bins)."""
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, config.max_length, config.num_mel_bins, generator=generator) * 0.5


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    opset_version: int | None = None,
    dynamic_batch: bool = True,
    verbose: bool = False,
) -> Path:
    """Export `model` (eval mode, fp32) to `path`; returns the path. See the module docstring for the graph's I/O."""
    names = output_names(model)
    if not any(p.dtype == torch.float32 for p in model.parameters()):
        raise ValueError("export_onnx expects an fp32 model (call model.float() first).")
    model = model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = example_inputs(model).to(next(model.parameters()).device)
    dynamic_shapes = {"input_values": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None
    kwargs = {"opset_version": opset_version} if opset_version is not None else {}
    with torch.no_grad():
        program = torch.onnx.export(
            _OnnxWrapper(model),
            (inputs,),
            input_names=["input_values"],
            output_names=names,
            dynamic_shapes=dynamic_shapes,
            dynamo=True,
            verbose=verbose,
            **kwargs,
        )
    program.save(str(path))
    return path


def validate_onnx(
    path: str | os.PathLike,
    model: nn.Module,
    input_values: torch.Tensor | None = None,
    *,
    atol: float = 1e-4,
    batch_sizes: tuple[int, ...] = (1, 3),
) -> float:
    """Run the ONNX graph with onnxruntime (CPU) and the PyTorch model on the same inputs; return the largest absolute
    difference over all outputs, raising `ValueError` if it exceeds `atol`."""
    import onnxruntime as ort  # noqa: PLC0415  (optional dependency)

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapper = _OnnxWrapper(model.eval())
    batches = [input_values] if input_values is not None else [example_inputs(model, b, seed=b) for b in batch_sizes]
    worst = 0.0
    for batch in batches:
        batch = batch.detach().float().cpu()
        got = session.run(None, {"input_values": batch.numpy()})
        with torch.no_grad():
            expected = wrapper(batch.to(next(model.parameters()).device))
        expected = expected if isinstance(expected, tuple) else (expected,)
        for name, a, b in zip(output_names(model), got, expected):
            b = b.float().cpu().numpy()
            if a.shape != b.shape:
                raise ValueError(f"ONNX output {name!r} has shape {a.shape}, PyTorch {b.shape}.")
            worst = max(worst, float(np.abs(a - b).max()))
    if worst > atol:
        raise ValueError(f"ONNX and PyTorch outputs differ by {worst:.3g} > atol {atol:g}.")
    return worst
