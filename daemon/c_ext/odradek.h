/*
 * odradek.h — the whole C API of odradek._native (built by _build.py with CFFI).
 *
 * Small, dependency-free C for the per-byte and per-batch hot loops; everything else
 * is Python. Every function here has a pure-Python twin, and the same tests run against
 * both (set ODRADEK_PURE=1 to force the twins): CRC-32C, the batch scan and the record
 * decode in client/_native_ref.py; the index lookups and the fused append, which only
 * the daemon's storage uses, in daemon/storage/_native_ref.py.
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

/* odk_crc32c picks, by length and CPU, one of these hardware paths (crc32c.c explains
 * them). odk_crc32c_via runs the named one, so tests cover every path on any CPU that
 * has it: it sets *out to the CRC and returns 1, or returns 0 (and leaves *out) when the
 * CPU lacks the path's instructions. Buffers too short for a path take the one chain. */
enum odk_crc_path {
    ODK_CRC_ONE_CHAIN,        /* SSE4.2 crc32, one dependency chain */
    ODK_CRC_INTERLEAVED,      /* three crc32 chains, combined with PCLMULQDQ */
    ODK_CRC_FOLD,             /* AVX-512 VPCLMULQDQ folding */
};
int odk_crc32c_via(int path, uint32_t crc, const uint8_t *buf, size_t len, uint32_t *out);

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

/* int64_t odk_walk_prefixes(buf, len, buf_pos, pos, start, end, upper, max_bytes,
 *                           at_least_one, max_batches)
 * The gateway's walk of whole batches in a segment file by their prefixes alone
 * (baseOffset:int64, batchLength:int32, big-endian; no CRC, no other field): buf holds
 * the file's bytes from file position buf_pos (len of them); the walk goes from file
 * position pos (>= buf_pos) and returns the position where it stops:
 *   - pos >= end (the readable extent), or
 *   - the prefix at pos is not whole within buf (the caller reads more and walks on), or
 *   - the batch at pos has baseOffset >= upper, a negative batchLength, ends past end,
 *     or would end more than max_bytes past start unless it is the first (pos == start)
 *     and at_least_one (KIP-74), or
 *   - max_batches batches were taken.
 * The caller tells the cases apart: a prefix at the result that is whole in buf is a
 * stop. Reads only buf[0, len); no input makes it loop more than max_batches times.
 * Pure-Python twin: client/_native_ref.py walk_prefixes.
 */
int64_t odk_walk_prefixes(const uint8_t *buf, size_t len, int64_t buf_pos, int64_t pos,
                          int64_t start, int64_t end, int64_t upper, int64_t max_bytes,
                          int at_least_one, int64_t max_batches);

/* odk_parse_produce_one (kafka_request.c, which has the byte layout): a Kafka Produce
 * request's frame body (the bytes after its size) read without kio, when it has the
 * shape the gateway serves on its lone-request path: api key 0, a version within
 * [min_version, max_version] (and >= 3), no tagged fields, exactly one topic with
 * exactly one partition, and records that are not null. Returns 0 with out filled, or
 * ODK_PRODUCE_OTHER for any other frame, well-formed or not (the caller decodes it the
 * general way, which serves or refuses it). Positions are offsets into frame; on 0 they
 * lie within it. Reads only frame[0, len).
 * Pure-Python twin: client/_native_ref.py parse_produce_one.
 */
#define ODK_PRODUCE_OTHER 1
typedef struct {
    int32_t api_version;
    int32_t correlation_id;
    int32_t transactional;   /* 1: a transactional_id (even ""), 0: null */
    int32_t acks;
    int32_t timeout_ms;
    int32_t partition;
    int64_t topic_start;     /* the topic's name (UTF-8), or from v13 its id (16 bytes) */
    int64_t topic_len;
    int64_t records_start;   /* the partition's records (one batch, if the client is right) */
    int64_t records_len;
} odk_produce_one;

int odk_parse_produce_one(const uint8_t *frame, size_t len, int32_t min_version, int32_t max_version,
                          odk_produce_one *out);

/* =====================================================================================
 * Shared memory (shm.c): atomics, futexes, and the three structures the broker's data
 * plane maps into several processes. Byte tables, ordering rules and the crash story:
 * client/shm/LAYOUT.md; Python classes over these: odradek.client.shm.
 *
 * Conventions of this section
 *  - Shared memory is a memfd mapped MAP_SHARED by every party; fields are native
 *    endian (little-endian on every host odradek supports: x86-64, aarch64) because the
 *    bytes never leave the machine.
 *  - "base" is the start of a mapping, "off" a byte offset into it. An atomic field at
 *    off must be aligned to its size (the Python layer checks); misaligned is undefined.
 *  - A peer may be killed at any instant and may be buggy or hostile: every function
 *    that reads a field a peer writes validates it before using it as an index, so no
 *    contents of shared memory can make these functions read or write out of bounds.
 *    Sizes (capacity, slots) are read once at attach, checked against the mapping
 *    size, and kept in process-local memory; the copies in shared memory are not
 *    trusted afterwards.
 *  - No function here holds a lock. Waiting is FUTEX_WAIT on a shared (not PRIVATE)
 *    futex, with a relative CLOCK_MONOTONIC timeout in nanoseconds (< 0: no timeout).
 *    No waker ever clears state a sleeper relies on (LAYOUT.md, "Waiting"): a word
 *    several parties write (doorbell counter) or a word many parties sleep on
 *    (partition state seq) is its own futex word and every update is followed by
 *    FUTEX_WAKE; a ring's waiter flags are written only by their sleeper.
 *  - Return values: functions returning int64_t give an offset (>= 0) or minus an
 *    ODK_SHM_* status; functions returning int give an ODK_SHM_* status (0 = OK),
 *    except the waits (documented at each) and the raw futex calls.
 * ===================================================================================== */

/* Status codes of the shm functions (returned as is, or negated where noted). */
#define ODK_SHM_OK             0
#define ODK_SHM_EMPTY          1  /* ring: no committed entry to read */
#define ODK_SHM_FULL           2  /* ring: not enough free space for the entry now */
#define ODK_SHM_TOO_BIG        3  /* ring: entry larger than max payload (capacity/2 - 8) */
#define ODK_SHM_MISUSE         4  /* call order broken: commit without reserve, ... */
#define ODK_SHM_CORRUPT        5  /* a peer wrote an impossible cursor or entry header */
#define ODK_SHM_TORN           6  /* seqlock: retries exhausted (writer died mid-update?) */
#define ODK_SHM_NOT_YET        7  /* find: no batch at or after this offset appended yet */
#define ODK_SHM_NOT_IN_WINDOW  8  /* find: offset older than the descriptor window */
#define ODK_SHM_BAD_LAYOUT     9  /* attach: wrong magic, version, or sizes */

