// CPU kernel: logit rows -> one signal value per row (SCIENCE.md section 1).
#include <vector>

#include "kernels.h"
#include "parallel.h"

namespace miakit {
namespace cpu {

namespace {

template <class T, class Out>
SignalStatus signal_impl(const SignalArgs& a) {
  const Tensor& lg = a.logits;
  const int lead = lg.ndim - 1;  // number of leading (row) dimensions
  const int C = static_cast<int>(lg.shape[lead]);
  const int64_t cstride = lg.strides[lead];
  const int64_t* lab = a.labels.ptr<int64_t>();
  const T* z = lg.ptr<T>();
  Out* out = a.out.ptr<Out>();

  // Rows are visited as (outer index, inner index) where the inner index runs along the
  // last leading dimension, so the inner loop is a plain strided walk.
  const int64_t inner = lead > 0 ? lg.shape[lead - 1] : 1;
  int64_t outer = 1;
  for (int d = 0; d + 1 < lead; ++d) outer *= lg.shape[d];
  const int64_t zs_in = lead > 0 ? lg.strides[lead - 1] : 0;
  const int64_t ls_in = lead > 0 ? a.labels.strides[lead - 1] : 0;
  const int64_t os_in = lead > 0 ? a.out.strides[lead - 1] : 0;

  int64_t nonfinite = 0, bad_label = 0;
#pragma omp parallel for schedule(static) reduction(+ : nonfinite, bad_label)
  for (int64_t o = 0; o < outer; ++o) {
    int64_t zoff = 0, loff = 0, ooff = 0, rem = o;
    for (int d = lead - 2; d >= 0; --d) {
      const int64_t i = rem % lg.shape[d];
      rem /= lg.shape[d];
      zoff += i * lg.strides[d];
      loff += i * a.labels.strides[d];
      ooff += i * a.out.strides[d];
    }
    for (int64_t i = 0; i < inner; ++i) {
      const SignalValue v =
          compute_signal<T>(a.kind, z + zoff + i * zs_in, cstride, C, lab[loff + i * ls_in]);
      nonfinite += v.status == 1;
      bad_label += v.status == 2;
      out[ooff + i * os_in] = static_cast<Out>(v.value);
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
