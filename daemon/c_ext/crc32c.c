/*
 * crc32c.c — CRC-32C for odradek (see odradek.h for the contract; the pure-Python twin is
 * client/_native_ref.py, tested against every path here by tests/client/test_native.py).
 *
 * CRC-32C
 *   - Software: slicing-by-8 (8 tables of 256 entries, 8 KiB), ~1.5-2 GB/s.
 *   - Hardware (x86-64 with SSE4.2): the crc32 instruction, 8 bytes at a time. One
 *     dependency chain is latency-bound (3 cycles per 8 bytes); the instruction's
 *     throughput is 1 per cycle, so from 72 bytes on (with PCLMULQDQ) the buffer is split
 *     into three equal streams (up to 8 KiB each, repeated) checksummed in parallel, and
 *     the three CRCs are then combined:
 *         crc(A||B||C) = shift(crc(A), |B|+|C|) ^ shift(crc(B), |C|) ^ crc(C)
 *     where crc(B), crc(C) start from a zero register and shift(x, n) is "x followed by
 *     n zero bytes", i.e. multiplication by x^(8n) mod P: one carry-less multiply by a
 *     constant (a table built at load time, one pair per stream length) reduced by the
 *     crc32 instruction. The scheme of Intel's "Fast CRC Computation for iSCSI
 *     Polynomial Using CRC32 Instruction" and Linux's crc32c-pcl-intel. ~8 bytes a cycle
 *     from 16 KiB, ~2x the single chain at 1 KiB; shorter buffers, and CPUs without
 *     PCLMULQDQ, take the single chain.
 *   - Hardware with AVX-512 VPCLMULQDQ, from 256 bytes: no crc32 chain at all but
 *     "folding" (the 128-bit scheme of Intel's "Fast CRC Computation for Generic
 *     Polynomials Using PCLMULQDQ", on 512-bit registers): 256 bytes per loop in four
 *     registers, each multiplied forward by a constant and xored onto the next data,
 *     reduced to 32 bits at the end by the crc32 instruction. ~3x the interleaved loop
 *     (~8 bytes a cycle), more than the memory bandwidth beyond the L2 cache.
 *   Runtime dispatch: odk_init(), a load-time constructor, builds the tables and asks
 *   the CPU for SSE4.2, PCLMULQDQ, AVX-512F and VPCLMULQDQ (libgcc checks the OS saves
 *   the registers); odk_crc32c() then picks the path with predictable branches, and
 *   odk_crc32c_via() runs a named one for the tests.
 *
 */
#define _GNU_SOURCE
#include "odradek.h"

#include <string.h>

/* Build with -DODK_NO_HW to compile only the software path, as on non-x86 hosts. */
#if defined(__x86_64__) && !defined(ODK_NO_HW)
#include <nmmintrin.h>
#include <immintrin.h>
#define ODK_HAVE_X86 1
#else
#define ODK_HAVE_X86 0
#endif

#define POLY 0x82F63B78u  /* CRC-32C (Castagnoli), reflected */

/* ---- CRC-32C: tables ------------------------------------------------------------- */

/* crc_table[0] is the classic byte table; crc_table[k][n] is the CRC of byte n followed
 * by k zero bytes, which lets 8 input bytes be folded in with 8 independent lookups. */
static uint32_t crc_table[8][256];
static int hw_available;

static void build_crc_tables(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc_table[0][n];
        for (int k = 1; k < 8; k++) {
            c = crc_table[0][c & 0xff] ^ (c >> 8);
            crc_table[k][n] = c;
        }
    }
}

/* ---- CRC-32C: software, slicing-by-8 --------------------------------------------- */

