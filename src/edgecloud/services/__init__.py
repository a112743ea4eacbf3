"""The domain: validation and rules per resource, called by api/ and the gateway.

Each module takes a ``ServiceContext`` (services/context.py) and works in one transaction per
call. Services never reach the gateway or reconcilers directly: they announce changes through
the ``Notifier`` and ask nodes through ``NodeCalls``, both injected by the controller.
"""
