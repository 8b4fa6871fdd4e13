"""``--profile``'s naming of sampled addresses from a System.map."""

from vmm.profile import RipSampler, SymbolMap


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
