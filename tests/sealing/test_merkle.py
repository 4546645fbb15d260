"""RFC 6962 / 9162 Merkle trees: the Certificate Transparency reference vectors, hand-built
small trees (every size 1..9, every index), and every tampered proof refused."""

from __future__ import annotations

import hashlib

import pytest

from teeroute.sealing import merkle

# The Certificate Transparency reference inputs and tree heads (RFC 6962 test data, as in
# certificate-transparency's merkle_tree_test and transparency-dev/merkle).
CT_INPUTS = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (index, size, path): the reference inclusion proofs (0-based index).
CT_PROOFS = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip
CT_LEAVES = [merkle.leaf_hash(data) for data in CT_INPUTS]


def H(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


# Nine leaves a..i, and by hand each tree's root and each leaf's audit path (RFC 9162 2.1.1
# and 2.1.3.1: split at the largest power of two below the size; siblings bottom-up).
a, b, c, d, e, f, g, h, i = (merkle.leaf_hash(bytes([n]) * (n + 1)) for n in range(9))
ab, cd, ef, gh = H(a, b), H(c, d), H(e, f), H(g, h)
abcd, efgh = H(ab, cd), H(ef, gh)
abcdefgh = H(abcd, efgh)
HAND_TREES: dict[int, tuple[bytes, list[list[bytes]]]] = {
    1: (a, [[]]),
    2: (ab, [[b], [a]]),
    3: (H(ab, c), [[b, c], [a, c], [ab]]),
    4: (abcd, [[b, cd], [a, cd], [d, ab], [c, ab]]),
    5: (H(abcd, e), [[b, cd, e], [a, cd, e], [d, ab, e], [c, ab, e], [abcd]]),
    6: (H(abcd, ef), [[b, cd, ef], [a, cd, ef], [d, ab, ef], [c, ab, ef], [f, abcd], [e, abcd]]),
    7: (
        H(abcd, H(ef, g)),
        [[b, cd, H(ef, g)], [a, cd, H(ef, g)], [d, ab, H(ef, g)], [c, ab, H(ef, g)],
         [f, g, abcd], [e, g, abcd], [ef, abcd]],
    ),
    8: (
        abcdefgh,
        [[b, cd, efgh], [a, cd, efgh], [d, ab, efgh], [c, ab, efgh],
         [f, gh, abcd], [e, gh, abcd], [h, ef, abcd], [g, ef, abcd]],
    ),
    9: (
        H(abcdefgh, i),
        [[b, cd, efgh, i], [a, cd, efgh, i], [d, ab, efgh, i], [c, ab, efgh, i],
         [f, gh, abcd, i], [e, gh, abcd, i], [h, ef, abcd, i], [g, ef, abcd, i], [abcdefgh]],
    ),
}  # fmt: skip
LEAVES = [a, b, c, d, e, f, g, h, i]
CASES = [(size, index) for size in HAND_TREES for index in range(size)]


def test_roots_match_the_certificate_transparency_vectors() -> None:
    for size, expected in enumerate(CT_ROOTS):
        assert merkle.root(CT_LEAVES[:size]).hex() == expected


@pytest.mark.parametrize(("index", "size", "path"), CT_PROOFS)
def test_inclusion_proofs_match_the_certificate_transparency_vectors(
    index: int, size: int, path: list[str]
) -> None:
    proof = merkle.inclusion_proof(CT_LEAVES[:size], index)
    assert [node.hex() for node in proof] == path
    root = bytes.fromhex(CT_ROOTS[size])
    assert merkle.verify_inclusion(CT_LEAVES[index], index, size, proof, root)


@pytest.mark.parametrize("size", sorted(HAND_TREES))
def test_root_and_every_path_match_the_hand_built_tree(size: int) -> None:
    root, paths = HAND_TREES[size]
    assert merkle.root(LEAVES[:size]) == root
    assert merkle.inclusion_proofs(LEAVES[:size]) == paths
    for index in range(size):
        assert merkle.inclusion_proof(LEAVES[:size], index) == paths[index]


@pytest.mark.parametrize(("size", "index"), CASES)
def test_every_leaf_of_every_small_tree_verifies(size: int, index: int) -> None:
    root, paths = HAND_TREES[size]
    assert merkle.verify_inclusion(LEAVES[index], index, size, paths[index], root)


@pytest.mark.parametrize(("size", "index"), CASES)
def test_a_tampered_leaf_or_root_is_refused(size: int, index: int) -> None:
    root, paths = HAND_TREES[size]
    path = paths[index]
    other_leaf = merkle.leaf_hash(b"not in the tree")
    assert not merkle.verify_inclusion(other_leaf, index, size, path, root)
    flipped = bytes([root[0] ^ 1]) + root[1:]
    assert not merkle.verify_inclusion(LEAVES[index], index, size, path, flipped)


@pytest.mark.parametrize(("size", "index"), CASES)
def test_a_tampered_path_is_refused(size: int, index: int) -> None:
    root, paths = HAND_TREES[size]
    path = paths[index]
    for n in range(len(path)):  # each node altered in turn
        altered = [*path[:n], bytes([path[n][0] ^ 0x80]) + path[n][1:], *path[n + 1 :]]
        assert not merkle.verify_inclusion(LEAVES[index], index, size, altered, root)
    if path:
        assert not merkle.verify_inclusion(LEAVES[index], index, size, path[:-1], root)
    if len(path) > 1:
        assert not merkle.verify_inclusion(LEAVES[index], index, size, path[::-1], root)
    assert not merkle.verify_inclusion(LEAVES[index], index, size, [*path, a], root)


@pytest.mark.parametrize(("size", "index"), CASES)
def test_a_proof_claimed_for_another_index_or_size_is_refused(size: int, index: int) -> None:
    root, paths = HAND_TREES[size]
    path = paths[index]
    for other in range(size + 2):
        if other != index:
            assert not merkle.verify_inclusion(LEAVES[index], other, size, path, root)
    for other_size in range(1, 12):
        # Sizes whose audit path for `index` has another shape are refused; the size itself is
        # only bound by the signature over the root document, which carries it (`count`).
        if len(_reference_path(index, other_size)) != len(path):
            assert not merkle.verify_inclusion(LEAVES[index], index, other_size, path, root)


def _reference_path(index: int, size: int) -> list[int]:
    """The shape of PATH(index, D[size]) per RFC 9162 2.1.3.1: one entry per node."""
    if size <= 1:
        return []
    k = 1 << ((size - 1).bit_length() - 1)
    if index < k:
        return [*_reference_path(index, k), 1]
    return [*_reference_path(index - k, size - k), 0]


def test_bounds_are_refused_without_hashing() -> None:
    leaf = CT_LEAVES[0]
    assert not merkle.verify_inclusion(leaf, 0, 0, [], leaf)  # index >= size
    assert not merkle.verify_inclusion(leaf, -1, 1, [], leaf)
    assert not merkle.verify_inclusion(leaf, 0, 1 << 70, [leaf] * (merkle.MAX_PATH + 1), leaf)
    assert not merkle.verify_inclusion(leaf[:31], 0, 1, [], leaf[:31])  # not a SHA-256
    assert not merkle.verify_inclusion(leaf, 0, 2, [b"short"], leaf)


def test_a_single_leaf_tree_is_its_leaf_and_an_empty_path_proves_it() -> None:
    assert merkle.root([a]) == a
    assert merkle.verify_inclusion(a, 0, 1, [], a)
    with pytest.raises(IndexError):
        merkle.inclusion_proof([a], 1)


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    # A node can never pass for a leaf: 0x00 and 0x01 prefixes (second-preimage defence).
    assert merkle.leaf_hash(a + b) != merkle.node_hash(a, b)
    assert merkle.node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert merkle.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
