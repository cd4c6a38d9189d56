"""The upstream transports: the gateway's own HTTP/1.1 client (``sluice.upstream``, "fast") and
two maintained clients behind the same contract (``httpx``, with HTTP/2; ``aiohttp``), the
network settings they share (proxies, CA bundle, client certificate), the CONNECT tunnel, and a
router of several by URL prefix (``select``; the gateway builds it from the providers' settings
in ``sluice.gateway.upstreams``).

This package imports nothing at import time: ``sluice.upstream`` imports its ``network``,
``tunnel`` and ``failures`` modules, and the other modules here import ``sluice.upstream``.
"""
