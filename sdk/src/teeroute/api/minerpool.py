"""MinerPool: a set of miners serving models inside TEEs, at a price.

Either the operator runs them (`replicas` of the agent + engine images, placed on confidential
nodes by `placement`), or they run elsewhere and are listed as `endpoints`. A relay pool runs
the agent alone, in front of an upstream OpenAI-compatible API (`relay`). `secrets` are released
to each enclave once its evidence verified (sealed to its attested key). Cross-field rules are
CEL validations the apiserver enforces at apply time (see `x-kubernetes-validations` below).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from teeroute.api.common import (
    DNS_LABEL,
    ApiModel,
    Condition,
    Duration,
    ObjectMeta,
    Price,
    TeeType,
    cel,
    parse_duration,
)
from teeroute.api.runtime_class import RuntimeClassName, cel_rules
from teeroute.api.runtime_class import problems as runtime_class_problems

PlacementProfile = Literal["aks", "gke", "coco", "kind"]
PaymentMethod = Literal["prepaid-credit", "invoice", "usdc", "tao"]
HEX_MEASUREMENT = r"^[0-9a-f]{96}$"


class ServedModel(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^\S+$")]
    """The model the engine serves, as it names it (e.g. meta-llama/Llama-3.1-8B-Instruct)."""
    context_length: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    """Maximum context in tokens; shown in /v1/models."""


class GpuRequirement(ApiModel):
    required: bool = False
    """Whether the engine needs a GPU in confidential-computing mode (NVIDIA Hopper or newer);
    when true, its evidence is verified beside the CPU's."""


class TeeRequirement(ApiModel):
    type: TeeType
    """The TEE the miners run in: sev-snp (AMD), tdx (Intel) or simulated (test clusters only;
    trusted only where a policy allows it explicitly)."""
    gpu: GpuRequirement = Field(default_factory=GpuRequirement)
    """GPU confidential-computing requirements."""


class Toleration(ApiModel):
    key: str = ""
    """The taint key the toleration applies to; empty with operator Exists matches all."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """Exists or Equal."""
    value: str = ""
    """The taint value to match with operator Equal."""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""
    """The taint effect to match; empty matches all."""
    toleration_seconds: int | None = None
    """For NoExecute: how long the pod stays bound after the taint appears."""


class Placement(ApiModel):
    profile: PlacementProfile
    """Where the pool runs: aks (AKS confidential VM node pools), gke (Confidential GKE Nodes),
    coco (Confidential Containers: each pod in its own confidential VM, on hosts where the
    kata-qemu runtime classes are installed; the RuntimeClass places the pods) or kind (a local
    cluster with the simulated TEE). Sets the nodeSelector, tolerations and, for coco, the
    runtimeClassName for the TEE type; the fields below add to or override them."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Extra node labels to require, merged over the profile's (same key: this value wins)."""
    tolerations: list[Toleration] = Field(default_factory=list)
    """Extra tolerations, added to the profile's."""
    affinity: Annotated[
        dict[str, Any], Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    ] = Field(default_factory=dict)
    """A core/v1 Affinity for the pods, passed through as written."""
    runtime_class_name: RuntimeClassName | None = None
    """RuntimeClass for the pods. Confidential Containers: kata-qemu-snp or kata-qemu-tdx (CPU
    only), kata-qemu-nvidia-gpu-snp or kata-qemu-nvidia-gpu-tdx (GPUs passed into the pod's
    VM), all with profile coco and matching tee.type; kata-qemu-coco-dev (a Kata VM without a
    TEE, for test clusters: tee.type simulated, profile kind). Then the pod's VM is the TEE and
    its launch measurement covers the Kata guest, so allowedMeasurements pins the guest image of
    the CoCo release the hosts run (see docs/confidential-containers.md). nvidia: the GPU
    Operator's runtime on aks/gke GPU nodes (the node is the confidential VM). Unset: the
    profile's default (coco: from tee.type and GPUs; others: the cluster's default runtime)."""


