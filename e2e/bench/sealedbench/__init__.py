"""Helpers of the sealed-mode benchmark (`e2e/bench/sealed.py`), one concept per module. The
process handling, wrk's summary and /proc readings come from `gatewaybench`.

- `modes`: the three ways through the gateway (plain hop, gateway-sealed, client-sealed), the
  request bodies and the gateway's file config with one Route per mode (pure).
- `kinds`: the kinds of request (non-streamed, streamed, long streamed answers: streaming
  and max_tokens), each naming its scenarios, comparison row, goals and report table (pure).
- `miner`: the enclave agent on a simulated TEE in front of the engine simulator, its
  evidence verified and turned into the lease an operator would write.
- `client`: sealing requests as a client does, the probes that check each mode end to end,
  and the micro-benchmark of the client's own per-request cost.
- `load`: wrk cycling through a pool of request bodies; one measured run with the CPU time of
  the gateway, the agent and the engine.
- `ledger`: what the gateway's SQLite ledger recorded per mode (receipt verdicts).
- `stats`: pure arithmetic: rounds merged, ratios, added latency, the bottleneck, verdicts.
- `report`: the markdown tables and the JSON document.
- `paced`: the paced-engine scenario (`sealed.py --paced`): its settings, its ~200-token
  prompt and the engine's 255-token answer to it, rounds merged into CPU µs per streamed
  token, issue 16's per-token goals (pure but for the engine's own generator).
- `streams`: its clients: N keep-alive streams at once through one mode, tokens counted as
  they arrive, every answer checked whole, CPU sampled over the measured window.
- `pacedreport`: its outputs, `sealed-paced.json` and `sealed-paced.md`.
"""
