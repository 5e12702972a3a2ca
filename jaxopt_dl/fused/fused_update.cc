// Fused optimizer steps for XLA:CPU, registered through the XLA FFI.
//
// One custom call applies an optimizer step to many leaves of a parameter tree in a
// single pass over memory: it reads each leaf's parameter, gradient and moments and
// writes the new parameter and moments (aliased to the inputs by the caller, so with
// donated buffers the step happens in place), split over a persistent pool of threads.
//
// The arithmetic follows the operations XLA:CPU emits for jaxopt_dl's pure-JAX
// transforms as one jitted step: IEEE division and square root, division by a scalar
// as multiplication by its reciprocal where XLA's simplifier rewrites it, and each
// `a * b + c` as one fused multiply-add (std::fma), which is what XLA's LLVM backend
// emits on a CPU with FMA instructions. Where XLA does not contract a product and a
// sum (a CPU without FMA, or a step fused differently, e.g. inside a loop body), the
// plain step rounds twice where the kernel rounds once, and the two differ by that
// rounding. Moments may be stored as float32 or bfloat16: arithmetic is float32 and a
// bfloat16 moment is rounded (to nearest even) when stored, as XLA does. Adam's step
// uses the moments as stored (as jaxopt_dl's scale_by_adam); momentum's uses the
// trace before rounding (as optax.trace).
//
// Operands: scalars (f32[k], the hyperparameters already evaluated at this step),
// then for each leaf (p, g, moments...); results: the scalars passed through (aliased;
// it chains the calls of one step), then for each leaf (p', moments'...).

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#ifdef __linux__
#include <pthread.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// ---------------------------------------------------------------------------
// Threads: one pool for the process, started on first use.
// ---------------------------------------------------------------------------

int ConfiguredThreads() {
  static const int configured = [] {
    const char* env = std::getenv("JAXOPT_DL_FUSED_THREADS");
    int n = env ? std::atoi(env) : static_cast<int>(std::thread::hardware_concurrency());
    return std::max(1, n);
  }();
  return configured;
}

// One parallel step: `chunks` pieces of work handed out through an atomic counter.
// The calling thread starts on them at once and the workers join when they wake, so a
// worker that wakes late costs nothing: it finds the work done and leaves. The caller
// returns when every piece is claimed and no worker is inside one.
struct Job {
  const std::function<void(int64_t)>* fn;
  int64_t chunks;
  std::atomic<int64_t> next{0};
  std::atomic<int> in_flight{0};

  // Claims and runs pieces until none is left.
  void Work() {
    for (int64_t c; (c = next.fetch_add(1)) < chunks;) (*fn)(c);
  }
};

// Workers sleep on a condition variable between steps; `Run` publishes a job, wakes
// them, works on it itself and waits only for workers that are inside a piece.
class Pool {
 public:
  static Pool& Get() {
    static Pool* pool = new Pool(ConfiguredThreads() - 1);  // never destroyed: no join at exit
    return *pool;
  }

  void Run(int64_t chunks, const std::function<void(int64_t)>& fn) {
    std::lock_guard<std::mutex> serial(run_mu_);  // one step at a time uses the workers
    auto job = std::make_shared<Job>();
    job->fn = &fn;
    job->chunks = chunks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = job;
      ++generation_;
    }
    wake_.notify_all();
    job->Work();
    // Every piece is claimed; a worker that enters now finds none and touches nothing.
    while (job->in_flight.load() != 0) std::this_thread::yield();
  }

  int workers() const { return static_cast<int>(threads_.size()); }

 private:
  explicit Pool(int workers) {
    for (int id = 0; id < workers; ++id) {
      threads_.emplace_back([this] { Loop(); });
      threads_.back().detach();
    }
  }

  void Loop() {
#ifdef __linux__
    pthread_setname_np(pthread_self(), "jdl-fused");
#endif
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        job = job_;
      }
      job->in_flight.fetch_add(1);
      job->Work();
      job->in_flight.fetch_sub(1);
    }
  }

  std::vector<std::thread> threads_;
  std::mutex run_mu_, mu_;
  std::condition_variable wake_;
  std::shared_ptr<Job> job_;
  uint64_t generation_ = 0;
};

struct Span {
  int64_t leaf, begin, end;
};

