"""edgecloud.chains."""
