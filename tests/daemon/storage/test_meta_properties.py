"""meta.properties: Kafka's format and ids, read back as written, bad files named."""
import base64
import os

import pytest

from odradek.daemon.broker import log_dirs
from odradek.daemon.broker.metadata import Metadata
from odradek.daemon.storage import meta_properties as mp


def test_written_in_kafkas_format_and_read_back(tmp_path):
    props = mp.MetaProperties(mp.new_uuid(), mp.new_uuid())
    mp.write(str(tmp_path), props)
    lines = [ln for ln in (tmp_path / mp.META_PROPERTIES).read_text().splitlines() if not ln.startswith("#")]
    assert lines == [f"cluster.id={props.cluster_id}", f"directory.id={props.directory_id}", "node.id=0", "version=1"]
    back = mp.read(str(tmp_path))
    assert (back.cluster_id, back.directory_id, back.node_id, back.version) == (props.cluster_id, props.directory_id, 0, 1)
    assert oct(os.stat(tmp_path / mp.META_PROPERTIES).st_mode & 0o777) == "0o640"


def test_ids_are_kafka_uuid_strings():
    ids = {mp.new_uuid() for _ in range(200)}
    assert len(ids) == 200
    for s in ids:
        assert len(s) == 22 and not s.startswith("-")
        assert len(base64.urlsafe_b64decode(s + "==")) == 16


def test_a_file_without_ids_is_named(tmp_path):
    assert mp.read(str(tmp_path)) is None
    (tmp_path / mp.META_PROPERTIES).write_text("version=1\nnode.id=0\n")
    with pytest.raises(ValueError, match="has no directory.id and no cluster.id"):
        mp.read(str(tmp_path))


def test_the_metadata_records_each_dirs_id_and_an_unknown_dir_is_offline(tmp_path):
    dirs = [str(tmp_path / "a"), str(tmp_path / "b")]
    md = Metadata.load(dirs)
    states = log_dirs.assess(dirs, md)
    assert [s.to_format for s in states] == [True, True]   # a new cluster formats its dirs
    log_dirs.create_missing(states)
    assert log_dirs.format_dirs(states, md)
    md.save()
    again = Metadata.load(dirs)
    assert again.directory_ids == [s.directory_id for s in states] and again.cluster_id == md.cluster_id
    assert all(s.online for s in log_dirs.assess(dirs, again))
    os.unlink(os.path.join(dirs[1], mp.META_PROPERTIES))
    a, b = log_dirs.assess(dirs, again)
    assert a.online and not b.online and "no meta.properties" in b.reason
