"""The risk engine follows the registry's `current` model without a restart, with SHAP reasons."""

from __future__ import annotations

import shutil
from typing import cast

import orjson
import redis

from equilibrate.features import store as feature_store
from equilibrate.features.compute import compute, format_profiles
from equilibrate.features.rebuild import fold_archive
from equilibrate.features.state import pack
from equilibrate.model import registry
from equilibrate.model.reasons import REASON_TEXT
from equilibrate.ops.stopping import StopFlag
from equilibrate.risk.engine import RiskEngine
from equilibrate.risk.keys import RISK_FIELDS, reasons_key
from equilibrate.settings import Settings
from equilibrate.storage import customer_registry
from tests.model.conftest import Trained


def _risk(client: redis.Redis, cid: str) -> dict[str, str]:
    row = cast(list[bytes | None], client.hmget(f"customer:{cid}", list(RISK_FIELDS)))
    return {k: v.decode() for k, v in zip(RISK_FIELDS, row, strict=True) if v is not None}


def test_a_newly_trained_model_is_picked_up_live(
    trained: Trained, settings: Settings, redis_client: redis.Redis
) -> None:
    built = fold_archive(trained.archive)
    ids = built.ids[:400]
    records = built.records[:400]
    feature_store.write_rebuilt(
        redis_client, ids, [pack(r) for r in records], format_profiles(records, compute(records))
    )
    feature_store.set_positions(redis_client, {}, {(settings.topic_transactions, 0): int(records["last_ms"].max())})
    customer_registry.register_ids(redis_client, ids)
    live = settings.model_copy(update={"risk_model_check_s": 0.01})
    engine = RiskEngine(live, StopFlag())
    engine.rescore_all()
    assert _risk(redis_client, ids[0])["model_version"].startswith("rules-")

    # A model is trained elsewhere and made current: the running engine switches on its next check.
    version = trained.run.version
    shutil.copytree(trained.settings.model_registry_dir / version, live.model_registry_dir / version)
    registry.set_current(live.model_registry_dir, version)
    assert engine.refresh_model() is True and engine.full_pass_due
    while engine.sweep_step().scored or engine.sweep is not None:
        pass
    scores = [_risk(redis_client, cid) for cid in ids]
    assert {s["model_version"] for s in scores} == {version}
    assert all(0.0 <= float(s["risk_score"]) <= 100.0 for s in scores)
    assert len({s["risk_score"] for s in scores}) > 20  # probabilities, not the rule score's 11 steps
    top = max(scores, key=lambda s: float(s["risk_score"]))
    assert top["risk_level"] in ("MEDIUM", "HIGH", "CRITICAL") and top["reasons"]
    cid = ids[[s["risk_score"] for s in scores].index(top["risk_score"])]
    explained = orjson.loads(cast(bytes, redis_client.get(reasons_key(cid))))
    shap_reasons = explained["model_reasons"]
    assert 1 <= len(shap_reasons) <= 5 and all(r["shap"] > 0 for r in shap_reasons)
    sentences = {REASON_TEXT[r["feature"]].format(value=r["value"], abs_value=abs(r["value"]), pct=r["value"] * 100)
                 for r in shap_reasons}  # fmt: skip
    assert {r["text"] for r in shap_reasons} == sentences
    assert top["reasons"].split("; ")[0] == shap_reasons[0]["text"]
    # the value quoted is the very feature value that was scored for this customer
    profile = feature_store.read_profiles(redis_client, [cid])[cid]
    first = shap_reasons[0]
    if first["feature"] != "days_inactive":  # the only feature the watermark moves on its own
        assert abs(float(profile[first["feature"]]) - first["value"]) < 0.01 + abs(first["value"]) * 1e-6
    assert explained["rule_score"] == int(top["rule_score"])  # the rules still explain in plain points

    # The pointer removed: back to the rules, again without a restart.
    (live.model_registry_dir / registry.CURRENT).unlink()
    assert engine.refresh_model() is True and engine.model is None


def test_every_feature_has_a_reason_sentence() -> None:
    from equilibrate.features.compute import FEATURES

    assert set(REASON_TEXT) == set(FEATURES)
    for name, text in REASON_TEXT.items():
        assert "{" not in text.format(value=12.5, abs_value=12.5, pct=1250.0), name
