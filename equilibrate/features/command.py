"""`equilibrate features` (the streaming engine) and `equilibrate features rebuild` (batch)."""

from __future__ import annotations

import argparse

from equilibrate.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "features_command", None) == "rebuild":
        from equilibrate.features.rebuild import rebuild
        from equilibrate.storage.archive import archive_root
        from equilibrate.storage.archive_store import ArchiveStore
        from equilibrate.storage.redis_client import connect

        built = rebuild(
            connect(settings),
            ArchiveStore(archive_root(settings)),
            settings.topic_transactions,
            set_offsets=not args.keep_offsets,
        )
        print(f"rebuilt {len(built.ids)} customer profiles from {archive_root(settings)}")
        return 0
    from equilibrate.features.engine import FeatureEngine
    from equilibrate.kafka.topics import ensure_topics
    from equilibrate.ops.stopping import StopFlag

    ensure_topics(settings)
    FeatureEngine(settings, StopFlag().install()).run()
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("features", help="streaming feature engine: rolling 7/30/90-day profiles in Redis")
    p.set_defaults(func=run)
    inner = p.add_subparsers(dest="features_command", metavar="[rebuild]")
    r = inner.add_parser("rebuild", help="recompute every profile from the Parquet archive")
    r.add_argument(
        "--keep-offsets", action="store_true", help="do not move the stream engine's offsets to the end of the archive"
    )
    r.set_defaults(func=run)
