"""Agents decide what the gateway says; the gateway does the audio."""

from gateway.agents.base import Agent, AgentError, ConversationItem, TextAgent
from gateway.agents.echo import EchoAgent

__all__ = ["Agent", "AgentError", "ConversationItem", "EchoAgent", "TextAgent"]
