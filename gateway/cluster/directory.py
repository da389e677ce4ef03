"""Which instance holds which call, and how loaded each instance is: written by a heartbeat, so it expires.

* ``<prefix>call:<call_id>``: a hash ``instance`` (its id), ``connected`` (``0``/``1``), written when the call
  is placed and again at every heartbeat (``cluster.heartbeat_seconds``, 2 s), with a time to live of
  ``cluster.lease_seconds`` (10 s). An ended call's entry is deleted at once; an instance that dies (SIGKILL,
  a lost node) stops writing, and its entries are gone one lease later, so hang-ups and per-client counts stop
  seeing its calls.
* ``<prefix>instance:<id>``: this instance's URL and its measured load (the ``/internal/load`` report: calls,
  whether it accepts calls and why not, event-loop lag, ASR queue wait, CPU), with the same lease; and
  ``<prefix>instances``, a sorted set of instance ids by their last heartbeat. ``GET /internal/cluster`` lists
  the live ones, for a front or an operator that routes by measured capacity.

One heartbeat is one pipelined round trip however many calls the instance holds (16 by default).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from gateway.cluster.redis import ClusterRedis

logger = logging.getLogger(__name__)

CALL_KEY = "call"

_FORGET = """
if redis.call('HGET', KEYS[1], 'instance') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

#: The load report fields published for other instances (the call ids are in the directory instead).
LOAD_FIELDS = ("active_calls", "accepting", "reason", "loop_lag_ms", "asr_wait_ms", "cpu_percent")


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class CallDirectory:
    """This instance's view of the directory (see the module doc)."""

    def __init__(self, redis: ClusterRedis, *, instance_id: str, instance_url: str, lease_seconds: float,
                 max_calls: int, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self.instance_id = instance_id
        self.instance_url = instance_url
        self._lease_ms = math.ceil(lease_seconds * 1000)
        self._lease_s = lease_seconds
        self._max_calls = max_calls
        self._clock = clock
        self._forget = redis.client.register_script(_FORGET)
        self._written: set[str] = set()  # calls the last heartbeat wrote

    def _call(self, call_id: str) -> str:
        return self._redis.key(CALL_KEY, call_id)

    async def register(self, call_id: str) -> None:
        """``call_id`` is held here (not connected yet)."""
        async with self._redis.guard("registering a call"):
            pipe = self._redis.client.pipeline(transaction=True)
            pipe.hset(self._call(call_id), mapping={"instance": self.instance_id, "connected": "0"})
            pipe.pexpire(self._call(call_id), self._lease_ms)
            await pipe.execute()
        self._written.add(call_id)

    async def forget(self, call_id: str) -> None:
        """``call_id`` ended here: its entry goes (only if it is still this instance's)."""
        self._written.discard(call_id)
        async with self._redis.guard("forgetting a call"):
            await self._forget(keys=[self._call(call_id)], args=[self.instance_id])

    async def owner(self, call_id: str) -> str | None:
        """The id of the instance holding ``call_id``, or None when no live instance does."""
        async with self._redis.guard("looking a call up"):
            return _text(await self._redis.client.hget(self._call(call_id), "instance"))

    async def url_of(self, instance_id: str) -> str | None:
        """The URL of a live instance (None once its lease ran out)."""
        async with self._redis.guard("looking an instance up"):
            raw = await self._redis.client.get(self._redis.key("instance", instance_id))
        return str(json.loads(raw)["url"]) if raw is not None else None

    async def heartbeat(self, report: dict[str, Any]) -> None:
        """Write this instance's load and its live calls again (``report``: ``SessionRegistry.load_report()``);
        delete the entries of calls that ended since the last heartbeat."""
        now = self._clock()
        live: list[str] = list(report.get("call_ids", []))
        connected = set(report.get("connected_call_ids", []))
        ended = self._written - set(live)  # now: a call registered while this beat awaits Redis is not among them
        load = {"instance": self.instance_id, "url": self.instance_url, "max_calls": self._max_calls, "at": now,
                **{name: report.get(name) for name in LOAD_FIELDS}}
        async with self._redis.guard("the heartbeat"):
            pipe = self._redis.client.pipeline(transaction=False)
            pipe.set(self._redis.key("instance", self.instance_id), json.dumps(load), px=self._lease_ms)
            pipe.zadd(self._redis.key("instances"), {self.instance_id: now})
            pipe.zremrangebyscore(self._redis.key("instances"), "-inf", now - self._lease_s)
            for call_id in live:
                key = self._call(call_id)
                state = "1" if call_id in connected else "0"
                pipe.hset(key, mapping={"instance": self.instance_id, "connected": state})
                pipe.pexpire(key, self._lease_ms)
            await pipe.execute()
            for call_id in ended:
                await self._forget(keys=[self._call(call_id)], args=[self.instance_id])
        self._written = (self._written - ended) | set(live)

    async def instances(self) -> list[dict[str, Any]]:
        """The live instances' published loads, most recent heartbeat first."""
        async with self._redis.guard("listing the instances"):
            ids = await self._redis.client.zrevrangebyscore(self._redis.key("instances"), "+inf",
                                                            self._clock() - self._lease_s)
            if not ids:
                return []
            names = [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
            raws = await self._redis.client.mget([self._redis.key("instance", name) for name in names])
        return [json.loads(raw) for raw in raws if raw is not None]

    async def withdraw(self, call_ids: Iterable[str] = ()) -> None:
        """This instance stops (after its calls were closed): its load entry goes, and any call entries left."""
        async with self._redis.guard("withdrawing the instance"):
            for call_id in {*self._written, *call_ids}:
                await self._forget(keys=[self._call(call_id)], args=[self.instance_id])
            await self._redis.client.delete(self._redis.key("instance", self.instance_id))
            await self._redis.client.zrem(self._redis.key("instances"), self.instance_id)
        self._written.clear()
