// Device timing of the step ops (cuda_ops_bench.hpp): decode and prefill attention over a paged
// KV cache filled with random values, and the elementwise ops on random rows. Each case is timed
// with the benches' loop (device_buffer.cuh time_calls: warm-up, events around each call, L2
// flushed before each), through the checked launches of cuda_ops.hpp.

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "bench_cuda.hpp"
#include "bench_ops.hpp"
#include "bf16_vec.cuh"
#include "device_buffer.cuh"
#include "random_fill.cuh"
#include "racksim/exec/activation_formats.hpp"
#include "racksim/exec/cuda_ops.hpp"

namespace racksim::exec::cuda {

namespace {

using I = std::int64_t;

/// E4M3 codes of values uniform in +-448 (the full range: the cache's scale sets the magnitude).
__global__ void fill_e4m3_kernel(std::uint8_t* p, std::size_t n, std::uint64_t seed) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
    p[i] = act::e4m3_code(uniform_pm1(seed, i) * act::kE4M3Max);
}

/// Integers uniform in 0..modulus-1 (token ids, positions).
__global__ void fill_index_kernel(std::int32_t* p, std::size_t n, std::uint64_t seed, std::int32_t modulus) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
    p[i] = static_cast<std::int32_t>((uniform_pm1(seed, i) + 1.0f) * 0.5f * static_cast<float>(modulus)) % modulus;
}


DeviceBytes bf16_random(std::size_t count, std::uint64_t seed, cudaStream_t s) {
  DeviceBytes b(count * sizeof(std::uint16_t));
  fill_bf16(b.as<std::uint16_t>(), count, seed, 0.0f, 1.0f, s);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
  return b;
}

DeviceBytes index_random(std::size_t count, std::uint64_t seed, std::int32_t modulus, cudaStream_t s) {
  DeviceBytes b(count * sizeof(std::int32_t));
  if (count) fill_index_kernel<<<fill_grid(count), 256, 0, s>>>(b.as<std::int32_t>(), count, seed, modulus);
  RACKSIM_CUDA_CHECK(cudaGetLastError());
  return b;
}

DeviceBytes upload_ints(const std::vector<std::int32_t>& v) {
  DeviceBytes b(v.size() * sizeof(std::int32_t));
  if (!v.empty()) RACKSIM_CUDA_CHECK(cudaMemcpy(b.as(), v.data(), v.size() * sizeof(std::int32_t), cudaMemcpyHostToDevice));
  return b;
}

/// A paged cache of `blocks` random blocks and `tables` rows of `per_row` block ids each: a
/// seeded permutation of the blocks, so sequences read scattered blocks as a serving cache does.
struct RandomCache {
  DeviceBytes k, v, tables;
  DevicePagedKv device;

  RandomCache(const AttentionGeometry& g, DType kv, I rows, I per_row, std::uint64_t seed, cudaStream_t s) {
    device.layout = {rows * per_row, g.block_tokens, g.kv_heads, g.head_dim, kv};
    device.layout.check();
    const auto elems = static_cast<std::size_t>(device.layout.elements());
    k = DeviceBytes(static_cast<std::size_t>(device.layout.bytes()));
    v = DeviceBytes(static_cast<std::size_t>(device.layout.bytes()));
    if (kv == DType::fp8) {
      fill_e4m3_kernel<<<fill_grid(elems), 256, 0, s>>>(k.as<std::uint8_t>(), elems, seed);
      fill_e4m3_kernel<<<fill_grid(elems), 256, 0, s>>>(v.as<std::uint8_t>(), elems, seed + 1);
      device.k_scale = device.v_scale = 1.0f / act::kE4M3Max;  // values in +-1, as the BF16 cache's
    } else {
      fill_bf16(k.as<std::uint16_t>(), elems, seed, 0.0f, 1.0f, s);
      fill_bf16(v.as<std::uint16_t>(), elems, seed + 1, 0.0f, 1.0f, s);
    }
    RACKSIM_CUDA_CHECK(cudaGetLastError());
    device.k = k.as();
    device.v = v.as();
    std::vector<std::int32_t> ids(static_cast<std::size_t>(rows * per_row));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), std::mt19937_64(seed));
    tables = upload_ints(ids);
  }
};

