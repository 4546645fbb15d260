"""Sealing: end-to-end confidentiality between a client and an attested enclave.

The wire protocol is docs/sealed-mode.md (wire v2).

    hpke.py          RFC 9180 HPKE (X25519, HKDF-SHA256, AES-128-GCM / ChaCha20-Poly1305)
    frames.py        binary, versioned frames and their bounded reader
    params.py        a session's transcript and HELLO
    session.py       attested sessions: handshake, requests, answer chunks, one-shot
                     (messages.py layouts, ratchet.py keys and rekeying, replay.py window)
    receipt_body.py, receipt_mac.py   receipts v2 and their MAC tags
    merkle.py, roots.py, batcher.py, tracker.py   signed Merkle roots over receipts, proofs
    receipt_cli.py   `teeroute verify receipt --proof`
    envelope.py, secrets.py   the v1 envelope, used only by attestation-gated secret release
    gateway_auth.py  the gateway's signed authorization of plain requests to an agent
    errors.py        the typed errors, each naming its check
"""
