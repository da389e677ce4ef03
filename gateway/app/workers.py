"""Several worker processes behind one port.

aiortc calls in one Python process share one GIL and one event loop: past
about a dozen full-duplex calls they slow each other down. With
``server.workers = N`` the public process becomes a *front*: it keeps the
HTTP surface (signaling, auth, CORS, limits, demo page) and hands each call to
the least-loaded of N worker processes, each a complete single-process gateway
listening on loopback. The worker's SDP answer carries the worker's own ICE
candidates, so media flows straight between the caller and the worker; the
front only ever sees the SDP and the hang-up.

Workers report their load (``GET /internal/load``: active calls, which of them
have connected, whether they accept calls, event-loop lag, ASR queue wait, and the
admission's ``headroom_calls``: how many more calls keep the admitted ones at their
service level, :mod:`gateway.session.admission`); the front polls it every 0.5 s and
picks the worker with the most headroom (then the fewest calls), counting each call it
places against that worker's headroom until the next poll. A worker that refuses (503)
is skipped; when none has headroom, the caller gets ``503 capacity`` with the smallest
``Retry-After`` the workers reported.

The front sends every request to a worker with the internal token
(:mod:`signaling.internal`), so the token must only ever reach a port the
worker holds. The front binds each worker's listening socket itself (port 0:
the kernel picks a free one), passes it to the worker process
(:data:`LISTEN_FD_ENV`, ``pass_fds``) and keeps its own copy open until the
worker has exited: no other process can bind that port in between, as it could
when the front only picked a free port number and the worker bound it later.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from gateway.errors import CallNotFound, GatewayError, InvalidOffer, Unavailable
from signaling.internal import INTERNAL_TOKEN_ENV, internal_headers
from signaling.paths import CALLS_PATH, call_id_from_location, call_location
from signaling.realtime_socket import FORWARDED_SESSION_HEADER, encode_session
from signaling.service import SocketRequest
from signaling.socket_relay import CALL_HEADER, connect_worker, first_call_id, proxy_socket

logger = logging.getLogger(__name__)

PARENT_PID_ENV = "VOICE_GATEWAY_PARENT_PID"
#: The file descriptor of the listening socket a worker inherits from its front (see the module doc).
LISTEN_FD_ENV = "VOICE_GATEWAY_LISTEN_FD"
POLL_INTERVAL = 0.5


@dataclass
class WorkerLoad:
    active_calls: int = 0
    accepting: bool = False
    reason: str | None = "starting"
    loop_lag_ms: float = 0.0
    asr_wait_ms: float = 0.0
    headroom_calls: int = 1  # more calls the worker's admission would take now (0: none), while accepting
    retry_after: int = 2  # its Retry-After, were it to refuse a call now
    degradation: str = "normal"


def listening_socket(host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket bound to a free port of ``host`` and listening (no ``SO_REUSEADDR``: nobody else binds it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, 0))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def inherited_listener() -> socket.socket | None:
    """In a worker: the listening socket its front passed (:data:`LISTEN_FD_ENV`), else None."""
    fd = os.environ.pop(LISTEN_FD_ENV, None)
    if fd is None:
        return None
    sock = socket.socket(fileno=int(fd))
    sock.setblocking(False)
    return sock


class WorkerProcess:
    def __init__(self, index: int, argv: Sequence[str], token: str) -> None:
        self.index = index
        self.port = 0  # bound in start()
        self.url = ""
        self._argv = list(argv)
        self._token = token
        self._listener: socket.socket | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.load = WorkerLoad()
        self.calls: set[str] = set()
        self.connected: set[str] = set()  # calls the worker reported connected (ICE and DTLS up)

    async def start(self) -> None:
        """Bind the worker's socket, then start the worker on it (the front keeps its copy: see the module doc)."""
        self._listener = listening_socket()
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        fd = self._listener.fileno()
        argv = [*self._argv, "--host", "127.0.0.1", "--port", str(self.port), "--set", "server.workers=1",
                "--set", "server.grpc_port=0"]  # gRPC speech services: single-process gateways only
        env = {**os.environ, INTERNAL_TOKEN_ENV: self._token, PARENT_PID_ENV: str(os.getpid()),
               LISTEN_FD_ENV: str(fd)}
        # Own session: a Ctrl-C in the terminal reaches the front only, which then drains the workers.
        self.process = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", *argv, env=env,
                                                            pass_fds=(fd,), start_new_session=True)
        logger.info("worker %d: started (pid %d, port %d)", self.index, self.process.pid, self.port)

    def release_port(self) -> None:
        """Close the front's copy of the listening socket: only once the worker has exited and nothing sends
        to it any more (a worker that crashed leaves its port held by the front, not free for another process)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def signal(self, signum: int) -> None:
        if self.alive:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    async def wait(self, within: float) -> None:
        if self.process is None:
            return
        try:
            await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            logger.warning("worker %d: did not exit in %.0f s; killing it", self.index, within)
            self.signal(signal.SIGKILL)
            await self.process.wait()


class WorkerPool:
    """Hands calls to worker processes; the same interface as :class:`SessionRegistry` for signaling."""

    def __init__(self, count: int, worker_argv: Sequence[str], *, request_timeout: float = 30.0) -> None:
        if count < 2:
            raise ValueError("a worker pool needs at least two workers")
        self.token = secrets.token_urlsafe(24)
        self.workers = [WorkerProcess(i, worker_argv, self.token) for i in range(count)]
        self.draining = False
        self._owner: dict[str, WorkerProcess] = {}
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._http: aiohttp.ClientSession | None = None
        self._poller: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return sum(w.load.active_calls for w in self.workers)

    def has_call(self, call_id: str) -> bool:
        return call_id in self._owner

    def is_connected(self, call_id: str) -> bool:
        """As the owning worker last reported it (polled every 0.5 s): a new call is pending until then."""
        worker = self._owner.get(call_id)
        return worker is not None and call_id in worker.connected

    def validate_session(self, session: dict[str, Any] | None) -> dict[str, Any] | None:
        """Not here: a front has no engines (no voices, no agents); the worker checks it when the call is placed."""
        return None

    @property
    def ready(self) -> bool:
        return any(w.alive and w.load.accepting and w.load.headroom_calls > 0 for w in self.workers)

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=self._timeout)
        await asyncio.gather(*(w.start() for w in self.workers))
        self._poller = asyncio.create_task(self._poll(), name="worker-load")

    async def close(self, drain_timeout: float) -> None:
        """SIGTERM every worker (each drains its own calls), wait for them, then free their ports."""
        self.draining = True
        for worker in self.workers:
            worker.signal(signal.SIGTERM)
        await asyncio.gather(*(w.wait(drain_timeout + 15) for w in self.workers))
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._http is not None:
            await self._http.close()
        for worker in self.workers:  # last: nothing sends the token any more
            worker.release_port()

    def headers(self) -> dict[str, str]:
        return internal_headers(self.token)

    def _candidates(self) -> list[WorkerProcess]:
        """The workers a new call may go to, the most headroom first; raises Unavailable when none has any."""
        if self.draining:
            raise Unavailable("draining", "the gateway is shutting down; try another instance", retry_after=5)
        candidates = sorted(
            (w for w in self.workers if w.alive and w.load.accepting and w.load.headroom_calls > 0),
            key=lambda w: (-w.load.headroom_calls, w.load.active_calls, w.load.loop_lag_ms, w.index),
        )
        if not candidates:
            loading = any(w.load.reason in ("starting", "engines_not_loaded") for w in self.workers)
            if loading:
                raise Unavailable("engine_unavailable", "the speech engines are not loaded yet", retry_after=5)
            retry = min((w.load.retry_after for w in self.workers if w.alive), default=2)
            raise Unavailable("capacity", "the gateway is at capacity; try again later", retry_after=max(1, retry))
        return candidates

    def _placed(self, worker: WorkerProcess, call_id: str) -> None:
        worker.calls.add(call_id)
        worker.load.active_calls += 1
        worker.load.headroom_calls = max(0, worker.load.headroom_calls - 1)  # until the next poll says otherwise
        self._owner[call_id] = worker
        logger.info("call %s: placed on worker %d", call_id, worker.index)

    async def create_call(self, offer_sdp: str, session: dict[str, Any] | None) -> tuple[str, str]:
        last: GatewayError | None = None
        for worker in self._candidates():
            try:
                call_id, answer = await self._forward(worker, offer_sdp, session)
            except Unavailable as exc:
                worker.load.accepting = False
                worker.load.retry_after = exc.retry_after or worker.load.retry_after
                last = exc
                continue
            self._placed(worker, call_id)
            return call_id, answer
        assert last is not None
        raise last

    async def serve_socket(self, request: web.Request, socket: SocketRequest) -> web.StreamResponse:
        """Proxy the socket to a worker (:mod:`signaling.socket_relay`): a sideband to its call's owner, a new
        call to the least loaded worker that accepts it."""
        assert self._http is not None
        headers = self.headers()
        protocols = (socket.protocol,) if socket.protocol else ()
        if socket.call_id is not None:
            owner = self._owner.get(socket.call_id)
            if owner is None:
                raise CallNotFound(socket.call_id)
            headers[CALL_HEADER] = socket.call_id
            upstream = await connect_worker(self._http, owner.url + request.path_qs, headers, protocols)
            return await proxy_socket(request, upstream, socket.protocol)
        session = encode_session(socket.session)
        if session is not None:
            headers[FORWARDED_SESSION_HEADER] = session
        last: GatewayError | None = None
        for worker in self._candidates():
            try:
                upstream = await connect_worker(self._http, worker.url + request.path_qs, headers, protocols)
            except Unavailable as exc:
                worker.load.accepting = False
                last = exc
                continue
            placed = functools.partial(self._socket_placed, worker, socket)
            return await proxy_socket(request, upstream, socket.protocol,
                                      on_first=placed if socket.kind == "realtime" else None)
        assert last is not None
        raise last

    def _socket_placed(self, worker: WorkerProcess, socket: SocketRequest, first_message: str) -> None:
        call_id = first_call_id(first_message)  # the worker's session.created names the call
        if call_id is not None:
            self._placed(worker, call_id)
            if socket.admitted is not None:
                socket.admitted(call_id)

    async def hangup(self, call_id: str) -> None:
        worker = self._owner.get(call_id)
        if worker is None:
            raise CallNotFound(call_id)
        assert self._http is not None
        async with self._http.delete(worker.url + call_location(call_id), headers=self.headers()) as r:
            if r.status == 404:
                self._forget(call_id)
                raise CallNotFound(call_id)
        self._forget(call_id)

    def _forget(self, call_id: str) -> None:
        worker = self._owner.pop(call_id, None)
        if worker is not None:
            worker.calls.discard(call_id)
            worker.connected.discard(call_id)

    async def _forward(self, worker: WorkerProcess, offer_sdp: str,
                       session: dict[str, Any] | None) -> tuple[str, str]:
        assert self._http is not None
        form = aiohttp.FormData()
        form.add_field("sdp", offer_sdp, content_type="application/sdp")
        if session is not None:
            form.add_field("session", json.dumps(session), content_type="application/json")
        try:
            async with self._http.post(worker.url + CALLS_PATH, data=form, headers=self.headers()) as r:
                body = await r.text()
                if r.status == 201:
                    return _placed_call_id(worker, r.headers.get("Location", "")), body
                error = _error_of(body)
        except (TimeoutError, aiohttp.ClientError) as exc:
            logger.warning("worker %d: unreachable: %s", worker.index, exc)
            raise Unavailable("capacity", "a worker is unreachable", retry_after=2) from exc
        code, message = error.get("code", "worker_error"), error.get("message", body[:200])
        if r.status == 503:
            raise Unavailable(code, message, retry_after=_retry_after(r.headers.get("Retry-After")))
        if r.status == 400:
            raise InvalidOffer(code, message)
        raise GatewayError(code, message)

    async def _poll(self) -> None:
        assert self._http is not None
        while True:
            for worker in self.workers:
                if not worker.alive:
                    if worker.load.accepting and not self.draining:
                        logger.error("worker %d exited (code %s)", worker.index, worker.process and
                                     worker.process.returncode)
                    worker.load = WorkerLoad(reason="exited")
                    for call_id in list(worker.calls):
                        self._forget(call_id)
                    continue
                try:
                    async with self._http.get(f"{worker.url}/internal/load", headers=self.headers(),
                                              timeout=aiohttp.ClientTimeout(total=2)) as r:
                        data = await r.json()
                    worker.load = _worker_load(data)
                    ended = worker.calls - set(data.get("call_ids", worker.calls))
                    for call_id in ended:
                        self._forget(call_id)
                    worker.connected = worker.calls & set(data.get("connected_call_ids", ()))
                except (TimeoutError, aiohttp.ClientError, ValueError, KeyError):
                    worker.load = WorkerLoad(reason="starting" if worker.load.reason == "starting" else "unreachable")
            await asyncio.sleep(POLL_INTERVAL)


async def watch_parent() -> None:
    """In a worker: when the front process is gone, drain and exit like on SIGTERM."""
    parent = os.environ.get(PARENT_PID_ENV)
    if not parent:
        return
    while os.getppid() == int(parent):  # noqa: ASYNC110 - polling another process, no event to wait on
        await asyncio.sleep(1.0)
    logger.warning("the front process %s is gone; shutting down", parent)
    os.kill(os.getpid(), signal.SIGTERM)


def _worker_load(data: dict[str, Any]) -> WorkerLoad:
    """A worker's ``/internal/load`` as the front keeps it."""
    accepting = bool(data["accepting"])
    return WorkerLoad(
        active_calls=int(data["active_calls"]), accepting=accepting, reason=data.get("reason"),
        loop_lag_ms=float(data.get("loop_lag_ms", 0)), asr_wait_ms=float(data.get("asr_wait_ms", 0)),
        headroom_calls=int(data.get("headroom_calls", 1)) if accepting else 0,
        retry_after=_retry_after(data.get("retry_after")), degradation=str(data.get("degradation", "normal")),
    )


def _retry_after(value: object) -> int:
    """A worker's Retry-After (seconds), 2 when it sent none or nonsense."""
    try:
        return max(1, min(3600, int(str(value))))
    except ValueError:
        return 2


def _placed_call_id(worker: WorkerProcess, location: str) -> str:
    call_id = call_id_from_location(location)
    if call_id is None:  # a bug in the worker: a 500 for the caller
        raise RuntimeError(f"worker {worker.index} answered 201 with no call Location ({location!r})")
    return call_id


def _error_of(body: str) -> dict[str, str]:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        error = json.loads(body)["error"]
        if isinstance(error, dict):
            return {str(k): str(v) for k, v in error.items()}
    return {}
