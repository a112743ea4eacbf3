"""edgecloud.templates."""
