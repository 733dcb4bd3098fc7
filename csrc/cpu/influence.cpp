// CPU kernels for label memorization and influence (docs/methods/memorization.md).
//
// Influence top-k. With K = keep [M, N] (0/1) and C = correct_test [M, T],
//   infl[i, j] = S[i, j] / n_in[i] - (colsum[j] - S[i, j]) / n_out[i],   S = K^T C,
// so one matrix product gives both masked means. S is computed tile by tile by a blocked
// GEMM (packed panels, a register-tiled micro-kernel: AVX-512 or AVX2+FMA chosen at run
// time, portable C++ otherwise) and never stored beyond one register tile. Each tile is
// screened against the running top-k threshold of its test columns with a cheap float
// bound; only the few entries that can enter a list are evaluated exactly in float64 and
// pushed. Products are accumulated in float32: exact for 0/1 inputs (M < 2^24), and
// within about M * 6e-8 relative for probabilities.
//
// Parallelism: threads share the packed K (read-only) and own disjoint blocks of test
// columns, so every column's list is updated by one thread, visiting training examples
// in increasing order (which, with the strict comparison of include/miakit/influence.h,
// keeps the lower index on ties).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "kernels_risk.h"
#include "miakit/influence.h"
#include "parallel.h"

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define MIAKIT_X86_DISPATCH 1
#include <immintrin.h>
#endif