/// What every bench sets up once: the device, a stream, the L2 flush buffer and the events.
struct Bench {
  CudaDevice dev;
  Stream stream;
  DeviceBytes flush;
  std::vector<EventPair> ev;
  const BenchTiming& t;

  Bench(const BenchTiming& timing, int device)
      : dev(require_device(device)),
        flush(timing.flush_l2 ? 2 * static_cast<std::size_t>(dev.l2_bytes) : 0),
        ev(static_cast<std::size_t>(std::max(timing.max_reps, 1))),
        t(timing) {}

  template <class Call>
  TimingStats time(Call&& call) {
    RACKSIM_CUDA_CHECK(cudaStreamSynchronize(stream.get()));  // the fills are done before timing starts
    const std::vector<double> times = time_calls(stream.get(), t, flush, ev, [&](int) { call(); });
    return timing_stats(std::span<const double>(times.data(), times.size()));
  }

  /// A case built `banks` times over (make(bank) -> its own buffers, a unique_ptr), timed one call
  /// at a time on the first copy, or under --timing graph back to back over every copy in turn
  /// (BenchTiming: graph_banks copies for `bytes` per call, graph_calls calls per graph).
  template <class Make, class Call>
  TimingStats time_banked(double bytes, Make&& make, Call&& call) {
    const int banks = t.graph ? graph_banks(bytes, dev.l2_bytes) : 1;
    std::vector<decltype(make(0))> copies;
    for (int b = 0; b < banks; ++b) copies.push_back(make(b));
    RACKSIM_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
    if (!t.graph) return time([&] { call(*copies.front()); });
    const std::vector<double> times = time_graph_rotating(stream.get(), t, ev, bytes, banks, dev.l2_bytes,
                                                          [&](int i) { call(*copies[static_cast<std::size_t>(i % banks)]); });
    return timing_stats(std::span<const double>(times.data(), times.size()));
  }

  /// Each case in turn: record(c, stats) first with placeholder timings (it checks the case
  /// before anything is allocated), then time_banked over make(c, case index, seed offset) copies
  /// (offset 0 for copy 0: the seeds of call timing), `done` after each record.
  template <class Case, class Record, class Make, class Call>
  std::vector<MeasurementRecord> sweep(std::span<const Case> cases, Record&& record, Make&& make, Call&& call, const RecordSink& done) {
    std::vector<MeasurementRecord> out;
    for (const Case& c : cases) {
      const double bytes = record(c, TimingStats{1, 1, 1, 1}).bytes_moved.value_or(0);
      const std::uint64_t index = out.size();
      out.push_back(record(c, time_banked(bytes, [&](int bank) { return make(c, index, kGraphCopySeedStride * static_cast<std::uint64_t>(bank)); }, call)));
      if (done) done(out.back());
    }
    return out;
  }
};

I ceil_div(I a, I b) { return (a + b - 1) / b; }

}  // namespace

namespace {

/// One decode case's buffers and launch arguments (bench_attention_decode; one per copy under
/// --timing graph, each with its own random cache and query).
struct DecodeSetup {
  RandomCache cache;
  DeviceBytes q, contexts, o, work;
  AttentionDecodeArgs a;

