"""The score columns an evaluation stores, named once for db.store, db.reports and the CLI's
reports. Plain tuples in a module of their own: the CLI reads them without importing
SQLAlchemy, so `cxrq --help` stays instant. (training.evaluation.metrics names the same keys for the
dicts it returns; training never imports db.)"""

from __future__ import annotations

RATES = ("f1", "precision", "sensitivity", "specificity", "accuracy", "roc_auc")
COUNTS = ("tp", "fp", "tn", "fn", "threshold", "n")
SCORE_COLUMNS = (*RATES, *COUNTS)
# Bacterial vs viral over the PNEUMONIA images of known kind, VIRAL positive
# (training.evaluation.metrics.kind_scores); stored when the scores carry them.
KIND_COLUMNS = (
    "kind_accuracy",
    "kind_sensitivity",
    "kind_specificity",
    "kind_roc_auc",
    "kind_threshold",
    "kind_n",
)
# When not to trust a call (training.review), on each prediction row.
REVIEW_COLUMNS = (
    "ood_score",
    "anomaly_score",
    "confidence",
    "disagreement",
    "review_score",
    "review",
    "review_reasons",
)
# Every reason a row may give: the model's and the DICOM header's (lateral); the same as
# training.review.verdicts.ALL_REASONS.
REVIEW_REASONS = ("not-cxr", "anomaly", "low-confidence", "lateral")
# What a prediction row keeps of a DICOM header (training.data.dicom_identity).
IDENTITY_COLUMNS = ("sop_instance_uid", "patient_hash")
