# Copyright 2026 The AudioMosaic for Transformers authors. Licensed under the Apache License, Version 2.0.
"""Probing a frozen encoder: freezing, cached probe inputs, and linear probes by logistic regression.

* **Freezing** ([`freeze_for_probing`]): AudioMosaic's own `freeze_encoder()` (only `fc_norm`, the probe modules and
  the classifier train; the frozen encoder stays in eval mode), or the backbone of any other
  `...ForAudioClassification` model.
* **Probing on cached embeddings**: with a frozen encoder in eval mode every probe head of
  `AudioMosaicForAudioClassification` is a function of a few pooled vectors per clip. The model splits its classifier
  into `model.probe_inputs(...)` (computed once per clip here: [`extract_probe_features`], [`compute_probe_features`])
  and `model.probe_head()` (its own head, sharing its parameters, trained on them; the table of what is cached per head
  is in `AudioMosaicForAudioClassification`'s docstring).
* **Logistic-regression probes** on fixed embeddings ([`LogisticRegressionLBFGS`], [`logistic_regression_probe`],
  [`layer_sweep_probe`]): scikit-learn's L2-regularised multinomial objective solved with full-batch L-BFGS in torch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import logging

logger = logging.get_logger(__name__)


# ----------------------------------------------------------------------------------------------------------------------
# Freezing
# ----------------------------------------------------------------------------------------------------------------------
def is_audiomosaic_classifier(model: nn.Module) -> bool:
    """Whether `model` is an AudioMosaic model with its encoder under `model.audiomosaic`."""
    config = getattr(model, "config", None)
    return getattr(config, "model_type", None) == "audiomosaic" and hasattr(model, "audiomosaic")


def freeze_for_probing(model: nn.Module) -> list[str]:
    """Freeze the encoder for probing and return the names of the parameters left trainable.

    AudioMosaic: `model.freeze_encoder()` (keeps `fc_norm`, the probe modules and the classifier trainable; the model's
    `train()` then keeps the encoder in eval mode: no drop-path, no dropout). Other `...ForAudioClassification` models:
    every parameter of the backbone (`model.base_model_prefix`) is frozen, the rest (their head) stays trainable.
    """
    if hasattr(model, "freeze_encoder") and is_audiomosaic_classifier(model):
        model.freeze_encoder()
    else:
        backbone = getattr(model, getattr(model, "base_model_prefix", ""), None)
        if backbone is None or backbone is model:
            raise ValueError(f"cannot find the backbone of {type(model).__name__} to freeze")
        for param in backbone.parameters():
            param.requires_grad = False
    trainable = [name for name, param in model.named_parameters() if param.requires_grad]
    if not trainable:
        raise ValueError("freezing left no trainable parameter")
    return trainable


# ----------------------------------------------------------------------------------------------------------------------
# Cached probe inputs
# ----------------------------------------------------------------------------------------------------------------------
def probe_feature_shape(config: Any) -> tuple[int, int]:
    """`(entries, hidden_size)` of the cached probe inputs of `config.classifier_head`."""
    entries = config.num_hidden_layers + 1 if config.classifier_head in ("weighted_sum", "attentive") else 1
    return entries, config.hidden_size


@torch.no_grad()
def extract_probe_features(
    model: nn.Module, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """`model.probe_inputs(...)` of an `AudioMosaicForAudioClassification` as float32 `(B, K, D)`, computed in eval mode
    (no token drop, no drop-path, as in the original probing protocol); the model's mode is restored afterwards."""
    if not is_audiomosaic_classifier(model) or not hasattr(model, "probe_inputs"):
        raise TypeError(f"cached probe inputs need an AudioMosaicForAudioClassification, got {type(model).__name__}")
    was_training = model.training
    model.eval()
    try:
        features = model.probe_inputs(input_values, attention_mask=attention_mask)
    finally:
        model.train(was_training)
    return features.float()


class CachedFeatureDataset(torch.utils.data.Dataset):
    """`{"probe_inputs": (K, D) float tensor, "labels": ...}` items over precomputed probe inputs (the keyword of
    `model.probe_head()`'s forward, so `Trainer` keeps the column)."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor | None) -> None:
        if labels is not None and len(labels) != len(features):
            raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
        self.features = features
        self.labels = labels

    def __len__(self) -> int:
        return self.features.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"probe_inputs": self.features[index]}
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item


def collate_cached_features(items: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack [`CachedFeatureDataset`] items into a batch for `model.probe_head()`."""
    batch = {"probe_inputs": torch.stack([item["probe_inputs"] for item in items])}
    if "labels" in items[0]:
        batch["labels"] = torch.stack([torch.as_tensor(item["labels"]) for item in items])
    return batch


