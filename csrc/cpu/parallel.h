// OpenMP helpers for the CPU kernels (a serial build is still correct).
#pragma once

#if defined(MIAKIT_WITH_OPENMP)
#include <omp.h>
#endif

namespace miakit {
namespace cpu {

inline int max_threads() {
#if defined(MIAKIT_WITH_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline int team_size() {
#if defined(MIAKIT_WITH_OPENMP)
  return omp_get_num_threads();
#else
  return 1;
#endif
}

inline int thread_id() {
#if defined(MIAKIT_WITH_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace cpu
}  // namespace miakit
