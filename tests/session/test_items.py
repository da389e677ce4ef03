"""The retrieve store stays within its item and character bounds, newest kept."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.session.items import ITEM_OVERHEAD_CHARS, ItemStore, item_chars


def item(item_id: str, text: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "user", "status": "completed",
            "content": [{"type": "input_text", "text": text}]}


def test_a_flood_of_large_items_is_bounded_by_characters() -> None:
    store = ItemStore(limit=512, max_chars=100_000)
    for i in range(400):
        store.remember(item(f"item_{i}", "x" * 60_000))  # an event near the 64 KiB limit
        assert store.chars <= 100_000 + 60_000 + ITEM_OVERHEAD_CHARS  # at most one over-size newest item
    assert store.get("item_399") is not None  # the newest is always retrievable
    assert store.get("item_397") is None
    assert len(store) == 1
    assert store.evicted == 399


def test_the_item_bound_and_updates() -> None:
    store = ItemStore(limit=3, max_chars=1_000_000)
    for i in range(5):
        store.remember(item(f"item_{i}", "hello"))
    assert [store.get(f"item_{i}") is not None for i in range(5)] == [False, False, True, True, True]
    store.remember(item("item_2", "updated text"))  # an update moves it to the newest place
    store.remember(item("item_5", "new"))
    assert store.get("item_3") is None and store.get("item_2") is not None
    assert store.chars == sum(item_chars(store.get(i) or {}) for i in ("item_2", "item_4", "item_5"))


def test_invalid_bounds() -> None:
    with pytest.raises(ValueError):
        ItemStore(limit=0)