namespace miakit {
namespace cpu {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// 64-byte aligned float buffer (packed panels are read with full-width vector loads).
struct AlignedFloats {
  float* p = nullptr;
  explicit AlignedFloats(size_t n) {
    const size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    p = static_cast<float*>(std::aligned_alloc(64, bytes > 0 ? bytes : 64));
    if (!p) throw std::bad_alloc();
  }
  ~AlignedFloats() { std::free(p); }
  AlignedFloats(const AlignedFloats&) = delete;
  AlignedFloats& operator=(const AlignedFloats&) = delete;
};

// What a micro-kernel needs besides its two panels: per-row (training example) factors
// fa = 1/n_in + 1/n_out, fb = 1/n_out and a penalty (0, or -inf for rows that never
// qualify), and per-column colsum and screening threshold. A row r of column c is a
// candidate when  acc * fa[r] - cs[c] * fb[r] + pen[r] >= thr[c].
struct Screen {
  const float* fa;
  const float* fb;
  const float* pen;
  const float* cs;
  const float* thr;
};

// acc[c][r] = sum_m a[m * MR + r] * b[m * NR + c]; tile[c * MR + r] = acc[c][r];
// mask[c] = bit r set when row r of column c passes the screen.
template <int MR, int NR>
void micro_generic(const float* a, const float* b, int64_t M, const Screen& s, float* tile,
                   uint32_t* mask) {
  float acc[NR][MR] = {};
  for (int64_t m = 0; m < M; ++m) {
    const float* am = a + m * MR;
    const float* bm = b + m * NR;
    for (int c = 0; c < NR; ++c) {
      const float bv = bm[c];
      for (int r = 0; r < MR; ++r) acc[c][r] += am[r] * bv;
    }
  }
  for (int c = 0; c < NR; ++c) {
    uint32_t bits = 0;
    for (int r = 0; r < MR; ++r) {
      tile[c * MR + r] = acc[c][r];
      const float v = acc[c][r] * s.fa[r] - s.cs[c] * s.fb[r] + s.pen[r];
      bits |= static_cast<uint32_t>(v >= s.thr[c]) << r;
    }
    mask[c] = bits;
  }
}

#if defined(MIAKIT_X86_DISPATCH)
// 32 rows (two zmm) x 12 columns: 24 accumulators, 2 loads and 12 broadcast-FMAs per m.
__attribute__((target("avx512f,fma"))) void micro_avx512(const float* a, const float* b,
                                                         int64_t M, const Screen& s,
                                                         float* tile, uint32_t* mask) {
  constexpr int NR = 12;
  __m512 c0[NR], c1[NR];
#pragma GCC unroll 12
  for (int c = 0; c < NR; ++c) {
    c0[c] = _mm512_setzero_ps();
    c1[c] = _mm512_setzero_ps();
  }
  for (int64_t m = 0; m < M; ++m) {
    const __m512 a0 = _mm512_load_ps(a + m * 32);
    const __m512 a1 = _mm512_load_ps(a + m * 32 + 16);
    const float* bm = b + m * NR;
#pragma GCC unroll 12
    for (int c = 0; c < NR; ++c) {
      const __m512 bv = _mm512_set1_ps(bm[c]);
      c0[c] = _mm512_fmadd_ps(a0, bv, c0[c]);
      c1[c] = _mm512_fmadd_ps(a1, bv, c1[c]);
    }
  }
  const __m512 fa0 = _mm512_loadu_ps(s.fa), fa1 = _mm512_loadu_ps(s.fa + 16);
  const __m512 fb0 = _mm512_loadu_ps(s.fb), fb1 = _mm512_loadu_ps(s.fb + 16);
  const __m512 p0 = _mm512_loadu_ps(s.pen), p1 = _mm512_loadu_ps(s.pen + 16);
#pragma GCC unroll 12
  for (int c = 0; c < NR; ++c) {
    _mm512_storeu_ps(tile + c * 32, c0[c]);
    _mm512_storeu_ps(tile + c * 32 + 16, c1[c]);
    const __m512 cs = _mm512_set1_ps(s.cs[c]);
    const __m512 thr = _mm512_set1_ps(s.thr[c]);
    const __m512 v0 = _mm512_fmadd_ps(c0[c], fa0, _mm512_fnmadd_ps(cs, fb0, p0));
    const __m512 v1 = _mm512_fmadd_ps(c1[c], fa1, _mm512_fnmadd_ps(cs, fb1, p1));
    const uint32_t m0 = _mm512_cmp_ps_mask(v0, thr, _CMP_GE_OQ);
    const uint32_t m1 = _mm512_cmp_ps_mask(v1, thr, _CMP_GE_OQ);
    mask[c] = m0 | (m1 << 16);
  }
}

// 16 rows (two ymm) x 6 columns: 12 accumulators.
__attribute__((target("avx2,fma"))) void micro_avx2(const float* a, const float* b, int64_t M,
                                                    const Screen& s, float* tile,
                                                    uint32_t* mask) {
  constexpr int NR = 6;
  __m256 c0[NR], c1[NR];
#pragma GCC unroll 6
  for (int c = 0; c < NR; ++c) {
    c0[c] = _mm256_setzero_ps();
    c1[c] = _mm256_setzero_ps();
  }
  for (int64_t m = 0; m < M; ++m) {
    const __m256 a0 = _mm256_load_ps(a + m * 16);
    const __m256 a1 = _mm256_load_ps(a + m * 16 + 8);
    const float* bm = b + m * NR;
#pragma GCC unroll 6
    for (int c = 0; c < NR; ++c) {
      const __m256 bv = _mm256_broadcast_ss(bm + c);
      c0[c] = _mm256_fmadd_ps(a0, bv, c0[c]);
      c1[c] = _mm256_fmadd_ps(a1, bv, c1[c]);
    }
  }
  const __m256 fa0 = _mm256_loadu_ps(s.fa), fa1 = _mm256_loadu_ps(s.fa + 8);
  const __m256 fb0 = _mm256_loadu_ps(s.fb), fb1 = _mm256_loadu_ps(s.fb + 8);
  const __m256 p0 = _mm256_loadu_ps(s.pen), p1 = _mm256_loadu_ps(s.pen + 8);
#pragma GCC unroll 6
  for (int c = 0; c < NR; ++c) {
    _mm256_storeu_ps(tile + c * 16, c0[c]);
    _mm256_storeu_ps(tile + c * 16 + 8, c1[c]);
    const __m256 cs = _mm256_set1_ps(s.cs[c]);
    const __m256 thr = _mm256_set1_ps(s.thr[c]);
    const __m256 v0 = _mm256_fmadd_ps(c0[c], fa0, _mm256_fnmadd_ps(cs, fb0, p0));
    const __m256 v1 = _mm256_fmadd_ps(c1[c], fa1, _mm256_fnmadd_ps(cs, fb1, p1));
    const uint32_t m0 = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(v0, thr, _CMP_GE_OQ)));
    const uint32_t m1 = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(v1, thr, _CMP_GE_OQ)));
    mask[c] = m0 | (m1 << 8);
  }
}
#endif

using MicroFn = void (*)(const float*, const float*, int64_t, const Screen&, float*, uint32_t*);

struct Micro {
  int mr, nr;
  MicroFn fn;
  const char* name;
};

