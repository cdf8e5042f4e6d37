"""API keys: named, scoped (read / write), stored hashed, compared in constant time.

A key looks like `eqk_<id>_<secret>`: the id finds the record, the secret is checked against its
SHA-256 (the secret is 32 random bytes, so a salted slow hash adds nothing). The store is a JSON
file (API_KEYS_FILE) that only ever holds hashes; `equilibrate api keys add NAME --scopes read,write`
prints a new key once. Rotating a key: add the new one, move clients over, `revoke` the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from equilibrate.errors import ConfigError

SCOPES = ("read", "write")
PREFIX = "eqk"


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    sha256: str
    created_at: str

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self.keys = {k.key_id: k for k in keys}

    def __len__(self) -> int:
        return len(self.keys)

    def authenticate(self, token: str) -> ApiKey | None:
        """The key `token` is, or None. Constant time in the secret whether or not the id exists."""
        prefix, _, rest = token.strip().partition("_")
        key_id, _, secret = rest.partition("_")
        record = self.keys.get(key_id) if prefix == PREFIX else None
        expected = record.sha256 if record is not None else "0" * 64
        ok = hmac.compare_digest(_digest(secret), expected)
        return record if ok and record is not None else None

    @classmethod
    def load(cls, path: Path) -> KeyStore:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"API key store {path} does not exist (create a key: equilibrate api keys add NAME)"
            ) from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"API key store {path} cannot be read: {exc}") from None
        try:
            keys = [
                ApiKey(k["key_id"], k["name"], tuple(k["scopes"]), k["sha256"], k["created_at"]) for k in raw["keys"]
            ]
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"API key store {path} is not a key store ({exc!r} missing)") from None
        bad = [k.name for k in keys if not set(k.scopes) <= set(SCOPES) or len(k.sha256) != 64]
        if bad:
            raise ConfigError(f"API key store {path}: keys with unknown scopes or hashes: {', '.join(bad)}")
        return cls(keys)

    def save(self, path: Path) -> None:
        """Written owner-only, replaced atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        body = json.dumps({"keys": [asdict(k) for k in self.keys.values()]}, indent=2)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(body)
        os.replace(tmp, path)

    def add(self, name: str, scopes: Iterable[str]) -> tuple[str, ApiKey]:
        """A new key: (the token, shown once; its record, kept)."""
        wanted = tuple(dict.fromkeys(scopes))
        unknown = [s for s in wanted if s not in SCOPES]
        if unknown or not wanted:
            raise ConfigError(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(wanted) or 'none'}")
        if any(k.name == name for k in self.keys.values()):
            raise ConfigError(f"a key named {name!r} exists already (revoke it first to replace it)")
        key_id, secret = secrets.token_hex(4), secrets.token_urlsafe(32).replace("_", "-")
        record = ApiKey(key_id, name, wanted, _digest(secret), datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        self.keys[key_id] = record
        return f"{PREFIX}_{key_id}_{secret}", record

    def revoke(self, name: str) -> bool:
        found = [k for k in self.keys.values() if k.name == name]
        for key in found:
            del self.keys[key.key_id]
        return bool(found)
