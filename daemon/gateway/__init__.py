"""The gateway: Kafka's wire protocol on a loopback TCP listener, for every Kafka client.

It is a data-plane client of the broker, in a process of its own (shared/DESIGN.md, "The
Kafka protocol listener"): Produce goes into the partition leader's ring as the Python
Producer's batches do; Fetch is answered from the segment files with sendfile; groups,
offsets, metadata and admin go to the broker over its control socket.

    codec.py        Kafka frames <-> kio entities (the only user of kio's serializers); respond()
    newer_layouts.py the few message layouts current clients use that kio lacks (ApiVersions v5)
    apis.py         the API table (what is served, at which versions), ApiVersions
    server.py       the listener: a thread per connection, frames, answers in order
    client_log.py   lines about clients' errors, rate-limited (per connection, per process)
    broker_link.py  pooled control connections to the broker (ask: a call's response)
    metadata_api.py Metadata, and NODE_ID (this broker's node id in every API);
                    topics.py: topic names <-> the broker's stable topic ids (topic_uuid)
    produce.py      Produce into the leaders' rings (produce_rings.py: the attachments)
    fetch.py        Fetch with sendfile (fetch_views.py: states and segment fds; fetch_sessions.py: KIP-227)
    offsets_api.py  ListOffsets, OffsetForLeaderEpoch, InitProducerId
    error_codes.py  our errors as Kafka's: codes, and error_code/error_message fields
    gateway_state.py per-gateway objects of the handler modules, made on first use
    groups_api.py   consumer groups and committed offsets, from the broker's group coordinator
    admin_api.py    CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords, DescribeLogDirs
    configs_api.py  DescribeConfigs, AlterConfigs, IncrementalAlterConfigs
    txn_api.py      the transaction APIs (AddPartitionsToTxn ... ListTransactions)
    listeners.py    the listener's config (listeners, advertised.listeners, limits)
    auth.py         who may connect: the control socket's rule, by the peer's uid
    error_response.py  Kafka's error response to a request that failed as a whole
    tagged_fields.py   unknown tagged fields dropped from a request kio refused
    stats.py        each gateway process's connection counters, for odradek status
    cluster_api.py  DescribeCluster
    sasl.py         SASL/PLAIN (SaslHandshake, SaslAuthenticate) on a SASL_PLAINTEXT listener
    sasl_users.py   its users file (password hashes)
"""