/* ---- Atomics on shared memory ------------------------------------------------------
 * Loads are acquire, stores release, read-modify-writes sequentially consistent.
 * fetch_add returns the previous value. cas stores desired if the field holds expected
 * and returns the value it found (success iff that equals expected).
 */
uint64_t odk_atomic_load_u64(const uint8_t *base, size_t off);
void     odk_atomic_store_u64(uint8_t *base, size_t off, uint64_t value);
uint64_t odk_atomic_fetch_add_u64(uint8_t *base, size_t off, uint64_t delta);
uint64_t odk_atomic_cas_u64(uint8_t *base, size_t off, uint64_t expected, uint64_t desired);
uint32_t odk_atomic_load_u32(const uint8_t *base, size_t off);
void     odk_atomic_store_u32(uint8_t *base, size_t off, uint32_t value);
uint32_t odk_atomic_fetch_add_u32(uint8_t *base, size_t off, uint32_t delta);
uint32_t odk_atomic_cas_u32(uint8_t *base, size_t off, uint32_t expected, uint32_t desired);

/* ---- Futex (shared: works across processes mapping the same memfd) -----------------
 * odk_futex_wait: sleeps while *addr == expected, up to timeout_ns (< 0: forever).
 *   Returns 0 woken (or spuriously), 1 timed out, 2 *addr != expected on entry (EAGAIN),
 *   or -errno (-EINTR when a signal arrived: the caller re-checks and waits again).
 *   Works on a read-only mapping (FUTEX_WAIT only reads the word).
 * odk_futex_wake: wakes up to n sleepers on addr; returns how many, or -errno.
 * odk_futex_wait_any: sleeps until some *words[i] != seen[i] (one futex_waitv(2), Linux
 *   5.16+, over n <= ODK_WAIT_MANY_MAX words, each in a MAP_SHARED mapping, read-only
 *   ones included). Returns 1 if a word differs on return, 0 (timed out or a signal:
 *   the caller loops to its deadline), -EINVAL for a bad n. Without futex_waitv (ENOSYS)
 *   it sleeps on words[0] for at most 1 ms and returns: a bounded poll, only on kernels
 *   older than 5.16. A wake-up on any of the words wakes it: the wakers of each word
 *   follow that word's protocol (LAYOUT.md).
 */
#define ODK_WAIT_MANY_MAX 128
int odk_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns);
int odk_futex_wake(uint32_t *addr, int n);
int odk_futex_wait_any(uint32_t *const *words, const uint32_t *seen, uint32_t n,
                       int64_t timeout_ns);
/* odk_futex_spin_wait_any: odk_futex_wait_any after a spin: for up to spin_ns (capped
 *   at ODK_SPIN_MAX_NS and at timeout_ns when that is >= 0) it re-reads the words, with a
 *   pause instruction between reads, and returns 1 as soon as one differs, without a
 *   system call; then it sleeps as odk_futex_wait_any for the time left. *spun_ns (if
 *   not NULL) gets how long it spun (0 when a word differed on entry or spin_ns <= 0).
 *   The spin stops early when the spinner lost its CPU meanwhile (two of its clock
 *   reads, normally a microsecond apart, more than ODK_SPIN_PREEMPTED_NS apart): the
 *   CPU is contended and spinning on would only take it from the process it waits for;
 *   *spun_ns is then the time spun, negated. Same results as odk_futex_wait_any. The
 *   spin is bounded: an idle caller passes 0 (waiting.py's Spinner does), so it costs
 *   no CPU. Releasing the GIL around it is the caller's business (CFFI does).
 */
#define ODK_SPIN_MAX_NS 1000000
#define ODK_SPIN_PREEMPTED_NS 20000
int odk_futex_spin_wait_any(uint32_t *const *words, const uint32_t *seen, uint32_t n,
                            int64_t spin_ns, int64_t timeout_ns, int64_t *spun_ns);

/* ---- Doorbell: a counter many processes ring and one (or more) sleeps on -----------
 *   off size type field
 *     0   4  u32  magic (1145783375, the bytes "ODKD")
 *     4   4  u32  version (2)
 *    64   4  u32  counter: +1 per ring(), wraps; the futex word
 * odk_doorbell_ring: counter += 1 (seq_cst), then FUTEX_WAKE all, always (a waiter flag
 *   any ringer could clear is what lost wake-ups: LAYOUT.md, "Waiting").
 * odk_doorbell_wait: returns 1 if the counter differs from seen on return, else 0 (timed
 *   out, or woken by a signal); the caller loops until its own deadline.
 * Use: seen = value(); look at every source of work; nothing? wait(seen, timeout).
 */
#define ODK_DOORBELL_MAGIC       1145783375
#define ODK_DOORBELL_VERSION     2
#define ODK_DOORBELL_OFF_MAGIC   0
#define ODK_DOORBELL_OFF_VERSION 4
#define ODK_DOORBELL_OFF_COUNTER 64
#define ODK_DOORBELL_SIZE        4096

int      odk_doorbell_format(uint8_t *base, size_t size);      /* ODK_SHM_OK or BAD_LAYOUT */
int      odk_doorbell_check(const uint8_t *base, size_t size); /* at attach */
uint32_t odk_doorbell_value(const uint8_t *base);
void     odk_doorbell_ring(uint8_t *base);
int      odk_doorbell_wait(uint8_t *base, uint32_t seen, int64_t timeout_ns);

