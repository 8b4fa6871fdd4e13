"""The OCI core, runc's library: ``config.json`` read and checked
(``spec.py``), the lifecycle (``runtime.py``), the container's init from fork to execve
(``init.py``), hooks. Over ``linux/`` only.
"""
