/*
 * record_decode.c — odk_decode_records (see odradek.h for the contract; its pure-Python
 * twin is client/_native_ref.py decode_records, tested against this file by
 * tests/client/test_native_records.py): one uncompressed v2 batch's records into rows of
 * ODK_RECORD_FIELDS int64 each, every varint and length checked. Its varint reader is the
 * only one in C (exported as odk_read_varint for the consumer's headers, hp_consumer.c).
 */
#include "odradek.h"
#include "byte_order.h"

/* ---- Record decode ------------------------------------------------------------------------ */

/* read_varint's outcomes besides 0 (a value) */
enum { VI_SHORT = 1, VI_LONG = 2, VI_WIDE = 3 };

/* The zigzag varint at p[*pos], of at most maxb bytes (5: int32, 10: int64), every byte
 * before lim. Exactly varint.py's _decode: the byte count is checked before the end of
 * the buffer once maxb bytes are read, the width (32 or 64 bits) after the last byte.
 * On VI_LONG and VI_WIDE *last holds the last byte read. */
static inline int read_varint(const uint8_t *p, size_t *pos, size_t lim, int maxb,
                              int64_t *value, int *last)
{
    size_t i = *pos;
    if (i < lim && p[i] < 0x80) {                       /* one byte: the common case */
        uint64_t z = p[i];
        *value = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
        *pos = i + 1;
        return 0;
    }
    if (i + 1 < lim && p[i + 1] < 0x80) {               /* two bytes (lengths, deltas to 8191) */
        uint64_t z = (uint64_t)(p[i] & 0x7F) | (uint64_t)p[i + 1] << 7;
        *value = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
        *pos = i + 2;
        return 0;
    }
    uint64_t z = 0;
    for (int k = 0;; k++) {
        if (i >= lim)
            return VI_SHORT;
        uint8_t b = p[i++];
        if (k == maxb - 1) {                            /* the last byte allowed */
            *last = b;
            if (b >= 0x80)
                return VI_LONG;
            if (maxb == 5 ? b > 0x0F : b > 0x01)        /* bits past 32 or 64 */
                return VI_WIDE;
        }
        z |= (uint64_t)(b & 0x7F) << (7 * k);
        if (b < 0x80)
            break;
    }
    *value = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    *pos = i;
    return 0;
}

int odk_read_varint(const uint8_t *p, size_t *pos, size_t lim, int maxb, int64_t *value)
{
    int last;
    return read_varint(p, pos, lim, maxb, value, &last);
}

static int decode_fail(odk_decode_result *out, int status, int64_t records, int flags,
                       size_t position, int64_t expected, int64_t found)
{
    out->status = status;
    out->flags = flags;
    out->records = records;
    out->position = (int64_t)position;
    out->expected = expected;
    out->found = found;
    out->min_timestamp = INT64_MAX;
    out->max_timestamp = INT64_MIN;
    return status;
}

