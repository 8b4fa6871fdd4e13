"""The machine: memory, buses, devices and vCPUs assembled from a config, and the
exit loop (``machine.py``, ``Machine.run_vcpu``); what runs beside it (vCPU threads,
the I/O thread, the halt watch, the terminal).
"""
