"""`equilibrate produce`: stream the simulated bank's transactions into Kafka.

First `--backfill-days` of history go out as fast as the broker takes them (or `--rate` allows),
then the simulation continues live: an event is released when the simulated clock passes its
timestamp, with sim_time = live_start + wall_elapsed * speed. The monotonic wall clock only paces;
event time is always the simulated one in the data.

SIGINT/SIGTERM finish the chunk in flight, flush and print one summary line. Delivery failures are
counted and make the exit code 1: they are never silent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # building the CLI parser must stay cheap: numpy and the simulator load when the command runs
    import redis

    from equilibrate.kafka.transport import Producer
    from equilibrate.settings import Settings
    from equilibrate.sources.customers import Customer, GroundTruth
    from equilibrate.sources.simulator import DayBatch, Simulator

log = logging.getLogger(__name__)

DEFAULT_SPEED = 8640.0  # a simulated day in 10 s
PROGRESS_EVERY_S = 5.0
CHUNK = 5_000  # events produced between checks of the stop flag, the clock and the producer
DAY_MS = 86_400_000
MAX_CUSTOMERS = 1_000_000  # customers.MAX_CUSTOMERS, repeated so the parser does not import numpy
POPULATION_KEY = "eq:produce:population"  # which simulated population the registry holds
#: Bump when generation changes, so existing customers.csv / ground_truth.csv are regenerated.
POPULATION_VERSION = 1


@dataclass(frozen=True)
class Population:
    customers: list[Customer]
    truth: list[GroundTruth]
    written: bool  # False when matching files were already there


def prepare_population(data_dir: Path, n: int, seed: int) -> Population:
    """The customers and their ground truth; (re)write the CSVs unless they match (n, seed) already."""
    from equilibrate.sources.customers import generate_customers, write_customers_csv, write_ground_truth
    from equilibrate.sources.personas import assign_personas

    customers = generate_customers(n, seed)
    truth = assign_personas(customers, seed)
    meta_path = data_dir / "customers.meta.json"
    wanted = {"customers": n, "seed": seed, "version": POPULATION_VERSION}
    csv_path, truth_path = data_dir / "customers.csv", data_dir / "ground_truth.csv"
    try:
        current = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        current = None
    if current == wanted and csv_path.exists() and truth_path.exists():
        return Population(customers, truth, written=False)
    write_customers_csv(csv_path, customers)
    write_ground_truth(truth_path, truth)
    meta_path.write_text(json.dumps(wanted), encoding="utf-8")
    return Population(customers, truth, written=True)


def register_population(client: redis.Redis, population: Population, seed: int) -> bool:
    """Register every customer with its attributes (never the persona); return False when skipped.

    Registering a million customers takes a minute or two, so a restart with the same population
    skips it when a marker says this exact population is registered and the registry still has it.
    """
    from equilibrate.storage.customer_registry import known, register

    customers = population.customers
    marker = f"{len(customers)}:{seed}:{POPULATION_VERSION}"
    ends = [customers[0].customer_id, customers[-1].customer_id]
    if client.get(POPULATION_KEY) == marker.encode() and all(known(client, ends)):
        log.info("the %d customers are already registered in Redis", len(customers))
        return False
    registered = register(client, (c.as_row() for c in customers))
    client.set(POPULATION_KEY, marker)
    log.info("registered %d customers in Redis", registered)
    return True


class Streamer:
    """Sends a simulator's days to one topic, keyed by customer id: backfill, then live."""

    def __init__(
        self, sim: Simulator, producer: Producer, topic: str, *, stop: threading.Event, rate: float | None = None,
        on_tick: Callable[[Streamer], None] | None = None,
    ) -> None:  # fmt: skip
        self.sim, self.producer, self.topic, self.stop, self.rate = sim, producer, topic, stop, rate
        self.on_tick = on_tick
        self.sent = 0
        self.reached_ms = int(sim.start.timestamp() * 1000)  # simulated time reached
        self.phase = "backfill"
        self.lag_s = 0.0  # live mode: how far the producer trails the simulated clock (simulated seconds)
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def backfill(self, days: int) -> None:
        """`days` simulated days, as fast as the broker (and the rate cap) allow."""
        self.phase = "backfill"
        for _ in range(days):
            if self.stop.is_set():
                return
            batch = self.sim.next_day()
            self._send(batch, 0, len(batch))
            if not self.stop.is_set():
                self.reached_ms = max(self.reached_ms, int(self.sim.start.timestamp() * 1000) + self.sim.day * DAY_MS)

    def live(self, days: int | None, speed: float) -> None:
        """Release events as the simulated clock passes them; stop after `days` days (None: never)."""
        import numpy as np

        self.phase = "live"
        live_start = int(self.sim.start.timestamp() * 1000) + self.sim.day * DAY_MS
        end = None if days is None else live_start + days * DAY_MS
        wall0 = time.monotonic()

        def clock() -> int:
            return live_start + int((time.monotonic() - wall0) * speed * 1000)

        produced = 0
        while not self.stop.is_set() and (days is None or produced < days):
            batch = self.sim.next_day()
            produced += 1
            ts = batch.ts_ms
            i = 0
            while i < len(ts) and not self.stop.is_set():
                now = clock()
                j = int(np.searchsorted(ts, now, side="right"))
                if j > i:
                    self.lag_s = max(0.0, (now - int(ts[i])) / 1000)
                    self._send(batch, i, j)
                    if self.stop.is_set():
                        return  # interrupted mid-chunk: reached_ms is the last event sent
                    i = j
                else:
                    self.lag_s = 0.0
                    self._idle(min(0.25, (int(ts[i]) - now) / speed / 1000))
                self.reached_ms = max(self.reached_ms, now if end is None else min(now, end))
        while end is not None and not self.stop.is_set() and clock() < end:  # let the clock reach the end
            self._idle(min(0.25, (end - clock()) / speed / 1000))
        self.reached_ms = max(self.reached_ms, clock() if end is None else min(clock(), end))

    def _idle(self, seconds: float) -> None:
        self.producer.poll(0)
        self._tick()
        self.stop.wait(max(seconds, 0.001))

    def _send(self, batch: DayBatch, lo: int, hi: int) -> None:
        """Encode and produce events lo..hi chunk by chunk (encoded events never pile up in memory)."""
        produce, topic, sim = self.producer.produce, self.topic, self.sim
        chunk = CHUNK if self.rate is None else max(1, min(CHUNK, int(self.rate / 20)))
        a = lo
        while a < hi and not self.stop.is_set():
            b = min(a + chunk, hi)
            if self.rate is not None:
                ahead = self.sent / self.rate - self.elapsed
                if ahead > 0 and self.stop.wait(ahead):
                    return
            for key, value in zip(sim.keys_of(batch, a, b), sim.encode(batch, a, b), strict=True):
                produce(topic, value, key)
            self.producer.poll(0)
            self.sent += b - a
            self.reached_ms = max(self.reached_ms, int(batch.ts_ms[b - 1]))
            self._tick()
            a = b

    def _tick(self) -> None:
        if self.on_tick is not None:
            self.on_tick(self)


