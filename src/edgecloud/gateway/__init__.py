"""The agent gateway: one TLS port where agents enroll and then hold their mTLS session.

server.py accepts connections (TLS handshake in our own code, so refusals are logged clearly),
enrolling.py serves the two unauthenticated requests (CA fetch, enrollment), sessions.py is one
connected agent, and gateway.py keeps the sessions, pushes desired state and watches liveness.
"""
