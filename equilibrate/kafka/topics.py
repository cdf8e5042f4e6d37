"""The topics of the pipeline, created explicitly with a configurable partition count."""

from __future__ import annotations

import logging

from equilibrate.kafka.transport import make_admin
from equilibrate.settings import Settings

log = logging.getLogger(__name__)


def pipeline_topics(settings: Settings) -> list[str]:
    return [
        settings.topic_transactions,
        settings.topic_dlq,
        settings.topic_risk_events,
        settings.topic_interventions,
    ]


def ensure_topics(settings: Settings, names: list[str] | None = None) -> list[str]:
    """Create any missing pipeline topic; return the ones created. Idempotent."""
    admin = make_admin(settings)
    try:
        created = admin.create_topics(
            names or pipeline_topics(settings), settings.kafka_partitions, settings.kafka_replication_factor
        )
    finally:
        admin.close()
    for name in created:
        log.info("created topic %s with %d partitions", name, settings.kafka_partitions)
    return created
