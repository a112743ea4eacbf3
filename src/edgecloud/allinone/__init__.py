"""The all-in-one site: one supervisor running a controller and a local, auto-enrolled agent.

Used by ``edgecloud up`` / ``edgecloud down``; restarts either process if it dies.
"""
