"""`python -m teeroute_enclave`: the enclave agent, configured from the environment."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import ValidationError

from teeroute.attestation.providers import (
    ConfigfsTsmProvider,
    Provider,
    ProviderError,
    SimulatedProvider,
    code_measurement,
)
from teeroute.sealing import envelope
from teeroute_enclave.gateway_auth import Callers
from teeroute_enclave.keys import EnclaveKeys
from teeroute_enclave.replay import ReplayGuard
from teeroute_enclave.secrets_store import SecretStore
from teeroute_enclave.server import AgentServer
from teeroute_enclave.settings import AgentSettings

ALL_ADDRESSES = "0.0.0.0"  # noqa: S104 - in its pod, the agent serves on the pod's IP
PACKAGE = Path(__file__).resolve().parent
"""What a simulated TEE measures: the agent's own sources (`teeroute_enclave`)."""


def provider(settings: AgentSettings) -> Provider:
    if settings.tee == "simulated":
        measurement = (
            bytes.fromhex(settings.simulated_measurement)
            if settings.simulated_measurement
            else code_measurement(PACKAGE)
        )
        return SimulatedProvider(
            settings.simulated_dir,
            settings.node_name,
            measurement,
            override_file=settings.simulated_override_file,
        )
    found = ConfigfsTsmProvider()
    if found.tee != settings.tee:
        raise ProviderError(f"configured for {settings.tee} but this guest is {found.tee}")
    return found


def callers(settings: AgentSettings) -> str:
    """Whom inference is answered, for the start line."""
    if settings.agent_allow_any_caller:
        return (
            "inference answered to ANY caller (TEEROUTE_AGENT_ALLOW_ANY_CALLER: development "
            "only, the gateway's billing can be bypassed)"
        )
    keys = settings.gateway_keys
    if not keys:
        return "inference refused (no TEEROUTE_AGENT_GATEWAY_KEYS)"
    return "inference for gateway keys " + ", ".join(envelope.key_id(k)[:16] for k in keys)


def main() -> int:
    try:
        settings = AgentSettings()
    except ValidationError as exc:
        where = ", ".join(".".join(map(str, e["loc"])) or "settings" for e in exc.errors())
        print(f"agent: cannot start: invalid settings ({where})", file=sys.stderr)
        return 2
    try:
        chosen = provider(settings)
    except (ProviderError, ValueError) as exc:
        print(f"agent: cannot start: {exc}", file=sys.stderr)
        return 2
    keys = EnclaveKeys.generate(
        release_public=settings.agent_release_key,
        pool=settings.agent_pool,
        gateway_keys=settings.gateway_keys,
    )
    server = AgentServer(
        (ALL_ADDRESSES, settings.agent_port),
        chosen,
        keys,
        settings.engine_url,
        require_sealed=settings.agent_require_sealed,
        engine_health=settings.engine_health,
        secrets=SecretStore(settings.agent_secrets_dir),
        replay=ReplayGuard(settings.agent_replay_window_s),
        callers=Callers(
            keys.gateway_keys,  # exactly the keys its evidence binds
            settings.agent_gateway_auth_window_s,
            allow_any=settings.agent_allow_any_caller,
        ),
        root_receipts=settings.agent_root_receipts,
        root_interval_s=settings.agent_root_interval_s,
    )
    plain = "refused" if settings.agent_require_sealed else "allowed"
    release = (
        f"releases signed by {envelope.key_id(keys.release_public)[:16]}"
        if keys.release_public
        else "secret releases refused (no TEEROUTE_AGENT_RELEASE_KEY)"
    )
    pool = f"pool {keys.pool}" if keys.pool else "no pool (TEEROUTE_AGENT_POOL)"
    print(
        f"agent: {chosen.tee} evidence on :{settings.agent_port}, keys {keys.fingerprint()}, "
        f"{pool}, plain requests {plain}, {release}, {callers(settings)}",
        file=sys.stderr,
        flush=True,
    )
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
