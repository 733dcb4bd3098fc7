// The one switch for the instruction set of every vectorized CPU kernel: the widest this
// CPU runs, capped by the environment variable MIAKIT_CPU_KERNEL=avx2 or =generic (tests
// and comparisons force the narrower paths with it; a request the CPU cannot honour is
// ignored). A kernel reads cpu_isa() once when it starts and passes the answer down; two
// kinds of code obey it:
// - hand-written micro-kernels (influence and nearest-neighbour products, batched linear
//   heads), one function per instruction set, chosen by a switch on the answer;
// - plain loops left to the compiler's vectorizer, written once as an always-inline body
//   and compiled once per instruction set by MIAKIT_ISA_DISPATCH below.
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

#define MIAKIT_STRIP_PARENS(...) __VA_ARGS__

// MIAKIT_ISA_DISPATCH(ret, name, (params), (args)) compiles name##_body(args) once per
// instruction set, as name##_avx512, name##_avx2 and name##_portable (for callers that
// keep a function pointer), and defines `ret name(Isa isa, params)`, which runs the copy
// `isa` names. name##_body must be declared MIAKIT_ISA_BODY: always inlined, so that each
// copy is vectorized for its own instruction set. The targets are those of the
// compiler's -mavx512f and -mavx2 (the instruction sets cpu_isa() names). The build turns
// off the contraction of a * b + c into fused multiply-adds (-ffp-contract=off, which
// AVX-512F would otherwise allow), so every copy rounds each step the same way and gives
// the same bits; only the hand-written micro-kernels fuse, where they say so.
#if defined(MIAKIT_X86_DISPATCH)
#define MIAKIT_ISA_BODY inline __attribute__((always_inline))
#define MIAKIT_ISA_DISPATCH(ret, name, params, args)                                   \
  [[maybe_unused]] __attribute__((target("avx512f"), noinline)) static ret             \
      name##_avx512 params {                                                           \
    return name##_body args;                                                           \
  }                                                                                    \
  [[maybe_unused]] __attribute__((target("avx2"), noinline)) static ret                \
      name##_avx2 params {                                                             \
    return name##_body args;                                                           \
  }                                                                                    \
  [[maybe_unused]] __attribute__((noinline)) static ret name##_portable params {       \
    return name##_body args;                                                           \
  }                                                                                    \
  [[maybe_unused]] ret name(::miakit::cpu::Isa isa, MIAKIT_STRIP_PARENS params) {      \
    switch (isa) {                                                                     \
      case ::miakit::cpu::Isa::avx512: return name##_avx512 args;                      \
      case ::miakit::cpu::Isa::avx2: return name##_avx2 args;                          \
      default: return name##_portable args;                                            \
    }                                                                                  \
  }
#else
#define MIAKIT_ISA_BODY inline
#define MIAKIT_ISA_DISPATCH(ret, name, params, args)                                   \
  [[maybe_unused]] static ret name##_portable params { return name##_body args; }      \
  [[maybe_unused]] ret name(::miakit::cpu::Isa, MIAKIT_STRIP_PARENS params) {          \
    return name##_portable args;                                                       \
  }
#endif

}  // namespace cpu
}  // namespace miakit
