// Label memorization and influence (Feldman & Zhang 2020; docs/methods/memorization.md), shared by
// the CPU and CUDA kernels: the value formulas and the bounded "top-k" list that keeps the
// k largest influences of one test example.
#pragma once

#include "miakit/common.h"

namespace miakit {

// mean over IN models minus mean over OUT models, from the two sums and counts.
MIAKIT_HD double memorization_value(double sum_in, int64_t n_in, double sum_out,
                                    int64_t n_out) {
  return sum_in / static_cast<double>(n_in) - sum_out / static_cast<double>(n_out);
}

// infl[i, j] from s = sum_m keep[m, i] c[m, j] and colsum = sum_m c[m, j]: the OUT sum is
// colsum - s. Written with divisions (not reciprocals) so that 0/1 inputs give exactly
// the float64 value of the two means.
MIAKIT_HD double influence_value(double s, double colsum, int64_t n_in, int64_t n_out) {
  return memorization_value(s, n_in, colsum - s, n_out);
}

// The order of a top-k list: larger value first, lower index first on ties.
MIAKIT_HD bool topk_before(double v1, int64_t i1, double v2, int64_t i2) {
  return v1 > v2 || (v1 == v2 && i1 < i2);
}

// A bounded list of the k best (value, index) pairs, kept as a binary heap whose root is
// the worst entry (the one every better candidate replaces). The arrays are the caller's.
struct TopK {
  double* v;
  int64_t* i;
  int64_t k;
  int64_t n;  // entries held (<= k)

  // Would (value, index) enter the list?
  MIAKIT_HD bool accepts(double value, int64_t index) const {
    return n < k || topk_before(value, index, v[0], i[0]);
  }

  MIAKIT_HD void push(double value, int64_t index) {
    if (n < k) {
      int64_t c = n++;
      while (c > 0) {  // sift up: the parent must be worse than the child
        const int64_t p = (c - 1) / 2;
        if (!topk_before(v[p], i[p], value, index)) break;
        v[c] = v[p];
        i[c] = i[p];
        c = p;
      }
      v[c] = value;
      i[c] = index;
      return;
    }
    if (!topk_before(value, index, v[0], i[0])) return;
    sift_down(0, n, value, index);
  }

  // Place (value, index) at hole `c` of the heap [0, len) and restore the heap order.
  MIAKIT_HD void sift_down(int64_t c, int64_t len, double value, int64_t index) {
    for (;;) {
      int64_t w = 2 * c + 1;
      if (w >= len) break;
      // the worse child moves up
      if (w + 1 < len && topk_before(v[w], i[w], v[w + 1], i[w + 1])) ++w;
      if (!topk_before(value, index, v[w], i[w])) break;
      v[c] = v[w];
      i[c] = i[w];
      c = w;
    }
    v[c] = value;
    i[c] = index;
  }

  // Sort in place, best first (heap sort: repeatedly move the worst to the end).
  MIAKIT_HD void sort() {
    for (int64_t len = n; len > 1; --len) {
      const double wv = v[0];
      const int64_t wi = i[0];
      sift_down(0, len - 1, v[len - 1], i[len - 1]);
      v[len - 1] = wv;
      i[len - 1] = wi;
    }
  }
};

}  // namespace miakit
