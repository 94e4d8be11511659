#include "racksim/exec/cpu_ops.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>

#include <fmt/format.h>

#include "racksim/common/error.hpp"

namespace racksim::exec {

namespace {

using I = std::int64_t;

std::size_t z(I v) { return static_cast<std::size_t>(v); }

/// InputError unless `span` holds at least `want` values.
void need(std::string_view op, std::string_view what, std::size_t have, I want) {
  if (want < 0 || have < z(want))
    throw InputError(fmt::format("{}: {} holds {} values; the shape needs {}", op, what, have, want));
}

/// Indices of `key` by decreasing value, NaN below every number (a strict weak order even with
/// NaN), ties in index order: the experts' rank in both routings.
std::vector<int> rank_descending(std::span<const float> key) {
  std::vector<int> order(key.size());
  for (std::size_t e = 0; e < key.size(); ++e) order[e] = static_cast<int>(e);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    const float x = key[z(a)], y = key[z(b)];
    return x > y || (!std::isnan(x) && std::isnan(y));
  });
  return order;
}

}  // namespace

void rmsnorm(std::span<const float> x, I rows, I n, std::span<const float> weight, float eps, std::span<float> y) {
  if (rows < 0 || n < 1) throw InputError(fmt::format("rmsnorm: {} rows of width {}: need rows >= 0, width >= 1", rows, n));
  need("rmsnorm", "x", x.size(), rows * n);
  need("rmsnorm", "weight", weight.size(), n);
  need("rmsnorm", "y", y.size(), rows * n);
  for (I r = 0; r < rows; ++r) {
    float ss = 0.0f;
    for (I i = 0; i < n; ++i) ss += x[z(r * n + i)] * x[z(r * n + i)];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
    for (I i = 0; i < n; ++i) y[z(r * n + i)] = x[z(r * n + i)] * inv * weight[z(i)];
  }
}

void residual_add(std::span<float> hidden, std::span<const float> branch) {
  need("residual_add", "branch", branch.size(), static_cast<I>(hidden.size()));
  for (std::size_t i = 0; i < hidden.size(); ++i) hidden[i] += branch[i];
}

void rope_rotate_half(std::span<float> qkv, I rows, I row_width, I rotated_heads, I hd, std::span<const std::int64_t> positions,
                      double theta, I rotary_dim) {
  const I d = rotary_dim == 0 ? hd : rotary_dim;
  if (rows < 0 || hd < 2 || d < 2 || d % 2 != 0 || d > hd || rotated_heads < 0 || rotated_heads * hd > row_width)
    throw InputError(fmt::format("rope: {} rows of width {}, {} heads of {}, rotary_dim {}: need an even rotary_dim of 2..head_dim and "
                                 "heads x head_dim <= width",
                                 rows, row_width, rotated_heads, hd, d));
  need("rope", "qkv", qkv.size(), rows * row_width);
  need("rope", "positions", positions.size(), rows);
  for (I r = 0; r < rows; ++r)
    for (I h = 0; h < rotated_heads; ++h) {
      float* x = &qkv[z(r * row_width + h * hd)];
      for (I i = 0; i < d / 2; ++i) {
        const double freq = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(d));
        const double angle = static_cast<double>(positions[z(r)]) * freq;
        const auto c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
        const float a = x[i], b = x[i + d / 2];
        x[i] = a * c - b * s;
        x[i + d / 2] = b * c + a * s;
      }
    }
}

namespace {

void check_qk_rows(std::string_view op, std::size_t qkv_size, I rows, I row_width, I q_width, I k_width, std::size_t sums_size) {
  if (rows < 0 || q_width < 1 || k_width < 1 || q_width + k_width > row_width)
    throw InputError(fmt::format("{}: {} rows of width {}, q width {}, k width {}: need rows >= 0, q and k widths >= 1 within the row",
                                 op, rows, row_width, q_width, k_width));
  need(op, "qkv", qkv_size, rows * row_width);
  need(op, "sums", sums_size, 2 * rows);
}

}  // namespace

void qk_sum_squares(std::span<const float> qkv, I rows, I row_width, I q_width, I k_width, std::span<float> sums) {
  check_qk_rows("qk_sum_squares", qkv.size(), rows, row_width, q_width, k_width, sums.size());
  for (I r = 0; r < rows; ++r) {
    const float* x = &qkv[z(r * row_width)];
    float q = 0.0f, k = 0.0f;
    for (I i = 0; i < q_width; ++i) q += x[i] * x[i];
    for (I i = 0; i < k_width; ++i) k += x[q_width + i] * x[q_width + i];
    sums[z(2 * r)] = q;
    sums[z(2 * r + 1)] = k;
  }
}

