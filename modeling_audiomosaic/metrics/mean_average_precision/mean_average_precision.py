# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Mean average precision over classes (multi-label mAP, the AudioSet metric), as a local `evaluate` module
(``evaluate.load("<path>/metrics/mean_average_precision")``).

Per class c, with the examples sorted by decreasing score and tied scores forming one threshold,
``AP_c = sum_k (R_k - R_{k-1}) * P_k`` over the distinct thresholds k (precision ``P_k`` and recall ``R_k`` of "score
>= threshold_k"). This is exactly ``sklearn.metrics.average_precision_score`` (no interpolation), computed for all
classes at once. ``mAP = mean_c AP_c``.

**Classes without a positive example** have no defined AP. ``empty_classes="skip"`` (default) leaves them out of the
mean (the value reported is then the mean over the ``num_classes_evaluated`` classes that have positives).
``empty_classes="zero"`` counts them as AP = 0, which is what the original AudioMosaic/AudioMAE evaluation gets from
recent scikit-learn (``average_precision_score`` returns 0.0 with a warning for such a column, and the original
averages every column; ``sklearn.metrics.average_precision_score(y, s, average="macro")`` does the same). On AudioSet's
evaluation set every class has positives, so both agree there.

Self-contained on purpose: `evaluate` copies this single file into its modules cache.
"""

import numpy as np

try:  # only the Metric class needs evaluate/datasets; the functions work without them
    import datasets
    import evaluate
except ImportError:  # pragma: no cover - evaluate not installed
    datasets = evaluate = None

_DESCRIPTION = """
Mean over classes of the average precision of each class's scores against its binary (multi-hot) references.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): scores, one row per example, one column per class (logits, probabilities or
        any monotone transform: AP only depends on the ranking).
    references (`list[list[int]]`): multi-hot rows (1 = the class is present).
    empty_classes (`str`, defaults to "skip"): "skip" or "zero" for classes without positives (see the module doc).
Returns:
    mAP (`float`), num_classes_evaluated (`int`)
Examples:
    >>> import evaluate
    >>> metric = evaluate.load("modeling_audiomosaic/metrics/mean_average_precision")
    >>> metric.compute(predictions=[[0.9, 0.1], [0.2, 0.8], [0.6, 0.7]], references=[[1, 0], [0, 1], [0, 1]])
    {'mAP': 1.0, 'num_classes_evaluated': 2}
"""


def average_precision_per_class(scores, targets):
    """AP of every column of `scores` (N, C) against binary `targets` (N, C); NaN for columns without positives."""
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets)
    if scores.ndim == 1:
        scores, targets = scores[:, None], targets.reshape(-1, 1)
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must both be (examples, classes)")
    if scores.shape[0] == 0:
        raise ValueError("average precision of an empty set is undefined")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    positive = targets > 0
    order = np.argsort(-scores, axis=0, kind="stable")
    sorted_scores = np.take_along_axis(scores, order, axis=0)
    sorted_positive = np.take_along_axis(positive, order, axis=0)
    true_positives = np.cumsum(sorted_positive, axis=0, dtype=np.float64)
    ranks = np.arange(1, scores.shape[0] + 1, dtype=np.float64)[:, None]
    # the last row of each group of tied scores closes one threshold
    closes = np.ones(scores.shape, dtype=bool)
    closes[:-1] = sorted_scores[:-1] != sorted_scores[1:]
    tp_at_close = np.where(closes, true_positives, 0.0)
    # true positives at the previous threshold (tp is non-decreasing, so a running max of the closed values works)
    previous = np.zeros_like(tp_at_close)
    previous[1:] = np.maximum.accumulate(tp_at_close, axis=0)[:-1]
    gain = np.where(closes, true_positives - previous, 0.0)  # recall increment x number of positives
    num_positive = positive.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ap = (gain * (true_positives / ranks)).sum(axis=0) / num_positive
    ap[num_positive == 0] = np.nan
    return ap


def compute_mean_average_precision(scores, targets, empty_classes="skip"):
    """`(mAP, number of classes averaged)`; see the module docstring for `empty_classes`."""
    if empty_classes not in ("skip", "zero"):
        raise ValueError(f'empty_classes must be "skip" or "zero", got {empty_classes!r}')
    ap = average_precision_per_class(scores, targets)
    if empty_classes == "zero":
        return float(np.nan_to_num(ap, nan=0.0).mean()), int(ap.size)
    valid = ~np.isnan(ap)
    if not valid.any():
        raise ValueError("no class has a positive example: mAP is undefined")
    return float(ap[valid].mean()), int(valid.sum())


if evaluate is not None:

    class MeanAveragePrecision(evaluate.Metric):
        """Multi-label mean average precision (see the module docstring)."""

        def _info(self):
            return evaluate.MetricInfo(
                description=_DESCRIPTION,
                citation="",
                inputs_description=_KWARGS_DESCRIPTION,
                features=datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("float32")),
                        "references": datasets.Sequence(datasets.Value("int32")),
                    }
                ),
                reference_urls=[
                    "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.average_precision_score.html"
                ],
            )

        def _compute(self, predictions, references, empty_classes="skip"):
            value, count = compute_mean_average_precision(predictions, references, empty_classes=empty_classes)
            return {"mAP": value, "num_classes_evaluated": count}
