"""The built-in default agent: says back what it heard."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from gateway.agents.base import Agent, ConversationItem, last_user_text


class EchoAgent(Agent):
    name = "echo"
    speculative = True

    async def reply(self, history: Sequence[ConversationItem], instructions: str) -> AsyncIterator[str]:
        heard = last_user_text(history).strip()
        yield "You said: "
        yield heard if heard else "nothing I could understand."
