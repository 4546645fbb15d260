"""teeroute shared library: the contract every component shares.

Holds what the operator, the gateway and the enclave agent all speak: typed API models,
attestation, sealing, usage receipts, and the `teeroute` command line. It imports none of
those components; they import it.
"""

__version__ = "0.1.0"
