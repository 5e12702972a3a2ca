// Fused multi-leaf optimizer updates for XLA:CPU, registered through the XLA FFI.
//
// One custom call updates every float32 leaf of a parameter tree in a single pass
// over memory, split over a few threads. Each element follows exactly the operations
// XLA:CPU emits for jaxopt_dl's pure-JAX transforms (the same fused multiply-adds,
// where LLVM contracts `a * b + c`; IEEE division and square root; division by a
// scalar done as multiplication by its reciprocal, as XLA's simplifier rewrites it),
// so the results are bitwise equal to the jitted pure-JAX step. Inputs are aliased to the
// outputs by the caller, so with donated buffers the update happens in place.
//
// Operands: scalars (f32[k], the hyperparameters already evaluated at this step),
// then for each leaf its `n_in` arrays; results: for each leaf its `n_out` arrays
// (Adam also has a flat-moment layout, described at AdamImpl).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Span {
  int64_t leaf, begin, end;
};

// Splits the elements of all leaves into `parts` contiguous runs of equal size.
std::vector<std::vector<Span>> Partition(const std::vector<int64_t>& sizes, int parts) {
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  std::vector<std::vector<Span>> out(parts);
  int64_t per = (total + parts - 1) / parts;
  per = (per + 63) / 64 * 64;  // whole cache lines per thread
  int part = 0;
  int64_t room = per;
  for (int64_t leaf = 0; leaf < static_cast<int64_t>(sizes.size()); ++leaf) {
    int64_t pos = 0;
    while (pos < sizes[leaf]) {
      int64_t take = std::min(room, sizes[leaf] - pos);
      out[part].push_back({leaf, pos, pos + take});
      pos += take;
      room -= take;
      if (room == 0 && part + 1 < parts) {
        ++part;
        room = per;
      }
    }
  }
  return out;
}

int NumThreads(int64_t total) {
  static const int configured = [] {
    const char* env = std::getenv("JAXOPT_DL_FUSED_THREADS");
    int n = env ? std::atoi(env) : static_cast<int>(std::thread::hardware_concurrency());
    return std::max(1, n);
  }();
  // Below ~256K elements a second thread costs more than it saves.
  int64_t useful = std::max<int64_t>(1, total / (1 << 18));
  return static_cast<int>(std::min<int64_t>(configured, useful));
}

template <typename Body>
void ParallelFor(const std::vector<int64_t>& sizes, Body body) {
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  int parts = NumThreads(total);
  auto plan = Partition(sizes, parts);
  auto run = [&](int p) {
    for (const Span& s : plan[p]) body(s.leaf, s.begin, s.end);
  };
  std::vector<std::thread> workers;
  for (int p = 1; p < parts; ++p) workers.emplace_back(run, p);
  run(0);
  for (auto& w : workers) w.join();
}

// Pointers to the arrays of every leaf: ins[leaf][k], outs[leaf][k].
struct Leaves {
  std::vector<std::vector<const float*>> ins;
  std::vector<std::vector<float*>> outs;
  std::vector<int64_t> sizes;
};