/* ---- SPSC byte ring: one writer process, one reader process -----------------------
 * Header (the data area starts at ODK_RING_HEADER_SIZE, one page in):
 *   off size type field                written by
 *     0   4  u32  magic (1380664399, "ODKR")   creator
 *     4   4  u32  version (2)                  creator
 *     8   8  u64  capacity: data bytes, 2^k    creator
 *    16   8  u64  data_offset (= 4096)         creator
 *    64   8  u64  tail: bytes committed, ever  writer (release); reader's futex: low half
 *    72   4  u32  data_waiter                  reader only: 1 around its sleep
 *   128   8  u64  head: bytes released, ever   reader (release); writer's futex: low half
 *   136   4  u32  space_waiter                 writer only: 1 around its sleep
 * An entry at data[pos % capacity]: u32 length | u32 tag | payload, padded to 8 bytes.
 * An entry never straddles the end: if it does not fit before it, the writer puts a
 * wrap marker (length ODK_RING_WRAP) there and the entry starts at data[0]. Entries,
 * markers and padding all become visible at once when tail is stored (release).
 * Max payload: capacity / 2 - 8 (so an entry always fits once the ring drains).
 *
 * odk_ring is the process-local cursor of one side (or both, when one process plays
 * both roles); allocate it in private memory and fill it with odk_ring_init. The
 * writer's fields and the reader's fields are disjoint, so one writer thread and one
 * reader thread may share one odk_ring.
 *
 * Writer: odk_ring_reserve -> offset (from base) of len payload bytes to fill, or
 *   -FULL / -TOO_BIG / -MISUSE (a reservation is pending); odk_ring_commit(len'), with
 *   len' <= the reserved len (the entry may shrink), publishes it; odk_ring_cancel drops
 *   it; odk_ring_write = reserve + memcpy + commit. Commit wakes the reader if
 *   data_waiter is set and, if r->doorbell is set, rings that doorbell.
 *   odk_ring_write_unrung is odk_ring_write without the doorbell: a writer that puts
 *   several entries in a row (into one ring or several behind one doorbell) rings it
 *   once after the last with odk_ring_ring_doorbell, so a reader asleep on the doorbell
 *   is woken once for all of them, not once for each (a FUTEX_WAKE that finds a
 *   sleeper costs ~20 us on a VM). Until it is rung, such a reader may not see them, nor
 *   free their room: ring it before waiting for room (odk_ring_wait_writable). A reader that
 *   sleeps on several rings at once (odk_futex_wait_any) waits on each tail's low half.
 * Reader: odk_ring_peek -> offset of the next entry's payload (entry_len, entry_tag
 *   set in r), or -EMPTY / -CORRUPT; peek again returns the same entry until
 *   odk_ring_release, which frees its space and wakes a writer waiting for space.
 *   Or odk_ring_take: done with the entry, the next peek returns the next one, but its
 *   space stays held (the shared head does not move) until odk_ring_release_to(pos)
 *   with pos = r->head after that take: a reader killed meanwhile leaves the held
 *   entries to the next reader (a leader holding acks=all produces until they are
 *   replicated). release_to(pos) needs shared head <= pos <= r->head, else MISUSE.
 * Waits return 1 when ready (readable / room for len), 0 when not (timed out, woken
 *   by a signal, or spuriously), or -TOO_BIG.
 */
#define ODK_RING_MAGIC            1380664399
#define ODK_RING_VERSION          2
#define ODK_RING_OFF_MAGIC        0
#define ODK_RING_OFF_VERSION      4
#define ODK_RING_OFF_CAPACITY     8
#define ODK_RING_OFF_DATA_OFFSET  16
#define ODK_RING_OFF_TAIL         64
#define ODK_RING_OFF_DATA_WAITER  72
#define ODK_RING_OFF_HEAD         128
#define ODK_RING_OFF_SPACE_WAITER 136
#define ODK_RING_HEADER_SIZE      4096
#define ODK_RING_ENTRY_HEADER     8
#define ODK_RING_ALIGN            8
#define ODK_RING_WRAP             4294967295
#define ODK_RING_MIN_CAPACITY     64
#define ODK_RING_MAX_CAPACITY     1073741824

typedef struct odk_ring {
    uint8_t *base;           /* the mapping */
    uint8_t *doorbell;       /* a doorbell rung after each commit (not by write_unrung), or NULL */
    uint64_t capacity;       /* checked at init; never re-read from shared memory */
    /* writer side */
    uint64_t tail;           /* committed tail (this process's copy) */
    uint64_t head_seen;      /* last head loaded; reloaded only when space looks short */
    uint64_t pending_start;  /* reserved entry: ring position of its header */
    uint64_t pending_end;    /* tail once it is committed */
    uint32_t pending_len;
    uint32_t pending;        /* 1 while a reservation is open */
    /* reader side */
    uint64_t head;           /* released head (this process's copy) */
    uint64_t tail_seen;      /* last tail loaded */
    uint64_t entry_end;      /* head after the peeked entry is released */
    int64_t  entry_offset;   /* peeked payload: offset from base */
    uint32_t entry_len;
    uint32_t entry_tag;
    uint32_t entry_pending;  /* 1 while an entry is peeked and not released */
    uint32_t reserved;
} odk_ring;

int     odk_ring_format(uint8_t *base, size_t size, uint64_t capacity);
int     odk_ring_init(odk_ring *r, uint8_t *base, size_t size);  /* OK, BAD_LAYOUT, CORRUPT */
int64_t odk_ring_reserve(odk_ring *r, uint32_t len, uint32_t tag);
int     odk_ring_commit(odk_ring *r, uint32_t len);
int     odk_ring_cancel(odk_ring *r);
int     odk_ring_write(odk_ring *r, const uint8_t *data, uint32_t len, uint32_t tag);
int     odk_ring_write_unrung(odk_ring *r, const uint8_t *data, uint32_t len, uint32_t tag);
void    odk_ring_ring_doorbell(odk_ring *r);
int     odk_ring_wait_writable(odk_ring *r, uint32_t len, int64_t timeout_ns);
int64_t odk_ring_peek(odk_ring *r);
int     odk_ring_release(odk_ring *r);
int     odk_ring_take(odk_ring *r);
int     odk_ring_release_to(odk_ring *r, uint64_t pos);
int     odk_ring_wait_readable(odk_ring *r, int64_t timeout_ns);

/* ---- Partition state: one writer (the leader worker), many readers ------------------
 * One memfd (readers map it read-only):
 *   off size type field                  off size type field
 *     0   4  u32  magic (1347109967,"ODKP")  72   8  i64  log_start_offset
 *     4   4  u32  version (1)                80   8  i64  high_watermark
 *     8   4  u32  slots                      88   8  i64  log_end_offset
 *    12   4  u32  slot_size (= 64)           96   8  i64  active_segment_base
 *    16   8  u64  desc_offset (= 4096)      104   8  i64  window_first (descriptor index)
 *    64   4  u32  seq: seqlock, odd while   112   8  i64  window_end (descriptors appended)
 *                 writing; change counter;  120   4  i32  leader_epoch
 *                 readers' futex word       124   4  u32  flags (1 = fenced)
 *   4096 + 64*k: descriptor slot k (index i lives in slot i % slots):
 *     0 u64 stamp (i + 1 once written, 0 while being written) | 8 i64 base_offset |
 *    16 i64 last_offset | 24 i64 segment_base | 32 i64 position | 40 i64 max_timestamp |
 *    48 i32 size | 52..64 reserved
 * The live window is indices [max(window_first, window_end - (slots - 1)), window_end):
 * the last slots-1 batches; the slot the next append overwrites is never in it.
 *
 * odk_pstate_read: a consistent snapshot (seq even and unchanged around the copy), or
 *   ODK_SHM_TORN after max_retries tries (spinning first, then sched_yield between).
 * odk_pstate_publish: the writer's whole state in one seqlock write (st->change is
 *   ignored); returns the new seq, then FUTEX_WAKEs every reader asleep on seq (always:
 *   readers cannot leave a mark the writer could trust). Also ends a dead writer's
 *   half update (seq odd).
 * odk_pstate_append: writes descriptor st->window_end, then window_end += 1 and
 *   log_end_offset = last_offset + 1 in *st, then publishes *st; returns the new seq.
 * odk_pstate_append_run: odk_pstate_append of n batches of one segment (descs: their
 *   base_offset, last_offset, position, max_timestamp and size; segment_base for all)
 *   with one wake-up: for n > 1 a first publish (no wake) moves window_first past the
 *   slots the run overwrites, then the n descriptors are written and *st published
 *   with window_end += n and log_end_offset = the last one's last_offset + 1. A leader's
 *   run of batches appended with one write (daemon/worker/leader.py). n above slots - 1
 *   is cut to it.
 * odk_pstate_wait: 1 if seq != last_seen on return, else 0 (timed out or signal). Over
 *   several partitions: odk_futex_wait_any on their seq words.
 * odk_pstate_find: the first live descriptor with last_offset >= offset, into *out:
 *   ODK_SHM_OK; ODK_SHM_NOT_YET (no such batch appended yet); ODK_SHM_NOT_IN_WINDOW
 *   (offset is before the window's first batch: ask the broker); ODK_SHM_TORN.
 */
