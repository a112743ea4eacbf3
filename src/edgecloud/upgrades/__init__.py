"""Upgrades and patches (issue 12): the release rules and the pure checks an upgrade runs on
before anything changes. No I/O here; services/upgrades.py gathers the site's facts."""
