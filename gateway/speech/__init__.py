"""Speech services: ASR and TTS for other programs (OpenAI-compatible HTTP, Riva-compatible gRPC)."""
