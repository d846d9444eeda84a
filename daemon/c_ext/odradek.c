/*
 * odradek.c — the native hot loops of odradek (see odradek.h for the contract; every
 * function has a pure-Python twin, tested against this file: client/_native_ref.py for
 * the CRC, the batch scan and the record decoder, daemon/storage/_native_ref.py for the
 * index lookups and the fused append).
 *
 * CRC-32C: crc32c.c (three implementations and their dispatch). Record decoding
 * (odk_decode_records): record_decode.c. Shared byte helpers: byte_order.h.
 *
 * Everything else is plain C11 (the GCC/Clang extension used here is __builtin_bswap*;
 * crc32c.c adds the constructor and target attributes and __builtin_cpu_supports). The
 * prefault thread (odk_prefault_async) uses POSIX threads and madvise.
 */
#define _GNU_SOURCE
#include "odradek.h"
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string.h>

#include "byte_order.h"   /* load_be*, as_i*, the OFF_* header offsets */

/* ---- Sparse index search ----------------------------------------------------------- */

/* Both are Python's bisect (same midpoints), so they agree with the reference even on
 * unsorted input; lo and hi stay within [0, entries], so no read is out of bounds. */

int64_t odk_index_lookup(const uint8_t *index, size_t entries, uint32_t target)
{
    size_t lo = 0, hi = entries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (load_be32(index + mid * ODK_INDEX_ENTRY_SIZE) <= target)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (int64_t)lo - 1;   /* bisect_right - 1 */
}

int64_t odk_timeindex_lookup(const uint8_t *index, size_t entries, int64_t target)
{
    size_t lo = 0, hi = entries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (as_i64(load_be64(index + mid * ODK_TIMEINDEX_ENTRY_SIZE)) < target)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (int64_t)lo;       /* bisect_left */
}

/* ---- Batch scan ----------------------------------------------------------------------- */


/* One batch at b, with rem bytes left in the buffer: framing, batchLength (and
 * max_batch_size when > 0), magic, lastOffsetDelta and recordsCount, room in int64 for
 * the next offset, CRC-32C. Returns ODK_OK and sets *size, or the failing status with
 * *expected and *found as odk_scan_batches documents them. The scanner and odk_append
 * both call it, so what one accepts the other does. */
static int check_batch(const uint8_t *b, size_t rem, int64_t max_batch_size,
                       int64_t *size_out, int64_t *expected, int64_t *found)
{
    if (rem < ODK_BATCH_OVERHEAD) {
        *expected = ODK_BATCH_OVERHEAD;
        *found = (int64_t)rem;
        return ODK_TRUNCATED;
    }
    int32_t length = as_i32(load_be32(b + OFF_LENGTH));
    int64_t size = (int64_t)length + ODK_BATCH_OVERHEAD;
    int too_big = max_batch_size > 0 && size > max_batch_size;
    if (length < ODK_BATCH_HEADER_SIZE - ODK_BATCH_OVERHEAD || too_big) {
        *expected = too_big ? max_batch_size - ODK_BATCH_OVERHEAD
                            : ODK_BATCH_HEADER_SIZE - ODK_BATCH_OVERHEAD;
        *found = length;
        return ODK_BAD_LENGTH;
    }
    if ((uint64_t)size > rem) {
        *expected = size;
        *found = (int64_t)rem;
        return ODK_TRUNCATED;
    }
    int magic = b[OFF_MAGIC] < 128 ? b[OFF_MAGIC] : b[OFF_MAGIC] - 256;  /* signed byte */
    if (magic != 2) {
        *expected = 2;
        *found = magic;
        return ODK_BAD_MAGIC;
    }
    int64_t base_offset = as_i64(load_be64(b + OFF_BASE_OFFSET));
    int32_t last_delta = as_i32(load_be32(b + OFF_LAST_DELTA));
    int32_t count = as_i32(load_be32(b + OFF_RECORDS));
    if (last_delta < 0 || count < 0) {
        *expected = 0;
        *found = last_delta < count ? last_delta : count;
        return ODK_BAD_LENGTH;
    }
    /* lastOffset + 1 (the next offset) must fit in int64 */
    if (base_offset > INT64_MAX - 1 - last_delta) {
        *expected = INT64_MAX - 1 - base_offset;
        *found = last_delta;
        return ODK_BAD_LENGTH;
    }
    uint32_t stored = load_be32(b + OFF_CRC);
    uint32_t computed = odk_crc32c(0, b + OFF_ATTRIBUTES,
                                   (size_t)size - OFF_ATTRIBUTES);
    if (computed != stored) {
        *expected = computed;
        *found = stored;
        return ODK_BAD_CRC;
    }
    *size_out = size;
    return ODK_OK;
}

