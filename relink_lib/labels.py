"""The 14 CheXpert labels, in the order of the official label files."""

from __future__ import annotations

CHEXPERT_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)
"""Label column names exactly as in ``mimic-cxr-2.0.0-chexpert.csv`` and CheXpert Plus."""

LABEL_VALUES: frozenset[float] = frozenset({1.0, 0.0, -1.0})
"""Allowed non-missing label values: positive, negative, uncertain. Missing is NaN."""
