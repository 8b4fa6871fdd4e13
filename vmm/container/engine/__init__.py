"""The Docker-like front: containers (``container.py``: create, run,
stop, rm, logs), their records, bundles written from an image and the flags, volumes,
Docker's hardening options. A client of ``oci/`` and ``image/``.
"""
