"""Producer.attach(topic, partitions=None) against the real broker: it opens the rings to
each partition's leader before the first record, so produce() to an attached partition
makes no control call (counted on the producer's control connection); bad arguments
are named errors that attach nothing."""
import pytest

from odradek.client import OFFSET_BEGINNING, Admin, Consumer, Producer, TopicPartition
from odradek.client.errors import UnknownTopicOrPartition
from support.broker import consume_n


def create(broker, name, partitions):
    with Admin(broker.socket_path) as admin:
        admin.create_topic(name, num_partitions=partitions)


def count_control_calls(producer):
    """Count the requests the producer sends on its control connection from now on."""
    calls = []
    real = producer._client.call

    def call(request, *args, **kwargs):
        calls.append(type(request).__name__)
        return real(request, *args, **kwargs)
    producer._client.call = call
    return calls


def read_all(broker, topic, partition, n):
    with Consumer({"socket": broker.socket_path}) as c:
        c.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        return consume_n(c, n)


def test_after_attach_produce_makes_no_control_call(broker):
    create(broker, "early", 3)
    with Producer({"socket": broker.socket_path, "linger.ms": 0}) as p:
        assert p.attach("early") == [0, 1, 2]
        assert p.attach("early") == [0, 1, 2]       # idempotent: nothing opened twice
        calls = count_control_calls(p)
        for i in range(30):
            p.produce("early", b"v%d" % i, key=b"k%d" % i)          # murmur2: any of the three
        p.produce("early", b"keyless")
        p.produce("early", b"p1", partition=1)
        assert p.flush(10) == 0
        assert calls == []
    assert sum(len(read_all(broker, "early", part, 1)) > 0 for part in range(3)) == 3


def test_attach_to_some_partitions_leaves_the_others_to_the_first_record(broker):
    create(broker, "some", 2)
    with Producer({"socket": broker.socket_path, "linger.ms": 0}) as p:
        assert p.attach("some", partitions=(1,)) == [1]
        calls = count_control_calls(p)
        p.produce("some", b"one", partition=1)
        assert calls == []
        p.produce("some", b"zero", partition=0)       # not attached: opened now
        assert calls == ["OpenProducerRequest"]
        assert p.flush(10) == 0
    assert [r.value() for r in read_all(broker, "some", 0, 1)] == [b"zero"]
    assert [r.value() for r in read_all(broker, "some", 1, 1)] == [b"one"]


def test_bad_arguments_are_named_errors_and_attach_nothing(broker):
    create(broker, "two", 2)
    with Producer({"socket": broker.socket_path}) as p:
        with pytest.raises(TypeError):
            p.attach(b"two")
        with pytest.raises(TypeError):
            p.attach("two", partitions=["0"])
        with pytest.raises(TypeError):
            p.attach("two", partitions=[True])
        with pytest.raises(UnknownTopicOrPartition, match="not 2"):
            p.attach("two", partitions=[0, 2])
        with pytest.raises(UnknownTopicOrPartition):
            p.attach("no-such-topic")
        assert p._links == {}
    p.close()
    with pytest.raises(RuntimeError, match="closed"):
        p.attach("two")
