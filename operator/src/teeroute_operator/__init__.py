"""teeroute operator: reconciles MinerPool and Route objects (kopf handlers, pure builders).

Imports only the shared library (`teeroute`); it meets the gateway through Kubernetes objects.
"""
