"""Merkle trees as RFC 6962 / RFC 9162 (Certificate Transparency) define them.

The enclave signs one root over a batch of usage receipts; every receipt's inclusion proof
then shows a third party that the attested key vouched for it (receipt_mac.py, roots.py).

    leaf_hash(data)                 SHA-256(0x00 || data)
    node_hash(left, right)          SHA-256(0x01 || left || right)
    root(leaves)                    MTH over leaf hashes (SHA-256 of nothing for no leaves)
    inclusion_proof(leaves, index)  the audit path of one leaf (RFC 9162 section 2.1.3.1)
    inclusion_proofs(leaves)        every leaf's audit path, in one pass
    verify_inclusion(leaf, index, size, path, root)   RFC 9162 section 2.1.3.2

`leaves` are always leaf hashes (32 bytes each). The tree is built level by level: nodes are
paired left to right and an odd last node moves up unchanged, which gives exactly the RFC's
recursive split at the largest power of two below the size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_LEN = 32
MAX_PATH = 64
"""No audit path is longer than this: a tree of 2**64 leaves is beyond any batch."""
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """The tree's levels, leaves first, the root's level (one node) last."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [node_hash(below[n], below[n + 1]) for n in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])  # the odd last node is promoted as it is
        levels.append(above)
    return levels


def root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    return _levels(leaves)[-1][0]


def _path(levels: list[list[bytes]], index: int) -> list[bytes]:
    path = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):  # the promoted last node has no sibling at this level
            path.append(level[sibling])
        index >>= 1
    return path


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} is not in a tree of {len(leaves)}")
    return _path(_levels(leaves), index)


def inclusion_proofs(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every leaf's audit path, from one computation of the tree."""
    levels = _levels(leaves)
    return [_path(levels, index) for index in range(len(leaves))]


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], expected_root: bytes
) -> bool:
    """Whether `path` proves leaf hash `leaf` is leaf `index` of the tree of `size` leaves
    whose root is `expected_root` (RFC 9162 section 2.1.3.2, step by step)."""
    if not 0 <= index < size or len(path) > MAX_PATH:
        return False
    if any(len(node) != HASH_LEN for node in (leaf, expected_root, *path)):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root