static uint32_t crc32c_sw_raw(uint32_t c, const uint8_t *p, size_t len)
{
    while (len && ((uintptr_t)p & 7)) {
        c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        len--;
    }
    while (len >= 8) {
        /* little-endian assembly by hand, so it is right on any host byte order */
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 |
                           (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 |
                      (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
            crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
            crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
            crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

uint32_t odk_crc32c_sw(uint32_t crc, const uint8_t *buf, size_t len)
{
    return ~crc32c_sw_raw(~crc, buf, len);
}

/* ---- CRC-32C: hardware, 3-way interleaved ---------------------------------------- */

#if ODK_HAVE_X86

/* a * b mod P, polynomials in reflected bit order (bit 31 is x^0), as in zlib. */
static uint32_t multmodp(uint32_t a, uint32_t b)
{
    uint32_t m = (uint32_t)1 << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0)
                break;
        }
        m >>= 1;
        b = (b & 1) ? (b >> 1) ^ POLY : b >> 1;
    }
    return p;
}

/* x^n mod P. */
static uint32_t xnmodp(size_t n)
{
    uint32_t p = (uint32_t)1 << 31;   /* x^0 */
    uint32_t sq = (uint32_t)1 << 30;  /* x^1 */
    while (n) {
        if (n & 1)
            p = multmodp(sq, p);
        sq = multmodp(sq, sq);
        n >>= 1;
    }
    return p;
}

/* The interleaved loop splits a buffer into three streams of equal length (a multiple
 * of 8 bytes, at most CRC_STREAM_MAX), so no length falls back to a long single chain.
 * Below CRC_INTERLEAVE_MIN bytes the combine costs more than it saves (measured: the
 * single chain wins up to 64 bytes, the interleaved loop from 72). */
#define CRC_STREAM_MAX     8192
#define CRC_INTERLEAVE_MIN 72

/* shift_k[w] = {K(8w), K(16w)} for a stream of w 8-byte words, where
 * K(n) = x^(8n - 33) mod P: crc_shift(c, K(n)) is c followed by n zero bytes. */
static uint32_t shift_k[CRC_STREAM_MAX / 8 + 1][2];
static int pclmul_available;

static void build_shift_constants(void)
{
    uint32_t x64 = xnmodp(64), x128 = xnmodp(128);
    shift_k[1][0] = xnmodp(64 - 33);
    shift_k[1][1] = xnmodp(128 - 33);
    for (size_t w = 2; w <= CRC_STREAM_MAX / 8; w++) {
        shift_k[w][0] = multmodp(shift_k[w - 1][0], x64);
        shift_k[w][1] = multmodp(shift_k[w - 1][1], x128);
    }
}

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);  /* x86-64 is little-endian */
    return v;
}

/* One dependency chain: the short-buffer path, and the head and tail of the long one. */
__attribute__((target("sse4.2")))
static inline uint32_t crc32c_hw1_raw(uint32_t crc, const uint8_t *p, size_t len)
{
    uint64_t c0 = crc;

    while (len && ((uintptr_t)p & 7)) {
        c0 = _mm_crc32_u8((uint32_t)c0, *p++);
        len--;
    }
    while (len >= 8) {
        c0 = _mm_crc32_u64(c0, load_le64(p));
        p += 8;
        len -= 8;
    }
    while (len--)
        c0 = _mm_crc32_u8((uint32_t)c0, *p++);
    return (uint32_t)c0;
}

/* c * x^(8n) mod P given k = K(n): the carry-less product c * k (63 bits, = c * x^(8n-32)
 * once the reflected product's extra factor x is counted) reduced by the crc32
 * instruction, which multiplies its 64-bit message by x^32 mod P. */
__attribute__((target("sse4.2,pclmul")))
static inline uint32_t crc_shift(uint32_t c, uint32_t k)
{
    __m128i prod = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)c), _mm_cvtsi32_si128((int)k),
                                        0x00);
    return (uint32_t)_mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(prod));
}

/* Three streams A, B, C of w words each, then
 *     crc(A||B||C) = shift(crc(A), |B|+|C|) ^ shift(crc(B), |C|) ^ crc(C)
 * with crc(B) and crc(C) started from a zero register; the two shifts run in parallel. */
