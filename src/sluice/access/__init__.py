"""Access control: client, viewer and operator keys, tenants, per-key limits and spend."""
