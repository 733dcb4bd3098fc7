// CPU kernel of the masked evaluation of many linear heads (kernels_train.h).
//
// Every head trains on its own half of the rows, so a dense product over all rows spends
// half its work on rows whose weight is zero. Here each head visits only its own rows:
// for a chunk of at most 32 of them (their features then sit in L1),
//   forward   z[c][j] = x_j . w_c                  (register tile of 3 rows x 9 classes,
//                                                   dot products reduced 16 at a time)
//   softmax   r[c][j] = w_j (softmax_c(z[:, j]) - [c == y_j]), loss, bias gradient
//   backward  g[c][:] += sum_j r[c][j] x_j         (register tile of 32 features x 9
//                                                   classes, rows inner)
// all fused, so neither the logits nor the residuals of all heads ever reach memory.
//
// Parallelism: threads own disjoint sets of heads and walk the rows in blocks, in the
// same order, so a block of features is read from memory once and then served from each
// core's cache to all of that core's heads. Each head's sums run over its rows in
// increasing order in chunks that do not depend on the number of threads: the result is
// the same bits for any number of threads.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels_train.h"
#include "miakit/softmax_ce.h"
#include "parallel.h"
#include "scratch.h"
#include "isa.h"

namespace miakit {
namespace cpu {

namespace {

constexpr int64_t kChunk = 32;       // rows of one head processed together (in L1)
constexpr int64_t kBlockRows = 256;  // rows walked together by every thread's heads
constexpr int kTileClasses = 9;      // classes of one register tile

// A chunk of one head's rows: feature pointers, weights, labels, global row numbers.
struct Chunk {
  const float* x[kChunk];
  float w[kChunk];
  int64_t y[kChunk];
  int64_t n = 0;
};

// ---- portable kernels ---------------------------------------------------------------

// z[c * kChunk + j] = x_j . w_c for j < n, c < cm; the weights in panels (see Panels).
MIAKIT_ISA_BODY void forward_generic_body(const Chunk& ch, const float* wp, int64_t cm,
                                          int64_t dp, int64_t dx, float* z) {
  (void)dp;
  for (int64_t j = 0; j < ch.n; ++j) {
    const float* xj = ch.x[j];
    for (int64_t c = 0; c < cm; ++c) {
      float s = 0.0f;
      for (int64_t i0 = 0; i0 < dx; i0 += 16) {
        const float* w = wp + i0 * cm + c * 16;
        const int64_t len = std::min<int64_t>(16, dx - i0);
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < len; ++i) s += xj[i0 + i] * w[i];
      }
      z[c * kChunk + j] = s;
    }
  }
}
MIAKIT_ISA_DISPATCH(void, forward_generic,
                    (const Chunk& ch, const float* wp, int64_t cm, int64_t dp, int64_t dx,
                     float* z),
                    (ch, wp, cm, dp, dx, z))

// g[c][i] += sum_j r[c * kChunk + j] x_j[i] for c < cm.
MIAKIT_ISA_BODY void backward_generic_body(const Chunk& ch, const float* r, int64_t cm,
                                           int64_t dp, int64_t dx, float* g) {
  for (int64_t c = 0; c < cm; ++c) {
    float* gc = g + c * dp;
    for (int64_t j = 0; j < ch.n; ++j) {
      const float rv = r[c * kChunk + j];
      const float* xj = ch.x[j];
#pragma omp simd
      for (int64_t i = 0; i < dx; ++i) gc[i] += rv * xj[i];
    }
  }
}
MIAKIT_ISA_DISPATCH(void, backward_generic,
                    (const Chunk& ch, const float* r, int64_t cm, int64_t dp, int64_t dx, float* g),
                    (ch, r, cm, dp, dx, g))

#if defined(MIAKIT_X86_DISPATCH)
// ---- AVX-512 kernels ----------------------------------------------------------------

// Sums of 16 vectors, in one: lane p holds the sum of v[p]. Four levels of pairwise
// shuffles and adds (45 instructions) instead of 16 separate horizontal sums.
__attribute__((target("avx512f"), always_inline)) inline __m512 sum16(const __m512* v) {
  // The butterfly leaves the sum of its input m in lane 4 (m % 4) + m / 4: feed it the
  // vectors in the transposed order so that lane p holds v[p].
  __m512 s[8], t[4], u[2];
#pragma GCC unroll 8
  for (int p = 0; p < 8; ++p) {
    const int a = 2 * p, b = 2 * p + 1;
    const __m512 va = v[4 * (a % 4) + a / 4], vb = v[4 * (b % 4) + b / 4];
    s[p] = _mm512_add_ps(_mm512_shuffle_f32x4(va, vb, 0x44), _mm512_shuffle_f32x4(va, vb, 0xEE));
  }
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q)
    t[q] = _mm512_add_ps(_mm512_shuffle_f32x4(s[2 * q], s[2 * q + 1], 0x88),
                         _mm512_shuffle_f32x4(s[2 * q], s[2 * q + 1], 0xDD));
#pragma GCC unroll 2
  for (int r = 0; r < 2; ++r)
    u[r] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * r], t[2 * r + 1], 0x44),
                         _mm512_shuffle_ps(t[2 * r], t[2 * r + 1], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_ps(u[0], u[1], 0x88), _mm512_shuffle_ps(u[0], u[1], 0xDD));
}

