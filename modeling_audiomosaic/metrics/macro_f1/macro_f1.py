# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Macro-averaged F1, as a local `evaluate` module (``evaluate.load("<path>/metrics/macro_f1")``; config name
``"multilabel"`` for multi-hot inputs).

Definition (identical to ``sklearn.metrics.f1_score(average="macro")`` with its default label set):

* per class c: ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)``; a class with ``2 TP + FP + FN = 0`` (never referenced and
  never predicted) gets ``zero_division`` (default 0.0, sklearn's value after its warning);
* single-label: the average runs over the classes that occur in the references **or** the predictions (sklearn's
  ``unique_labels``), unless ``labels`` is given;
* multi-label (multi-hot rows): the average runs over all columns.

Self-contained on purpose: `evaluate` copies this single file into its modules cache.
"""

import numpy as np

try:  # only the Metric class needs evaluate/datasets; `compute_macro_f1` works without them
    import datasets
    import evaluate
except ImportError:  # pragma: no cover - evaluate not installed
    datasets = evaluate = None

_DESCRIPTION = """
Unweighted mean over classes of the per-class F1 score (harmonic mean of precision and recall).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted class ids (`list[int]`), or multi-hot rows (`list[list[int]]`, config "multilabel").
    references: reference class ids, or multi-hot rows.
    labels (`list[int]`, *optional*): the classes to average over (single-label); default: every class present in the
        references or the predictions.
    zero_division (`float`, defaults to 0.0): F1 of a class with no true and no predicted positives.
Returns:
    macro_f1 (`float`)
Examples:
    >>> import evaluate
    >>> metric = evaluate.load("modeling_audiomosaic/metrics/macro_f1")
    >>> metric.compute(predictions=[0, 1, 2], references=[0, 1, 1])
    {'macro_f1': 0.5555555555555555}
"""


def _f1_from_counts(tp, fp, fn, zero_division):
    denominator = 2.0 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denominator > 0, 2.0 * tp / np.maximum(denominator, 1e-300), float(zero_division))
    return f1


def per_class_f1(predictions, references, labels=None, zero_division=0.0):
    """`(classes, f1 per class)`; see the module docstring for the class set."""
    predictions = np.asarray(predictions)
    references = np.asarray(references)
    if predictions.shape != references.shape:
        raise ValueError(f"predictions {predictions.shape} and references {references.shape} differ in shape")
    if predictions.size == 0:
        raise ValueError("F1 of an empty set is undefined")
    if references.ndim == 2:  # multi-hot
        pred = predictions > 0
        ref = references > 0
        tp = np.sum(pred & ref, axis=0).astype(np.float64)
        fp = np.sum(pred & ~ref, axis=0).astype(np.float64)
        fn = np.sum(~pred & ref, axis=0).astype(np.float64)
        classes = np.arange(references.shape[1])
        if labels is not None:
            classes = np.asarray(labels, dtype=np.int64)
            tp, fp, fn = tp[classes], fp[classes], fn[classes]
        return classes, _f1_from_counts(tp, fp, fn, zero_division)
    predictions = predictions.reshape(-1)
    references = references.reshape(-1)
    classes = np.unique(np.concatenate([references, predictions])) if labels is None else np.asarray(labels)
    pred = predictions[:, None] == classes[None, :]
    ref = references[:, None] == classes[None, :]
    tp = np.sum(pred & ref, axis=0).astype(np.float64)
    fp = np.sum(pred & ~ref, axis=0).astype(np.float64)
    fn = np.sum(~pred & ref, axis=0).astype(np.float64)
    return classes, _f1_from_counts(tp, fp, fn, zero_division)


def compute_macro_f1(predictions, references, labels=None, zero_division=0.0):
    """Macro-averaged F1 (numpy only); see the module docstring."""
    _, f1 = per_class_f1(predictions, references, labels=labels, zero_division=zero_division)
    if f1.size == 0:
        raise ValueError("no classes to average over")
    return float(f1.mean())


if evaluate is not None:

    class MacroF1(evaluate.Metric):
        """Macro-averaged F1 (see the module docstring)."""

        def _info(self):
            if self.config_name == "multilabel":
                feature = datasets.Sequence(datasets.Value("int32"))
            else:
                feature = datasets.Value("int64")
            return evaluate.MetricInfo(
                description=_DESCRIPTION,
                citation="",
                inputs_description=_KWARGS_DESCRIPTION,
                features=datasets.Features({"predictions": feature, "references": feature}),
                reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"],
            )

        def _compute(self, predictions, references, labels=None, zero_division=0.0):
            return {"macro_f1": compute_macro_f1(predictions, references, labels=labels, zero_division=zero_division)}
