"""``--profile``: naming sampled addresses from a System.map, counting from many threads."""

import sys
import threading

from vmm.debug.profile import RipSampler, SymbolMap


def test_samples_are_named_by_the_symbol_at_or_below_them(tmp_path):
    path = tmp_path / "System.map"
    path.write_text(
        "ffffffff81000000 T _text\n"
        "ffffffff81001000 t clear_page_rep\n"
        "ffffffff81002000 D some_data\n"  # data: never a place code runs
        "ffffffff81003000 T memcpy\n"
        "not a line\n"
    )
    symbols = SymbolMap(str(path))
    assert symbols.name(0xFFFFFFFF81001234) == "clear_page_rep"
    assert symbols.name(0xFFFFFFFF81002010) == "clear_page_rep"
    assert symbols.name(0xFFFFFFFF81003000) == "memcpy"
    sampler = RipSampler()
    sampler.rips.update({0xFFFFFFFF81001010: 3, 0xFFFFFFFF81001020: 1, 0x401000: 4})
    lines = sampler.report(symbols).splitlines()
    assert lines[0].startswith("profile: 8 samples")
    places = {line.split(maxsplit=2)[2]: line.split()[:2] for line in lines[1:]}
    assert places == {"(user space)": ["50.0%", "4"], "clear_page_rep": ["50.0%", "4"]}


def test_no_samples_says_so():
    assert RipSampler().report(None) == "profile: no samples"


class _Vcpu:
    """What the sampler asks of a vCPU: its registers, here a new RIP at every call, so
    that each sample is a first sighting (the step where a count can be lost)."""

    def __init__(self):
        self.rip = 0

    def get_regs(self):
        self.rip += 1
        return self


def test_samples_from_several_vcpu_threads_are_all_counted():
    """Without the sampler's lock, every one of 3 runs lost a few samples."""
    sampler = RipSampler()
    per_thread, threads = 50_000, 6

    def one_vcpu() -> None:
        vcpu = _Vcpu()
        for _ in range(per_thread):
            sampler.sample(vcpu)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        workers = [threading.Thread(target=one_vcpu) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        sys.setswitchinterval(switch)
    assert sum(sampler.rips.values()) == per_thread * threads
    assert set(sampler.rips.values()) == {threads}
