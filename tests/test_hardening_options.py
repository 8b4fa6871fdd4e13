"""Docker's options to the runtime spec's objects, as moby computes them: the seccomp
profile's conditions, --cap-add/--cap-drop, --ulimit. (Real containers: tests/container.)"""

from __future__ import annotations

import pytest

from vmm.container.engine.security import Security
from vmm.container.linux import capabilities, seccomp
from vmm.container.linux.rlimits import UNLIMITED, Rlimit, RlimitError, from_ulimits, parse_ulimit

DEFAULT = list(capabilities.DEFAULT)


def allowed(oci: dict) -> dict[str, list]:
    """System call name -> the argument conditions of each ALLOW rule naming it."""
    rules: dict[str, list] = {}
    for rule in oci["syscalls"]:
        if rule["action"] == "SCMP_ACT_ALLOW":
            for name in rule["names"]:
                rules.setdefault(name, []).append(rule.get("args"))
    return rules


def default_oci(caps=DEFAULT, **kw) -> dict:
    return seccomp.to_oci(seccomp.default_profile(), caps, machine="x86_64", **kw)


def test_default_profile_allows_the_common_calls_and_denies_the_dangerous_ones():
    oci = default_oci(release="6.1.0")
    assert oci["defaultAction"] == "SCMP_ACT_ERRNO" and oci["defaultErrnoRet"] == 1
    rules = allowed(oci)
    assert {"read", "write", "openat", "execve", "mknod", "arch_prctl"} <= rules.keys()
    for name in ("mount", "umount2", "unshare", "setns", "keyctl", "add_key", "request_key",
                 "bpf", "kexec_load", "open_by_handle_at", "init_module", "reboot"):  # fmt: skip
        assert name not in rules, name


def test_clone_is_allowed_only_without_namespace_flags_unless_cap_sys_admin():
    clone = allowed(default_oci())["clone"]
    assert clone == [[{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]]
    clone3 = [r for r in default_oci()["syscalls"] if r["names"] == ["clone3"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    admin = allowed(default_oci([*DEFAULT, "CAP_SYS_ADMIN"]))
    assert None in admin["clone"] and {"mount", "unshare", "setns", "clone3"} <= admin.keys()


def test_conditions_on_architecture_and_kernel_version():
    arm = seccomp.to_oci(seccomp.default_profile(), DEFAULT, machine="aarch64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arch_prctl" not in allowed(arm) and "set_tls" in allowed(arm)
    assert default_oci()["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    # ptrace is safe without CAP_SYS_PTRACE only from 4.8 on (seccomp bypass before).
    assert "ptrace" not in allowed(default_oci(release="4.4.0-generic"))
    assert "ptrace" in allowed(default_oci(release="4.8.1"))


def test_a_profile_with_no_action_and_no_rules_filters_nothing():
    assert seccomp.to_oci({}, DEFAULT) is None


def test_every_default_rule_is_valid_for_install():
    seccomp.validate(default_oci())  # raises on an unknown action or operator


@pytest.mark.parametrize(
    ("add", "drop", "expected"),
    [
        ([], [], DEFAULT),
        (["sys_admin"], ["CHOWN"], [c for c in DEFAULT if c != "CAP_CHOWN"] + ["CAP_SYS_ADMIN"]),
        (["kill"], ["ALL"], ["CAP_KILL"]),
        ([], ["all"], []),
    ],
)
def test_cap_add_and_cap_drop_as_docker_applies_them(add, drop, expected):
    caps = capabilities.tweak(DEFAULT, add, drop)
    assert caps == sorted(expected, key=capabilities.NUMBERS.__getitem__)


def test_cap_add_all_is_every_available_capability_less_the_dropped():
    caps = capabilities.tweak(DEFAULT, ["ALL"], ["MKNOD"])
    assert "CAP_MKNOD" not in caps and set(caps) == set(capabilities.supported()) - {"CAP_MKNOD"}
    assert capabilities.tweak(DEFAULT, privileged=True) == capabilities.supported()


def test_oci_sets_are_bounding_effective_permitted_only():
    sets = capabilities.oci_sets(["CAP_KILL"])
    assert sets == {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                    "inheritable": [], "permitted": ["CAP_KILL"], "ambient": []}  # fmt: skip


def test_decode_names_a_capability_mask():
    assert capabilities.decode(1 << 0 | 1 << 21) == ["CAP_CHOWN", "CAP_SYS_ADMIN"]


def test_ulimit_syntax_is_dockers():
    assert parse_ulimit("nofile=1024:2048") == Rlimit("RLIMIT_NOFILE", 1024, 2048)
    assert parse_ulimit("nproc=50") == Rlimit("RLIMIT_NPROC", 50, 50)
    assert parse_ulimit("core=-1") == Rlimit("RLIMIT_CORE", UNLIMITED, UNLIMITED)
    assert parse_ulimit("stack=10:-1") == Rlimit("RLIMIT_STACK", 10, UNLIMITED)
    assert from_ulimits(["nofile=1", "nofile=2"]) == [Rlimit("RLIMIT_NOFILE", 2, 2)]


@pytest.mark.parametrize("text", ["nofile", "as=1", "nofile=", "nofile=a", "nofile=-2",
                                  "nofile=1:2:3", "nofile=-1:5", "nofile=5:4"])  # fmt: skip
def test_bad_ulimits_are_refused(text):
    with pytest.raises(RlimitError):
        parse_ulimit(text)


def test_device_rules_deny_all_then_allow_the_minimal_dev_as_v1_lines():
    lines = [rule.v1() for rule in Security().device_rules()]
    assert lines[:3] == ["a *:* rwm", "c *:* m", "b *:* m"]
    assert {"c 1:3 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm"} <= set(lines)
    assert Security(privileged=True).device_rules() is None


def test_warnings_for_privileged_and_for_mknod_where_device_rules_are_not_enforced():
    assert "--privileged" in Security(privileged=True).warnings("v1")[0]
    mknod = Security(capabilities=[*DEFAULT, "CAP_MKNOD"])
    assert mknod.warnings("v1") == [] and "cgroup v2" in mknod.warnings("v2")[0]
    assert Security().warnings("v2") == []
