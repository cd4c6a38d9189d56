"""The HTTP gateway: endpoints, presentation of event logs to clients, the ASGI app."""
