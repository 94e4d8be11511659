// cuda_ops.hpp in plain C++: the argument checks of the device launches (cuda_ops_checks.hpp)
// and the host wrappers, written over DeviceMemory and the routed launches, so that they build
// and check their arguments in every configuration (backend_registry.cpp routes the rest).

#include <algorithm>
#include <cmath>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/exec/activation_formats.hpp"
#include "racksim/exec/cuda_ops.hpp"
#include "src/cuda_ops_checks.hpp"

namespace racksim::exec {

namespace {

using I = std::int64_t;

constexpr I kInt32Max = 2147483647;
/// Largest grid y and z dimension (CUDA C++ Programming Guide, "Features and Technical
/// Specifications": 65535 for every compute capability).
constexpr I kGridYZMax = 65535;
/// Largest RoPE head_dim: its launch puts head_dim / 2 threads of a 256-thread CTA on one row.
constexpr I kRopeMaxHeadDim = 512;

std::size_t z(I v) { return static_cast<std::size_t>(v); }

[[noreturn]] void bad(std::string_view op, const std::string& what) { throw InputError(fmt::format("{}: {}", op, what)); }

void need_range(std::string_view op, std::string_view what, I v, I lo, I hi) {
  if (v < lo || v > hi) bad(op, fmt::format("{} = {} is outside {}..{}", what, v, lo, hi));
}

void need_ptr(std::string_view op, std::string_view what, const void* p, bool needed) {
  if (needed && p == nullptr) bad(op, fmt::format("{} is a null pointer", what));
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

void check_cache(std::string_view op, const DevicePagedKv& c) {
  c.layout.check();
  if (!c.k || !c.v || !aligned16(c.k) || !aligned16(c.v)) bad(op, "the K and V caches must be non-null and 16-byte aligned");
  if (c.layout.dtype == DType::fp8 && (!(c.k_scale > 0.0f) || !(c.v_scale > 0.0f) || !std::isfinite(c.k_scale) || !std::isfinite(c.v_scale)))
    bad(op, fmt::format("FP8 scales {} and {} must be positive and finite", c.k_scale, c.v_scale));
}

/// head_dim one of the attention kernels' instantiations, heads a multiple of kv_heads with
/// at most `max_group` query heads per KV head, and the row strides wide enough.
void check_heads(std::string_view op, const PagedKvLayout& l, I heads, I max_group, I q_stride, I out_stride) {
  if (l.head_dim != 16 && l.head_dim != 32 && l.head_dim != 64 && l.head_dim != 128)
    bad(op, fmt::format("head_dim {} is not one of 16, 32, 64, 128 (the instantiated kernels)", l.head_dim));
  if (heads < 1 || heads % l.kv_heads != 0 || heads / l.kv_heads > max_group)
    bad(op, fmt::format("{} query heads over {} KV heads: need a multiple with at most {} per KV head", heads, l.kv_heads, max_group));
  need_range(op, "kv_heads", l.kv_heads, 1, kGridYZMax);
  need_range(op, "q_stride", q_stride, heads * l.head_dim, kInt32Max);
  need_range(op, "out_stride", out_stride, heads * l.head_dim, kInt32Max);
}

// Shape checks (no pointers): the host wrappers run them before allocating anything, the
// launches (below) before their pointer checks.
void rmsnorm_shape(I rows, I width, float eps) {
  const std::string_view op = "rmsnorm";
  need_range(op, "rows", rows, 0, kInt32Max);
  need_range(op, "width", width, 1, kInt32Max);
  if (!std::isfinite(eps) || eps < 0.0f) bad(op, fmt::format("eps {} must be finite and >= 0", eps));
}

void head_rmsnorm_shape(I rows, I row_width, I q_heads, I kv_heads, I head_dim, float eps) {
  const std::string_view op = "head_rmsnorm";
  need_range(op, "rows", rows, 0, kInt32Max);
  need_range(op, "q_heads", q_heads, 0, 1 << 16);
  need_range(op, "kv_heads", kv_heads, 0, 1 << 16);
  need_range(op, "head_dim", head_dim, 1, 1 << 16);
  if ((q_heads + kv_heads) * head_dim > row_width)
    bad(op, fmt::format("{} heads of {} exceed the row width {}", q_heads + kv_heads, head_dim, row_width));
  need_range(op, "rows x row_width", rows * row_width, 0, I{1} << 48);
  need_range(op, "rows x heads", rows * (q_heads + kv_heads), 0, kInt32Max);  // a warp each: the grid stays in range
  if (!std::isfinite(eps) || eps < 0.0f) bad(op, fmt::format("eps {} must be finite and >= 0", eps));
}

void rope_shape(I rows, I row_width, I rotated_heads, I head_dim, I rotary_dim, double theta) {
  const std::string_view op = "rope";
  need_range(op, "rows", rows, 0, I{1} << 40);
  if (head_dim < 2 || head_dim % 2 != 0 || head_dim > kRopeMaxHeadDim) bad(op, fmt::format("head_dim {} must be even, 2..512", head_dim));
  if (rotary_dim < 2 || rotary_dim % 2 != 0 || rotary_dim > head_dim)
    bad(op, fmt::format("rotary_dim {} must be even, 2..head_dim ({})", rotary_dim, head_dim));
  need_range(op, "rotated_heads", rotated_heads, 0, kInt32Max);
  if (rotated_heads * head_dim > row_width) bad(op, fmt::format("{} heads of {} exceed the row width {}", rotated_heads, head_dim, row_width));
  if (!(theta > 0.0) || !std::isfinite(theta)) bad(op, fmt::format("theta {} must be positive and finite", theta));
}

void qk_layer_shape(std::string_view op, I rows, I row_width, I q_width, I k_width) {
  need_range(op, "rows", rows, 0, kInt32Max);
  need_range(op, "q_width", q_width, 1, kInt32Max);
  need_range(op, "k_width", k_width, 1, kInt32Max);
  if (q_width + k_width > row_width) bad(op, fmt::format("q width {} + k width {} exceed the row width {}", q_width, k_width, row_width));
  need_range(op, "rows x row_width", rows * row_width, 0, I{1} << 48);
}

void qk_norm_counts(I q_width, I k_width, I q_count, I k_count, bool own_sums, float eps) {
  const std::string_view op = "qk_layer_norm";
  if (own_sums && (q_count != q_width || k_count != k_width))
    bad(op, fmt::format("without all-reduced sums the counts {} and {} must equal the q and k widths {} and {}", q_count, k_count, q_width,
                        k_width));
  need_range(op, "q_count", q_count, q_width, I{1} << 24);  // exact as FP32
  need_range(op, "k_count", k_count, k_width, I{1} << 24);
  if (!std::isfinite(eps) || eps < 0.0f) bad(op, fmt::format("eps {} must be finite and >= 0", eps));
}

void swiglu_shape(I rows, I ffn) {
  need_range("swiglu", "rows", rows, 0, I{1} << 40);
  need_range("swiglu", "ffn", ffn, 1, kInt32Max);
}

void embedding_shape(I vocab, I width, I rows) {
  need_range("embedding", "vocab", vocab, 1, kInt32Max);
  need_range("embedding", "width", width, 1, kInt32Max);
  need_range("embedding", "rows", rows, 0, I{1} << 40);
}

void argmax_shape(I rows, I vocab) {
  need_range("argmax", "rows", rows, 0, kInt32Max);
  need_range("argmax", "vocab", vocab, 1, kInt32Max);
}

void moe_shape(std::string_view op, I rows_or_assignments, const char* what, int experts, int k) {
  need_range(op, what, rows_or_assignments, 0, I{1} << 30);
  need_range(op, "experts", experts, 1, kCudaMoeMaxExperts);
  need_range(op, "k", k, 1, std::min(kCudaMoeMaxTopK, experts));
}

void kv_append_shape(const PagedKvLayout& l, I rows, I row_width, I heads) {
  const std::string_view op = "kv_append";
  l.check();
  need_range(op, "rows", rows, 0, kInt32Max);
  if (heads < 0 || heads % l.kv_heads != 0) bad(op, fmt::format("{} query heads is not a multiple of {} KV heads", heads, l.kv_heads));
  need_range(op, "row_width", row_width, (heads + 2 * l.kv_heads) * l.head_dim, I{1} << 40);
  need_range(op, "blocks x block_tokens", l.blocks * l.block_tokens, 1, kInt32Max);
}

void decode_shape(const PagedKvLayout& l, I heads, I batch, I q_stride, I out_stride, I block_table_stride, I max_context,
                  I partition_tokens) {
  const std::string_view op = "attention_decode";
  l.check();
  check_heads(op, l, heads, 16, q_stride, out_stride);
  need_range(op, "batch", batch, 0, kGridYZMax);
  need_range(op, "max_context", max_context, 1, I{1} << 30);
  if (partition_tokens < kAttentionKeyTile || partition_tokens % kAttentionKeyTile != 0 || partition_tokens > (I{1} << 30))
    bad(op, fmt::format("partition_tokens {} must be a positive multiple of {} up to 2^30", partition_tokens, kAttentionKeyTile));
  need_range(op, "block_table_stride", block_table_stride, (max_context + l.block_tokens - 1) / l.block_tokens, kInt32Max);
}

void prefill_shape(const PagedKvLayout& l, I heads, I segment_count, I max_segment_tokens, I q_stride, I out_stride, I block_table_stride) {
  const std::string_view op = "attention_prefill";
  l.check();
  check_heads(op, l, heads, 64, q_stride, out_stride);
  need_range(op, "segment_count", segment_count, 0, kGridYZMax);
  need_range(op, "max_segment_tokens", max_segment_tokens, 0, I{1} << 30);
  need_range(op, "block_table_stride", block_table_stride, 1, kInt32Max);
}

}  // namespace

namespace detail {

void check_rmsnorm(const void* x, const void* branch, const void* weight, I rows, I width, float eps, const void* y) {
  const std::string_view op = "rmsnorm";
  rmsnorm_shape(rows, width, eps);
  need_ptr(op, "x", x, rows > 0);
  need_ptr(op, "weight", weight, rows > 0);
  need_ptr(op, "y", y, rows > 0);
  if (rows > 0 && (y == x || (branch && (branch == x || branch == y)))) bad(op, "y, x (hidden) and branch must not alias");
}

void check_head_rmsnorm(const void* qkv, I rows, I row_width, I q_heads, I kv_heads, I head_dim, const void* q_weight, const void* k_weight,
                        float eps) {
  head_rmsnorm_shape(rows, row_width, q_heads, kv_heads, head_dim, eps);
  need_ptr("head_rmsnorm", "qkv", qkv, rows > 0);
  need_ptr("head_rmsnorm", "q_weight", q_weight, rows > 0 && q_heads > 0);
  need_ptr("head_rmsnorm", "k_weight", k_weight, rows > 0 && kv_heads > 0);
}

void check_residual_add(const void* hidden, const void* branch, I count) {
  const std::string_view op = "residual_add";
  need_range(op, "count", count, 0, I{1} << 48);
  need_ptr(op, "hidden", hidden, count > 0);
  need_ptr(op, "branch", branch, count > 0);
  if (count > 0 && hidden == branch) bad(op, "hidden and branch must not alias");
}

void check_qk_layer(std::string_view op, const void* qkv, I rows, I row_width, I q_width, I k_width, const void* sums, bool sums_needed) {
  qk_layer_shape(op, rows, row_width, q_width, k_width);
  need_ptr(op, "qkv", qkv, rows > 0);
  need_ptr(op, "sums", sums, rows > 0 && sums_needed);
}

void check_qk_layer_norm(const void* qkv, I rows, I row_width, I q_width, I k_width, const void* sums, I q_count, I k_count,
                         const void* q_weight, const void* k_weight, float eps) {
  check_qk_layer("qk_layer_norm", qkv, rows, row_width, q_width, k_width, sums, false);
  qk_norm_counts(q_width, k_width, q_count, k_count, sums == nullptr, eps);
  need_ptr("qk_layer_norm", "q_weight", q_weight, rows > 0);
  need_ptr("qk_layer_norm", "k_weight", k_weight, rows > 0);
}

void check_rope(const void* qkv, I rows, I row_width, I rotated_heads, I head_dim, I rotary_dim, const void* positions, double theta) {
  rope_shape(rows, row_width, rotated_heads, head_dim, rotary_dim, theta);
  need_ptr("rope", "qkv", qkv, rows > 0);
  need_ptr("rope", "positions", positions, rows > 0);
}

void check_swiglu(const void* gate_up, I rows, I ffn, const void* y) {
  swiglu_shape(rows, ffn);
  need_ptr("swiglu", "gate_up", gate_up, rows > 0);
  need_ptr("swiglu", "y", y, rows > 0);
}

void check_moe_topk(const void* logits, I rows, int experts, int k, const void* expert_ids, const void* weights) {
  const std::string_view op = "moe_topk";
  moe_shape(op, rows, "rows", experts, k);
  need_ptr(op, "logits", logits, rows > 0);
  need_ptr(op, "expert_ids", expert_ids, rows > 0);
  need_ptr(op, "weights", weights, rows > 0);
}

void check_moe_permute(const void* expert_ids, I assignments, int experts, int k, const void* offsets, const void* position, const void* order,
                       const void* source_rows, const void* active) {
  const std::string_view op = "moe_permute";
  moe_shape(op, assignments, "assignments", experts, k);
  if (assignments % k != 0) bad(op, fmt::format("{} assignments are not whole tokens of k = {}", assignments, k));
  need_ptr(op, "offsets", offsets, true);
  need_ptr(op, "expert_ids", expert_ids, assignments > 0);
  need_ptr(op, "position", position, assignments > 0);
  need_ptr(op, "order", order, assignments > 0);
  need_ptr(op, "source_rows", source_rows, assignments > 0);
  need_ptr(op, "active", active, assignments > 0);
}

void check_moe_finalize(const void* expert_rows, const void* position, const void* weights, I rows, int k, I width, const void* y) {
  const std::string_view op = "moe_finalize";
  need_range(op, "rows", rows, 0, I{1} << 30);
  need_range(op, "k", k, 1, kCudaMoeMaxTopK);
  need_range(op, "width", width, 1, kInt32Max);
  need_ptr(op, "expert_rows", expert_rows, rows > 0);
  need_ptr(op, "position", position, rows > 0);
  need_ptr(op, "weights", weights, rows > 0);
  need_ptr(op, "y", y, rows > 0);
  if (rows > 0 && y == expert_rows) bad(op, "y and expert_rows must not alias");
}

void check_embedding(const void* table, I vocab, I width, const void* tokens, I rows, const void* y) {
  embedding_shape(vocab, width, rows);
  need_ptr("embedding", "table", table, rows > 0);
  need_ptr("embedding", "tokens", tokens, rows > 0);
  need_ptr("embedding", "y", y, rows > 0);
}

void check_argmax(const void* logits, I rows, I vocab, const void* tokens) {
  argmax_shape(rows, vocab);
  need_ptr("argmax", "logits", logits, rows > 0);
  need_ptr("argmax", "tokens", tokens, rows > 0);
}

void check_kv_append(const DevicePagedKv& c, const void* qkv, I rows, I row_width, I heads, const void* slots) {
  check_cache("kv_append", c);
  kv_append_shape(c.layout, rows, row_width, heads);
  need_ptr("kv_append", "qkv", qkv, rows > 0);
  need_ptr("kv_append", "slots", slots, rows > 0);
}

void check_attention_decode(const DevicePagedKv& c, const AttentionDecodeArgs& a) {
  const std::string_view op = "attention_decode";
  check_cache(op, c);
  decode_shape(c.layout, a.heads, a.batch, a.q_stride, a.out_stride, a.block_table_stride, a.max_context, a.partition_tokens);
  const I need = decode_workspace_bytes(a.batch, a.heads, c.layout.head_dim, a.max_context, a.partition_tokens);
  if (static_cast<I>(a.workspace_bytes) < need || (need > 0 && !a.workspace))
    bad(op, fmt::format("the workspace holds {} bytes; {} partitions need {}", a.workspace_bytes,
                        decode_partitions(a.max_context, a.partition_tokens), need));
  need_ptr(op, "q", a.q, a.batch > 0);
  need_ptr(op, "block_tables", a.block_tables, a.batch > 0);
  need_ptr(op, "context_lens", a.context_lens, a.batch > 0);
  need_ptr(op, "out", a.out, a.batch > 0);
}

void check_attention_prefill(const DevicePagedKv& c, const AttentionPrefillArgs& a) {
  const std::string_view op = "attention_prefill";
  check_cache(op, c);
  prefill_shape(c.layout, a.heads, a.segment_count, a.max_segment_tokens, a.q_stride, a.out_stride, a.block_table_stride);
  const bool work = a.segment_count > 0 && a.max_segment_tokens > 0;
  need_ptr(op, "q", a.q, work);
  need_ptr(op, "segments", a.segments, work);
  need_ptr(op, "block_tables", a.block_tables, work);
  need_ptr(op, "out", a.out, work);
}

}  // namespace detail

DeviceMemory::DeviceMemory(DeviceMemory&& other) noexcept : ptr_(other.ptr_), bytes_(other.bytes_) {
  other.ptr_ = nullptr;
  other.bytes_ = 0;
}

DeviceMemory& DeviceMemory::operator=(DeviceMemory&& other) noexcept {
  DeviceMemory taken(std::move(other));  // frees what this held when it goes
  std::swap(ptr_, taken.ptr_);
  std::swap(bytes_, taken.bytes_);
  return *this;
}

// ---- Host wrappers --------------------------------------------------------------------------

namespace {

void need_size(std::string_view op, std::string_view what, std::size_t have, I want) {
  if (want < 0 || have != z(want)) bad(op, fmt::format("{} holds {} values; the shape needs {}", what, have, want));
}

DeviceMemory upload_bytes(const void* data, std::size_t bytes) {
  DeviceMemory d(bytes);
  d.upload(data, bytes);
  return d;
}

template <class T>
DeviceMemory upload(std::span<const T> v) {
  return upload_bytes(v.data(), v.size_bytes());
}

DeviceMemory upload_bf16(std::span<const float> v) {
  std::vector<Bf16> bits(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) bits[i] = act::bf16_bits(v[i]);
  return upload(std::span<const Bf16>(bits));
}

std::vector<float> download_bf16(const DeviceMemory& d, std::size_t count) {
  std::vector<Bf16> bits(count);
  d.download(bits.data(), count * sizeof(Bf16));
  std::vector<float> out(count);
  for (std::size_t i = 0; i < count; ++i) out[i] = act::bf16_value(bits[i]);
  return out;
}

/// Every block id a sequence's first `tokens` tokens use is inside the cache.
void check_table(std::string_view op, const PagedKvLayout& l, std::span<const std::int32_t> table, I tokens) {
  const I used = (tokens + l.block_tokens - 1) / l.block_tokens;
  if (used > static_cast<I>(table.size())) bad(op, fmt::format("{} tokens need {} blocks; the table row has {}", tokens, used, table.size()));
  for (I i = 0; i < used; ++i)
    if (table[z(i)] < 0 || table[z(i)] >= l.blocks) bad(op, fmt::format("block id {} outside the cache's 0..{}", table[z(i)], l.blocks - 1));
}

/// The cache on the device (its bytes uploaded), and the DevicePagedKv naming them.
struct UploadedCache {
  DeviceMemory k, v;
  DevicePagedKv device;
  explicit UploadedCache(const HostPagedKv& c)
      : k(upload(std::span<const std::uint8_t>(c.k))), v(upload(std::span<const std::uint8_t>(c.v))) {
    device = {c.layout, k.get(), v.get(), c.k_scale, c.v_scale};
  }
};

void check_host_cache(std::string_view op, const HostPagedKv& c) {
  c.layout.check();
  if (static_cast<I>(c.k.size()) != c.layout.bytes() || static_cast<I>(c.v.size()) != c.layout.bytes())
    bad(op, fmt::format("the host cache holds {} and {} bytes; its layout needs {}", c.k.size(), c.v.size(), c.layout.bytes()));
}

}  // namespace

std::vector<float> cuda_rmsnorm(std::span<const float> x, I rows, std::span<const float> weight, float eps) {
  const I width = static_cast<I>(weight.size());
  need_size("rmsnorm", "x", x.size(), rows * width);
  rmsnorm_shape(rows, width, eps);
  DeviceMemory dx = upload_bf16(x), dw = upload_bf16(weight), dy(x.size() * sizeof(Bf16));
  cuda_rmsnorm_launch(dx.as<Bf16>(), dw.as<Bf16>(), rows, width, eps, dy.as<Bf16>(), nullptr);
  cuda_stream_synchronize(nullptr);
  return download_bf16(dy, x.size());
}

ResidualNorm cuda_residual_add_rmsnorm(std::span<const float> hidden, std::span<const float> branch, I rows, std::span<const float> weight,
                                       float eps) {
  const I width = static_cast<I>(weight.size());
  need_size("residual_add_rmsnorm", "hidden", hidden.size(), rows * width);
  need_size("residual_add_rmsnorm", "branch", branch.size(), rows * width);
  rmsnorm_shape(rows, width, eps);
  DeviceMemory dh = upload_bf16(hidden), db = upload_bf16(branch), dw = upload_bf16(weight), dy(hidden.size() * sizeof(Bf16));
  cuda_residual_add_rmsnorm_launch(dh.as<Bf16>(), db.as<Bf16>(), dw.as<Bf16>(), rows, width, eps, dy.as<Bf16>(), nullptr);
  cuda_stream_synchronize(nullptr);
  return {download_bf16(dh, hidden.size()), download_bf16(dy, hidden.size())};
}

std::vector<float> cuda_residual_add(std::span<const float> hidden, std::span<const float> branch) {
  need_size("residual_add", "branch", branch.size(), static_cast<I>(hidden.size()));
  DeviceMemory dh = upload_bf16(hidden), db = upload_bf16(branch);
  cuda_residual_add_launch(dh.as<Bf16>(), db.as<Bf16>(), static_cast<I>(hidden.size()), nullptr);
  cuda_stream_synchronize(nullptr);
  return download_bf16(dh, hidden.size());
}

std::vector<float> cuda_head_rmsnorm(std::span<const float> qkv, I rows, I row_width, I q_heads, I kv_heads, std::span<const float> q_weight,
                                     std::span<const float> k_weight, float eps) {
  const I head_dim = static_cast<I>(q_weight.size());
  need_size("head_rmsnorm", "k_weight", k_weight.size(), head_dim);
  need_size("head_rmsnorm", "qkv", qkv.size(), rows * row_width);
  head_rmsnorm_shape(rows, row_width, q_heads, kv_heads, head_dim, eps);
  DeviceMemory dq = upload_bf16(qkv), dw = upload_bf16(q_weight), dk = upload_bf16(k_weight);
  cuda_head_rmsnorm_launch(dq.as<Bf16>(), rows, row_width, q_heads, kv_heads, head_dim, dw.as<Bf16>(), dk.as<Bf16>(), eps, nullptr);
  cuda_stream_synchronize(nullptr);
  return download_bf16(dq, qkv.size());
}

std::vector<float> cuda_rope_rotate_half(std::span<const float> qkv, I rows, I row_width, I rotated_heads, I head_dim,
                                         std::span<const std::int32_t> positions, double theta, I rotary_dim) {
  const I d = rotary_dim == 0 ? head_dim : rotary_dim;
  need_size("rope", "qkv", qkv.size(), rows * row_width);
  need_size("rope", "positions", positions.size(), rows);
  rope_shape(rows, row_width, rotated_heads, head_dim, d, theta);
  DeviceMemory dq = upload_bf16(qkv), dp = upload(positions);
  cuda_rope_rotate_half_launch(dq.as<Bf16>(), rows, row_width, rotated_heads, head_dim, d, dp.as<std::int32_t>(), theta, nullptr);
  cuda_stream_synchronize(nullptr);
  return download_bf16(dq, qkv.size());
}

std::vector<float> cuda_qk_sum_squares(std::span<const float> qkv, I rows, I row_width, I q_width, I k_width) {
  need_size("qk_sum_squares", "qkv", qkv.size(), rows * row_width);
  qk_layer_shape("qk_sum_squares", rows, row_width, q_width, k_width);
  DeviceMemory dq = upload_bf16(qkv), ds(z(2 * rows) * 4);
  cuda_qk_sum_squares_launch(dq.as<Bf16>(), rows, row_width, q_width, k_width, ds.as<float>(), nullptr);
  cuda_stream_synchronize(nullptr);
  std::vector<float> sums(z(2 * rows));
  if (rows > 0) ds.download(sums.data(), sums.size() * 4);
  return sums;
}

std::vector<float> cuda_qk_layer_norm(std::span<const float> qkv, I rows, I row_width, I q_width, I k_width, std::span<const float> sums,
                                      I q_count, I k_count, std::span<const float> q_weight, std::span<const float> k_weight, float eps) {
  const std::string_view op = "qk_layer_norm";
  need_size(op, "qkv", qkv.size(), rows * row_width);
  qk_layer_shape(op, rows, row_width, q_width, k_width);
  qk_norm_counts(q_width, k_width, q_count, k_count, sums.empty(), eps);
  if (!sums.empty()) need_size(op, "sums", sums.size(), 2 * rows);
  if (q_weight.size() != z(q_width) || k_weight.size() != z(k_width))
    bad(op, fmt::format("weights of {} and {} values for q and k widths {} and {}", q_weight.size(), k_weight.size(), q_width, k_width));
  DeviceMemory dq = upload_bf16(qkv), dw = upload_bf16(q_weight), dk = upload_bf16(k_weight);
  DeviceMemory ds = sums.empty() ? DeviceMemory() : upload(sums);
  cuda_qk_layer_norm_launch(dq.as<Bf16>(), rows, row_width, q_width, k_width, sums.empty() ? nullptr : ds.as<float>(), q_count, k_count,
                            dw.as<Bf16>(), dk.as<Bf16>(), eps, nullptr);
  cuda_stream_synchronize(nullptr);
  return download_bf16(dq, qkv.size());
}

std::vector<float> cuda_swiglu(std::span<const float> gate_up, I rows, I ffn) {
  need_size("swiglu", "gate_up", gate_up.size(), rows * 2 * ffn);
  swiglu_shape(rows, ffn);
  DeviceMemory dg = upload_bf16(gate_up), dy(z(rows * ffn) * sizeof(Bf16));
  cuda_swiglu_launch(dg.as<Bf16>(), rows, ffn, dy.as<Bf16>(), nullptr);
  cuda_stream_synchronize(nullptr);
  return download_bf16(dy, z(rows * ffn));
}

std::vector<ExpertWeight> cuda_moe_topk(std::span<const float> logits, I rows, int experts, int k, std::span<const float> bias) {
  moe_shape("moe_topk", rows, "rows", experts, k);
  need_size("moe_topk", "logits", logits.size(), rows * experts);
  if (!bias.empty() && bias.size() != z(experts)) bad("moe_topk", fmt::format("{} bias values for {} experts", bias.size(), experts));
  DeviceMemory dl = upload(logits), di(z(rows * k) * 4), dw(z(rows * k) * 4);
  DeviceMemory db = bias.empty() ? DeviceMemory() : upload(bias);
  cuda_moe_topk_launch(dl.as<float>(), bias.empty() ? nullptr : db.as<float>(), rows, experts, k, di.as<std::int32_t>(), dw.as<float>(),
                       nullptr);
  cuda_stream_synchronize(nullptr);
  std::vector<std::int32_t> ids(z(rows * k));
  std::vector<float> w(z(rows * k));
  if (rows > 0) {
    di.download(ids.data(), ids.size() * 4);
    dw.download(w.data(), w.size() * 4);
  }
  std::vector<ExpertWeight> out(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) out[i] = {ids[i], w[i]};
  return out;
}

MoeOrder cuda_moe_permute(std::span<const std::int32_t> expert_ids, int experts, int k) {
  const I A = static_cast<I>(expert_ids.size());
  moe_shape("moe_permute", A, "assignments", experts, k);
  if (A % k != 0) bad("moe_permute", fmt::format("{} assignments are not whole tokens of k = {}", A, k));
  for (std::int32_t e : expert_ids)
    if (e < 0 || e >= experts) bad("moe_permute", fmt::format("expert id {} is outside 0..{}", e, experts - 1));
  DeviceMemory di = upload(expert_ids), doff(z(experts + 1) * 4), dp(z(std::max<I>(A, 1)) * 4), dord(z(std::max<I>(A, 1)) * 4),
      dsrc(z(std::max<I>(A, 1)) * 4);
  const I slots = moe_active_slots(experts, A);
  // Poison (-2) in every slot: the kernel must write each one, an expert or -1.
  const std::vector<std::int32_t> poison(z(std::max<I>(slots, 1)), -2);
  DeviceMemory dact = upload(std::span<const std::int32_t>(poison));
  cuda_moe_permute_launch(A > 0 ? di.as<std::int32_t>() : nullptr, A, experts, k, doff.as<std::int32_t>(), dp.as<std::int32_t>(),
                          dord.as<std::int32_t>(), dsrc.as<std::int32_t>(), dact.as<std::int32_t>(), nullptr);
  cuda_stream_synchronize(nullptr);
  MoeOrder o;
  o.offsets.resize(z(experts + 1));
  o.position.resize(z(A));
  o.order.resize(z(A));
  o.source_rows.resize(z(A));
  o.active.resize(z(slots));
  doff.download(o.offsets.data(), o.offsets.size() * 4);
  if (A > 0) {
    dp.download(o.position.data(), z(A) * 4);
    dord.download(o.order.data(), z(A) * 4);
    dsrc.download(o.source_rows.data(), z(A) * 4);
    dact.download(o.active.data(), z(slots) * 4);
  }
  return o;
}

std::vector<float> cuda_moe_finalize(std::span<const float> expert_rows, std::span<const std::int32_t> position, std::span<const float> weights,
                                     I rows, int k, I width) {
  const std::string_view op = "moe_finalize";
  need_range(op, "rows", rows, 0, I{1} << 30);
  need_range(op, "k", k, 1, kCudaMoeMaxTopK);
  need_range(op, "width", width, 1, kInt32Max);
  need_size(op, "position", position.size(), rows * k);
  need_size(op, "weights", weights.size(), rows * k);
  if (width < 1 || expert_rows.size() % z(width) != 0) bad(op, fmt::format("{} expert values are not whole rows of {}", expert_rows.size(), width));
  const I have = static_cast<I>(expert_rows.size()) / width;
  for (std::int32_t p : position)
    if (p < 0 || p >= have) bad(op, fmt::format("position {} is outside the {} expert rows", p, have));
  DeviceMemory dr = upload_bf16(expert_rows), dp = upload(position), dw = upload(weights), dy(z(std::max<I>(rows * width, 1)) * sizeof(Bf16));
  cuda_moe_finalize_launch(dr.as<Bf16>(), dp.as<std::int32_t>(), dw.as<float>(), rows, k, width, dy.as<Bf16>(), nullptr);
  cuda_stream_synchronize(nullptr);
  return download_bf16(dy, z(rows * width));
}

std::vector<float> cuda_embedding(std::span<const float> table, I width, std::span<const std::int32_t> tokens) {
  if (width < 1 || table.empty() || table.size() % z(width) != 0)
    bad("embedding", fmt::format("a table of {} values is not whole rows of width {}", table.size(), width));
  const I vocab = static_cast<I>(table.size()) / width, rows = static_cast<I>(tokens.size());
  for (std::int32_t t : tokens)
    if (t < 0 || t >= vocab) bad("embedding", fmt::format("token id {} outside the table's 0..{}", t, vocab - 1));
  embedding_shape(vocab, width, rows);
  DeviceMemory dt = upload_bf16(table), dk = upload(tokens), dy(z(rows * width) * sizeof(Bf16));
  cuda_embedding_launch(dt.as<Bf16>(), vocab, width, dk.as<std::int32_t>(), rows, dy.as<Bf16>(), nullptr);
  cuda_stream_synchronize(nullptr);
  return download_bf16(dy, z(rows * width));
}

std::vector<std::int32_t> cuda_argmax(std::span<const float> logits, I rows) {
  if (rows < 1 || logits.empty() || logits.size() % z(rows) != 0)
    bad("argmax", fmt::format("{} logits are not {} whole rows", logits.size(), rows));
  const I vocab = static_cast<I>(logits.size()) / rows;
  argmax_shape(rows, vocab);
  DeviceMemory dl = upload(logits), dt(z(rows) * sizeof(std::int32_t));
  cuda_argmax_launch(dl.as<float>(), rows, vocab, dt.as<std::int32_t>(), nullptr);
  cuda_stream_synchronize(nullptr);
  std::vector<std::int32_t> out(z(rows));
  dt.download(out.data(), out.size() * sizeof(std::int32_t));
  return out;
}

void cuda_kv_append(HostPagedKv& cache, std::span<const float> qkv, I rows, I row_width, I heads, std::span<const std::int32_t> slots) {
  const std::string_view op = "kv_append";
  check_host_cache(op, cache);
  need_size(op, "qkv", qkv.size(), rows * row_width);
  need_size(op, "slots", slots.size(), rows);
  kv_append_shape(cache.layout, rows, row_width, heads);
  for (std::int32_t s : slots)
    if (s >= cache.layout.blocks * cache.layout.block_tokens)
      bad(op, fmt::format("slot {} outside the cache's {} slots", s, cache.layout.blocks * cache.layout.block_tokens));
  UploadedCache dc(cache);
  DeviceMemory dq = upload_bf16(qkv), ds = upload(slots);
  cuda_kv_append_launch(dc.device, dq.as<Bf16>(), rows, row_width, heads, ds.as<std::int32_t>(), nullptr);
  cuda_stream_synchronize(nullptr);
  dc.k.download(cache.k.data(), cache.k.size());
  dc.v.download(cache.v.data(), cache.v.size());
}

std::vector<float> cuda_attention_decode(const HostPagedKv& cache, std::span<const float> q, I q_stride, I batch, I heads,
                                         std::span<const std::int32_t> block_tables, I block_table_stride,
                                         std::span<const std::int32_t> context_lens, I partition_tokens) {
  const std::string_view op = "attention_decode";
  check_host_cache(op, cache);
  const PagedKvLayout& l = cache.layout;
  if (batch < 1) bad(op, fmt::format("batch {} must be >= 1", batch));
  need_size(op, "q", q.size(), batch * q_stride);
  need_size(op, "block_tables", block_tables.size(), batch * block_table_stride);
  need_size(op, "context_lens", context_lens.size(), batch);
  I max_context = 0;
  for (I b = 0; b < batch; ++b) {
    const I ctx = context_lens[z(b)];
    if (ctx < 1) bad(op, fmt::format("sequence {} has context {}; decode attends to at least its new token", b, ctx));
    check_table(op, l, block_tables.subspan(z(b * block_table_stride), z(block_table_stride)), ctx);
    max_context = std::max(max_context, ctx);
  }
  const I width = heads * l.head_dim;
  decode_shape(l, heads, batch, q_stride, width, block_table_stride, max_context, partition_tokens == 0 ? kAttentionKeyTile : partition_tokens);
  if (partition_tokens == 0) partition_tokens = decode_partition_tokens(batch, l.kv_heads, max_context, cuda_sm_count());
  UploadedCache dc(cache);
  DeviceMemory dq = upload_bf16(q), dt = upload(block_tables), dn = upload(context_lens), dout(z(batch * width) * sizeof(Bf16));
  DeviceMemory work(z(decode_workspace_bytes(batch, heads, l.head_dim, max_context, partition_tokens)));
  AttentionDecodeArgs a;
  a.q = dq.as<Bf16>();
  a.q_stride = q_stride;
  a.batch = batch;
  a.heads = heads;
  a.block_tables = dt.as<std::int32_t>();
  a.block_table_stride = block_table_stride;
  a.context_lens = dn.as<std::int32_t>();
  a.max_context = max_context;
  a.partition_tokens = partition_tokens;
  a.workspace = work.get();
  a.workspace_bytes = work.bytes();
  a.out = dout.as<Bf16>();
  a.out_stride = width;
  cuda_attention_decode_launch(dc.device, a, nullptr);
  cuda_stream_synchronize(nullptr);
  return download_bf16(dout, z(batch * width));
}

std::vector<float> cuda_attention_prefill(const HostPagedKv& cache, std::span<const float> q, I q_stride, I rows, I heads,
                                          std::span<const PrefillSegment> segments, std::span<const std::int32_t> block_tables,
                                          I block_table_stride) {
  const std::string_view op = "attention_prefill";
  check_host_cache(op, cache);
  const PagedKvLayout& l = cache.layout;
  if (rows < 1) bad(op, fmt::format("rows {} must be >= 1", rows));
  need_size(op, "q", q.size(), rows * q_stride);
  need_size(op, "block_tables", block_tables.size(), static_cast<I>(segments.size()) * block_table_stride);
  I max_tokens = 0;
  for (std::size_t s = 0; s < segments.size(); ++s) {
    const PrefillSegment& g = segments[s];
    if (g.tokens < 0 || g.cached < 0 || g.q_row < 0 || I{g.q_row} + g.tokens > rows)
      bad(op, fmt::format("segment {} (rows {}..{}, {} cached) is outside the {} query rows", s, g.q_row, I{g.q_row} + g.tokens - 1,
                          g.cached, rows));
    check_table(op, l, block_tables.subspan(s * z(block_table_stride), z(block_table_stride)), I{g.cached} + g.tokens);
    max_tokens = std::max<I>(max_tokens, g.tokens);
  }
  const I width = heads * l.head_dim;
  prefill_shape(l, heads, static_cast<I>(segments.size()), max_tokens, q_stride, width, block_table_stride);
  UploadedCache dc(cache);
  DeviceMemory dq = upload_bf16(q), dt = upload(block_tables), ds = upload(segments), dout(z(rows * width) * sizeof(Bf16));
  dout.zero();
  AttentionPrefillArgs a;
  a.q = dq.as<Bf16>();
  a.q_stride = q_stride;
  a.heads = heads;
  a.segments = ds.as<PrefillSegment>();
  a.segment_count = static_cast<I>(segments.size());
  a.max_segment_tokens = max_tokens;
  a.block_tables = dt.as<std::int32_t>();
  a.block_table_stride = block_table_stride;
  a.out = dout.as<Bf16>();
  a.out_stride = width;
  cuda_attention_prefill_launch(dc.device, a, nullptr);
  cuda_stream_synchronize(nullptr);
  return download_bf16(dout, z(rows * width));
}

}  // namespace racksim::exec
