// Working memory of the CPU kernels' parallel regions.
//
// An exception cannot leave an OpenMP parallel region: one thrown inside it (std::bad_alloc
// from a buffer too large for the machine, say) ends the whole process through
// std::terminate. So every buffer a thread works in is allocated here, before the region,
// where a failure reaches the bindings as an ordinary exception (pybind11 raises
// MemoryError for std::bad_alloc and its subclasses, with what() as the message); inside
// the region each thread takes its own slice. Sizes are multiplied with overflow checks:
// a byte count that does not fit the address space can never be allocated and is refused
// the same way.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <initializer_list>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "parallel.h"

namespace miakit {
namespace cpu {

// A std::bad_alloc (so: MemoryError in Python) that says what could not be allocated.
class ScratchError : public std::bad_alloc {
 public:
  explicit ScratchError(std::string msg) : msg_(std::move(msg)) {}
  const char* what() const noexcept override { return msg_.c_str(); }

 private:
  std::string msg_;
};

// "12.0 GiB": a byte count for messages.
inline std::string byte_text(double bytes) {
  const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 6) {
    bytes /= 1024.0;
    ++u;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

[[noreturn]] inline void scratch_failed(const char* what, double bytes) {
  throw ScratchError(std::string(what) + ": not enough memory for the kernel's working "
                     "buffers (" + byte_text(bytes) + ")");
}

// The product of `dims` as a count of elements of `elem_size` bytes; ScratchError naming
// `what` when the bytes would not fit the address space (a negative size counts as that).
inline size_t scratch_count(std::initializer_list<int64_t> dims, size_t elem_size,
                            const char* what) {
  double bytes = static_cast<double>(elem_size);
  bool negative = false, zero = false;
  for (int64_t d : dims) {
    bytes *= static_cast<double>(d);
    negative = negative || d < 0;
    zero = zero || d == 0;
  }
  if (negative) scratch_failed(what, bytes);
  if (zero) return 0;
  const size_t cap = static_cast<size_t>(PTRDIFF_MAX) / elem_size;
  size_t n = 1;
  for (int64_t d : dims) {
    const size_t u = static_cast<size_t>(d);
    if (n > cap / u) scratch_failed(what, bytes);
    n *= u;
  }
  return n;
}

// Threads for a region with `work` independent pieces: never more than there are pieces,
// so that a tiny call does not allocate buffers for idle threads.
inline int team_for(int64_t work) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(max_threads(), work)));
}

// `threads` buffers of `per_thread` elements of T (a trivial type) in one allocation made
// here. The elements are left uninitialized, so each page is first touched by the thread
// that works in it; a thread that needs zeros fills its slice itself.
template <class T>
class ThreadBuffers {
 public:
  ThreadBuffers(int threads, std::initializer_list<int64_t> per_thread, const char* what)
      : per_(scratch_count(per_thread, sizeof(T), what)) {
    const size_t total = scratch_count({threads, static_cast<int64_t>(per_)}, sizeof(T), what);
    try {
      buf_.reset(new T[total > 0 ? total : 1]);
    } catch (const std::bad_alloc&) {
      scratch_failed(what, static_cast<double>(total) * sizeof(T));
    }
  }
  T* of(int thread) const { return buf_.get() + per_ * static_cast<size_t>(thread); }
  size_t size() const { return per_; }

 private:
  size_t per_;
  std::unique_ptr<T[]> buf_;
};

// `threads` objects T(args...), built here so that whatever they allocate is allocated
// before the region; a failure is a ScratchError naming `what`.
template <class T, class... Args>
std::vector<T> per_thread(int threads, const char* what, const Args&... args) {
  try {
    std::vector<T> v;
    v.reserve(static_cast<size_t>(threads));
    for (int t = 0; t < threads; ++t) v.emplace_back(args...);
    return v;
  } catch (const ScratchError&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw ScratchError(std::string(what) + ": not enough memory for the kernel's working "
                       "buffers");
  } catch (const std::length_error&) {
    throw ScratchError(std::string(what) + ": the kernel's working buffers would exceed the "
                       "address space");
  }
}

// The first exception thrown by the iterations of a parallel loop, rethrown after the
// loop by the calling thread: for work whose memory depends on the iteration, so cannot be
// allocated beforehand. Only for loops without barriers inside an iteration (a thread that
// caught an exception goes on with its next iteration).
class FirstError {
 public:
  template <class F>
  void run(F&& f) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;  // the call fails anyway
    try {
      f();
    } catch (...) {
      bool expected = false;
      if (failed_.compare_exchange_strong(expected, true)) error_ = std::current_exception();
    }
  }
  void rethrow() const {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
};

}  // namespace cpu
}  // namespace miakit
