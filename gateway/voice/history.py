"""The items of one call's conversation, as the agent sees them."""

from __future__ import annotations

from gateway.agents import ConversationItem


class History:
    """User items hold final transcripts; assistant items hold only what the caller heard."""

    def __init__(self) -> None:
        self.items: list[ConversationItem] = []

    @property
    def last_id(self) -> str | None:
        return self.items[-1].id if self.items else None

    def append(self, item: ConversationItem) -> None:
        self.items.append(item)

    def snapshot(self, *pending: ConversationItem) -> list[ConversationItem]:
        """A copy for an agent, with items not yet committed appended."""
        return [*self.items, *pending]

    def record_assistant(self, item_id: str, text: str, truncated: bool) -> None:
        """Set an assistant item's final text (adding the item if it is new)."""
        for item in self.items:
            if item.id == item_id:
                item.text, item.truncated = text, truncated
                return
        self.items.append(ConversationItem(item_id, "assistant", text, truncated))

    def previous_of(self, item_id: str) -> str | None:
        ids = [item.id for item in self.items]
        index = ids.index(item_id) if item_id in ids else len(ids)
        return ids[index - 1] if index > 0 else None