int odk_scan_batches(const uint8_t *buf, size_t len, int64_t max_batch_size,
                     int check_offsets, int64_t min_offset,
                     odk_batch_info *infos, size_t cap, odk_scan_result *out)
{
    odk_scan_result scratch;
    size_t pos = 0;
    int64_t batches = 0, records = 0, first = -1, last = -1, maxts = -1;
    int64_t next_offset = min_offset, expected = 0, found = 0;
    int status = ODK_OK;

    if (out == NULL)
        out = &scratch;
    if (infos == NULL)
        cap = 0;

    while (pos < len) {
        const uint8_t *b = buf + pos;
        size_t rem = len - pos;

        if (cap && (uint64_t)batches >= cap) {
            status = ODK_MORE;
            break;
        }
        int64_t size;
        status = check_batch(b, rem, max_batch_size, &size, &expected, &found);
        if (status != ODK_OK)
            break;
        int64_t base_offset = as_i64(load_be64(b + OFF_BASE_OFFSET));
        int32_t last_delta = as_i32(load_be32(b + OFF_LAST_DELTA));
        int32_t count = as_i32(load_be32(b + OFF_RECORDS));
        uint32_t stored = load_be32(b + OFF_CRC);
        if (check_offsets && base_offset < next_offset) {
            status = ODK_BAD_OFFSET;
            expected = next_offset;
            found = base_offset;
            break;
        }
        int64_t last_offset = base_offset + last_delta;
        int64_t max_ts = as_i64(load_be64(b + OFF_MAX_TS));
        if (cap) {
            odk_batch_info *bi = &infos[batches];
            bi->position = (int64_t)pos;
            bi->base_offset = base_offset;
            bi->last_offset = last_offset;
            bi->base_timestamp = as_i64(load_be64(b + OFF_BASE_TS));
            bi->max_timestamp = max_ts;
            bi->producer_id = as_i64(load_be64(b + OFF_PRODUCER_ID));
            bi->size = (int32_t)size;
            bi->records = count;
            bi->base_sequence = as_i32(load_be32(b + OFF_BASE_SEQ));
            bi->leader_epoch = as_i32(load_be32(b + OFF_LEADER_EPOCH));
            bi->producer_epoch = as_i16(load_be16(b + OFF_PRODUCER_EPOCH));
            bi->attributes = as_i16(load_be16(b + OFF_ATTRIBUTES));
            bi->crc = stored;
        }
        if (batches == 0)
            first = base_offset;
        last = last_offset;
        if (max_ts > maxts)
            maxts = max_ts;
        records += count;
        batches++;
        next_offset = last_offset + 1;
        pos += (size_t)size;
    }

    out->status = status;
    out->batches = batches;
    out->valid_bytes = (int64_t)pos;
    out->first_offset = first;
    out->last_offset = last;
    out->max_timestamp = maxts;
    out->records = records;
    out->expected = expected;
    out->found = found;
    return status;
}

/* ---- Fused append ----------------------------------------------------------------------- */

#define U32_LIMIT 0xFFFFFFFFll

/* The sparse-index rule, on locals: run once to count the index entries an append needs
 * (write == 0), once more to write them. This is the C twin of the rule's one Python
 * owner, daemon/storage/index_policy.py (SparseIndexing._index_batch and time_entry_due):
 * an offset entry for a batch once more than index_interval bytes were written since
 * the last one, a time entry beside it when the largest timestamp grew at a larger
 * offset. Change both together; tests/daemon/storage/test_native_append.py pins them. */
typedef struct track_state {
    int64_t bytes_since_index, max_ts, offset_of_max;
    int64_t index_entries, time_entries;
    int64_t last_time_ts, last_time_rel;  /* last time entry (-1, -1 when none) */
} track_state;

