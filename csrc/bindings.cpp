// pybind11 module miakit._C: the module itself and backend_info; each kernel family
// registers its functions from its own bindings_NAME.cpp.
#include "pyconvert.h"

using namespace miakit;

PYBIND11_MODULE(_C, m) {
  m.doc() = "miakit compiled kernels (CPU, and CUDA when built with it)";
  py::register_exception<InputError>(m, "KernelInputError", PyExc_ValueError);

  m.def("backend_info", []() {
    py::dict d;
    d["version"] = MIAKIT_VERSION;
#if defined(MIAKIT_WITH_CUDA)
    d["cuda_built"] = true;
    py::list archs;
    std::string s = MIAKIT_CUDA_ARCHS, cur;
    for (char c : s + ",") {
      if (c == ',') { if (!cur.empty()) archs.append(cur); cur.clear(); } else cur += c;
    }
    d["cuda_archs"] = archs;
    d["cuda_device_count"] = cuda::device_count();
#else
    d["cuda_built"] = false;
    d["cuda_archs"] = py::list();
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

  register_lira(m);
  register_risk(m);
  register_train(m);
  register_attacks(m);
  register_metrics(m);
}
