"""The values of the Helm chart charts/teeroute, as typed models (never written by hand).

`teeroute chart generate` turns `Values` into the chart's values.yaml (these defaults, each
field's docstring as its comment), values.schema.json (strict: no unknown key anywhere) and
README.md. Field docstrings are the user documentation: say what the value does, its unit,
and what the default means.

Secrets are never created by the chart: every private key, DSN or token comes from a Secret
the user made beforehand and names here (no random values, no lookups: the render is a pure
function of the values, as GitOps tools need).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")]
Name = Annotated[str, Field(pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$", max_length=253)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Ed25519Public = Annotated[str, Field(pattern=r"^[A-Za-z0-9+/]{43}=$")]


class ValuesModel(BaseModel):
    """camelCase keys, unknown keys refused, attribute docstrings as descriptions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        frozen=True,
    )


class Crds(ValuesModel):
    enabled: bool = True
    """Install the CustomResourceDefinitions (MinerPool, Route, and kopf's peering kinds)
    with the chart. Turn off when they are managed apart (e.g. applied from crds/ first)."""

    keep: bool = True
    """Annotate the CRDs `helm.sh/resource-policy: keep`, so `helm uninstall` leaves them (and
    with them every MinerPool and Route) in place. Delete them by hand to remove all."""


class Image(ValuesModel):
    repository: str
    """Image repository (with its registry)."""

    tag: str = ""
    """Image tag; empty: the chart's appVersion."""

    pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    """When the kubelet pulls the image."""


class ResourceList(ValuesModel):
    cpu: Quantity | Literal[""] = ""
    """CPU, in cores or millicores (e.g. 100m); empty: none."""

    memory: Quantity | Literal[""] = ""
    """Memory (e.g. 256Mi); empty: none."""


class Resources(ValuesModel):
    requests: ResourceList = ResourceList()
    """What the scheduler reserves for the container."""

    limits: ResourceList = ResourceList()
    """The most the container may use."""


class Toleration(ValuesModel):
    key: str = ""
    """Taint key to tolerate; empty with operator Exists: every taint."""

    operator: Literal["Equal", "Exists"] = "Equal"
    """Equal (the taint's value must match) or Exists."""

    value: str = ""
    """Taint value, for operator Equal."""

    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""
    """Taint effect to tolerate; empty: all."""


class SecretKey(ValuesModel):
    existing_secret: Name = ""
    """Name of an existing Secret in the release namespace; empty: none."""

    key: str
    """The key in that Secret."""


class Metrics(ValuesModel):
    port: int = Field(default=9090, ge=1, le=65535)
    """Port of the operator's Prometheus /metrics endpoint."""

    token: SecretKey = SecretKey(key="token")
    """A Secret holding the bearer token /metrics requires (401 without it); empty
    existingSecret: /metrics is open to whoever reaches the port (see networkPolicy)."""


class ReleaseKey(ValuesModel):
    existing_secret: Name = ""
    """Required. The Secret holding the operator's release key (Ed25519, PKCS#8 PEM): it signs
    every secret release and admission record; agents and gateways pin its public half. Make
    it once with `teeroute operator release-key --out key.pem` and `kubectl create secret
    generic NAME --from-file=release-key.pem=key.pem`. The chart never generates it."""

    key: str = "release-key.pem"
    """The key in that Secret."""


Scheme = Literal["https", "http"]


class External(ValuesModel):
    schemes: list[Scheme] = Field(default_factory=lambda: list[Scheme](["https"]), min_length=1)
    """URL schemes a MinerPool's external endpoints may use; add http only where miners sit
    on a network the operator trusts."""

    hosts: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    """Hosts external endpoints may name: `*` (any public name or address), `*.miners.example`,
    `miner.example`, `203.0.113.0/24`. Narrow it to your miners' domains."""


class Operator(ValuesModel):
    replicas: int = Field(default=1, ge=1, le=5)
    """Operator pods. More than one runs them as kopf peers (a peering object, its RBAC and
    TEEROUTE_OPERATOR_PEERING): one is active, the others take over when it goes; attestation
    sweeps run as kopf daemons, so only the active one sweeps."""

    image: Image = Image(repository="teeroute.dev/operator")
    """The operator's image."""

    release_key: ReleaseKey = ReleaseKey()
    """The operator's release key, from an existing Secret."""

    gateway_keys: list[Ed25519Public] = Field(default_factory=list)
    """The gateway's public key(s), standard base64 (`teeroute gateway gateway-key --show
    FILE`); several during a rotation. The pods the operator runs answer inference only to
    requests signed by one. Empty: agents answer no inference (fail closed)."""

    namespaces: list[Name] = Field(default_factory=list)
    """Namespaces whose MinerPools and Routes the operator serves; empty: all."""

    resync_seconds: int = Field(default=300, ge=1)
    """How often every pool and route is reconciled without a change, in seconds (a safety
    net under the watches, which repair drift within about a second)."""

    external: External = External()
    """What external endpoints (MinerPool `endpoints[].url`) may name."""

    metrics: Metrics = Metrics()
    """The operator's Prometheus endpoint."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels the operator's pods require."""

    tolerations: list[Toleration] = Field(default_factory=list)
    """Taints the operator's pods tolerate."""

    resources: Resources = Resources(
        requests=ResourceList(cpu="100m", memory="128Mi"), limits=ResourceList(memory="512Mi")
    )
    """The operator container's requests and limits."""


