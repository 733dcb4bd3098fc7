// CPU kernels for LiRA (docs/methods/lira.md): fitting the IN/OUT Gaussians, scoring a
// target against them, and leave-one-out scoring of many targets in one pass.
//
// Work is done in tiles of consecutive examples. A tile gathers every model's
// observations (read from precomputed scores, or computed from logits on the fly) into
// a column-major buffer [example, augmentation][model], so that each column's IN/OUT
// statistics are computed from memory that is already in cache, and the logits are read
// once, sequentially, per model.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels.h"
#include "parallel.h"
#include "scratch.h"
#include "signal_block.h"

namespace miakit {
namespace cpu {

namespace {

struct TileCounts {
  int64_t nonfinite_logits = 0;
  int64_t bad_label = 0;
  int64_t nonfinite_scores = 0;
};

// buf[((j - n0) * A + a) * M + m] = observation of model m on example j, augmentation a.
// (isa: the instruction set of the signal block, isa.h; blk: the thread's signal block,
// used from logits only)
using FillFn = void (*)(const LiraSource&, const LiraOptions&, Isa, SignalBlock*, int64_t,
                        int64_t, double*, TileCounts&);

template <class T>
void fill_from_scores(const LiraSource& src, const LiraOptions&, Isa, SignalBlock*, int64_t n0,
                      int64_t n1, double* buf, TileCounts& cnt) {
  const Tensor& s = src.scores;
  const int64_t M = s.shape[0], A = s.shape[2];
  const T* base = s.ptr<T>();
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t j = n0; j < n1; ++j) {
      const T* row = base + m * s.strides[0] + j * s.strides[1];
      double* dst = buf + ((j - n0) * A) * M + m;
      for (int64_t a = 0; a < A; ++a) {
        const double v = Load<T>::get(row + a * s.strides[2]);
        cnt.nonfinite_scores += !is_finite(v);
        dst[a * M] = v;
      }
    }
  }
}

// From logits, the observations are the signal's values as they come (the statistics are
// not rescaled here): values beyond kLiraMaxAbsObservation are counted in
// nonfinite_scores, and the caller computes the scores and takes the path that rescales.
template <class T>
void fill_from_logits(const LiraSource& src, const LiraOptions& opt, Isa isa, SignalBlock* block,
                      int64_t n0, int64_t n1, double* buf, TileCounts& cnt) {
  const Tensor& z = src.logits;
  const int64_t M = z.shape[0], A = z.shape[2];
  const int C = static_cast<int>(z.shape[3]);
  const T* base = z.ptr<T>();
  const int64_t* lab = src.labels.ptr<int64_t>();
  const int64_t rows = (n1 - n0) * A;  // the tile's (example, augmentation) pairs
  SignalBlock& blk = *block;
  const SignalSet set(opt.signal);
  const T* ptrs[kRowBlock];
  int64_t ys[kRowBlock];
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
      const int nb = static_cast<int>(std::min<int64_t>(kRowBlock, rows - r0));
      for (int i = 0; i < nb; ++i) {
        const int64_t j = n0 + (r0 + i) / A, q = (r0 + i) % A;
        ptrs[i] = base + m * z.strides[0] + j * z.strides[1] + q * z.strides[2];
        ys[i] = lab[j * src.labels.strides[0]];
      }
      blk.load(ptrs, ys, nb, C, z.strides[3]);
      evaluate_block(isa, set, blk, C);
      for (int i = 0; i < nb; ++i) {
        cnt.nonfinite_logits += blk.status[i] == 1;
        cnt.bad_label += blk.status[i] == 2;
        const double v = blk.out[0][i];
        cnt.nonfinite_scores += blk.status[i] == 0 && !(std::fabs(v) <= kLiraMaxAbsObservation);
        buf[(r0 + i) * M + m] = v;  // row (j, q) sits at column (j - n0) * A + q
      }
    }
  }
}