def format_ms(epoch_ms: int) -> str:
    """Epoch milliseconds in the wire's timestamp format."""
    from equilibrate.schema import format_ts

    return format_ts(datetime.fromtimestamp(epoch_ms / 1000, UTC))


@contextlib.contextmanager
def graceful_stop() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM set the returned event instead of killing the process; handlers restored after."""
    stop = threading.Event()

    def handle(signum: int, _frame: FrameType | None) -> None:
        if not stop.is_set():
            log.info("signal %d: finishing the chunk in flight, flushing, then stopping", signum)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from equilibrate.kafka.topics import ensure_topics
    from equilibrate.kafka.transport import make_producer
    from equilibrate.ops.heartbeat import Heartbeat
    from equilibrate.sources.simulator import Simulator
    from equilibrate.storage.redis_client import connect

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = (
        datetime.combine(args.start, datetime.min.time(), UTC) if args.start else today - timedelta(args.backfill_days)
    )
    redis = connect(settings)
    ensure_topics(settings, [settings.topic_transactions])
    population = prepare_population(settings.data_dir, args.customers, args.seed)
    log.info(
        "%d customers (seed %d), files %s in %s",
        args.customers, args.seed, "written" if population.written else "up to date", settings.data_dir,
    )  # fmt: skip
    register_population(redis, population, args.seed)
    sim = Simulator(population.customers, args.seed, start, population.truth)
    producer = make_producer(settings, client_id="produce")
    heartbeat = Heartbeat(redis, "produce", interval_s=settings.heartbeat_interval_s)
    last_log = [time.monotonic()]

    def on_tick(s: Streamer) -> None:
        heartbeat.beat(sim_time=format_ms(s.reached_ms), events_sent=s.sent, failed=producer.failed, phase=s.phase)
        if time.monotonic() - last_log[0] >= PROGRESS_EVERY_S:
            last_log[0] = time.monotonic()
            behind = f", {s.lag_s / 3600:.1f} simulated hours behind the clock" if s.lag_s > 3600 else ""
            log.info(
                "%s: %d events sent (%.0f/s), simulated time %s, %d failed deliveries%s",
                s.phase, s.sent, s.sent / max(s.elapsed, 1e-9), format_ms(s.reached_ms), producer.failed, behind,
            )  # fmt: skip

    log.info(
        "producing to %s from %s: %d backfill days, then %s at speed %.0f",
        settings.topic_transactions, start.date(), args.backfill_days,
        "no live days" if args.days == 0 else f"{args.days} live days" if args.days else "live until stopped",
        args.speed,
    )  # fmt: skip
    with graceful_stop() as stop:
        streamer = Streamer(sim, producer, settings.topic_transactions, stop=stop, rate=args.rate, on_tick=on_tick)
        try:
            streamer.backfill(args.backfill_days)
            if args.days != 0:
                streamer.live(args.days, args.speed)
        finally:
            undelivered = producer.flush(30)
            failed = producer.failed + undelivered
            producer.close()
            heartbeat.beat(force=True, sim_time=format_ms(streamer.reached_ms), events_sent=streamer.sent,
                           failed=failed, phase="stopped")  # fmt: skip
            redis.close()
    elapsed = streamer.elapsed
    print(
        f"produce: {streamer.sent} events sent, {failed} failed deliveries, simulated time reached "
        f"{format_ms(streamer.reached_ms)}, {streamer.sent / max(elapsed, 1e-9):.0f} events/s over {elapsed:.1f}s",
        flush=True,
    )
    if failed:
        log.error("%d events were not delivered to %s", failed, settings.topic_transactions)
        return 1
    return 0


def _bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be between {low:,} and {high:,}" if high else f"must be >= {low}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("produce", help="stream simulated bank transactions (personas, payment failures) to Kafka")
    p.add_argument("--customers", type=_bounded_int(1, MAX_CUSTOMERS), default=5000, help="population size")
    p.add_argument("--seed", type=int, default=42, help="makes a run reproducible event for event")
    p.add_argument("--backfill-days", type=_bounded_int(0), default=0, help="days of history sent first, at full speed")
    p.add_argument("--speed", type=_positive_float, default=DEFAULT_SPEED,
                   help="simulated seconds per real second in live mode (default: a day in 10 s)")  # fmt: skip
    p.add_argument("--rate", type=_positive_float, default=None, help="cap on events per second")
    p.add_argument("--days", type=_bounded_int(0), default=None,
                   help="simulated days of live time, then stop (default: until Ctrl-C; 0: backfill only)")  # fmt: skip
    p.add_argument("--start", type=_date, default=None,
                   help="first simulated day, YYYY-MM-DD (default: today UTC minus the backfill days)")  # fmt: skip
    p.set_defaults(func=run)
