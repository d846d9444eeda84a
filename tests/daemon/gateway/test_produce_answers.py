"""Produce answers filled into a template (produce.py's _Answers) are byte for byte kio's
encoding of the same answer, at every Produce version, for one partition or several;
shapes the template cannot hold are left to kio."""
import uuid

import pytest

from odradek.daemon.gateway import produce as produce_mod
from odradek.daemon.gateway.codec import encode_response


def results(shape, base=0):
    """[(topic key, name, [_Part])] of `shape` = [(topic key, [partition index])]."""
    out, n = [], 0
    for key, indices in shape:
        parts = []
        for i in indices:
            p = produce_mod._Part(i)
            p.base_offset, p.log_start = base + 1000 * n, 7 * n
            parts.append(p)
            n += 1
        out.append((key, str(key), parts))
    return out


@pytest.mark.parametrize("version", range(3, 14))
@pytest.mark.parametrize("shape", [[("t", [0])], [("t", [2, 0]), ("other", [5])]])
def test_a_filled_template_is_kios_encoding(version, shape):
    if version >= 13:
        shape = [(uuid.UUID(int=i + 1), idx) for i, (_, idx) in enumerate(shape)]
    answers = produce_mod._Answers()
    for cid, base in ((1, 0), (2, 12345), (99, 1 << 40)):
        got = answers.framed(cid, version, results(shape, base))
        assert got == encode_response(cid, produce_mod._answer(version, results(shape, base)))


def test_a_shape_whose_sentinels_do_not_stand_alone_is_left_to_kio(monkeypatch):
    monkeypatch.setattr(produce_mod, "_sentinel", lambda: 0)     # every offset field holds the same bytes
    assert produce_mod._Answers().framed(1, 9, results([("t", [0, 1])])) is None
