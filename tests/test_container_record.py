"""Records on disk are typed: what is written is read back as the same record (nested
records included), a field name that is not one is refused rather than stored, and a
file that is missing, truncated, not JSON or ill-typed loads as ``Broken`` with a
reason naming the field, never as an exception."""

import json
import os

import pytest

from vmm.container.engine.record import ContainerRecord, Mount
from vmm.container.engine.security import Security
from vmm.container.image.images import ImageRecord, RunDefaults
from vmm.container.linux.cgroups import DeviceRule, Limits
from vmm.container.linux.rlimits import Rlimit
from vmm.container.store import records
from vmm.container.store.records import Broken

DIGEST = "sha256:" + "a" * 64


def _record() -> ContainerRecord:
    return ContainerRecord(
        id="c" * 64, name="web", image="busybox:latest", image_id="i" * 64,
        layers=[DIGEST], command=["sh"], env=["PATH=/bin"], cwd="/", hostname="web",
        mounts=[Mount("volume", "data", "/data", False)],
        limits=Limits(memory=1 << 20, cpus=0.5, devices=[DeviceRule(allow=False)]),
        security=Security(rlimits=[Rlimit("RLIMIT_NOFILE", 10, 20)]),
        auto_remove=False, created=1.5,
    )  # fmt: skip


def _load(tmp_path, data, cls=ContainerRecord, **identity):
    path = tmp_path / "state.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return records.load(path, cls, **identity)


def test_a_record_written_is_read_back_the_same(tmp_path):
    rec = _record()
    rec.update(status="exited", exit_code=3, timings={"exec_s": 0.01})
    records.write(tmp_path / "state.json", rec)
    loaded = records.load(tmp_path / "state.json", ContainerRecord, id="c" * 64)
    assert loaded == rec
    assert isinstance(loaded.limits.devices[0], DeviceRule)
    assert isinstance(loaded.security.rlimits[0], Rlimit)
    assert os.listdir(tmp_path) == ["state.json"]  # no temporary file left


def test_fields_a_newer_pyvmm_wrote_are_left_out(tmp_path):
    data = {**_record().to_json(), "checkpoint": "later"}
    data["limits"]["blkio_weight"] = 10
    assert _load(tmp_path, data) == _record()


def test_update_refuses_a_name_that_is_not_a_field():
    rec = _record()
    with pytest.raises(AttributeError, match="staus"):
        rec.update(staus="running")
    assert rec.status == "created"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"layers": "sha256:x"}, "field 'layers': expected an array, found a string"),
        ({"layers": ["../../../../tmp/v"]}, "'layers'[0]: '../../../../tmp/v' is not a layer"),
        ({"created": "yesterday"}, "field 'created': expected a number, found a string"),
        ({"auto_remove": 1}, "field 'auto_remove': expected a boolean, found a number"),
        ({"limits": {"memory": "1G"}}, "'limits' field 'memory': expected an integer or null"),
        ({"security": {"rlimits": [{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]}},
         "field 'security' field 'rlimits'[0]"),
        ({"mounts": [{"type": "volume", "source": "../x", "target": "/x", "ro": False}]},
         "invalid volume name '../x'"),
        ({"mounts": [{"type": "tmpfs", "source": "x", "target": "/x", "ro": False}]},
         "'tmpfs' is not bind or volume"),
        ({"new_volumes": [".."]}, "invalid volume name"),
        ({"name": "../../x"}, "invalid container name"),
        ({"id": "d" * 64}, "state.json: id 'ddd"),
    ],
)  # fmt: skip
def test_an_ill_typed_record_is_broken_naming_the_field(tmp_path, change, reason):
    loaded = _load(tmp_path, {**_record().to_json(), **change}, id="c" * 64)
    assert isinstance(loaded, Broken) and reason in loaded.reason, loaded


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"id": "c', "state.json is not JSON"),
        ("", "state.json is not JSON"),
        ("\xff\xfe", "state.json is not JSON"),
        ("[1, 2]", "state.json: expected an object, found an array"),
        ("[" * 100_000, "state.json is nested too deeply"),
        ('{"id": "' + "c" * 64 + '"}', "field 'name' is missing"),
    ],
)
def test_a_truncated_or_garbage_record_is_broken(tmp_path, text, reason):
    loaded = _load(tmp_path, text)
    assert isinstance(loaded, Broken) and reason in loaded.reason, loaded


