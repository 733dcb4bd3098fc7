// Counter-based random numbers (docs/methods/curvature.md): a probe's entries are a pure
// function of (seed, example index, probe index, element index), so curvature estimates do
// not depend on batch size, batch order or device. The mixer is splitmix64's finalizer
// (a bijection of 64-bit words with full avalanche); each call yields 64 Rademacher signs.
#pragma once

#include "miakit/common.h"

namespace miakit {

MIAKIT_HD uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The key of one probe: every (seed, example, probe) triple gets its own stream.
MIAKIT_HD uint64_t probe_key(uint64_t seed, uint64_t example, uint64_t probe) {
  return splitmix64(splitmix64(splitmix64(seed) ^ example) ^ (probe * 0xD1B54A32D192ED03ull));
}

// 64 signs of a probe's stream: bit b of word w is element 64 w + b.
MIAKIT_HD uint64_t probe_word(uint64_t key, uint64_t w) {
  return splitmix64(key + w * 0x9E3779B97F4A7C15ull);
}

// Element e's sign from the word that holds it (word = probe_word(key, e >> 6)).
MIAKIT_HD double sign_from_word(uint64_t word, int64_t e) {
  return ((word >> (e & 63)) & 1u) ? 1.0 : -1.0;
}

// Element e of the probe with this key: +1 or -1, each with probability 1/2.
MIAKIT_HD double rademacher_sign(uint64_t key, int64_t e) {
  return sign_from_word(probe_word(key, static_cast<uint64_t>(e) >> 6), e);
}

}  // namespace miakit
