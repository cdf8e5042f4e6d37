"""`equilibrate api`: the REST / WebSocket API (FastAPI on uvicorn); `api keys add|list|revoke` manages keys.

equilibrate api                                   serve on API_HOST:API_PORT (docs at /docs, /redoc)
equilibrate api keys add NAME --scopes read,write prints the new key once; only its hash is stored
equilibrate api keys list
equilibrate api keys revoke NAME
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from equilibrate.errors import ConfigError
from equilibrate.settings import Settings

log = logging.getLogger(__name__)


def _store_path(args: argparse.Namespace, settings: Settings) -> Path:
    path = args.file or settings.api_keys_file
    if path is None:
        raise ConfigError("set API_KEYS_FILE (or pass --file) to say where the key store lives")
    return Path(path)


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    from equilibrate.api.keys import KeyStore

    path = _store_path(args, settings)
    store = KeyStore.load(path) if path.exists() else KeyStore()
    if args.keys_command == "add":
        token, record = store.add(args.name, args.scopes.split(","))
        store.save(path)
        print(f"key {record.name} ({','.join(record.scopes)}), stored hashed in {path}; shown once:\n{token}")
    elif args.keys_command == "revoke":
        if not store.revoke(args.name):
            raise ConfigError(f"no key named {args.name!r} in {path}")
        store.save(path)
        print(f"revoked {args.name}")
    else:
        for key in store.keys.values():
            print(f"{key.name:<24} {','.join(key.scopes):<11} id {key.key_id}  created {key.created_at}")
        if not len(store):
            print(f"no keys in {path}")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "api_command", None) == "keys":
        return _keys(args, settings)
    from equilibrate.api.app import create_app

    app = create_app(settings)  # refuses a production config that would leave the API open
    host, port = args.host or settings.api_host, args.port or settings.api_port
    if settings.api_workers > 1:
        from equilibrate.api.serving import Workers

        # each worker builds its own app from the environment: pass on a level given here
        os.environ["LOG_LEVEL"] = logging.getLevelName(logging.getLogger().level)
        return Workers(settings.api_workers, host, port).run()
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, server_header=False)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("api", help="REST and WebSocket API for bank systems (FastAPI; docs at /docs)")
    p.add_argument("--host", default=None, help="address to serve on (default API_HOST)")
    p.add_argument("--port", type=int, default=None, help="port (default API_PORT)")
    p.set_defaults(func=run)
    inner = p.add_subparsers(dest="api_command", metavar="[keys]")
    k = inner.add_parser("keys", help="API keys: add, list, revoke")
    k.set_defaults(func=run)
    kinner = k.add_subparsers(dest="keys_command", metavar="add|list|revoke", required=True)
    add = kinner.add_parser("add", help="a new key (printed once)")
    add.add_argument("name")
    add.add_argument("--scopes", default="read", help="read, write or read,write")
    revoke = kinner.add_parser("revoke", help="remove a key")
    revoke.add_argument("name")
    kinner.add_parser("list", help="the keys (names, scopes, ids; never the keys)")
    for q in (k,):
        q.add_argument("--file", type=Path, default=None, help="the key store (default API_KEYS_FILE)")
