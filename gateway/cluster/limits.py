"""The per-client call limits counted across the cluster (signaling/limits.py has what each limit means).

Per client, two keys:

* ``<prefix>rate:<client>``: the token bucket of ``limits.calls_per_client_per_minute`` (tokens, when);
* ``<prefix>calls_of:<client>``: a sorted set of the client's calls — ``p:<nonce>`` for a call being set up
  (score: when that claim lapses, if the instance placing it died), and the call ids of placed calls.

One Lua script takes a token and counts the calls: a placed call counts while the call directory
(:mod:`gateway.cluster.directory`) has it — so a call that ended, or whose instance died (its entry expired
``cluster.lease_seconds`` later), stops counting — and it is *pending* until the directory says it connected
(written by the instance holding it, at once and at each heartbeat). The script reads directory keys it is
not given in ``KEYS``: it runs on a standalone Redis (or a Sentinel-managed one), not on Redis Cluster.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.cluster.directory import CALL_KEY
from gateway.cluster.redis import ClusterRedis
from gateway.config import LimitsConfig
from gateway.errors import GatewayError
from signaling.errors import ApiError
from signaling.limits import CONCURRENCY_RETRY_AFTER, PENDING_RETRY_AFTER, seconds_until_a_token
from signaling.service import CallService

logger = logging.getLogger(__name__)

#: How long a call being set up counts when its instance never says how it went (it died meanwhile).
PLACING_LEASE_SECONDS = 60.0

#: A token bucket in the hash KEYS[1] (``t`` tokens, ``u`` when): refilled at ARGV[2] a second up to ARGV[3] at
#: time ARGV[1], one token taken; ``tokens`` is what it held before (< 1: refused).
_TAKE_TOKEN = """
local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = burst
if rate > 0 then
  local state = redis.call('HMGET', KEYS[1], 't', 'u')
  tokens = math.min(burst, (tonumber(state[1]) or burst) + (now - (tonumber(state[2]) or now)) * rate)
  redis.call('HSET', KEYS[1], 't', tostring(math.max(0, tokens - 1)), 'u', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
end
"""

_ADMIT = _TAKE_TOKEN + """
local max_calls, max_pending = tonumber(ARGV[4]), tonumber(ARGV[5])
if tokens < 1 then  -- refused: the bucket keeps what it had (as signaling.limits.ClientLimiter does)
  redis.call('HSET', KEYS[1], 't', tostring(tokens))
  return {'rate_limited', tostring(tokens)}
end
if max_calls > 0 or max_pending > 0 then
  local members = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local calls, pending = 0, 0
  for i = 1, #members, 2 do
    local member, score = members[i], tonumber(members[i + 1])
    if string.sub(member, 1, 2) == 'p:' then
      if score < now then redis.call('ZREM', KEYS[2], member) else calls = calls + 1; pending = pending + 1 end
    else
      local connected = redis.call('HGET', ARGV[8] .. member, 'connected')
      if not connected then redis.call('ZREM', KEYS[2], member)
      else
        calls = calls + 1
        if connected ~= '1' then pending = pending + 1 end
      end
    end
  end
  if max_calls > 0 and calls >= max_calls then return {'too_many_calls', ''} end
  if max_pending > 0 and pending >= max_pending then return {'too_many_pending_calls', ''} end
  redis.call('ZADD', KEYS[2], ARGV[7], 'p:' .. ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[9])
end
return {'ok', ''}
"""

_SETTLE = """
redis.call('ZREM', KEYS[1], 'p:' .. ARGV[1])
if ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
"""


_MINT_RATE = _TAKE_TOKEN + """
return tostring(tokens)
"""


class RedisMintRate:
    """:class:`signaling.client_secrets.MintRateStore` in Redis: one token bucket per client for the cluster
    (``limits.client_secrets_per_client_per_minute``, burst ``client_secret_burst_per_client``)."""

    def __init__(self, redis: ClusterRedis, config: LimitsConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.rate = config.client_secrets_per_client_per_minute / 60.0
        self.burst = float(config.client_secret_burst_per_client)
        self._redis = redis
        self._clock = clock
        self._take = redis.client.register_script(_MINT_RATE)

    async def take(self, client: str) -> None:
        if self.rate <= 0:
            return
        async with self._redis.guard("checking the mint rate"):
            tokens = float(await self._take(keys=[self._redis.key("mint_rate", client)],
                                            args=[repr(self._clock()), repr(self.rate), repr(self.burst)]))
        if tokens < 1.0:
            wait = seconds_until_a_token(tokens, self.rate)
            raise ApiError(429, "rate_limited", f"too many client secrets requested from this address; retry in "
                           f"{wait} s", retry_after=wait)


@dataclass(frozen=True, slots=True)
class Ticket:
    client: str
    nonce: str


class RedisLimits:
    """:class:`signaling.limits.LimitStore` in Redis (see the module doc)."""

    def __init__(self, redis: ClusterRedis, config: LimitsConfig, *, call_ttl_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        per_client = config.max_calls_per_client
        self.max_calls = per_client if per_client < config.max_calls else 0  # as in signaling.limits.ClientLimiter
        pending = config.max_pending_calls_per_client if per_client else 0
        self.max_pending = pending if pending < (self.max_calls or config.max_calls) else 0
        self.rate = config.calls_per_client_per_minute / 60.0
        self.burst = float(config.call_burst_per_client)
        self._redis = redis
        self._clock = clock
        self._keep_ms = math.ceil(call_ttl_seconds * 1000)  # the longest call, plus its lease
        self._admit = redis.client.register_script(_ADMIT)
        self._settle = redis.client.register_script(_SETTLE)

    @property
    def off(self) -> bool:
        return not (self.max_calls or self.max_pending or self.rate)

    async def admit(self, client: str, calls: CallService) -> object:
        """Take a token and a call slot for ``client`` in the whole cluster, or raise a 429 (503 without Redis)."""
        now = self._clock()
        ticket = Ticket(client, secrets.token_hex(8))
        async with self._redis.guard("checking the per-client limits"):
            code, tokens = await self._admit(
                keys=[self._redis.key("rate", client), self._redis.key("calls_of", client)],
                args=[repr(now), repr(self.rate), repr(self.burst), self.max_calls, self.max_pending, ticket.nonce,
                      repr(now + PLACING_LEASE_SECONDS), self._redis.key(CALL_KEY, ""), self._keep_ms])
        match code.decode():
            case "rate_limited":
                wait = seconds_until_a_token(float(tokens), self.rate)
                raise ApiError(429, "rate_limited", f"too many calls placed from this address; retry in {wait} s",
                               retry_after=wait)
            case "too_many_calls":
                raise ApiError(429, "too_many_calls", f"at most {self.max_calls} calls at once from one address "
                               "(in the whole cluster)", retry_after=CONCURRENCY_RETRY_AFTER)
            case "too_many_pending_calls":
                raise ApiError(429, "too_many_pending_calls", f"at most {self.max_pending} calls from one address "
                               "may be connecting at once; connect (ICE) the ones placed first",
                               retry_after=PENDING_RETRY_AFTER)
        return ticket

    async def settle(self, ticket: object, call_id: str | None) -> None:
        """The call ``admit`` let through was placed (``call_id``) or not; a failure here is logged, not raised
        (the caller gets its answer; an unsettled claim lapses after :data:`PLACING_LEASE_SECONDS`)."""
        assert isinstance(ticket, Ticket)
        if not (self.max_calls or self.max_pending):
            return
        try:
            async with self._redis.guard("recording a placed call"):
                await self._settle(keys=[self._redis.key("calls_of", ticket.client)],
                                   args=[ticket.nonce, call_id or "", "0", self._keep_ms])
        except GatewayError:
            logger.warning("cluster: the per-client count of %s was not updated (call %s)", ticket.client, call_id)
