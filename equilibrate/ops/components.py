"""What `equilibrate up` runs, in start order. Each issue that adds a component adds a line here."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    argv: tuple[str, ...]  # arguments after `equilibrate`
    kind: str = "pipeline"  # "service" (broker, redis) starts first and must be ready before the rest
    env: dict[str, str] = field(default_factory=dict)
    oneshot: bool = False  # a job: done when it exits 0 (restarted only after a failure)
    ports: tuple[tuple[str, int], ...] = ()  # a service is ready when each of these accepts connections


DEMO_BACKFILL_DAYS = 180  # enough history for `model train` (temporal split with 30-day gaps)


def pipeline_components(
    *, simulator: bool = True, speed: float | None = None, customers: int | None = None
) -> list[ComponentSpec]:
    """The pipeline components that exist, in the order data flows through them."""
    specs: list[ComponentSpec] = []
    if simulator:
        argv = ["produce", "--backfill-days", str(DEMO_BACKFILL_DAYS)]
        if speed is not None:
            argv += ["--speed", str(speed)]
        if customers is not None:
            argv += ["--customers", str(customers)]
        specs.append(ComponentSpec("produce", tuple(argv)))
    specs += [
        ComponentSpec("archive", ("archive",)),
        ComponentSpec("features", ("features",)),
        ComponentSpec("risk", ("risk",)),
        ComponentSpec("snapshot", ("snapshot",)),
        ComponentSpec("interventions", ("interventions",)),
        ComponentSpec("dashboard", ("dashboard",)),
        ComponentSpec("api", ("api",)),
    ]
    if simulator:  # the demo trains a model once the backfill is archived (the console's Model page)
        specs.append(
            ComponentSpec("trainer", ("model", "train", "--when-ready", str(DEMO_BACKFILL_DAYS - 30)), oneshot=True)
        )
    return specs
