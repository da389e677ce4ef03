"""How audio and events reach a caller: WebRTC (aiortc) today; each transport drives one session."""
