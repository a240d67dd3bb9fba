"""The plan is the contract between the UI and the engine: it round-trips and refuses nonsense by field."""
from __future__ import annotations

import pytest

from tlcore.errors import PlanError
from tlcore.train.plan import Plan


def test_default_plan_is_the_offline_default():
    p = Plan()
    assert (p.dataset, p.model, p.strategy) == ("digits", "efficientnet_lite0", "feature_extractor")


def test_plan_json_round_trips_every_field():
    p = Plan(strategy="gradual_unfreeze", epochs=4, lr=3e-3, factor=2.0, schedule="one_cycle", per_class=20,
             imbalance=3.0, augment=True, optimizer="sgd", image_size=64, seed=7, bn="train", head="mlp")
    assert Plan.from_json(p.to_json()) == p


@pytest.mark.parametrize("field, value", [
    ("dataset", "no_such_data"),
    ("model", "resnet1000"),
    ("strategy", "magic"),
    ("epochs", 0),
    ("lr", -0.1),
    ("lr", 5.0),
    ("lr", float("nan")),
    ("batch_size", 0),
    ("factor", 0.5),
    ("cut_frac", 1.5),
    ("ratio", 0.0),
    ("image_size", 8),
    ("image_size", 4096),
    ("imbalance", 0.5),
    ("imbalance", 1e6),
    ("dataset_path", 5),
    ("per_class", 1),
    ("schedule", "sawtooth"),
    ("optimizer", "adam9000"),
    ("device", "tpu"),
    ("epochs", "three"),
])
def test_invalid_plan_names_the_field(field, value):
    with pytest.raises(PlanError) as err:
        Plan(**{field: value})
    assert err.value.field == field
    assert str(err.value).startswith(field)


def test_fine_tune_top_cannot_ask_for_more_groups_than_the_model_has():
    from tlcore.models import MODELS

    n = len(MODELS["efficientnet_lite0"].groups)
    Plan(strategy="fine_tune_top", top_groups=n)
    with pytest.raises(PlanError) as err:
        Plan(strategy="fine_tune_top", top_groups=n + 1)
    assert err.value.field == "top_groups"


def test_sklearn_heads_need_frozen_features():
    Plan(strategy="feature_extractor", head="logreg")
    for bad, field in ((dict(strategy="fine_tune_all"), "head"), (dict(augment=True), "augment"),
                       (dict(bn="train"), "bn")):
        with pytest.raises(PlanError) as err:
            Plan(**{"strategy": "feature_extractor", "head": "linear_svm", **bad})
        assert err.value.field == field


def test_scratch_has_nothing_to_protect_so_every_group_gets_the_same_rate():
    assert Plan(strategy="scratch", factor=2.6).discriminative_factor == 1.0
    assert Plan(strategy="fine_tune_all", factor=2.6).discriminative_factor == 2.6


def test_unknown_json_key_names_itself():
    with pytest.raises(PlanError) as err:
        Plan.from_json('{"epochs": 2, "learning_rate": 0.1}')
    assert err.value.field == "learning_rate"