// Logits of RT rows (from j0) and CT classes (from c0): RT x CT dot products over the
// features, 16 at a time, then reduced 16 accumulators at a time.
template <int RT, int CT>
__attribute__((target("avx512f,fma"))) void forward_tile(const Chunk& ch, int64_t j0,
                                                         const float* wt, int64_t c0,
                                                         int64_t cm, int64_t dx, float* z,
                                                         const float* const* next) {
  constexpr int NA = RT * CT;
  constexpr int NP = (NA + 15) / 16 * 16;
  __m512 acc[NP];
#pragma GCC unroll 32
  for (int a = 0; a < NP; ++a) acc[a] = _mm512_setzero_ps();
  const float* xr[RT];
#pragma GCC unroll 3
  for (int r = 0; r < RT; ++r) xr[r] = ch.x[j0 + r];
  // Panels: the CT classes' weights of 16 features lie together, at fixed offsets from
  // one pointer (one register, not one per class).
  const float* w0 = wt + c0 * 16;
  int64_t i = 0;
  for (; i + 16 <= dx; i += 16, w0 += 16 * cm) {
    __m512 xv[RT];
#pragma GCC unroll 3
    for (int r = 0; r < RT; ++r) {
      xv[r] = _mm512_loadu_ps(xr[r] + i);
      // The next tile's rows come from L2 while this one computes.
      _mm_prefetch(reinterpret_cast<const char*>(next[r] + i), _MM_HINT_T0);
    }
#pragma GCC unroll 9
    for (int c = 0; c < CT; ++c) {
      __m512 wv = _mm512_loadu_ps(w0 + c * 16);
      // One load of the weights for RT products: without this the compiler folds the
      // load into every FMA, and the loads, not the FMAs, set the pace.
      asm("" : "+v"(wv));
#pragma GCC unroll 3
      for (int r = 0; r < RT; ++r) acc[r * CT + c] = _mm512_fmadd_ps(xv[r], wv, acc[r * CT + c]);
    }
  }
  if (i < dx) {  // the last features: masked loads (wt is zero there anyway)
    const __mmask16 m = static_cast<__mmask16>((1u << (dx - i)) - 1u);
    __m512 xv[RT];
#pragma GCC unroll 3
    for (int r = 0; r < RT; ++r) xv[r] = _mm512_maskz_loadu_ps(m, xr[r] + i);
#pragma GCC unroll 9
    for (int c = 0; c < CT; ++c) {
      const __m512 wv = _mm512_loadu_ps(w0 + c * 16);
#pragma GCC unroll 3
      for (int r = 0; r < RT; ++r) acc[r * CT + c] = _mm512_fmadd_ps(xv[r], wv, acc[r * CT + c]);
    }
  }
  alignas(64) float sums[NP];
#pragma GCC unroll 2
  for (int a = 0; a < NP; a += 16) _mm512_store_ps(sums + a, sum16(acc + a));
#pragma GCC unroll 3
  for (int r = 0; r < RT; ++r)
#pragma GCC unroll 9
    for (int c = 0; c < CT; ++c) z[(c0 + c) * kChunk + j0 + r] = sums[r * CT + c];
}

