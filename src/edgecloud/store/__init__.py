"""edgecloud.store."""
