/*
 * odradek.h — the whole C API of odradek._native (built by _build.py with CFFI).
 *
 * Small, dependency-free C for the per-byte and per-batch hot loops; everything else
 * is Python. Every function here has a pure-Python twin in odradek/client/_native_ref.py
 * and the same tests run against both (set ODRADEK_PURE=1 to force the twin).
 *
 * Conventions
 *  - Buffers are (pointer, length) pairs; nothing is retained after a call returns.
 *  - Integers in the Kafka formats are big-endian on disk and on the wire.
 *  - CFFI releases the GIL around every call, so long scans do not stall other threads.
 *
 * Kafka v2 RecordBatch header (all big-endian; see client/records/FORMAT.md):
 *   off size field                  off size field
 *     0   8  baseOffset              35   8  maxTimestamp
 *     8   4  batchLength (= size-12) 43   8  producerId
 *    12   4  partitionLeaderEpoch    51   2  producerEpoch
 *    16   1  magic (= 2)             53   4  baseSequence
 *    17   4  crc (CRC-32C of 21..end)57   4  recordsCount
 *    21   2  attributes              61      records...
 *    23   4  lastOffsetDelta
 *    27   8  baseTimestamp
 *
 * Offset index entry (.index, 8 bytes):  relativeOffset u32 BE | position u32 BE
 * Time index entry (.timeindex, 12 bytes): timestamp i64 BE | relativeOffset u32 BE
 */
#ifndef ODRADEK_H
#define ODRADEK_H

#include <stddef.h>
#include <stdint.h>

#define ODK_BATCH_HEADER_SIZE   61  /* bytes before the first record */
#define ODK_BATCH_OVERHEAD      12  /* baseOffset + batchLength, not counted in batchLength */
#define ODK_INDEX_ENTRY_SIZE     8
#define ODK_TIMEINDEX_ENTRY_SIZE 12

/* ---- CRC-32C (Castagnoli), as Kafka's v2 batches use it ----------------------------
 * crc is the value returned by a previous call (0 to start), so a buffer can be
 * checksummed in pieces: odk_crc32c(odk_crc32c(0, a, n), b, m) == crc of a||b.
 * Check value: odk_crc32c(0, "123456789", 9) == 0xE3069283.
 */
uint32_t odk_crc32c(uint32_t crc, const uint8_t *buf, size_t len);   /* fastest available */
uint32_t odk_crc32c_sw(uint32_t crc, const uint8_t *buf, size_t len); /* table (slicing-by-8) */
int      odk_crc32c_hw_available(void);  /* 1 if odk_crc32c uses the SSE4.2 instruction */

/* ---- Sparse index search, straight over the mmap'd index bytes ----------------------
 * odk_index_lookup: slot of the last entry whose relativeOffset <= target, or -1 when
 *   the first entry is already past target (or entries == 0).
 * odk_timeindex_lookup: slot of the first entry whose timestamp >= target, or `entries`
 *   when none is. (A reader wanting "first offset with timestamp >= T" starts scanning
 *   the log at the entry before that slot, since unindexed batches sit in between.)
 * Both assume entries are sorted (they are, by construction); on unsorted input they
 * return some slot in range, never read out of bounds.
 */
int64_t odk_index_lookup(const uint8_t *index, size_t entries, uint32_t target);
int64_t odk_timeindex_lookup(const uint8_t *index, size_t entries, int64_t target);