// The first `skip` results are not leaves.
ffi::ErrorOr<Leaves> Collect(ffi::RemainingArgs args, ffi::RemainingRets rets, int n_in,
                            int n_out, int skip) {
  if (rets.size() < static_cast<size_t>(skip) || args.size() % n_in != 0 ||
      (rets.size() - skip) % n_out != 0 || args.size() / n_in != (rets.size() - skip) / n_out) {
    return ffi::Unexpected(ffi::Error::InvalidArgument("operand count mismatch"));
  }
  Leaves leaves;
  size_t n = args.size() / n_in;
  leaves.ins.resize(n);
  leaves.outs.resize(n);
  leaves.sizes.resize(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t size = -1;
    for (int k = 0; k < n_in; ++k) {
      auto buf = args.get<ffi::AnyBuffer>(i * n_in + k);
      if (!buf.has_value()) return ffi::Unexpected(buf.error());
      if (buf->element_type() != ffi::DataType::F32)
        return ffi::Unexpected(ffi::Error::InvalidArgument("fused update expects float32"));
      if (size >= 0 && static_cast<int64_t>(buf->element_count()) != size)
        return ffi::Unexpected(ffi::Error::InvalidArgument("leaf size mismatch"));
      size = buf->element_count();
      leaves.ins[i].push_back(static_cast<const float*>(buf->untyped_data()));
    }
    for (int k = 0; k < n_out; ++k) {
      auto buf = rets.get<ffi::AnyBuffer>(skip + i * n_out + k);
      if (!buf.has_value()) return ffi::Unexpected(buf.error());
      if (static_cast<int64_t>((*buf)->element_count()) != size)
        return ffi::Unexpected(ffi::Error::InvalidArgument("result size mismatch"));
      leaves.outs[i].push_back(static_cast<float*>((*buf)->untyped_data()));
    }
    leaves.sizes[i] = size;
  }
  return leaves;
}

// ---------------------------------------------------------------------------
// Adam. scalars: b1, 1-b1, b2, 1-b2, 1/(1-b1^t), 1/(1-b2^t), eps, eps_root, -lr.
// (XLA rewrites the division by the scalar bias correction into a multiplication by
// its reciprocal; so do we, to produce the same bits.)
// apply=1: per leaf (p, g, m, v) -> (p', m', v');  apply=0: (g, m, v) -> (u, m', v'),
// after a first result that passes the scalars through.
// flat=1: the moments of all leaves live in two flat buffers; operands are
//   (m_flat, v_flat, then per leaf p, g or just g), results (m_flat', v_flat', then per
//   leaf p' or u); this call's leaves start at element `offset` of the flat buffers.
// ---------------------------------------------------------------------------
struct AdamLeaf {
  const float *p, *g, *m, *v;
  float *o0, *om, *ov;
};

void AdamLoop(const float* s, bool apply, const std::vector<AdamLeaf>& leaves,
              const std::vector<int64_t>& sizes) {
  const float b1 = s[0], omb1 = s[1], b2 = s[2], omb2 = s[3], rc1 = s[4], rc2 = s[5];
  const float eps = s[6], eps_root = s[7], step = s[8];
  ParallelFor(sizes, [&](int64_t leaf, int64_t begin, int64_t end) {
    const AdamLeaf& L = leaves[leaf];
    const float *p = L.p, *g = L.g, *m = L.m, *v = L.v;
    float *o0 = L.o0, *om = L.om, *ov = L.ov;
    if (apply) {
#pragma GCC ivdep
      for (int64_t i = begin; i < end; ++i) {
        const float gi = g[i];
        const float mi = std::fma(gi, omb1, b1 * m[i]);
        const float vi = std::fma(gi * gi, omb2, b2 * v[i]);
        const float d = (mi * rc1) / (std::sqrt(std::fma(vi, rc2, eps_root)) + eps);
        o0[i] = std::fma(d, step, p[i]);
        om[i] = mi;
        ov[i] = vi;
      }
    } else {
#pragma GCC ivdep
      for (int64_t i = begin; i < end; ++i) {
        const float gi = g[i];
        const float mi = std::fma(gi, omb1, b1 * m[i]);
        const float vi = std::fma(gi * gi, omb2, b2 * v[i]);
        o0[i] = step * ((mi * rc1) / (std::sqrt(std::fma(vi, rc2, eps_root)) + eps));
        om[i] = mi;
        ov[i] = vi;
      }
    }
  });
}