  DecodeSetup(const AttentionDecodeCase& c, std::uint64_t seed, std::uint64_t q_seed, int sm_count, cudaStream_t s)
      : cache(c.geometry, c.kv, c.batch, ceil_div(c.context + 1, c.geometry.block_tokens), seed, s) {
    const AttentionGeometry& g = c.geometry;
    const I keys = c.context + 1, per_seq = ceil_div(keys, g.block_tokens), q_stride = (g.heads + 2 * g.kv_heads) * g.head_dim;
    q = bf16_random(static_cast<std::size_t>(c.batch * q_stride), q_seed, s);
    contexts = upload_ints(std::vector<std::int32_t>(static_cast<std::size_t>(c.batch), static_cast<std::int32_t>(keys)));
    o = DeviceBytes(static_cast<std::size_t>(c.batch * g.heads * g.head_dim) * sizeof(std::uint16_t));
    a.q = q.as<Bf16>();
    a.q_stride = q_stride;
    a.batch = c.batch;
    a.heads = g.heads;
    a.block_tables = cache.tables.as<std::int32_t>();
    a.block_table_stride = per_seq;
    a.context_lens = contexts.as<std::int32_t>();
    a.max_context = keys;
    a.partition_tokens = decode_partition_tokens(c.batch, g.kv_heads, keys, sm_count);
    work = DeviceBytes(static_cast<std::size_t>(decode_workspace_bytes(c.batch, g.heads, g.head_dim, keys, a.partition_tokens)));
    a.workspace = work.as();
    a.workspace_bytes = work.size();
    a.out = o.as<Bf16>();
    a.out_stride = g.heads * g.head_dim;
  }
};

}  // namespace

std::vector<MeasurementRecord> bench_attention_decode(std::span<const AttentionDecodeCase> cases, const BenchTiming& timing,
                                                      const RecordSink& done, int device) {
  Bench b(timing, device);
  const cudaStream_t s = b.stream.get();
  return b.sweep(
      cases, [](const AttentionDecodeCase& c, const TimingStats& t) { return attention_decode_record(c, t); },
      [&](const AttentionDecodeCase& c, std::uint64_t i, std::uint64_t off) {
        return std::make_unique<DecodeSetup>(c, 0x5EED + i + off, 7 + off, b.dev.sm_count, s);
      },
      [&](const DecodeSetup& d) { cuda_attention_decode_launch(d.cache.device, d.a, s); }, done);
}

namespace {

/// One prefill case's buffers and launch arguments (bench_attention_prefill), as DecodeSetup.
struct PrefillSetup {
  RandomCache cache;
  DeviceBytes q, dsegs, o;
  AttentionPrefillArgs a;

  PrefillSetup(const AttentionPrefillCase& c, std::uint64_t seed, std::uint64_t q_seed, cudaStream_t s)
      : cache(c.geometry, c.kv, c.batch, ceil_div(c.seq_len, c.geometry.block_tokens), seed, s) {
    const AttentionGeometry& g = c.geometry;
    const I per_seq = ceil_div(c.seq_len, g.block_tokens), rows = c.batch * c.seq_len, q_stride = (g.heads + 2 * g.kv_heads) * g.head_dim;
    q = bf16_random(static_cast<std::size_t>(rows * q_stride), q_seed, s);
    std::vector<PrefillSegment> segs;
    for (I i = 0; i < c.batch; ++i) segs.push_back({static_cast<std::int32_t>(i * c.seq_len), static_cast<std::int32_t>(c.seq_len), 0});
    dsegs = DeviceBytes(segs.size() * sizeof(PrefillSegment));
    RACKSIM_CUDA_CHECK(cudaMemcpy(dsegs.as(), segs.data(), dsegs.size(), cudaMemcpyHostToDevice));
    o = DeviceBytes(static_cast<std::size_t>(rows * g.heads * g.head_dim) * sizeof(std::uint16_t));
    a.q = q.as<Bf16>();
    a.q_stride = q_stride;
    a.heads = g.heads;
    a.segments = dsegs.as<PrefillSegment>();
    a.segment_count = c.batch;
    a.max_segment_tokens = c.seq_len;
    a.block_tables = cache.tables.as<std::int32_t>();
    a.block_table_stride = per_seq;
    a.out = o.as<Bf16>();
    a.out_stride = g.heads * g.head_dim;
  }
};

}  // namespace

std::vector<MeasurementRecord> bench_attention_prefill(std::span<const AttentionPrefillCase> cases, const BenchTiming& timing,
                                                       const RecordSink& done, int device) {
  Bench b(timing, device);
  const cudaStream_t s = b.stream.get();
  return b.sweep(
      cases, [](const AttentionPrefillCase& c, const TimingStats& t) { return attention_prefill_record(c, t); },
      [&](const AttentionPrefillCase& c, std::uint64_t i, std::uint64_t off) { return std::make_unique<PrefillSetup>(c, 0xF111 + i + off, 11 + off, s); },
      [&](const PrefillSetup& p) { cuda_attention_prefill_launch(p.cache.device, p.a, s); }, done);
}

