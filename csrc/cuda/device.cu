// Device discovery, and the check that this build holds code the GPU can run. The module
// must import and answer backend_info() on machines with no driver or no GPU, so nothing
// here throws except require_arch, which kernels call (through DeviceGuard) before any
// launch.
#include <cstdlib>
#include <string>
#include <vector>

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

namespace {

// One entry of MIAKIT_CUDA_REAL_ARCHS / MIAKIT_CUDA_VIRTUAL_ARCHS ("86", "90a", "100f").
struct Arch {
  int major = 0, minor = 0;
  bool exact = false;  // "a" (arch-specific) code runs on exactly this compute capability
  std::string name;
};

std::vector<Arch> parse_archs(const std::string& csv) {
  std::vector<Arch> out;
  size_t start = 0;
  while (start < csv.size()) {
    size_t end = csv.find(',', start);
    if (end == std::string::npos) end = csv.size();
    const std::string item = csv.substr(start, end - start);
    start = end + 1;
    if (item.empty()) continue;
    const int number = std::atoi(item.c_str());
    Arch a;
    a.major = number / 10;
    a.minor = number % 10;
    a.exact = item.back() == 'a';
    a.name = item;
    out.push_back(a);
  }
  return out;
}

std::string join(const std::vector<Arch>& archs, const char* prefix) {
  std::string s;
  for (const Arch& a : archs) s += (s.empty() ? "" : ", ") + std::string(prefix) + a.name;
  return s.empty() ? "none" : s;
}

}  // namespace

std::string arch_error(int major, int minor) {
  const std::vector<Arch> real = parse_archs(MIAKIT_CUDA_REAL_ARCHS);
  const std::vector<Arch> ptx = parse_archs(MIAKIT_CUDA_VIRTUAL_ARCHS);
  // Machine code for X.y runs on X.z with z >= y; PTX for X.y is JIT-compiled by the
  // driver for any X.y or later. Arch-specific ("a") code runs on its own X.y only.
  for (const Arch& a : real) {
    if (a.major == major && (a.exact ? a.minor == minor : a.minor <= minor)) return "";
  }
  for (const Arch& a : ptx) {
    if (a.exact ? (a.major == major && a.minor == minor)
                : (a.major < major || (a.major == major && a.minor <= minor))) {
      return "";
    }
  }
  const std::string cc = std::to_string(major) + "." + std::to_string(minor);
  return "this GPU is sm_" + std::to_string(major * 10 + minor) + " (compute capability " +
         cc + "), which this build of miakit does not cover: it holds machine code for " +
         join(real, "sm_") + " and PTX for " + join(ptx, "compute_") +
         ". Pass CPU arrays or tensors, or build miakit for this GPU from source with "
         "MIAKIT_CUDA_ARCHITECTURES=" + std::to_string(major * 10 + minor) +
         " (see docs/guide/install.md)";
}

void require_arch(int device) {
  int major = 0, minor = 0;
  // Test hook: MIAKIT_TEST_CUDA_CAPABILITY="7.5" makes every GPU look like compute
  // capability 7.5, to exercise this error on hardware the build does cover.
  const char* fake = std::getenv("MIAKIT_TEST_CUDA_CAPABILITY");
  if (fake != nullptr && *fake != '\0') {
    char* dot = nullptr;
    major = static_cast<int>(std::strtol(fake, &dot, 10));
    minor = (dot != nullptr && *dot == '.') ? std::atoi(dot + 1) : 0;
  } else {
    check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
          "cudaDeviceGetAttribute (compute capability)");
    check(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device),
          "cudaDeviceGetAttribute (compute capability)");
  }
  const std::string why = arch_error(major, minor);
  if (why.empty()) return;
  std::string gpu = "cuda:" + std::to_string(device);
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, device) == cudaSuccess) {
    gpu += std::string(" (") + prop.name + ")";
  } else {
    cudaGetLastError();
  }
  throw std::runtime_error("miakit CUDA: " + gpu + ": " + why);
}

}  // namespace cuda
}  // namespace miakit
