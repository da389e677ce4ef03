"""The agents a server allows, by name: each call creates its own from a factory."""

from __future__ import annotations

from collections.abc import Callable

from gateway.agents.base import Agent

AgentFactory = Callable[[], Agent]

class AgentRegistry:
    """The agents this server allows, by name."""

    def __init__(self, factories: dict[str, AgentFactory], *, on_close: Callable[[], None] | None = None) -> None:
        if not factories:
            raise ValueError("at least one agent is required")
        self._factories = dict(factories)
        self._on_close = on_close

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._factories)

    def create(self, name: str, *, call_id: str = "") -> Agent:
        factory = self._factories.get(name)
        if factory is None:
            raise KeyError(name)
        agent = factory()
        agent.call_id = call_id
        return agent

    def close(self) -> None:
        """Free what the agents hold (e.g. stop the local LLM server). Safe to call more than once."""
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()
