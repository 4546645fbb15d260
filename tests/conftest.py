pytest_plugins = ["teeroute_sandbox.testing"]