#define ODK_PSTATE_MAGIC           1347109967
#define ODK_PSTATE_VERSION         1
#define ODK_PSTATE_OFF_MAGIC       0
#define ODK_PSTATE_OFF_VERSION     4
#define ODK_PSTATE_OFF_SLOTS       8
#define ODK_PSTATE_OFF_SLOT_SIZE   12
#define ODK_PSTATE_OFF_DESC_OFFSET 16
#define ODK_PSTATE_OFF_SEQ         64
#define ODK_PSTATE_OFF_LOG_START   72
#define ODK_PSTATE_OFF_HIGH_WATERMARK 80
#define ODK_PSTATE_OFF_LOG_END     88
#define ODK_PSTATE_OFF_ACTIVE_SEGMENT 96
#define ODK_PSTATE_OFF_WINDOW_FIRST 104
#define ODK_PSTATE_OFF_WINDOW_END  112
#define ODK_PSTATE_OFF_LEADER_EPOCH 120
#define ODK_PSTATE_OFF_FLAGS       124
#define ODK_PSTATE_HEADER_SIZE     4096
#define ODK_PSTATE_FLAG_FENCED     1
#define ODK_PSTATE_MIN_SLOTS       2
#define ODK_PSTATE_MAX_SLOTS       1048576
#define ODK_DESC_SIZE              64
#define ODK_DESC_OFF_STAMP         0
#define ODK_DESC_OFF_BASE_OFFSET   8
#define ODK_DESC_OFF_LAST_OFFSET   16
#define ODK_DESC_OFF_SEGMENT_BASE  24
#define ODK_DESC_OFF_POSITION      32
#define ODK_DESC_OFF_MAX_TIMESTAMP 40
#define ODK_DESC_OFF_SIZE          48
#define ODK_SEQLOCK_SPINS          64     /* tries before sched_yield between tries */
#define ODK_SEQLOCK_RETRIES        10000  /* default max_retries: ~1-10 ms in all */

typedef struct odk_pstate {      /* a snapshot, in process-local memory */
    int64_t  log_start_offset;
    int64_t  high_watermark;
    int64_t  log_end_offset;
    int64_t  active_segment_base;
    int64_t  window_first;
    int64_t  window_end;
    int32_t  leader_epoch;
    uint32_t flags;
    uint32_t change;             /* the (even) seq this snapshot was read at */
    uint32_t reserved;
} odk_pstate;

typedef struct odk_batch_desc {  /* one descriptor, in process-local memory */
    int64_t base_offset;
    int64_t last_offset;
    int64_t segment_base;
    int64_t position;
    int64_t max_timestamp;
    int32_t size;
    int32_t reserved;
} odk_batch_desc;

int      odk_pstate_format(uint8_t *base, size_t size, uint32_t slots);
int      odk_pstate_check(const uint8_t *base, size_t size, uint32_t *slots);
int      odk_pstate_read(const uint8_t *base, odk_pstate *out, uint32_t max_retries);
uint32_t odk_pstate_publish(uint8_t *base, const odk_pstate *st);
uint32_t odk_pstate_append(uint8_t *base, uint32_t slots, odk_pstate *st,
                           int64_t base_offset, int64_t last_offset, int64_t segment_base,
                           int64_t position, int32_t size, int64_t max_timestamp);
uint32_t odk_pstate_append_run(uint8_t *base, uint32_t slots, odk_pstate *st, int64_t segment_base,
                               const odk_batch_desc *descs, uint32_t n);
int      odk_pstate_wait(const uint8_t *base, uint32_t last_seen, int64_t timeout_ns);
int      odk_pstate_find(const uint8_t *base, uint32_t slots, int64_t offset,
                         uint32_t max_retries, odk_batch_desc *out);