static inline void track(track_state *t, const odk_append_state *st, int64_t pos,
                         int64_t last, int64_t size, int64_t ts,
                         uint8_t *index, uint8_t *timeindex, int write)
{
    if (ts > t->max_ts) {
        t->max_ts = ts;
        t->offset_of_max = last;
    }
    if (t->bytes_since_index > st->index_interval) {
        if (write) {
            uint8_t *e = index + t->index_entries * ODK_INDEX_ENTRY_SIZE;
            store_be32(e, (uint32_t)(last - st->segment_base));
            store_be32(e + 4, (uint32_t)pos);
        }
        t->index_entries++;
        int64_t rel = t->offset_of_max - st->segment_base;
        if (t->max_ts > t->last_time_ts && (t->time_entries == 0 || rel > t->last_time_rel)) {
            if (write) {
                uint8_t *e = timeindex + t->time_entries * ODK_TIMEINDEX_ENTRY_SIZE;
                store_be64(e, (uint64_t)t->max_ts);
                store_be32(e + 8, (uint32_t)rel);
            }
            t->time_entries++;
            t->last_time_ts = t->max_ts;
            t->last_time_rel = rel;
        }
        t->bytes_since_index = 0;
    }
    t->bytes_since_index += size;
}

int64_t odk_walk_prefixes(const uint8_t *buf, size_t len, int64_t buf_pos, int64_t pos,
                          int64_t start, int64_t end, int64_t upper, int64_t max_bytes,
                          int at_least_one, int64_t max_batches)
{
    for (int64_t n = 0; n < max_batches && pos < end; n++) {
        int64_t rel = pos - buf_pos;
        if (rel < 0 || (uint64_t)rel + 12 > len)
            break;                                    /* the caller reads on from pos */
        const uint8_t *b = buf + rel;
        int64_t base = as_i64(load_be64(b));
        int32_t length = as_i32(load_be32(b + 8));
        if (base >= upper || length < 0)
            break;
        int64_t size = (int64_t)length + 12;
        if (size > end - pos)
            break;
        if ((pos > start || !at_least_one) && pos + size - start > max_bytes)
            break;
        pos += size;
    }
    return pos;
}

static int append_fail(odk_append_state *st, int status, int64_t batches, int64_t pos,
                       int64_t expected, int64_t found)
{
    st->status = status;
    st->batches = batches;
    st->valid_bytes = pos;
    st->expected = expected;
    st->found = found;
    st->first_offset = -1;
    st->last_offset = -1;
    st->records = 0;
    st->append_max_timestamp = -1;
    st->first_max_timestamp = -1;
    return status;
}

/* Step 1 of an append: the refusals before anything is written. Also reads the last
 * time-index entry into t (and st->last_time_timestamp). */
static int append_refuse(size_t len, size_t dst_size, const uint8_t *timeindex, size_t index_cap,
                         size_t time_cap, odk_append_state *st, track_state *t)
{
    t->last_time_ts = -1;
    t->last_time_rel = -1;
    st->reserved = 0;
    if (st->time_entries > 0 && (uint64_t)st->time_entries <= time_cap) {
        const uint8_t *e = timeindex + (st->time_entries - 1) * ODK_TIMEINDEX_ENTRY_SIZE;
        t->last_time_ts = as_i64(load_be64(e));
        t->last_time_rel = load_be32(e + 8);
    }
    st->last_time_timestamp = t->last_time_ts;

    if (st->position < 0 || (uint64_t)st->position > dst_size || st->index_entries < 0 ||
        (uint64_t)st->index_entries > index_cap || st->time_entries < 0 ||
        (uint64_t)st->time_entries > time_cap)
        return append_fail(st, ODK_BAD_STATE, 0, 0, 0, 0);
    if (len == 0)
        return append_fail(st, ODK_EMPTY, 0, 0, 0, 0);
    size_t room = dst_size - (size_t)st->position;
    if (len > room)
        return append_fail(st, ODK_NO_SPACE, 0, 0, (int64_t)room, (int64_t)len);
    if ((uint64_t)st->index_entries >= index_cap)
        return append_fail(st, ODK_INDEX_FULL, 0, 0, 0, 1);
    if ((uint64_t)st->time_entries >= time_cap)
        return append_fail(st, ODK_INDEX_FULL, 0, 0, 0, 1);
    if ((uint64_t)st->position + len > (uint64_t)U32_LIMIT + 1)
        return append_fail(st, ODK_OUT_OF_RANGE, 0, 0, U32_LIMIT + 1,
                           st->position + (int64_t)len);
    return ODK_OK;
}

