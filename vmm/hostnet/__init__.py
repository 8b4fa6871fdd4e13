"""The host's side of the network, for VMs and containers alike: a VM's TAP
(``tap.py``), ports published with nftables (``publish.py``), and a network namespace
of one's own for the tests and ``pyvmm bench net`` (``netns.py``). Nothing of KVM,
of the machine or of the container engine.
"""