// Splits the elements of all leaves into contiguous pieces of about `per` elements
// (whole cache lines), each a list of spans.
std::vector<std::vector<Span>> Partition(const std::vector<int64_t>& sizes, int64_t per) {
  per = std::max<int64_t>(64, (per + 63) / 64 * 64);
  std::vector<std::vector<Span>> out(1);
  int64_t room = per;
  for (int64_t leaf = 0; leaf < static_cast<int64_t>(sizes.size()); ++leaf) {
    int64_t pos = 0;
    while (pos < sizes[leaf]) {
      if (room == 0) {
        out.emplace_back();
        room = per;
      }
      int64_t take = std::min(room, sizes[leaf] - pos);
      out.back().push_back({leaf, pos, pos + take});
      pos += take;
      room -= take;
    }
  }
  return out;
}

// Runs body(leaf, begin, end) over every element. Below 2^18 elements a wake-up costs
// more than it saves, so small steps run inline on the calling thread; larger ones go
// to the pool in pieces of 2^16 elements.
template <typename Body>
void ParallelFor(const std::vector<int64_t>& sizes, Body body) {
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  Pool& pool = Pool::Get();
  if (pool.workers() == 0 || total < (1 << 18)) {
    for (size_t leaf = 0; leaf < sizes.size(); ++leaf) body(leaf, 0, sizes[leaf]);
    return;
  }
  auto plan = Partition(sizes, int64_t{1} << 16);
  pool.Run(static_cast<int64_t>(plan.size()), [&](int64_t piece) {
    for (const Span& s : plan[piece]) body(s.leaf, s.begin, s.end);
  });
}

// ---------------------------------------------------------------------------
// Moment storage: float32 or bfloat16, arithmetic in float32.
// ---------------------------------------------------------------------------

// The bits of `f` rounded to the nearest bfloat16 (ties to even; NaN stays a quiet NaN),
// still as a float32 pattern: the low 16 bits are zero.
inline uint32_t RoundedToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint32_t rounded = (bits & 0x7fffffffu) > 0x7f800000u
                               ? bits | 0x00400000u  // quiet NaN
                               : bits + 0x7fffu + ((bits >> 16) & 1);
  return rounded & 0xffff0000u;
}

inline float AsFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

template <bool kBf16>
inline float Load(const void* base, int64_t i) {
  return kBf16 ? AsFloat(static_cast<uint32_t>(static_cast<const uint16_t*>(base)[i]) << 16)
               : static_cast<const float*>(base)[i];
}

// Stores `f` and returns the value stored (Adam's step is computed from stored moments).
template <bool kBf16>
inline float Store(void* base, int64_t i, float f) {
  if (!kBf16) {
    static_cast<float*>(base)[i] = f;
    return f;
  }
  const uint32_t rounded = RoundedToBf16(f);
  static_cast<uint16_t*>(base)[i] = static_cast<uint16_t>(rounded >> 16);
  return AsFloat(rounded);
}

// The element loops are compiled for several x86 levels and picked at load time, so
// one binary (a wheel) runs everywhere and uses FMA/AVX where the CPU has them.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define JDL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define JDL_CLONES
#endif

// One leaf's buffers: p, g and up to two moments in; p' and the moments out.
struct Leaf {
  const float *p, *g;
  const void* m[2];
  float* p_out;
  void* m_out[2];
  bool bf16[2];
  int64_t size;
};

// Collects the leaves of one call: per leaf `1 + 1 + moments` operands and
// `1 + moments` results, after the scalar operand and result.
ffi::ErrorOr<std::vector<Leaf>> Collect(ffi::RemainingArgs args, ffi::RemainingRets rets,
                                        int moments) {
  const size_t n_in = 2 + moments, n_out = 1 + moments;
  if (rets.size() < 1 || args.size() % n_in != 0 || (rets.size() - 1) % n_out != 0 ||
      args.size() / n_in != (rets.size() - 1) / n_out) {
    return ffi::Unexpected(ffi::Error::InvalidArgument("fused step: operand count mismatch"));
  }
  std::vector<Leaf> leaves(args.size() / n_in);
  for (size_t i = 0; i < leaves.size(); ++i) {
    Leaf& leaf = leaves[i];
    void* in[4] = {};
    void* out[3] = {};
    for (size_t k = 0; k < n_in; ++k) {
      auto buf = args.get<ffi::AnyBuffer>(i * n_in + k);
      if (!buf.has_value()) return ffi::Unexpected(buf.error());
      const bool is_f32 = buf->element_type() == ffi::DataType::F32;
      const bool is_bf16 = buf->element_type() == ffi::DataType::BF16;
      if (!(is_f32 || (k >= 2 && is_bf16)))
        return ffi::Unexpected(ffi::Error::InvalidArgument(
            "fused step: float32 parameters and gradients, float32/bfloat16 moments"));
      if (k == 0) leaf.size = buf->element_count();
      if (static_cast<int64_t>(buf->element_count()) != leaf.size)
        return ffi::Unexpected(ffi::Error::InvalidArgument("fused step: leaf size mismatch"));
      if (k >= 2) leaf.bf16[k - 2] = is_bf16;
      in[k] = buf->untyped_data();
    }
    for (size_t k = 0; k < n_out; ++k) {
      auto buf = rets.get<ffi::AnyBuffer>(1 + i * n_out + k);
      if (!buf.has_value()) return ffi::Unexpected(buf.error());
      if (static_cast<int64_t>((*buf)->element_count()) != leaf.size)
        return ffi::Unexpected(ffi::Error::InvalidArgument("fused step: result size mismatch"));
      out[k] = (*buf)->untyped_data();
    }
    leaf.p = static_cast<const float*>(in[0]);
    leaf.g = static_cast<const float*>(in[1]);
    leaf.p_out = static_cast<float*>(out[0]);
    for (int k = 0; k < moments; ++k) {
      leaf.m[k] = in[2 + k];
      leaf.m_out[k] = out[1 + k];
    }
  }
  return leaves;
}