static inline void track_start(track_state *t, const odk_append_state *st)
{
    t->bytes_since_index = st->bytes_since_index;
    t->max_ts = st->max_timestamp;
    t->offset_of_max = st->offset_of_max;
    t->index_entries = st->index_entries;
    t->time_entries = st->time_entries;
}

/* Step 3: validate the batches at d (read only) and count the index entries they need;
 * t holds the last time entry (append_refuse). On failure append_fail; on OK the result
 * fields are set. The in/out fields are never changed here. */
static int append_validate(const uint8_t *d, size_t len, size_t index_cap, size_t time_cap,
                           odk_append_state *st, track_state *t)
{
    const int assign = st->assign != 0;
    const int64_t max_batch = st->max_batch_size;
    const int64_t seg_base = st->segment_base;
    const int64_t append_time = st->append_time;
    /* check_timestamps' range, saturated (both limits are >= 0 by contract) */
    int64_t ts_low = INT64_MIN, ts_high = INT64_MAX;
    if (st->check_timestamps) {
        if (__builtin_sub_overflow(st->now_ms, st->timestamp_before_ms, &ts_low))
            ts_low = INT64_MIN;
        if (__builtin_add_overflow(st->now_ms, st->timestamp_after_ms, &ts_high))
            ts_high = INT64_MAX;
    }
    size_t pos = 0;
    int64_t batches = 0, next_offset = st->next_offset, expected = 0, found = 0;
    int64_t records = 0, first = -1, last = -1, maxts = -1, first_ts = -1;
    int status = ODK_OK;
    /* first leader-check failure, then first range failure: reported if the scan
     * finds nothing worse later */
    int lstatus = ODK_OK, rstatus = ODK_OK;
    int64_t lbatch = 0, lpos = 0, lexp = 0, lfound = 0;
    int64_t rbatch = 0, rpos = 0, rexp = 0, rfound = 0;

    track_start(t, st);
    while (pos < len) {
        const uint8_t *b = d + pos;
        size_t rem = len - pos;
        int64_t size;
        status = check_batch(b, rem, 0, &size, &expected, &found);
        if (status != ODK_OK)
            break;
        int64_t base_offset = as_i64(load_be64(b + OFF_BASE_OFFSET));
        int32_t last_delta = as_i32(load_be32(b + OFF_LAST_DELTA));
        int32_t count = as_i32(load_be32(b + OFF_RECORDS));
        if (!assign && base_offset < next_offset) {
            status = ODK_BAD_OFFSET;
            expected = next_offset;
            found = base_offset;
            break;
        }
        /* leader checks (PartitionLog.append's order) */
        if (lstatus == ODK_OK) {
            int codec = load_be16(b + OFF_ATTRIBUTES) & 7;
            if (max_batch > 0 && size > max_batch) {
                lstatus = ODK_TOO_LARGE; lexp = max_batch; lfound = size;
            } else if (assign && (count < 1 || last_delta != count - 1)) {
                lstatus = ODK_BAD_RECORDS; lexp = count; lfound = last_delta;
            } else if (assign && codec > 4) {               /* 0-4: none, gzip, snappy, lz4, zstd */
                lstatus = ODK_BAD_CODEC; lexp = 4; lfound = codec;
            } else if (assign && codec == 0) {              /* every record decodes (the copy's) */
                odk_decode_result r;
                if (odk_decode_records(b, (size_t)size, NULL, 0, &r) != ODK_OK) {
                    lstatus = ODK_BAD_RECORD_BYTES; lexp = r.records; lfound = r.status;
                } else if (st->check_timestamps) {
                    if (load_be16(b + OFF_ATTRIBUTES) & 8)      /* LogAppendTime: maxTimestamp */
                        r.min_timestamp = r.max_timestamp = as_i64(load_be64(b + OFF_MAX_TS));
                    if (r.min_timestamp == -1)                  /* NO_TIMESTAMP */
                        r.min_timestamp = INT64_MAX, r.max_timestamp = INT64_MIN;
                    if (r.min_timestamp < ts_low) {
                        lstatus = ODK_BAD_TIMESTAMP; lexp = ts_low; lfound = r.min_timestamp;
                    } else if (r.max_timestamp > ts_high) {
                        lstatus = ODK_BAD_TIMESTAMP; lexp = ts_high; lfound = r.max_timestamp;
                    }
                }
            }
            if (lstatus != ODK_OK) {
                lbatch = batches;
                lpos = (int64_t)pos;
            }
        }
        /* offsets as they will be stored */
        int64_t base = assign ? next_offset : base_offset;
        if (rstatus == ODK_OK) {
            if (base > INT64_MAX - 1 - last_delta) {        /* assigned past int64 */
                rstatus = ODK_OUT_OF_RANGE; rexp = INT64_MAX - 1 - last_delta; rfound = base;
            } else if (base < seg_base || base + last_delta - seg_base > U32_LIMIT) {
                rstatus = ODK_OUT_OF_RANGE;
                rexp = base < seg_base ? seg_base : seg_base + U32_LIMIT;
                rfound = base < seg_base ? base : base + last_delta;
            }
            if (rstatus != ODK_OK) {
                rbatch = batches;
                rpos = (int64_t)pos;
            }
        }
        int64_t last_offset = base + last_delta;
        if (lstatus == ODK_OK && rstatus == ODK_OK) {
            int64_t ts = append_time >= 0 ? append_time : as_i64(load_be64(b + OFF_MAX_TS));
            track(t, st, st->position + (int64_t)pos, last_offset, size, ts, NULL, NULL, 0);
            if (batches == 0)
                first_ts = ts;
            if (ts > maxts)
                maxts = ts;
        }
        if (batches == 0)
            first = base;
        last = last_offset;
        records += count;
        batches++;
        next_offset = last_offset + 1;
        pos += (size_t)size;
    }

    if (status == ODK_OK && lstatus != ODK_OK) {
        status = lstatus; batches = lbatch; pos = (size_t)lpos; expected = lexp; found = lfound;
    } else if (status == ODK_OK && rstatus != ODK_OK) {
        status = rstatus; batches = rbatch; pos = (size_t)rpos; expected = rexp; found = rfound;
    } else if (status == ODK_OK) {
        int64_t need_i = t->index_entries - st->index_entries;
        int64_t need_t = t->time_entries - st->time_entries;
        int64_t free_i = (int64_t)index_cap - st->index_entries;
        int64_t free_t = (int64_t)time_cap - st->time_entries;
        if (need_i > free_i || need_t > free_t) {
            status = ODK_INDEX_FULL;
            expected = need_i > free_i ? free_i : free_t;
            found = need_i > free_i ? need_i : need_t;
            batches = 0;
            pos = 0;
        }
    }
    if (status != ODK_OK)
        return append_fail(st, status, batches, (int64_t)pos, expected, found);
    st->status = ODK_OK;
    st->batches = batches;
    st->valid_bytes = (int64_t)len;
    st->expected = 0;
    st->found = 0;
    st->first_offset = first;
    st->last_offset = last;
    st->records = records;
    st->append_max_timestamp = maxts;
    st->first_max_timestamp = first_ts;
    return ODK_OK;
}