class SimulatedTee(ValuesModel):
    enabled: bool = False
    """Trust the simulated TEE (TEEROUTE_OPERATOR_ALLOW_SIMULATED_TEE) and mount its root.
    A simulated TEE protects nothing: only for kind and test clusters, never production."""

    root_pem: str = ""
    """The simulated TEE's root CA certificate (PEM), required when enabled: `--set-file
    simulatedTee.rootPem=root.pem` (`teeroute sandbox simulated-tee` prints its path)."""


class Trust(ValuesModel):
    tdx_collateral_config_map: Name = ""
    """An existing ConfigMap with Intel PCS collateral for TDX (keys tcbinfo-response.json,
    qeidentity-response.json, root-crl.der, pck-crl.der, tcb-signing-chain.pem; any may be
    missing), mounted as the trust directory's tdx/. The AMD, Intel and NVIDIA roots are built
    into the images; empty: no collateral."""


class Sqlite(ValuesModel):
    persistence: bool = True
    """Keep the SQLite ledger on a PersistentVolumeClaim; false: an emptyDir, lost with the
    pod (demos only: balances and usage go with it)."""

    size: Quantity = "1Gi"
    """Size of the ledger's volume claim."""

    storage_class_name: str = ""
    """StorageClass of the claim; empty: the cluster's default."""


class Ledger(ValuesModel):
    type: Literal["sqlite", "postgresql"] = "sqlite"
    """sqlite (one gateway replica, on a volume) or postgresql (any number of replicas)."""

    sqlite: Sqlite = Sqlite()
    """The SQLite ledger's volume (type sqlite)."""

    postgresql: SecretKey = SecretKey(key="dsn")
    """The Secret holding the PostgreSQL DSN, postgresql://USER:PASSWORD@HOST:PORT/DB
    (type postgresql; required then)."""


class Redis(ValuesModel):
    enabled: bool = False
    """Share rate limits across gateway replicas through Redis; off: each process counts
    alone (a limit of N per key becomes N per replica)."""

    url: SecretKey = SecretKey(key="url")
    """The Secret holding the Redis URL, redis://[:PASSWORD@]HOST:PORT/DB (required when
    enabled)."""


