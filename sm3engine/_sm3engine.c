/*
 * SM3 (GB/T 32905-2016) and SHA-256 (FIPS 180-4) for 留痕: a scalar compression function
 * for single streams (SHA-NI for SHA-256 where the CPU has it) and multi-lane SIMD
 * versions (AVX2: 8 lanes, AVX-512: 16 lanes) that hash several independent messages
 * side by side, one message per 32-bit lane. Both hashes have 32-bit words, the same
 * padding and a big-endian length, so one job and lane machinery serves both; only the
 * initial state, the rounds and the feed-forward (xor for SM3, add for SHA-256) differ.
 *
 * Every SIMD path is compiled with a target attribute, so one build runs on any x86_64
 * CPU; the path is chosen at import from cpuid (__builtin_cpu_supports) and can be
 * forced with LIUHEN_SM3_PATH=avx512|avx2|scalar (or set_path()), for both hashes, so
 * that each path is tested on one machine. The GIL is released while hashing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SM3_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define SM3_X86 0
#endif

#define MAX_LANES 16
/* How far ahead of each lane's block the SIMD paths prefetch (a prefetch never faults,
 * so reading past a message's end is harmless). */
#define PREFETCH_AHEAD 512
/* Below this many bytes an update keeps the GIL: releasing it costs more than hashing. */
#define GIL_MIN 2048

static const uint32_t SM3_IV[8] = {
    0x7380166fU, 0x4914b2b9U, 0x172442d7U, 0xda8a0600U,
    0xa96f30bcU, 0x163138aaU, 0xe38dee4dU, 0xb0fb0e4eU,
};

/* T_j rotated left by j mod 32, the round constant as the compression uses it (a
 * literal table, so that the unrolled rounds take each as an immediate operand). */
static const uint32_t TJ[64] = {
    0x79cc4519U, 0xf3988a32U, 0xe7311465U, 0xce6228cbU,
    0x9cc45197U, 0x3988a32fU, 0x7311465eU, 0xe6228cbcU,
    0xcc451979U, 0x988a32f3U, 0x311465e7U, 0x6228cbceU,
    0xc451979cU, 0x88a32f39U, 0x11465e73U, 0x228cbce6U,
    0x9d8a7a87U, 0x3b14f50fU, 0x7629ea1eU, 0xec53d43cU,
    0xd8a7a879U, 0xb14f50f3U, 0x629ea1e7U, 0xc53d43ceU,
    0x8a7a879dU, 0x14f50f3bU, 0x29ea1e76U, 0x53d43cecU,
    0xa7a879d8U, 0x4f50f3b1U, 0x9ea1e762U, 0x3d43cec5U,
    0x7a879d8aU, 0xf50f3b14U, 0xea1e7629U, 0xd43cec53U,
    0xa879d8a7U, 0x50f3b14fU, 0xa1e7629eU, 0x43cec53dU,
    0x879d8a7aU, 0x0f3b14f5U, 0x1e7629eaU, 0x3cec53d4U,
    0x79d8a7a8U, 0xf3b14f50U, 0xe7629ea1U, 0xcec53d43U,
    0x9d8a7a87U, 0x3b14f50fU, 0x7629ea1eU, 0xec53d43cU,
    0xd8a7a879U, 0xb14f50f3U, 0x629ea1e7U, 0xc53d43ceU,
    0x8a7a879dU, 0x14f50f3bU, 0x29ea1e76U, 0x53d43cecU,
    0xa7a879d8U, 0x4f50f3b1U, 0x9ea1e762U, 0x3d43cec5U

};

/*
 * The same constants repeated across 16 lanes for the SIMD paths, filled at import: the
 * rounds add them straight from memory, where an immediate would first have to be
 * moved into a vector register and broadcast (two more instructions per round).
 */
static uint32_t TJ_WIDE[64][MAX_LANES] __attribute__((aligned(64)));

/* SHA-256 (FIPS 180-4): the initial state and the round constants K. */
static const uint32_t SHA256_IV[8] = {
    0x6a09e667U, 0xbb67ae85U, 0x3c6ef372U, 0xa54ff53aU,
    0x510e527fU, 0x9b05688cU, 0x1f83d9abU, 0x5be0cd19U,
};

static const uint32_t SHA256_K[64] __attribute__((aligned(16))) = {
    0x428a2f98U, 0x71374491U, 0xb5c0fbcfU, 0xe9b5dba5U, 0x3956c25bU, 0x59f111f1U, 0x923f82a4U,
    0xab1c5ed5U, 0xd807aa98U, 0x12835b01U, 0x243185beU, 0x550c7dc3U, 0x72be5d74U, 0x80deb1feU,
    0x9bdc06a7U, 0xc19bf174U, 0xe49b69c1U, 0xefbe4786U, 0x0fc19dc6U, 0x240ca1ccU, 0x2de92c6fU,
    0x4a7484aaU, 0x5cb0a9dcU, 0x76f988daU, 0x983e5152U, 0xa831c66dU, 0xb00327c8U, 0xbf597fc7U,
    0xc6e00bf3U, 0xd5a79147U, 0x06ca6351U, 0x14292967U, 0x27b70a85U, 0x2e1b2138U, 0x4d2c6dfcU,
    0x53380d13U, 0x650a7354U, 0x766a0abbU, 0x81c2c92eU, 0x92722c85U, 0xa2bfe8a1U, 0xa81a664bU,
    0xc24b8b70U, 0xc76c51a3U, 0xd192e819U, 0xd6990624U, 0xf40e3585U, 0x106aa070U, 0x19a4c116U,
    0x1e376c08U, 0x2748774cU, 0x34b0bcb5U, 0x391c0cb3U, 0x4ed8aa4aU, 0x5b9cca4fU, 0x682e6ff3U,
    0x748f82eeU, 0x78a5636fU, 0x84c87814U, 0x8cc70208U, 0x90befffaU, 0xa4506cebU, 0xbef9a3f7U,
    0xc67178f2U,
};

/* K across 16 lanes, added from memory like TJ_WIDE. */
static uint32_t SHA256_K_WIDE[64][MAX_LANES] __attribute__((aligned(64)));

static void init_constants(void) {
    for (int j = 0; j < 64; j++)
        for (int l = 0; l < MAX_LANES; l++) {
            TJ_WIDE[j][l] = TJ[j];
            SHA256_K_WIDE[j][l] = SHA256_K[j];
        }
}

static inline uint32_t load_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void store_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/*
 * One round, written once for every instruction set through OP_* macros defined before
 * each kernel. Instead of moving eight registers per round, the caller renames them: the
 * round leaves the new A in D and the new E in H, so the next round is called with
 * (D, A, B, C, H, E, F, G).
 */
#define SM3_ROUND(A, B, C, D, E, F, G, H, j, FF, GG)                          \
    do {                                                                        \
        if ((j) >= 12) SM3_EXPAND1((j) + 4);                                    \
        OP_T a12 = OP_ROL(A, 12);                                               \
        OP_T ss1 = OP_ROL(OP_ADD(OP_ADD(a12, E), OP_TJ(j)), 7);          \
        OP_T ss2 = OP_XOR(ss1, a12);                                            \
        OP_T tt1 = OP_ADD(OP_ADD(FF(A, B, C), D), OP_ADD(ss2, OP_XOR(WR(j), WR((j) + 4)))); \
        OP_T tt2 = OP_ADD(OP_ADD(GG(E, F, G), H), OP_ADD(ss1, WR(j)));           \
        B = OP_ROL(B, 9);                                                       \
        F = OP_ROL(F, 19);                                                      \
        D = tt1;                                                                \
        H = OP_P0(tt2);                                                         \
    } while (0)