/* Step 4, on batches validated by append_validate: the rewrites st asks for (in d:
 * none when !assign, leader_epoch < 0 and append_time < 0), the index entries, and
 * the in/out fields advanced. */
static void append_commit(uint8_t *d, size_t len, uint8_t *index, uint8_t *timeindex,
                          odk_append_state *st)
{
    track_state t;
    track_start(&t, st);
    t.last_time_ts = st->last_time_timestamp;
    t.last_time_rel = st->time_entries > 0
        ? (int64_t)load_be32(timeindex + (st->time_entries - 1) * ODK_TIMEINDEX_ENTRY_SIZE + 8) : -1;
    const int assign = st->assign != 0;
    const int64_t append_time = st->append_time;
    int64_t next_offset = st->next_offset;
    const int32_t epoch = st->leader_epoch;
    for (size_t pos = 0; pos < len;) {
        uint8_t *b = d + pos;
        int64_t size = (int64_t)as_i32(load_be32(b + OFF_LENGTH)) + ODK_BATCH_OVERHEAD;
        int32_t last_delta = as_i32(load_be32(b + OFF_LAST_DELTA));
        int64_t base;
        if (assign) {
            base = next_offset;
            store_be64(b + OFF_BASE_OFFSET, (uint64_t)base);
        } else {
            base = as_i64(load_be64(b + OFF_BASE_OFFSET));
        }
        int64_t last_offset = base + last_delta;
        if (epoch >= 0)
            store_be32(b + OFF_LEADER_EPOCH, (uint32_t)epoch);
        int64_t ts;
        if (append_time >= 0) {
            ts = append_time;

            {
                uint16_t attrs = (uint16_t)(load_be16(b + OFF_ATTRIBUTES) | 0x08);
                b[OFF_ATTRIBUTES] = (uint8_t)(attrs >> 8);
                b[OFF_ATTRIBUTES + 1] = (uint8_t)attrs;
            }
            store_be64(b + OFF_MAX_TS, (uint64_t)ts);
            store_be32(b + OFF_CRC, odk_crc32c(0, b + OFF_ATTRIBUTES, (size_t)size - OFF_ATTRIBUTES));
        } else {
            ts = as_i64(load_be64(b + OFF_MAX_TS));
        }
        track(&t, st, st->position + (int64_t)pos, last_offset, size, ts, index, timeindex, 1);
        next_offset = last_offset + 1;
        pos += (size_t)size;
    }

    st->position += (int64_t)len;
    st->next_offset = next_offset;
    st->index_entries = t.index_entries;
    st->time_entries = t.time_entries;
    st->bytes_since_index = t.bytes_since_index;
    st->max_timestamp = t.max_ts;
    st->offset_of_max = t.offset_of_max;
    st->last_time_timestamp = t.last_time_ts;
}