__attribute__((target("sse4.2,pclmul")))
static uint32_t crc32c_hw3_raw(uint32_t crc, const uint8_t *p, size_t len)
{
    size_t head = (size_t)(-(uintptr_t)p & 7);  /* bytes to the next 8-byte boundary */
    if (head > len)
        head = len;
    uint32_t c0 = crc32c_hw1_raw(crc, p, head);

    p += head;
    len -= head;
    while (len >= CRC_INTERLEAVE_MIN) {
        size_t w = len / 24 < CRC_STREAM_MAX / 8 ? len / 24 : CRC_STREAM_MAX / 8;
        size_t n = w * 8;
        const uint8_t *end = p + n;
        uint64_t a = c0, b = 0, c = 0;
        do {
            a = _mm_crc32_u64(a, load_le64(p));
            b = _mm_crc32_u64(b, load_le64(p + n));
            c = _mm_crc32_u64(c, load_le64(p + 2 * n));
            p += 8;
        } while (p < end);
        c0 = crc_shift((uint32_t)a, shift_k[w][1]) ^ crc_shift((uint32_t)b, shift_k[w][0]) ^
             (uint32_t)c;
        p += 2 * n;
        len -= 3 * n;
    }
    return crc32c_hw1_raw(c0, p, len);
}

/* ---- CRC-32C: hardware, folding with 512-bit carry-less multiplies ----------------- */

/* With AVX-512 and VPCLMULQDQ, long buffers skip the crc32 instruction's 8 bytes a
 * cycle: 256 bytes sit in sixteen 128-bit lanes, and each lane is "folded" 256 bytes
 * forward onto the data found there,
 *     X * x^D + Y (mod P),  X = XL * x^64 + XH,  D = 2048 bits,
 * by two carry-less 64x32-bit multiplies, XL * (x^(D+64) mod P) and XH * (x^D mod P),
 * which keeps the polynomial's residue mod P while reading 64 bytes an instruction. At
 * the end the lanes are folded into one (distances 512, then 384/256/128 bits) and its
 * 16 bytes, fed to the crc32 instruction from a zero register, give the CRC (the crc32
 * instruction computes M * x^32 mod P, the CRC of anything congruent to M). The start
 * register is xored into the first 4 bytes, as a CRC register stands for them.
 * A lane's bit i is the coefficient of x^(127-i) (reflected), and a 64x64 carry-less
 * product comes out multiplied by one extra x, hence the constants x^(D+63), x^(D-1). */
#define CRC_FOLD_MIN 256   /* measured: from 256 bytes (its minimum) ~3x the interleaved loop */

struct fold_k { uint64_t lo, hi; };   /* multiplies a lane's low and high 64 bits */
static struct fold_k fold_2048, fold_512, fold_384, fold_256, fold_128;
static int fold_available;

static struct fold_k fold_constants(size_t bits)
{
    struct fold_k k = { (uint64_t)xnmodp(bits + 63) << 32, (uint64_t)xnmodp(bits - 1) << 32 };
    return k;
}

static void build_fold_constants(void)
{
    fold_2048 = fold_constants(2048);
    fold_512 = fold_constants(512);
    fold_384 = fold_constants(384);
    fold_256 = fold_constants(256);
    fold_128 = fold_constants(128);
}

#define FOLD_TARGET __attribute__((target("sse4.2,pclmul,avx512f,vpclmulqdq")))

FOLD_TARGET static inline __m512i fold512(__m512i x, __m512i k, __m512i y)
{
    return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
                                     _mm512_clmulepi64_epi128(x, k, 0x11), y, 0x96);
}

FOLD_TARGET static inline __m128i fold128(__m128i x, struct fold_k k)
{
    __m128i kk = _mm_set_epi64x((long long)k.hi, (long long)k.lo);
    return _mm_xor_si128(_mm_clmulepi64_si128(x, kk, 0x00), _mm_clmulepi64_si128(x, kk, 0x11));
}

FOLD_TARGET static inline __m512i broadcast_k(struct fold_k k)
{
    return _mm512_set_epi64((long long)k.hi, (long long)k.lo, (long long)k.hi, (long long)k.lo,
                            (long long)k.hi, (long long)k.lo, (long long)k.hi, (long long)k.lo);
}

