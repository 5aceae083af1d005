# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Classification metrics as local 🤗 `evaluate` modules that load offline, plus one-call helpers.

Each metric is a self-contained `evaluate` module in its own folder (`<name>/<name>.py`), loadable without any
network access (``HF_HUB_OFFLINE=1`` is fine; `evaluate.load("accuracy")` would fetch from the Hub and fails here)::

    import evaluate
    from modeling_audiomosaic.metrics import METRICS_DIR, load_metric
    metric = load_metric("mAP")  # = evaluate.load(str(METRICS_DIR / "mean_average_precision"))
    metric.compute(predictions=scores, references=multi_hot)  # {"mAP": ..., "num_classes_evaluated": ...}

| name (aliases) | inputs | output keys |
|---|---|---|
| `accuracy` (`acc`) | class ids | `accuracy` |
| `macro_f1` (`f1`, `f1_macro`; config `"multilabel"` for multi-hot) | class ids / multi-hot rows | `macro_f1` |
| `mean_average_precision` (`mAP`, `map`) | score rows, multi-hot rows | `mAP`, `num_classes_evaluated` |
| `eer` | binary scores, 0/1 labels | `eer`, `eer_threshold` |

Each lives in `<name>/<name>.py` under this folder.

Definitions (and how they match scikit-learn, which the tests check) are in each module's docstring; in short:
accuracy = `accuracy_score`; macro-F1 = `f1_score(average="macro")`; mAP = mean over classes of
`average_precision_score`, classes without positives skipped by default (`empty_classes="zero"` counts them as 0 like
the original evaluation with recent scikit-learn); EER = the ROC crossing FPR = FNR, interpolated.

[`compute_classification_metrics`] is what the fine-tuning script uses as `compute_metrics`: it runs the same numpy
code as the modules directly (no Arrow round trip, so it is fast on AudioSet-sized outputs); pass
`use_evaluate=True` to go through `evaluate.load(...)` instead (same numbers, tested).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

METRICS_DIR = Path(__file__).resolve().parent

METRIC_NAMES: tuple[str, ...] = ("accuracy", "macro_f1", "mean_average_precision", "eer")
ALIASES: dict[str, str] = {
    "acc": "accuracy",
    "f1": "macro_f1",
    "f1_macro": "macro_f1",
    "macro-f1": "macro_f1",
    "map": "mean_average_precision",
    "mAP": "mean_average_precision",
    "mean_ap": "mean_average_precision",
    "equal_error_rate": "eer",
}

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"


def resolve_metric_name(name: str) -> str:
    """Canonical folder name of a metric (`"mAP"` → `"mean_average_precision"`)."""
    key = ALIASES.get(name, ALIASES.get(name.lower(), name.lower()))
    if key not in METRIC_NAMES:
        raise ValueError(f"Unknown metric {name!r}; available: {list(METRIC_NAMES)} (aliases {sorted(ALIASES)})")
    return key


def metric_path(name: str) -> Path:
    """Folder of a metric module (pass it to `evaluate.load`)."""
    return METRICS_DIR / resolve_metric_name(name)


def load_metric(name: str, config_name: str | None = None, **kwargs: Any):
    """`evaluate.load` of a local metric module; works offline. `kwargs` go to `evaluate.load` (e.g.
    `keep_in_memory=True`, `experiment_id=...`). For `macro_f1` on multi-hot inputs use `config_name="multilabel"`."""
    import evaluate

    return evaluate.load(str(metric_path(name)), config_name, **kwargs)


def _functions(name: str):
    """The metric script imported as a plain module (for its numpy functions; cached in `sys.modules`)."""
    key = resolve_metric_name(name)
    module_name = f"_audiomosaic_metric_{key}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, METRICS_DIR / key / f"{key}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return module


def accuracy(predictions, references) -> float:
    """Accuracy of class ids (numpy)."""
    return _functions("accuracy").compute_accuracy(predictions, references)


def macro_f1(predictions, references, labels=None, zero_division: float = 0.0) -> float:
    """Macro-F1 of class ids or multi-hot rows (numpy)."""
    return _functions("macro_f1").compute_macro_f1(predictions, references, labels=labels, zero_division=zero_division)


def mean_average_precision(scores, targets, empty_classes: str = "skip") -> float:
    """Multi-label mAP (numpy); see `mean_average_precision/mean_average_precision.py`."""
    return _functions("mean_average_precision").compute_mean_average_precision(scores, targets, empty_classes)[0]


def average_precision_per_class(scores, targets) -> np.ndarray:
    """Per-class AP (NaN for classes without positives)."""
    return _functions("mean_average_precision").average_precision_per_class(scores, targets)


def equal_error_rate(scores, labels, pos_label: int = 1) -> float:
    """Binary EER (numpy)."""
    return _functions("eer").compute_eer(scores, labels, pos_label)[0]


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, tuple) and value and np.ndim(value[0]) >= 1:
        value = value[0]  # (logits, extra outputs...) from Trainer predictions
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def infer_problem_type(logits: np.ndarray, labels: np.ndarray) -> str:
    """`regression` for one output, `multi_label_classification` for 2-D (multi-hot or soft) labels, else single."""
    if logits.ndim == 1 or logits.shape[-1] == 1:
        return REGRESSION
    if labels.ndim == 2:
        return MULTI_LABEL
    return SINGLE_LABEL


