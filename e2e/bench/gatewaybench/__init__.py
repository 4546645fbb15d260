"""Helpers of the gateway benchmark (`e2e/bench/gateway.py`), one concept per module.

- `procs`: processes in their own group, pinned to a core, stopped with the harness; /proc
  readings (RSS, CPU time of a process tree).
- `wrk`: the load generator: its Lua script, running it, parsing its summary.
- `litellm`: installing LiteLLM into its own cached virtualenv and configuring its proxy.
- `targets`: starting the simulator, our gateway and LiteLLM's proxy on loopback.
- `scenarios`: the measured scenarios against one target.
- `stats`: pure arithmetic: RSS slope, added latency, the goals and their verdicts.
- `notes`: the report's prose: the setup, and observations that qualify the numbers.
- `report`: the markdown table and the JSON document.
"""
