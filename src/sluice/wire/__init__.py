"""Wire formats: per provider format, a stream adapter (wire to events) and encoder (back)."""
