"""A container's state.json is a typed record: what is written is read back as the same
record, and a field name that is not one is refused rather than stored."""

import pytest

from vmm.container.state import ContainerRecord, read_json, write_json


def _record() -> ContainerRecord:
    return ContainerRecord(
        id="c" * 64, name="web", image="busybox:latest", image_id="i" * 64,
        layers=["sha256:" + "a" * 64], command=["sh"], env=["PATH=/bin"], cwd="/",
        hostname="web", mounts=[], limits={"memory": None}, security={}, auto_remove=False,
        created=1.5,
    )  # fmt: skip


def test_a_record_written_is_read_back_the_same(tmp_path):
    rec = _record()
    rec.update(status="exited", exit_code=3, timings={"exec_s": 0.01})
    write_json(tmp_path / "state.json", rec.to_json())
    assert ContainerRecord.from_json(read_json(tmp_path / "state.json")) == rec


def test_fields_a_newer_pyvmm_wrote_are_left_out():
    data = {**_record().to_json(), "checkpoint": "later"}
    assert ContainerRecord.from_json(data) == _record()


def test_update_refuses_a_name_that_is_not_a_field():
    rec = _record()
    with pytest.raises(AttributeError, match="staus"):
        rec.update(staus="running")
    assert rec.status == "created"
