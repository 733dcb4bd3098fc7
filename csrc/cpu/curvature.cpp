// CPU kernel for the curvature estimators' probes (SCIENCE.md section 9): Rademacher
// vectors from the counter-based generator of include/miakit/rng.h, so that a probe
// depends only on (seed, example index, probe index), never on batching or device.
#include <cstdint>

#include "kernels_risk.h"
#include "miakit/rng.h"

namespace miakit {
namespace cpu {

namespace {

template <class Store>
void fill(const RademacherArgs& a, Store store) {
  const Tensor& o = a.out;
  const int64_t R = o.shape[0], P = o.shape[1], D = o.shape[2];
  const int64_t* ex = a.examples.ptr<int64_t>();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t p = 0; p < P; ++p) {
      const uint64_t key = probe_key(a.seed, static_cast<uint64_t>(ex[r * a.examples.strides[0]]),
                                     static_cast<uint64_t>(a.probe0 + p));
      const int64_t base = r * o.strides[0] + p * o.strides[1];
      for (int64_t w = 0; w * 64 < D; ++w) {
        const uint64_t bits = probe_word(key, static_cast<uint64_t>(w));
        const int64_t e1 = (w + 1) * 64 < D ? (w + 1) * 64 : D;
        for (int64_t e = w * 64; e < e1; ++e) {
          store(base + e * o.strides[2], sign_from_word(bits, e));
        }
      }
    }
  }
}

}  // namespace

void rademacher(const RademacherArgs& a) {
  void* data = a.out.data;
  switch (a.out.dtype) {
    case DType::f64:
      fill(a, [data](int64_t i, double v) { static_cast<double*>(data)[i] = v; });
      break;
    case DType::f32:
      fill(a, [data](int64_t i, double v) { static_cast<float*>(data)[i] = static_cast<float>(v); });
      break;
    case DType::f16:  // +1 = 0x3c00, -1 = 0xbc00
      fill(a, [data](int64_t i, double v) {
        static_cast<uint16_t*>(data)[i] = v > 0 ? 0x3c00u : 0xbc00u;
      });
      break;
    case DType::bf16:  // +1 = 0x3f80, -1 = 0xbf80
      fill(a, [data](int64_t i, double v) {
        static_cast<uint16_t*>(data)[i] = v > 0 ? 0x3f80u : 0xbf80u;
      });
      break;
    default:
      throw InputError("out: Rademacher probes need a float16/bfloat16/float32/float64 array");
  }
}

}  // namespace cpu
}  // namespace miakit
