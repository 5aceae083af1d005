# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Accuracy, as a local `evaluate` module (loads offline: ``evaluate.load("<path>/metrics/accuracy")``).

Self-contained on purpose: `evaluate` copies this single file into its modules cache, so it may import only
installed libraries (numpy, evaluate, datasets), never sibling files.
"""

import numpy as np

try:  # only the Metric class needs evaluate/datasets; `compute_accuracy` works without them
    import datasets
    import evaluate
except ImportError:  # pragma: no cover - evaluate not installed
    datasets = evaluate = None

_DESCRIPTION = """
Accuracy = fraction of examples whose predicted class id equals the reference class id (the argmax of the logits for
single-label classification). Same definition as `sklearn.metrics.accuracy_score` for 1-D class ids.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids.
    references (`list[int]`): reference class ids.
    normalize (`bool`, defaults to `True`): return the fraction (else the number) of correct examples.
    sample_weight (`list[float]`, *optional*): per-example weights.
Returns:
    accuracy (`float`): in [0, 1] (or a count with `normalize=False`).
Examples:
    >>> import evaluate
    >>> metric = evaluate.load("modeling_audiomosaic/metrics/accuracy")
    >>> metric.compute(predictions=[0, 1, 2, 2], references=[0, 1, 1, 2])
    {'accuracy': 0.75}
"""


def compute_accuracy(predictions, references, normalize=True, sample_weight=None):
    """Fraction (or weighted count) of `predictions == references`; numpy only."""
    predictions = np.asarray(predictions).reshape(-1)
    references = np.asarray(references).reshape(-1)
    if predictions.shape != references.shape:
        raise ValueError(
            f"predictions ({predictions.shape[0]}) and references ({references.shape[0]}) differ in length"
        )
    if predictions.size == 0:
        raise ValueError("accuracy of an empty set is undefined")
    correct = (predictions == references).astype(np.float64)
    if sample_weight is None:
        return float(correct.mean() if normalize else correct.sum())
    weights = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    total = float((correct * weights).sum())
    return total / float(weights.sum()) if normalize else total


if evaluate is not None:

    class Accuracy(evaluate.Metric):
        """Accuracy of class-id predictions (see the module docstring)."""

        def _info(self):
            return evaluate.MetricInfo(
                description=_DESCRIPTION,
                citation="",
                inputs_description=_KWARGS_DESCRIPTION,
                features=datasets.Features(
                    {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
                ),
                reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"],
            )

        def _compute(self, predictions, references, normalize=True, sample_weight=None):
            return {"accuracy": compute_accuracy(predictions, references, normalize, sample_weight)}
