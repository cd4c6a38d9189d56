"""Wire formats: each provider format's stream adapter (wire -> events) and encoder (events -> wire)."""
