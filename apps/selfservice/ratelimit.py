"""Fixed-window counters in the shared cache.

A portal that tests passwords would otherwise be a password-guessing oracle, and the status
lookup would let anyone probe which addresses are being copied."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache


def _key(scope: str, subject: str) -> str:
    # Hashed, so that no address or login sits in the cache in clear.
    digest = hashlib.sha256(subject.encode("utf-8")).hexdigest()[:32]
    return f"ratelimit:{scope}:{digest}"


def allow(scope: str, subject: str, *, limit: int, window_seconds: int) -> bool:
    """Count one attempt; False once `limit` attempts were made in the current window.

    `limit` is multiplied by IMAPCOPY_RATE_LIMIT_FACTOR (1 unless a load benchmark raises it)."""
    limit *= settings.IMAPCOPY_RATE_LIMIT_FACTOR
    key = _key(scope, subject)
    cache.add(key, 0, timeout=window_seconds)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window_seconds)
        count = 1
    return count <= limit


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR", "")
