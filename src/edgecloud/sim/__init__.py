"""edgecloud.sim."""
