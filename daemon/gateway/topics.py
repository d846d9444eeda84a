"""The gateway's map of topic names to topic ids, learnt from the broker's Metadata.

Kafka clients name topics by id in Fetch v13+ (and Metadata v10+ may ask by id). A topic's
id is the `topic_id` the broker fixed at creation (cluster-metadata.json, Metadata v1 of
our control protocol: 32 hex digits), so the same UUID is answered forever; a topic
deleted and created again under its name gets a new one, as in Kafka. The map is filled by
every Metadata answer the gateway sees and refreshed (all topics) when an id is not in it,
at most every REFRESH_S.
"""
import threading
import time
import uuid

from odradek.client.protocol import messages as m
from odradek.daemon.gateway.gateway_state import per_gateway

__all__ = ["TopicDirectory", "directory", "topic_uuid"]

REFRESH_S = 0.2
NO_TOPIC_ID = uuid.UUID(int=0)


def topic_uuid(hex_id):
    """The UUID of a broker topic id (32 hex digits), or the zero UUID if it is none."""
    try:
        return uuid.UUID(hex=hex_id) if hex_id else NO_TOPIC_ID
    except ValueError:
        return NO_TOPIC_ID


class TopicDirectory:
    """UUID -> name for the topics the broker has (and name -> UUID, to drop a
    recreated topic's old id); thread-safe."""

    def __init__(self, links):
        self._links = links
        self._by_id, self._by_name = {}, {}
        self._lock = threading.Lock()
        self._refreshed = 0.0

    def learn(self, topics):
        """Record the ids of a broker MetadataResponse's topics (error-free ones)."""
        with self._lock:
            for t in topics:
                if not t.error_code and t.topic_id:
                    tid = topic_uuid(t.topic_id)
                    old = self._by_name.get(t.name)
                    if old is not None and old != tid:
                        self._by_id.pop(old, None)
                    self._by_name[t.name], self._by_id[tid] = tid, t.name

    def name_of(self, tid):
        """The name of the topic with UUID `tid`, or None (an unknown id)."""
        name = self._by_id.get(tid)
        if name is None:
            self._refresh()
            name = self._by_id.get(tid)
        return name

    def _refresh(self):
        now = time.monotonic()
        if now - self._refreshed < REFRESH_S:
            return
        self._refreshed = now
        res = self._links.ask(m.MetadataRequest(topics=None))
        with self._lock:
            self._by_id.clear()
            self._by_name.clear()
        self.learn(res.topics)


def directory(gateway):
    """The gateway's TopicDirectory (made on first use)."""
    return per_gateway(gateway, "topic_directory", lambda g: TopicDirectory(g.links))
