"""Where the catalog comes from: the cluster (`kube`) or a config file (`file`).

Each source produces `catalog.Inventory` values and hands every new one to a callback; the
gateway builds a catalog from it and swaps it in whole.
"""