/* ---- Batch scan ----------------------------------------------------------------------
 * Walks a buffer of concatenated v2 batches from its start and validates each one:
 *   - 12 bytes of baseOffset + batchLength present, else ODK_TRUNCATED
 *   - batchLength >= ODK_BATCH_HEADER_SIZE - 12 and <= max_batch_size - 12
 *     (max_batch_size <= 0: no limit), else ODK_BAD_LENGTH
 *   - the whole batch present, else ODK_TRUNCATED
 *   - magic == 2, else ODK_BAD_MAGIC
 *   - lastOffsetDelta >= 0 and recordsCount >= 0, else ODK_BAD_LENGTH
 *     (expected 0, found the smaller of the two)
 *   - lastOffset + 1 = baseOffset + lastOffsetDelta + 1 fits in int64 (so the next
 *     offset is representable), else ODK_BAD_LENGTH (expected INT64_MAX - 1 - baseOffset,
 *     the largest lastOffsetDelta allowed; found lastOffsetDelta)
 *   - CRC-32C of bytes 21..end equals the crc field, else ODK_BAD_CRC
 *   - when check_offsets: baseOffset >= next_offset, where next_offset starts at
 *     min_offset and becomes lastOffset + 1 after each batch, else ODK_BAD_OFFSET
 * It stops at the first failure. The result says how many batches and bytes were valid
 * (the prefix that recovery keeps), and, with status != ODK_OK, where it stopped.
 * A zero-filled tail (preallocated or torn) reads as baseOffset 0, batchLength 0:
 * ODK_BAD_LENGTH at that position.
 *
 * infos (may be NULL, cap 0): filled with one entry per valid batch, up to cap; when
 * cap is reached the scan stops with ODK_MORE after that many batches (call again from
 * valid_bytes to go on). ODK_MORE only when bytes remain: a buffer holding exactly cap
 * batches is ODK_OK. infos == NULL is taken as cap 0.
 * expected and found are 0 for ODK_OK and ODK_MORE; max_timestamp starts at -1, so it
 * stays -1 when every maxTimestamp is negative (Kafka's -1 = no timestamp).
 */
enum odk_status {
    ODK_OK = 0,          /* the whole buffer is valid batches */
    ODK_TRUNCATED = 1,   /* the buffer ends inside a batch (a torn tail) */
    ODK_BAD_LENGTH = 2,  /* batchLength, lastOffsetDelta or recordsCount impossible */
    ODK_BAD_MAGIC = 3,   /* magic byte is not 2 */
    ODK_BAD_CRC = 4,     /* CRC-32C mismatch */
    ODK_BAD_OFFSET = 5,  /* baseOffset goes backwards (check_offsets only) */
    ODK_MORE = 6         /* infos array full; not an error */
};

typedef struct odk_batch_info {
    int64_t position;        /* byte position of the batch in the scanned buffer */
    int64_t base_offset;
    int64_t last_offset;     /* base_offset + lastOffsetDelta */
    int64_t base_timestamp;
    int64_t max_timestamp;
    int64_t producer_id;
    int32_t size;            /* whole batch: batchLength + 12 */
    int32_t records;         /* recordsCount */
    int32_t base_sequence;
    int32_t leader_epoch;    /* partitionLeaderEpoch */
    int16_t producer_epoch;
    int16_t attributes;
    uint32_t crc;
} odk_batch_info;

typedef struct odk_scan_result {
    int32_t status;          /* enum odk_status */
    int64_t batches;         /* valid batches scanned */
    int64_t valid_bytes;     /* bytes of those batches: the valid prefix */
    int64_t first_offset;    /* baseOffset of the first valid batch, -1 if none */
    int64_t last_offset;     /* lastOffset of the last valid batch, -1 if none */
    int64_t max_timestamp;   /* max of maxTimestamp over valid batches, -1 if none */
    int64_t records;         /* sum of recordsCount over valid batches */
    /* on failure: what was expected and found at position valid_bytes */
    int64_t expected;        /* e.g. the CRC computed, the minimum offset, magic 2 */
    int64_t found;           /* e.g. the CRC stored, the offset found, the magic found */
} odk_scan_result;

int odk_scan_batches(const uint8_t *buf, size_t len, int64_t max_batch_size,
                     int check_offsets, int64_t min_offset,
                     odk_batch_info *infos, size_t cap, odk_scan_result *out);
/* returns out->status */

#endif
