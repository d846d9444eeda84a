/* Big-endian loads and stores, two's-complement reinterpretation and the v2 header
 * offsets, for the C files that read or write batches (odradek.c, record_decode.c,
 * hp_record.h): static inline, so each file gets its own copy and nothing is exported.
 */
#ifndef ODRADEK_BYTE_ORDER_H
#define ODRADEK_BYTE_ORDER_H

#include "odradek.h"

#include <stdint.h>
#include <string.h>

/* ---- big-endian loads, alignment-free ------------------------------------------- */

static inline uint32_t load_be32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint64_t load_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint16_t load_be16(const uint8_t *p)
{
    return (uint16_t)(((uint16_t)p[0] << 8) | p[1]);
}

/* Two's-complement reinterpretation without implementation-defined conversions. */
static inline int64_t as_i64(uint64_t v)
{
    int64_t r;
    memcpy(&r, &v, sizeof r);
    return r;
}

static inline int32_t as_i32(uint32_t v)
{
    int32_t r;
    memcpy(&r, &v, sizeof r);
    return r;
}

static inline int16_t as_i16(uint16_t v)
{
    int16_t r;
    memcpy(&r, &v, sizeof r);
    return r;
}

/* v2 header field offsets: the ODK_BATCH_OFF_* of odradek.h (their one C spelling) */
enum {
    OFF_BASE_OFFSET = ODK_BATCH_OFF_BASE_OFFSET, OFF_LENGTH = ODK_BATCH_OFF_LENGTH,
    OFF_LEADER_EPOCH = ODK_BATCH_OFF_LEADER_EPOCH, OFF_MAGIC = ODK_BATCH_OFF_MAGIC,
    OFF_CRC = ODK_BATCH_OFF_CRC, OFF_ATTRIBUTES = ODK_BATCH_OFF_ATTRIBUTES,
    OFF_LAST_DELTA = ODK_BATCH_OFF_LAST_DELTA, OFF_BASE_TS = ODK_BATCH_OFF_BASE_TS,
    OFF_MAX_TS = ODK_BATCH_OFF_MAX_TS, OFF_PRODUCER_ID = ODK_BATCH_OFF_PRODUCER_ID,
    OFF_PRODUCER_EPOCH = ODK_BATCH_OFF_PRODUCER_EPOCH, OFF_BASE_SEQ = ODK_BATCH_OFF_BASE_SEQ,
    OFF_RECORDS = ODK_BATCH_OFF_RECORDS
};

static inline void store_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void store_be32(uint8_t *p, uint32_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    memcpy(p, &v, sizeof v);
}

static inline void store_be64(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, sizeof v);
}

#endif