FillFn pick_fill(const LiraSource& src) {
  const DType t = src.from_logits ? src.logits.dtype : src.scores.dtype;
  switch (t) {
    case DType::f16: return src.from_logits ? fill_from_logits<Half> : fill_from_scores<Half>;
    case DType::bf16:
      return src.from_logits ? fill_from_logits<BFloat16> : fill_from_scores<BFloat16>;
    case DType::f32: return src.from_logits ? fill_from_logits<float> : fill_from_scores<float>;
    case DType::f64:
      return src.from_logits ? fill_from_logits<double> : fill_from_scores<double>;
    default: throw InputError("scores/logits: unsupported dtype");
  }
}

void source_dims(const LiraSource& src, int64_t* M, int64_t* N, int64_t* A) {
  const Tensor& t = src.from_logits ? src.logits : src.scores;
  *M = t.shape[0];
  *N = t.shape[1];
  *A = t.shape[2];
}

// Examples per tile: the tile buffer stays near 256 KiB (L2-resident), and there are
// enough tiles to keep every thread busy.
int64_t tile_size(int64_t M, int64_t N, int64_t A) {
  int64_t nb = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, M * A));
  const int64_t per_thread = (N + 4 * max_threads() - 1) / (4 * max_threads());
  nb = std::min(nb, std::max<int64_t>(1, per_thread));
  return std::min<int64_t>(nb, 1024);
}

struct ValueId {
  double v;
  int id;
};

// How a column finds medians: not at all (mean centre), by sorting each side once (many
// targets: every removal is then O(1)), or by selection per request (few targets).
enum class MedianBy { none, sort, select };

constexpr int64_t kSelectMaxTargets = 4;

MedianBy median_by(const LiraOptions& opt, int64_t n_targets) {
  if (opt.center != Center::median) return MedianBy::none;
  return n_targets <= kSelectMaxTargets ? MedianBy::select : MedianBy::sort;
}

// Everything known about one (example, augmentation) column.
struct Column {
  SideStats in{0, 0.0, 0.0}, out{0, 0.0, 0.0};
  MedianBy by = MedianBy::none;
  std::vector<double> in_vals, out_vals;  // each side's values: sorted, or in model order
  std::vector<int> in_ids, out_ids;       // model of each value (MedianBy::select)
  std::vector<int> rank;                  // rank of model m within its side (MedianBy::sort)
  std::vector<ValueId> scratch;
  std::vector<double> sel;

  explicit Column(int64_t M)
      : in_vals(M), out_vals(M), in_ids(M), out_ids(M), rank(M), scratch(M), sel(M) {}

  const double* values = nullptr;  // this column's observations, model order
  const uint8_t* members = nullptr;
  int64_t n_models = 0;

  void analyze(const double* v, const uint8_t* member, int64_t M, MedianBy median) {
    by = median;
    values = v;
    members = member;
    n_models = M;
    double s_in = 0.0, s_out = 0.0;
    int n_in = 0, n_out = 0;
    for (int64_t m = 0; m < M; ++m) {
      if (member[m]) { s_in += v[m]; ++n_in; } else { s_out += v[m]; ++n_out; }
    }
    const double mean_in = n_in ? s_in / n_in : 0.0, mean_out = n_out ? s_out / n_out : 0.0;
    double q_in = 0.0, q_out = 0.0;
    for (int64_t m = 0; m < M; ++m) {
      const double d = v[m] - (member[m] ? mean_in : mean_out);
      if (member[m]) q_in += d * d; else q_out += d * d;
    }
    in = {n_in, n_in ? mean_in : NAN, q_in};
    out = {n_out, n_out ? mean_out : NAN, q_out};
    if (by == MedianBy::sort) {
      sort_side(v, member, M, 1, in_vals.data());
      sort_side(v, member, M, 0, out_vals.data());
    } else if (by == MedianBy::select) {
      int a = 0, b = 0;
      for (int64_t m = 0; m < M; ++m) {
        if (member[m]) { in_vals[a] = v[m]; in_ids[a++] = static_cast<int>(m); }
        else { out_vals[b] = v[m]; out_ids[b++] = static_cast<int>(m); }
      }
    }
  }

