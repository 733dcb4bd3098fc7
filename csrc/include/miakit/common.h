// Portability macros and element loads shared by the CPU and CUDA kernels.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MIAKIT_HD __host__ __device__ __forceinline__
#else
#define MIAKIT_HD inline
#endif

namespace miakit {

// Element types a kernel can read. The numbering is private to the extension.
enum class DType : int { f16 = 0, bf16, f32, f64, i8, i16, i32, i64, u8, b8 };

MIAKIT_HD int dtype_size(DType t) {
  switch (t) {
    case DType::f16: case DType::bf16: case DType::i16: return 2;
    case DType::f32: case DType::i32: return 4;
    case DType::f64: case DType::i64: return 8;
    default: return 1;
  }
}

// IEEE binary16 -> float, by bit manipulation so that host code needs no F16C and
// device code gives the same answer as __half2float.
MIAKIT_HD float half_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalize
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf or NaN
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}

MIAKIT_HD float bf16_bits_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}

// Read element i (already offset) of a typed buffer as double.
MIAKIT_HD double load_as_double(const void* base, DType t, int64_t offset) {
  switch (t) {
    case DType::f16: return half_bits_to_float(static_cast<const uint16_t*>(base)[offset]);
    case DType::bf16: return bf16_bits_to_float(static_cast<const uint16_t*>(base)[offset]);
    case DType::f32: return static_cast<const float*>(base)[offset];
    case DType::f64: return static_cast<const double*>(base)[offset];
    case DType::i8: return static_cast<const int8_t*>(base)[offset];
    case DType::i16: return static_cast<const int16_t*>(base)[offset];
    case DType::i32: return static_cast<const int32_t*>(base)[offset];
    case DType::i64: return static_cast<double>(static_cast<const int64_t*>(base)[offset]);
    default: return static_cast<const uint8_t*>(base)[offset];
  }
}

// Typed loads used in templated inner loops.
template <class T> struct Load;
template <> struct Load<float> { MIAKIT_HD static double get(const float* p) { return *p; } };
template <> struct Load<double> { MIAKIT_HD static double get(const double* p) { return *p; } };
struct Half { uint16_t bits; };
struct BFloat16 { uint16_t bits; };
template <> struct Load<Half> {
  MIAKIT_HD static double get(const Half* p) { return half_bits_to_float(p->bits); }
};
template <> struct Load<BFloat16> {
  MIAKIT_HD static double get(const BFloat16* p) { return bf16_bits_to_float(p->bits); }
};

MIAKIT_HD bool is_finite(double x) { return x - x == 0.0; }

// exp(x) for x <= 0, to within 1 ulp (max relative error 2.3e-16 on [-708, 0]); inputs
// below -708 give exp(-708) ~ 3e-308, which only ever meets a sum that holds a term 1.
// Used for the terms of a log-sum-exp anchored at its maximum. Written without branches
// or table look-ups so that CPU loops over it vectorize; the CUDA kernels call the same
// function, so both devices round the same way.
MIAKIT_HD double exp_nonpos(double x) {
  x = x < -708.0 ? -708.0 : x;
  const double kLog2e = 1.4426950408889634074;
  const double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
  const double kShifter = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
  const double t = x * kLog2e + kShifter;
  const double k = t - kShifter;
  uint64_t tbits;
  memcpy(&tbits, &t, sizeof(tbits));  // the low bits of t hold k in two's complement
  const double r = (x - k * kLn2Hi) - k * kLn2Lo;  // |r| <= ln(2)/2
  // Taylor polynomial of degree 13: truncation error below 5e-18 on |r| <= ln(2)/2.
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const uint64_t scale_bits = (tbits + 1023u) << 52;  // 2^k, k in [-1022, 0]
  double scale;
  memcpy(&scale, &scale_bits, sizeof(scale));
  return p * scale;
}

}  // namespace miakit
