"""The guests pyvmm builds and boots: the tiny kernel and its programs
(``guest/``), a Linux guest and its initramfs.
"""
