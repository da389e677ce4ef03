"""Several gateway instances as one cluster, on Redis (``cluster.redis_url``; docs/deployment.md).

* :mod:`~gateway.cluster.secrets`: client secrets, claimed atomically — one call anywhere per token;
* :mod:`~gateway.cluster.limits`: the per-client call limits, counted across instances;
* :mod:`~gateway.cluster.directory`: which instance holds which call, and each instance's load, kept alive
  by a heartbeat so that what a dead instance wrote expires;
* :mod:`~gateway.cluster.calls`: the call service signaling talks to — a hang-up of a call held elsewhere is
  forwarded to its instance;
* :mod:`~gateway.cluster.cluster`: all of it built from the configuration, with its life cycle.

It sits between the app and signaling: it implements signaling's store protocols (``SecretStore``,
``LimitStore``, ``CallService``) and signaling never imports it. Live calls never wait on Redis: only placing
a call, minting a token and forwarding a hang-up do, and they get ``503 cluster_unavailable`` within
``cluster.redis_timeout_seconds`` when Redis does not answer.
"""
