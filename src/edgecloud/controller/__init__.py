"""The site controller: the composition root that wires store, API, gateway and reconcilers.

site.py starts and stops it; nothing else constructs these parts together.
"""