/* The end of step 3: the copy's batches (validated: st->batches of them) hold exactly
 * the `count` headers at `expect`, byte for byte; else ODK_CHANGED (odradek.h). */
static int append_expected(const uint8_t *d, size_t len, const uint8_t *expect, int64_t count,
                           odk_append_state *st)
{
    int64_t batches = st->batches;
    size_t pos = 0;
    for (int64_t i = 0; i < batches && i < count; i++) {
        const uint8_t *b = d + pos, *e = expect + (size_t)i * ODK_BATCH_HEADER_SIZE;
        if (memcmp(b, e, ODK_BATCH_HEADER_SIZE) != 0) {
            int64_t at = 0;
            while (b[at] == e[at])
                at++;
            return append_fail(st, ODK_CHANGED, i, (int64_t)pos, at, -1);
        }
        pos += (size_t)as_i32(load_be32(b + OFF_LENGTH)) + ODK_BATCH_OVERHEAD;
    }
    if (batches != count)   /* pos: past the batches both have (len when the copy has fewer) */
        return append_fail(st, ODK_CHANGED, batches < count ? batches : count, (int64_t)pos, count, batches);
    return ODK_OK;
}

/* Steps 3 and 4 of odk_append on the copy at d (dst + position); expect/count: the
 * expectation the call consumed (count <= 0: none). */
static int append_copied(uint8_t *d, size_t len, uint8_t *index, size_t index_cap, uint8_t *timeindex,
                         size_t time_cap, odk_append_state *st, track_state *t,
                         const uint8_t *expect, int64_t count)
{
    /* 3. validate the copy, then hold it to the headers the caller checked */
    int status = append_validate(d, len, index_cap, time_cap, st, t);
    if (status == ODK_OK && count > 0)
        status = append_expected(d, len, expect, count, st);
    if (status != ODK_OK) {
        memset(d, 0, len);
        return status;
    }
    /* 4. rewrite and index, on the trusted copy */
    append_commit(d, len, index, timeindex, st);
    return ODK_OK;
}

int odk_append(const uint8_t *src, size_t len, uint8_t *dst, size_t dst_size,
               uint8_t *index, size_t index_cap, uint8_t *timeindex, size_t time_cap,
               odk_append_state *st)
{
    track_state t;
    const uint8_t *expect = st->expect;
    int64_t count = st->expect_count;
    st->expect_count = 0;   /* consumed, whatever happens next */
    /* 1. refusals before copying */
    int status = append_refuse(len, dst_size, timeindex, index_cap, time_cap, st, &t);
    if (status != ODK_OK)
        return status;
    /* 2. the copy: the only read of src */
    uint8_t *d = dst + st->position;
    memcpy(d, src, len);
    return append_copied(d, len, index, index_cap, timeindex, time_cap, st, &t, expect, count);
}

