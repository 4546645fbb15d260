"""teeroute's OCI images, built without Docker or a registry.

`teeroute images build` assembles each image of `definitions.IMAGES` from a Debian base layer
(`base`: mmdebstrap of python3.11-minimal), a layer of the locked third-party wheels and a
layer of our own wheels (`app`), each a deterministic tar (`tarlayer`) cached by the hash of
its inputs (`cache`), into one OCI image layout (`layout`). Two builds from the same inputs
give the same digests.
"""

__version__ = "0.1.0"
