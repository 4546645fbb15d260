"""teeroute enclave agent: runs beside the engine inside the TEE and serves evidence.

Imports only the shared library (`teeroute`).
"""
