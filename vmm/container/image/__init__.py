"""Images into and out of the store: image records, import from a
directory, a tar, an OCI layout or ``docker save``, a registry's pull and push, the
image spec's documents checked, untrusted layer tars unpacked. Over ``store/``.
"""