int odk_append_in_place(size_t len, uint8_t *dst, size_t dst_size, uint8_t *index, size_t index_cap,
                        uint8_t *timeindex, size_t time_cap, odk_append_state *st)
{
    track_state t;
    const uint8_t *expect = st->expect;
    int64_t count = st->expect_count;
    st->expect_count = 0;   /* consumed, whatever happens next */
    int status = append_refuse(len, dst_size, timeindex, index_cap, time_cap, st, &t);
    if (status != ODK_OK) {
        /* the caller's copy is there (when it fitted): zero it, as a failed append does */
        if (st->position >= 0 && (uint64_t)st->position <= dst_size && len <= dst_size - (size_t)st->position)
            memset(dst + st->position, 0, len);
        return status;
    }
    return append_copied(dst + st->position, len, index, index_cap, timeindex, time_cap, st, &t,
                         expect, count);
}

/* Settings under which the batches are stored as they are (a follower's). */
static inline int stores_as_is(const odk_append_state *st)
{
    return st->assign == 0 && st->leader_epoch < 0 && st->append_time < 0;
}

int odk_append_check(const uint8_t *src, size_t len, size_t dst_size,
                     const uint8_t *timeindex, size_t index_cap, size_t time_cap,
                     odk_append_state *st)
{
    track_state t;
    st->expect_count = 0;   /* a follower's own buffer: no expectation, none left behind */
    if (!stores_as_is(st))
        return append_fail(st, ODK_BAD_STATE, 0, 0, 0, 0);
    int status = append_refuse(len, dst_size, timeindex, index_cap, time_cap, st, &t);
    if (status != ODK_OK)
        return status;
    return append_validate(src, len, index_cap, time_cap, st, &t);
}

int odk_append_commit(const uint8_t *src, size_t len, uint8_t *index, size_t index_cap,
                      uint8_t *timeindex, size_t time_cap, odk_append_state *st)
{
    /* a caller bug (not the batches odk_append_check passed) must not write outside
     * the indexes: walk the frames and count the entries first */
    st->expect_count = 0;
    int ok = stores_as_is(st) && st->status == ODK_OK && st->valid_bytes == (int64_t)len && len > 0 &&
             st->index_entries >= 0 && (uint64_t)st->index_entries <= index_cap &&
             st->time_entries >= 0 && (uint64_t)st->time_entries <= time_cap;
    if (ok) {
        track_state t;
        track_start(&t, st);
        t.last_time_ts = st->last_time_timestamp;
        t.last_time_rel = st->time_entries > 0
            ? (int64_t)load_be32(timeindex + (st->time_entries - 1) * ODK_TIMEINDEX_ENTRY_SIZE + 8) : -1;
        int64_t batches = 0;
        for (size_t pos = 0; ok && pos < len; batches++) {
            if (len - pos < ODK_BATCH_HEADER_SIZE) {
                ok = 0;
                break;
            }
            const uint8_t *b = src + pos;
            int64_t size = (int64_t)as_i32(load_be32(b + OFF_LENGTH)) + ODK_BATCH_OVERHEAD;
            ok = size >= ODK_BATCH_HEADER_SIZE && (uint64_t)size <= len - pos;
            if (ok)
                track(&t, st, st->position + (int64_t)pos,
                      as_i64(load_be64(b + OFF_BASE_OFFSET)) + as_i32(load_be32(b + OFF_LAST_DELTA)),
                      size, as_i64(load_be64(b + OFF_MAX_TS)), NULL, NULL, 0);
            pos += (size_t)size;
        }
        ok = ok && batches == st->batches && (uint64_t)t.index_entries <= index_cap &&
             (uint64_t)t.time_entries <= time_cap;
    }
    if (!ok)
        return append_fail(st, ODK_BAD_STATE, 0, 0, 0, 0);
    append_commit((uint8_t *)src, len, index, timeindex, st);   /* stores_as_is: no write to src */
    return ODK_OK;
}

/* ---- Prefault ahead of an appender ------------------------------------------------- */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define PREFAULT_QUEUE 16
/* Populated per madvise call: a request is split into steps this long, so one call
 * holds the kernel (page zeroing, the filesystem's block mapping) a quarter as long as
 * a whole 1 MiB request (dev box, ext4, fallocated file: ~0.05-0.6 ms a step, the most
 * on memory the VM never touched before; 0.5-2.5 ms a 1 MiB request). */
#define PREFAULT_STEP (256 * 1024)

static pthread_mutex_t pf_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pf_cond = PTHREAD_COND_INITIALIZER;
static struct { uint8_t *addr; size_t len; } pf_queue[PREFAULT_QUEUE];
static unsigned pf_head, pf_tail;      /* taken, posted (under pf_lock) */
static int pf_state;                   /* 0 not started, 1 running, 2 unavailable */