#define SM3_8ROUNDS(j, FF, GG)                                 \
    SM3_ROUND(a, b, c, d, e, f, g, h, (j) + 0, FF, GG);        \
    SM3_ROUND(d, a, b, c, h, e, f, g, (j) + 1, FF, GG);        \
    SM3_ROUND(c, d, a, b, g, h, e, f, (j) + 2, FF, GG);        \
    SM3_ROUND(b, c, d, a, f, g, h, e, (j) + 3, FF, GG);        \
    SM3_ROUND(a, b, c, d, e, f, g, h, (j) + 4, FF, GG);        \
    SM3_ROUND(d, a, b, c, h, e, f, g, (j) + 5, FF, GG);        \
    SM3_ROUND(c, d, a, b, g, h, e, f, (j) + 6, FF, GG);        \
    SM3_ROUND(b, c, d, a, f, g, h, e, (j) + 7, FF, GG)

/* After eight rounds the renaming is back where it started. */
#define SM3_64ROUNDS()                 \
    SM3_8ROUNDS(0, OP_FF0, OP_GG0);    \
    SM3_8ROUNDS(8, OP_FF0, OP_GG0);    \
    SM3_8ROUNDS(16, OP_FF1, OP_GG1);   \
    SM3_8ROUNDS(24, OP_FF1, OP_GG1);   \
    SM3_8ROUNDS(32, OP_FF1, OP_GG1);   \
    SM3_8ROUNDS(40, OP_FF1, OP_GG1);   \
    SM3_8ROUNDS(48, OP_FF1, OP_GG1);   \
    SM3_8ROUNDS(56, OP_FF1, OP_GG1)

/* Message word k (16 <= k < 68), computed just before the round that first needs it. */
/* Only the last sixteen words are live, so W is a ring of sixteen: word k in W[k % 16]. */
#define WR(k) W[(k) & 15]
#define SM3_EXPAND1(k)                                                                    \
    WR(k) = OP_XOR3(OP_P1(OP_XOR3(WR((k)-16), WR((k)-9), OP_ROL(WR((k)-3), 15))),         \
                    OP_ROL(WR((k)-13), 7), WR((k)-6))

/*
 * SHA-256's round in the same style: the round leaves the new A in H and the new E in D,
 * so the next round is called with (H, A, B, C, D, E, F, G). Message word k (k >= 16) is
 * expanded into the same ring of sixteen just before round k.
 */
#define SHA_S0(x) OP_XOR3(OP_ROR(x, 2), OP_ROR(x, 13), OP_ROR(x, 22))
#define SHA_S1(x) OP_XOR3(OP_ROR(x, 6), OP_ROR(x, 11), OP_ROR(x, 25))
#define SHA_s0(x) OP_XOR3(OP_ROR(x, 7), OP_ROR(x, 18), OP_SHR(x, 3))
#define SHA_s1(x) OP_XOR3(OP_ROR(x, 17), OP_ROR(x, 19), OP_SHR(x, 10))
#define SHA_EXPAND(k)                                                  \
    WR(k) = OP_ADD(OP_ADD(SHA_s1(WR((k)-2)), WR((k)-7)),               \
                   OP_ADD(SHA_s0(WR((k)-15)), WR((k)-16)))
#define SHA_ROUND(A, B, C, D, E, F, G, H, j)                                                \
    do {                                                                                    \
        if ((j) >= 16) SHA_EXPAND(j);                                                       \
        OP_T t1 = OP_ADD(OP_ADD(H, OP_ADD(OP_K(j), WR(j))), OP_ADD(SHA_S1(E), OP_CH(E, F, G))); \
        OP_T t2 = OP_ADD(SHA_S0(A), OP_MAJ(A, B, C));                                       \
        D = OP_ADD(D, t1);                                                                  \
        H = OP_ADD(t1, t2);                                                                 \
    } while (0)
#define SHA_8ROUNDS(j)                            \
    SHA_ROUND(a, b, c, d, e, f, g, h, (j) + 0);   \
    SHA_ROUND(h, a, b, c, d, e, f, g, (j) + 1);   \
    SHA_ROUND(g, h, a, b, c, d, e, f, (j) + 2);   \
    SHA_ROUND(f, g, h, a, b, c, d, e, (j) + 3);   \
    SHA_ROUND(e, f, g, h, a, b, c, d, (j) + 4);   \
    SHA_ROUND(d, e, f, g, h, a, b, c, (j) + 5);   \
    SHA_ROUND(c, d, e, f, g, h, a, b, (j) + 6);   \
    SHA_ROUND(b, c, d, e, f, g, h, a, (j) + 7)
#define SHA_64ROUNDS()                                                   \
    SHA_8ROUNDS(0); SHA_8ROUNDS(8); SHA_8ROUNDS(16); SHA_8ROUNDS(24);    \
    SHA_8ROUNDS(32); SHA_8ROUNDS(40); SHA_8ROUNDS(48); SHA_8ROUNDS(56)

/*
 * The OP_* operations the rounds are written in. Each instruction set below defines its
 * primitives under its own prefix (SC_, V8_, V16_) and names that prefix in OPS before
 * its kernels; the operations that read the same on every set are written here once.
 */
#define OP_PASTE_(p, n) p##_##n
#define OP_PASTE(p, n) OP_PASTE_(p, n)
#define OP_T OP_PASTE(OPS, T)
#define OP_ADD(x, y) OP_PASTE(OPS, ADD)(x, y)
#define OP_XOR(x, y) OP_PASTE(OPS, XOR)(x, y)
#define OP_XOR3(x, y, z) OP_PASTE(OPS, XOR3)(x, y, z)
#define OP_ROL(x, n) OP_PASTE(OPS, ROL)(x, n)
#define OP_ROR(x, n) OP_PASTE(OPS, ROR)(x, n)
#define OP_SHR(x, n) OP_PASTE(OPS, SHR)(x, n)
#define OP_TJ(j) OP_PASTE(OPS, TABLE)(TJ, j)
#define OP_K(j) OP_PASTE(OPS, TABLE)(SHA256_K, j)
#define OP_MAJ(x, y, z) OP_PASTE(OPS, MAJ)(x, y, z)
#define OP_CH(x, y, z) OP_PASTE(OPS, CHOOSE)(x, y, z) /* x ? y : z */
#define OP_FF0(x, y, z) OP_XOR3(x, y, z)
#define OP_GG0(x, y, z) OP_XOR3(x, y, z)
#define OP_FF1(x, y, z) OP_MAJ(x, y, z)
#define OP_GG1(x, y, z) OP_CH(x, y, z)
#define OP_P0(x) OP_XOR3(x, OP_ROL(x, 9), OP_ROL(x, 17))
#define OP_P1(x) OP_XOR3(x, OP_ROL(x, 15), OP_ROL(x, 23))

/*
 * One block's 64 rounds (ROUNDS: SM3_64ROUNDS or SHA_64ROUNDS) on the state words s[0..7],
 * the message words already in W; the feed-forward COMBINE is OP_XOR for SM3 and OP_ADD
 * for SHA-256. The one block step of every kernel, scalar and lanes alike.
 */
#define STATE_ROUNDS(s, ROUNDS, COMBINE)                                                  \
    do {                                                                                  \
        OP_T a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7]; \
        ROUNDS();                                                                         \
        s[0] = COMBINE(s[0], a); s[1] = COMBINE(s[1], b); s[2] = COMBINE(s[2], c);        \
        s[3] = COMBINE(s[3], d); s[4] = COMBINE(s[4], e); s[5] = COMBINE(s[5], f);        \
        s[6] = COMBINE(s[6], g); s[7] = COMBINE(s[7], h);                                 \
    } while (0)

