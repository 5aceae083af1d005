#!/usr/bin/env python
"""Export a saved AudioMosaic encoder or classifier to ONNX and validate it with onnxruntime.

    python run_scripts/export_onnx.py --model outputs/audiomosaic-demo-classifier --output classifier.onnx
    python run_scripts/export_onnx.py --model outputs/audiomosaic-demo-encoder --output encoder.onnx --atol 1e-4

The model folder's `config.json` decides the class: a folder with labels (`id2label` of more than the default two
entries, or `architectures` naming the classifier) exports `logits`, anything else the encoder's
`last_hidden_state` and `pooler_output`. Input: `input_values` (batch, frames, mel_bins), the output of the folder's
feature extractor. See `modeling_audiomosaic/onnx_export.py`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from modeling_audiomosaic import AudioMosaicForAudioClassification, AudioMosaicModel
from modeling_audiomosaic.onnx_export import export_onnx, validate_onnx


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a saved AudioMosaic folder (save_pretrained)")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--task", choices=("auto", "encoder", "classifier"), default="auto")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest allowed |onnxruntime - PyTorch|")
    parser.add_argument("--opset", type=int, default=None)
    parser.add_argument("--no_validate", action="store_true")
    args = parser.parse_args(argv)
    task = args.task
    if task == "auto":
        config = json.loads((Path(args.model) / "config.json").read_text())
        architectures = config.get("architectures") or []
        task = "classifier" if any("ForAudioClassification" in a for a in architectures) else "encoder"
    cls = AudioMosaicForAudioClassification if task == "classifier" else AudioMosaicModel
    model = cls.from_pretrained(args.model).eval()
    path = export_onnx(model, args.output, opset_version=args.opset)
    result = {"output": str(path), "task": task, "size_mb": round(path.stat().st_size / 2**20, 2)}
    if not args.no_validate:
        result["max_abs_diff"] = validate_onnx(path, model, atol=args.atol)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
