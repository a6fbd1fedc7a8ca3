"""API keys (from mounted files) and per-key rate limiting."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Dict, Optional, Tuple

logger = logging.getLogger("rayllm.security")


def key_id(key: str) -> str:
    """Short, non-reversible id of a key for logs and metrics (never the key)."""
    return "key-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def _read_keys(path: Path) -> Dict[bytes, str]:
    """Digest -> key id for every key under path.

    A file holds one key per line (# comments and blanks skipped). A directory
    is a Kubernetes Secret mount: every visible regular file holds keys; the
    ``..data``-style bookkeeping entries are skipped.
    """
    files = []
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_file())
    elif path.is_file():
        files = [path]
    keys: Dict[bytes, str] = {}
    for file in files:
        for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
            key = line.strip()
            if key and not key.startswith("#"):
                keys[hashlib.sha256(key.encode("utf-8")).digest()] = key_id(key)
    return keys


class ApiKeyStore:
    """Keys loaded from a file or Secret directory, re-read periodically."""

    def __init__(self, path: str, reload_interval_s: float = 30.0):
        self.path = Path(path)
        self.reload_interval_s = reload_interval_s
        self._keys: Dict[bytes, str] = {}
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        try:
            keys = _read_keys(self.path)
        except OSError as exc:
            # Keep the previous keys: a transient read error must not lock everyone out.
            logger.warning("could not read API keys from %s: %s", self.path, type(exc).__name__)
            keys = self._keys
        if not keys:
            logger.warning("no API keys found under %s; every request will be rejected", self.path)
        with self._lock:
            self._keys = keys
            self._loaded_at = time.monotonic()

    def verify(self, presented: Optional[str]) -> Optional[str]:
        """Return the key id of a valid key, else None."""
        if self.reload_interval_s and time.monotonic() - self._loaded_at > self.reload_interval_s:
            self.reload()
        if not presented:
            return None
        digest = hashlib.sha256(presented.encode("utf-8")).digest()
        found = None
        # Compare against every key in constant time per comparison.
        for known, kid in self._keys.items():
            if hmac.compare_digest(known, digest):
                found = kid
        return found

    def __len__(self) -> int:
        return len(self._keys)


def bearer_token(authorization: Optional[str]) -> Optional[str]:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class TokenBucketLimiter:
    """One token bucket per key: ``burst`` capacity, refilled at rate/min.

    State is per ingress replica, so the cluster-wide limit is this times the
    number of ingress replicas.
    """

    def __init__(self, requests_per_minute: float, burst: int, max_keys: int = 100_000):
        self.rate = requests_per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: Dict[str, Tuple[float, float]] = {}

    def acquire(self, key: str, now: Optional[float] = None) -> Tuple[bool, float]:
        """Take one token. Returns (allowed, seconds until a token is free)."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now)
            return True, 0.0
        self._store(key, tokens, now)
        return False, (1.0 - tokens) / self.rate

    def _store(self, key: str, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= self.max_keys:
            # Bound memory under key/IP churn: drop the oldest half.
            for old in sorted(self._buckets, key=lambda k: self._buckets[k][1])[: self.max_keys // 2]:
                del self._buckets[old]
        self._buckets[key] = (tokens, now)

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))


def read_secret_env(name: Optional[str]) -> Optional[str]:
    return os.environ.get(name) if name else None
