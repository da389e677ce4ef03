"""The items a caller can fetch again with ``conversation.item.retrieve``: the latest state of each, bounded."""

from __future__ import annotations

from typing import Any

MAX_RETRIEVABLE_ITEMS = 512
#: Characters of text the store keeps at most (transcripts and texts of the items' content). Without it, 512
#: items of 64 KiB events each could hold 32 MB per call; with it a call's store stays under about 0.4 MB.
MAX_RETRIEVABLE_CHARS = 262_144
ITEM_OVERHEAD_CHARS = 256  # what an item's ids, type, role and status cost, counted as characters


def item_chars(item: dict[str, Any]) -> int:
    """The size of ``item`` as the store counts it: its content's text (a function call's ``arguments``, a
    result's ``output``) plus a fixed overhead."""
    size = ITEM_OVERHEAD_CHARS + sum(len(item[key]) for key in ("arguments", "output", "name")
                                     if isinstance(item.get(key), str))
    content = item.get("content")
    for part in content if isinstance(content, list) else ():
        if isinstance(part, dict):
            size += sum(len(value) for value in part.values() if isinstance(value, str))
    return size


class ItemStore:
    """Item id → its latest payload (as last sent in ``conversation.item.added`` / ``.done``).

    Holds at most ``limit`` items and ``max_chars`` characters (:func:`item_chars`); the item updated
    longest ago goes first. ``evicted`` counts the items dropped to stay within the bounds.
    """

    def __init__(self, limit: int = MAX_RETRIEVABLE_ITEMS, *, max_chars: int = MAX_RETRIEVABLE_CHARS) -> None:
        if limit < 1 or max_chars < ITEM_OVERHEAD_CHARS:
            raise ValueError("an item store holds at least one item")
        self._limit = limit
        self._max_chars = max_chars
        self._items: dict[str, tuple[dict[str, Any], int]] = {}
        self._chars = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def chars(self) -> int:
        return self._chars

    def remember(self, item: dict[str, Any]) -> None:
        item_id = item["id"]
        self._drop(item_id)
        size = item_chars(item)
        self._items[item_id] = (item, size)
        self._chars += size
        while len(self._items) > 1 and (len(self._items) > self._limit or self._chars > self._max_chars):
            self._drop(next(iter(self._items)))
            self.evicted += 1

    def retext(self, item_id: str, text: str) -> None:
        """A truncated audio item (``conversation.item.truncate``): its transcript becomes ``text``."""
        item = self.get(item_id)
        if item is not None and isinstance(item.get("content"), list):
            content = [{**part, "transcript": text} if isinstance(part, dict) and "transcript" in part else part
                       for part in item["content"]]
            self.remember({**item, "content": content})

    def forget(self, item_id: str) -> None:
        """A deleted item (``conversation.item.deleted``) cannot be retrieved any more."""
        self._drop(item_id)

    def get(self, item_id: str) -> dict[str, Any] | None:
        entry = self._items.get(item_id)
        return entry[0] if entry is not None else None

    def _drop(self, item_id: str) -> None:
        entry = self._items.pop(item_id, None)
        if entry is not None:
            self._chars -= entry[1]