  // Median of one side, without the model `remove_model` (-1: without nobody).
  double median(bool is_in, int remove_model) {
    const SideStats& s = is_in ? in : out;
    if (s.n - (remove_model >= 0 ? 1 : 0) <= 0) return NAN;
    const double* vals = is_in ? in_vals.data() : out_vals.data();
    if (by == MedianBy::sort)
      return median_without(vals, s.n, remove_model >= 0 ? rank[remove_model] : -1);
    const int* ids = is_in ? in_ids.data() : out_ids.data();
    int n = 0;
    for (int i = 0; i < s.n; ++i) {
      if (ids[i] != remove_model) sel[n++] = vals[i];
    }
    const int lo = (n - 1) / 2, hi = n / 2;
    std::nth_element(sel.begin(), sel.begin() + lo, sel.begin() + n);
    const double a = sel[lo];
    if (hi == lo) return a;
    return 0.5 * (a + *std::min_element(sel.begin() + lo + 1, sel.begin() + n));
  }

  // Count, mean and M2 of one side without model `model` (-1: the whole side), from the
  // running statistics, or directly from the values when the removal left M2 too close
  // to its rounding error to trust.
  SideStats without(bool is_in, int model) const {
    const SideStats& s = is_in ? in : out;
    if (model < 0) return s;
    SideStats r;
    stats_without(s, values[model], true, &r.mean, &r.m2, &r.n);
    if (!m2_needs_recompute(s.m2, r.m2, r.n)) return r;
    const uint8_t side = is_in ? 1 : 0;
    double sum = 0.0;
    for (int64_t m = 0; m < n_models; ++m) {
      if (m != model && members[m] == side) sum += values[m];
    }
    r.mean = sum / r.n;
    double q = 0.0;
    for (int64_t m = 0; m < n_models; ++m) {
      if (m != model && members[m] == side) q += (values[m] - r.mean) * (values[m] - r.mean);
    }
    r.m2 = q;
    return r;
  }

 private:
  void sort_side(const double* v, const uint8_t* member, int64_t M, uint8_t side, double* dst) {
    int n = 0;
    for (int64_t m = 0; m < M; ++m) {
      if (member[m] == side) scratch[n++] = {v[m], static_cast<int>(m)};
    }
    std::sort(scratch.begin(), scratch.begin() + n,
              [](const ValueId& a, const ValueId& b) { return a.v < b.v; });
    for (int i = 0; i < n; ++i) {
      dst[i] = scratch[i].v;
      rank[scratch[i].id] = i;
    }
  }
};

// The working memory of every thread of a tile loop, allocated before the parallel region
// (scratch.h): one tile of observations, one column of memberships, a Column, and from
// logits a signal block.
struct TileScratch {
  ThreadBuffers<double> buf;       // [nb * A * M] per thread
  ThreadBuffers<uint8_t> member;   // [M] per thread
  std::vector<Column> cols;
  std::vector<SignalBlock> blocks;  // from logits only

  TileScratch(const LiraSource& src, int threads, int64_t nb, int64_t M, int64_t A)
      : buf(threads, {nb, A, M}, src.from_logits ? "logits" : "shadow_scores"),
        member(threads, {M}, "keep"),
        cols(per_thread<Column>(threads, "keep", M)),
        blocks(src.from_logits ? per_thread<SignalBlock>(threads, "logits",
                                                         static_cast<int>(src.logits.shape[3]))
                               : std::vector<SignalBlock>()) {}
  SignalBlock* block(int t) { return blocks.empty() ? nullptr : &blocks[t]; }
};

// Element (j, q) of a float64 [N, A] array (fit statistics), with its own strides.
inline double& f64_at(const Tensor& t, int64_t j, int64_t q) {
  return t.ptr<double>()[j * t.strides[0] + q * t.strides[1]];
}

void load_membership(const Tensor& keep, int64_t j, int64_t M, uint8_t* member) {
  const uint8_t* k = keep.ptr<uint8_t>();
  for (int64_t m = 0; m < M; ++m) member[m] = k[m * keep.strides[0] + j * keep.strides[1]] != 0;
}

