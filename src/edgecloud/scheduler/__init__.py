"""edgecloud.scheduler."""
