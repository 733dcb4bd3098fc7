// Shared host/device math of the fused softmax cross-entropy residual (kernels_train.h):
// float32 exp and log written without branches or tables, so that CPU loops over many
// heads vectorize and the CUDA twin rounds the same way.
#pragma once

#include "miakit/common.h"

namespace miakit {

// exp(x) for x <= 0 in float32, within 2 ulp; x below -87 gives ~exp(-87) ~ 1.6e-38,
// which only ever meets a sum that already holds the term 1 (the maximum's).
MIAKIT_HD float expf_nonpos(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float kLog2e = 1.44269504088896341f;
  const float kLn2Hi = 0.693145751953125f, kLn2Lo = 1.428606765330187e-06f;
  const float kShifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float t = x * kLog2e + kShifter;
  const float k = t - kShifter;
  uint32_t tbits;
  memcpy(&tbits, &t, sizeof(tbits));  // the low bits of t hold k in two's complement
  const float r = (x - k * kLn2Hi) - k * kLn2Lo;  // |r| <= ln(2)/2
  // Taylor polynomial of degree 7: truncation error below 1.3e-8 on |r| <= ln(2)/2.
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const uint32_t scale_bits = (tbits + 127u) << 23;  // 2^k, k in [-126, 0]
  float scale;
  memcpy(&scale, &scale_bits, sizeof(scale));
  return p * scale;
}

// log(x) for finite x >= 1 (a sum of exponentials anchored at its maximum), float32,
// within 2 ulp: x = 2^e f with f in [1, 2), log f = 2 atanh((f - 1) / (f + 1)).
MIAKIT_HD float logf_ge1(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof(bits));
  const int e = static_cast<int>(bits >> 23) - 127;
  const uint32_t fbits = (bits & 0x007fffffu) | 0x3f800000u;
  float f;
  memcpy(&f, &fbits, sizeof(f));
  const float t = (f - 1.0f) / (f + 1.0f);  // in [0, 1/3)
  const float t2 = t * t;
  // 2 (t + t^3/3 + ... + t^13/13): truncation error below 3e-9 for t < 1/3.
  float p = 1.0f / 13.0f;
  p = p * t2 + 1.0f / 11.0f;
  p = p * t2 + 1.0f / 9.0f;
  p = p * t2 + 1.0f / 7.0f;
  p = p * t2 + 1.0f / 5.0f;
  p = p * t2 + 1.0f / 3.0f;
  p = p * t2 + 1.0f;
  return static_cast<float>(e) * 0.693147180559945309f + 2.0f * t * p;
}

}  // namespace miakit