// The widest micro-kernel this CPU runs. MIAKIT_INFLUENCE_KERNEL=avx2 or =generic asks
// for a narrower one (for tests and comparisons); a request the CPU cannot honour is
// ignored.
Micro pick_micro() {
  const char* env = std::getenv("MIAKIT_INFLUENCE_KERNEL");
  const std::string want = env ? env : "";
  const Micro generic{8, 4, micro_generic<8, 4>, "generic"};
  if (want == "generic") return generic;
#if defined(MIAKIT_X86_DISPATCH)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (__builtin_cpu_supports("avx512f") && want != "avx2") {
    return {32, 12, micro_avx512, "avx512"};
  }
  if (avx2) return {16, 6, micro_avx2, "avx2"};
#endif
  return generic;
}

// Everything derived from keep and C before the product: per-row factors and counts,
// per-column sums, screening margins, constant columns.
struct Prep {
  int64_t M = 0, N = 0, T = 0, k = 0;
  std::vector<int64_t> n_in;
  std::vector<float> fa, fb, pen;  // padded to a multiple of mr
  std::vector<uint8_t> valid;
  std::vector<double> cs, margin;
  std::vector<float> cs_f;         // padded to a multiple of nr
  std::vector<uint8_t> constant;   // every model gives the same value: infl == 0
  int64_t n_valid = 0;
};

// The threshold a column's candidates must reach: -inf while its list has room, else the
// worst held value minus the screening margin, rounded down to float.
float screen_threshold(const TopK& h, double margin) {
  if (h.n < h.k) return -kInf;
  const double t = h.v[0] - margin;
  float f = static_cast<float>(t);
  if (static_cast<double>(f) > t) f = std::nextafter(f, -kInf);
  return f;
}

}  // namespace

RiskStatus influence(const InfluenceArgs& args) {
  const Tensor& K = args.keep;
  const Tensor& C = args.c;
  const int64_t M = K.shape[0], N = K.shape[1], T = C.shape[1], k = args.vals.shape[1];
  RiskStatus st;
  const Micro micro = pick_micro();
  st.kernel = micro.name;
  const int MR = micro.mr, NR = micro.nr;
  const int64_t n_pad = (N + MR - 1) / MR * MR;
  const int64_t t_pad = (T + NR - 1) / NR * NR;
  const uint8_t* keep = K.ptr<uint8_t>();

  Prep p;
  p.n_in.assign(N, 0);
  p.fa.assign(n_pad, 0.0f);
  p.fb.assign(n_pad, 0.0f);
  p.pen.assign(n_pad, -kInf);
  p.valid.assign(n_pad, 0);
  p.cs.assign(T, 0.0);
  p.margin.assign(T, 0.0);
  p.cs_f.assign(t_pad, 0.0f);
  p.constant.assign(T, 0);
  std::vector<double> abs_cs(T, 0.0);
  int64_t nonfinite = 0, empty = 0;
  double amax = 0.0, bmax = 0.0;

#pragma omp parallel reduction(+ : nonfinite, empty) reduction(max : amax, bmax)
  {
    // Row statistics: IN counts, in blocks of rows so that keep is read row by row.
    constexpr int64_t kRowBlock = 1024;
#pragma omp for schedule(static)
    for (int64_t i0 = 0; i0 < N; i0 += kRowBlock) {
      const int64_t i1 = std::min(N, i0 + kRowBlock);
      for (int64_t m = 0; m < M; ++m) {
        const uint8_t* row = keep + m * K.strides[0];
        for (int64_t i = i0; i < i1; ++i) p.n_in[i] += row[i * K.strides[1]] != 0;
      }
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t ni = p.n_in[i], no = M - ni;
        if (ni == 0 || no == 0) {
          ++empty;
          continue;
        }
        const double a = 1.0 / ni + 1.0 / no, b = 1.0 / no;
        p.fa[i] = static_cast<float>(a);
        p.fb[i] = static_cast<float>(b);
        p.pen[i] = 0.0f;
        p.valid[i] = 1;
        amax = std::max(amax, a);
        bmax = std::max(bmax, b);
      }
    }
    // Column statistics of the float32 values the product will use.
#pragma omp for schedule(static)
    for (int64_t j0 = 0; j0 < T; j0 += kRowBlock) {
      const int64_t j1 = std::min(T, j0 + kRowBlock);
      std::vector<double> lo(j1 - j0, INFINITY), hi(j1 - j0, -INFINITY);
      for (int64_t m = 0; m < M; ++m) {
        for (int64_t j = j0; j < j1; ++j) {
          const float f = static_cast<float>(
              load_as_double(C.data, C.dtype, m * C.strides[0] + j * C.strides[1]));
          nonfinite += !std::isfinite(f);
          p.cs[j] += f;
          abs_cs[j] += std::fabs(f);
          lo[j - j0] = std::min<double>(lo[j - j0], f);
          hi[j - j0] = std::max<double>(hi[j - j0], f);
        }
      }
      for (int64_t j = j0; j < j1; ++j) {
        p.cs_f[j] = static_cast<float>(p.cs[j]);
        p.constant[j] = lo[j - j0] == hi[j - j0];
      }
    }
  }
  st.nonfinite = nonfinite;
  st.empty = empty;
  if (nonfinite) return st;
  p.n_valid = N - empty;
  for (int64_t j = 0; j < T; ++j) p.margin[j] = 1e-6 * abs_cs[j] * (amax + bmax);

  // Running lists, one per test column, and each column's screening threshold.
  std::vector<double> hv(static_cast<size_t>(T * k));
  std::vector<int64_t> hi(static_cast<size_t>(T * k));
  std::vector<int64_t> hn(T, 0);
  std::vector<float> thr(t_pad, kInf);  // padding columns never pass
  for (int64_t j = 0; j < T; ++j) {
    if (p.constant[j]) {
      // A constant column gives infl = mean - mean = 0 for every example: the list is
      // the first k examples that qualify; screening is switched off (+inf).
      TopK h{&hv[j * k], &hi[j * k], k, 0};
      for (int64_t i = 0; i < N && h.n < k; ++i) {
        if (p.valid[i]) h.push(0.0, i);
      }
      hn[j] = h.n;
    } else {
      thr[j] = -kInf;
    }
  }

  // Training rows in chunks whose packed panels take at most ~64 MiB; columns in blocks.
  const int64_t panel_floats = M * MR;
  const int64_t rows_per_chunk =
      std::max<int64_t>(MR, (int64_t(16) << 20) / std::max<int64_t>(1, M) / MR * MR);
  const int64_t chunk = std::min(n_pad, rows_per_chunk);
  const int threads = max_threads();
  int64_t jb_panels = std::max<int64_t>(1, std::min<int64_t>(20, (T / NR) / (8 * threads)));
  const int64_t jb = jb_panels * NR;
  const int64_t n_jblocks = (T + jb - 1) / jb;
  AlignedFloats kp(static_cast<size_t>(chunk * M));