int odk_decode_records(const uint8_t *b, size_t len, int64_t *rows, size_t cap,
                       odk_decode_result *out)
{
    if (len < ODK_BATCH_HEADER_SIZE)
        return decode_fail(out, ODK_TRUNCATED, 0, 0, 0, ODK_BATCH_HEADER_SIZE, (int64_t)len);
    int32_t length = as_i32(load_be32(b + OFF_LENGTH));
    if (length < ODK_BATCH_HEADER_SIZE - ODK_BATCH_OVERHEAD)
        return decode_fail(out, ODK_BAD_LENGTH, 0, 0, 0,
                           ODK_BATCH_HEADER_SIZE - ODK_BATCH_OVERHEAD, length);
    size_t size = (size_t)length + ODK_BATCH_OVERHEAD;
    if (size > len)
        return decode_fail(out, ODK_TRUNCATED, 0, 0, 0, (int64_t)size, (int64_t)len);
    int magic = b[OFF_MAGIC] < 128 ? b[OFF_MAGIC] : b[OFF_MAGIC] - 256;
    if (magic != 2)
        return decode_fail(out, ODK_BAD_MAGIC, 0, 0, 0, 2, magic);
    int codec = load_be16(b + OFF_ATTRIBUTES) & 7;
    if (codec != 0)
        return decode_fail(out, ODK_BAD_CODEC, 0, 0, 0, 0, codec);
    int32_t count = as_i32(load_be32(b + OFF_RECORDS));
    int64_t most = (int64_t)(size - ODK_BATCH_HEADER_SIZE) / 7;
    if (count < 0 || count > most)
        return decode_fail(out, ODK_BAD_COUNT, 0, 0, 0, most, count);
    if (rows != NULL && (size_t)count > cap)
        return decode_fail(out, ODK_MORE, 0, 0, 0, count, (int64_t)cap);
    int64_t scratch[ODK_RECORD_FIELDS];         /* rows == NULL: check only, into one row */

    size_t pos = ODK_BATCH_HEADER_SIZE;
    int flags = 0, last = 0, r;
    const int64_t base_ts = as_i64(load_be64(b + OFF_BASE_TS));
    int64_t min_ts = INT64_MAX, max_ts = INT64_MIN;
    int64_t v;
    int32_t i;
    /* A field at f (a varint or bytes) ran past the record end e: BAD_RECORD (e, end). */
#define FIELD_PAST(f, at_end) \
    return decode_fail(out, ODK_BAD_RECORD, i, flags, (f), (int64_t)e, (int64_t)(at_end))
    /* read_varint into v, within e, failing as documented */
#define VARINT(maxb) do { \
        size_t f_ = pos; \
        r = read_varint(b, &pos, e, (maxb), &v, &last); \
        if (r == VI_SHORT) FIELD_PAST(f_, e + 1); \
        if (r == VI_LONG) return decode_fail(out, ODK_BAD_VARINT, i, flags, f_, (maxb), (maxb) + 1); \
        if (r == VI_WIDE) return decode_fail(out, ODK_BAD_VARINT, i, flags, f_, \
                                             (maxb) == 5 ? 0x0F : 0x01, last); \
    } while (0)

    for (i = 0; i < count; i++) {
        int64_t *row = rows != NULL ? rows + (size_t)i * ODK_RECORD_FIELDS : scratch;
        size_t p = pos, e = size;
        if (pos >= size)
            return decode_fail(out, ODK_BAD_COUNT, i, flags, pos, count, i);
        r = read_varint(b, &pos, size, 5, &v, &last);
        if (r == VI_SHORT)
            return decode_fail(out, ODK_TRUNCATED, i, flags, p, (int64_t)(size - p) + 1,
                               (int64_t)(size - p));
        if (r == VI_LONG)
            return decode_fail(out, ODK_BAD_VARINT, i, flags, p, 5, 6);
        if (r == VI_WIDE)
            return decode_fail(out, ODK_BAD_VARINT, i, flags, p, 0x0F, last);
        if (v < 6 || v > (int64_t)(size - pos))
            return decode_fail(out, ODK_BAD_RECORD, i, flags, p, (int64_t)(size - pos), v);
        e = pos + (size_t)v;
        pos++;                                   /* attributes: no bits defined */
        VARINT(10);
        row[ODK_REC_TIMESTAMP_DELTA] = v;
        {   /* the record's timestamp, saturated; -1 (NO_TIMESTAMP) is none */
            int64_t ts;
            if (__builtin_add_overflow(base_ts, v, &ts))
                ts = v > 0 ? INT64_MAX : INT64_MIN;
            if (ts != -1) {
                if (ts < min_ts)
                    min_ts = ts;
                if (ts > max_ts)
                    max_ts = ts;
            }
        }
        VARINT(5);
        row[ODK_REC_OFFSET_DELTA] = v;
        if (v != i)
            flags |= ODK_RECORDS_SPARSE;
        /* key, then value */
        for (int kv = 0; kv < 2; kv++) {
            size_t f = pos;
            VARINT(5);
            row[kv ? ODK_REC_VALUE_POS : ODK_REC_KEY_POS] = (int64_t)pos;
            row[kv ? ODK_REC_VALUE_LEN : ODK_REC_KEY_LEN] = v;
            if (v < 0) {
                if (v != -1)
                    return decode_fail(out, ODK_BAD_RECORD, i, flags, f, -1, v);
                flags |= kv ? ODK_RECORDS_NULL_VALUE : ODK_RECORDS_NULL_KEY;
            } else {
                if ((uint64_t)v > e - pos)
                    FIELD_PAST(f, pos + (size_t)v);
                pos += (size_t)v;
            }
        }
        size_t f = pos;
        VARINT(5);
        if (v < 0 || v > (int64_t)((e - pos) / 2))
            return decode_fail(out, ODK_BAD_RECORD, i, flags, f, (int64_t)((e - pos) / 2), v);
        row[ODK_REC_HEADERS_POS] = (int64_t)pos;
        row[ODK_REC_HEADERS_COUNT] = v;
        if (v)
            flags |= ODK_RECORDS_HEADERS;
        for (int64_t h = v; h > 0; h--) {
            f = pos;
            VARINT(5);
            if (v < 0)
                return decode_fail(out, ODK_BAD_RECORD, i, flags, f, 0, v);
            if ((uint64_t)v > e - pos)
                FIELD_PAST(f, pos + (size_t)v);
            pos += (size_t)v;
            f = pos;
            VARINT(5);
            if (v < -1)
                return decode_fail(out, ODK_BAD_RECORD, i, flags, f, -1, v);
            if (v > 0) {
                if ((uint64_t)v > e - pos)
                    FIELD_PAST(f, pos + (size_t)v);
                pos += (size_t)v;
            }
        }
        if (pos != e)
            return decode_fail(out, ODK_BAD_RECORD, i, flags, pos, (int64_t)e, (int64_t)pos);
    }
#undef VARINT
#undef FIELD_PAST
    if (pos != size)
        return decode_fail(out, ODK_BAD_COUNT, count, flags, pos, (int64_t)size, (int64_t)pos);
    out->status = ODK_OK;
    out->flags = flags;
    out->records = count;
    out->position = (int64_t)size;
    out->expected = 0;
    out->found = 0;
    out->min_timestamp = min_ts;
    out->max_timestamp = max_ts;
    return ODK_OK;
}