template <int CT>
__attribute__((target("avx512f,fma"))) void forward_rows(const Chunk& ch, const float* wt,
                                                         int64_t c0, int64_t cm, int64_t dx,
                                                         float* z) {
  // Rows to prefetch for each tile: the next tile's, or the chunk's first (the next
  // class tile reads them again) for the last one.
  const float* next[3];
  int64_t j = 0;
  for (; j + 3 <= ch.n; j += 3) {
    for (int r = 0; r < 3; ++r) next[r] = ch.x[j + 3 + r < ch.n ? j + 3 + r : r % ch.n];
    forward_tile<3, CT>(ch, j, wt, c0, cm, dx, z, next);
  }
  for (int r = 0; r < 3; ++r) next[r] = ch.x[r % ch.n];
  if (ch.n - j == 2) forward_tile<2, CT>(ch, j, wt, c0, cm, dx, z, next);
  if (ch.n - j == 1) forward_tile<1, CT>(ch, j, wt, c0, cm, dx, z, next);
}

__attribute__((target("avx512f,fma"))) void forward_avx512(const Chunk& ch, const float* wt,
                                                           int64_t cm, int64_t dp, int64_t dx,
                                                           float* z) {
  for (int64_t c0 = 0; c0 < cm; c0 += kTileClasses) {
    switch (std::min<int64_t>(kTileClasses, cm - c0)) {
      case 1: forward_rows<1>(ch, wt, c0, cm, dx, z); break;
      case 2: forward_rows<2>(ch, wt, c0, cm, dx, z); break;
      case 3: forward_rows<3>(ch, wt, c0, cm, dx, z); break;
      case 4: forward_rows<4>(ch, wt, c0, cm, dx, z); break;
      case 5: forward_rows<5>(ch, wt, c0, cm, dx, z); break;
      case 6: forward_rows<6>(ch, wt, c0, cm, dx, z); break;
      case 7: forward_rows<7>(ch, wt, c0, cm, dx, z); break;
      case 8: forward_rows<8>(ch, wt, c0, cm, dx, z); break;
      default: forward_rows<9>(ch, wt, c0, cm, dx, z); break;
    }
  }
}

// g[c0 + c][i..] += sum_j r[c0 + c][j] x_j[i..] over NV vectors of features from i.
template <int CT, int NV>
__attribute__((target("avx512f,fma"))) inline void backward_tile(const Chunk& ch,
                                                                 const float* r, int64_t c0,
                                                                 int64_t dp, int64_t i,
                                                                 __mmask16 last, float* g) {
  __m512 acc[CT][NV];
#pragma GCC unroll 9
  for (int c = 0; c < CT; ++c)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[c][v] = _mm512_setzero_ps();
  const float* r0 = r + c0 * kChunk;
  for (int64_t j = 0; j < ch.n; ++j) {
    __m512 xv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v)
      xv[v] = v + 1 < NV ? _mm512_loadu_ps(ch.x[j] + i + 16 * v)
                         : _mm512_maskz_loadu_ps(last, ch.x[j] + i + 16 * v);
#pragma GCC unroll 9
    for (int c = 0; c < CT; ++c) {
      const __m512 rv = _mm512_set1_ps(r0[c * kChunk + j]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[c][v] = _mm512_fmadd_ps(xv[v], rv, acc[c][v]);
    }
  }
#pragma GCC unroll 9
  for (int c = 0; c < CT; ++c)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      float* gp = g + (c0 + c) * dp + i + 16 * v;
      _mm512_storeu_ps(gp, _mm512_add_ps(_mm512_loadu_ps(gp), acc[c][v]));
    }
}

