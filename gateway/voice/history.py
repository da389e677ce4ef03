"""The items of one call's conversation, as the agent sees them: bounded, the oldest dropped first.

Without a bound a caller could grow it at the event rate limit: 50
``conversation.item.create`` a second of up to 64 KiB each is about 3 MB/s per
call, kept for the life of the call. ``limits.max_history_items`` (200) and
``limits.max_history_chars`` (200,000) cap it; beyond either, the oldest items
are dropped (and counted). The newest item always stays, whatever its size (a
client item is bounded by ``limits.max_event_bytes``), so a reply always has
the turn it answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.agents import ConversationItem, HistoryItem

logger = logging.getLogger(__name__)

MAX_ITEMS = 200
MAX_CHARS = 200_000


class History:
    """User items hold final transcripts; assistant items hold only what the caller heard; function calls and
    their results are items too (their arguments and output count toward the bounds)."""

    def __init__(self, *, max_items: int = MAX_ITEMS, max_chars: int = MAX_CHARS, call_id: str = "",
                 on_drop: Callable[[int], None] | None = None) -> None:
        """``on_drop(count)`` is told each time items are dropped (a metric)."""
        if max_items < 1 or max_chars < 1:
            raise ValueError("a history holds at least one item and one character")
        self.items: list[HistoryItem] = []
        self.chars = 0  # the characters of every item's text
        self.dropped = 0  # items dropped over the bounds, in the life of the call
        self._max_items = max_items
        self._max_chars = max_chars
        self._call_id = call_id
        self._on_drop = on_drop

    @property
    def last_id(self) -> str | None:
        return self.items[-1].id if self.items else None

    def append(self, item: HistoryItem) -> None:
        self.items.append(item)
        self.chars += len(item.text)
        self._trim()

    def snapshot(self, *pending: HistoryItem) -> list[HistoryItem]:
        """A copy for an agent, with items not yet committed appended."""
        return [*self.items, *pending]

    def record_assistant(self, item_id: str, text: str, truncated: bool) -> None:
        """Set an assistant item's final text (adding the item if it is new)."""
        for item in self.items:
            if item.id == item_id and isinstance(item, ConversationItem):
                self.chars += len(text) - len(item.text)
                item.text, item.truncated = text, truncated
                self._trim()
                return
        self.append(ConversationItem(item_id, "assistant", text, truncated))

    def find(self, item_id: str) -> HistoryItem | None:
        return next((item for item in self.items if item.id == item_id), None)

    def delete(self, item_id: str) -> bool:
        """Remove an item (``conversation.item.delete``); False if there is none with that id."""
        item = self.find(item_id)
        if item is None:
            return False
        self.items.remove(item)
        self.chars -= len(item.text)
        return True

    def previous_of(self, item_id: str) -> str | None:
        ids = [item.id for item in self.items]
        index = ids.index(item_id) if item_id in ids else len(ids)
        return ids[index - 1] if index > 0 else None

    def _trim(self) -> None:
        """Drop the oldest items until both bounds hold (the newest item stays)."""
        count = 0
        while len(self.items) - count > 1 and (len(self.items) - count > self._max_items
                                               or self.chars > self._max_chars):
            self.chars -= len(self.items[count].text)
            count += 1
        if not count:
            return
        del self.items[:count]
        if not self.dropped:  # once per call: a flood would otherwise log a line per item
            logger.warning("call %s: the conversation history is over its bounds (%d items, %d characters); "
                           "the oldest items are dropped from now on", self._call_id, self._max_items,
                           self._max_chars)
        self.dropped += count
        if self._on_drop is not None:
            self._on_drop(count)
