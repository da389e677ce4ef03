import asyncio, time
from tests.gateway.agents.test_webhook_agent import _agent, HISTORY, LONG_REPLY
from tests.gateway.agents.upstream_server import stream

async def test_dbg(upstream):
    upstream.default = stream(LONG_REPLY, delay=0.05)
    pieces = _agent(upstream).reply(HISTORY, "")
    print("first", await anext(pieces))
    t = time.monotonic()
    await pieces.aclose()
    print("closed in", time.monotonic() - t)
    for i in range(40):
        await asyncio.sleep(0.1)
        e = upstream.exchanges[0]
        print(i, len(e.streamed), e.ended_at, e.disconnected_at)
        if e.ended_at or e.disconnected_at: break
