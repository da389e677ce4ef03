"""Per-call latency on one instance and on a 3-instance cluster at the same total load; the cluster's own cost.

    .venv/bin/python benchmarks/cluster.py --callers 6 --duration 40

Three measurements in one run, after the machine's speed (benchmarks/machine.py):

1. **Signaling cost** (no media): p50/p95 of minting a client secret, placing a call (an offer whose peer is
   gone: the answer is made, the call never connects) and hanging it up — on one instance without Redis, and
   in the cluster, where placing goes through Redis (limits, the token's claim, the directory) and a hang-up
   sent to another instance is forwarded to the owner.
2. **Calls in conversation** (the ``voice-gateway loadtest`` logic): N callers on one instance, then N callers
   spread over 3 instance processes sharing one Redis behind a round-robin front (in this process, like a
   load balancer: signaling only, media goes straight to each instance). Each caller hangs up through the front,
   so two of three hang-ups are forwarded. Overhead p50/p95 and their ratio, cluster / one instance.

All processes share this machine's cores, so 3 instances also mean 3 sets of engine threads competing for them:
the comparison is "same load, same cores", not "more machines".
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.latency import start_gateway_process  # noqa: E402
from benchmarks.machine import machine_speed  # noqa: E402
from qa.loadtest import LoadOptions, run_loadtest  # noqa: E402
from tests.support.ops import free_port, real_offer  # noqa: E402

KEY = "sk-benchmark-cluster-0123456789"
TOKEN = "benchmark-internal-token-0123456789"
OPEN_LIMITS = ["--set", "limits.max_calls_per_client=0", "--set", "limits.calls_per_client_per_minute=0",
               "--set", "limits.client_secrets_per_client_per_minute=0", "--set", f"auth.api_keys={KEY}"]


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": round(statistics.median(ordered), 2),
            "p95": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 2), "n": len(ordered)}


async def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is needed (Debian: apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",  # noqa: ASYNC220
                                "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    await asyncio.sleep(0.5)
    return process, f"redis://127.0.0.1:{port}/0"


Processes = list[subprocess.Popen[bytes]]


async def start_instances(count: int, redis_url: str, max_calls: int) -> tuple[Processes, list[str]]:
    started = []
    for index in range(count):
        extra = ["--max-calls", str(max_calls), *OPEN_LIMITS]
        if redis_url:
            extra += ["--set", f"cluster.redis_url={redis_url}", "--set", f"cluster.internal_token={TOKEN}",
                      "--set", f"cluster.instance_id=i{index}"]
        started.append(start_gateway_process(extra))
    pairs = await asyncio.gather(*started)
    return [process for process, _ in pairs], [url for _, url in pairs]


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


async def round_robin_front(urls: list[str]) -> tuple[web.AppRunner, str]:
    """A load balancer for signaling: each request to the next instance in turn."""
    turn = itertools.cycle(urls)
    http = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        async with http.request(request.method, next(turn) + request.path_qs, data=await request.read(),
                                headers=headers) as reply:
            keep = {k: v for k, v in reply.headers.items() if k.lower() in ("location", "content-type", "retry-after")}
            return web.Response(status=reply.status, body=await reply.read(), headers=keep)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    app.on_cleanup.append(lambda _app: http.close())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def signaling_cost(urls: list[str], rounds: int) -> dict[str, Any]:
    """Mint, place (on the first instance) and hang up on the same instance and, if any, on another."""
    offer = await real_offer()
    auth = {"Authorization": f"Bearer {KEY}"}
    timings: dict[str, list[float]] = {"mint": [], "place": [], "hangup_local": [], "hangup_forwarded": []}
    async with aiohttp.ClientSession() as http:
        for i in range(rounds):
            started = time.perf_counter()
            async with http.post(urls[0] + "/v1/realtime/client_secrets", headers=auth) as response:
                token = (await response.json())["value"]
            timings["mint"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            async with http.post(urls[0] + "/v1/realtime/calls", data=offer,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}) as r:
                assert r.status == 201, await r.text()
                location = r.headers["Location"]
            timings["place"].append((time.perf_counter() - started) * 1000)
            forwarded = len(urls) > 1 and i % 2 == 1
            started = time.perf_counter()
            async with http.delete((urls[1] if forwarded else urls[0]) + location, headers=auth) as response:
                assert response.status == 204, await response.text()
            timings["hangup_forwarded" if forwarded else "hangup_local"].append((time.perf_counter() - started) * 1000)
    return {name: percentiles(values) for name, values in timings.items() if values}


async def conversation(url: str, args: argparse.Namespace) -> dict[str, Any]:
    options = LoadOptions(url=url, callers=args.callers, duration_s=args.duration, speech=str(args.speech),
                          ramp_s=min(args.duration / 3, args.callers * 0.5), processes=min(args.callers, 2),
                          out=None, token=KEY, barge_in_rate=0.25, seed=args.callers, max_clip_s=4.0)
    report = await run_loadtest(options, progress=sys.stderr)
    return {"overhead_ms": report["overhead_ms"], "turns": report["turns"],
            "connect_failures": report["calls"]["connect_failures"], "errors": report["errors"],
            "replies_with_underrun": report["replies_with_underrun"]}


async def run_mode(instances: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    redis_process = None
    redis_url = ""
    if instances > 1:
        redis_process, redis_url = await start_redis(workdir)
    processes, urls = await start_instances(instances, redis_url, max_calls=max(16, args.callers))
    try:
        cost = await signaling_cost(urls, args.rounds)
        runner, front = await round_robin_front(urls)
        try:
            calls = await conversation(front, args)
        finally:
            await runner.cleanup()
    finally:
        stop(processes)
        if redis_process is not None:
            stop([redis_process])
    return {"instances": instances, "signaling_ms": cost, **calls}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=6)
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--rounds", type=int, default=40, help="place/hang-up rounds of the signaling cost")
    parser.add_argument("--speech", type=Path, default=REPO.parent / "shared" / "speech" / "manifest.tsv")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cluster.json")
    args = parser.parse_args()
    speed = machine_speed()
    print(f"machine: {speed}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as workdir:
        results = [await run_mode(1, args, Path(workdir)), await run_mode(3, args, Path(workdir))]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": speed, "results": results}, indent=1))
    print(f"\nmachine: python loop {speed['python_loop_ms']} ms, matmul {speed['matmul_ms']} ms, "
          f"load average {speed['load_average']}")
    for r in results:
        s, o = r["signaling_ms"], r["overhead_ms"]
        print(f"{r['instances']} instance(s): mint {s['mint']}, place {s['place']}, hang-up local {s['hangup_local']}"
              + (f", forwarded {s['hangup_forwarded']}" if "hangup_forwarded" in s else ""))
        print(f"   {args.callers} calls: {r['turns']} turns, overhead p50 {o.get('p50')} / p95 {o.get('p95')} ms, "
              f"refused {r['connect_failures']}, errors {sum(r['errors'].values())}, "
              f"underruns {r['replies_with_underrun']}")
    one, three = results
    for name in ("p50", "p95"):
        if one["overhead_ms"].get(name) and three["overhead_ms"].get(name):
            print(f"overhead {name}: 3 instances / 1 = {three['overhead_ms'][name] / one['overhead_ms'][name]:.2f}")
    for stage in ("mint", "place"):
        ratio = three["signaling_ms"][stage]["p50"] / one["signaling_ms"][stage]["p50"]
        print(f"{stage} p50: cluster / one instance = {ratio:.2f}")
    forwarded = three["signaling_ms"]["hangup_forwarded"]["p50"] / three["signaling_ms"]["hangup_local"]["p50"]
    print(f"hang-up p50: forwarded / local = {forwarded:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