ffi::Error AdamImpl(ffi::Buffer<ffi::F32> scalars, ffi::RemainingArgs args,
                    ffi::RemainingRets rets, int64_t apply, int64_t flat, int64_t offset) {
  std::vector<AdamLeaf> leaves;
  std::vector<int64_t> sizes;
  if (!flat) {
    // Result 0 passes the scalars through (aliased: no work); it orders the calls of
    // one step into a chain, so XLA runs them one after another on the calling thread
    // instead of handing each one to another thread.
    auto token = rets.get<ffi::AnyBuffer>(0);
    if (!token.has_value()) return ffi::Error::InvalidArgument("adam: missing scalar result");
    float* pass = static_cast<float*>((*token)->untyped_data());
    if (pass != scalars.typed_data())
      std::copy(scalars.typed_data(), scalars.typed_data() + scalars.element_count(), pass);
    auto collected = Collect(args, rets, apply ? 4 : 3, 3, 1);
    if (!collected.has_value()) return collected.error();
    const Leaves& L = *collected;
    for (size_t i = 0; i < L.sizes.size(); ++i) {
      const auto& in = L.ins[i];
      const auto& out = L.outs[i];
      leaves.push_back({apply ? in[0] : nullptr, in[apply ? 1 : 0], in[apply ? 2 : 1],
                        in[apply ? 3 : 2], out[0], out[1], out[2]});
    }
    sizes = L.sizes;
  } else {
    // Two leading flat moment operands/results, then the leaves (p, g) or (g) -> (p') or (u).
    if (args.size() < 2 || rets.size() < 2)
      return ffi::Error::InvalidArgument("flat adam: missing moment buffers");
    auto m_in = args.get<ffi::AnyBuffer>(0), v_in = args.get<ffi::AnyBuffer>(1);
    auto m_out = rets.get<ffi::AnyBuffer>(0), v_out = rets.get<ffi::AnyBuffer>(1);
    if (!m_in.has_value() || !v_in.has_value() || !m_out.has_value() || !v_out.has_value())
      return ffi::Error::InvalidArgument("flat adam: bad moment buffers");
    const int64_t capacity = m_in->element_count();
    const float* m = static_cast<const float*>(m_in->untyped_data());
    const float* v = static_cast<const float*>(v_in->untyped_data());
    float* om = static_cast<float*>((*m_out)->untyped_data());
    float* ov = static_cast<float*>((*v_out)->untyped_data());
    if (om != m) std::copy(m, m + capacity, om);  // unaliased: keep the other leaves' moments
    if (ov != v) std::copy(v, v + capacity, ov);
    const size_t n_in = apply ? 2 : 1;
    if ((args.size() - 2) % n_in != 0 || (args.size() - 2) / n_in != rets.size() - 2)
      return ffi::Error::InvalidArgument("flat adam: operand count mismatch");
    int64_t pos = offset;
    for (size_t i = 0; i < rets.size() - 2; ++i) {
      auto g = args.get<ffi::AnyBuffer>(2 + i * n_in + (apply ? 1 : 0));
      auto o = rets.get<ffi::AnyBuffer>(2 + i);
      if (!g.has_value() || !o.has_value())
        return ffi::Error::InvalidArgument("flat adam: bad leaf buffer");
      const int64_t size = g->element_count();
      if (pos + size > capacity || static_cast<int64_t>((*o)->element_count()) != size)
        return ffi::Error::InvalidArgument("flat adam: leaf outside the moment buffers");
      const float* p = nullptr;
      if (apply) {
        auto pb = args.get<ffi::AnyBuffer>(2 + i * n_in);
        if (!pb.has_value() || static_cast<int64_t>(pb->element_count()) != size)
          return ffi::Error::InvalidArgument("flat adam: bad parameter buffer");
        p = static_cast<const float*>(pb->untyped_data());
      }
      leaves.push_back({p, static_cast<const float*>(g->untyped_data()), m + pos, v + pos,
                        static_cast<float*>((*o)->untyped_data()), om + pos, ov + pos});
      sizes.push_back(size);
      pos += size;
    }
  }
  AdamLoop(scalars.typed_data(), apply != 0, leaves, sizes);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JdlFusedAdam, AdamImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<int64_t>("apply")
                                  .Attr<int64_t>("flat")
                                  .Attr<int64_t>("offset"));
