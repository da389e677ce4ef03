"""The items a caller can fetch again with ``conversation.item.retrieve``: the latest state of each, bounded."""

from __future__ import annotations

from typing import Any

MAX_RETRIEVABLE_ITEMS = 512


class ItemStore:
    """Item id → its latest payload (as last sent in ``conversation.item.added`` / ``.done``).

    Holds at most ``limit`` items; the one updated longest ago goes first.
    """

    def __init__(self, limit: int = MAX_RETRIEVABLE_ITEMS) -> None:
        if limit < 1:
            raise ValueError("an item store holds at least one item")
        self._limit = limit
        self._items: dict[str, dict[str, Any]] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._items)

    def remember(self, item: dict[str, Any]) -> None:
        item_id = item["id"]
        self._items.pop(item_id, None)
        self._items[item_id] = item
        if len(self._items) > self._limit:
            del self._items[next(iter(self._items))]
            self.evicted += 1

    def get(self, item_id: str) -> dict[str, Any] | None:
        return self._items.get(item_id)
