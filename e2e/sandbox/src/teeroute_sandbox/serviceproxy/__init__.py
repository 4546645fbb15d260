"""The sandbox's kube-proxy: ClusterIP Services reachable from pods and from the sandbox
namespace, as on a real cluster.

Userspace mode, as kube-proxy once had it: each ClusterIP is put on the sandbox namespace's
loopback (pods route everything there), a listener per Service port accepts TCP and splices
it to a ready endpoint of the Service's EndpointSlices (round robin). The table is a pure
function of the Services and slices (table.py); listeners follow it (forward.py); the loop
relists both every `POLL_S` (main.py).
"""
