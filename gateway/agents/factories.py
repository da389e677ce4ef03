"""The agents a server offers, built from ``[agents]`` and ``session.agent``.

Only these names can be selected by a call (``session.agent`` in the offer or in
``session.update``), and each one talks only to the endpoint configured here.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

from gateway.agents.chat import ChatCompletionsAgent, ChatEndpoint
from gateway.agents.echo import EchoAgent
from gateway.agents.local_llm import LocalLlmServer
from gateway.agents.registry import AgentFactory
from gateway.agents.upstream import UpstreamPolicy
from gateway.agents.webhook import WebhookAgent, WebhookEndpoint
from gateway.config import GatewayConfig

logger = logging.getLogger(__name__)

LOCAL_LLM_HISTORY_ITEMS = 12  # SmolLM2 is served with a 2048-token context
# SmolLM2-135M cannot call functions (llama.cpp's server has no tool-call template for it): the local-llm
# agent is sent no tools, and session.updated says so (session.gateway.agent_can_call_tools: false).


def agent_factories(config: GatewayConfig) -> tuple[dict[str, AgentFactory], Callable[[], None]]:
    """Factories for every enabled agent, and a function that frees what they hold.

    Blocking when ``local-llm`` is enabled (it starts the local LLM server): call it off the event loop.
    """
    cfg = config.agents
    policy = UpstreamPolicy.from_config(cfg, config.limits)
    factories: dict[str, AgentFactory] = {}
    servers: list[LocalLlmServer] = []
    for name in cfg.enabled(config.session.agent):
        if name == "echo":
            factories[name] = EchoAgent
        elif name == "openai":
            endpoint = ChatEndpoint(cfg.openai_base_url, cfg.openai_model, cfg.openai_api_key, cfg.openai_max_tokens)
            factories[name] = functools.partial(ChatCompletionsAgent, endpoint, policy, name="openai")
        elif name == "webhook":
            factories[name] = functools.partial(WebhookAgent, WebhookEndpoint(cfg.webhook_url, cfg.webhook_token),
                                                policy)
        elif name == "local-llm":
            server = LocalLlmServer(Path(cfg.local_llm_model) if cfg.local_llm_model else None,
                                    threads=cfg.local_llm_threads)
            server.start()
            servers.append(server)
            endpoint = ChatEndpoint(server.base_url, "local-llm", max_tokens=cfg.local_llm_max_tokens,
                                    max_history_items=LOCAL_LLM_HISTORY_ITEMS, tools=False)
            factories[name] = functools.partial(ChatCompletionsAgent, endpoint, policy, name="local-llm")
    logger.info("agents: %s (default %s)", ", ".join(factories), config.session.agent)

    def close() -> None:
        for server in servers:
            server.close()

    return factories, close
