"""Helpers of e2e/bench/overload.py: the load it sends (`load`) and what it reports (`report`)."""