def _compute(name: str, use_evaluate: bool, config_name: str | None = None, **inputs: Any) -> dict[str, Any]:
    if use_evaluate:
        return load_metric(name, config_name, keep_in_memory=True).compute(**inputs)
    module = _functions(name)
    if name == "accuracy":
        return {"accuracy": module.compute_accuracy(inputs["predictions"], inputs["references"])}
    if name == "macro_f1":
        return {"macro_f1": module.compute_macro_f1(inputs["predictions"], inputs["references"])}
    if name == "mean_average_precision":
        value, count = module.compute_mean_average_precision(
            inputs["predictions"], inputs["references"], inputs.get("empty_classes", "skip")
        )
        return {"mAP": value, "num_classes_evaluated": count}
    eer, threshold = module.compute_eer(inputs["predictions"], inputs["references"])
    return {"eer": eer, "eer_threshold": threshold}


def compute_classification_metrics(
    logits: Any,
    labels: Any,
    problem_type: str | None = None,
    *,
    threshold: float = 0.5,
    empty_classes: str = "skip",
    use_evaluate: bool = False,
) -> dict[str, float]:
    """All metrics that make sense for the task, as a flat dict of floats.

    Args:
        logits: `(N, C)` scores before softmax/sigmoid (tensor or array; a tuple from `Trainer` uses its first entry).
        labels: `(N,)` class ids (single-label) or `(N, C)` multi-hot (multi-label).
        problem_type: `"single_label_classification"`, `"multi_label_classification"` or `"regression"`; inferred
            from the shapes when `None`.
        threshold: sigmoid threshold of the multi-label F1.
        empty_classes: mAP handling of classes without positives (`"skip"` or `"zero"`).
        use_evaluate: compute through `evaluate.load(<local module>)` instead of calling the same numpy code directly.

    Returns:
        single-label: `accuracy`, `macro_f1`, and for 2 classes `eer` (score = softmax probability of class 1; NaN
        if the labels hold a single class);
        multi-label: `mAP`, `macro_f1` (sigmoid > `threshold`), and `accuracy` (argmax of the scores vs argmax of the
        labels, as the original Speech Commands evaluation) when every example has exactly one positive label;
        regression: `mse`, `mae`.
    """
    logits = _to_numpy(logits).astype(np.float64)
    labels = _to_numpy(labels)
    problem_type = problem_type or infer_problem_type(logits, labels)
    if problem_type == REGRESSION:
        diff = logits.reshape(-1) - labels.astype(np.float64).reshape(-1)
        return {"mse": float(np.mean(diff**2)), "mae": float(np.mean(np.abs(diff)))}
    if problem_type == SINGLE_LABEL:
        if labels.ndim == 2:  # soft / one-hot targets of a single-label task
            labels = labels.argmax(axis=-1)
        labels = labels.astype(np.int64).reshape(-1)
        predictions = logits.argmax(axis=-1)
        results = {}
        results.update(_compute("accuracy", use_evaluate, predictions=predictions, references=labels))
        results.update(_compute("macro_f1", use_evaluate, predictions=predictions, references=labels))
        if logits.shape[-1] == 2:  # NaN when a split lacks one of the classes (EER undefined)
            if len(np.unique(labels)) == 2:
                scores = _softmax(logits)[:, 1]
                results["eer"] = _compute("eer", use_evaluate, predictions=scores, references=labels)["eer"]
            else:
                results["eer"] = float("nan")
        return {key: float(value) for key, value in results.items()}
    if problem_type != MULTI_LABEL:
        raise ValueError(f"Unknown problem_type {problem_type!r}")
    if labels.ndim != 2 or labels.shape != logits.shape:
        raise ValueError(
            f"multi-label metrics need (N, C) multi-hot labels like the logits {logits.shape}, got {labels.shape}"
        )
    targets = (labels > 0.5).astype(np.int32)
    results = {}
    out = _compute("mean_average_precision", use_evaluate, predictions=logits, references=targets,
                   empty_classes=empty_classes)
    results["mAP"] = out["mAP"]
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    hard = (probabilities > threshold).astype(np.int32)
    results.update(_compute("macro_f1", use_evaluate, "multilabel" if use_evaluate else None,
                            predictions=hard, references=targets))
    if (targets.sum(axis=1) == 1).all():
        results.update(_compute("accuracy", use_evaluate, predictions=logits.argmax(axis=-1),
                                references=targets.argmax(axis=-1)))
    return {key: float(value) for key, value in results.items()}


__all__ = [
    "METRICS_DIR",
    "METRIC_NAMES",
    "load_metric",
    "metric_path",
    "resolve_metric_name",
    "accuracy",
    "macro_f1",
    "mean_average_precision",
    "average_precision_per_class",
    "equal_error_rate",
    "compute_classification_metrics",
    "infer_problem_type",
]