void add_counts(LiraStatus& st, const TileCounts& c) {
  st.signal.nonfinite += c.nonfinite_logits;
  st.signal.bad_label += c.bad_label;
  st.nonfinite_scores += c.nonfinite_scores;
}

// Statistics of one side for a target: centre and spread without model `removed` (the
// target on its own side, its balanced partner on the other; -1: nobody). ok is false when
// the side is empty.
struct SideFit {
  double mu, sd;
  bool ok;
};

SideFit side_without(Column& col, bool is_in, int removed, const LiraOptions& opt,
                     double global_sd) {
  const SideStats r = col.without(is_in, removed);
  if (r.n <= 0) return {NAN, NAN, false};
  const double mu = opt.center == Center::mean ? r.mean : col.median(is_in, removed);
  const double sd = opt.variance == Variance::global ? global_sd : std::sqrt(r.m2 / r.n);
  return {mu, sd, true};
}

// The models leave-one-out removes from the IN and the OUT side for target m on one
// example: the target from its own side and, with balanced references, its partner from
// the other (-1: nothing removed from that side).
struct Removed {
  int in, out;
};

Removed removed_models(int m, int64_t M, const uint8_t* member, References refs) {
  const int partner = refs == References::balanced
                          ? balanced_partner(m, static_cast<int>(M), member) : -1;
  return member[m] ? Removed{m, partner} : Removed{partner, m};
}

}  // namespace

LiraStatus lira_fit(const LiraFitArgs& a) {
  int64_t M, N, A;
  source_dims(a.source, &M, &N, &A);
  const FillFn fill = pick_fill(a.source);
  const Isa isa = cpu_isa();
  const int64_t nb = tile_size(M, N, A);
  const int64_t ntiles = (N + nb - 1) / nb;
  const MedianBy by = median_by(a.opt, 0);
  const bool median = by != MedianBy::none;
  LiraStatus st;
  const int threads = team_for(ntiles);
  TileScratch scratch(a.source, threads, nb, M, A);
  std::vector<TileCounts> counts(threads);

#pragma omp parallel num_threads(threads)
  {
    const int tid = thread_id();
    double* buf = scratch.buf.of(tid);
    uint8_t* member = scratch.member.of(tid);
    Column& col = scratch.cols[tid];
    TileCounts& cnt = counts[tid];
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < ntiles; ++t) {
      const int64_t n0 = t * nb, n1 = std::min(N, n0 + nb);
      fill(a.source, a.opt, isa, scratch.block(tid), n0, n1, buf, cnt);
      for (int64_t j = n0; j < n1; ++j) {
        load_membership(a.keep, j, M, member);
        for (int64_t q = 0; q < A; ++q) {
          col.analyze(buf + ((j - n0) * A + q) * M, member, M, by);
          f64_at(a.mu_in, j, q) = median ? col.median(true, -1) : col.in.mean;
          f64_at(a.mu_out, j, q) = median ? col.median(false, -1) : col.out.mean;
          f64_at(a.sd_in, j, q) = col.in.n ? std::sqrt(col.in.m2 / col.in.n) : NAN;
          f64_at(a.sd_out, j, q) = col.out.n ? std::sqrt(col.out.m2 / col.out.n) : NAN;
        }
        a.n_in.ptr<int64_t>()[j * a.n_in.strides[0]] = col.in.n;
        a.n_out.ptr<int64_t>()[j * a.n_out.strides[0]] = col.out.n;
      }
    }
  }
  for (const TileCounts& c : counts) add_counts(st, c);
  return st;
}

