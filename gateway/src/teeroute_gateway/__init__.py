"""teeroute gateway: OpenAI-compatible routing to attested miners, with metering.

Imports only the shared library (`teeroute`); it learns routes from Kubernetes objects.
"""
