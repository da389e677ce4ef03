"""What is said on the wire (OpenAI Realtime GA, plus ``gateway.*`` extensions): typed client events, server
events, session settings. Vocabulary only: no behaviour, no transport."""