template <int CT>
__attribute__((target("avx512f,fma"))) void backward_cols(const Chunk& ch, const float* r,
                                                          int64_t c0, int64_t dp, int64_t dx,
                                                          float* g) {
  int64_t i = 0;
  for (; i + 32 <= dx; i += 32) backward_tile<CT, 2>(ch, r, c0, dp, i, 0xFFFF, g);
  for (; i < dx; i += 16) {
    const int64_t left = dx - i;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xFFFF)
                                   : static_cast<__mmask16>((1u << left) - 1u);
    backward_tile<CT, 1>(ch, r, c0, dp, i, m, g);
  }
}

__attribute__((target("avx512f,fma"))) void backward_avx512(const Chunk& ch, const float* r,
                                                            int64_t cm, int64_t dp,
                                                            int64_t dx, float* g) {
  for (int64_t c0 = 0; c0 < cm; c0 += kTileClasses) {
    switch (std::min<int64_t>(kTileClasses, cm - c0)) {
      case 1: backward_cols<1>(ch, r, c0, dp, dx, g); break;
      case 2: backward_cols<2>(ch, r, c0, dp, dx, g); break;
      case 3: backward_cols<3>(ch, r, c0, dp, dx, g); break;
      case 4: backward_cols<4>(ch, r, c0, dp, dx, g); break;
      case 5: backward_cols<5>(ch, r, c0, dp, dx, g); break;
      case 6: backward_cols<6>(ch, r, c0, dp, dx, g); break;
      case 7: backward_cols<7>(ch, r, c0, dp, dx, g); break;
      case 8: backward_cols<8>(ch, r, c0, dp, dx, g); break;
      default: backward_cols<9>(ch, r, c0, dp, dx, g); break;
    }
  }
}
#endif

using ForwardFn = void (*)(const Chunk&, const float*, int64_t, int64_t, int64_t, float*);
using BackwardFn = void (*)(const Chunk&, const float*, int64_t, int64_t, int64_t, float*);

struct Kernels {
  ForwardFn forward;
  BackwardFn backward;
  const char* name;
  Isa isa;  // for the compiler-vectorized loops around the products
};

// The hand-written AVX-512 products where the CPU and MIAKIT_CPU_KERNEL (isa.h) allow
// them, else the portable loops compiled for the instruction set they allow.
Kernels pick_kernels() {
  const Isa isa = cpu_isa();
  switch (isa) {
#if defined(MIAKIT_X86_DISPATCH)
    case Isa::avx512: return {forward_avx512, backward_avx512, "avx512", isa};
    case Isa::avx2: return {forward_generic_avx2, backward_generic_avx2, "avx2", isa};
#endif
    default: return {forward_generic_portable, backward_generic_portable, "generic", isa};
  }
}

