"""Per-client rate limit and the body read timeout: what keeps one client
from taking the service from the others.

The rate limit is a token bucket per client: ``rate`` requests a second on
average, bursts of up to ``burst``. Past it a request is answered 429 with
``Retry-After`` (the seconds until a token is back) and an OperationOutcome,
and does no work. The bucket is the caller's — the authenticated client or
portal user — else the remote address's (one address may be a whole
practice behind a proxy; its users are counted apart once signed in).
Static files of the portal are not counted.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    rate: float  # tokens a second
    burst: int
    clock: object = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, client: str) -> float:
        """0 when the request may go on, else the seconds to wait."""
        now = self.clock()  # type: ignore[operator]
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                bucket = self._buckets[client] = _Bucket(float(self.burst), now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            if len(self._buckets) > 100_000:  # forget idle clients rather than grow
                self._buckets = {k: b for k, b in self._buckets.items() if b.tokens < self.burst}
            return (1 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))
