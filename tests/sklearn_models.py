"""Two scikit-learn models on each of two of its shipped datasets, and their test-set outputs as
an evaluation pipeline saves them: ``predict_proba``, ``predict_log_proba`` (``-inf`` where a
random forest gives 0) and, for logistic regression, ``decision_function`` ((N) scores on the
binary set), with scikit-learn's own ``accuracy_score`` and ``log_loss`` of them to check."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class Outputs:
    name: str  # dataset-model
    predictions: dict[str, np.ndarray[Any, Any]]  # kind -> array, as the model gave it
    labels: np.ndarray[Any, Any]
    log_loss: float
    accuracy: float


@functools.cache
def outputs() -> tuple[Outputs, ...]:
    found = []
    for dataset, load in (("digits", load_digits), ("breast_cancer", load_breast_cancer)):
        x, y = load(return_X_y=True)
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.4, random_state=0)
        models = {
            "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
            "forest": RandomForestClassifier(n_estimators=50, random_state=0),
        }
        for model_name, model in models.items():
            model.fit(x_train, y_train)
            proba = model.predict_proba(x_test)
            with np.errstate(divide="ignore"):  # the forest's zeros: -inf, as scikit-learn gives
                predictions = {
                    "probabilities": proba,
                    "log_probabilities": model.predict_log_proba(x_test),
                }
            if hasattr(model, "decision_function"):
                predictions["logits"] = model.decision_function(x_test)
            found.append(
                Outputs(
                    f"{dataset}-{model_name}",
                    predictions,
                    y_test,
                    float(log_loss(y_test, proba, labels=model.classes_)),
                    float(accuracy_score(y_test, model.predict(x_test))),
                )
            )
    return tuple(found)
