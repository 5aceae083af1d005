"""Local `evaluate` metric modules (accuracy, macro-F1, mAP, EER): offline loading and agreement with scikit-learn."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from modeling_audiomosaic.metrics import (
    METRIC_NAMES,
    METRICS_DIR,
    accuracy,
    average_precision_per_class,
    compute_classification_metrics,
    equal_error_rate,
    load_metric,
    macro_f1,
    mean_average_precision,
    metric_path,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")
evaluate = pytest.importorskip("evaluate")


@pytest.fixture(autouse=True)
def _quiet_sklearn():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's "no positive class" / zero-division warnings
        yield


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(1234)


# ---------------------------------------------------------------------------------------------------- loading offline
def test_every_metric_is_a_self_contained_folder():
    for name in METRIC_NAMES:
        script = METRICS_DIR / name / f"{name}.py"
        assert script.is_file(), script
        text = script.read_text()
        assert "from ." not in text and "import ." not in text  # evaluate copies the single file


@pytest.mark.parametrize("name", list(METRIC_NAMES))
def test_evaluate_load_local_path_offline(name, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # the plain evaluate API with the folder path (no helper), from another working directory
    monkeypatch.chdir(tmp_path)
    metric = evaluate.load(str(metric_path(name)), keep_in_memory=True)
    assert isinstance(metric, evaluate.EvaluationModule)
    # the script path itself works too
    assert evaluate.load(str(metric_path(name) / f"{name}.py"), keep_in_memory=True).name == metric.name


def test_load_metric_aliases_and_errors():
    assert load_metric("mAP").name == load_metric("mean_average_precision").name
    assert load_metric("f1").name == "macro_f1"
    with pytest.raises(ValueError, match="Unknown metric"):
        load_metric("bleu")


# ------------------------------------------------------------------------------------------------------------ accuracy
def test_accuracy_matches_sklearn(rng):
    refs = rng.integers(0, 7, 500)
    preds = np.where(rng.random(500) < 0.6, refs, rng.integers(0, 7, 500))
    expected = sklearn_metrics.accuracy_score(refs, preds)
    assert accuracy(preds, refs) == pytest.approx(expected, abs=1e-12)
    out = load_metric("accuracy").compute(predictions=preds, references=refs)
    assert out["accuracy"] == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError):
        accuracy([1, 2], [1])


# ------------------------------------------------------------------------------------------------------------ macro F1
def test_macro_f1_single_label_matches_sklearn(rng):
    refs = rng.integers(0, 6, 300)
    preds = np.where(rng.random(300) < 0.5, refs, rng.integers(0, 8, 300))  # predicts classes 6, 7 never referenced
    preds[refs == 5] = 0  # class 5 never predicted correctly
    expected = sklearn_metrics.f1_score(refs, preds, average="macro")
    assert macro_f1(preds, refs) == pytest.approx(expected, abs=1e-12)
    assert load_metric("macro_f1").compute(predictions=preds, references=refs)["macro_f1"] == pytest.approx(expected)
    # an explicit label set (classes absent from both count as zero_division)
    labels = list(range(10))
    expected = sklearn_metrics.f1_score(refs, preds, average="macro", labels=labels, zero_division=0)
    assert macro_f1(preds, refs, labels=labels) == pytest.approx(expected, abs=1e-12)


def test_macro_f1_multilabel_matches_sklearn(rng):
    refs = (rng.random((200, 9)) < 0.2).astype(int)
    preds = (rng.random((200, 9)) < 0.2).astype(int)
    refs[:, 4] = 0
    preds[:, 4] = 0  # a column with no true and no predicted positives -> 0 (zero_division)
    expected = sklearn_metrics.f1_score(refs, preds, average="macro", zero_division=0)
    assert macro_f1(preds, refs) == pytest.approx(expected, abs=1e-12)
    out = load_metric("macro_f1", "multilabel").compute(predictions=preds, references=refs)
    assert out["macro_f1"] == pytest.approx(expected, abs=1e-12)


# ----------------------------------------------------------------------------------------------------------------- mAP
def test_average_precision_matches_sklearn_with_ties(rng):
    scores = rng.normal(size=(400, 12)).round(1)  # many tied scores
    targets = (rng.random((400, 12)) < 0.1).astype(int)
    targets[:, 0] = 1  # every example positive
    targets[0, 1], targets[1:, 1] = 1, 0  # a single positive
    ap = average_precision_per_class(scores, targets)
    for c in range(12):
        assert ap[c] == pytest.approx(sklearn_metrics.average_precision_score(targets[:, c], scores[:, c]), abs=1e-12)


def test_map_classes_without_positives(rng):
    scores = rng.normal(size=(300, 10))
    targets = (rng.random((300, 10)) < 0.15).astype(int)
    targets[:, [2, 7]] = 0  # no positives
    per_class = [sklearn_metrics.average_precision_score(targets[:, c], scores[:, c]) for c in range(10)]
    # default "skip": mean over the 8 classes that have positives
    skip = np.mean([per_class[c] for c in range(10) if c not in (2, 7)])
    assert mean_average_precision(scores, targets) == pytest.approx(skip, abs=1e-12)
    out = load_metric("mAP").compute(predictions=scores, references=targets)
    assert out["num_classes_evaluated"] == 8
    assert out["mAP"] == pytest.approx(skip, abs=1e-6)  # evaluate stores the scores as float32
    # "zero": the original / sklearn macro behaviour (AP 0 for such classes)
    zero = sklearn_metrics.average_precision_score(targets, scores, average="macro")
    assert per_class[2] == 0.0 and np.mean(per_class) == pytest.approx(zero)
    assert mean_average_precision(scores, targets, empty_classes="zero") == pytest.approx(zero, abs=1e-12)
    assert np.isnan(average_precision_per_class(scores, targets)[2])
    with pytest.raises(ValueError, match="no class has a positive"):
        mean_average_precision(scores, np.zeros_like(targets))


# ----------------------------------------------------------------------------------------------------------------- EER
def _eer_reference(scores, labels):
    """Classic anti-spoofing EER: root of 1 - x - TPR(x) on sklearn's full ROC polyline."""
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq

    fpr, tpr, _ = sklearn_metrics.roc_curve(labels, scores, drop_intermediate=False)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0, xtol=1e-14)