class Images(ApiModel):
    agent: Annotated[str, Field(min_length=1)]
    """The enclave agent image (evidence, sealing, receipts)."""
    engine: Annotated[str, Field(min_length=1)] | None = None
    """The inference engine image (OpenAI-compatible server, e.g. vLLM); required unless the
    pool is a relay (spec.relay), which runs no engine container."""
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Image pull policy of both containers."""


class Resources(ApiModel):
    gpus: Annotated[int, Field(ge=0, le=16)] = 0
    """NVIDIA GPUs per replica (nvidia.com/gpu), requested by the engine."""
    cpu: Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?m?$")] = "1"
    """CPU per replica for the engine (Kubernetes quantity, e.g. 4 or 500m)."""
    memory: Annotated[str, Field(pattern=r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$")] = "2Gi"
    """Memory per replica for the engine (Kubernetes quantity, e.g. 16Gi)."""


class Pricing(ApiModel):
    input_per_million: Price
    """Price of one million input (prompt) tokens, in `currency`."""
    output_per_million: Price
    """Price of one million output (completion) tokens, in `currency`."""
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3,5}$")] = "USD"
    """ISO 4217 code or token ticker, upper case (USD, EUR, USDC, TAO)."""


HexRegister = Annotated[str, Field(pattern=HEX_MEASUREMENT)]
TcbStatus = Literal[
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "TDRelaunchAdvised",
    "TDRelaunchAdvisedConfigurationNeeded",
]
"""The Intel TCB statuses a pool may accept (attestation.registers adds Revoked, which
none may)."""


class TdxAttestation(ApiModel):
    """Intel TDX pins beyond MRTD (`allowedMeasurements`). Each list is a set of allowed
    values (48 bytes as lowercase hex); empty: not pinned. A pin on a pool whose evidence
    has no such register (SEV-SNP, simulated) fails that evidence."""

    rtmr0: list[HexRegister] = Field(default_factory=list, max_length=64)
    """RTMR0: the virtual firmware's configuration (TDVF: CFV, ACPI tables, boot variables)."""
    rtmr1: list[HexRegister] = Field(default_factory=list, max_length=64)
    """RTMR1: the OS loader and kernel."""
    rtmr2: list[HexRegister] = Field(default_factory=list, max_length=64)
    """RTMR2: the kernel command line and initrd."""
    rtmr3: list[HexRegister] = Field(default_factory=list, max_length=64)
    """RTMR3: extended by the workload at run time (e.g. the container image digests)."""
    mr_config_id: list[HexRegister] = Field(default_factory=list, max_length=64)
    """MRCONFIGID: the host-set configuration id the TD was launched with."""
    mr_owner: list[HexRegister] = Field(default_factory=list, max_length=64)
    """MROWNER: the host-set owner id the TD was launched with."""
    accepted_tcb_statuses: list[TcbStatus] = Field(
        default_factory=lambda: list[TcbStatus](["UpToDate"]), min_length=1, max_length=8
    )
    """Intel TCB statuses (platform, TDX module, quoting enclave, from Intel's signed
    collateral) that admit a miner. Default: UpToDate only; adding e.g. SWHardeningNeeded
    accepts platforms Intel flags as needing software mitigations."""


class AttestationPolicy(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "duration(self.reattestationInterval) < duration(self.maxEvidenceAge)",
                    "reattestationInterval must be shorter than maxEvidenceAge, "
                    "or evidence expires before it is refreshed",
                    field_path=".reattestationInterval",
                )
            ]
        }
    )

    allowed_measurements: list[Annotated[str, Field(pattern=HEX_MEASUREMENT)]] = Field(
        default_factory=list, max_length=64
    )
    """Launch measurements allowed (SNP MEASUREMENT / TDX MRTD, 48 bytes as lowercase hex).
    Empty: any measurement, which only suits development."""
    minimum_tcb: dict[str, Annotated[int, Field(ge=0, le=255)]] = Field(default_factory=dict)
    """Minimum TCB component versions by name (SNP: bootloader, tee, snp, microcode and, on
    Turin, fmc; TDX: teeTcbSvn0 to teeTcbSvn15, the bytes of TEE_TCB_SVN)."""
    debug_forbidden: bool = True
    """Reject evidence from a TEE whose policy allows debugging (the host could read memory)."""
    max_evidence_age: Duration = "5m"
    """How long a verified piece of evidence keeps an endpoint admitted."""
    reattestation_interval: Duration = "1m"
    """How often each endpoint is challenged with a fresh nonce."""
    tdx: TdxAttestation = Field(default_factory=TdxAttestation)
    """Intel TDX: RTMR, MRCONFIGID and MROWNER pins, and the TCB statuses accepted."""
    allow_unchecked_collateral: bool = False
    """Opt-out, off by default: admit TDX evidence whose Intel collateral checks (TCB Info
    and QE Identity signatures, CRLs, TCB status, QE identity) could not run because the
    operator's trust store has no collateral for the platform. Then the platform's TCB and
    revocation are not known: development only. Collateral that is present is always checked."""

    @model_validator(mode="after")
    def _interval_within_age(self) -> AttestationPolicy:
        if parse_duration(self.reattestation_interval) >= parse_duration(self.max_evidence_age):
            raise ValueError("reattestationInterval must be shorter than maxEvidenceAge")
        return self


class Endpoint(ApiModel):
    name: Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
    """A name for the endpoint, unique in the pool."""
    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$", max_length=2048)]
    """Base URL of the miner's agent (its evidence and inference API)."""


DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DATA_KEY = r"^[-._a-zA-Z0-9]+$"


