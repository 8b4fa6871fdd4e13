"""A running VM driven from outside: the control socket (``api.py``), pausing,
snapshots and restoring (``snapshot.py``), live migration.
"""
