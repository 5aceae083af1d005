"""Multinomial logistic regression for linear probes, solved with full-batch L-BFGS in torch (float64).

It minimises scikit-learn's `LogisticRegression` objective, `C * sum_i CE(x_i, y_i) + ||W||^2 / 2` (bias not
penalised), so it reaches the same solution (tests/test_probe_lr.py checks coefficients and predictions against
scikit-learn), but it is one to two orders of magnitude faster on the probe sizes of this project (a few thousand
clips, a few hundred dimensions): scikit-learn's lbfgs spends tens of milliseconds per iteration in its threaded loss
on 2 busy cores, and large `C` needs hundreds of iterations.

The estimator mimics the parts of the scikit-learn API the probes use: `fit`, `predict`, `predict_proba`, `coef_`
`(num_classes, dim)`, `intercept_`, `classes_`, `n_iter_`. Unlike scikit-learn, two classes also get two rows
(the multinomial parametrisation), which folds directly into a `num_classes`-way linear head.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class LogisticRegressionLBFGS:
    """L2-regularised multinomial logistic regression (scikit-learn's objective and `C` convention).

    Args:
        C: inverse regularisation strength (larger = weaker penalty), as in scikit-learn.
        max_iter: L-BFGS iteration cap.
        tol: stop when the largest gradient entry of the per-sample averaged objective falls below `tol` (the
            criterion of scikit-learn's lbfgs, whose default is 1e-4).
        warm_start: start the next `fit` from the current solution (useful when sweeping `C` upwards).
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-5, warm_start: bool = False) -> None:
        if C <= 0:
            raise ValueError(f"C must be > 0, got {C}.")
        self.C, self.max_iter, self.tol, self.warm_start = float(C), int(max_iter), float(tol), warm_start
        self.coef_: np.ndarray | None = None
        self.intercept_: np.ndarray | None = None

    def fit(self, X, y) -> "LogisticRegressionLBFGS":
        x = torch.as_tensor(np.asarray(X), dtype=torch.float64)
        if x.ndim != 2 or not torch.isfinite(x).all():
            raise ValueError(f"X must be a finite 2-D array, got shape {tuple(x.shape)}.")
        labels = np.asarray(y)
        if labels.shape[0] != x.shape[0]:
            raise ValueError(f"X has {x.shape[0]} rows but y has {labels.shape[0]} labels.")
        classes, target = np.unique(labels, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"Logistic regression needs at least 2 classes, got {list(classes)}.")
        n, dim = x.shape
        target_t = torch.as_tensor(target, dtype=torch.long)
        reuse = (self.warm_start and self.coef_ is not None and self.coef_.shape == (len(classes), dim)
                 and np.array_equal(getattr(self, "classes_", None), classes))
        weight = torch.as_tensor(self.coef_.T.copy() if reuse else np.zeros((dim, len(classes))), dtype=torch.float64)
        bias = torch.as_tensor(self.intercept_.copy() if reuse else np.zeros(len(classes)), dtype=torch.float64)
        weight.requires_grad_(True)
        bias.requires_grad_(True)
        penalty = 1.0 / (2.0 * self.C * n)  # the objective divided by C * n: same minimiser, better scaled
        optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=self.max_iter, tolerance_grad=self.tol,
                                      tolerance_change=1e-14, history_size=20, line_search_fn="strong_wolfe")
        evaluations = 0

        def closure() -> torch.Tensor:
            nonlocal evaluations
            evaluations += 1
            optimizer.zero_grad()
            loss = F.cross_entropy(x @ weight + bias, target_t) + penalty * (weight * weight).sum()
            loss.backward()
            return loss

        threads = torch.get_num_threads()
        if n * dim * len(classes) < 50_000_000:  # small problems: one thread avoids spin-waiting on busy cores
            torch.set_num_threads(1)
        try:
            optimizer.step(closure)
        finally:
            torch.set_num_threads(threads)
        state = optimizer.state[optimizer._params[0]]
        self.n_iter_ = np.array([int(state.get("n_iter", evaluations))])
        self.classes_ = classes
        self.coef_ = weight.detach().T.contiguous().numpy()
        self.intercept_ = bias.detach().numpy().copy()
        return self

    def decision_function(self, X) -> np.ndarray:
        if self.coef_ is None:
            raise RuntimeError("Call fit() first.")
        return np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        logits = self.decision_function(X)
        logits -= logits.max(axis=1, keepdims=True)
        prob = np.exp(logits)
        return prob / prob.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(axis=1)]

    def score(self, X, y) -> float:
        return float((self.predict(X) == np.asarray(y)).mean())
