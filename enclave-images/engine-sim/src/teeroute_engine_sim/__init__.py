"""teeroute engine simulator: a deterministic OpenAI-compatible inference server.

Stands in for vLLM in tests, demos and benchmarks: the same endpoints and argv, output that
is a pure function of the request, and tunable latency (time to first token, tokens per
second) and failure rate.
"""
