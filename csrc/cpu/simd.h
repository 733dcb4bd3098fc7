// Instruction-set dispatch for vectorized CPU loops.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
// One copy per instruction set, chosen when the module loads (GNU ifunc).
#define MIAKIT_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MIAKIT_CPU_CLONES
#endif
