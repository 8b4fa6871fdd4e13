"""Build the cffi bindings to the libc calls the container runtime needs.

Python 3.11 has no os.unshare, os.setns or pivot_root; these come from libc through
cffi's API mode so that flag values come from the system headers.
"""

from cffi import FFI

ffibuilder = FFI()
ffibuilder.cdef(
    """
#define CLONE_NEWNS ...
#define CLONE_NEWUTS ...
#define CLONE_NEWIPC ...
#define CLONE_NEWPID ...
#define CLONE_NEWNET ...
#define CLONE_NEWCGROUP ...
int unshare(int flags);
"""
)
ffibuilder.set_source(
    "vmm.container._libc",
    """
#define _GNU_SOURCE
#include <sched.h>
""",
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
