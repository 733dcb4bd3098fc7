// CUDA kernel: logit rows -> one signal value per row (docs/methods/signals.md). Twin of
// cpu/signals.cpp: every row goes through the shared compute_signal, in double. A call
// for several signals launches the kernel once per signal (a row's logits are read again
// from L2 rather than held in registers for every signal); the first launch counts the
// bad rows.
#include "cuda/common.cuh"

namespace miakit {
namespace cuda {

namespace {

constexpr int kThreads = 256;

// Leading (row) dimensions of the three arrays; the last logits dimension is the class
// axis. Fixed-size arrays indexed in unrolled loops stay in registers/parameter space.
struct RowGeometry {
  int lead = 0;    // number of leading dimensions (0 for a single row)
  bool small = false;  // every size fits 32 bits: cheaper index arithmetic
  int C = 0;
  int64_t cstride = 0;
  int64_t rows = 0;
  int64_t shape[kMaxDims] = {0};
  int64_t z[kMaxDims] = {0}, lab[kMaxDims] = {0}, out[kMaxDims] = {0};
};

struct RowOffsets {
  int64_t z, lab, out;
};

// Element offsets of row r (row-major over the leading dimensions, as the CPU walks them).
template <class I>
__device__ __forceinline__ RowOffsets row_offsets(const RowGeometry& g, int64_t r) {
  RowOffsets o{0, 0, 0};
  I rem = static_cast<I>(r);
#pragma unroll
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d < g.lead) {
      const I n = static_cast<I>(g.shape[d]);
      const I q = rem / n;
      const int64_t i = static_cast<int64_t>(rem - q * n);
      rem = q;
      o.z += i * g.z[d];
      o.lab += i * g.lab[d];
      o.out += i * g.out[d];
    }
  }
  return o;
}

template <class T, class Out>
__global__ void __launch_bounds__(kThreads)
signal_kernel(const T* __restrict__ z, const int64_t* __restrict__ labels, Out* __restrict__ out,
              const RowGeometry g, const Signal kind, unsigned long long* counts) {
  long long nonfinite = 0, bad_label = 0;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < g.rows;
       r += step) {
    const RowOffsets o = g.small ? row_offsets<uint32_t>(g, r) : row_offsets<int64_t>(g, r);
    const SignalValue v = compute_signal<T>(kind, z + o.z, g.cstride, g.C, labels[o.lab]);
    nonfinite += v.status == 1;
    bad_label += v.status == 2;
    out[o.out] = static_cast<Out>(v.value);
  }
  flush_count(nonfinite, counts + 0);
  flush_count(bad_label, counts + 1);
}

// Shapes and dtypes were checked by the binding (bindings_lira.cpp, check_signal).
RowGeometry geometry(const SignalArgs& a, const Tensor& out) {
  const Tensor& lg = a.logits;
  RowGeometry g;
  g.lead = lg.ndim - 1;
  g.C = static_cast<int>(lg.shape[g.lead]);
  g.cstride = lg.strides[g.lead];
  g.rows = 1;
  for (int d = 0; d < g.lead; ++d) {
    g.shape[d] = lg.shape[d];
    g.z[d] = lg.strides[d];
    g.lab[d] = a.labels.strides[d];
    g.out[d] = out.strides[d];
    g.rows *= lg.shape[d];
  }
  g.small = g.rows < (int64_t(1) << 31);
  return g;
}

template <class T, class Out>
void launch(const SignalArgs& a, int k, const RowGeometry& g, cudaStream_t s,
            unsigned long long* c) {
  const int grid = grid_size(g.rows, kThreads, 8);
  signal_kernel<T, Out><<<grid, kThreads, 0, s>>>(a.logits.ptr<const T>(),
                                                  a.labels.ptr<const int64_t>(),
                                                  a.outs[k].ptr<Out>(), g, a.kinds[k], c);
  check_launch("signal_kernel");
}

template <class T>
void dispatch_out(const SignalArgs& a, int k, const RowGeometry& g, cudaStream_t s,
                  unsigned long long* c) {
  if (a.outs[k].dtype == DType::f64) return launch<T, double>(a, k, g, s, c);
  return launch<T, float>(a, k, g, s, c);
}

}  // namespace

SignalStatus signal(const SignalArgs& a, std::uintptr_t stream) {
  DeviceGuard guard(a.logits.device_id);
  const cudaStream_t s = as_stream(stream);
  // Two counters per launch; every launch sees the same bad rows, the first one's count.
  Counters counts(static_cast<size_t>(2 * std::max(a.n_out, 1)), s);
  for (int k = 0; k < a.n_out; ++k) {
    const RowGeometry g = geometry(a, a.outs[k]);
    if (g.rows == 0) break;
    unsigned long long* c = counts.data() + 2 * k;
    switch (a.logits.dtype) {
      case DType::f16: dispatch_out<Half>(a, k, g, s, c); break;
      case DType::bf16: dispatch_out<BFloat16>(a, k, g, s, c); break;
      case DType::f32: dispatch_out<float>(a, k, g, s, c); break;
      case DType::f64: dispatch_out<double>(a, k, g, s, c); break;
      default: throw InputError("logits: unsupported dtype");
    }
  }
  const std::vector<int64_t> c = counts.fetch();
  SignalStatus st;
  st.nonfinite = c[0];
  st.bad_label = c[1];
  return st;
}

}  // namespace cuda
}  // namespace miakit