// Copies the scalars to the pass-through result when XLA did not alias it.
ffi::Error PassScalars(ffi::Buffer<ffi::F32> scalars, ffi::RemainingRets rets) {
  auto pass = rets.get<ffi::AnyBuffer>(0);
  if (!pass.has_value()) return ffi::Error::InvalidArgument("fused step: missing scalar result");
  float* out = static_cast<float*>((*pass)->untyped_data());
  if (out != scalars.typed_data())
    std::copy(scalars.typed_data(), scalars.typed_data() + scalars.element_count(), out);
  return ffi::Error::Success();
}

// The scalar operand of one batch entry: the prologue's values, the rule's, then
// `kPerLeaf` values per leaf of the whole step (all its calls); this call's first leaf
// has its values at `leaf_values`. Under vmap (``vmap_method="broadcast_all"``) every
// operand gains a leading batch axis: the scalars hold `per_entry` values per batch
// entry and each leaf `batch` equal segments, segment b stepped with entry b's values.
//
// Prologue: apply (0: the step is skipped and every output equals its input), clip
// (1: a global-norm clip precedes the rule), keep (1: the norm was below the bound),
// the norm, the bound, l2_first (1: the L2 term is added before the clip).
// Per leaf: l2_on, l2 weight, decay_on, decay (decoupled weight decay, AdamW).
constexpr int64_t kPrologue = 6;
constexpr int64_t kPerLeaf = 4;

// How the gradient reaches the rule, fixed for a whole leaf: unchanged, through the
// clip's scaling, the L2 term, or both in either order.
enum Prologue { kNone, kClip, kL2, kClipThenL2, kL2ThenClip };

// The leaf's prologue: the clip scales only when the norm exceeded the bound.
inline Prologue PrologueOf(const float* s, const float* leaf) {
  const bool clip = s[1] != 0.0f && s[2] == 0.0f, l2 = leaf[0] != 0.0f;
  if (clip && l2) return s[5] != 0.0f ? kL2ThenClip : kClipThenL2;
  return clip ? kClip : (l2 ? kL2 : kNone);
}

// The gradient the rule sees, with the operations XLA emits for the plain prefix
// (`g + l * p` contracted, a true division by the norm, then the bound).
template <Prologue kPro>
inline float Gradient(float g, float p, float l2, float norm, float bound) {
  if (kPro == kL2 || kPro == kL2ThenClip) g = std::fma(l2, p, g);
  if (kPro == kClip || kPro == kClipThenL2 || kPro == kL2ThenClip) g = (g / norm) * bound;
  if (kPro == kClipThenL2) g = std::fma(l2, p, g);
  return g;
}

// Copies a leaf's inputs to its outputs where XLA did not alias them (a skipped step).
void Unchanged(const Leaf& L, int moments, int64_t begin, int64_t end) {
  if (L.p_out != L.p) std::copy(L.p + begin, L.p + end, L.p_out + begin);
  for (int k = 0; k < moments; ++k) {
    const int64_t width = L.bf16[k] ? 2 : 4;
    if (L.m_out[k] != L.m[k])
      std::memcpy(static_cast<char*>(L.m_out[k]) + begin * width,
                  static_cast<const char*>(L.m[k]) + begin * width, (end - begin) * width);
  }
}

