"""Utility: train on synthetic, test on real held-out rows (TSTR), next to train on real, test on real (TRTR)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score

from llmsynth.data.schema import Schema
from llmsynth.errors import DataError
from llmsynth.evaluate.features import classifier_frames, is_continuous, typed


def _roc_auc(model, features: pd.DataFrame, labels: pd.Series) -> float:
    """Binary: the positive class's score; several classes: one-vs-rest macro average. A model trained on data
    that lacks a class gives that class a score of 0."""
    probabilities = pd.DataFrame(model.predict_proba(features), columns=model.classes_, index=labels.index)
    classes = sorted(labels.unique())
    if len(classes) < 2:
        return float("nan")
    probabilities = probabilities.reindex(columns=classes, fill_value=0.0)
    if len(classes) == 2:
        return float(roc_auc_score(labels == classes[1], probabilities[classes[1]]))
    normalized = probabilities.div(probabilities.sum(axis=1).replace(0, 1), axis=0)
    return float(roc_auc_score(labels, normalized, multi_class="ovr", labels=classes))


def tstr(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, target: str,
         seed: int = 0) -> dict[str, float | str]:
    """Gradient boosting fitted on synthetic rows and on training rows, both scored on the holdout. The ratio is
    ROC AUC synthetic / real for a categorical target, R² synthetic / real for a numeric one."""
    if target not in schema.names:
        raise DataError(f"target column {target!r} is not in the real table; its columns are {schema.names}")
    column = schema.column(target)
    if not column.learned:
        raise DataError(f"target column {target!r} is a {column.kind} column, which is never learned; "
                        "pick a categorical or numeric column")
    frames = [typed(t, schema) for t in (train, holdout, synthetic)]
    frames = [f[f[target].notna()] for f in frames]
    if any(len(f) < 2 for f in frames):
        raise DataError(f"target column {target!r} has fewer than 2 values in one of train, holdout, synthetic")
    features = classifier_frames(frames, schema, drop=target)
    labels = [f[target] for f in frames]
    regression = is_continuous(column)
    if regression:
        labels = [values.astype("int64").astype(float) if values.dtype.kind == "M" else values for values in labels]
    figures: dict[str, float | str] = {"target": target, "task": "regression" if regression else "classification"}
    for source, index in (("real", 0), ("synthetic", 2)):
        if regression:
            model = HistGradientBoostingRegressor(categorical_features="from_dtype", random_state=seed)
            model.fit(features[index], labels[index])
            figures[f"{source}_r2"] = float(r2_score(labels[1], model.predict(features[1])))
            continue
        if labels[index].nunique() < 2:  # a generator that emits one class: predicting it is all one can learn
            predicted = np.full(len(labels[1]), labels[index].iloc[0], dtype=object)
            figures[f"{source}_accuracy"] = float(accuracy_score(labels[1], predicted))
            figures[f"{source}_roc_auc"] = 0.5
            continue
        model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
        model.fit(features[index], labels[index])
        figures[f"{source}_accuracy"] = float(accuracy_score(labels[1], model.predict(features[1])))
        figures[f"{source}_roc_auc"] = _roc_auc(model, features[1], labels[1])
    score = "r2" if regression else "roc_auc"
    real_score = figures[f"real_{score}"]
    figures["ratio"] = float(figures[f"synthetic_{score}"] / real_score) if real_score > 0 else float("nan")
    return figures