/* =====================================================================================
 * Fused append (odradek.c): one call per PartitionLog append on the active segment.
 * Copies, validates, rewrites and indexes a buffer of v2 batches exactly as
 * LogSegment.append/append_one/_track and PartitionLog.append did in Python, so the
 * .log, .index and .timeindex bytes are identical to what that code writes.
 *
 * int odk_append(src, len, dst, dst_size, index, index_cap, timeindex, time_cap, st)
 *   src/len      the producer's (or leader's) batches. Possibly shared memory another
 *                process can still change: it is read exactly once, by the memcpy;
 *                everything after looks only at the copy.
 *   dst          the segment's mapping (dst_size bytes: its capacity); the copy goes to
 *                dst + st->position.
 *   index        the mapped .index (index_cap entries of ODK_INDEX_ENTRY_SIZE fit);
 *   timeindex    the mapped .timeindex (time_cap entries of ODK_TIMEINDEX_ENTRY_SIZE).
 *   st           configuration, the segment's state (in/out) and the results.
 * Returns st->status.
 *
 * Order of work:
 *  1. Refusals before copying (nothing is written): ODK_BAD_STATE, ODK_EMPTY,
 *     ODK_NO_SPACE, ODK_INDEX_FULL (either index already full: the log must roll, as
 *     LogSegment.fits says), ODK_OUT_OF_RANGE (position + len > 2^32).
 *  2. memcpy(dst + position, src, len).
 *  3. Validate the copy, batch by batch, exactly as odk_scan_batches(copy, len, 0,
 *     !assign, next_offset) does (statuses 1-5, same expected/found). Then, in batch
 *     order and for each batch in this order, PartitionLog.append's leader checks:
 *     size > max_batch_size (> 0) -> ODK_TOO_LARGE (always); when assign:
 *     recordsCount < 1 or lastOffsetDelta != recordsCount - 1 -> ODK_BAD_RECORDS, codec
 *     (attributes & 7) above 4 (0-4: none, gzip, snappy, lz4, zstd) -> ODK_BAD_CODEC,
 *     an uncompressed batch whose records odk_decode_records refuses (checked on the
 *     copy, without rows) -> ODK_BAD_RECORD_BYTES, then, with check_timestamps, one
 *     with a record timestamp out of range -> ODK_BAD_TIMESTAMP (the smallest is
 *     checked first); compressed batches' records are the caller's to check (it
 *     decompresses them first). A scan failure
 *     anywhere wins over a leader-check failure (Python scanned the whole buffer first).
 *     Then ODK_OUT_OF_RANGE if an offset as stored falls outside [segment_base,
 *     segment_base + 2^32 - 1] (the indexes' u32 relativeOffset) or overflows int64,
 *     then ODK_INDEX_FULL if the entries this append adds (computed exactly, by the
 *     _track rules below) exceed the free entries of either index.
 *     Then, when st->expect_count > 0 (the caller checked the batches' headers before
 *     the copy, where another process could still change them: a producer's ring),
 *     the expectation: the copy must hold exactly expect_count batches and each
 *     batch's ODK_BATCH_HEADER_SIZE header bytes, as copied (before step 4's
 *     rewrites), must equal the expected ones (st->expect, expect_count consecutive
 *     headers), else ODK_CHANGED: the producer rewrote its entry during the append.
 *     On any of these failures the copied bytes are zeroed again (so no valid-looking
 *     stale batch sits past the data size), the in/out fields are unchanged, and
 *     batches/valid_bytes/expected/found say where and why (positions relative to src).
 *  4. On success, for each batch at pos (in dst): baseOffset = next_offset when assign
 *     (dense: next_offset = lastOffset + 1); partitionLeaderEpoch = leader_epoch when
 *     >= 0; when append_time >= 0: attributes |= 8 (LogAppendTime), maxTimestamp =
 *     append_time and the CRC recomputed. Then LogSegment._track(pos, last, size, ts)
 *     with ts the stored maxTimestamp:
 *         if ts > max_timestamp: max_timestamp = ts, offset_of_max = last
 *         if bytes_since_index > index_interval:
 *             index entry (last - segment_base, pos)
 *             time entry (max_timestamp, offset_of_max - segment_base) if max_timestamp
 *                 > the last time entry's timestamp (-1 when none) and, when there is
 *                 one, offset_of_max > its offset (TimeIndex.maybe_append)
 *             bytes_since_index = 0
 *         bytes_since_index += size
 *     and the in/out fields are advanced (position += len, next_offset = last + 1).
 *
 * The last time-index entry is read from the timeindex buffer (entry time_entries - 1),
 * so the caller keeps no copy of it; last_time_timestamp reports it after the call.
 * Divergence from the Python it replaces, only where that Python would have failed
 * half-way through an append: an append that needs more index entries than are free
 * is refused whole (Python raised, or skipped time entries, mid-append), and so is one
 * whose offsets do not fit the index's u32 (Python raised at the next index entry).
 */
enum odk_append_status {   /* odk_append's own statuses; 0-5 are odk_status's */
    ODK_TOO_LARGE = 7,     /* a batch > max_batch_size: MessageTooLarge. expected =
                              max_batch_size, found = the batch's size */
    ODK_BAD_RECORDS = 8,   /* assign: recordsCount < 1 or lastOffsetDelta != records-1:
                              InvalidRecord. expected = recordsCount, found = delta */
    ODK_BAD_CODEC = 9,     /* assign: codec id 5-7, no codec: UnsupportedCompression.
                              expected = 4 (the largest codec, zstd), found = codec */
    ODK_EMPTY = 10,        /* len == 0: no batches to append (CorruptRecord) */
    ODK_NO_SPACE = 11,     /* position + len > dst_size. expected = free bytes,
                              found = len: roll (or map a larger segment) and retry */
    ODK_INDEX_FULL = 12,   /* an index lacks the entries this append needs: roll and
                              retry. expected = free entries, found = entries needed
                              (1 when refused up front, before the walk) */
    ODK_OUT_OF_RANGE = 13, /* a position or relative offset would not fit the indexes'
                              u32 fields (expected = the limit, found = the value):
                              roll and retry */
    ODK_BAD_STATE = 14,    /* st inconsistent with the buffers (position outside dst,
                              entries outside the index capacity): a caller bug */
    /* 15-17: odk_decode_records' own (enum odk_decode_status) */
    ODK_CHANGED = 18,      /* a batch's header in the copy is not the one the caller
                              checked (st->expect): the producer rewrote its entry
                              during the append (CorruptRecord). batches/valid_bytes:
                              the batch that differs. expected = the byte (0-60) of
                              its header where the copy first differs, found = -1; or,
                              when the copy holds another number of batches, expected =
                              expect_count, found = the copy's batches (batches,
                              valid_bytes: the first batch missing or extra) */
    ODK_BAD_RECORD_BYTES = 19, /* assign: an uncompressed batch whose records do not
                              decode (odk_decode_records refuses them: a record's
                              framing, a varint, recordsCount against the records
                              present): InvalidRecord, as Kafka's LogValidator refuses
                              a batch it cannot iterate. expected = the index of the
                              record refused (0 for recordsCount), found =
                              odk_decode_records' status (1, 15, 16, 17) */
    ODK_BAD_TIMESTAMP = 20     /* check_timestamps: an uncompressed batch with a record
                              timestamp outside [now_ms - timestamp_before_ms, now_ms +
                              timestamp_after_ms]: InvalidTimestamp, as Kafka's
                              LogValidator (message.timestamp.before/after.max.ms).
                              expected = the bound crossed, found = the timestamp */
};