class SecretKeyRef(ApiModel):
    name: Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]
    """The Secret's name, in the pool's namespace."""
    key: Annotated[str, Field(pattern=DATA_KEY, max_length=253)]
    """The key in the Secret's data whose value is released."""


class PoolSecret(ApiModel):
    name: Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
    """The name the enclave agent knows the secret by (e.g. engine-api-key: sent to the engine
    as its bearer token); unique in the pool."""
    secret_key_ref: SecretKeyRef
    """Where its value is: a key of a Secret in the pool's namespace. The operator reads it
    and releases it, sealed to the attested key, only to enclaves whose evidence verified."""


class Relay(ApiModel):
    url: Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$", max_length=2048)]
    """Base URL of the upstream OpenAI-compatible API (the agent forwards /v1/... to it)."""


def _default_payment_methods() -> list[PaymentMethod]:
    return ["prepaid-credit"]


class MinerPoolSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.endpoints) != has(self.images)",
                    "set either images (miners run by the operator) or endpoints (external "
                    "miners), not both and not neither",
                ),
                cel(
                    "!has(self.endpoints) || !has(self.replicas)",
                    "replicas cannot be set for external endpoints",
                    field_path=".replicas",
                ),
                cel(
                    "!has(self.endpoints) || !has(self.placement)",
                    "placement cannot be set for external endpoints",
                    field_path=".placement",
                ),
                cel(
                    "has(self.endpoints) || has(self.placement)",
                    "placement is required when the operator runs the miners",
                    field_path=".placement",
                ),
                cel(
                    "self.tee.type != 'simulated' || !has(self.placement) || "
                    "self.placement.profile == 'kind'",
                    "the simulated TEE may only be placed with the kind profile",
                    field_path=".tee.type",
                ),
                cel(
                    "!has(self.relay) || !has(self.endpoints)",
                    "relay cannot be set for external endpoints",
                    field_path=".relay",
                ),
                cel(
                    "!has(self.relay) || !has(self.images) || !has(self.images.engine)",
                    "a relay runs no engine: set either relay or images.engine, not both",
                    field_path=".images.engine",
                ),
                cel(
                    "has(self.relay) || !has(self.images) || has(self.images.engine)",
                    "images.engine is required unless the pool is a relay",
                    field_path=".images.engine",
                ),
                cel(
                    "!has(self.secrets) || "
                    "self.secrets.all(s, self.secrets.exists_one(o, o.name == s.name))",
                    "each secret name may be listed once",
                    field_path=".secrets",
                ),
                cel(
                    "!self.tee.gpu.required || has(self.endpoints) || "
                    "(has(self.resources) && self.resources.gpus >= 1)",
                    "tee.gpu.required needs resources.gpus of at least 1",
                    field_path=".resources.gpus",
                ),
                *cel_rules(),
            ]
        }
    )

    models: Annotated[list[ServedModel], Field(min_length=1, max_length=16)]
    """The models this pool serves."""
    tee: TeeRequirement
    """The trusted execution environment the miners must run in."""
    pricing: Pricing
    """What the pool charges."""
    payment_methods: Annotated[list[PaymentMethod], Field(min_length=1)] = Field(
        default_factory=_default_payment_methods
    )
    """Payment methods the pool accepts."""
    attestation: AttestationPolicy = Field(default_factory=AttestationPolicy)
    """How evidence is judged and how often it is refreshed."""
    placement: Placement | None = None
    """Where the operator runs the miners (required with images)."""
    replicas: Annotated[int, Field(ge=0, le=1000)] | None = None
    """Number of miner pods (default 1; not with endpoints)."""
    images: Images | None = None
    """Container images of the miners run by the operator (not with endpoints)."""
    resources: Resources | None = None
    """Engine resources per replica."""
    endpoints: Annotated[list[Endpoint], Field(min_length=1, max_length=256)] | None = None
    """Miners outside the cluster, attested and routed like in-cluster ones."""
    relay: Relay | None = None
    """A relay pool: the engine is an upstream OpenAI-compatible API instead of a model
    container beside the agent (not with images.engine or endpoints)."""
    secrets: list[PoolSecret] = Field(default_factory=list, max_length=64)
    """Secrets released to each enclave after its evidence verified, sealed to its attested
    HPKE key (an endpoint is admitted only once they were delivered)."""
    sealing: Literal["allowed", "required"] = "allowed"
    """Whether the pool's enclaves take plain (unsealed) requests. `required`: the operator
    starts its agents with TEEROUTE_AGENT_REQUIRE_SEALED, so they answer only sealed requests
    (a Route with `sealing: gateway` or `required`), whatever the gateway sends; a Route with
    `sealing: off` gets 403 `sealing_required` from them. `allowed`: the Routes decide.
    External endpoints set it on their agents themselves."""

    @model_validator(mode="after")
    def _cross_field(self) -> MinerPoolSpec:
        problems = spec_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def desired_replicas(self) -> int:
        if self.endpoints is not None:
            return len(self.endpoints)
        return 1 if self.replicas is None else self.replicas