namespace {

/// One elementwise case's buffers and its launch (bench_elementwise; one per copy under --timing
/// graph, each buffer filled from its own seed).
struct ElementwiseSetup {
  std::vector<DeviceBytes> buffers;
  std::function<void()> launch;
};

/// The buffers and launch of case `c` on stream `s`, random inputs from `seed` on.
std::unique_ptr<ElementwiseSetup> elementwise_setup(const ElementwiseCase& c, std::uint64_t seed, cudaStream_t s) {
  constexpr I kVocab = 32000, kHeadDim = 128;  // cuda_ops_bench.hpp: Llama-2's vocabulary; RoPE heads of 128
  constexpr float kEps = 1e-5f;                // Llama-2's rms_norm_eps (workloads/data/models/llama2-70b.yaml norm_eps)
  auto e = std::make_unique<ElementwiseSetup>();
  const auto n = static_cast<std::size_t>(c.rows * c.width), rows = static_cast<std::size_t>(c.rows);
  std::vector<DeviceBytes>& b = e->buffers;
  // Each buffer's device pointer, once the vector holds all of them (the vector reserves first:
  // DeviceBytes moves its pointer, so an address taken before a reallocation stays valid anyway).
  b.reserve(8);
  const auto add = [&](DeviceBytes d) -> DeviceBytes& { return b.emplace_back(std::move(d)); };
  if (c.kind == "rmsnorm") {
    Bf16* x = add(bf16_random(n, seed + 1, s)).as<Bf16>();
    Bf16* w = add(bf16_random(static_cast<std::size_t>(c.width), seed + 2, s)).as<Bf16>();
    Bf16* y = add(DeviceBytes(n * sizeof(Bf16))).as<Bf16>();
    e->launch = [=] { cuda_rmsnorm_launch(x, w, c.rows, c.width, kEps, y, s); };
  } else if (c.kind == "residual_add") {
    Bf16* h = add(bf16_random(n, seed + 1, s)).as<Bf16>();
    Bf16* br = add(bf16_random(n, seed + 2, s)).as<Bf16>();
    e->launch = [=] { cuda_residual_add_launch(h, br, static_cast<I>(n), s); };
  } else if (c.kind == "rope") {
    if (c.width % kHeadDim != 0) throw InputError(text("bench rope: width ", c.width, " is not a whole number of heads of ", kHeadDim));
    Bf16* qkv = add(bf16_random(n, seed + 1, s)).as<Bf16>();
    std::int32_t* pos = add(index_random(rows, seed + 3, 4096, s)).as<std::int32_t>();
    e->launch = [=] { cuda_rope_rotate_half_launch(qkv, c.rows, c.width, c.width / kHeadDim, kHeadDim, kHeadDim, pos, 10000.0, s); };
  } else if (c.kind == "swiglu") {
    Bf16* gu = add(bf16_random(2 * n, seed + 1, s)).as<Bf16>();
    Bf16* y = add(DeviceBytes(n * sizeof(Bf16))).as<Bf16>();
    e->launch = [=] { cuda_swiglu_launch(gu, c.rows, c.width, y, s); };
  } else if (c.kind == "embedding") {
    Bf16* table = add(bf16_random(static_cast<std::size_t>(kVocab * c.width), seed + 1, s)).as<Bf16>();
    std::int32_t* ids = add(index_random(rows, seed + 4, kVocab, s)).as<std::int32_t>();
    Bf16* y = add(DeviceBytes(n * sizeof(Bf16))).as<Bf16>();
    e->launch = [=] { cuda_embedding_launch(table, kVocab, c.width, ids, c.rows, y, s); };
  } else if (c.kind == "moe_router_topk") {
    float* logits = add(DeviceBytes(n * sizeof(float))).as<float>();
    std::int32_t* ids = add(DeviceBytes(rows * static_cast<std::size_t>(c.top_k) * 4)).as<std::int32_t>();
    float* w = add(DeviceBytes(rows * static_cast<std::size_t>(c.top_k) * 4)).as<float>();
    fill_f32(logits, n, seed + 6, s);
    float* bias = nullptr;  // MiniMax-M2: a bias per expert
    if (c.sigmoid) {
      bias = add(DeviceBytes(static_cast<std::size_t>(c.experts) * 4)).as<float>();
      fill_f32(bias, static_cast<std::size_t>(c.experts), seed + 9, s);
    }
    RACKSIM_CUDA_CHECK(cudaGetLastError());
    e->launch = [=] { cuda_moe_topk_launch(logits, bias, c.rows, c.experts, c.top_k, ids, w, s); };
  } else if (c.kind == "moe_permute") {
    // Uniform routing: each assignment's expert drawn alone (a token may draw an expert twice;
    // the sort does not care). The permute and the gather, as experts.permute runs them (less
    // the executor's read-back of the offsets).
    const I tokens = c.rows / c.top_k;
    std::int32_t* ids = add(index_random(rows, seed + 7, c.experts, s)).as<std::int32_t>();
    Bf16* x = add(bf16_random(static_cast<std::size_t>(tokens * c.width), seed + 1, s)).as<Bf16>();
    Bf16* xp = add(DeviceBytes(n * sizeof(Bf16))).as<Bf16>();
    std::int32_t* off = add(DeviceBytes(static_cast<std::size_t>(c.experts + 1) * 4)).as<std::int32_t>();
    std::int32_t* pos = add(DeviceBytes(rows * 4)).as<std::int32_t>();
    std::int32_t* ord = add(DeviceBytes(rows * 4)).as<std::int32_t>();
    std::int32_t* src = add(DeviceBytes(rows * 4)).as<std::int32_t>();
    std::int32_t* act = add(DeviceBytes(static_cast<std::size_t>(c.experts) * 4)).as<std::int32_t>();
    e->launch = [=] {
      cuda_moe_permute_launch(ids, c.rows, c.experts, c.top_k, off, pos, ord, src, act, s);
      cuda_embedding_launch(x, tokens, c.width, src, c.rows, xp, s);
    };
  } else if (c.kind == "moe_finalize") {
    const I tokens = c.rows / c.top_k;
    Bf16* er = add(bf16_random(n, seed + 1, s)).as<Bf16>();
    std::int32_t* pos = add(index_random(rows, seed + 8, static_cast<std::int32_t>(c.rows), s)).as<std::int32_t>();
    float* w = add(DeviceBytes(rows * 4)).as<float>();
    Bf16* y = add(DeviceBytes(static_cast<std::size_t>(tokens * c.width) * sizeof(Bf16))).as<Bf16>();
    fill_f32(w, rows, seed + 9, s);
    RACKSIM_CUDA_CHECK(cudaGetLastError());
    e->launch = [=] { cuda_moe_finalize_launch(er, pos, w, tokens, c.top_k, c.width, y, s); };
  } else {  // sampling (elementwise_record refused every other kind)
    float* logits = add(DeviceBytes(n * sizeof(float))).as<float>();
    std::int32_t* ids = add(DeviceBytes(rows * sizeof(std::int32_t))).as<std::int32_t>();
    fill_f32(logits, n, seed + 5, s);
    RACKSIM_CUDA_CHECK(cudaGetLastError());
    e->launch = [=] { cuda_argmax_launch(logits, c.rows, c.width, ids, s); };
  }
  return e;
}

}  // namespace

std::vector<MeasurementRecord> bench_elementwise(std::span<const ElementwiseCase> cases, const BenchTiming& timing, const RecordSink& done,
                                                 int device) {
  Bench b(timing, device);
  const cudaStream_t s = b.stream.get();
  return b.sweep(
      cases, [](const ElementwiseCase& c, const TimingStats& t) { return elementwise_record(c, t); },
      [&](const ElementwiseCase& c, std::uint64_t, std::uint64_t off) { return elementwise_setup(c, off, s); },
      [](const ElementwiseSetup& e) { e.launch(); }, done);
}

}  // namespace racksim::exec::cuda
