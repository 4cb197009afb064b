"""Is a fitted ensemble's honest AUC above a single model's? A paired patient bootstrap.

Recomputes the ensemble's cross-fitted validation probabilities exactly as `cxrq ensemble fit`
did (same members, folds, seed and selection), scores the model on the same images, and
resamples patients with replacement to put a 95% interval on AUC(ensemble) - AUC(model).

    CXRQ_DATABASE_URL=sqlite:///results.db python scripts/ensemble_vs_model.py cnn-seeds 2
"""

from __future__ import annotations

import sys

from db.lookups import resolve_ensemble, resolve_model
from db.schema import Model
from db.session import session_scope
from training.evaluation.metrics import paired_auc_bootstrap
from training.scoring.ensemble_fit import cross_fitted
from worker.ensemble_job import members_on, validation_items

N_BOOT = 2000


def main(ensemble_ref: str, model_ref: str) -> None:
    with session_scope() as s:
        e = resolve_ensemble(s, ensemble_ref)
        if e.method != "stacking":
            sys.exit(f"ensemble {e.name!r} is not fitted; run cxrq ensemble fit {e.name} first")
        ids = e.params.get("candidates") or [m["model_id"] for m in e.members]
        folds, seed = e.params["folds"], e.params["seed"]
        select = "member selection" in e.params["validation"]
        model_id = resolve_model(s, model_ref).id
        items, _ = validation_items([s.get(Model, i) for i in [*ids, model_id]])
    members = members_on([*ids, model_id], items)
    probs, y, groups = members.probs, members.y, members.groups
    oof, _, _ = cross_fitted(probs[:-1], y, groups, folds, seed, select)
    result = paired_auc_bootstrap(y, oof, probs[-1], groups, n_boot=N_BOOT)
    print(
        f"AUC({e.name}) - AUC(model {model_id}) = {result['diff']:+.5f}, 95% patient-bootstrap "
        f"interval [{result['low']:+.5f}, {result['high']:+.5f}], "
        f"ensemble >= model in {result['p_a_at_least_b']:.0%} of {N_BOOT} resamples"
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
