// Radix sort of (64-bit key, 32-bit payload) pairs, for the CPU kernels that rank
// float64 values (rank.cpp, rmia.cpp). Doubles become keys that order as the values do
// (ascending_key), so sorting keys sorts values.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "parallel.h"

namespace miakit {
namespace cpu {
namespace radix {

constexpr int kDigitBits = 11;
constexpr int kBuckets = 1 << kDigitBits;
constexpr int kPasses = (64 + kDigitBits - 1) / kDigitBits;  // 6

// Smaller value -> smaller key, for every double but NaN: negative values' bits are
// flipped, positive ones get the sign bit; -0.0 and +0.0 share one key (equal values).
inline uint64_t ascending_key(double s) {
  s += 0.0;  // -0.0 -> +0.0
  uint64_t b;
  std::memcpy(&b, &s, sizeof b);
  return (b >> 63) ? ~b : (b | (uint64_t(1) << 63));
}

// The value back from its ascending key.
inline double value_of(uint64_t key) {
  const uint64_t b = (key >> 63) ? (key & ~(uint64_t(1) << 63)) : ~key;
  double s;
  std::memcpy(&s, &b, sizeof s);
  return s;
}

inline int digit(uint64_t key, int pass) {
  return static_cast<int>((key >> (pass * kDigitBits)) & (kBuckets - 1));
}

// Segments of at most this many pairs are sorted within the cache: the pairs and their
// scratch (12 bytes each, twice) fit in a core's L2.
constexpr int64_t kInCache = int64_t(1) << 15;

// Stable LSD radix sort of a segment of n pairs by the low `bits` bits of the keys (the
// higher bits are equal across the segment), between (k, p) and the scratch (k2, p2);
// returns true when the sorted pairs end in (k2, p2). One read counts every digit; the
// passes whose digit is the same for every key are skipped. hist: kPasses * kBuckets.
inline bool sort_segment(uint64_t* k, uint32_t* p, uint64_t* k2, uint32_t* p2, int64_t n,
                         int bits, uint32_t* hist) {
  if (n <= 1 || bits <= 0) return false;
  if (n <= 32) {  // insertion sort (stable)
    for (int64_t i = 1; i < n; ++i) {
      const uint64_t key = k[i];
      const uint32_t pay = p[i];
      int64_t j = i;
      for (; j > 0 && k[j - 1] > key; --j) {
        k[j] = k[j - 1];
        p[j] = p[j - 1];
      }
      k[j] = key;
      p[j] = pay;
    }
    return false;
  }
  const int passes = (bits + kDigitBits - 1) / kDigitBits;
  std::fill(hist, hist + static_cast<size_t>(passes) * kBuckets, 0u);
  uint64_t diff = 0;
  const uint64_t first = k[0];
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t key = k[i];
    diff |= key ^ first;
    for (int q = 0; q < passes; ++q) ++hist[q * kBuckets + digit(key, q)];
  }
  bool swapped = false;
  for (int q = 0; q < passes; ++q) {
    if (((diff >> (q * kDigitBits)) & (kBuckets - 1)) == 0) continue;
    uint32_t* h = hist + q * kBuckets;
    uint32_t run = 0;
    for (int b = 0; b < kBuckets; ++b) {
      const uint32_t here = h[b];
      h[b] = run;
      run += here;
    }
    const uint64_t* sk = swapped ? k2 : k;
    const uint32_t* sp = swapped ? p2 : p;
    uint64_t* dk = swapped ? k : k2;
    uint32_t* dp = swapped ? p : p2;
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t to = h[digit(sk[i], q)]++;
      dk[to] = sk[i];
      dp[to] = sp[i];
    }
    swapped = !swapped;
  }
  return swapped;
}

// Copies n pairs from (k2, p2) to (k, p), in parallel when there are many.
inline void copy_pairs(const uint64_t* k2, const uint32_t* p2, uint64_t* k, uint32_t* p,
                       int64_t n) {
#pragma omp parallel for schedule(static) if (n > kInCache)
  for (int64_t i = 0; i < n; ++i) {
    k[i] = k2[i];
    p[i] = p2[i];
  }
}

// Stable radix sort of n (key, payload) pairs by key, between the caller's buffers (k, p)
// and (k2, p2); returns true when the sorted pairs end in (k2, p2). Most significant digit
// first: one parallel pass deals the pairs into buckets by the 11 bits below the highest
// bit in which keys differ (threads own contiguous blocks, so the dealing keeps input
// order); then every bucket small enough for the cache is sorted there by its remaining
// bits (sort_segment), the buckets shared out among the threads, and every larger one by
// this function again. Each pair thus crosses main memory about twice, not once per
// digit. Scores bunch by exponent, which is why a large bucket is dealt again rather than
// sorted from its lowest digit.
inline bool radix_sort(uint64_t* k, uint32_t* p, uint64_t* k2, uint32_t* p2, int64_t n) {
  if (n <= kInCache) {
    std::vector<uint32_t> hist(static_cast<size_t>(kPasses) * kBuckets);
    return sort_segment(k, p, k2, p2, n, 64, hist.data());
  }
  uint64_t any_diff = 0;
  {
    const uint64_t first = k[0];
#pragma omp parallel for schedule(static) reduction(| : any_diff)
    for (int64_t i = 0; i < n; ++i) any_diff |= k[i] ^ first;
  }
  if (any_diff == 0) return false;  // all keys equal
  const int high = 63 - __builtin_clzll(any_diff);
  const int shift = std::max(0, high + 1 - kDigitBits);
  auto top = [shift](uint64_t key) { return static_cast<int>((key >> shift) & (kBuckets - 1)); };
  const int threads = std::max(1, max_threads());
  std::vector<int64_t> hist(static_cast<size_t>(threads) * kBuckets, 0);
  std::vector<int64_t> start(kBuckets + 1, 0);
#pragma omp parallel num_threads(threads)
  {
    const int t = thread_id(), nt = team_size();
    const int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
    int64_t* h = hist.data() + static_cast<size_t>(t) * kBuckets;
    for (int64_t i = lo; i < hi; ++i) ++h[top(k[i])];
#pragma omp barrier
#pragma omp single
    {
      // offsets: bucket-major, thread-minor (stability across blocks)
      int64_t run = 0;
      for (int b = 0; b < kBuckets; ++b) {
        start[b] = run;
        for (int u = 0; u < nt; ++u) {
          int64_t& c = hist[static_cast<size_t>(u) * kBuckets + b];
          const int64_t here = c;
          c = run;
          run += here;
        }
      }
      start[kBuckets] = run;
    }
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t to = h[top(k[i])]++;
      k2[to] = k[i];
      p2[to] = p[i];
    }
  }
  // Small buckets: in the cache, a thread each; their sorted pairs back in (k2, p2). Each
  // thread's histograms are allocated before the region (an exception cannot leave it).
  std::vector<uint32_t> locals(static_cast<size_t>(threads) * kPasses * kBuckets);
#pragma omp parallel num_threads(threads)
  {
    uint32_t* const local = locals.data() + static_cast<size_t>(thread_id()) * kPasses * kBuckets;
#pragma omp for schedule(dynamic, 4)
    for (int b = 0; b < kBuckets; ++b) {
      const int64_t o = start[b], m = start[b + 1] - o;
      if (m > kInCache) continue;
      if (sort_segment(k2 + o, p2 + o, k + o, p + o, m, shift, local))
        copy_pairs(k + o, p + o, k2 + o, p2 + o, m);
    }
  }
  // Large buckets: dealt again, one after another, each in parallel.
  for (int b = 0; b < kBuckets; ++b) {
    const int64_t o = start[b], m = start[b + 1] - o;
    if (m <= kInCache) continue;
    if (radix_sort(k2 + o, p2 + o, k + o, p + o, m)) copy_pairs(k + o, p + o, k2 + o, p2 + o, m);
  }
  return true;
}

}  // namespace radix
}  // namespace cpu
}  // namespace miakit
