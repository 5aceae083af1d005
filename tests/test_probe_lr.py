"""The probes' torch L-BFGS logistic regression reaches scikit-learn's solution (same objective and C convention)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from modeling_audiomosaic.probing import LogisticRegressionLBFGS, logistic_regression_probe


def problem(n=300, dim=20, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    y = rng.integers(0, classes, size=n)
    x = centres[y] + 1.5 * rng.normal(size=(n, dim))
    names = np.array([f"class_{i}" for i in range(classes)])
    return x, names[y]


def objective(coef, intercept, x, y, classes, C):
    logits = x @ coef.T + intercept
    logits -= logits.max(1, keepdims=True)
    log_prob = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    target = np.searchsorted(classes, y)
    return C * -log_prob[np.arange(len(y)), target].sum() + 0.5 * (coef ** 2).sum()


@pytest.mark.parametrize("C", [0.01, 1.0, 10.0])
def test_matches_scikit_learn(C):
    x, y = problem()
    ours = LogisticRegressionLBFGS(C=C, tol=1e-9, max_iter=5000).fit(x, y)
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=20000).fit(x, y)
    assert list(ours.classes_) == list(ref.classes_)
    # the bias is defined up to a common shift (softmax); compare it centred
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=2e-5 * max(1.0, np.abs(ref.coef_).max()))
    np.testing.assert_allclose(ours.intercept_ - ours.intercept_.mean(), ref.intercept_ - ref.intercept_.mean(),
                               atol=2e-4)
    assert objective(ours.coef_, ours.intercept_, x, y, ours.classes_, C) <= objective(
        ref.coef_, ref.intercept_, x, y, ref.classes_, C) + 1e-6
    np.testing.assert_array_equal(ours.predict(x), ref.predict(x))
    np.testing.assert_allclose(ours.predict_proba(x), ref.predict_proba(x), atol=1e-4)


def test_warm_start_reaches_the_same_solution():
    x, y = problem(seed=1)
    warm = LogisticRegressionLBFGS(C=0.1, warm_start=True, tol=1e-9, max_iter=5000).fit(x, y)
    warm.C = 3.0
    warm.fit(x, y)
    cold = LogisticRegressionLBFGS(C=3.0, tol=1e-9, max_iter=5000).fit(x, y)
    np.testing.assert_allclose(warm.coef_, cold.coef_, atol=1e-4)


def test_probe_selects_c_on_validation_and_reports_test():
    x, y = problem(n=600, seed=2)
    result = logistic_regression_probe(x[:300], y[:300], x[300:450], y[300:450], x[450:], y[450:])
    assert result["C"] in (0.01, 0.1, 1.0, 10.0)
    clf, scaler = result["classifier"], result["scaler"]
    assert result["test_accuracy"] == pytest.approx(float((clf.predict(scaler.transform(x[450:])) == y[450:]).mean()))
    assert result["validation_accuracy"] > 0.6  # well above chance (0.25)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="at least 2 classes"):
        LogisticRegressionLBFGS().fit(np.zeros((4, 2)), ["a"] * 4)
    with pytest.raises(ValueError, match="4 rows but y has 3"):
        LogisticRegressionLBFGS().fit(np.zeros((4, 2)), ["a", "b", "a"])
    with pytest.raises(ValueError, match="finite"):
        LogisticRegressionLBFGS().fit(np.full((2, 2), np.nan), ["a", "b"])
    with pytest.raises(ValueError, match="C must be > 0"):
        LogisticRegressionLBFGS(C=0)
