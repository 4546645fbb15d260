"""The client side of sealed mode (docs/sealed-mode.md): verify enclaves ourselves, seal
requests to them, open their answers and check their receipts.

    policy.py    what a client demands of an enclave (the MinerPool policy keys + trust roots)
    attest.py    fresh evidence for our own nonce, judged here; verified enclaves cached
    session.py   SealedClient: seal, send, open frames, verify the receipt
    proxy.py     `teeroute proxy`: a local OpenAI endpoint in front of SealedClient
    cli.py       the `proxy` and `attest` commands
    errors.py    AttestationRefused, GatewayError, ResponseInvalid, ...
"""
