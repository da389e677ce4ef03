"""The voice gateway application: config, calls, turn-taking, agents, CLI."""
