"""The evidence document an enclave agent returns for a challenge, and its verification.

    {"tee": "sev-snp" | "tdx" | "simulated",
     "nonce": base64, "evidence": base64 (raw report or quote),
     "certificates": [PEM, ...]   (SNP: VCEK or VLEK, optionally ASK and ARK; simulated: chip),
     "enclave_keys": {"hpke": base64, "signing": base64, "release": base64 (optional),
                      "gateway": [base64, ...] (optional: the gateway keys it pins)},
     "gpu_evidence": {"report": hex SPDM response, "certificates": [PEM, ...]} (optional),
     "pool": "<namespace>/<name>" (optional: the MinerPool the enclave serves),
     "produced_at": RFC 3339}

report_data must equal `policy.bind(nonce, hpke, signing, release, pool, gateway)`: the keys
a client seals to and the key that signs receipts are the ones the TEE vouched for, and so are
the operator release key the enclave pins (whose signed secret releases alone it accepts), the
pool it serves and the gateway keys it pins (whose signed requests alone it answers), when it
pins or serves any. A verifier that knows which pool the enclave should serve (the operator
challenging a pool's endpoints, a client pinning pools) passes `expected_pool`: evidence bound
to any other pool, or to none, fails `pool.binding`, so one pool's enclave cannot be admitted,
or given secrets, as another's. A verifier that knows which gateways the enclave must answer
(the operator, from its configured gateway keys) passes `expected_gateway_keys`: evidence
pinning any other set fails `gateway.keys`, so an enclave started pinning someone else's key
(who could then be served directly, past the gateway's billing) is never admitted. GPU
evidence answers the nonce derived from the same challenge (`nvidia.gpu_nonce`), so it cannot
be relayed from another challenge; its checks join the CPU verdict's, prefixed `gpu.`.

Every verdict carries a `chip_id` claim: the identity of the hardware that signed (SNP and
simulated: the report's chip_id; TDX: SHA-256 of the PCK certificate's public key), and with
GPU evidence a `gpu_id` (SHA-256 of the device leaf certificate's public key).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from teeroute.attestation import nvidia, simulated, snp, tdx, x509chain
from teeroute.attestation.errors import CollateralUnavailable, EvidenceInvalid, UnsupportedEvidence
from teeroute.attestation.policy import GATEWAY_KEY_SIZE, Challenge, Policy
from teeroute.attestation.verdict import Check, Verdict
from teeroute.attestation.x509chain import load_pem_chain

RELEASE_KEY_SIZE = 32
MAX_GATEWAY_KEYS = 16
"""The most gateway keys a document may list (a rotation needs two or three)."""
GATEWAY_CHECK = "gateway.keys"
GPU_REQUIRED = frozenset({"gpu.nvidia.nonce", "gpu.nvidia.cc_mode"})
"""What a pool requiring a confidential-computing GPU asks of its evidence beyond a valid
chain and signature: our nonce, and CC mode on (which the SPDM report does not show, so such
a pool admits nothing until the agent attests the CC state: fail closed, never a pass)."""
POOL_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$"
"""A pool's identity, "<namespace>/<name>": a DNS label, "/", a DNS subdomain (as Kubernetes
names them; at most 317 characters)."""
PoolName = Annotated[str, StringConstraints(pattern=POOL_PATTERN)]


class EnclaveKeys(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    hpke: str
    signing: str
    release: str | None = None
    gateway: (
        Annotated[
            list[Annotated[str, StringConstraints(max_length=64)]],
            Field(min_length=1, max_length=MAX_GATEWAY_KEYS),
        ]
        | None
    ) = None
    """The gateway keys the enclave pins (base64, raw Ed25519); None: it pins none."""


class GpuEvidence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    report: str
    certificates: list[str]


class EvidenceDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tee: Literal["sev-snp", "tdx", "simulated"]
    nonce: str
    evidence: str
    certificates: list[str]
    enclave_keys: EnclaveKeys
    gpu_evidence: GpuEvidence | None = None
    pool: PoolName | None = None
    """The pool the enclave serves, as bound into report_data; None: it serves none."""
    produced_at: dt.datetime

    @classmethod
    def parse(cls, raw: Any) -> EvidenceDocument:
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "document"
            raise EvidenceInvalid("evidence.document", f"{where}: {err['msg']}") from exc


@dataclass(frozen=True)
class Trust:
    """Roots beyond the built-in vendor ones."""

    simulated_root_pem: bytes | None = None
    tdx_collateral: tdx.Collateral | None = None


def _b64(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EvidenceInvalid("evidence.document", f"{field} is not base64") from exc


def verify_document(
    doc: EvidenceDocument,
    *,
    now: dt.datetime,
    policy: Policy | None = None,
    trust: Trust | None = None,
    issued_at: dt.datetime | None = None,
    require_gpu: bool = False,
    expected_pool: str | None = None,
    expected_gateway_keys: frozenset[bytes] | None = None,
) -> Verdict:
    """Verify the CPU evidence, then the GPU evidence if present (required: `require_gpu`);
    with `expected_pool`, the pool the evidence binds must be that one (`pool.binding`); with
    `expected_gateway_keys`, the gateway keys it pins must be exactly those (`gateway.keys`;
    an empty set: it must pin none)."""
    cpu = _verify_cpu(doc, now=now, policy=policy, trust=trust, issued_at=issued_at)
    if expected_pool is not None:
        cpu = replace(cpu, checks=(*cpu.checks, pool_check(doc.pool, expected_pool)))
    if expected_gateway_keys is not None:
        pinned = frozenset(gateway_keys(doc))
        cpu = replace(cpu, checks=(*cpu.checks, gateway_check(pinned, expected_gateway_keys)))
    if doc.gpu_evidence is None:
        if not require_gpu:
            return cpu
        missing = Check("gpu.evidence_present", "failed", "the pool requires GPU evidence")
        return replace(cpu, checks=(*cpu.checks, missing))
    gpu = nvidia.verify(
        _hex(doc.gpu_evidence.report, "gpu_evidence.report"),
        "".join(doc.gpu_evidence.certificates).encode(),
        now=now,
        nonce=nvidia.gpu_nonce(_b64(doc.nonce, "nonce")),
    )
    leaf = load_pem_chain("".join(doc.gpu_evidence.certificates).encode(), "nvidia.chain")[0]
    return replace(
        cpu,
        checks=(*cpu.checks, *(replace(c, name=f"gpu.{c.name}") for c in gpu.checks)),
        claims={**cpu.claims, "gpu": gpu.claims, "gpu_id": x509chain.key_id(leaf)},
        required=cpu.required | (GPU_REQUIRED if require_gpu else frozenset()),
    )


def pool_check(bound: str | None, expected: str) -> Check:
    """Whether evidence binding `bound` (None: no pool) is evidence of `expected`'s enclave.
    Passes only together with `binding.report_data`, which proves the enclave bound it."""
    if bound is None:
        return Check("pool.binding", "failed", f"the enclave serves no pool (expected {expected})")
    return Check.of(
        "pool.binding",
        bound == expected,
        f"the enclave serves {bound}" + ("" if bound == expected else f", not {expected}"),
    )


def gateway_check(pinned: frozenset[bytes], expected: frozenset[bytes]) -> Check:
    """Whether an enclave pinning the gateway keys `pinned` answers exactly the gateways
    `expected`. Keys are named by the first 16 hex digits of their SHA-256, never dumped.
    Passes only together with `binding.report_data`, which proves the enclave bound them."""
    if pinned == expected:
        what = f"the {len(pinned)} expected" if pinned else "no"
        return Check(GATEWAY_CHECK, "passed", f"the enclave pins {what} gateway key(s)")
    problems = []
    if pinned - expected:
        problems.append(f"the enclave pins {_key_names(pinned - expected)}, not expected")
    if expected - pinned:
        problems.append(f"it lacks {_key_names(expected - pinned)}")
    return Check(GATEWAY_CHECK, "failed", "; ".join(problems))


def gateway_keys(doc: EvidenceDocument) -> tuple[bytes, ...]:
    """The gateway keys the document says the enclave pins, raw, as bound into report_data;
    EvidenceInvalid for one that is not base64 of 32 bytes, or a key listed twice."""
    listed = doc.enclave_keys.gateway or []
    keys = tuple(_b64(value, "enclave_keys.gateway") for value in listed)
    if any(len(key) != GATEWAY_KEY_SIZE for key in keys):
        raise EvidenceInvalid("evidence.document", "enclave_keys.gateway: not an Ed25519 key")
    if len(set(keys)) != len(keys):
        raise EvidenceInvalid("evidence.document", "enclave_keys.gateway lists a key twice")
    return keys


def _key_names(keys: frozenset[bytes]) -> str:
    return ", ".join(sorted(hashlib.sha256(key).hexdigest()[:16] for key in keys))


def _release_key(value: str | None) -> bytes:
    if value is None:
        return b""
    raw = _b64(value, "enclave_keys.release")
    if len(raw) != RELEASE_KEY_SIZE:
        raise EvidenceInvalid("evidence.document", "enclave_keys.release is not an Ed25519 key")
    return raw


def _hex(value: str, field: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise EvidenceInvalid("evidence.document", f"{field} is not hex") from exc


def _verify_cpu(
    doc: EvidenceDocument,
    *,
    now: dt.datetime,
    policy: Policy | None,
    trust: Trust | None,
    issued_at: dt.datetime | None,
) -> Verdict:
    challenge = Challenge(
        nonce=_b64(doc.nonce, "nonce"),
        issued_at=issued_at,
        hpke_public=_b64(doc.enclave_keys.hpke, "enclave_keys.hpke"),
        signing_public=_b64(doc.enclave_keys.signing, "enclave_keys.signing"),
        release_public=_release_key(doc.enclave_keys.release),
        pool=doc.pool or "",
        gateway_keys=gateway_keys(doc),
    )
    raw = _b64(doc.evidence, "evidence")
    return verify_evidence(
        doc.tee, raw, doc.certificates, now=now, policy=policy, trust=trust, challenge=challenge
    )


def verify_evidence(
    tee: str,
    raw: bytes,
    certificates: list[str],
    *,
    now: dt.datetime,
    policy: Policy | None,
    trust: Trust | None,
    challenge: Challenge | None,
) -> Verdict:
    """CPU evidence of one TEE type, judged against `challenge`; without one, report_data is
    only reported (claim `report_data`) for a caller that binds it otherwise (a gateway's own
    evidence, `policy.bind_gateway`)."""
    if tee == "sev-snp":
        return _snp(certificates, raw, now, policy, challenge)
    if tee == "simulated":
        root = (trust or Trust()).simulated_root_pem
        if root is None:
            raise CollateralUnavailable(
                "sim.chain", "no simulated root CA is trusted here (pass --simulated-root)"
            )
        if not certificates:
            raise EvidenceInvalid("evidence.document", "no chip certificate")
        return simulated.verify(
            raw, certificates[0].encode(), root, now=now, policy=policy, challenge=challenge
        )
    if tee == "tdx":
        return tdx.verify(
            raw,
            now=now,
            collateral=(trust or Trust()).tdx_collateral,
            policy=policy or Policy.authenticity_only("tdx"),
            challenge=challenge,
        )
    raise UnsupportedEvidence(tee, f"no verifier for {tee}")


def _snp(
    certificates: list[str],
    raw: bytes,
    now: dt.datetime,
    policy: Policy | None,
    challenge: Challenge | None,
) -> Verdict:
    certs = load_pem_chain("".join(certificates).encode(), "snp.certificates")
    if not certs:
        raise EvidenceInvalid("evidence.document", "no VCEK or VLEK certificate")
    chain = b"".join(c.public_bytes(Encoding.PEM) for c in certs[1:]) or None
    return snp.verify(
        raw,
        certs[0].public_bytes(Encoding.DER),
        now=now,
        chain_pem=chain,
        policy=policy or Policy.authenticity_only("sev-snp"),
        challenge=challenge,
    )