def spec_problems(spec: MinerPoolSpec) -> list[str]:
    """The CEL rules above, for objects that never passed through an apiserver."""
    external = spec.endpoints is not None
    checks = [
        (
            external == (spec.images is not None),
            "set either images (miners run by the operator) or endpoints (external miners), "
            "not both and not neither",
        ),
        (external and spec.replicas is not None, "replicas cannot be set for external endpoints"),
        (external and spec.placement is not None, "placement cannot be set for external endpoints"),
        (
            not external and spec.placement is None,
            "placement is required when the operator runs the miners",
        ),
        (
            spec.tee.type == "simulated"
            and spec.placement is not None
            and spec.placement.profile != "kind",
            "the simulated TEE may only be placed with the kind profile",
        ),
        (external and spec.relay is not None, "relay cannot be set for external endpoints"),
        (
            spec.relay is not None and spec.images is not None and spec.images.engine is not None,
            "a relay runs no engine: set either relay or images.engine, not both",
        ),
        (
            spec.relay is None and spec.images is not None and spec.images.engine is None,
            "images.engine is required unless the pool is a relay",
        ),
        (
            len({s.name for s in spec.secrets}) != len(spec.secrets),
            "each secret name may be listed once",
        ),
        (
            spec.tee.gpu.required
            and not external
            and (spec.resources is None or spec.resources.gpus < 1),
            "tee.gpu.required needs resources.gpus of at least 1",
        ),
    ]
    found = [message for failed, message in checks if failed]
    if spec.placement is not None:
        gpus = spec.resources.gpus if spec.resources else 0
        placement = spec.placement
        found += runtime_class_problems(
            placement.profile, placement.runtime_class_name, spec.tee.type, gpus
        )
    return found


class EndpointAttestation(ApiModel):
    """The attestation lease of one external endpoint, kept by the operator's sweeper."""

    name: str
    """The endpoint's name in spec.endpoints."""
    url: str
    """The URL that was challenged (a changed URL starts a new lease)."""
    attested_at: str = ""
    """When its evidence last verified (RFC 3339)."""
    expires_at: str = ""
    """Until when it may receive traffic (RFC 3339); empty: not admitted."""
    tee: str = ""
    """The TEE type its evidence showed."""
    measurement: str = ""
    """The launch measurement its evidence showed (hex)."""
    chip_id: str = ""
    """The hardware identity first admitted (pinned)."""
    hpke_key_sha256: str = ""
    """SHA-256 of the enclave's attested HPKE public key (what clients seal to)."""
    signing_key_sha256: str = ""
    """SHA-256 of the enclave's attested receipt-signing public key."""
    hpke_public_key: str = ""
    """The enclave's attested HPKE (X25519) public key, standard base64 of its 32 bytes."""
    signing_public_key: str = ""
    """The enclave's attested receipt-signing (Ed25519) public key, standard base64."""
    secrets_released: str = ""
    """Fingerprint of the secrets last released to this enclave (its HPKE key and the
    Secrets' names and versions), so a restarted operator does not send them again."""
    failure: str = ""
    """Why the last challenge did not renew the lease."""
    chip_changed: str = ""
    """Set when evidence came from another chip than the pinned one (then not admitted)."""
    admission_record: str = ""
    """The operator's signed admission record for this endpoint while admitted (empty
    otherwise): what a gateway routes on, checked against the operator's public key
    (teeroute.admission_record). The fields above are for people."""


class MinerPoolStatus(ApiModel):
    observed_generation: int = 0
    """The .metadata.generation this status describes."""
    desired_replicas: int = 0
    """Miners the spec asks for (replicas, or the number of endpoints)."""
    replicas: int = 0
    """Miner pods that exist."""
    ready_replicas: int = 0
    """Miner pods that are ready."""
    attested_replicas: int = 0
    """Miners whose evidence is verified and unexpired: the only ones that receive traffic."""
    last_attestation_failure: str = ""
    """Why the last failed attestation failed (which check)."""
    endpoints: list[EndpointAttestation] = Field(default_factory=list)
    """External endpoints only: each one's attestation lease. Routers admit an endpoint
    while its expiresAt is in the future."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready, Progressing, Degraded."""


class MinerPool(ApiModel):
    model_config = ConfigDict(extra="ignore")

    api_version: Literal["teeroute.dev/v1alpha1"] = "teeroute.dev/v1alpha1"
    kind: Literal["MinerPool"] = "MinerPool"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: MinerPoolSpec
    status: MinerPoolStatus = Field(default_factory=MinerPoolStatus)