// Softmax cross-entropy of one chunk, classes laid out z[c * kChunk + j]: the residual
// w (softmax - onehot) replaces the logits; adds the loss to *loss and the residual's
// class sums to gb [C]. Rows with a label outside [0, C) get residual 0 and are counted.
// Every loop but two short ones runs across the chunk's rows, 16 at a time.
MIAKIT_ISA_BODY int64_t softmax_chunk_body(const Chunk& ch, int64_t C, float* z, double* loss,
                                           double* gb) {
  float mx[kChunk], sum[kChunk], zy[kChunk], wt[kChunk], yf[kChunk], li[kChunk];
  const int64_t n = ch.n;
  int64_t bad = 0;
  // Rows past n are padding with weight 0: every vector loop then runs all kChunk rows,
  // a trip count the compiler knows, with no scalar remainder.
  for (int64_t c = 0; c < C; ++c) std::fill(z + c * kChunk + n, z + (c + 1) * kChunk, 0.0f);
  for (int64_t j = n; j < kChunk; ++j) {
    zy[j] = 0.0f;
    wt[j] = 0.0f;
    yf[j] = -1.0f;
  }
  for (int64_t j = 0; j < n; ++j) {
    const int64_t yj = ch.y[j];
    const bool ok = yj >= 0 && yj < C;
    bad += !ok;
    zy[j] = ok ? z[yj * kChunk + j] : 0.0f;
    wt[j] = ok ? ch.w[j] : 0.0f;
    yf[j] = ok ? static_cast<float>(yj) : -1.0f;  // compared with the class as a float
  }
#pragma omp simd
  for (int64_t j = 0; j < kChunk; ++j) {
    mx[j] = z[j];
    sum[j] = 0.0f;
  }
  for (int64_t c = 1; c < C; ++c)
#pragma omp simd
    for (int64_t j = 0; j < kChunk; ++j) mx[j] = std::max(mx[j], z[c * kChunk + j]);
  for (int64_t c = 0; c < C; ++c)
#pragma omp simd
    for (int64_t j = 0; j < kChunk; ++j) {
      const float e = expf_nonpos(z[c * kChunk + j] - mx[j]);
      z[c * kChunk + j] = e;
      sum[j] += e;
    }
#pragma omp simd
  for (int64_t j = 0; j < kChunk; ++j) {
    li[j] = wt[j] * (mx[j] + logf_ge1(sum[j]) - zy[j]);
    sum[j] = wt[j] / sum[j];  // from here on: the scale of the exponentials
  }
  double ls = 0.0;
  for (int64_t j = 0; j < n; ++j) ls += static_cast<double>(li[j]);
  *loss += ls;
  for (int64_t c = 0; c < C; ++c) {
    float* zc = z + c * kChunk;
    const float cf = static_cast<float>(c);
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < kChunk; ++j) {
      const float v = zc[j] * sum[j] - (yf[j] == cf ? wt[j] : 0.0f);
      zc[j] = v;
      s += v;
    }
    gb[c] += static_cast<double>(s);
  }
  return bad;
}
MIAKIT_ISA_DISPATCH(int64_t, softmax_chunk,
                    (const Chunk& ch, int64_t C, float* z, double* loss, double* gb),
                    (ch, C, z, loss, gb))

// Adds the bias to the first cm classes of a chunk's logits and fills in the last class
// as minus their sum (all kChunk rows: padding rows are ignored later).
MIAKIT_ISA_BODY void add_bias_and_last_body(float* z, const float* bias, int64_t cm) {
  float* zl = z + cm * kChunk;
#pragma omp simd
  for (int64_t j = 0; j < kChunk; ++j) zl[j] = 0.0f;
  for (int64_t c = 0; c < cm; ++c) {
    float* zc = z + c * kChunk;
    const float b = bias[c];
#pragma omp simd
    for (int64_t j = 0; j < kChunk; ++j) {
      zc[j] += b;
      zl[j] -= zc[j];
    }
  }
}
MIAKIT_ISA_DISPATCH(void, add_bias_and_last, (float* z, const float* bias, int64_t cm),
                    (z, bias, cm))

// A chunk's logits, z[c * kChunk + j], into n consecutive rows of [*, C] at o.
MIAKIT_ISA_BODY void write_rows_body(const float* z, int64_t n, int64_t C, float* o) {
  for (int64_t j = 0; j < n; ++j)
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) o[j * C + c] = z[c * kChunk + j];
}
MIAKIT_ISA_DISPATCH(void, write_rows, (const float* z, int64_t n, int64_t C, float* o),
                    (z, n, C, o))

