"""Classification metrics from a confusion matrix, defined for every edge case (no NaN, no warnings)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def f1_score(p: float, r: float) -> float:
    """Harmonic mean of precision and recall: dragged towards the smaller of the two."""
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def arithmetic_mean(p: float, r: float) -> float:
    return (p + r) / 2


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b != 0)


@dataclass(frozen=True)
class Report:
    classes: tuple[str, ...]
    accuracy: float
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    pr_mean: np.ndarray            # arithmetic mean of precision and recall, per class
    support: np.ndarray
    macro: dict[str, float]
    micro: dict[str, float]
    weighted: dict[str, float]
    notes: tuple[str, ...]

    def rows(self) -> list[dict]:
        return [{"class": c, "precision": float(p), "recall": float(r), "f1": float(f), "pr_mean": float(m),
                 "support": int(s)}
                for c, p, r, f, m, s in zip(self.classes, self.precision, self.recall, self.f1, self.pr_mean,
                                            self.support)]

    def averages(self) -> dict[str, dict[str, float]]:
        return {"macro": self.macro, "micro": self.micro, "weighted": self.weighted}


def report(confusion, classes) -> Report:
    cm = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(0).astype(np.float64)
    support = cm.sum(1)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support.astype(np.float64))
    f1 = _safe_div(2 * precision * recall, precision + recall)
    classes = tuple(str(c) for c in classes)
    notes = []
    for i, c in enumerate(classes):
        if predicted[i] == 0 and support[i] > 0:
            notes.append(f"class {c!r} was never predicted: its precision is set to 0")
        if support[i] == 0:
            notes.append(f"class {c!r} has no validation images: its recall is set to 0")
    total = cm.sum()
    acc = float(tp.sum() / total) if total else 0.0
    w = support / total if total else np.zeros(len(support))
    macro = {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())}
    # Single-label classification: micro P = micro R = micro F1 = accuracy.
    micro = {"precision": acc, "recall": acc, "f1": acc}
    weighted = {"precision": float((precision * w).sum()), "recall": float((recall * w).sum()),
                "f1": float((f1 * w).sum())}
    return Report(classes, acc, precision, recall, f1, (precision + recall) / 2, support, macro, micro, weighted,
                  tuple(notes))


def most_confused(confusion, classes, k: int = 5) -> list[tuple[str, str, int]]:
    """The k largest off-diagonal cells as (true, predicted, count), largest first."""
    cm = np.asarray(confusion).copy()
    np.fill_diagonal(cm, 0)
    order = np.argsort(cm, axis=None, kind="stable")[::-1][:k]
    out = []
    for flat in order:
        t, p = divmod(int(flat), cm.shape[1])
        if cm[t, p] > 0:
            out.append((str(classes[t]), str(classes[p]), int(cm[t, p])))
    return out
