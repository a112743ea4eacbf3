"""The agent channel's wire protocol: framing and versioned messages.

Nothing else knows the byte layout: gateway/ (controller side) and agent/ (node side) both
speak through protocol.framing and protocol.messages.
"""
