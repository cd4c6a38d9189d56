"""``sluice bench``: what the gateway adds to a stream, measured side by side with the floor.

Modules, each owning one thing:

- ``profiles``: the stream shapes the mock can send, named by the request's model;
- ``frames``: the wire bytes of those streams in OpenAI Chat and Anthropic Messages (no I/O);
- ``mock``: the paced mock upstream, a raw asyncio HTTP/1.1 server;
- ``client``: the load generator's stream reader, timestamping every SSE frame;
- ``stats``: token arrivals, gaps, percentiles and the stall rule (no I/O);
- ``proc``: process CPU time, resident memory, CPU pinning and file limits from ``/proc``;
- ``targets``: what is measured (direct, gateway, nginx, any URL) and the processes behind it;
- ``runner``: the scenarios (latency, sweep, idle streams, slow reader);
- ``report``: progress bar, terminal table, JSON and the SVG chart;
- ``cli``: ``sluice bench`` / ``python -m sluice.bench``.
"""
