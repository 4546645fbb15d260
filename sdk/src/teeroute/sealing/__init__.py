"""Sealing: end-to-end confidentiality between a client and an attested enclave.

The wire protocol is docs/sealed-mode.md.

    hpke.py       RFC 9180 HPKE (X25519, HKDF-SHA256, AES-128-GCM / ChaCha20-Poly1305)
    envelope.py   sealed requests, sealed response frames and the frame reader
    receipts.py   usage receipts signed by the enclave's attested Ed25519 key
    errors.py     the typed errors, each naming its check
"""