/*
 * A lane kernel (lane_fn, below) for the instruction set OPS names: its LANES lanes, the
 * state rows loaded and stored with LOAD and STORE, each block's message words gathered
 * from the lanes, byte-swapped (with BSWAP) and transposed into W by MESSAGE, then one
 * block of ROUNDS fed forward with COMBINE.
 */
#define LANE_KERNEL(name, ROUNDS, COMBINE)                                                 \
    OP_PASTE(OPS, TARGET) static void name(                                                \
        uint32_t *st, const uint8_t *const *ptr, const size_t *step, size_t nblocks) {     \
        const OP_T bswap = OP_PASTE(OPS, BSWAP);                                           \
        const uint8_t *p[OP_PASTE(OPS, LANES)];                                            \
        for (int l = 0; l < OP_PASTE(OPS, LANES); l++) p[l] = ptr[l];                      \
        OP_T s[8];                                                                         \
        for (int w = 0; w < 8; w++) s[w] = OP_PASTE(OPS, LOAD)(st + OP_PASTE(OPS, LANES) * w); \
        OP_T W[16];                                                                        \
        for (size_t n = 0; n < nblocks; n++) {                                             \
            OP_PASTE(OPS, MESSAGE)(W, p, bswap);                                           \
            for (int l = 0; l < OP_PASTE(OPS, LANES); l++) p[l] += step[l];                \
            STATE_ROUNDS(s, ROUNDS, COMBINE);                                              \
        }                                                                                  \
        for (int w = 0; w < 8; w++) OP_PASTE(OPS, STORE)(st + OP_PASTE(OPS, LANES) * w, s[w]); \
    }

/* ---- scalar ------------------------------------------------------------------------ */

#define SC_T uint32_t
#define SC_ADD(x, y) ((x) + (y))
#define SC_XOR(x, y) ((x) ^ (y))
#define SC_XOR3(x, y, z) ((x) ^ (y) ^ (z))
#define SC_ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))
#define SC_ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define SC_SHR(x, n) ((x) >> (n))
#define SC_TABLE(t, j) t[j]
#define SC_MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))
#define SC_CHOOSE(x, y, z) ((((y) ^ (z)) & (x)) ^ (z))
#define OPS SC

/* A single-stream compression: nblocks blocks from p into st. */
#define SCALAR_BLOCKS(name, ROUNDS, COMBINE)                                 \
    static void name(uint32_t st[8], const uint8_t *p, size_t nblocks) {     \
        uint32_t W[16];                                                      \
        while (nblocks--) {                                                  \
            for (int i = 0; i < 16; i++) W[i] = load_be32(p + 4 * i);        \
            STATE_ROUNDS(st, ROUNDS, COMBINE);                               \
            p += 64;                                                         \
        }                                                                    \
    }

SCALAR_BLOCKS(sm3_blocks_scalar, SM3_64ROUNDS, OP_XOR)
SCALAR_BLOCKS(sha256_blocks_scalar, SHA_64ROUNDS, OP_ADD)

#if SM3_X86
/* The same code with BMI2's rorx: rotates without a register copy. */
__attribute__((target("bmi2"))) SCALAR_BLOCKS(sm3_blocks_bmi2, SM3_64ROUNDS, OP_XOR)
__attribute__((target("bmi2"))) SCALAR_BLOCKS(sha256_blocks_bmi2, SHA_64ROUNDS, OP_ADD)
#endif

#undef OPS

typedef void (*scalar_fn)(uint32_t st[8], const uint8_t *p, size_t nblocks);

#if SM3_X86
/*
 * SHA-256 with the SHA extensions (SHA-NI): four rounds per pair of sha256rnds2, the
 * message schedule by sha256msg1/msg2. The state lives as ABEF and CDGH in two
 * registers. Group g holds message words 4g .. 4g + 3 in M[g % 4]; while its rounds run,
 * the words of group g + 1 are finished (msg2) and those of group g + 3 begun (msg1).
 */
#define SHANI_GROUP(g, cur, nxt, prv)                                                  \
    do {                                                                               \
        __m128i m = _mm_add_epi32(cur, _mm_load_si128((const __m128i *)(SHA256_K + 4 * (g)))); \
        s1 = _mm_sha256rnds2_epu32(s1, s0, m);                                         \
        if ((g) >= 3 && (g) <= 14) {                                                   \
            nxt = _mm_add_epi32(nxt, _mm_alignr_epi8(cur, prv, 4));                    \
            nxt = _mm_sha256msg2_epu32(nxt, cur);                                      \
        }                                                                              \
        s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(m, 0x0E));                \
        if ((g) >= 1 && (g) <= 12) prv = _mm_sha256msg1_epu32(prv, cur);               \
    } while (0)

__attribute__((target("sha,sse4.1"))) static void sha256_blocks_shani(uint32_t st[8],
                                                                       const uint8_t *p,
                                                                       size_t nblocks) {
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)st), 0xB1); /* CDAB */
    __m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)(st + 4)), 0x1B); /* EFGH */
    __m128i s0 = _mm_alignr_epi8(t, s1, 8);   /* ABEF */
    s1 = _mm_blend_epi16(s1, t, 0xF0);        /* CDGH */
    while (nblocks--) {
        __m128i abef = s0, cdgh = s1;
        __m128i m0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 0)), bswap);
        __m128i m1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), bswap);
        __m128i m2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), bswap);
        __m128i m3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), bswap);
        SHANI_GROUP(0, m0, m1, m3);
        SHANI_GROUP(1, m1, m2, m0);
        SHANI_GROUP(2, m2, m3, m1);
        SHANI_GROUP(3, m3, m0, m2);
        SHANI_GROUP(4, m0, m1, m3);
        SHANI_GROUP(5, m1, m2, m0);
        SHANI_GROUP(6, m2, m3, m1);
        SHANI_GROUP(7, m3, m0, m2);
        SHANI_GROUP(8, m0, m1, m3);
        SHANI_GROUP(9, m1, m2, m0);
        SHANI_GROUP(10, m2, m3, m1);
        SHANI_GROUP(11, m3, m0, m2);
        SHANI_GROUP(12, m0, m1, m3);
        SHANI_GROUP(13, m1, m2, m0);
        SHANI_GROUP(14, m2, m3, m1);
        SHANI_GROUP(15, m3, m0, m2);
        s0 = _mm_add_epi32(s0, abef);
        s1 = _mm_add_epi32(s1, cdgh);
        p += 64;
    }
    t = _mm_shuffle_epi32(s0, 0x1B);          /* FEBA */
    s1 = _mm_shuffle_epi32(s1, 0xB1);         /* DCHG */
    _mm_storeu_si128((__m128i *)st, _mm_blend_epi16(t, s1, 0xF0));       /* DCBA */
    _mm_storeu_si128((__m128i *)(st + 4), _mm_alignr_epi8(s1, t, 8));    /* HGFE */
}
#endif

/*
 * A lane kernel hashes nblocks blocks in every lane. st holds the lanes' states
 * transposed (word w of lane l at st[w * lanes + l]); lane l reads its blocks from
 * ptr[l] on, advancing by step[l] (0 for an idle lane, which reads a zero block).
 */
typedef void (*lane_fn)(uint32_t *st, const uint8_t *const *ptr, const size_t *step,
                        size_t nblocks);

#if SM3_X86
/* ---- AVX2, 8 lanes ----------------------------------------------------------------- */