#pragma omp parallel
  {
    AlignedFloats cp(static_cast<size_t>(jb * M));
    std::vector<float> tile(static_cast<size_t>(MR * NR));
    std::vector<uint32_t> mask(NR);
    for (int64_t c0 = 0; c0 < n_pad; c0 += chunk) {
      const int64_t c1 = std::min(n_pad, c0 + chunk);
      const int64_t n_panels = (c1 - c0) / MR;
      // Pack K rows [c0, c1): panel q holds rows c0 + q*MR .. + MR, as [m][r].
#pragma omp for schedule(static)
      for (int64_t q = 0; q < n_panels; ++q) {
        float* dst = kp.p + q * panel_floats;
        const int64_t i0 = c0 + q * MR;
        const int64_t nr = std::min<int64_t>(MR, N - i0);
        for (int64_t m = 0; m < M; ++m) {
          const uint8_t* row = keep + m * K.strides[0];
          float* d = dst + m * MR;
          int64_t r = 0;
          for (; r < nr; ++r) d[r] = row[(i0 + r) * K.strides[1]] != 0 ? 1.0f : 0.0f;
          for (; r < MR; ++r) d[r] = 0.0f;
        }
      }
      // Column blocks: pack C, then run every K panel against every C panel.
#pragma omp for schedule(dynamic, 1)
      for (int64_t b = 0; b < n_jblocks; ++b) {
        const int64_t j0 = b * jb, j1 = std::min(T, j0 + jb);
        const int64_t nq = (j1 - j0 + NR - 1) / NR;
        bool any = false;
        for (int64_t j = j0; j < j1; ++j) any |= !p.constant[j];
        if (!any) continue;
        for (int64_t q = 0; q < nq; ++q) {
          float* dst = cp.p + q * M * NR;
          for (int64_t m = 0; m < M; ++m) {
            for (int c = 0; c < NR; ++c) {
              const int64_t j = j0 + q * NR + c;
              dst[m * NR + c] =
                  j < j1 ? static_cast<float>(load_as_double(
                               C.data, C.dtype, m * C.strides[0] + j * C.strides[1]))
                         : 0.0f;
            }
          }
        }
        for (int64_t pq = 0; pq < n_panels; ++pq) {
          const int64_t i0 = c0 + pq * MR;
          if (i0 >= N) break;
          const float* ap = kp.p + pq * panel_floats;
          for (int64_t q = 0; q < nq; ++q) {
            const int64_t jq = j0 + q * NR;
            Screen s{&p.fa[i0], &p.fb[i0], &p.pen[i0], &p.cs_f[jq], &thr[jq]};
            micro.fn(ap, cp.p + q * M * NR, M, s, tile.data(), mask.data());
            for (int c = 0; c < NR; ++c) {
              uint32_t bits = mask[c];
              if (!bits) continue;
              const int64_t j = jq + c;
              if (j >= T || p.constant[j]) continue;
              TopK h{&hv[j * k], &hi[j * k], k, hn[j]};
              while (bits) {
                const int r = __builtin_ctz(bits);
                bits &= bits - 1;
                const int64_t i = i0 + r;
                if (!p.valid[i]) continue;
                const double v = influence_value(tile[c * MR + r], p.cs[j], p.n_in[i],
                                                 M - p.n_in[i]);
                if (h.accepts(v, i)) h.push(v, i);
              }
              hn[j] = h.n;
              thr[j] = screen_threshold(h, p.margin[j]);
            }
          }
        }
      }
    }
  }

  // Sorted lists to the outputs; NaN / -1 where fewer than k examples qualify.
  const Tensor& V = args.vals;
  const Tensor& I = args.idx;
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < T; ++j) {
    TopK h{&hv[j * k], &hi[j * k], k, hn[j]};
    h.sort();
    double* vo = V.ptr<double>() + j * V.strides[0];
    int64_t* io = I.ptr<int64_t>() + j * I.strides[0];
    for (int64_t r = 0; r < k; ++r) {
      vo[r * V.strides[1]] = r < h.n ? h.v[r] : NAN;
      io[r * I.strides[1]] = r < h.n ? h.i[r] : -1;
    }
  }
  return st;
}

