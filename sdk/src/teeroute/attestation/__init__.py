"""Attestation: is this evidence genuine, fresh, and from code we allow? One pipeline shape
for every TEE, after go-sev-guest's:

    parse     bytes -> a frozen, typed structure (strict lengths; EvidenceInvalid otherwise)
    verify    certificate chain to pinned roots, validity at `now`, signatures
    validate  the Policy: measurements, minimum TCB, debug, report_data binding, age

The result is a Verdict naming every check as passed, failed (with what was seen) or not
checked (no policy or collateral for it); it is ok only when every performed check passed and
every check the policy asked for was performed (a required "not checked" is a failure).
`now` and collateral are always passed in: nothing here reads a clock or the network.

    errors.py     the typed errors
    verdict.py    Check, Verdict
    policy.py     Policy (a field per check; None = not checked), report_data binding
    x509chain.py  certificate-chain checks shared by the TEE types
    snp.py        AMD SEV-SNP reports (VCEK and VLEK chains; Milan, Genoa, Turin roots)
    registers.py  pins on measurement registers beyond the launch measurement (TDX RTMRs, …)
    tdx.py        Intel TDX quotes v4 and v5 (tdx_quote, tdx_collateral, tdx_tcb: PCK chain,
                  QE report, Intel-signed TCB Info and QE Identity, CRLs, TCB status)
    nvidia.py     NVIDIA Hopper GPU evidence (SPDM 1.1 measurements, device chain)
    evidence.py   the evidence document agents return, verified by TEE type
    simulated.py  the simulated TEE: same shape, its own CA; trusted only where allowed
"""
