// Device discovery. The module must import and answer backend_info() on machines with
// no driver or no GPU, so nothing here throws.
#include "cuda/common.cuh"

namespace miakit {
namespace cuda {

int device_count() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    // No driver (cudaErrorInsufficientDriver), no device (cudaErrorNoDevice), ...: the
    // error must not linger and surface in an unrelated later call.
    cudaGetLastError();
    return 0;
  }
  return n > 0 ? n : 0;
}

}  // namespace cuda
}  // namespace miakit
