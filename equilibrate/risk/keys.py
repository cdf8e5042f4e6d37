"""Redis layout of the risk engine (beside the feature engine's, features/store.py).

customer:{id}            HASH   + RISK_FIELDS (written by `equilibrate risk`)
eq:risk:queue            ZSET   customer id -> risk score (0-100): the ranked risk queue
eq:risk:levels           HASH   customer id -> `LEVEL|digest` of its score row (one HMGET finds a batch's changes)
eq:risk:changes          STREAM recent level changes (bounded, newest last)
eq:risk:reasons:{id}     STRING the full explanation of the latest score (JSON)
eq:risk:stats            HASH   counters (scored, sweeps, level changes)
eq:idx:level:{level}     SET    customers at each level      } indices for the console and the API:
eq:idx:hardship:{type}   SET    customers of each hardship   } intersected with the queue, never a scan
eq:risk:trend            STREAM customers per level, sampled every RISK_TREND_INTERVAL_S (wall clock)
"""

from __future__ import annotations

QUEUE_KEY = "eq:risk:queue"
CHANGES_KEY = "eq:risk:changes"
REASONS_PREFIX = "eq:risk:reasons:"
STATS_KEY = "eq:risk:stats"
LEVELS_KEY = "eq:risk:levels"
TREND_KEY = "eq:risk:trend"
LEVEL_INDEX_PREFIX = "eq:idx:level:"
HARDSHIP_INDEX_PREFIX = "eq:idx:hardship:"

#: Levels from least to most severe. Rules alone reach HIGH; CRITICAL needs the model's probability.
LEVELS: tuple[str, ...] = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
#: Hardship types the engine assigns ("None": no hardship pattern holds).
HARDSHIP_TYPES: tuple[str, ...] = (
    "Income Shock",
    "Liquidity Stress",
    "Expense Compression",
    "Over-Leverage",
    "Overspending",
    "None",
)

#: Fields the risk engine writes into `customer:{id}`, in this order.
RISK_FIELDS: tuple[str, ...] = (
    "risk_score",  # 0-100: the model's probability of a missed payment in 30 days, or rule score x 10
    "risk_level",  # LOW / MEDIUM / HIGH / CRITICAL
    "rule_score",  # 0-10, the readable explanation
    "hardship_type",
    "reasons",  # the top reasons, "; "-joined plain language
    "recommended_action",  # from the policy engine
    "scored_at",  # event time the score is as of (stream watermark or the customer's newest event)
    "model_version",  # "rules-<hash>" when the rules decide
)


def reasons_key(customer_id: str) -> str:
    return REASONS_PREFIX + customer_id


def level_index(level: str) -> str:
    return LEVEL_INDEX_PREFIX + level


def hardship_index(hardship_type: str) -> str:
    return HARDSHIP_INDEX_PREFIX + hardship_type
