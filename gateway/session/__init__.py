"""One realtime session: the registry, the session (protocol ↔ conversation), watchdogs, admission.

Knows no transport: audio and events reach the caller through :mod:`gateway.transports`."""
