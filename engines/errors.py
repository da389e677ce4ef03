"""Engine errors. Each says whether retrying the same work can succeed."""

from __future__ import annotations


class EngineError(Exception):
    """An engine failed to load or to process input."""

    def __init__(self, engine: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"{engine}: {message}")
        self.engine = engine
        self.retryable = retryable


class EngineLoadError(EngineError):
    """A model could not be loaded: configuration or files are wrong."""

    def __init__(self, engine: str, message: str) -> None:
        super().__init__(engine, message, retryable=False)
