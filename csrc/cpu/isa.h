// The one switch for the hand-vectorized CPU kernels (influence and nearest-neighbour
// micro-kernels, batched linear heads): the widest instruction set this CPU runs, capped
// by the environment variable MIAKIT_CPU_KERNEL=avx2 or =generic (tests and comparisons
// force the narrower paths with it; a request the CPU cannot honour is ignored). Loops
// marked MIAKIT_CPU_CLONES (simd.h) are compiler clones resolved when the module loads
// and are not affected.
#pragma once

#include <cstdlib>
#include <cstring>

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define MIAKIT_X86_DISPATCH 1
#include <immintrin.h>
#endif

namespace miakit {
namespace cpu {

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

inline Isa cpu_isa() {
  const char* env = std::getenv("MIAKIT_CPU_KERNEL");
  Isa cap = Isa::avx512;
  if (env && std::strcmp(env, "generic") == 0) cap = Isa::generic;
  if (env && std::strcmp(env, "avx2") == 0) cap = Isa::avx2;
  Isa have = Isa::generic;
#if defined(MIAKIT_X86_DISPATCH)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) have = Isa::avx2;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) have = Isa::avx512;
#endif
  return static_cast<int>(have) < static_cast<int>(cap) ? have : cap;
}

}  // namespace cpu
}  // namespace miakit
