"""Client secrets in Redis: a token minted on any instance places exactly one call on any instance.

A token is kept as a hash under ``<prefix>secret:<sha256 hex>`` (never the token itself): its state
(``unused`` → ``claimed`` while its call is set up → ``used``), expiry, the client that minted it, the call it
created and its bound session. The key lives ``ttl + RETAIN_SECONDS`` so that reuse and expiry are told from
forgery, as in one process (signaling/client_secrets.py). Claiming is one Lua script — read the state, check
it, set ``claimed`` — so two instances racing with one token give one call and one ``401 client_secret_used``.

Per client, the unused tokens are a sorted set (score: expiry) bounded by
``limits.max_client_secrets_per_client`` cluster-wide. The 10,000-token and 32 MiB session budgets of one
process are not enforced here: Redis's own ``maxmemory`` bounds the store, and the per-client limit with the
mint rate bounds what one address adds (100 tokens of at most ~48 KB of session each).
"""

from __future__ import annotations

import hmac
import math
import secrets
import time
from collections.abc import Callable

from gateway.cluster.redis import ClusterRedis
from signaling.client_secrets import RETAIN_SECONDS, TOKEN_PREFIX, CallAlive, ClientSecret, digest
from signaling.errors import ApiError

_MINT = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
local per_client = tonumber(ARGV[3])
if per_client > 0 and redis.call('ZCARD', KEYS[2]) >= per_client then
  return {0, redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2]}
end
redis.call('HSET', KEYS[1], 's', 'unused', 'n', ARGV[1], 'e', ARGV[2], 'c', ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'b', ARGV[6]) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if per_client > 0 then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[7])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
end
return {1, ''}
"""

_CLAIM = """
local h = redis.call('HMGET', KEYS[1], 's', 'n', 'e', 'c', 'b')
if not h[1] then return {'invalid'} end
if h[1] ~= 'unused' then return {'used'} end
if tonumber(ARGV[1]) >= tonumber(h[3]) then return {'expired'} end
redis.call('HSET', KEYS[1], 's', 'claimed')
return {'ok', h[2], h[3], h[4] or '', h[5] or ''}
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 's') == 'claimed' then redis.call('HSET', KEYS[1], 's', 'unused') end
"""

_CONSUME = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 's', 'used', 'k', ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisSecrets:
    """:class:`signaling.client_secrets.SecretStore` in Redis (see the module doc)."""

    def __init__(self, redis: ClusterRedis, *, per_client: int = 0, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._per_client = per_client
        self._clock = clock
        client = redis.client
        self._mint, self._claim = client.register_script(_MINT), client.register_script(_CLAIM)
        self._release, self._consume = client.register_script(_RELEASE), client.register_script(_CONSUME)

    def _key(self, token_digest: bytes) -> str:
        return self._redis.key("secret", token_digest.hex())

    def _client_key(self, client: str) -> str:
        return self._redis.key("secrets_of", client)

    async def mint(self, ttl_seconds: float, session: bytes | None, *, client: str,
                   call_alive: CallAlive) -> tuple[str, ClientSecret]:
        """A new token; ``call_alive`` is not needed here: used tokens expire with their key."""
        now = self._clock()
        value = TOKEN_PREFIX + secrets.token_urlsafe(32)
        secret = ClientSecret(digest(value), now, now + ttl_seconds, session, client)
        keep_ms = math.ceil((ttl_seconds + RETAIN_SECONDS) * 1000)
        async with self._redis.guard("minting a client secret"):
            ok, first = await self._mint(keys=[self._key(secret.digest), self._client_key(client)],
                                         args=[repr(now), repr(secret.expires_at), self._per_client, keep_ms,
                                               client, session or b"", secret.digest.hex()])
        if not ok:
            raise ApiError(429, "too_many_client_secrets", f"at most {self._per_client} unused client secrets "
                           "per address", retry_after=max(1, math.ceil(float(first) - now)))
        return value, secret

    async def knows(self, value: str) -> bool:
        async with self._redis.guard("checking a client secret"):
            return bool(await self._redis.client.exists(self._key(digest(value))))

    async def claim(self, value: str) -> ClientSecret:
        token_digest = digest(value)
        async with self._redis.guard("claiming a client secret"):
            answer = await self._claim(keys=[self._key(token_digest)], args=[repr(self._clock())])
        match _text(answer[0]):
            case "invalid":
                raise ApiError(401, "invalid_api_key", "the client secret is not valid")
            case "used":
                raise ApiError(401, "client_secret_used", "the client secret was already used for a call; "
                               "mint a new one for each call")
            case "expired":
                raise ApiError(401, "client_secret_expired", "the client secret has expired; mint a new one")
        created, expires, client, session = answer[1:]
        return ClientSecret(token_digest, float(created), float(expires), bytes(session) or None, _text(client),
                            state="claimed")

    async def release(self, secret: ClientSecret) -> None:
        async with self._redis.guard("releasing a client secret"):
            await self._release(keys=[self._key(secret.digest)])
        secret.state = "unused"

    async def consume(self, secret: ClientSecret, call_id: str) -> None:
        async with self._redis.guard("recording a client secret's call"):
            await self._consume(keys=[self._key(secret.digest), self._client_key(secret.client)],
                                args=[call_id, secret.digest.hex()])
        secret.state, secret.call_id = "used", call_id

    async def owns(self, value: str, call_id: str) -> bool:
        async with self._redis.guard("checking a client secret"):
            owner = await self._redis.client.hget(self._key(digest(value)), "k")
        return owner is not None and hmac.compare_digest(_text(owner), call_id)
