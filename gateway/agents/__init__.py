"""Agents decide what the gateway says; the gateway does the audio."""

from gateway.agents.base import (
    Agent,
    AgentError,
    AgentPiece,
    AgentRequest,
    ConversationItem,
    FunctionCallDelta,
    FunctionCallItem,
    FunctionOutputItem,
    HistoryItem,
    TextAgent,
)
from gateway.agents.echo import EchoAgent

__all__ = ["Agent", "AgentError", "AgentPiece", "AgentRequest", "ConversationItem", "EchoAgent", "FunctionCallDelta",
           "FunctionCallItem", "FunctionOutputItem", "HistoryItem", "TextAgent"]