class Service(ValuesModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    """The gateway Service's type."""

    port: int = Field(default=80, ge=1, le=65535)
    """The Service's port (the OpenAI-compatible API)."""


class Autoscaling(ValuesModel):
    enabled: bool = False
    """A HorizontalPodAutoscaler for the gateway (needs ledger type postgresql)."""

    min_replicas: int = Field(default=2, ge=1)
    """Fewest replicas."""

    max_replicas: int = Field(default=10, ge=1)
    """Most replicas."""

    target_cpu_utilization_percentage: int = Field(default=70, ge=1, le=100)
    """Average CPU use (of requests) the autoscaler aims at."""


class Disruption(ValuesModel):
    enabled: bool = True
    """A PodDisruptionBudget for the gateway."""

    max_unavailable: int = Field(default=1, ge=1)
    """Gateway pods a voluntary disruption (a node drain) may take down at once."""


class GatewayKeys(ValuesModel):
    signing_key: SecretKey = SecretKey(key="gateway-key.pem")
    """The Secret holding the gateway key (Ed25519, PKCS#8 PEM; `teeroute gateway
    gateway-key --out FILE`): it signs every request to a miner. Its public half goes in
    operator.gatewayKeys. Empty: requests go unsigned and agents refuse them."""

    api_keys: SecretKey = SecretKey(key="api-keys.yaml")
    """The Secret holding declared API keys (a YAML list of key hashes with their initial
    credit, see teeroute_gateway.declared_keys); empty: keys only from `teeroute keys create`."""

    admin_key_sha256: list[Sha256] = Field(default_factory=list)
    """SHA-256 (hex) of admin keys for /v1/miners and /v1/settlement (`teeroute keys admin`)."""

    metrics_token_sha256: Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$")] = ""
    """SHA-256 (hex) of the bearer token /metrics requires; empty: /metrics is open."""


class Gateway(ValuesModel):
    enabled: bool = True
    """Run the gateway (the OpenAI-compatible API that routes to attested miners)."""

    replicas: int = Field(default=1, ge=1)
    """Gateway pods when autoscaling is off (more than one needs ledger type postgresql)."""

    image: Image = Image(repository="teeroute.dev/gateway")
    """The gateway's image."""

    operator_key: Annotated[str, Field(pattern=r"^([A-Za-z0-9+/]{43}=)?$")] = ""
    """Required. The operator's release public key (standard base64; `teeroute operator
    release-key --show key.pem` prints it): only endpoints in admission records it signed
    are routed."""

    keys: GatewayKeys = GatewayKeys()
    """The gateway's own key, API keys, admin keys and metrics token."""

    namespaces: list[Name] = Field(default_factory=list)
    """Namespaces whose Routes and MinerPools the gateway serves; empty: all."""

    currency: Annotated[str, Field(pattern=r"^[A-Z]{3,5}$")] = "USD"
    """The billing currency of API keys; pools priced otherwise are not used."""

    workers: int = Field(default=1, ge=1, le=64)
    """Server processes per pod."""

    access_log: bool = False
    """One JSON log line per request (ids, model, pool, status, tokens, cost; never content)."""

    ledger: Ledger = Ledger()
    """Where keys, balances and usage live."""

    redis: Redis = Redis()
    """Optional Redis for shared rate limits."""

    service: Service = Service()
    """The gateway's Service."""

    autoscaling: Autoscaling = Autoscaling()
    """The gateway's HorizontalPodAutoscaler."""

    pod_disruption_budget: Disruption = Disruption()
    """The gateway's PodDisruptionBudget."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels the gateway's pods require."""

    tolerations: list[Toleration] = Field(default_factory=list)
    """Taints the gateway's pods tolerate."""

    resources: Resources = Resources(
        requests=ResourceList(cpu="250m", memory="256Mi"), limits=ResourceList(memory="1Gi")
    )
    """The gateway container's requests and limits."""


class Peer(ValuesModel):
    """One source of traffic a NetworkPolicy admits (set at least one field)."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    namespace_labels: dict[str, str] | None = None
    """Namespaces (by label) the peer pods may be in; unset: this release's namespace only
    (with podLabels), or none (without)."""

    pod_labels: dict[str, str] | None = None
    """Pods (by label) allowed; unset: every pod of the selected namespaces."""

    cidr: str | None = None
    """An address block allowed instead (e.g. a load balancer's range)."""


class NetworkPolicy(ValuesModel):
    enabled: bool = True
    """NetworkPolicies for the operator's and gateway's pods (ingress; miners' pods get theirs
    from the operator, per pool). Needs a CNI that enforces them."""

    gateway_from: list[Peer] = Field(default_factory=list)
    """Who may reach the gateway's API port; empty: anyone (the API checks keys)."""

    metrics_from: list[Peer] = Field(default_factory=list)
    """Who may reach the operator's metrics port (e.g. Prometheus's namespace); empty: anyone
    (set operator.metrics.token, or list your scrapers)."""


class ServiceMonitor(ValuesModel):
    enabled: bool = False
    """ServiceMonitors (Prometheus Operator) for the operator and the gateway."""

    interval: Annotated[str, Field(pattern=r"^[0-9]+(s|m)$")] = "30s"
    """Scrape interval."""

    labels: dict[str, str] = Field(default_factory=dict)
    """Extra labels, e.g. what your Prometheus's serviceMonitorSelector matches."""

    bearer_token: SecretKey = SecretKey(key="token")
    """The Secret (in the release namespace) holding the plain metrics token Prometheus sends;
    needed when operator.metrics.token or gateway.keys.metricsTokenSha256 is set."""


class GrafanaDashboard(ValuesModel):
    enabled: bool = False
    """A ConfigMap holding teeroute's Grafana dashboard (requests, latency, attestation)."""

    labels: dict[str, str] = Field(default_factory=lambda: {"grafana_dashboard": "1"})
    """Labels the Grafana dashboard sidecar looks for."""


class Values(ValuesModel):
    """The chart's values."""

    fullname_override: Annotated[str, Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$")] = ""
    """Prefix of every object's name; empty: the release name (with `teeroute-` before it
    unless it already contains `teeroute`)."""

    image_pull_secrets: list[Name] = Field(default_factory=list)
    """Secrets (docker-registry) for pulling the images."""

    crds: Crds = Crds()
    """The CustomResourceDefinitions."""

    operator: Operator = Operator()
    """The operator: runs MinerPools, attests every miner, releases secrets."""

    gateway: Gateway = Gateway()
    """The gateway."""

    simulated_tee: SimulatedTee = SimulatedTee()
    """The simulated TEE (kind and test clusters only)."""

    trust: Trust = Trust()
    """Trust beyond the built-in vendor roots."""

    network_policy: NetworkPolicy = NetworkPolicy()
    """NetworkPolicies."""

    service_monitor: ServiceMonitor = ServiceMonitor()
    """Prometheus Operator ServiceMonitors."""

    grafana_dashboard: GrafanaDashboard = GrafanaDashboard()
    """Grafana dashboard."""
