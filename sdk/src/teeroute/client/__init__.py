"""The client side of sealed mode (docs/sealed-mode.md): verify enclaves ourselves, seal
requests to them, open their answers and check their receipts.

    policy.py    what a client demands of an enclave (the MinerPool policy keys + trust roots)
    attest.py    fresh evidence for our own nonce, judged here; verified enclaves cached
    sessions.py  one attested client session per verified enclave (wire v2), opened via the
                 gateway; ONESHOT frames for clients that keep none
    session.py   SealedClient: seal in the session, send, retry (503 / 409 session_unknown)
    answer.py    read an answer: chunks opened in order, the receipt's client tag and digests
    proxy.py     `teeroute proxy`: a local OpenAI endpoint in front of SealedClient
    cli.py       the `proxy` and `attest` commands
    errors.py    AttestationRefused, GatewayError, ResponseInvalid, ...
"""