RiskStatus memorization(const MemorizationArgs& a) {
  const Tensor& S = a.signal;
  const Tensor& K = a.keep;
  const int64_t M = S.shape[0], N = S.shape[1];
  const uint8_t* keep = K.ptr<uint8_t>();
  double* out = a.out.ptr<double>();
  int64_t* nin = a.n_in.ptr<int64_t>();
  int64_t nonfinite = 0, empty = 0;
  constexpr int64_t kBlock = 2048;  // examples per block: the sums stay in L1/L2
#pragma omp parallel for schedule(static) reduction(+ : nonfinite, empty)
  for (int64_t n0 = 0; n0 < N; n0 += kBlock) {
    const int64_t n1 = std::min(N, n0 + kBlock), len = n1 - n0;
    // IN and OUT sums are kept apart (not total minus IN, which could cancel).
    std::vector<double> s_in(len, 0.0), s_out(len, 0.0);
    std::vector<int64_t> c_in(len, 0);
    for (int64_t m = 0; m < M; ++m) {
      const uint8_t* krow = keep + m * K.strides[0];
      for (int64_t n = n0; n < n1; ++n) {
        const double v = load_as_double(S.data, S.dtype, m * S.strides[0] + n * S.strides[1]);
        const bool in = krow[n * K.strides[1]] != 0;
        nonfinite += !is_finite(v);
        s_in[n - n0] += in ? v : 0.0;
        s_out[n - n0] += in ? 0.0 : v;
        c_in[n - n0] += in;
      }
    }
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t ci = c_in[n - n0], co = M - ci;
      const bool side_empty = ci == 0 || co == 0;
      empty += side_empty;
      out[n * a.out.strides[0]] =
          side_empty ? NAN : memorization_value(s_in[n - n0], ci, s_out[n - n0], co);
      nin[n * a.n_in.strides[0]] = ci;
    }
  }
  return {nonfinite, empty, 0};
}

}  // namespace cpu
}  // namespace miakit
