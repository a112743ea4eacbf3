"""edgecloud.pki."""
