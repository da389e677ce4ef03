"""The QA client: a WebRTC caller that measures what a user hears (``voice-gateway call``, ``loadtest``).

A client of the gateway, not part of it: it imports no server code (enforced in ``make lint``)."""
