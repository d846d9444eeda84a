/* Kafka request frames the gateway reads without kio: odk_parse_produce_one (odradek.h).
 *
 * The bytes, from Kafka's protocol guide (kafka.apache.org/protocol) and the message
 * definitions ProduceRequest.json and RequestHeader.json; all integers big-endian:
 *
 *   request header v1 (Produce v3-v8)      v2 (v9+: flexible)
 *     api_key          int16                 the same,
 *     api_version      int16                 then tagged fields
 *     correlation_id   int32                 (uvarint count, then
 *     client_id        int16 length, -1 null  each: uvarint tag, uvarint size, bytes)
 *
 *   Produce body v3-v8                     v9-v12                      v13
 *     transactional_id int16 len, -1 null   uvarint len+1, 0 null       the same
 *     acks             int16                int16                       int16
 *     timeout_ms       int32                int32                       int32
 *     topic_data       int32 count          uvarint count+1             uvarint count+1
 *       name           int16 len            uvarint len+1               topic_id: 16 bytes
 *       partition_data int32 count          uvarint count+1             uvarint count+1
 *         index        int32                int32                       int32
 *         records      int32 len, -1 null   uvarint len+1, 0 null       the same
 *                                           tagged fields (partition)   (and below)
 *                                         tagged fields (topic)
 *                                       tagged fields (body)
 *
 * Bytes after the body are ignored, as the general decoding does (codec.py). A uvarint
 * is 7 bits a byte, low first, at most 5 bytes for 32 bits.
 */
#include "odradek.h"
#include "byte_order.h"

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
    int bad;
} cursor;

static int16_t take16(cursor *c)
{
    if (c->end - c->p < 2) {
        c->bad = 1;
        return 0;
    }
    int16_t v = as_i16(load_be16(c->p));
    c->p += 2;
    return v;
}

static int32_t take32(cursor *c)
{
    if (c->end - c->p < 4) {
        c->bad = 1;
        return 0;
    }
    int32_t v = as_i32(load_be32(c->p));
    c->p += 4;
    return v;
}

/* An unsigned varint of at most 32 bits; bad on a truncated or longer one. */
static uint32_t take_uvarint(cursor *c)
{
    uint32_t v = 0;
    for (int shift = 0; shift <= 28; shift += 7) {
        if (c->p >= c->end) {
            c->bad = 1;
            return 0;
        }
        uint8_t b = *c->p++;
        if (shift == 28 && (b & 0xF0)) {
            c->bad = 1;        /* more than 32 bits */
            return 0;
        }
        v |= (uint32_t)(b & 0x7F) << shift;
        if (!(b & 0x80))
            return v;
    }
    c->bad = 1;
    return 0;
}

/* Skip n bytes; bad if fewer are left. */
static void skip(cursor *c, int64_t n)
{
    if (n < 0 || c->end - c->p < n)
        c->bad = 1;
    else
        c->p += n;
}

/* The position of n bytes at the cursor, which moves past them; bad if fewer are left. */
static int64_t take_span(cursor *c, const uint8_t *frame, int64_t n)
{
    int64_t at = c->p - frame;
    skip(c, n);
    return at;
}

/* Tagged fields: only none at all is this shape (a field the gateway would have to
 * read or skip goes the general way, which knows them: tagged_fields.py). */
static int no_tags(cursor *c)
{
    return take_uvarint(c) == 0 && !c->bad;
}

int odk_parse_produce_one(const uint8_t *frame, size_t len, int32_t min_version, int32_t max_version,
                          odk_produce_one *out)
{
    cursor c = {frame, frame + len, 0};
    if (take16(&c) != 0)
        return ODK_PRODUCE_OTHER;                      /* not a Produce */
    int32_t version = take16(&c);
    int32_t correlation_id = take32(&c);
    if (c.bad || version < min_version || version > max_version || version < 3)
        return ODK_PRODUCE_OTHER;
    int flexible = version >= 9;
    int16_t client_id = take16(&c);                    /* int16 length even in header v2 */
    if (client_id < -1)
        return ODK_PRODUCE_OTHER;
    if (client_id > 0)
        skip(&c, client_id);
    if (c.bad || (flexible && !no_tags(&c)))
        return ODK_PRODUCE_OTHER;

    int transactional;
    if (flexible) {
        uint32_t n = take_uvarint(&c);
        transactional = n != 0;
        if (n)
            skip(&c, (int64_t)n - 1);
    } else {
        int16_t n = take16(&c);
        if (n < -1)
            return ODK_PRODUCE_OTHER;
        transactional = n != -1;
        if (n > 0)
            skip(&c, n);
    }
    int32_t acks = take16(&c);
    int32_t timeout_ms = take32(&c);
    if (c.bad)
        return ODK_PRODUCE_OTHER;

    /* one topic */
    if (flexible ? take_uvarint(&c) != 2 : take32(&c) != 1)
        return ODK_PRODUCE_OTHER;
    int64_t topic_start, topic_len;
    if (version >= 13) {
        topic_len = 16;
        topic_start = take_span(&c, frame, 16);
    } else if (flexible) {
        uint32_t n = take_uvarint(&c);
        if (n == 0)
            return ODK_PRODUCE_OTHER;                  /* a null name */
        topic_len = (int64_t)n - 1;
        topic_start = take_span(&c, frame, topic_len);
    } else {
        int16_t n = take16(&c);
        if (n < 0)
            return ODK_PRODUCE_OTHER;
        topic_len = n;
        topic_start = take_span(&c, frame, topic_len);
    }
    /* one partition */
    if (c.bad || (flexible ? take_uvarint(&c) != 2 : take32(&c) != 1))
        return ODK_PRODUCE_OTHER;
    int32_t partition = take32(&c);
    int64_t records_len;
    if (flexible) {
        uint32_t n = take_uvarint(&c);
        if (n == 0)
            return ODK_PRODUCE_OTHER;                  /* null records */
        records_len = (int64_t)n - 1;
    } else {
        int32_t n = take32(&c);
        if (n < 0)
            return ODK_PRODUCE_OTHER;
        records_len = n;
    }
    if (c.bad)
        return ODK_PRODUCE_OTHER;
    int64_t records_start = take_span(&c, frame, records_len);
    if (c.bad || (flexible && !(no_tags(&c) && no_tags(&c) && no_tags(&c))))
        return ODK_PRODUCE_OTHER;

    out->api_version = version;
    out->correlation_id = correlation_id;
    out->transactional = transactional;
    out->acks = acks;
    out->timeout_ms = timeout_ms;
    out->partition = partition;
    out->topic_start = topic_start;
    out->topic_len = topic_len;
    out->records_start = records_start;
    out->records_len = records_len;
    return 0;
}