@torch.no_grad()
def compute_probe_features(
    model: nn.Module,
    dataset: Any,
    collator: Callable[[list], Mapping[str, Any]],
    batch_size: int = 32,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    description: str = "features",
) -> CachedFeatureDataset:
    """Run the frozen encoder once over `dataset` (collated by `collator`, no augmentation) and return a
    [`CachedFeatureDataset`] of [`extract_probe_features`] outputs (kept on the CPU) with the collated labels."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator,
                                         num_workers=num_workers)
    features, labels = [], []
    for step, batch in enumerate(loader):
        mask = batch.get("attention_mask")
        features.append(
            extract_probe_features(
                model, batch["input_values"].to(device), None if mask is None else mask.to(device)
            ).cpu()
        )
        if "labels" in batch:
            labels.append(torch.as_tensor(batch["labels"]))
        if step % 50 == 0:
            logger.info(f"cached {description}: batch {step + 1}/{len(loader)}")
    return CachedFeatureDataset(torch.cat(features), torch.cat(labels) if labels else None)


# ----------------------------------------------------------------------------------------------------------------------
# Logistic-regression probes
# ----------------------------------------------------------------------------------------------------------------------
class LogisticRegressionLBFGS:
    """L2-regularised multinomial logistic regression (scikit-learn's objective and `C` convention), full-batch L-BFGS
    in torch (float64).

    It minimises scikit-learn's `LogisticRegression` objective, `C * sum_i CE(x_i, y_i) + ||W||^2 / 2` (bias not
    penalised), so it reaches the same solution (tests/test_probe_lr.py checks coefficients and predictions against
    scikit-learn), but it is one to two orders of magnitude faster on the probe sizes of this project (a few thousand
    clips, a few hundred dimensions): scikit-learn's lbfgs spends tens of milliseconds per iteration in its threaded
    loss on 2 busy cores, and large `C` needs hundreds of iterations.

    It mimics the parts of the scikit-learn API the probes use: `fit`, `predict`, `predict_proba`, `score`, `coef_`
    `(num_classes, dim)`, `intercept_`, `classes_`, `n_iter_`. Unlike scikit-learn, two classes also get two rows (the
    multinomial parametrisation), which folds directly into a `num_classes`-way linear head.

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

    def fit(self, X, y) -> LogisticRegressionLBFGS:
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


def logistic_regression_probe(train_x, train_y, val_x, val_y, test_x, test_y, seed: int = 0,
                              cs: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)) -> dict:
    """Standardised features + multinomial logistic regression ([`LogisticRegressionLBFGS`]); C chosen on the
    validation split, swept upwards with warm starts. `seed` is kept for the call signature: the solver is
    deterministic. Needs scikit-learn (its `StandardScaler`).

    Returns:
        `{"validation_accuracy", "test_accuracy", "C", "scaler", "classifier"}` of the selected C.
    """
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    train_x, val_x, test_x = (scaler.transform(x) for x in (train_x, val_x, test_x))
    best, model = None, LogisticRegressionLBFGS(warm_start=True)
    for c in sorted(cs):
        model.C = float(c)
        model.fit(train_x, train_y)
        val_acc = model.score(val_x, val_y)
        if best is None or val_acc > best[0]:
            best = (val_acc, c, copy.deepcopy(model))
    val_acc, c, clf = best
    return {"validation_accuracy": val_acc, "test_accuracy": clf.score(test_x, test_y), "C": c, "scaler": scaler,
            "classifier": clf}


def layer_sweep_probe(features: dict[str, np.ndarray], labels: dict[str, list], seed: int = 0,
                      layers: list[int] | None = None, on_layer: Callable[[], Any] | None = None) -> dict:
    """Linear probes on every block's pooled output (`features[split]` is `(N, num_layers + 1, D)` from
    `AudioMosaicEmbedder(layer="all")`; index 0 = embeddings, i = block i); the layer AND C are chosen on the
    validation split, as AudioMosaic's layer-probe sweep; the test split is read once per layer for the record.

    `on_layer` is called after each layer's probe (progress bars).

    Returns the best probe (with `"layer"`), the last block's probe (`"last"`), and `per_layer` accuracies.
    """
    count = next(iter(features.values())).shape[1]
    layers = list(range(1, count)) if layers is None else layers
    per_layer, best, last = {}, None, None
    for layer in layers:
        probe = logistic_regression_probe(
            features["train"][:, layer], labels["train"], features["validation"][:, layer], labels["validation"],
            features["test"][:, layer], labels["test"], seed=seed,
        )
        probe["layer"] = layer
        per_layer[layer] = {"validation_accuracy": probe["validation_accuracy"],
                            "test_accuracy": probe["test_accuracy"]}
        if best is None or probe["validation_accuracy"] > best["validation_accuracy"]:
            best = probe
        if layer == count - 1:
            last = probe
        if on_layer is not None:
            on_layer()
    return {"best": best, "last": last, "per_layer": per_layer}


__all__ = [
    "CachedFeatureDataset",
    "LogisticRegressionLBFGS",
    "collate_cached_features",
    "compute_probe_features",
    "extract_probe_features",
    "freeze_for_probing",
    "is_audiomosaic_classifier",
    "layer_sweep_probe",
    "logistic_regression_probe",
    "probe_feature_shape",
]
