// CPU kernel: logit rows -> one signal value per row (docs/methods/signals.md).
#include <vector>

#include "kernels.h"
#include "parallel.h"
#include "signal_block.h"

namespace miakit {
namespace cpu {

namespace {

// Walks the rows of an n-d array of rows (the leading dimensions of logits) in row-major
// order, keeping the element offsets of the logits, labels and output in step.
struct RowCursor {
  int nd;
  const int64_t* shape;
  const int64_t *zs, *ls, *os;
  int64_t idx[kMaxDims] = {0};
  int64_t zoff = 0, loff = 0, ooff = 0;

  RowCursor(const SignalArgs& a, int64_t row)
      : nd(a.logits.ndim - 1), shape(a.logits.shape), zs(a.logits.strides),
        ls(a.labels.strides), os(a.out.strides) {
    for (int d = nd - 1; d >= 0; --d) {
      idx[d] = row % shape[d];
      row /= shape[d];
      zoff += idx[d] * zs[d];
      loff += idx[d] * ls[d];
      ooff += idx[d] * os[d];
    }
  }

  void next() {
    for (int d = nd - 1; d >= 0; --d) {
      ++idx[d];
      zoff += zs[d];
      loff += ls[d];
      ooff += os[d];
      if (idx[d] < shape[d]) return;
      zoff -= idx[d] * zs[d];
      loff -= idx[d] * ls[d];
      ooff -= idx[d] * os[d];
      idx[d] = 0;
    }
  }
};

template <class T, class Out>
SignalStatus signal_impl(const SignalArgs& a) {
  const int lead = a.logits.ndim - 1;
  const int C = static_cast<int>(a.logits.shape[lead]);
  const int64_t cstride = a.logits.strides[lead];
  int64_t rows = 1;
  for (int d = 0; d < lead; ++d) rows *= a.logits.shape[d];
  const int64_t nblocks = (rows + kRowBlock - 1) / kRowBlock;
  const T* z = a.logits.ptr<T>();
  const int64_t* lab = a.labels.ptr<int64_t>();
  Out* out = a.out.ptr<Out>();

  int64_t nonfinite = 0, bad_label = 0;
#pragma omp parallel reduction(+ : nonfinite, bad_label)
  {
    SignalBlock blk(C);
    const T* ptrs[kRowBlock];
    int64_t ys[kRowBlock], outs[kRowBlock];
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nblocks; ++b) {
      const int64_t r0 = b * kRowBlock;
      const int nb = static_cast<int>(std::min<int64_t>(kRowBlock, rows - r0));
      RowCursor cur(a, r0);
      for (int i = 0; i < nb; ++i, cur.next()) {
        ptrs[i] = z + cur.zoff;
        ys[i] = lab[cur.loff];
        outs[i] = cur.ooff;
      }
      blk.load(ptrs, ys, nb, C, cstride);
      evaluate_block(a.kind, blk, C);
      for (int i = 0; i < nb; ++i) {
        nonfinite += blk.status[i] == 1;
        bad_label += blk.status[i] == 2;
        out[outs[i]] = static_cast<Out>(blk.out[i]);
      }
    }
  }
  SignalStatus st;
  st.nonfinite = nonfinite;
  st.bad_label = bad_label;
  return st;
}

template <class T>
SignalStatus dispatch_out(const SignalArgs& a) {
  if (a.out.dtype == DType::f64) return signal_impl<T, double>(a);
  return signal_impl<T, float>(a);
}

}  // namespace

SignalStatus signal(const SignalArgs& a) {
  switch (a.logits.dtype) {
    case DType::f16: return dispatch_out<Half>(a);
    case DType::bf16: return dispatch_out<BFloat16>(a);
    case DType::f32: return dispatch_out<float>(a);
    case DType::f64: return dispatch_out<double>(a);
    default: throw InputError("logits: unsupported dtype");
  }
}

int num_threads() { return max_threads(); }

}  // namespace cpu
}  // namespace miakit