void qk_layer_norm(std::span<float> qkv, I rows, I row_width, I q_width, I k_width, std::span<const float> sums, I q_count, I k_count,
                   std::span<const float> q_weight, std::span<const float> k_weight, float eps) {
  check_qk_rows("qk_layer_norm", qkv.size(), rows, row_width, q_width, k_width, sums.size());
  if (q_count < q_width || k_count < k_width)
    throw InputError(fmt::format("qk_layer_norm: counts {} and {} must cover the row's q and k widths {} and {}", q_count, k_count,
                                 q_width, k_width));
  // Exactly the row's widths: a whole layer's weights on a TP rank would norm with rank 0's slice.
  if (q_weight.size() != z(q_width) || k_weight.size() != z(k_width))
    throw InputError(fmt::format("qk_layer_norm: weights of {} and {} values for q and k widths {} and {}", q_weight.size(), k_weight.size(),
                                 q_width, k_width));
  for (I r = 0; r < rows; ++r) {
    float* x = &qkv[z(r * row_width)];
    const float q_inv = 1.0f / std::sqrt(sums[z(2 * r)] / static_cast<float>(q_count) + eps);
    const float k_inv = 1.0f / std::sqrt(sums[z(2 * r + 1)] / static_cast<float>(k_count) + eps);
    for (I i = 0; i < q_width; ++i) x[i] = x[i] * q_inv * q_weight[z(i)];
    for (I i = 0; i < k_width; ++i) x[q_width + i] = x[q_width + i] * k_inv * k_weight[z(i)];
  }
}

float silu(float g) noexcept { return g / (1.0f + std::exp(-g)); }

void swiglu(std::span<const float> gate_up, I rows, I n, std::span<float> y) {
  if (rows < 0 || n < 1) throw InputError(fmt::format("swiglu: {} rows of ffn {}: need rows >= 0, ffn >= 1", rows, n));
  need("swiglu", "gate_up", gate_up.size(), rows * 2 * n);
  need("swiglu", "y", y.size(), rows * n);
  for (I r = 0; r < rows; ++r)
    for (I i = 0; i < n; ++i) y[z(r * n + i)] = silu(gate_up[z(r * 2 * n + i)]) * gate_up[z(r * 2 * n + n + i)];
}

void embedding(std::span<const float> table, I width, std::span<const std::int32_t> tokens, std::span<float> y) {
  if (width < 1) throw InputError(fmt::format("embedding: width {} must be >= 1", width));
  const I vocab = static_cast<I>(table.size()) / width;
  need("embedding", "y", y.size(), static_cast<I>(tokens.size()) * width);
  for (std::size_t r = 0; r < tokens.size(); ++r) {
    if (tokens[r] < 0 || tokens[r] >= vocab)
      throw InputError(fmt::format("embedding: token id {} outside the table's 0..{}", tokens[r], vocab - 1));
    std::copy_n(&table[z(I{tokens[r]} * width)], width, &y[r * z(width)]);
  }
}