LiraStatus lira_score(const LiraScoreArgs& a) {
  const int64_t N = a.target.shape[0], A = a.target.shape[1];
  LiraStatus st;
  st.clamped.assign(1, 0);
  st.empty.assign(1, 0);
  int64_t nonfinite = 0, empty = 0;
  const DType tt = a.target.dtype;
#pragma omp parallel for schedule(static) reduction(+ : nonfinite, empty)
  for (int64_t j = 0; j < N; ++j) {
    double acc = 0.0;
    bool ok = true;
    for (int64_t q = 0; q < A; ++q) {
      const double s =
          load_as_double(a.target.data, tt, j * a.target.strides[0] + q * a.target.strides[1]);
      nonfinite += !is_finite(s);
      const double mo = f64_at(a.mu_out, j, q), so = f64_at(a.sd_out, j, q);
      const double mi = a.opt.mode == Mode::online ? f64_at(a.mu_in, j, q) : 0.0;
      const double si = a.opt.mode == Mode::online ? f64_at(a.sd_in, j, q) : 1.0;
      if (!is_finite(mo) || !is_finite(mi)) ok = false;
      acc += lira_observation(a.opt.mode, a.opt.offline, s, mi, si, mo, so);
    }
    empty += !ok;
    a.out.ptr<double>()[j * a.out.strides[0]] = ok ? acc / A : NAN;
  }
  st.nonfinite_scores = nonfinite;
  st.empty[0] = empty;
  return st;
}

