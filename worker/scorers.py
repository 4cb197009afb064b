"""A job's scorer made servable: the stored models it names, loaded (and cached on disk by
content hash), in the training.scoring.chunk.Scorer that the one scoring call takes."""

from __future__ import annotations

from db.scoring import ScorerRef
from training.scoring.chunk import Scorer
from training.scoring.site import SiteOperatingPoint
from worker.model_cache import load_bundle


def serving_scorer(ref: ScorerRef) -> Scorer:
    return Scorer(
        bundles=[load_bundle(m) for m in ref.model_ids],
        keys=ref.member_keys,
        ensemble_key=ref.key if ref.ensemble_id is not None else None,
        method=ref.method,
        weights=list(ref.weights),
        bias=ref.bias,
        threshold=ref.threshold,
        prevalence=ref.prevalence,
        site=None
        if ref.site_profile is None
        else SiteOperatingPoint.from_profile(ref.site_profile_id, ref.site_profile),
    )
