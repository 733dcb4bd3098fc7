// CPU kernel: logit rows -> one value per row of each requested signal, in one pass
// (docs/methods/signals.md).
#include <vector>

#include "kernels.h"
#include "parallel.h"
#include "scratch.h"
#include "signal_block.h"

namespace miakit {
namespace cpu {

namespace {

// Walks the rows of an n-d array of rows (the leading dimensions of logits) in row-major
// order, keeping the element offsets of the logits, labels and outputs in step.
struct RowCursor {
  int nd, n_out;
  const int64_t* shape;
  const int64_t *zs, *ls;
  const int64_t* os[kMaxSignalOuts];
  int64_t idx[kMaxDims] = {0};
  int64_t zoff = 0, loff = 0, ooff[kMaxSignalOuts] = {0};

  RowCursor(const SignalArgs& a, int64_t row)
      : nd(a.logits.ndim - 1), n_out(a.n_out), shape(a.logits.shape), zs(a.logits.strides),
        ls(a.labels.strides) {
    for (int s = 0; s < n_out; ++s) os[s] = a.outs[s].strides;
    for (int d = nd - 1; d >= 0; --d) {
      idx[d] = row % shape[d];
      row /= shape[d];
      zoff += idx[d] * zs[d];
      loff += idx[d] * ls[d];
      for (int s = 0; s < n_out; ++s) ooff[s] += idx[d] * os[s][d];
    }
  }

  void next() {
    for (int d = nd - 1; d >= 0; --d) {
      ++idx[d];
      zoff += zs[d];
      loff += ls[d];
      for (int s = 0; s < n_out; ++s) ooff[s] += os[s][d];
      if (idx[d] < shape[d]) return;
      zoff -= idx[d] * zs[d];
      loff -= idx[d] * ls[d];
      for (int s = 0; s < n_out; ++s) ooff[s] -= idx[d] * os[s][d];
      idx[d] = 0;
    }
  }
};

// Where one output's values go: float64 or float32.
struct OutPtr {
  double* f64 = nullptr;
  float* f32 = nullptr;

  explicit OutPtr(const Tensor& t) {
    if (t.dtype == DType::f64) f64 = t.ptr<double>();
    else f32 = t.ptr<float>();
  }
  void put(int64_t off, double v) const {
    if (f64 != nullptr) f64[off] = v;
    else f32[off] = static_cast<float>(v);
  }
};

template <class T>
SignalStatus signal_impl(const SignalArgs& a) {
  const int lead = a.logits.ndim - 1;
  const int C = static_cast<int>(a.logits.shape[lead]);
  const int64_t cstride = a.logits.strides[lead];
  int64_t rows = 1;
  for (int d = 0; d < lead; ++d) rows *= a.logits.shape[d];
  if (rows == 0) return SignalStatus();  // nothing to do, and no scratch to allocate
  const int64_t nblocks = (rows + kRowBlock - 1) / kRowBlock;
  const T* z = a.logits.ptr<T>();
  const int64_t* lab = a.labels.ptr<int64_t>();
  SignalSet set;
  std::vector<OutPtr> outs;
  for (int s = 0; s < a.n_out; ++s) {
    set.kinds[set.n++] = a.kinds[s];
    outs.emplace_back(a.outs[s]);
  }
  const Isa isa = cpu_isa();

  // One block of transposed logits per thread (C x kRowBlock doubles), allocated here.
  const int threads = team_for(nblocks);
  std::vector<SignalBlock> blocks = per_thread<SignalBlock>(threads, "logits", C);

  int64_t nonfinite = 0, bad_label = 0;
#pragma omp parallel num_threads(threads) reduction(+ : nonfinite, bad_label)
  {
    SignalBlock& blk = blocks[thread_id()];
    const T* ptrs[kRowBlock];
    int64_t ys[kRowBlock], offs[kMaxSignalOuts][kRowBlock];
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nblocks; ++b) {
      const int64_t r0 = b * kRowBlock;
      const int nb = static_cast<int>(std::min<int64_t>(kRowBlock, rows - r0));
      RowCursor cur(a, r0);
      for (int i = 0; i < nb; ++i, cur.next()) {
        ptrs[i] = z + cur.zoff;
        ys[i] = lab[cur.loff];
        for (int s = 0; s < set.n; ++s) offs[s][i] = cur.ooff[s];
      }
      blk.load(ptrs, ys, nb, C, cstride);
      evaluate_block(isa, set, blk, C);
      for (int i = 0; i < nb; ++i) {
        nonfinite += blk.status[i] == 1;
        bad_label += blk.status[i] == 2;
      }
      for (int s = 0; s < set.n; ++s)
        for (int i = 0; i < nb; ++i) outs[s].put(offs[s][i], blk.out[s][i]);
    }
  }
  SignalStatus st;
  st.nonfinite = nonfinite;
  st.bad_label = bad_label;
  return st;
}

}  // namespace

SignalStatus signal(const SignalArgs& a) {
  switch (a.logits.dtype) {
    case DType::f16: return signal_impl<Half>(a);
    case DType::bf16: return signal_impl<BFloat16>(a);
    case DType::f32: return signal_impl<float>(a);
    case DType::f64: return signal_impl<double>(a);
    default: throw InputError("logits: unsupported dtype");
  }
}

int num_threads() { return max_threads(); }

}  // namespace cpu
}  // namespace miakit
