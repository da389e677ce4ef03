"""How the gateway is watched: observers, metrics, lifecycle event sinks, logging, heap hygiene."""