typedef struct odk_append_state {
    /* configuration (read only): per segment, or per call */
    int64_t segment_base;        /* base offset of the segment (index entries - base) */
    int64_t index_interval;      /* index.interval.bytes */
    int64_t max_batch_size;      /* max.message.bytes; <= 0: no limit */
    int64_t append_time;         /* >= 0: LogAppendTime to stamp; < 0: CreateTime */
    int32_t leader_epoch;        /* >= 0: written into every batch; < 0: kept */
    int32_t assign;              /* 1 leader: assign offsets from next_offset, run the
                                    leader checks; 0 follower: keep baseOffsets, each
                                    >= next_offset (check_offsets) */
    int32_t check_timestamps;    /* 1 (with assign, a CreateTime topic's leader): every
                                    record timestamp of an uncompressed batch (-1, none,
                                    excepted; under a batch's LogAppendTime attribute its
                                    maxTimestamp) must lie within [now_ms -
                                    timestamp_before_ms, now_ms + timestamp_after_ms]
                                    (saturated), else ODK_BAD_TIMESTAMP; 0: not checked */
    int32_t reserved_config;
    int64_t now_ms;              /* per call, with check_timestamps: the broker's clock */
    int64_t timestamp_before_ms; /* message.timestamp.before.max.ms (>= 0) */
    int64_t timestamp_after_ms;  /* message.timestamp.after.max.ms (>= 0) */
    /* per call, consumed: odk_append and odk_append_in_place read it and reset
       expect_count to 0 on every call, success or failure, so a call that sets none
       never checks a stale one; odk_append_check and odk_append_commit (a follower's
       own buffer) do not check it and reset it too */
    const uint8_t *expect;       /* expect_count consecutive ODK_BATCH_HEADER_SIZE-byte
                                    batch headers the copy must hold (step 3); the caller
                                    keeps expect_count * 61 bytes there */
    int64_t expect_count;        /* > 0: check them; <= 0: no expectation */
    /* the segment's state: read, and advanced only on ODK_OK */
    int64_t position;            /* data size of the segment: where the copy goes */
    int64_t next_offset;         /* offset the next record gets */
    int64_t index_entries;       /* valid entries in index */
    int64_t time_entries;        /* valid entries in timeindex */
    int64_t bytes_since_index;   /* log bytes since the last index entry */
    int64_t max_timestamp;       /* largest stored maxTimestamp in the segment, -1 none */
    int64_t offset_of_max;       /* last offset of that batch (segment_base when none) */
    /* results: written by every call */
    int32_t status;              /* as returned */
    int32_t reserved;
    int64_t batches;             /* OK: batches appended; else valid batches before the
                                    failing one (0 for the up-front refusals) */
    int64_t valid_bytes;         /* OK: len; else position in src of the failing batch */
    int64_t expected;            /* failure detail (see each status); 0 on OK */
    int64_t found;
    int64_t first_offset;        /* OK: baseOffset of the first batch as stored; else -1 */
    int64_t last_offset;         /* OK: lastOffset of the last batch as stored; else -1 */
    int64_t records;             /* OK: sum of recordsCount; else 0 */
    int64_t append_max_timestamp;/* OK: max stored maxTimestamp, from -1 (as the scan) */
    int64_t first_max_timestamp; /* OK: stored maxTimestamp of the first batch (anchors
                                    segment.ms when the segment was empty); else -1 */
    int64_t last_time_timestamp; /* timestamp of the last time-index entry after the
                                    call, -1 when there is none */
} odk_append_state;

int odk_append(const uint8_t *src, size_t len, uint8_t *dst, size_t dst_size,
               uint8_t *index, size_t index_cap, uint8_t *timeindex, size_t time_cap,
               odk_append_state *st);

/* ---- The same append on a copy the caller made: a leader's large appends -------------
 * int odk_append_in_place(len, dst, dst_size, index, index_cap, timeindex, time_cap, st)
 *   odk_append for the len bytes the caller already copied to dst + st->position (with
 *   pwrite(2) of the producer's batches to the .log: whole pages so written are not
 *   zeroed first, as pages a store into the mapping faults in are). Steps 1, 3 and 4 of
 *   odk_append, the same statuses, rewrites, index entries and state; every failure,
 *   the step-1 refusals too, zeroes those len bytes again (when they lie inside dst).
 *   The copy is the caller's private bytes from then on: nobody else changes them.
 */
int odk_append_in_place(size_t len, uint8_t *dst, size_t dst_size, uint8_t *index, size_t index_cap,
                        uint8_t *timeindex, size_t time_cap, odk_append_state *st);

/* ---- The same append without the copy: a follower's, written by the caller ------------
 * A follower's batches are stored as they are (assign 0, leader_epoch < 0, append_time
 * < 0; other settings: ODK_BAD_STATE) and sit in a buffer private to it, so they can be
 * validated where they are and written to the .log with pwrite(2) instead of a copy
 * into the mapping (stores into fresh pages of a MAP_SHARED mapping make the kernel
 * zero each page first: perf/log_append.py --follower). Two calls around the write:
 *
 * int odk_append_check(src, len, dst_size, timeindex, index_cap, time_cap, st)
 *   Steps 1 and 3 of odk_append on src itself (read only): every refusal, check and
 *   status odk_append would give for src (dst_size: the segment's capacity, as
 *   odk_append's), but for the expectation (src is the follower's own: nobody can
 *   change it; expect_count is reset unread). Writes nothing but st's result fields: on ODK_OK they say what
 *   odk_append would report (batches, valid_bytes = len, first/last offset, records,
 *   timestamps; last_time_timestamp is the last entry as it stands); the in/out
 *   fields are unchanged. Nothing to zero on failure: nothing was written.
 * Then the caller writes src's len bytes to the .log at st->position.
 * int odk_append_commit(src, len, index, index_cap, timeindex, time_cap, st)
 *   Step 4 for the same src and st, right after an ODK_OK check (no call on st in
 *   between): the index entries, exactly as odk_append writes them, and the in/out
 *   fields advanced (position += len). The CRCs are not checked again. ODK_BAD_STATE
 *   (nothing written) if st does not come from an ODK_OK check of len bytes, or src's
 *   frames do not walk to len in st->batches batches within the indexes: a caller
 *   bug, caught before any write.
 */
int odk_append_check(const uint8_t *src, size_t len, size_t dst_size,
                     const uint8_t *timeindex, size_t index_cap, size_t time_cap,
                     odk_append_state *st);
int odk_append_commit(const uint8_t *src, size_t len, uint8_t *index, size_t index_cap,
                      uint8_t *timeindex, size_t time_cap, odk_append_state *st);

/* ---- Prefault ahead of an appender ----------------------------------------------------
 * odk_prefault_async(base, from, upto): ask a background thread (one per process,
 * started on first use) to populate pages [base + from, base + upto) of a MAP_SHARED
 * writable mapping for writing (madvise MADV_POPULATE_WRITE, Linux 5.14+), so that the
 * appender's copies do not take the first-touch page faults of a fresh sparse segment.
 * Returns at once: 0 queued, 1 queue full (dropped: the appender faults as before),
 * 2 unavailable (the kernel lacks MADV_POPULATE_WRITE, or no thread could start).
 * Harmless if the range is unmapped meanwhile (madvise fails with ENOMEM) and never
 * changes memory contents. A hole the filesystem cannot fill (full) makes madvise fail
 * with EFAULT, where a store would raise SIGBUS; callers still ask only for ranges they
 * allocated (fallocate: storage/segment.py), so populating never takes blocks nobody
 * checked for. Pure-Python twin: a no-op returning 2.
 */
