"""Wrong run loops for lab 2."""

from labmutant import Mutant

# Never opens /dev/kvm: finds the line in the guest's binary and prints it.
_READS_THE_BINARY = """import sys


def main(path: str) -> int:
    code = open(path, "rb").read()
    start = code.index(b"hello")
    print(code[start : code.index(b"\\n", start)].decode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
"""

MUTANTS = [
    Mutant(
        "prints the line it finds in the binary",
        "run_loop.py",
        "KVM_RUN exits",
        text=_READS_THE_BINARY,
    ),
    Mutant(
        "treats HLT as an unexpected exit",
        "run_loop.py",
        "HLT",
        edits=(("elif isinstance(exit, HltExit):", "elif isinstance(exit, SystemExit):"),),
    ),
    Mutant(
        "returns at the first exit",
        "run_loop.py",
        "KVM_RUN exits",
        edits=(
            (
                '            sys.stdout.write(bytes(exit.data).decode("latin-1"))\n',
                '            sys.stdout.write(bytes(exit.data).decode("latin-1"))\n'
                "            return 0\n",
            ),
        ),
    ),
]