#define V8_T __m256i
#define V8_ADD(x, y) _mm256_add_epi32(x, y)
#define V8_XOR(x, y) _mm256_xor_si256(x, y)
#define V8_XOR3(x, y, z) V8_XOR(V8_XOR(x, y), z)
#define V8_ROL(x, n) _mm256_or_si256(_mm256_slli_epi32(x, n), _mm256_srli_epi32(x, 32 - (n)))
#define V8_ROR(x, n) _mm256_or_si256(_mm256_srli_epi32(x, n), _mm256_slli_epi32(x, 32 - (n)))
#define V8_SHR(x, n) _mm256_srli_epi32(x, n)
#define V8_TABLE(t, j) _mm256_loadu_si256((const __m256i *)t##_WIDE[j])
#define V8_MAJ(x, y, z) \
    _mm256_or_si256(_mm256_and_si256(x, y), _mm256_and_si256(z, _mm256_or_si256(x, y)))
#define V8_CHOOSE(x, y, z) V8_XOR(_mm256_and_si256(V8_XOR(y, z), x), z)
#define OPS V8

/* Eight rows (one per lane, eight words each) into eight columns (one per word). */
__attribute__((target("avx2"))) static inline void transpose8(__m256i r[8]) {
    __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    r[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
    r[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
    r[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
    r[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
    r[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    r[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    r[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    r[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

#define V8_TARGET __attribute__((target("avx2")))
#define V8_LANES 8
#define V8_BSWAP                                                                           \
    _mm256_setr_epi8(3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, \
                     4, 11, 10, 9, 8, 15, 14, 13, 12)
#define V8_LOAD(q) _mm256_loadu_si256((const __m256i *)(q))
#define V8_STORE(q, v) _mm256_storeu_si256((__m256i *)(q), v)
/* A block of each lane, in two 32-byte halves, as the sixteen message words. */
#define V8_MESSAGE(W, p, bswap)                                                            \
    for (int half = 0; half < 2; half++) {                                                 \
        __m256i r[8];                                                                      \
        for (int l = 0; l < 8; l++) {                                                      \
            if (half == 0) _mm_prefetch((const char *)p[l] + PREFETCH_AHEAD, _MM_HINT_T0); \
            r[l] = _mm256_shuffle_epi8(V8_LOAD(p[l] + 32 * half), bswap);                  \
        }                                                                                  \
        transpose8(r);                                                                     \
        for (int w = 0; w < 8; w++) W[8 * half + w] = r[w];                                \
    }

LANE_KERNEL(sm3_lanes_avx2, SM3_64ROUNDS, OP_XOR)
LANE_KERNEL(sha256_lanes_avx2, SHA_64ROUNDS, OP_ADD)

#undef OPS

/* ---- AVX-512, 16 lanes: vprold rotates, vpternlogd three-input booleans ------------- */

#define V16_T __m512i
#define V16_ADD(x, y) _mm512_add_epi32(x, y)
#define V16_XOR(x, y) _mm512_xor_si512(x, y)
#define V16_XOR3(x, y, z) _mm512_ternarylogic_epi32(x, y, z, 0x96)
#define V16_ROL(x, n) _mm512_rol_epi32(x, n)
#define V16_ROR(x, n) _mm512_ror_epi32(x, n)
#define V16_SHR(x, n) _mm512_srli_epi32(x, n)
#define V16_TABLE(t, j) _mm512_loadu_si512((const void *)t##_WIDE[j])
#define V16_MAJ(x, y, z) _mm512_ternarylogic_epi32(x, y, z, 0xE8)
#define V16_CHOOSE(x, y, z) _mm512_ternarylogic_epi32(x, y, z, 0xCA)
#define OPS V16

/* Sixteen rows (lanes) of sixteen words into sixteen columns (words). */
__attribute__((target("avx512f"))) static inline void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    /* u[4g + k], 128-bit lane q: word 4q + k of rows 4g .. 4g + 3 */
    for (int g = 0; g < 4; g++) {
        __m512i *tg = t + 4 * g;
        u[4 * g + 0] = _mm512_unpacklo_epi64(tg[0], tg[2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(tg[0], tg[2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(tg[1], tg[3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(tg[1], tg[3]);
    }
    for (int k = 0; k < 4; k++) {
        __m512i s0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x44);
        __m512i s1 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xEE);
        __m512i s2 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x44);
        __m512i s3 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xEE);
        r[k] = _mm512_shuffle_i32x4(s0, s2, 0x88);
        r[4 + k] = _mm512_shuffle_i32x4(s0, s2, 0xDD);
        r[8 + k] = _mm512_shuffle_i32x4(s1, s3, 0x88);
        r[12 + k] = _mm512_shuffle_i32x4(s1, s3, 0xDD);
    }
}

#define V16_TARGET __attribute__((target("avx512f,avx512bw")))
#define V16_LANES 16
#define V16_BSWAP \
    _mm512_broadcast_i32x4(_mm_setr_epi8(3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12))
#define V16_LOAD(q) _mm512_loadu_si512((const void *)(q))
#define V16_STORE(q, v) _mm512_storeu_si512((void *)(q), v)
/* A 64-byte block of each lane as the sixteen message words; sixteen streams at once are
 * more than the hardware prefetcher follows. */
#define V16_MESSAGE(W, p, bswap)                                                 \
    do {                                                                         \
        for (int l = 0; l < 16; l++) {                                           \
            _mm_prefetch((const char *)p[l] + PREFETCH_AHEAD, _MM_HINT_T0);      \
            W[l] = _mm512_shuffle_epi8(V16_LOAD(p[l]), bswap);                   \
        }                                                                        \
        transpose16(W);                                                          \
    } while (0)

LANE_KERNEL(sm3_lanes_avx512, SM3_64ROUNDS, OP_XOR)
LANE_KERNEL(sha256_lanes_avx512, SHA_64ROUNDS, OP_ADD)

#undef OPS
#endif /* SM3_X86 */

/* ---- paths ------------------------------------------------------------------------- */

enum { PATH_SCALAR = 0, PATH_AVX2 = 1, PATH_AVX512 = 2, NPATHS = 3 };
static const char *const PATH_NAMES[NPATHS] = {"scalar", "avx2", "avx512"};
static const int PATH_LANES[NPATHS] = {1, 8, 16};

static int path_supported[NPATHS];
static int current_path = PATH_SCALAR;
static const char *scalar_isa = "generic";

/*
 * What differs between the two hashes the engine runs: the initial state, the
 * single-stream compression (chosen at import from cpuid) and the lane kernels. The
 * padding, the big-endian words and the job machinery are the same for both.
 */
typedef struct {
    const char *name;
    const uint32_t *iv;
    scalar_fn one;
    const char *one_isa;
    lane_fn lanes[NPATHS];
    /* When no job is left to start and at most this many lanes are still busy, drive()
     * finishes them one after another on the single-stream code: fewer lanes than that
     * hash slower in the vector than alone. */
    int solo[NPATHS];
} algo_t;

static algo_t ALGO_SM3 = {"sm3", SM3_IV, sm3_blocks_scalar, "generic", {NULL, NULL, NULL},
                          {1, 1, 1}};
static algo_t ALGO_SHA256 = {"sha256", SHA256_IV, sha256_blocks_scalar, "generic",
                             {NULL, NULL, NULL}, {1, 1, 1}};
static int has_sha_ni = 0;

/*
 * SHA-256's single-stream code and lanes, with SHA-NI (when the CPU has it and `shani`)
 * or as on a CPU without it (set_sha_ni(False): the tests check that code here too).
 */
static void sha256_configure(int shani) {
#if SM3_X86
    int bmi2 = __builtin_cpu_supports("bmi2");
    ALGO_SHA256.one = bmi2 ? sha256_blocks_bmi2 : sha256_blocks_scalar;
    ALGO_SHA256.one_isa = bmi2 ? "bmi2" : "generic";
    ALGO_SHA256.lanes[PATH_AVX2] = sha256_lanes_avx2;
    ALGO_SHA256.lanes[PATH_AVX512] = sha256_lanes_avx512;
    ALGO_SHA256.solo[PATH_AVX512] = 1;
    if (shani && has_sha_ni) {
        ALGO_SHA256.one = sha256_blocks_shani;
        ALGO_SHA256.one_isa = "sha-ni";
        /* Measured on a Xeon with AVX-512 and SHA-NI (bench/hash, 2026-12-07): SHA-NI
         * hashes one stream at 1.6-1.7 GB/s, the 16 lanes about 3.4 GB/s in all, so
         * below 8 busy lanes one stream after another on SHA-NI is faster; and 8 lanes
         * of AVX2 (1.2 GB/s in all) lose to it outright, so with SHA-NI the avx2 path
         * hashes SHA-256 one stream at a time. */
        ALGO_SHA256.lanes[PATH_AVX2] = NULL;
        ALGO_SHA256.solo[PATH_AVX512] = 7;
    }
#else
    (void)shani;
#endif
}

static void detect_cpu(void) {
    path_supported[PATH_SCALAR] = 1;
#if SM3_X86
    __builtin_cpu_init();
    path_supported[PATH_AVX2] = __builtin_cpu_supports("avx2");
    path_supported[PATH_AVX512] =
        __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    if (__builtin_cpu_supports("bmi2")) {
        ALGO_SM3.one = sm3_blocks_bmi2;
        scalar_isa = ALGO_SM3.one_isa = "bmi2";
    }
    /* SHA-NI: cpuid leaf 7, sub-leaf 0, EBX bit 29 (GCC 12's __builtin_cpu_supports
     * does not know "sha"); the code also needs SSE4.1 (a blend), which such CPUs have. */
    unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (ebx >> 29) & 1 &&
        __builtin_cpu_supports("sse4.1"))
        has_sha_ni = 1;
    ALGO_SM3.lanes[PATH_AVX2] = sm3_lanes_avx2;
    ALGO_SM3.lanes[PATH_AVX512] = sm3_lanes_avx512;
#endif
    sha256_configure(1);
}

/* ---- the lane scheduler ------------------------------------------------------------ */

/*
 * A job: hash up to three runs of whole blocks into one state. A job that finishes a
 * message also carries its tail (the last partial block, padded with the length), which
 * is built in the lane's own scratch when the job starts, so that no per-message buffer
 * is needed however many messages a batch holds.
 */
typedef struct {
    uint32_t *state;
    const uint8_t *seg[3];
    size_t nseg[3]; /* blocks in each run; nseg[2] is set when a tail is built */
    const uint8_t *tail_src;
    size_t tail_len;    /* bytes of the last partial block */
    uint64_t total_len; /* the message's whole length, for the padding */
    int final;
} job_t;

typedef int (*next_job_fn)(void *src, job_t *job);

/* Pad the message's last partial block into out (64 or 128 bytes); returns blocks. */
static size_t build_tail(uint8_t *out, const uint8_t *src, size_t len, uint64_t total) {
    size_t nblocks = len + 9 <= 64 ? 1 : 2;
    memset(out, 0, 64 * nblocks);
    if (len) memcpy(out, src, len);
    out[len] = 0x80;
    uint64_t bits = total << 3;
    for (int i = 0; i < 8; i++) out[64 * nblocks - 1 - i] = (uint8_t)(bits >> (8 * i));
    return nblocks;
}

static void start_job(job_t *job, uint8_t *scratch) {
    if (job->final) {
        job->seg[2] = scratch;
        job->nseg[2] = build_tail(scratch, job->tail_src, job->tail_len, job->total_len);
    }
}

static void run_one(job_t *job, uint8_t *scratch, scalar_fn one) {
    start_job(job, scratch);
    for (int i = 0; i < 3; i++)
        if (job->nseg[i]) one(job->state, job->seg[i], job->nseg[i]);
}

static const uint8_t ZERO_BLOCK[64];

typedef struct {
    job_t job;
    int seg;
    size_t left;
    int active;
} lane_t;

/* Point the lane at its job's next non-empty run; 0 when the job is done. */
static int lane_advance(lane_t *ln) {
    while (ln->seg < 3 && ln->job.nseg[ln->seg] == 0) ln->seg++;
    if (ln->seg == 3) return 0;
    ln->left = ln->job.nseg[ln->seg];
    return 1;
}

/* The kernels prefetch PREFETCH_AHEAD bytes ahead of each lane; a lane that has just
 * taken a new message would meanwhile wait for memory on each of its first blocks. */
static void prefetch_start(const lane_t *ln) {
#if SM3_X86
    const uint8_t *p = ln->job.seg[ln->seg];
    size_t n = 64 * ln->left < PREFETCH_AHEAD ? 64 * ln->left : PREFETCH_AHEAD;
    for (size_t i = 0; i < n; i += 64) _mm_prefetch((const char *)p + i, _MM_HINT_T0);
#else
    (void)ln;
#endif
}

/*
 * Hash every job the source yields with `lanes` lanes of `kernel`: each lane takes the
 * next job as soon as its own ends, so lanes stay full however unequal the jobs are.
 * When a single job is left it runs on the scalar code (a lone lane in a vector is
 * slower than scalar).
 */
static void drive(int lanes, lane_fn kernel, scalar_fn blocks_one, int solo,
                  next_job_fn next, void *src) {
    lane_t ln[MAX_LANES];
    const uint8_t *ptr[MAX_LANES];
    size_t step[MAX_LANES];
    uint32_t st[8 * MAX_LANES];
    uint8_t scratch[MAX_LANES][128];
    int more = 1;
    memset(ln, 0, sizeof ln);
    for (;;) {
        int active = 0;
        for (int l = 0; l < lanes; l++) {
            while (!ln[l].active && more) {
                if (!next(src, &ln[l].job)) {
                    more = 0;
                    break;
                }
                start_job(&ln[l].job, scratch[l]);
                ln[l].seg = 0;
                if (!lane_advance(&ln[l])) continue; /* nothing to hash */
                ln[l].active = 1;
                prefetch_start(&ln[l]);
                for (int w = 0; w < 8; w++) st[w * lanes + l] = ln[l].job.state[w];
            }
            active += ln[l].active;
        }
        if (active == 0) return;
        if (active <= solo && !more) {
            for (int l = 0; l < lanes; l++) {
                if (!ln[l].active) continue;
                uint32_t one[8];
                for (int w = 0; w < 8; w++) one[w] = st[w * lanes + l];
                const uint8_t *p = ln[l].job.seg[ln[l].seg] +
                                   64 * (ln[l].job.nseg[ln[l].seg] - ln[l].left);
                blocks_one(one, p, ln[l].left);
                for (int s = ln[l].seg + 1; s < 3; s++)
                    if (ln[l].job.nseg[s]) blocks_one(one, ln[l].job.seg[s], ln[l].job.nseg[s]);
                memcpy(ln[l].job.state, one, sizeof one);
            }
            return;
        }
        size_t m = SIZE_MAX;
        for (int l = 0; l < lanes; l++) {
            if (ln[l].active) {
                if (ln[l].left < m) m = ln[l].left;
                ptr[l] = ln[l].job.seg[ln[l].seg] + 64 * (ln[l].job.nseg[ln[l].seg] - ln[l].left);
                step[l] = 64;
            } else {
                ptr[l] = ZERO_BLOCK;
                step[l] = 0;
            }
        }
        kernel(st, ptr, step, m);
        for (int l = 0; l < lanes; l++) {
            if (!ln[l].active) continue;
            ln[l].left -= m;
            if (ln[l].left) continue;
            ln[l].seg++;
            if (lane_advance(&ln[l])) continue;
            for (int w = 0; w < 8; w++) ln[l].job.state[w] = st[w * lanes + l];
            ln[l].active = 0;
        }
    }
}

/* Run jobs of `algo` on `path`: lanes when it has them, else one job after another. */
static void run_jobs(int path, const algo_t *algo, next_job_fn next, void *src) {
    lane_fn kernel = algo->lanes[path];
    if (kernel) {
        drive(PATH_LANES[path], kernel, algo->one, algo->solo[path], next, src);
        return;
    }
    job_t job;
    uint8_t scratch[128];
    while (next(src, &job)) run_one(&job, scratch, algo->one);
}

/* Split a message (or its rest after `before` bytes already hashed) into a final job. */
static void final_job(job_t *job, uint32_t *state, const uint8_t *data, size_t len,
                      uint64_t before) {
    memset(job, 0, sizeof *job);
    job->state = state;
    job->seg[0] = data;
    job->nseg[0] = len / 64;
    job->final = 1;
    job->tail_src = data + 64 * (len / 64);
    job->tail_len = len % 64;
    job->total_len = before + len;
}

static void state_to_digest(const uint32_t st[8], uint8_t out[32]) {
    for (int w = 0; w < 8; w++) store_be32(out + 4 * w, st[w]);
}

/* ---- the SM3 object: an incremental context like hashlib's --------------------------- */

typedef struct {
    uint32_t state[8];
    uint64_t length;
    uint8_t buf[64];
    size_t buflen;
    const algo_t *algo;
} ctx_t;

typedef struct {
    PyObject_HEAD
    ctx_t ctx;
    int busy; /* set, under the GIL, while the GIL is released over this context */
} SM3Object;

static PyTypeObject SM3Type, SHA256Type;

static int is_hasher(PyObject *o) {
    return PyObject_TypeCheck(o, &SM3Type) || PyObject_TypeCheck(o, &SHA256Type);
}

static void ctx_init(ctx_t *c, const algo_t *algo) {
    c->algo = algo;
    memcpy(c->state, algo->iv, 32);
    c->length = 0;
    c->buflen = 0;
}

/*
 * Add data to the context's buffer and return the job for the whole blocks: the
 * buffered block (when data completes it) and the data's own whole blocks. The bytes
 * left over are buffered by ctx_after_job once the job has run.
 */
static void ctx_job(ctx_t *c, const uint8_t *data, size_t len, job_t *job) {
    memset(job, 0, sizeof *job);
    job->state = c->state;
    c->length += len;
    if (c->buflen) {
        size_t take = 64 - c->buflen < len ? 64 - c->buflen : len;
        memcpy(c->buf + c->buflen, data, take);
        c->buflen += take;
        data += take;
        len -= take;
        if (c->buflen < 64) return;
        job->seg[0] = c->buf;
        job->nseg[0] = 1;
    }
    job->seg[1] = data;
    job->nseg[1] = len / 64;
    job->tail_src = data + 64 * (len / 64);
    job->tail_len = len % 64;
}

static void ctx_after_job(ctx_t *c, const job_t *job) {
    if (job->nseg[0]) c->buflen = 0;
    if (job->tail_len) {
        memcpy(c->buf + c->buflen, job->tail_src, job->tail_len);
        c->buflen += job->tail_len;
    }
}

static void ctx_update(ctx_t *c, const uint8_t *data, size_t len) {
    job_t job;
    ctx_job(c, data, len, &job);
    for (int i = 0; i < 2; i++)
        if (job.nseg[i]) c->algo->one(c->state, job.seg[i], job.nseg[i]);
    ctx_after_job(c, &job);
}

static void ctx_digest(const ctx_t *c, uint8_t out[32]) {
    uint32_t st[8];
    uint8_t tail[128];
    memcpy(st, c->state, sizeof st);
    size_t n = build_tail(tail, c->buf, c->buflen, c->length);
    c->algo->one(st, tail, n);
    state_to_digest(st, out);
}

static int not_busy(SM3Object *self);

static int claim(SM3Object *self) {
    if (not_busy(self) < 0) return -1;
    self->busy = 1;
    return 0;
}

static PyObject *SM3_update(SM3Object *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    if (claim(self) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    if (view.len >= GIL_MIN) {
        Py_BEGIN_ALLOW_THREADS
        ctx_update(&self->ctx, view.buf, (size_t)view.len);
        Py_END_ALLOW_THREADS
    } else {
        ctx_update(&self->ctx, view.buf, (size_t)view.len);
    }
    self->busy = 0;
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

/* Reading a context another thread is updating would give a digest of no defined bytes. */
static int not_busy(SM3Object *self) {
    if (!self->busy) return 0;
    PyErr_Format(PyExc_RuntimeError, "this %s object is being updated by another thread",
                 self->ctx.algo == &ALGO_SM3 ? "SM3" : "SHA-256");
    return -1;
}

static PyObject *SM3_digest(SM3Object *self, PyObject *Py_UNUSED(ignored)) {
    uint8_t out[32];
    if (not_busy(self) < 0) return NULL;
    ctx_digest(&self->ctx, out);
    return PyBytes_FromStringAndSize((const char *)out, 32);
}

static PyObject *SM3_hexdigest(SM3Object *self, PyObject *Py_UNUSED(ignored)) {
    static const char hexchars[] = "0123456789abcdef";
    uint8_t out[32];
    char hex[64];
    if (not_busy(self) < 0) return NULL;
    ctx_digest(&self->ctx, out);
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = hexchars[out[i] >> 4];
        hex[2 * i + 1] = hexchars[out[i] & 15];
    }
    return PyUnicode_FromStringAndSize(hex, 64);
}

static PyObject *SM3_copy(SM3Object *self, PyObject *Py_UNUSED(ignored)) {
    if (not_busy(self) < 0) return NULL;
    SM3Object *other = PyObject_New(SM3Object, Py_TYPE(self));
    if (other == NULL) return NULL;
    other->ctx = self->ctx;
    other->busy = 0;
    return (PyObject *)other;
}

static PyObject *SM3_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"data", NULL};
    PyObject *data = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:SM3", kwlist, &data)) return NULL;
    SM3Object *self = (SM3Object *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    ctx_init(&self->ctx, PyType_IsSubtype(type, &SHA256Type) ? &ALGO_SHA256 : &ALGO_SM3);
    self->busy = 0;
    if (data != NULL) {
        PyObject *r = SM3_update(self, data);
        if (r == NULL) {
            Py_DECREF(self);
            return NULL;
        }
        Py_DECREF(r);
    }
    return (PyObject *)self;
}

static PyObject *SM3_get_name(PyObject *self, void *closure) {
    return PyUnicode_FromString(((SM3Object *)self)->ctx.algo->name);
}
static PyObject *SM3_get_digest_size(PyObject *self, void *closure) {
    return PyLong_FromLong(32);
}
static PyObject *SM3_get_block_size(PyObject *self, void *closure) {
    return PyLong_FromLong(64);
}

static PyMethodDef SM3_methods[] = {
    {"update", (PyCFunction)SM3_update, METH_O, "Hash more bytes."},
    {"digest", (PyCFunction)SM3_digest, METH_NOARGS, "The digest of the bytes so far."},
    {"hexdigest", (PyCFunction)SM3_hexdigest, METH_NOARGS, "The digest in hexadecimal."},
    {"copy", (PyCFunction)SM3_copy, METH_NOARGS, "An independent copy of this context."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef SM3_getset[] = {
    {"name", SM3_get_name, NULL, NULL, NULL},
    {"digest_size", SM3_get_digest_size, NULL, NULL, NULL},
    {"block_size", SM3_get_block_size, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

/* One type per hash, so that isinstance and repr tell them apart; everything but the
 * name and the doc is shared (the context's algo_t says which hash it runs). */
#define HASHER_TYPE(pyname, hash)                                                  \
    {                                                                              \
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "sm3engine._sm3engine." pyname,   \
        .tp_basicsize = sizeof(SM3Object),                                         \
        .tp_flags = Py_TPFLAGS_DEFAULT,                                            \
        .tp_doc = "An incremental " hash " context (update, digest, hexdigest, copy).", \
        .tp_new = SM3_new,                                                         \
        .tp_methods = SM3_methods,                                                 \
        .tp_getset = SM3_getset,                                                   \
    }

static PyTypeObject SM3Type = HASHER_TYPE("SM3", "SM3");
static PyTypeObject SHA256Type = HASHER_TYPE("SHA256", "SHA-256");

/* ---- many streams and many messages at once ------------------------------------------ */

typedef struct {
    Py_buffer *views;
    uint32_t *states;
    Py_ssize_t n, i;
    const uint32_t *iv;
} many_src;

/* The algorithm named by a hash_many/hash_batch argument (NULL: SM3). */
static const algo_t *algo_named(const char *name) {
    if (name == NULL || strcmp(name, "sm3") == 0) return &ALGO_SM3;
    if (strcmp(name, "sha256") == 0) return &ALGO_SHA256;
    PyErr_Format(PyExc_ValueError, "unknown hash %s (sm3 or sha256)", name);
    return NULL;
}

static int next_many(void *p, job_t *job) {
    many_src *s = p;
    if (s->i >= s->n) return 0;
    uint32_t *st = s->states + 8 * s->i;
    memcpy(st, s->iv, 32);
    final_job(job, st, s->views[s->i].buf, (size_t)s->views[s->i].len, 0);
    s->i++;
    return 1;
}

static PyObject *digests_list(const uint32_t *states, Py_ssize_t n) {
    PyObject *list = PyList_New(n);
    if (list == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t out[32];
        state_to_digest(states + 8 * i, out);
        PyObject *b = PyBytes_FromStringAndSize((const char *)out, 32);
        if (b == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, b);
    }
    return list;
}

/*
 * A tuple of the sequence's items, holding a reference to each. The items' buffers and
 * SM3 objects are used while the GIL is released, and getting a buffer or an integer can
 * run Python code: the caller's list may shrink or drop its items meanwhile, a tuple
 * cannot.
 */
static PyObject *snapshot(PyObject *obj, const char *message) {
    PyObject *fast = PySequence_Fast(obj, message);
    if (fast == NULL) return NULL;
    PyObject *items = PySequence_Tuple(fast);
    Py_DECREF(fast);
    return items;
}

static PyObject *hash_many(PyObject *module, PyObject *args) {
    PyObject *arg;
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "O|s:hash_many", &arg, &name)) return NULL;
    const algo_t *algo = algo_named(name);
    if (algo == NULL) return NULL;
    PyObject *seq = snapshot(arg, "hash_many() takes a sequence of buffers");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(seq), got = 0;
    PyObject *result = NULL;
    Py_buffer *views = PyMem_Calloc((size_t)n + 1, sizeof *views);
    uint32_t *states = PyMem_Malloc(((size_t)n + 1) * 32);
    if (views == NULL || states == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < n; got++)
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(seq, got), &views[got], PyBUF_SIMPLE) < 0)
            goto done;
    many_src src = {views, states, n, 0, algo->iv};
    int path = current_path;
    Py_BEGIN_ALLOW_THREADS
    run_jobs(path, algo, next_many, &src);
    Py_END_ALLOW_THREADS
    result = digests_list(states, n);
done:
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(states);
    Py_DECREF(seq);
    return result;
}

typedef struct {
    const uint8_t *base;
    const int64_t *offsets;
    uint32_t *states;
    Py_ssize_t n, i;
    const uint32_t *iv;
} batch_src;

static int next_batch(void *p, job_t *job) {
    batch_src *s = p;
    if (s->i >= s->n) return 0;
    uint32_t *st = s->states + 8 * s->i;
    memcpy(st, s->iv, 32);
    int64_t a = s->offsets[s->i], b = s->offsets[s->i + 1];
    final_job(job, st, s->base + a, (size_t)(b - a), 0);
    s->i++;
    return 1;
}

/* The offsets as int64: from a buffer of 8-byte integers (array('q'), numpy int64), at
 * the cost of one copy, or else from a sequence of Python ints. */
static int64_t *read_offsets(PyObject *obj, Py_ssize_t *count) {
    if (PyObject_CheckBuffer(obj)) {
        Py_buffer b;
        if (PyObject_GetBuffer(obj, &b, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) return NULL;
        const char *f = b.format;
        int ok = b.itemsize == 8 && f != NULL && *f && strchr("qQlL", f[strlen(f) - 1]);
        int64_t *out = ok ? PyMem_Malloc((size_t)b.len + 8) : NULL;
        if (out != NULL) {
            memcpy(out, b.buf, (size_t)b.len);
            *count = b.len / 8;
        }
        PyBuffer_Release(&b);
        if (!ok) PyErr_SetString(PyExc_TypeError, "offsets must be 8-byte integers");
        else if (out == NULL) PyErr_NoMemory();
        return out;
    }
    PyObject *seq = snapshot(obj, "offsets must be a sequence of integers");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    int64_t *out = PyMem_Malloc(((size_t)n + 1) * sizeof *out);
    if (out == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(seq, i));
        if (out[i] == -1 && PyErr_Occurred()) {
            PyMem_Free(out);
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    *count = n;
    return out;
}

static PyObject *hash_batch(PyObject *module, PyObject *args) {
    PyObject *data, *offs;
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "OO|s:hash_batch", &data, &offs, &name)) return NULL;
    const algo_t *algo = algo_named(name);
    if (algo == NULL) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return NULL;
    Py_ssize_t count = 0;
    PyObject *result = NULL;
    uint32_t *states = NULL;
    int64_t *offsets = read_offsets(offs, &count);
    if (offsets == NULL) goto done;
    if (count < 1) {
        PyErr_SetString(PyExc_ValueError, "offsets must hold at least the start offset");
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (offsets[i] < 0 || offsets[i] > view.len || (i && offsets[i] < offsets[i - 1])) {
            PyErr_SetString(PyExc_ValueError,
                            "offsets must be ascending and within the buffer");
            goto done;
        }
    }
    states = PyMem_Malloc((size_t)count * 32);
    if (states == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    batch_src src = {view.buf, offsets, states, count - 1, 0, algo->iv};
    int path = current_path;
    Py_BEGIN_ALLOW_THREADS
    run_jobs(path, algo, next_batch, &src);
    Py_END_ALLOW_THREADS
    /* One bytes object for all the digests: one Python object per message would cost
     * about as much as hashing a few hundred bytes of it. */
    result = PyBytes_FromStringAndSize(NULL, 32 * (count - 1));
    if (result != NULL)
        for (Py_ssize_t i = 0; i < count - 1; i++)
            state_to_digest(states + 8 * i, (uint8_t *)PyBytes_AS_STRING(result) + 32 * i);
done:
    PyMem_Free(states);
    PyMem_Free(offsets);
    PyBuffer_Release(&view);
    return result;
}

typedef struct {
    SM3Object **objs;
    Py_buffer *views;
    job_t *jobs;
    Py_ssize_t n, i;
    const algo_t *algo; /* this pass takes only the jobs of this algorithm's objects */
} update_src;

static int next_update(void *p, job_t *job) {
    update_src *s = p;
    while (s->i < s->n && s->objs[s->i]->ctx.algo != s->algo) s->i++;
    if (s->i >= s->n) return 0;
    *job = s->jobs[s->i++];
    return 1;
}

static void release_update(SM3Object **objs, Py_buffer *views, Py_ssize_t claimed,
                           Py_ssize_t viewed) {
    for (Py_ssize_t i = 0; i < claimed; i++) objs[i]->busy = 0;
    for (Py_ssize_t i = 0; i < viewed; i++) PyBuffer_Release(&views[i]);
}

static PyObject *update_many(PyObject *module, PyObject *args) {
    PyObject *hs, *cs;
    if (!PyArg_ParseTuple(args, "OO:update_many", &hs, &cs)) return NULL;
    PyObject *hseq = snapshot(hs, "update_many() takes a sequence of SM3 or SHA256 objects");
    if (hseq == NULL) return NULL;
    PyObject *cseq = snapshot(cs, "update_many() takes a sequence of buffers");
    if (cseq == NULL) {
        Py_DECREF(hseq);
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(hseq), claimed = 0, viewed = 0;
    PyObject *result = NULL;
    SM3Object **objs = PyMem_Calloc((size_t)n + 1, sizeof *objs);
    Py_buffer *views = PyMem_Calloc((size_t)n + 1, sizeof *views);
    job_t *jobs = PyMem_Calloc((size_t)n + 1, sizeof *jobs);
    if (PyTuple_GET_SIZE(cseq) != n) {
        PyErr_SetString(PyExc_ValueError, "update_many() needs one chunk per hasher");
        goto done;
    }
    if (objs == NULL || views == NULL || jobs == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; claimed < n; claimed++) {
        PyObject *h = PyTuple_GET_ITEM(hseq, claimed);
        if (!is_hasher(h)) {
            PyErr_SetString(PyExc_TypeError,
                            "update_many() takes SM3 or SHA256 objects of this engine");
            goto done;
        }
        /* borrowed from hseq, a tuple this call keeps until after the last write */
        objs[claimed] = (SM3Object *)h;
        /* the same object twice would be two updates in no defined order */
        if (claim(objs[claimed]) < 0) goto done;
    }
    for (; viewed < n; viewed++)
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(cseq, viewed), &views[viewed],
                               PyBUF_SIMPLE) < 0)
            goto done;
    for (Py_ssize_t i = 0; i < n; i++)
        ctx_job(&objs[i]->ctx, views[i].buf, (size_t)views[i].len, &jobs[i]);
    /* each algorithm's jobs through its own kernel, one pass after the other */
    int nsha = 0;
    for (Py_ssize_t i = 0; i < n; i++) nsha += objs[i]->ctx.algo == &ALGO_SHA256;
    update_src sm3_src = {objs, views, jobs, n, 0, &ALGO_SM3};
    update_src sha_src = {objs, views, jobs, n, 0, &ALGO_SHA256};
    int path = current_path;
    Py_BEGIN_ALLOW_THREADS
    if (nsha < n) run_jobs(path, &ALGO_SM3, next_update, &sm3_src);
    if (nsha > 0) run_jobs(path, &ALGO_SHA256, next_update, &sha_src);
    Py_END_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) ctx_after_job(&objs[i]->ctx, &jobs[i]);
    result = Py_None;
    Py_INCREF(result);
done:
    /* an object whose claim failed is not in objs[0 .. claimed): it stays as it was */
    release_update(objs, views, claimed, viewed);
    PyMem_Free(objs);
    PyMem_Free(views);
    PyMem_Free(jobs);
    Py_DECREF(hseq);
    Py_DECREF(cseq);
    return result;
}

/* ---- paths and information ----------------------------------------------------------- */

static int path_index(const char *name) {
    for (int i = 0; i < NPATHS; i++)
        if (strcmp(name, PATH_NAMES[i]) == 0) return i;
    return -1;
}

static PyObject *set_path(PyObject *module, PyObject *arg) {
    const char *name = PyUnicode_AsUTF8(arg);
    if (name == NULL) return NULL;
    int i = path_index(name);
    if (i < 0) {
        PyErr_Format(PyExc_ValueError, "unknown SM3 path %R (avx512, avx2 or scalar)", arg);
        return NULL;
    }
    if (!path_supported[i]) {
        PyErr_Format(PyExc_ValueError, "this CPU cannot run the %s path", name);
        return NULL;
    }
    current_path = i;
    Py_RETURN_NONE;
}

static PyObject *get_path(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    return PyUnicode_FromString(PATH_NAMES[current_path]);
}

static PyObject *supported_paths(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    PyObject *list = PyList_New(0);
    if (list == NULL) return NULL;
    for (int i = NPATHS - 1; i >= 0; i--) {
        if (!path_supported[i]) continue;
        PyObject *s = PyUnicode_FromString(PATH_NAMES[i]);
        if (s == NULL || PyList_Append(list, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(s);
    }
    return list;
}

static PyObject *lanes(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    return PyLong_FromLong(PATH_LANES[current_path]);
}

static PyObject *scalar_instructions(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    return PyUnicode_FromString(scalar_isa);
}

static PyObject *sha256_instructions(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    return PyUnicode_FromString(ALGO_SHA256.one_isa);
}

/* Off: single SHA-256 streams use the portable code even where the CPU has SHA-NI (so
 * that the tests check it there too). Returns whether SHA-NI is now used. */
static PyObject *set_sha_ni(PyObject *module, PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    sha256_configure(on);
    return PyBool_FromLong(ALGO_SHA256.one_isa[0] == 's');
}


static PyMethodDef module_methods[] = {
    {"hash_many", hash_many, METH_VARARGS,
     "Digests (SM3, or the hash named: sm3, sha256) of many buffers, hashed side by side."},
    {"hash_batch", hash_batch, METH_VARARGS,
     "Digests (SM3, or the hash named) of buffer[offsets[i]:offsets[i+1]], concatenated."},
    {"update_many", update_many, METH_VARARGS,
     "Feed chunks[i] to hashers[i] for every i, the streams side by side."},
    {"set_path", set_path, METH_O, "Use this path from now on: avx512, avx2 or scalar."},
    {"get_path", get_path, METH_NOARGS, "The path in use."},
    {"supported_paths", supported_paths, METH_NOARGS, "The paths this CPU can run, best first."},
    {"lanes", lanes, METH_NOARGS, "Messages hashed side by side on the path in use."},
    {"scalar_instructions", scalar_instructions, METH_NOARGS,
     "Instructions the single-stream SM3 code uses."},
    {"sha256_instructions", sha256_instructions, METH_NOARGS,
     "Instructions the single-stream SHA-256 code uses: sha-ni, bmi2 or generic."},
    {"set_sha_ni", set_sha_ni, METH_O,
     "Use SHA-NI for single SHA-256 streams (when the CPU has it) or not; for tests."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_sm3engine", "SM3 with multi-lane SIMD paths.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__sm3engine(void) {
    init_constants();
    detect_cpu();
    for (int i = NPATHS - 1; i >= 0; i--) {
        if (path_supported[i]) {
            current_path = i;
            break;
        }
    }
    const char *forced = getenv("LIUHEN_SM3_PATH");
    if (forced != NULL && *forced) {
        int i = path_index(forced);
        if (i < 0) {
            PyErr_Format(PyExc_ImportError,
                         "LIUHEN_SM3_PATH=%s: not a path (avx512, avx2 or scalar)", forced);
            return NULL;
        }
        if (!path_supported[i]) {
            PyErr_Format(PyExc_ImportError, "LIUHEN_SM3_PATH=%s: this CPU cannot run it",
                         forced);
            return NULL;
        }
        current_path = i;
    }
    if (PyType_Ready(&SM3Type) < 0 || PyType_Ready(&SHA256Type) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    Py_INCREF(&SM3Type);
    if (PyModule_AddObject(m, "SM3", (PyObject *)&SM3Type) < 0) {
        Py_DECREF(&SM3Type);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&SHA256Type);
    if (PyModule_AddObject(m, "SHA256", (PyObject *)&SHA256Type) < 0) {
        Py_DECREF(&SHA256Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