template <typename Rule>
ffi::Error Step(ffi::Buffer<ffi::F32> scalars, ffi::RemainingArgs args, ffi::RemainingRets rets,
                int64_t per_entry, int64_t leaf_values, Rule rule, int moments) {
  if (ffi::Error error = PassScalars(scalars, rets); error.failure()) return error;
  const int64_t batch = per_entry > 0 ? scalars.element_count() / per_entry : 0;
  if (batch < 1 || batch * per_entry != static_cast<int64_t>(scalars.element_count()))
    return ffi::Error::InvalidArgument("fused step: wrong number of scalars");
  auto collected = Collect(args, rets, moments);
  if (!collected.has_value()) return collected.error();
  const std::vector<Leaf>& leaves = *collected;
  if (leaf_values < kPrologue ||
      leaf_values + kPerLeaf * static_cast<int64_t>(leaves.size()) > per_entry)
    return ffi::Error::InvalidArgument("fused step: wrong number of scalars");
  std::vector<int64_t> sizes;
  for (const Leaf& leaf : leaves) {
    if (leaf.size % batch != 0)
      return ffi::Error::InvalidArgument("fused step: leaf not divisible by the batch");
    sizes.push_back(leaf.size);
  }
  const float* all = scalars.typed_data();
  ParallelFor(sizes, [&](int64_t i, int64_t begin, int64_t end) {
    const int64_t segment = leaves[i].size / batch;
    if (segment == 0) return;
    for (int64_t b = begin / segment; b * segment < end; ++b) {
      const float* s = all + b * per_entry;
      const int64_t lo = std::max(begin, b * segment), hi = std::min(end, (b + 1) * segment);
      if (s[0] == 0.0f) {
        Unchanged(leaves[i], moments, lo, hi);
      } else {
        rule(s, s + leaf_values + kPerLeaf * i, leaves[i], lo, hi);
      }
    }
  });
  return ffi::Error::Success();
}

// ---------------------------------------------------------------------------
// Adam / AdamW. Rule scalars (after the prologue): b1 as it multiplies a float32 and
// a bfloat16 first moment, 1-b1, b2 (float32, bfloat16 moment), 1-b2,
// 1/(1-b1^t), 1/(1-b2^t), eps, eps_root, -lr. A decay multiplies a bfloat16 moment in
// the dtype JAX's promotion gives the product (bfloat16 for a weakly typed decay,
// float32 for a float32 one); either way the product is widened without rounding.
// ---------------------------------------------------------------------------
constexpr int64_t kAdam = kPrologue;

template <bool kM16, bool kV16, bool kDecay, Prologue kPro>
JDL_CLONES void AdamLoop(const float* s, const float* leaf, const Leaf& L, int64_t begin,
                         int64_t end) {
  const float* r = s + kAdam;
  const float b1 = kM16 ? r[1] : r[0], omb1 = r[2], b2 = kV16 ? r[4] : r[3], omb2 = r[5];
  const float rc1 = r[6], rc2 = r[7], eps = r[8], eps_root = r[9], step = r[10];
  const float decay = leaf[3], l2 = leaf[1], norm = s[3], bound = s[4];
  const float *p = L.p, *g = L.g;
  float* p_out = L.p_out;
  const void *m_in = L.m[0], *v_in = L.m[1];
  void *m_out = L.m_out[0], *v_out = L.m_out[1];
#pragma GCC ivdep
  for (int64_t i = begin; i < end; ++i) {
    const float pi = p[i];
    const float gi = Gradient<kPro>(g[i], pi, l2, norm, bound);
    const float m = Store<kM16>(m_out, i, std::fma(gi, omb1, b1 * Load<kM16>(m_in, i)));
    const float v = Store<kV16>(v_out, i, std::fma(gi * gi, omb2, b2 * Load<kV16>(v_in, i)));
    const float d = (m * rc1) / (std::sqrt(std::fma(v, rc2, eps_root)) + eps);
    p_out[i] = std::fma(kDecay ? std::fma(decay, pi, d) : d, step, pi);
  }
}

// Calls `Loop<kPro>` for the leaf's prologue.
#define JDL_BY_PROLOGUE(LOOP, ...)                                     \
  switch (PrologueOf(s, leaf)) {                                      \
    case kClip: return LOOP<__VA_ARGS__, kClip>(s, leaf, L, begin, end);             \
    case kL2: return LOOP<__VA_ARGS__, kL2>(s, leaf, L, begin, end);                 \
    case kClipThenL2: return LOOP<__VA_ARGS__, kClipThenL2>(s, leaf, L, begin, end); \
    case kL2ThenClip: return LOOP<__VA_ARGS__, kL2ThenClip>(s, leaf, L, begin, end); \
    default: return LOOP<__VA_ARGS__, kNone>(s, leaf, L, begin, end);                \
  }