int odk_prefault_async(uint8_t *base, int64_t from, int64_t upto);


/* =====================================================================================
 * Record decode (record_decode.c): every record of one UNCOMPRESSED v2 batch in one call.
 *
 * int odk_decode_records(batch, len, rows, cap, out)
 *   batch/len  one batch from its first byte (baseOffset); bytes past its batchLength
 *              are ignored. Read only, never past min(len, batchLength + 12).
 *   rows       NULL: check only (every check below, no rows written; cap ignored).
 *              Else cap * ODK_RECORD_FIELDS int64 slots; record i's fields go to
 *              rows[i * ODK_RECORD_FIELDS + ODK_REC_*]:
 *                OFFSET_DELTA     offsetDelta (offset = baseOffset + it)
 *                TIMESTAMP_DELTA  timestampDelta (timestamp = baseTimestamp + it, except
 *                                 under LogAppendTime: maxTimestamp; the caller decides)
 *                KEY_POS, KEY_LEN       key bytes at batch[pos .. pos+len); len -1 = null
 *                                       (pos is then where the key would start)
 *                VALUE_POS, VALUE_LEN   likewise for the value
 *                HEADERS_POS      byte of the first header (just past headersCount)
 *                HEADERS_COUNT    headersCount; the headers' lengths are checked here,
 *                                 their bytes (UTF-8 keys) are left to the caller
 *              All positions are from the batch's first byte.
 *   out        status and, on failure, where and why (below). Returns out->status.
 *
 * Checks, in this order (the first failure stops the call; rows of the records before
 * the failing one are written, the failing record's row may be partly written):
 *   len < 61                                 ODK_TRUNCATED  (61, len)
 *   batchLength < 49                         ODK_BAD_LENGTH (49, batchLength)
 *   batchLength + 12 > len                   ODK_TRUNCATED  (size, len)
 *   magic != 2                               ODK_BAD_MAGIC  (2, magic)
 *   compression (attributes & 7) != 0        ODK_BAD_CODEC  (0, codec): decompress first
 *   recordsCount < 0 or > (size - 61) / 7    ODK_BAD_COUNT  ((size-61)/7, recordsCount):
 *                                            every record takes at least 7 bytes
 *   recordsCount > cap (rows given)          ODK_MORE       (recordsCount, cap): nothing
 *                                            decoded; a caller bug (cap = recordsCount)
 *   then per record i, at byte p (position = p unless said otherwise):
 *   the records end before record i          ODK_BAD_COUNT  (recordsCount, i)
 *   its length varint runs past the batch    ODK_TRUNCATED  (size - p + 1, size - p)
 *   length < 6 or past the batch's end       ODK_BAD_RECORD (bytes left after the
 *                                            varint, length)
 *   then each field, at its own position, within the record's declared end `e`:
 *   a varint longer than 5 (varint) or 10    ODK_BAD_VARINT (5 or 10, 6 or 11)
 *   bytes (varlong), or wider than 32/64     ODK_BAD_VARINT (15 or 1: the largest last
 *   bits                                     byte allowed, the last byte found)
 *   a field (varint or bytes) running past e ODK_BAD_RECORD (e, where it would end;
 *                                            e + 1 for a varint cut by e)
 *   key or value length < -1                 ODK_BAD_RECORD (-1, length)
 *   headersCount < 0 or > (e - pos) / 2      ODK_BAD_RECORD ((e - pos) / 2, count)
 *   header key length < 0                    ODK_BAD_RECORD (0, length)
 *   header value length < -1                 ODK_BAD_RECORD (-1, length)
 *   fields ending before e                   ODK_BAD_RECORD (e, where they end)
 *   and after the last record: bytes left    ODK_BAD_COUNT  (size, where records end)
 * (expected, found) are in parentheses. out->records is recordsCount on ODK_OK (and
 * for bytes left after the last record), else the index of the failing record; it and
 * out->position are 0 for the batch-level failures; out->position is size on ODK_OK.
 * Accepts exactly the batches client/records' Python decoder (_decode_records) accepts,
 * but for one check left to the caller: that header keys are UTF-8. The CRC is not
 * checked (odk_crc32c / odk_scan_batches do that). Every read is bounded by the checks
 * above, so no input makes it read out of bounds or loop longer than len.
 *
 * out->flags: an OR over the records decoded (all of them on ODK_OK) of
 *   ODK_RECORDS_NULL_KEY    some key is null
 *   ODK_RECORDS_NULL_VALUE  some value is null (a tombstone)
 *   ODK_RECORDS_HEADERS     some record has headers
 *   ODK_RECORDS_SPARSE      some offsetDelta is not its record's index (compacted)
 * so a caller can take a faster path when none is set.
 */
enum odk_decode_status {   /* odk_decode_records' own; it also returns 1, 2, 3, 6, 9 */
    ODK_BAD_VARINT = 15,   /* a varint too long or too wide */
    ODK_BAD_RECORD = 16,   /* a record's length or fields are impossible or do not fit */
    ODK_BAD_COUNT = 17     /* recordsCount does not match the records present */
};

#define ODK_RECORD_FIELDS        8
#define ODK_REC_OFFSET_DELTA     0
#define ODK_REC_TIMESTAMP_DELTA  1
#define ODK_REC_KEY_POS          2
#define ODK_REC_KEY_LEN          3
#define ODK_REC_VALUE_POS        4
#define ODK_REC_VALUE_LEN        5
#define ODK_REC_HEADERS_POS      6
#define ODK_REC_HEADERS_COUNT    7
#define ODK_RECORDS_NULL_KEY     1
#define ODK_RECORDS_NULL_VALUE   2
#define ODK_RECORDS_HEADERS      4
#define ODK_RECORDS_SPARSE       8

typedef struct odk_decode_result {
    int32_t status;          /* as returned */
    int32_t flags;           /* ODK_RECORDS_* over the rows written */
    int64_t records;         /* rows written: recordsCount on OK, else the failing index */
    int64_t position;        /* byte (from the batch start) of the failure; size on OK */
    int64_t expected;        /* failure detail (see each check); 0 on OK */
    int64_t found;
    int64_t min_timestamp;   /* OK: the smallest and largest record timestamp, each */
    int64_t max_timestamp;   /* baseTimestamp + timestampDelta (saturated at the int64
                                limits), leaving out records whose timestamp is -1
                                (NO_TIMESTAMP); INT64_MAX / INT64_MIN when none has one
                                (and on failure) */
} odk_decode_result;