/* len >= CRC_FOLD_MIN: the four registers start full. */
FOLD_TARGET static uint32_t crc32c_fold_raw(uint32_t crc, const uint8_t *p, size_t len)
{
    __m512i x0 = _mm512_loadu_si512(p), x1 = _mm512_loadu_si512(p + 64);
    __m512i x2 = _mm512_loadu_si512(p + 128), x3 = _mm512_loadu_si512(p + 192);
    __m512i k = broadcast_k(fold_2048);

    x0 = _mm512_xor_si512(x0, _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)crc)));
    p += 256;
    len -= 256;
    while (len >= 256) {
        x0 = fold512(x0, k, _mm512_loadu_si512(p));
        x1 = fold512(x1, k, _mm512_loadu_si512(p + 64));
        x2 = fold512(x2, k, _mm512_loadu_si512(p + 128));
        x3 = fold512(x3, k, _mm512_loadu_si512(p + 192));
        p += 256;
        len -= 256;
    }
    k = broadcast_k(fold_512);
    x0 = fold512(x0, k, x1);
    x0 = fold512(x0, k, x2);
    x0 = fold512(x0, k, x3);
    while (len >= 64) {
        x0 = fold512(x0, k, _mm512_loadu_si512(p));
        p += 64;
        len -= 64;
    }
    __m128i x = _mm_xor_si128(fold128(_mm512_extracti32x4_epi32(x0, 0), fold_384),
                              fold128(_mm512_extracti32x4_epi32(x0, 1), fold_256));
    x = _mm_xor_si128(x, fold128(_mm512_extracti32x4_epi32(x0, 2), fold_128));
    x = _mm_xor_si128(x, _mm512_extracti32x4_epi32(x0, 3));
    uint64_t c = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(x));
    c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(x, 1));
    return crc32c_hw1_raw((uint32_t)c, p, len);
}

#endif /* ODK_HAVE_X86 */

__attribute__((constructor))
static void odk_init(void)
{
    build_crc_tables();
#if ODK_HAVE_X86
    build_shift_constants();
    build_fold_constants();
    /* constructors may run before libgcc's own CPU detection: initialise it first */
    __builtin_cpu_init();
    hw_available = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    pclmul_available = hw_available && __builtin_cpu_supports("pclmul");
    fold_available = pclmul_available && __builtin_cpu_supports("avx512f") &&
                     __builtin_cpu_supports("vpclmulqdq");
#endif
}

uint32_t odk_crc32c(uint32_t crc, const uint8_t *buf, size_t len)
{
#if ODK_HAVE_X86
    if (fold_available && len >= CRC_FOLD_MIN)
        return ~crc32c_fold_raw(~crc, buf, len);
    if (pclmul_available && len >= CRC_INTERLEAVE_MIN)
        return ~crc32c_hw3_raw(~crc, buf, len);
    if (hw_available)
        return ~crc32c_hw1_raw(~crc, buf, len);
#endif
    return ~crc32c_sw_raw(~crc, buf, len);
}

int odk_crc32c_hw_available(void)
{
    return hw_available;
}

int odk_crc32c_via(int path, uint32_t crc, const uint8_t *buf, size_t len, uint32_t *out)
{
#if ODK_HAVE_X86
    if (path == ODK_CRC_ONE_CHAIN && hw_available) {
        *out = ~crc32c_hw1_raw(~crc, buf, len);
        return 1;
    }
    if (path == ODK_CRC_INTERLEAVED && pclmul_available) {
        *out = ~crc32c_hw3_raw(~crc, buf, len);
        return 1;
    }
    if (path == ODK_CRC_FOLD && fold_available) {
        *out = len >= CRC_FOLD_MIN ? ~crc32c_fold_raw(~crc, buf, len) : ~crc32c_hw1_raw(~crc, buf, len);
        return 1;
    }
#else
    (void)path, (void)crc, (void)buf, (void)len, (void)out;
#endif
    return 0;
}

