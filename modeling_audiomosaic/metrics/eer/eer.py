# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Equal error rate of binary scores, as a local `evaluate` module (``evaluate.load("<path>/metrics/eer")``).

With "positive if score >= t", the false-positive rate FPR(t) and the false-negative rate FNR(t) = 1 - TPR(t) are
computed at every distinct score (plus t = +inf). FNR - FPR never increases as t decreases, so the ROC polyline
crosses FPR = FNR exactly once; the EER is the value at that crossing, interpolated linearly between the two ROC
points around it. This equals the classic anti-spoofing definition
``brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)`` on scikit-learn's ``roc_curve`` (tested), without scipy.
The reported ``eer_threshold`` is the score threshold of the ROC point closest to the crossing.

Self-contained on purpose: `evaluate` copies this single file into its modules cache.
"""

import numpy as np

try:  # only the Metric class needs evaluate/datasets; the functions work without them
    import datasets
    import evaluate
except ImportError:  # pragma: no cover - evaluate not installed
    datasets = evaluate = None

_DESCRIPTION = """
Equal error rate (EER): the error rate at the operating point where the false-positive and false-negative rates are
equal. Lower is better. Used for spoofing / deep-fake detection (e.g. EnvSDD).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): scores, higher = more likely positive (e.g. softmax probability of class 1).
    references (`list[int]`): binary labels.
    pos_label (`int`, defaults to 1): the label of the positive class.
Returns:
    eer (`float`, in [0, 1]), eer_threshold (`float`)
Examples:
    >>> import evaluate
    >>> metric = evaluate.load("modeling_audiomosaic/metrics/eer")
    >>> metric.compute(predictions=[0.1, 0.4, 0.35, 0.8], references=[0, 0, 1, 1])
    {'eer': 0.5, 'eer_threshold': 0.4...}  # scores pass through float32 in evaluate's Arrow table
"""


def roc_points(scores, labels, pos_label=1):
    """`(fpr, fnr, thresholds)` at t = +inf and at every distinct score, in decreasing-threshold order."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    positive = np.asarray(labels).reshape(-1) == pos_label
    if scores.shape != positive.shape:
        raise ValueError(f"scores ({scores.size}) and labels ({positive.size}) differ in length")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    num_pos = int(positive.sum())
    num_neg = int(positive.size - num_pos)
    if num_pos == 0 or num_neg == 0:
        raise ValueError(f"EER needs positive and negative examples (got {num_pos} positive, {num_neg} negative)")
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    sorted_positive = positive[order]
    closes = np.ones(scores.size, dtype=bool)
    closes[:-1] = sorted_scores[:-1] != sorted_scores[1:]
    tp = np.concatenate([[0.0], np.cumsum(sorted_positive, dtype=np.float64)[closes]])
    fp = np.concatenate([[0.0], np.cumsum(~sorted_positive, dtype=np.float64)[closes]])
    thresholds = np.concatenate([[np.inf], sorted_scores[closes]])
    return fp / num_neg, 1.0 - tp / num_pos, thresholds


def compute_eer(scores, labels, pos_label=1):
    """`(eer, threshold)`; see the module docstring."""
    fpr, fnr, thresholds = roc_points(scores, labels, pos_label)
    diff = fnr - fpr  # +1 at t = +inf, -1 at the lowest score; non-increasing
    index = int(np.argmax(diff <= 0))
    if diff[index] == 0 or index == 0:
        return float(fpr[index]), float(thresholds[index])
    before, after = diff[index - 1], diff[index]
    fraction = before / (before - after)
    eer = fpr[index - 1] + fraction * (fpr[index] - fpr[index - 1])
    threshold = thresholds[index] if fraction >= 0.5 else thresholds[index - 1]
    return float(eer), float(threshold)


if evaluate is not None:

    class EqualErrorRate(evaluate.Metric):
        """Binary equal error rate (see the module docstring)."""

        def _info(self):
            return evaluate.MetricInfo(
                description=_DESCRIPTION,
                citation="",
                inputs_description=_KWARGS_DESCRIPTION,
                features=datasets.Features(
                    {"predictions": datasets.Value("float64"), "references": datasets.Value("int64")}
                ),
                format="numpy",
                reference_urls=["https://en.wikipedia.org/wiki/Biometrics#Performance"],
            )

        def _compute(self, predictions, references, pos_label=1):
            eer, threshold = compute_eer(predictions, references, pos_label=pos_label)
            return {"eer": eer, "eer_threshold": threshold}
