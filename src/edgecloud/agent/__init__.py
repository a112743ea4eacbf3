"""The node agent: dials out to the controller, applies its node's desired state, reports.

enrolling.py turns a join token into a certificate; identity.py keeps the agent's files;
connection.py holds the one mTLS session (hello, heartbeats, requests); applying.py makes the
drivers match the desired state and observes what runs; guest_reports.py reads what guests
print about their vNICs; runner.py ties them together. Nothing listens on the node.
"""