def _eer_bruteforce_bounds(scores, labels):
    """Brute force over every threshold: the EER lies between the best min(FPR, FNR)-side and max-side values."""
    labels = np.asarray(labels).astype(bool)
    best = np.inf
    for t in np.concatenate([np.unique(scores), [np.inf]]):
        accepted = scores >= t
        fpr = np.mean(accepted[~labels])
        fnr = np.mean(~accepted[labels])
        best = min(best, max(fpr, fnr))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eer_matches_roc_reference(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random(257) < 0.4).astype(int)
    scores = rng.normal(size=257) + 1.2 * labels
    if seed == 2:
        scores = scores.round(1)  # ties
    eer = equal_error_rate(scores, labels)
    assert eer == pytest.approx(_eer_reference(scores, labels), abs=1e-9)
    assert eer <= _eer_bruteforce_bounds(scores, labels) + 1e-12
    out = load_metric("eer").compute(predictions=scores, references=labels)
    assert out["eer"] == pytest.approx(eer, abs=1e-6)


def test_eer_edge_cases():
    assert equal_error_rate([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 0.0  # separable
    assert equal_error_rate([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 1.0  # inverted
    assert equal_error_rate([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == pytest.approx(0.5)  # uninformative
    assert equal_error_rate([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.5)
    assert equal_error_rate([3, 1, 2], ["b", "a", "b"], pos_label="b") == 0.0
    with pytest.raises(ValueError, match="positive and negative"):
        equal_error_rate([0.1, 0.2], [1, 1])


# ----------------------------------------------------------------------------------- compute_classification_metrics
def test_compute_classification_metrics_single_label(rng):
    logits = rng.normal(size=(120, 5))
    labels = rng.integers(0, 5, 120)
    fast = compute_classification_metrics(logits, labels, "single_label_classification")
    slow = compute_classification_metrics(logits, labels, "single_label_classification", use_evaluate=True)
    preds = logits.argmax(-1)
    assert set(fast) == {"accuracy", "macro_f1"}
    assert fast["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(labels, preds))
    assert fast["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(labels, preds, average="macro"))
    assert slow == pytest.approx(fast)
    # Trainer may hand a tuple (logits, pooled_output); problem type inferred from the shapes
    assert compute_classification_metrics((logits, np.zeros((120, 3))), labels) == pytest.approx(fast)


def test_compute_classification_metrics_binary_has_eer(rng):
    labels = rng.integers(0, 2, 200)
    logits = np.stack([np.zeros(200), rng.normal(size=200) + labels], axis=1)
    out = compute_classification_metrics(logits, labels)
    probability = 1 / (1 + np.exp(-logits[:, 1]))  # softmax[:, 1] for [0, z]
    assert out["eer"] == pytest.approx(_eer_reference(probability, labels), abs=1e-9)
    assert compute_classification_metrics(logits, labels, use_evaluate=True) == pytest.approx(out, abs=1e-6)


def test_compute_classification_metrics_multi_label(rng):
    logits = rng.normal(size=(150, 6))
    targets = (rng.random((150, 6)) < 0.3).astype(np.float32)
    out = compute_classification_metrics(logits, targets, "multi_label_classification")
    assert set(out) == {"mAP", "macro_f1"}  # rows with 0 or 2+ labels: no top-1 accuracy
    assert out["mAP"] == pytest.approx(sklearn_metrics.average_precision_score(targets, logits, average="macro"))
    hard = (logits > 0).astype(int)
    assert out["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(targets, hard, average="macro", zero_division=0))
    slow = compute_classification_metrics(logits, targets, "multi_label_classification", use_evaluate=True)
    assert slow == pytest.approx(out, abs=1e-6)
    # one positive per row (Speech Commands with BCE): accuracy as the original (argmax vs argmax)
    one_hot = np.eye(6, dtype=np.float32)[rng.integers(0, 6, 150)]
    out = compute_classification_metrics(logits, one_hot, "multi_label_classification")
    assert out["accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == one_hot.argmax(-1)))


def test_metrics_work_without_network_in_a_fresh_process(tmp_path):
    """`evaluate.load(<local folder>)` in a new interpreter with the hub forced offline and an empty modules cache."""
    import subprocess
    import sys

    code = (
        "import evaluate, sys;"
        f"m = evaluate.load({str(metric_path('mAP'))!r});"
        "print(m.compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[[1, 0], [0, 1]])['mAP'])"
    )
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    dead = "http://127.0.0.1:9"  # any HTTP request would fail
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path), HTTPS_PROXY=dead,
               HTTP_PROXY=dead, https_proxy=dead, http_proxy=dead)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "1.0"


def test_binary_eer_is_nan_when_a_class_is_missing():
    out = compute_classification_metrics(np.array([[0.2, 0.8], [0.9, 0.1]]), np.array([1, 1]))
    assert np.isnan(out["eer"]) and out["accuracy"] == 0.5