LiraStatus lira_loo(const LiraLooArgs& a) {
  int64_t M, N, A;
  source_dims(a.source, &M, &N, &A);
  const int64_t K = a.targets.shape[0];
  const int64_t* targets = a.targets.ptr<int64_t>();
  for (int64_t k = 0; k < K; ++k) {
    const int64_t t = targets[k * a.targets.strides[0]];
    if (t < 0 || t >= M) throw InputError("targets: model index out of range");
  }
  auto target = [&](int64_t k) { return static_cast<int>(targets[k * a.targets.strides[0]]); };
  const FillFn fill = pick_fill(a.source);
  const Isa isa = cpu_isa();
  const int64_t nb = tile_size(M, N, A);
  const int64_t ntiles = (N + nb - 1) / nb;
  const MedianBy by = median_by(a.opt, K);
  const bool global = a.opt.variance == Variance::global;
  const int nthreads = team_for(ntiles);
  TileScratch scratch(a.source, nthreads, nb, M, A);
  LiraStatus st;

  // Pooled variance without target k, per side: the sum over columns of each column's M2
  // without the models left out for k, over the sum of their counts. Summed as such, not
  // as the total M2 minus what the removal takes away: when the removed models hold the
  // largest deviations (a diverged model) that difference would cancel catastrophically.
  // Needs one pass over the data first.
  std::vector<double> gsd_in(K, NAN), gsd_out(K, NAN);
  if (global) {
    // Sums per tile, added up in tile order afterwards: the result does not depend on
    // which thread took which tile (the schedule is dynamic) nor on the thread count.
    const size_t width = static_cast<size_t>(4 * K);
    std::vector<double> part(static_cast<size_t>(ntiles) * width, 0.0);
    std::vector<TileCounts> counts(nthreads);
#pragma omp parallel num_threads(nthreads)
    {
      const int tid = thread_id();
      double* buf = scratch.buf.of(tid);
      uint8_t* member = scratch.member.of(tid);
      Column& col = scratch.cols[tid];
#pragma omp for schedule(dynamic, 1)
      for (int64_t t = 0; t < ntiles; ++t) {
        double* acc = part.data() + static_cast<size_t>(t) * width;
        const int64_t n0 = t * nb, n1 = std::min(N, n0 + nb);
        fill(a.source, a.opt, isa, scratch.block(tid), n0, n1, buf, counts[tid]);
        for (int64_t j = n0; j < n1; ++j) {
          load_membership(a.keep, j, M, member);
          for (int64_t q = 0; q < A; ++q) {
            const double* v = buf + ((j - n0) * A + q) * M;
            col.analyze(v, member, M, MedianBy::none);
            for (int64_t k = 0; k < K; ++k) {
              const Removed rm = removed_models(target(k), M, member, a.opt.references);
              const SideStats in = col.without(true, rm.in), out = col.without(false, rm.out);
              acc[4 * k + 0] += in.m2;
              acc[4 * k + 1] += in.n;
              acc[4 * k + 2] += out.m2;
              acc[4 * k + 3] += out.n;
            }
          }
        }
      }
    }
    std::vector<double> tot(width, 0.0);
    for (int64_t t = 0; t < ntiles; ++t)
      for (size_t i = 0; i < width; ++i) tot[i] += part[static_cast<size_t>(t) * width + i];
    for (int64_t k = 0; k < K; ++k) {
      const double ni = tot[4 * k + 1], no = tot[4 * k + 3];
      gsd_in[k] = ni > 0 ? std::sqrt(tot[4 * k] / ni) : NAN;
      gsd_out[k] = no > 0 ? std::sqrt(tot[4 * k + 2] / no) : NAN;
    }
    // Non-finite input is counted in the scoring pass below; nothing is lost here.
  }

  std::vector<TileCounts> counts(nthreads);
  std::vector<std::vector<int64_t>> clamped(nthreads, std::vector<int64_t>(K, 0));
  std::vector<std::vector<int64_t>> empty(nthreads, std::vector<int64_t>(K, 0));
  const bool online = a.opt.mode == Mode::online;
  const double min_std = a.opt.min_std;
  ThreadBuffers<double> accs(nthreads, {K}, "targets");
  ThreadBuffers<uint8_t> empties(nthreads, {K}, "targets");
  ThreadBuffers<Removed> removeds(nthreads, {K}, "targets");

#pragma omp parallel num_threads(nthreads)
  {
    const int tid = thread_id();
    double* buf = scratch.buf.of(tid);
    uint8_t* member = scratch.member.of(tid);
    double* acc = accs.of(tid);
    uint8_t* is_empty = empties.of(tid);
    Removed* removed = removeds.of(tid);
    Column& col = scratch.cols[tid];
    int64_t* my_clamped = clamped[tid].data();
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < ntiles; ++t) {
      const int64_t n0 = t * nb, n1 = std::min(N, n0 + nb);
      fill(a.source, a.opt, isa, scratch.block(tid), n0, n1, buf, counts[tid]);
      for (int64_t j = n0; j < n1; ++j) {
        load_membership(a.keep, j, M, member);
        std::fill(acc, acc + K, 0.0);
        std::fill(is_empty, is_empty + K, 0);
        for (int64_t k = 0; k < K; ++k)
          removed[k] = removed_models(target(k), M, member, a.opt.references);
        for (int64_t q = 0; q < A; ++q) {
          const double* v = buf + ((j - n0) * A + q) * M;
          col.analyze(v, member, M, by);
          for (int64_t k = 0; k < K; ++k) {
            const double x = v[target(k)];
            SideFit out = side_without(col, false, removed[k].out, a.opt, gsd_out[k]);
            SideFit in{0.0, 1.0, true};
            if (online) in = side_without(col, true, removed[k].in, a.opt, gsd_in[k]);
            if (!out.ok || !in.ok) {
              is_empty[k] = 1;
              continue;
            }
            if (!(out.sd >= min_std)) { out.sd = min_std; ++my_clamped[k]; }
            if (online && !(in.sd >= min_std)) { in.sd = min_std; ++my_clamped[k]; }
            acc[k] += lira_observation(a.opt.mode, a.opt.offline, x, in.mu, in.sd, out.mu, out.sd);
          }
        }
        double* o = a.out.ptr<double>();
        for (int64_t k = 0; k < K; ++k) {
          empty[tid][k] += is_empty[k];
          o[k * a.out.strides[0] + j * a.out.strides[1]] = is_empty[k] ? NAN : acc[k] / A;
        }
      }
    }
  }
  for (const TileCounts& c : counts) add_counts(st, c);
  st.clamped.assign(K, 0);
  st.empty.assign(K, 0);
  for (int i = 0; i < nthreads; ++i) {
    for (int64_t k = 0; k < K; ++k) {
      st.clamped[k] += clamped[i][k];
      st.empty[k] += empty[i][k];
    }
  }
  return st;
}

}  // namespace cpu
}  // namespace miakit