def test_a_missing_record_is_broken(tmp_path):
    loaded = records.load(tmp_path / "state.json", ContainerRecord)
    assert loaded == Broken(tmp_path / "state.json", "state.json is missing")


def test_image_run_defaults_keep_the_image_specs_names(tmp_path):
    image = ImageRecord(name="a", tag="b", id="x", layers=[DIGEST],
                        config=RunDefaults(env=["A=1"], cmd=["sh"]), created=0.0)  # fmt: skip
    data = records.to_json(image)
    assert data["config"]["Env"] == ["A=1"] and data["config"]["Cmd"] == ["sh"]
    assert _load(tmp_path, data, ImageRecord, name="a", tag="b") == image
    assert isinstance(_load(tmp_path, data, ImageRecord, name="a", tag="c"), Broken)


def test_the_oci_state_is_a_typed_record_read_through_the_one_loader(tmp_path):
    """``pyvmm-runtime``'s ``state.json`` (``runtime.State``): its hooks come back as
    ``Hook`` records, a wrong type is refused by the field's name in one line, and
    ``delete --force`` removes a state that does not load."""
    from vmm.container.oci import runtime
    from vmm.container.oci.hooks import Hook

    state = runtime.State(
        id="c1", oci_version="1.0.2", bundle="/b", pid=7, pid_start=9, rootfs="/b/rootfs",
        created="2026-01-01T00:00:00Z", cgroup_parent="p", cgroup_name="c1",
        cgroup_version="v2", hooks={"poststop": [Hook("/bin/true", ["true"])]},
    )  # fmt: skip
    (tmp_path / "c1").mkdir()
    records.write(tmp_path / "c1" / "state.json", state)
    assert runtime.load(str(tmp_path), "c1").state == state
    data = {**records.to_json(state), "pid": "7"}
    (tmp_path / "c1" / "state.json").write_text(json.dumps(data))
    with pytest.raises(runtime.ContainerStateError, match="field 'pid': expected an integer"):
        runtime.load(str(tmp_path), "c1")
    assert runtime.list_all(str(tmp_path)) == []
    runtime.delete(str(tmp_path), "c1", force=True)
    assert not (tmp_path / "c1").exists()


def test_a_versioned_record_refuses_unknown_fields_by_name():
    """The snapshot manifest's way (``unknown="refuse"``), through the same loader that
    leaves out a container record's unknown fields."""
    from vmm.record import RecordError, from_json

    data = {**records.to_json(Rlimit("RLIMIT_NOFILE", 10, 20)), "extra": 1}
    assert from_json(data, Rlimit) == Rlimit("RLIMIT_NOFILE", 10, 20)
    with pytest.raises(RecordError, match="manifest.json: unknown field 'extra'"):
        from_json(data, Rlimit, "manifest.json", unknown="refuse")


def test_a_container_record_by_its_old_name_is_read_and_renamed(tmp_path):
    """A store written before the record was ``container.json`` (it was
    ``state.json``, the OCI core's name) keeps its containers."""
    from vmm.container.engine import container as lifecycle
    from vmm.container.store.state import Store

    store = Store(tmp_path)
    cdir = store.containers / ("c" * 64)
    cdir.mkdir(parents=True)
    records.write(cdir / "state.json", _record())
    assert lifecycle.list_containers(store) == [_record()]
    assert os.listdir(cdir) == [lifecycle.RECORD]
