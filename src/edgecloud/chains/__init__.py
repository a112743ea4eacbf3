"""Service chains: the chain model's pure parts (the path and the flow changes a path change
needs); services/chains.py stores chains and runs make-before-break changes; the agent's
network driver commits the flow changes as one OpenFlow bundle."""
