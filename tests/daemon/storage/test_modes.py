"""modes.py: what the daemon creates is 0750 (dirs) or 0640 (files) whatever the umask,
and a file an older odradek left wider is narrowed when opened with O_CREAT."""
import os
import stat

import pytest

from odradek.daemon.storage.modes import make_dirs, open_file


@pytest.fixture(params=[0o000, 0o022, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_and_dirs_get_their_modes_whatever_the_umask(tmp_path, umask):
    deep = tmp_path / "a" / "b" / "c"
    make_dirs(deep)
    make_dirs(deep)                              # exists: nothing to do
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", deep)] == [0o750] * 3
    os.close(open_file(deep / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    assert mode(deep / "f") == 0o640


def test_opening_with_o_creat_narrows_an_older_wider_file_and_leaves_others_alone(tmp_path):
    wide, other = tmp_path / "wide", tmp_path / "other"
    for p in (wide, other):
        p.write_bytes(b"x")
        os.chmod(p, 0o666)
    os.close(open_file(wide, os.O_RDWR | os.O_CREAT))
    os.close(open_file(other, os.O_RDONLY))      # not creating: not ours to change
    assert (mode(wide), mode(other)) == (0o640, 0o666)
    assert wide.read_bytes() == b"x"


def test_an_existing_dir_keeps_its_mode(tmp_path):
    os.chmod(tmp_path, 0o755)
    make_dirs(tmp_path)
    assert mode(tmp_path) == 0o755
