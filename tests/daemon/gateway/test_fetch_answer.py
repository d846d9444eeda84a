"""fetch_answer.py's hand-written Fetch answers are kio's bytes, field for field, for every
served version, any number of topics and partitions, errors, aborted transactions (none,
empty, several), records absent, empty, inline or as file slices."""
import os
import random
import uuid

import pytest

from odradek.daemon.gateway import fetch, fetch_answer
from odradek.daemon.gateway.apis import FileSlice
from odradek.daemon.gateway.codec import ErrorCode, build, encode_response, response_class


@pytest.fixture(scope="module")
def segment(tmp_path_factory):
    path = tmp_path_factory.mktemp("seg") / "file"
    path.write_bytes(bytes(random.Random(1).randrange(256) for _ in range(1 << 16)))
    fd = os.open(path, os.O_RDONLY)
    yield fd
    os.close(fd)


def materialized(parts):
    return b"".join(os.pread(p.fd, p.length, p.offset) if isinstance(p, FileSlice) else p for p in parts)


def random_answer(rng, fd, index):
    records = rng.choice([None, b"", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))),
                          FileSlice(fd, rng.randrange(1000), rng.randrange(1, 5000))])
    aborted = rng.choice([None, [], [(rng.randrange(1 << 40), rng.randrange(1 << 40))
                                     for _ in range(rng.randrange(1, 4))]])
    return fetch_answer.PartitionAnswer(index, rng.choice([ErrorCode.none, ErrorCode.offset_out_of_range]),
                                        rng.randrange(-1, 1 << 50), rng.randrange(-1, 1 << 50),
                                        rng.randrange(-1, 1 << 40), aborted, records)


def by_kio(cid, version, session_id, topics):
    """The answer as fetch.py encodes it with kio: placeholders spliced into slices."""
    slices, encoded = {}, []
    for key, answers in topics:
        copies = []
        for a in answers:
            a = a.fields()
            if isinstance(a["records"], FileSlice):
                marker = os.urandom(16)
                slices[marker], a["records"] = a["records"], marker
            copies.append(a)
        encoded.append({"topic_id" if version >= 13 else "topic": key, "partitions": copies})
    response = build(response_class(1, version), throttle_time=0, error_code=ErrorCode.none, session_id=session_id,
                     responses=encoded, node_endpoints=[])
    framed = encode_response(cid, response)
    return fetch.splice_records(framed, slices, version >= fetch_answer.FLEXIBLE_FROM) if slices else [framed]


@pytest.mark.parametrize("version", range(4, 19))
def test_hand_encoded_answers_are_kios_bytes(segment, version):
    rng = random.Random(version)
    for _ in range(40):
        topics = []
        for _ in range(rng.randrange(0, 4)):
            key = uuid.UUID(int=rng.randrange(1 << 128)) if version >= 13 else "t" * rng.randrange(1, 30)
            topics.append((key, [random_answer(rng, segment, i) for i in range(rng.randrange(0, 4))]))
        cid, session_id = rng.randrange(1 << 31), rng.randrange(1 << 31)
        ours = fetch_answer.encode(cid, version, session_id, ErrorCode.none, topics)
        assert materialized(ours) == materialized(by_kio(cid, version, session_id, topics))
        assert sum(isinstance(p, FileSlice) for p in ours) == sum(
            isinstance(a.records, FileSlice) for _, answers in topics for a in answers)


@pytest.mark.parametrize("version", [4, 11, 12, 16, 18])
def test_slices_read_already_go_inline_as_the_same_bytes(segment, version):
    """inline=True: a slice whose bytes were read (its data) is written as those bytes, so
    an answer whose slices all were is one part; one not read stays a slice."""
    rng = random.Random(100 + version)
    for _ in range(20):
        answers = [random_answer(rng, segment, i) for i in range(rng.randrange(1, 5))]
        key = uuid.UUID(int=rng.randrange(1 << 128)) if version >= 13 else "topic"
        expected = materialized(fetch_answer.encode(3, version, 0, ErrorCode.none, [(key, answers)]))
        unread = [a.records for a in answers if isinstance(a.records, FileSlice) and rng.random() < 0.3]
        for a in answers:
            if isinstance(a.records, FileSlice) and a.records not in unread:
                a.records.data = os.pread(a.records.fd, a.records.length, a.records.offset)
        ours = fetch_answer.encode(3, version, 0, ErrorCode.none, [(key, answers)], inline=True)
        assert materialized(ours) == expected
        assert [p for p in ours if isinstance(p, FileSlice)] == unread
