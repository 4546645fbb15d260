"""teeroute enclave agent: runs beside the engine inside the TEE, serves evidence, opens sealed
requests, seals the engine's answers and signs their usage receipts, and holds released secrets.

Imports only the shared library (`teeroute`).
"""