// Everything one head's chunks need: its weights, gradient, outputs and running sums.
// Each thread keeps the heads it owns in its own array: a head's cursor and sums change
// every chunk, and heads of two threads on one cache line would stall both.
struct Head {
  const float* wt = nullptr;    // [Cm, Dp]
  const float* bias = nullptr;  // [Cm]
  float* gw = nullptr;          // [Cm, Dp]
  float* out = nullptr;         // [R, C] or nullptr
  int64_t pos = 0, end = 0;     // cursor into the head's rows
  double loss = 0.0;
  double* gb = nullptr;         // [C], in the owning thread's storage
};

// Heads shared out among the threads by cost, most expensive first, each to the least
// loaded thread; each thread's list in increasing order.
std::vector<std::vector<int64_t>> share_heads(const std::vector<double>& cost) {
  const int64_t K = static_cast<int64_t>(cost.size());
  const int threads = static_cast<int>(std::min<int64_t>(max_threads(), std::max<int64_t>(K, 1)));
  std::vector<int64_t> order(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t p, int64_t q) { return cost[p] > cost[q]; });
  std::vector<std::vector<int64_t>> owned(static_cast<size_t>(threads));
  std::vector<double> load(static_cast<size_t>(threads), 0.0);
  for (int64_t k : order) {
    const int t = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    owned[t].push_back(k);
    load[t] += cost[k];
  }
  for (auto& o : owned) std::sort(o.begin(), o.end());
  return owned;
}

// One array of T per list of `owned`, `per_head` entries per head of the list (value
// `init`), allocated before the parallel region (scratch.h). A thread works in the arrays
// of the lists it walks: heads of two threads never share a cache line.
template <class T>
std::vector<std::vector<T>> per_list(const std::vector<std::vector<int64_t>>& owned,
                                     int64_t per_head, const T& init) {
  std::vector<std::vector<T>> v(owned.size());
  for (size_t t = 0; t < owned.size(); ++t) {
    const size_t n = scratch_count({static_cast<int64_t>(owned[t].size()), per_head}, sizeof(T),
                                   "wt");
    try {
      v[t].assign(n, init);
    } catch (const std::bad_alloc&) {
      scratch_failed("wt", static_cast<double>(n) * sizeof(T));
    }
  }
  return v;
}

}  // namespace

void masked_heads_grad(const MaskedHeadsGradArgs& a) {
  const Kernels kern = pick_kernels();
  const int64_t R = a.x.shape[0], dx = a.x.shape[1], ldx = a.x.strides[0];
  const int64_t K = a.gw.shape[0], cm = a.gw.shape[1], dp = a.gw.shape[2];
  const float* x = a.x.ptr<float>();
  const float* res = a.res.ptr<float>();
  const int64_t* ptr = a.ptr.ptr<int64_t>();
  const int32_t* idx = a.idx.ptr<int32_t>();
  const float* val = a.val.ptr<float>();
  const int64_t* heads = a.heads.ptr<int64_t>();
  std::vector<double> cost(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) cost[k] = static_cast<double>(ptr[heads[k] + 1] - ptr[heads[k]]);
  const std::vector<std::vector<int64_t>> owned = share_heads(cost);
  const int threads = static_cast<int>(owned.size());
  // Each list's row cursors and each thread's chunk buffer, allocated here.
  std::vector<std::vector<int64_t>> list_pos = per_list<int64_t>(owned, 1, 0);
  ThreadBuffers<float> zbufs(threads, {cm, kChunk}, "res");
#pragma omp parallel num_threads(threads)
  {
    // Every list is walked by exactly one thread, whatever team OpenMP granted.
    const int tid = thread_id(), team = team_size();
    for (int l = tid; l < threads; l += team)
      for (size_t q = 0; q < owned[l].size(); ++q) list_pos[l][q] = ptr[heads[owned[l][q]]];
    Chunk ch;
    float* z = zbufs.of(tid);
    // The same blocks and chunks as masked_heads_ce, so a block of rows is shared by all
    // of a thread's heads while it is in cache.
    for (int64_t b0 = 0; b0 < R; b0 += kBlockRows) {
      const int64_t b1 = std::min(R, b0 + kBlockRows);
      for (int l = tid; l < threads; l += team) {
        for (size_t q = 0; q < owned[l].size(); ++q) {
          const int64_t k = owned[l][q], end = ptr[heads[k] + 1];
          float* gw = a.gw.ptr<float>() + k * cm * dp;
          int64_t& p = list_pos[l][q];
          while (p < end && idx[p] < b1) {
            const int64_t r = idx[p];
            ch.x[ch.n] = x + r * ldx;
            for (int64_t c = 0; c < cm; ++c) z[c * kChunk + ch.n] = val[p] * res[r * cm + c];
            ++p;
            if (++ch.n == kChunk) {
              kern.backward(ch, z, cm, dp, dx, gw);
              ch.n = 0;
            }
          }
          if (ch.n) {
            kern.backward(ch, z, cm, dp, dx, gw);
            ch.n = 0;
          }
        }
      }
    }
  }
}