/* The thread runs SCHED_IDLE: it only uses a core nobody else wants. At normal
 * priority its populate (a core for milliseconds every ~0.6 s at 10k records/s on a
 * 2-core box) delayed the appender, producers and consumers it shares the cores with:
 * the millisecond end-to-end stalls after warm-up. Pages it has not populated by the
 * time the appender reaches them are faulted by the appender, as without the thread.
 * Lowering one's own policy needs no privilege; if it fails the thread runs as is. */
static void *prefault_main(void *arg)
{
    (void)arg;
    struct sched_param idle = {.sched_priority = 0};
    (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
    for (;;) {
        pthread_mutex_lock(&pf_lock);
        while (pf_head == pf_tail)
            pthread_cond_wait(&pf_cond, &pf_lock);
        uint8_t *addr = pf_queue[pf_head % PREFAULT_QUEUE].addr;
        size_t len = pf_queue[pf_head % PREFAULT_QUEUE].len;
        pf_head++;
        pthread_mutex_unlock(&pf_lock);
        for (size_t done = 0; done < len; done += PREFAULT_STEP) {
            size_t step = len - done < PREFAULT_STEP ? len - done : PREFAULT_STEP;
            if (madvise(addr + done, step, MADV_POPULATE_WRITE) != 0) {
                if (errno == EINVAL) {
                    pthread_mutex_lock(&pf_lock);
                    pf_state = 2;      /* an old kernel: stop offering */
                    pthread_mutex_unlock(&pf_lock);
                }
                break;                 /* unmapped, or a hole it cannot fill: leave the rest */
            }
        }
    }
    return NULL;
}

int odk_prefault_async(uint8_t *base, int64_t from, int64_t upto)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0 || from < 0 || upto <= from)
        return 1;
    uintptr_t start = ((uintptr_t)(base + from)) & ~(uintptr_t)(page - 1);
    uintptr_t end = (uintptr_t)(base + upto);
    int rc = 0;
    pthread_mutex_lock(&pf_lock);
    if (pf_state == 0) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        pf_state = pthread_create(&t, &attr, prefault_main, NULL) == 0 ? 1 : 2;
        pthread_attr_destroy(&attr);
    }
    if (pf_state != 1)
        rc = 2;
    else if (pf_tail - pf_head >= PREFAULT_QUEUE)
        rc = 1;
    else {
        pf_queue[pf_tail % PREFAULT_QUEUE].addr = (uint8_t *)start;
        pf_queue[pf_tail % PREFAULT_QUEUE].len = (size_t)(end - start);
        pf_tail++;
        pthread_cond_signal(&pf_cond);
    }
    pthread_mutex_unlock(&pf_lock);
    return rc;
}

/* ---- Batch header fields, for the other C files (odradek.h) --------------------------
 * Added for issue 11: odradek._hotpath's fetch decoder reads headers through this, so
 * the OFF_* offsets above stay the one C copy of the header layout. */

void odk_read_batch_header(const uint8_t *b, odk_batch_header *out)
{
    out->base_offset = as_i64(load_be64(b + OFF_BASE_OFFSET));
    out->batch_length = as_i32(load_be32(b + OFF_LENGTH));
    out->partition_leader_epoch = as_i32(load_be32(b + OFF_LEADER_EPOCH));
    out->magic = b[OFF_MAGIC] < 128 ? b[OFF_MAGIC] : b[OFF_MAGIC] - 256;
    out->crc = load_be32(b + OFF_CRC);
    out->attributes = as_i16(load_be16(b + OFF_ATTRIBUTES));
    out->last_offset_delta = as_i32(load_be32(b + OFF_LAST_DELTA));
    out->base_timestamp = as_i64(load_be64(b + OFF_BASE_TS));
    out->max_timestamp = as_i64(load_be64(b + OFF_MAX_TS));
    out->producer_id = as_i64(load_be64(b + OFF_PRODUCER_ID));
    out->producer_epoch = as_i16(load_be16(b + OFF_PRODUCER_EPOCH));
    out->base_sequence = as_i32(load_be32(b + OFF_BASE_SEQ));
    out->records_count = as_i32(load_be32(b + OFF_RECORDS));
}

uint32_t odk_batch_crc(const uint8_t *b, size_t size)
{
    return odk_crc32c(0, b + OFF_ATTRIBUTES, size - OFF_ATTRIBUTES);
}
