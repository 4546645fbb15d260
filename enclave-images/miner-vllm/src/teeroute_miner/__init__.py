"""The miner-vllm image's entrypoint: the engine container's argv, as `vllm serve`.

The operator gives every engine container the same vLLM-style arguments (`--model NAME
--host 127.0.0.1 --port 8000`, see teeroute_operator.builders) and mounts released secrets
under /run/teeroute/secrets. `argv.vllm_command` maps them, pure and testable without a GPU;
`__main__` replaces itself with vLLM.
"""