const char* masked_heads_ce_kernel() { return pick_kernels().name; }

int64_t masked_heads_ce(const MaskedHeadsArgs& a) {
  const Kernels kern = pick_kernels();
  const int64_t R = a.x.shape[0], dx = a.x.shape[1], ldx = a.x.strides[0];
  const int64_t K = a.wt.shape[0], cm = a.wt.shape[1], dp = a.wt.shape[2], C = cm + 1;
  const float* x = a.x.ptr<float>();
  const int64_t* ptr = a.ptr.ptr<int64_t>();
  const int32_t* idx = a.idx.ptr<int32_t>();
  const float* val = a.val.ptr<float>();
  const int64_t* heads = a.heads.ptr<int64_t>();
  const int64_t* y = a.y.ptr<int64_t>();
  const int64_t* dest = a.out.data != nullptr ? a.out_heads.ptr<int64_t>() : nullptr;

  // The weights in panels, [K][Dp / 16][C - 1][16]: a forward tile then reads every
  // class's 16 weights at fixed offsets from one pointer.
  std::vector<float> panels(static_cast<size_t>(K * cm * dp));
  const float* wsrc = a.wt.ptr<float>();
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < cm; ++c)
      for (int64_t i = 0; i < dp; ++i)
        panels[((k * dp + (i & ~int64_t{15})) * cm) + c * 16 + (i & 15)] =
            wsrc[(k * cm + c) * dp + i];
  auto head = [&](int64_t k) {
    Head h;
    h.wt = panels.data() + k * cm * dp;
    h.bias = a.bias.ptr<float>() + k * cm;
    h.gw = a.gw.ptr<float>() + k * cm * dp;
    h.pos = ptr[heads[k]];
    h.end = ptr[heads[k] + 1];
    if (dest != nullptr && dest[k] >= 0) h.out = a.out.ptr<float>() + dest[k] * R * C;
    return h;
  };
  std::vector<double> cost(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) {
    const Head h = head(k);
    // forward over the rows read (all of them for a head whose logits are written),
    // softmax and backward over its own
    cost[k] = static_cast<double>(h.out != nullptr ? R : 0) + 2.0 * (h.end - h.pos);
  }
  const std::vector<std::vector<int64_t>> owned = share_heads(cost);
  const int threads = static_cast<int>(owned.size());

  // Each list's heads and bias-gradient sums, each thread's chunk buffers, allocated here.
  std::vector<std::vector<Head>> list_heads = per_list<Head>(owned, 1, Head());
  std::vector<std::vector<double>> list_gb = per_list<double>(owned, C, 0.0);
  ThreadBuffers<float> zbufs(threads, {C, kChunk}, "wt"), zabufs(threads, {C, kChunk}, "wt");

  int64_t bad = 0;
