from __future__ import annotations

from gateway.voice.clauses import ClauseSplitter


def test_first_clause_is_released_early_and_later_ones_are_longer() -> None:
    splitter = ClauseSplitter()
    assert splitter.push("You said: ") == ["You said:"]
    assert splitter.push("ten of clubs, and then ") == []  # a later clause waits for 40 characters
    assert splitter.push("seven of hearts and eight of spades. Next") == [
        "ten of clubs, and then seven of hearts and eight of spades."
    ]
    assert splitter.flush() == ["Next"]


def test_text_streamed_in_tiny_pieces_gives_the_same_clauses() -> None:
    text = "Hello there. This is a longer sentence that goes on, and on, until it ends. Bye."
    whole = ClauseSplitter()
    expected = whole.push(text) + whole.flush()
    pieces = ClauseSplitter()
    got = [c for ch in text for c in pieces.push(ch)] + pieces.flush()
    assert got == expected
    assert " ".join(got) == text


def test_overlong_text_without_punctuation_is_cut_at_a_space() -> None:
    splitter = ClauseSplitter(max_chars=50)
    clauses = splitter.push("word " * 30)
    assert clauses and all(len(c) <= 50 for c in clauses)
    assert " ".join(clauses + splitter.flush()).split() == ["word"] * 30
