"""edgecloud.reconcile."""