#pragma omp parallel num_threads(threads) reduction(+ : bad)
  {
    // Every list is walked by exactly one thread, whatever team OpenMP granted.
    const int tid = thread_id(), team = team_size();
    for (int l = tid; l < threads; l += team) {
      for (size_t q = 0; q < owned[l].size(); ++q) {
        list_heads[l][q] = head(owned[l][q]);
        list_heads[l][q].gb = list_gb[l].data() + q * C;
      }
    }
    Chunk ch;
    float* z = zbufs.of(tid);
    // Residual rows of one chunk for the backward: all C classes are formed, the first
    // C - 1 are the product's (the last one is minus their sum).
    auto finish = [&](Head& h) {
      if (ch.n == 0) return;
      bad += softmax_chunk(kern.isa, ch, C, z, &h.loss, h.gb);
      kern.backward(ch, z, cm, dp, dx, h.gw);
      ch.n = 0;
    };
    // Logits of a chunk: the product, the bias, and the last class as minus the others.
    auto logits = [&](const Chunk& rows, const Head& h, float* zz) {
      kern.forward(rows, h.wt, cm, dp, dx, zz);
      add_bias_and_last(kern.isa, zz, h.bias, cm);
    };
    // For heads whose logits are written: chunks of consecutive rows, their logits.
    Chunk all;
    float* za = zabufs.of(tid);
    for (int64_t b0 = 0; b0 < R; b0 += kBlockRows) {
      const int64_t b1 = std::min(R, b0 + kBlockRows);
      for (int l = tid; l < threads; l += team) {
        for (Head& h : list_heads[l]) {
          if (h.out == nullptr) {
            // Only the head's own rows, in chunks.
            while (h.pos < h.end && idx[h.pos] < b1) {
              const int64_t r = idx[h.pos];
              ch.x[ch.n] = x + r * ldx;
              ch.w[ch.n] = val[h.pos];
              ch.y[ch.n] = y[r];
              ++h.pos;
              if (++ch.n == kChunk) {
                logits(ch, h, z);
                finish(h);
              }
            }
            if (ch.n) {
              logits(ch, h, z);
              finish(h);
            }
            continue;
          }
          // Logits of every row, written; the head's own rows among them gather into
          // chunks as above (the same chunks, so the same sums, as without writing).
          for (int64_t c0 = b0; c0 < b1; c0 += kChunk) {
            all.n = std::min(b1, c0 + kChunk) - c0;
            for (int64_t j = 0; j < all.n; ++j) all.x[j] = x + (c0 + j) * ldx;
            logits(all, h, za);
            write_rows(kern.isa, za, all.n, C, h.out + c0 * C);
            for (int64_t j = 0; j < all.n; ++j) {
              const int64_t r = c0 + j;
              if (h.pos < h.end && idx[h.pos] == r) {
                for (int64_t c = 0; c < C; ++c) z[c * kChunk + ch.n] = za[c * kChunk + j];
                ch.x[ch.n] = all.x[j];
                ch.w[ch.n] = val[h.pos];
                ch.y[ch.n] = y[r];
                ++h.pos;
                if (++ch.n == kChunk) finish(h);
              }
            }
          }
          finish(h);
        }
      }
    }
    double* loss = a.loss.ptr<double>();
    float* gbias = a.gbias.ptr<float>();
    for (int l = tid; l < threads; l += team) {
      for (size_t q = 0; q < owned[l].size(); ++q) {
        const int64_t k = owned[l][q];
        const Head& h = list_heads[l][q];
        loss[k] += h.loss;
        for (int64_t c = 0; c < C; ++c) gbias[k * C + c] += static_cast<float>(h.gb[c]);
      }
    }
  }
  return bad;
}

}  // namespace cpu
}  // namespace miakit
