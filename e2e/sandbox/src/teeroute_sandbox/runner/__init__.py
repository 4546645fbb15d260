"""The process runner: plays the kubelet for pods whose images are our own.

For each scheduled pod on a sandbox node whose image maps to a local command (images.py),
it gives the pod a network namespace holding its pod IP (podnet.py), writes its volumes
(volumes.py), starts each container as a real process with the pod's env and mounts
(plan.py → launcher.py), restarts it when it exits (supervisor.py), reports container
state and readiness in the pod's status (status.py), and stops it all when the pod goes.
Pods of other images stay as kwok simulates them.
"""
