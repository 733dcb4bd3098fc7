// pybind11 module miakit._C: the module itself and backend_info; each kernel family
// registers its functions from its own bindings_NAME.cpp.
#include "pyconvert.h"

using namespace miakit;

#if defined(MIAKIT_WITH_CUDA)
namespace miakit {
namespace cuda {
// device.cu: "" when this build can run on compute capability major.minor, else why not.
std::string arch_error(int major, int minor);
}  // namespace cuda
}  // namespace miakit
#endif

namespace {
// "80-real,120" -> ["80-real", "120"]
py::list split_csv(const std::string& s) {
  py::list out;
  std::string cur;
  for (char c : s + ",") {
    if (c == ',') {
      if (!cur.empty()) out.append(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  return out;
}
}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "miakit compiled kernels (CPU, and CUDA when built with it)";
  py::register_exception<InputError>(m, "KernelInputError", PyExc_ValueError);

  m.def("backend_info", []() {
    py::dict d;
    d["version"] = MIAKIT_VERSION;
#if defined(MIAKIT_WITH_CUDA)
    d["cuda_built"] = true;
    d["cuda_archs"] = split_csv(MIAKIT_CUDA_ARCHS);                  // as CMake was given them
    d["cuda_real_archs"] = split_csv(MIAKIT_CUDA_REAL_ARCHS);        // machine code (sm_NN)
    d["cuda_virtual_archs"] = split_csv(MIAKIT_CUDA_VIRTUAL_ARCHS);  // PTX (compute_NN)
    d["cuda_compiler_version"] = MIAKIT_CUDA_COMPILER_VERSION;
    d["cuda_device_count"] = cuda::device_count();
#else
    d["cuda_built"] = false;
    d["cuda_archs"] = py::list();
    d["cuda_real_archs"] = py::list();
    d["cuda_virtual_archs"] = py::list();
    d["cuda_compiler_version"] = py::none();
    d["cuda_device_count"] = 0;
#endif
    d["openmp_threads"] = cpu::num_threads();
#if defined(MIAKIT_WITH_OPENMP)
    d["openmp"] = true;
#else
    d["openmp"] = false;
#endif
    return d;
  });

  // Why this build cannot run on a GPU of compute capability major.minor ("" when it can):
  // the check every CUDA kernel makes before launching, callable without a GPU.
  m.def("cuda_arch_error", [](int major, int minor) -> std::string {
#if defined(MIAKIT_WITH_CUDA)
    return cuda::arch_error(major, minor);
#else
    (void)major;
    (void)minor;
    return "this build of miakit has no CUDA kernels";
#endif
  }, py::arg("major"), py::arg("minor"));

  register_options(m);
  register_lira(m);
  register_risk(m);
  register_train(m);
  register_attacks(m);
  register_metrics(m);
}
