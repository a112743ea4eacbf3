"""Fault management: the alarm catalogue, raising/clearing alarms and the event log."""
