"""How the process runs: create_app, serve, the CLI, health, worker processes."""