std::int32_t argmax_token(std::span<const float> logits) {
  if (logits.empty()) throw InputError("argmax_token: no logits");
  return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

void attention_one_query(std::span<const float> q, std::span<const float> k, std::span<const float> v, I n_keys, I nq, I nkv, I hd,
                         std::span<float> out) {
  if (n_keys < 1 || nq < 1 || nkv < 1 || nq % nkv != 0 || hd < 1)
    throw InputError(fmt::format("attention: {} keys, {} heads, {} kv heads, head_dim {}: need keys >= 1 and kv heads dividing heads",
                                 n_keys, nq, nkv, hd));
  const I kv_width = nkv * hd;
  need("attention", "q", q.size(), nq * hd);
  need("attention", "k", k.size(), n_keys * kv_width);
  need("attention", "v", v.size(), n_keys * kv_width);
  need("attention", "out", out.size(), nq * hd);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::vector<float> p(z(n_keys));
  for (I h = 0; h < nq; ++h) {
    const I g = h / (nq / nkv);
    const float* qh = &q[z(h * hd)];
    float mx = -std::numeric_limits<float>::infinity();
    for (I j = 0; j < n_keys; ++j) {
      float s = 0.0f;
      for (I i = 0; i < hd; ++i) s += qh[i] * k[z(j * kv_width + g * hd + i)];
      p[z(j)] = s * scale;
      mx = std::max(mx, p[z(j)]);
    }
    float sum = 0.0f;
    for (I j = 0; j < n_keys; ++j) sum += (p[z(j)] = std::exp(p[z(j)] - mx));
    float* o = &out[z(h * hd)];
    for (I i = 0; i < hd; ++i) o[i] = 0.0f;
    for (I j = 0; j < n_keys; ++j) {
      const float pj = p[z(j)] / sum;
      for (I i = 0; i < hd; ++i) o[i] += pj * v[z(j * kv_width + g * hd + i)];
    }
  }
}

std::vector<ExpertWeight> moe_top_k(std::span<const float> lg, int k) {
  const int E = static_cast<int>(lg.size());
  if (k < 1 || k > E) throw InputError(fmt::format("moe_top_k: top-{} of {} experts: need 1 <= k <= experts", k, E));
  const std::vector<int> order = rank_descending(lg);
  float sum = 0.0f;
  std::vector<float> w(z(k));
  for (int j = 0; j < k; ++j) sum += (w[z(j)] = std::exp(lg[z(order[z(j)])] - lg[z(order[0])]));
  std::vector<ExpertWeight> out;
  out.reserve(z(k));
  for (int j = 0; j < k; ++j) out.push_back({order[z(j)], w[z(j)] / sum});
  return out;
}

std::vector<ExpertWeight> moe_top_k_sigmoid(std::span<const float> lg, std::span<const float> bias, int k) {
  const int E = static_cast<int>(lg.size());
  if (k < 1 || k > E) throw InputError(fmt::format("moe_top_k_sigmoid: top-{} of {} experts: need 1 <= k <= experts", k, E));
  if (bias.size() != z(E)) throw InputError(fmt::format("moe_top_k_sigmoid: {} bias values for {} experts", bias.size(), E));
  std::vector<float> score(z(E)), key(z(E));
  for (int e = 0; e < E; ++e) {
    score[z(e)] = 1.0f / (1.0f + std::exp(-lg[z(e)]));
    key[z(e)] = score[z(e)] + bias[z(e)];
  }
  const std::vector<int> order = rank_descending(key);
  float sum = 0.0f;
  for (int j = 0; j < k; ++j) sum += score[z(order[z(j)])];
  sum = std::max(sum, 1e-12f);  // Hugging Face's clamp(min=1e-12): every score may underflow to 0
  std::vector<ExpertWeight> out;
  out.reserve(z(k));
  for (int j = 0; j < k; ++j) out.push_back({order[z(j)], score[z(order[z(j)])] / sum});
  return out;
}

MoeOrder moe_expert_order(std::span<const std::int32_t> expert_ids, int experts, int k) {
  const auto A = static_cast<std::int64_t>(expert_ids.size());
  if (experts < 1 || k < 1 || A % k != 0)
    throw InputError(fmt::format("moe_expert_order: {} assignments, {} experts, top-{}: need experts >= 1, k >= 1 and whole tokens of k", A,
                                 experts, k));
  if (A > std::numeric_limits<std::int32_t>::max()) throw InputError(fmt::format("moe_expert_order: {} assignments exceed int32", A));
  MoeOrder o;
  o.offsets.assign(z(experts) + 1, 0);
  for (std::int32_t e : expert_ids) {
    if (e < 0 || e >= experts) throw InputError(fmt::format("moe_expert_order: expert id {} is outside 0..{}", e, experts - 1));
    ++o.offsets[z(e) + 1];
  }
  for (int e = 0; e < experts; ++e) o.offsets[z(e) + 1] += o.offsets[z(e)];
  std::vector<std::int32_t> next(o.offsets.begin(), o.offsets.end() - 1);
  o.position.resize(z(A));
  o.order.resize(z(A));
  o.source_rows.resize(z(A));
  for (std::int64_t a = 0; a < A; ++a) {
    const std::int32_t p = next[z(expert_ids[z(a)])]++;
    o.position[z(a)] = p;
    o.order[z(p)] = static_cast<std::int32_t>(a);
    o.source_rows[z(p)] = static_cast<std::int32_t>(a / k);
  }
  o.active.assign(z(moe_active_slots(experts, A)), -1);
  std::size_t used = 0;
  for (int e = 0; e < experts; ++e)
    if (o.offsets[z(e) + 1] > o.offsets[z(e)]) o.active[used++] = e;
  return o;
}

}  // namespace racksim::exec
