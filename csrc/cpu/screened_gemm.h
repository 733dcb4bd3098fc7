// A float32 matrix product that is never stored: the blocked, register-tiled kernel behind
// influence top-k (influence.cpp) and exact nearest neighbours (knn.cpp). For P = A^T B with
// A [inner, rows] and B [inner, cols], packed into panels by the caller, each MR x NR register
// tile is screened,
//     P[r, c] * fa[r] - cs[c] * fb[r] + pen[r] >= thr[c],
// and only the entries that pass reach the caller, who evaluates them exactly in float64 and
// keeps a running top-k per column (include/miakit/influence.h), lowering thr[c] as the list
// fills. Micro-kernels: AVX-512 (32 x 12), AVX2+FMA (16 x 6) or portable C++ (8 x 4), chosen by
// the CPU and MIAKIT_CPU_KERNEL (isa.h).
//
// Parallelism: threads share the packed rows (read-only) and own disjoint blocks of columns,
// so every column's list has one writer, which visits rows in increasing order (with the
// strict comparison of the top-k order, the lower index wins ties).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <vector>

#include "isa.h"
#include "miakit/influence.h"
#include "parallel.h"
#include "scratch.h"
#include "tensor.h"

namespace miakit {
namespace cpu {

constexpr float kScreenInf = std::numeric_limits<float>::infinity();

// 64-byte aligned float buffer of n0 * n1 * ... floats (packed panels are read with
// full-width vector loads); a failure is a ScratchError naming `what` (scratch.h).
struct AlignedFloats {
  float* p = nullptr;
  AlignedFloats(std::initializer_list<int64_t> dims, const char* what) {
    const size_t n = scratch_count(dims, sizeof(float), what);
    const size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    p = static_cast<float*>(std::aligned_alloc(64, bytes > 0 ? bytes : 64));
    if (!p) scratch_failed(what, static_cast<double>(bytes));
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
inline void micro_generic(const float* a, const float* b, int64_t M, const Screen& s, float* tile,
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
__attribute__((target("avx512f,fma"))) inline void micro_avx512(const float* a, const float* b,
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
__attribute__((target("avx2,fma"))) inline void micro_avx2(const float* a, const float* b, int64_t M,
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

// The widest micro-kernel the CPU and MIAKIT_CPU_KERNEL (isa.h) allow.
inline Micro pick_micro() {
  switch (cpu_isa()) {
#if defined(MIAKIT_X86_DISPATCH)
    case Isa::avx512: return {32, 12, micro_avx512, "avx512"};
    case Isa::avx2: return {16, 6, micro_avx2, "avx2"};
#endif
    default: return {8, 4, micro_generic<8, 4>, "generic"};
  }
}

// The threshold a column's candidates must reach: -inf while its list has room, else
// (worst held value + offset) rounded down to float. The offset carries the screening
// margin (and, for distances, the column's own constant term).
inline float screen_threshold(const TopK& h, double offset) {
  if (h.n < h.k) return -kScreenInf;
  const double t = h.v[0] + offset;
  float f = static_cast<float>(t);
  if (static_cast<double>(f) > t) f = std::nextafter(f, -kScreenInf);
  return f;
}

// The running lists (k entries per column in hv/hi, hn[j] held) to the outputs
// vals [cols, k] float64 and idx [cols, k] int64, each sorted best first, values times
// `sign` (k-NN keeps -d^2 so that larger is better); NaN / -1 where a list is short.
inline void write_sorted_lists(std::vector<double>& hv, std::vector<int64_t>& hi,
                               const std::vector<int64_t>& hn, int64_t k, const Tensor& V,
                               const Tensor& I, double sign) {
  const int64_t cols = static_cast<int64_t>(hn.size());
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < cols; ++j) {
    TopK h{&hv[j * k], &hi[j * k], k, hn[j]};
    h.sort();
    double* vo = V.ptr<double>() + j * V.strides[0];
    int64_t* io = I.ptr<int64_t>() + j * I.strides[0];
    for (int64_t r = 0; r < k; ++r) {
      vo[r * V.strides[1]] = r < h.n ? sign * h.v[r] : NAN;
      io[r * I.strides[1]] = r < h.n ? h.i[r] : -1;
    }
  }
}

// Runs the screened product (`what` names the argument whose size the panels follow, for
// the message when they cannot be allocated). fa, fb, pen are padded to a multiple of
// micro.mr rows (padding rows with pen = -inf), cs_f and thr to a multiple of micro.nr
// columns (padding columns with thr = +inf). Callbacks:
//   pack_rows(i0, dst):       dst[m * MR + r] = A[m, i0 + r], zero past the last row;
//   pack_cols(j0, j1, dst):   dst[m * NR + c] = B[m, j0 + c], zero at j0 + c >= j1;
//   skip_col(j):              true for columns the caller settles without the product;
//   on_candidate(j, i, p):    (row i, column j) passed with P = p; called by the thread that
//                             owns column j, rows increasing; may lower thr[j].
template <class PackRows, class PackCols, class SkipCol, class OnCandidate>
void screened_product(const char* what, const Micro& micro, int64_t rows, int64_t cols,
                      int64_t inner,
                      const float* fa, const float* fb, const float* pen, const float* cs_f,
                      const float* thr, PackRows&& pack_rows, PackCols&& pack_cols,
                      SkipCol&& skip_col, OnCandidate&& on_candidate) {
  const int MR = micro.mr, NR = micro.nr;
  const int64_t n_pad = (rows + MR - 1) / MR * MR;
  // Rows in chunks whose packed panels take at most ~64 MiB; columns in blocks of up to 20
  // panels, at least 8 blocks per thread so that the dynamic schedule balances.
  const int64_t panel_floats = inner * MR;
  const int64_t rows_per_chunk =
      std::max<int64_t>(MR, (int64_t(16) << 20) / std::max<int64_t>(1, inner) / MR * MR);
  const int64_t chunk = std::min(n_pad, rows_per_chunk);
  const int threads = max_threads();
  const int64_t jb_panels =
      std::max<int64_t>(1, std::min<int64_t>(20, (cols / NR) / (8 * threads)));
  const int64_t jb = jb_panels * NR;
  const int64_t n_jblocks = (cols + jb - 1) / jb;
  AlignedFloats ap_all({chunk, inner}, what);
  // Each thread's packed columns, register tile and masks, allocated here; slices start on
  // 64-byte boundaries.
  const int64_t cp_stride = (jb * inner + 15) / 16 * 16;
  AlignedFloats cp_all({threads, cp_stride}, what);
  ThreadBuffers<float> tiles(threads, {MR, NR}, what);
  ThreadBuffers<uint32_t> masks(threads, {NR}, what);

#pragma omp parallel num_threads(threads)
  {
    const int tid = thread_id();
    float* const cp = cp_all.p + static_cast<size_t>(tid) * cp_stride;
    float* const tile = tiles.of(tid);
    uint32_t* const mask = masks.of(tid);
    for (int64_t c0 = 0; c0 < n_pad; c0 += chunk) {
      const int64_t c1 = std::min(n_pad, c0 + chunk);
      const int64_t n_panels = (c1 - c0) / MR;
#pragma omp for schedule(static)
      for (int64_t q = 0; q < n_panels; ++q) pack_rows(c0 + q * MR, ap_all.p + q * panel_floats);
#pragma omp for schedule(dynamic, 1)
      for (int64_t b = 0; b < n_jblocks; ++b) {
        const int64_t j0 = b * jb, j1 = std::min(cols, j0 + jb);
        const int64_t nq = (j1 - j0 + NR - 1) / NR;
        bool any = false;
        for (int64_t j = j0; j < j1; ++j) any |= !skip_col(j);
        if (!any) continue;
        for (int64_t q = 0; q < nq; ++q) pack_cols(j0 + q * NR, j1, cp + q * inner * NR);
        for (int64_t pq = 0; pq < n_panels; ++pq) {
          const int64_t i0 = c0 + pq * MR;
          if (i0 >= rows) break;
          const float* ap = ap_all.p + pq * panel_floats;
          for (int64_t q = 0; q < nq; ++q) {
            const int64_t jq = j0 + q * NR;
            Screen s{fa + i0, fb + i0, pen + i0, cs_f + jq, thr + jq};
            micro.fn(ap, cp + q * inner * NR, inner, s, tile, mask);
            for (int c = 0; c < NR; ++c) {
              uint32_t bits = mask[c];
              const int64_t j = jq + c;
              if (!bits || j >= cols || skip_col(j)) continue;
              while (bits) {
                const int r = __builtin_ctz(bits);
                bits &= bits - 1;
                const int64_t i = i0 + r;
                if (i < rows) on_candidate(j, i, tile[c * MR + r]);
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace cpu
}  // namespace miakit