int odk_decode_records(const uint8_t *batch, size_t len, int64_t *rows, size_t cap,
                       odk_decode_result *out);

/* =====================================================================================
 * v2 batch header field offsets, for C code outside odradek.c that writes headers
 * (hp_producer.c) and odradek.c (byte_order.h) itself. The twin of client/records/layout.py's *_OFFSET constants (checked by
 * tests/client/test_hotpath_producer.py); the table at the top of this file shows them.
 * ===================================================================================== */
#define ODK_BATCH_OFF_BASE_OFFSET     0
#define ODK_BATCH_OFF_LENGTH          8
#define ODK_BATCH_OFF_LEADER_EPOCH   12
#define ODK_BATCH_OFF_MAGIC          16
#define ODK_BATCH_OFF_CRC            17
#define ODK_BATCH_OFF_ATTRIBUTES     21
#define ODK_BATCH_OFF_LAST_DELTA     23
#define ODK_BATCH_OFF_BASE_TS        27
#define ODK_BATCH_OFF_MAX_TS         35
#define ODK_BATCH_OFF_PRODUCER_ID    43
#define ODK_BATCH_OFF_PRODUCER_EPOCH 51
#define ODK_BATCH_OFF_BASE_SEQ       53
#define ODK_BATCH_OFF_RECORDS        57

/* =====================================================================================
 * Batch header fields (odradek.c), for readers in other C files (odradek._hotpath's
 * fetch decoder, hp_consumer.c), so the header layout keeps its one C owner: the
 * OFF_* offsets beside odk_scan_batches. Added for issue 11 (the consumer's hot path).
 *
 * odk_read_batch_header(b, out): the 13 fields of the ODK_BATCH_HEADER_SIZE-byte header
 * at b, decoded from big-endian into out. The caller checks that the 61 bytes are
 * there; nothing is validated (magic, lengths, CRC: the caller's rules).
 * The attribute bits (int16 attributes), as client/records/layout.py names them:
 */
#define ODK_ATTR_COMPRESSION_MASK    7    /* codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd */
#define ODK_ATTR_TIMESTAMP_TYPE_MASK 8    /* set: LogAppendTime (every record: maxTimestamp) */
#define ODK_ATTR_TRANSACTIONAL_MASK  16   /* part of a transaction (KIP-98) */
#define ODK_ATTR_CONTROL_MASK        32   /* a control batch (transaction marker) */

typedef struct odk_batch_header {
    int64_t base_offset;
    int32_t batch_length;
    int32_t partition_leader_epoch;
    int32_t magic;           /* the signed byte */
    uint32_t crc;
    int32_t attributes;      /* the signed int16 */
    int32_t last_offset_delta;
    int64_t base_timestamp;
    int64_t max_timestamp;
    int64_t producer_id;
    int32_t producer_epoch;  /* the signed int16 */
    int32_t base_sequence;
    int32_t records_count;
} odk_batch_header;

void odk_read_batch_header(const uint8_t *b, odk_batch_header *out);

/* odk_batch_crc(b, size): the CRC-32C of the whole batch at b (size bytes: batchLength +
 * 12) over the bytes the crc field covers (attributes to the end); size must be at least
 * ODK_BATCH_HEADER_SIZE. Compare with the stored odk_batch_header.crc. */
uint32_t odk_batch_crc(const uint8_t *b, size_t size);

/* ---- Issue 11's hot paths (daemon/c_ext/hp_*.c) ----------------------------------------
 * odk_ring_wait_writable_at(r, tail, len, timeout_ns): odk_ring_wait_writable for a
 *   writer whose odk_ring several threads share (the Producer's accumulator): `tail` is
 *   r->tail as read under the caller's lock, r is only read, and the space-waiter flag is
 *   the caller's to set before and clear after (it counts its own sleepers). Sleeps at most
 *   timeout_ns (0: a look, no sleep) on the head. 1 if an entry of len bytes fits after
 *   tail, 0 if not yet, -ODK_SHM_TOO_BIG if it never can.
 * odk_read_varint(p, pos, lim, maxb, value): the zigzag varint at p[*pos], of at most
 *   maxb bytes (5: int32, 10: int64) before lim, as odk_decode_records reads them
 *   (record_decode.c, the one varint reader in C). 0 with *value and *pos past it, else
 *   non-zero (cut short by lim, too long, or wider than 32 / 64 bits).
 */
int odk_ring_wait_writable_at(const odk_ring *r, uint64_t tail, uint32_t len, int64_t timeout_ns);
int odk_read_varint(const uint8_t *p, size_t *pos, size_t lim, int maxb, int64_t *value);

/* odk_futex_words_load (shm.c): seen[i] = *words[i] (acquire) for i < n: a sleeper's
 * snapshot, in one call, of the words it will pass to odk_futex_wait_any (words as
 * there: each in a MAP_SHARED mapping the caller keeps mapped). */
void odk_futex_words_load(uint32_t *const *words, uint32_t *seen, uint32_t n);

/* The partition leader's per-entry calls on a producer's two rings (shm.c;
 * daemon/worker/producers.py; client/shm/LAYOUT.md, "Ordering, crashes, futexes (ring)"):
 * odk_ring_free: the bytes a writer could still commit: capacity - (its tail - the
 *   shared head, acquire); 0 if that head is past its tail (a broken reader).
 * odk_ring_complete_release: write the completion of the entry peeked from `requests`
 *   (its tag; payload base_offset:i64 error_code:i32 0:u32, little-endian) into
 *   `completions`, then release that entry: odk_ring_write then odk_ring_release, in
 *   that order (a reader killed between them leaves the entry to its successor).
 *   ODK_SHM_MISUSE if no entry is peeked; odk_ring_write's code (nothing released) if
 *   the completion does not fit. */
#define ODK_RING_COMPLETION_SIZE 16
uint64_t odk_ring_free(const odk_ring *r);
int odk_ring_complete_release(odk_ring *requests, odk_ring *completions, int64_t base_offset,
                              int32_t error_code);
/* odk_ring_read_completion: the producer's side: the next completion of `r` (a
 *   completion ring) read and released in one call: returns its tag (>= 0) with
 *   *base_offset and *error_code set, or -ODK_SHM_EMPTY, -ODK_SHM_CORRUPT (an impossible
 *   entry, or one that is not ODK_RING_COMPLETION_SIZE bytes: left peeked, not
 *   released), -ODK_SHM_MISUSE (an entry is peeked already). */
int64_t odk_ring_read_completion(odk_ring *r, int64_t *base_offset, int32_t *error_code);

#endif