template <bool kM16, bool kV16, bool kDecay>
void AdamPick(const float* s, const float* leaf, const Leaf& L, int64_t begin, int64_t end) {
  JDL_BY_PROLOGUE(AdamLoop, kM16, kV16, kDecay)
}

void AdamRule(const float* s, const float* leaf, const Leaf& L, int64_t begin, int64_t end) {
  const int which = (L.bf16[0] ? 4 : 0) | (L.bf16[1] ? 2 : 0) | (leaf[2] != 0.0f ? 1 : 0);
  switch (which) {
    case 7: return AdamPick<true, true, true>(s, leaf, L, begin, end);
    case 6: return AdamPick<true, true, false>(s, leaf, L, begin, end);
    case 5: return AdamPick<true, false, true>(s, leaf, L, begin, end);
    case 4: return AdamPick<true, false, false>(s, leaf, L, begin, end);
    case 3: return AdamPick<false, true, true>(s, leaf, L, begin, end);
    case 2: return AdamPick<false, true, false>(s, leaf, L, begin, end);
    case 1: return AdamPick<false, false, true>(s, leaf, L, begin, end);
    default: return AdamPick<false, false, false>(s, leaf, L, begin, end);
  }
}

// ---------------------------------------------------------------------------
// SGD with heavy-ball momentum (optax.trace). Rule scalars (after the prologue): beta
// as it multiplies a float32 and a bfloat16 trace, beta as it multiplies the new trace
// (Nesterov), -lr, nesterov (0/1).
// ---------------------------------------------------------------------------
constexpr int64_t kMomentum = kPrologue;

template <bool kM16, bool kNesterov, Prologue kPro>
JDL_CLONES void MomentumLoop(const float* s, const float* leaf, const Leaf& L, int64_t begin,
                             int64_t end) {
  const float* r = s + kMomentum;
  const float beta = kM16 ? r[1] : r[0], beta_new = r[2], step = r[3];
  const float l2 = leaf[1], norm = s[3], bound = s[4];
  const float *p = L.p, *g = L.g;
  float* p_out = L.p_out;
  const void* m_in = L.m[0];
  void* m_out = L.m_out[0];
#pragma GCC ivdep
  for (int64_t i = begin; i < end; ++i) {
    const float pi = p[i];
    const float gi = Gradient<kPro>(g[i], pi, l2, norm, bound);
    const float m = std::fma(beta, Load<kM16>(m_in, i), gi);
    const float u = kNesterov ? std::fma(beta_new, m, gi) : m;
    p_out[i] = std::fma(u, step, pi);
    Store<kM16>(m_out, i, m);
  }
}

template <bool kM16, bool kNesterov>
void MomentumPick(const float* s, const float* leaf, const Leaf& L, int64_t begin,
                  int64_t end) {
  JDL_BY_PROLOGUE(MomentumLoop, kM16, kNesterov)
}

void MomentumRule(const float* s, const float* leaf, const Leaf& L, int64_t begin,
                  int64_t end) {
  const bool nesterov = s[kMomentum + 4] != 0.0f;
  if (L.bf16[0]) {
    return nesterov ? MomentumPick<true, true>(s, leaf, L, begin, end)
                    : MomentumPick<true, false>(s, leaf, L, begin, end);
  }
  nesterov ? MomentumPick<false, true>(s, leaf, L, begin, end)
           : MomentumPick<false, false>(s, leaf, L, begin, end);
}

ffi::Error AdamImpl(ffi::Buffer<ffi::F32> scalars, ffi::RemainingArgs args,
                    ffi::RemainingRets rets, int64_t per_entry, int64_t leaf_values) {
  return Step(scalars, args, rets, per_entry, leaf_values, AdamRule, 2);
}

ffi::Error MomentumImpl(ffi::Buffer<ffi::F32> scalars, ffi::RemainingArgs args,
                        ffi::RemainingRets rets, int64_t per_entry, int64_t leaf_values) {
  return Step(scalars, args, rets, per_entry, leaf_values, MomentumRule, 1);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JdlFusedAdamV2, AdamImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<int64_t>("per_entry")
                                  .Attr<int64_t>("leaf_values"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JdlFusedMomentumV2, MomentumImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<int64_t>("per_entry")
                                  .Attr<int64_t>("leaf_values"));
