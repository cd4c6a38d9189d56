"""The upstream transports: the gateway's own HTTP/1.1 client (``sluice.upstream``, "fast") and
two maintained clients behind the same contract (``httpx``, with HTTP/2; ``aiohttp``), the
network settings they share (proxies, CA bundle, client certificate), and the choice of one per
provider (``sluice.transports.select``).

This package imports nothing at import time: ``sluice.upstream`` imports its ``network``
module, and the modules here import ``sluice.upstream``.
"""
