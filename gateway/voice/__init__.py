"""How the gateway listens and talks: conversation, turns, transcription, replies, playback, clauses,
history. Imports neither aiohttp nor aiortc."""
