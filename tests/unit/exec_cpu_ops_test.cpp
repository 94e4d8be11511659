// exec/: the per-op FP32 math the CPU reference runs and the CUDA step ops are tested against
// (cpu_ops.hpp), against values worked out by hand, and the BF16 / E4M3 formats of the
// activations and the KV cache (activation_formats.hpp) against their definitions.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "racksim/common/error.hpp"
#include "racksim/exec/activation_formats.hpp"
#include "racksim/exec/cpu_ops.hpp"

using namespace racksim;
using namespace racksim::exec;

TEST_CASE("rmsnorm: [3, 4] is divided by sqrt(12.5) and scaled by the weight", "[exec][cpu_ops]") {
  // mean(x^2) = (9 + 16) / 2 = 12.5, so y = x / sqrt(12.5 + eps) * w. Row 2 is [1, -1]:
  // mean 1, y = [1, -1] / sqrt(1 + eps) * w. FP32: a few roundings, 1e-6 relative.
  const std::vector<float> x = {3, 4, 1, -1}, w = {1, 2};
  std::vector<float> y(4);
  rmsnorm(x, 2, 2, w, 0.0f, y);
  const double inv = 1.0 / std::sqrt(12.5);
  CHECK(y[0] == Approx(3 * inv).epsilon(1e-6));
  CHECK(y[1] == Approx(8 * inv).epsilon(1e-6));
  CHECK(y[2] == Approx(1.0).epsilon(1e-6));
  CHECK(y[3] == Approx(-2.0).epsilon(1e-6));
  rmsnorm(x, 2, 2, w, 1e-2f, y);  // eps enters under the root: 1 / sqrt(12.51)
  CHECK(y[0] == Approx(3 / std::sqrt(12.51)).epsilon(1e-6));
  CHECK_THROWS_AS(rmsnorm(x, 3, 2, w, 0.0f, y), InputError);  // 3 rows need 6 values
}

TEST_CASE("residual_add and swiglu: exact sums and silu(g) = g / (1 + e^-g)", "[exec][cpu_ops]") {
  // Sums of small dyadic numbers are exact in FP32.
  std::vector<float> h = {1, 2, 3};
  const std::vector<float> b = {0.5f, -2, 10};
  residual_add(h, b);
  CHECK(h == std::vector<float>{1.5f, 0, 13});
  CHECK_THROWS_AS(residual_add(h, std::vector<float>{1}), InputError);
  // silu(0) = 0; silu(1) = 1 / (1 + e^-1) = 0.7310585786; one row [gate 1, 0 | up 2, 5]
  // gives [2 silu(1), 0].
  CHECK(silu(0.0f) == 0.0f);
  CHECK(silu(1.0f) == Approx(0.7310585786).epsilon(1e-6));
  std::vector<float> y(2);
  swiglu(std::vector<float>{1, 0, 2, 5}, 1, 2, y);
  CHECK(y[0] == Approx(1.4621171573).epsilon(1e-6));
  CHECK(y[1] == 0.0f);
}

TEST_CASE("rope_rotate_half: position 0 is the identity and a pair turns by pos x theta^(-2i/d)", "[exec][cpu_ops]") {
  // One row of width 8: a rotated head of 4 ([x0, x1 | x2, x3], pairs (x0, x2) and (x1, x3)),
  // then 4 values that are not rotated. theta 10000, d = 4: frequencies 1 and 10000^(-1/2) = 0.01.
  const std::vector<float> row = {1, 2, 0, 0, 7, 8, 9, 10};
  std::vector<float> at0 = row;
  rope_rotate_half(at0, 1, 8, 1, 4, std::vector<std::int64_t>{0}, 10000.0);
  CHECK(at0 == row);  // cos 0 = 1, sin 0 = 0: exact
  std::vector<float> at3 = row;
  rope_rotate_half(at3, 1, 8, 1, 4, std::vector<std::int64_t>{3}, 10000.0);
  // (1, 0) by 3 rad -> (cos 3, sin 3); (2, 0) by 0.03 rad -> (2 cos 0.03, 2 sin 0.03).
  CHECK(at3[0] == Approx(std::cos(3.0)).margin(1e-6));
  CHECK(at3[2] == Approx(std::sin(3.0)).margin(1e-6));
  CHECK(at3[1] == Approx(2 * std::cos(0.03)).margin(1e-6));
  CHECK(at3[3] == Approx(2 * std::sin(0.03)).margin(1e-6));
  CHECK(std::vector<float>(at3.begin() + 4, at3.end()) == std::vector<float>{7, 8, 9, 10});  // beyond the rotated heads
  CHECK_THROWS_AS(rope_rotate_half(at3, 1, 8, 1, 3, std::vector<std::int64_t>{0}, 1e4), InputError);  // odd head_dim
  // Partial RoPE: a head of 8 with rotary_dim 4 rotates its first 4 values as the head of 4 above
  // ([x0, x1 | x2, x3], frequencies theta^(-2i/4)) and leaves values 4..7 as they are.
  std::vector<float> partial = row;
  rope_rotate_half(partial, 1, 8, 1, 8, std::vector<std::int64_t>{3}, 10000.0, 4);
  CHECK(partial == at3);
  CHECK_THROWS_AS(rope_rotate_half(partial, 1, 8, 1, 8, std::vector<std::int64_t>{3}, 1e4, 10), InputError);  // beyond head_dim
  CHECK_THROWS_AS(rope_rotate_half(partial, 1, 8, 1, 8, std::vector<std::int64_t>{3}, 1e4, 3), InputError);   // odd
}

TEST_CASE("qk_sum_squares and qk_layer_norm: MiniMax-M2's QK-norm over all of a row's q and all its k", "[exec][cpu_ops]") {
  // One row: q [3, 4] (sum of squares 25), k [1, 1, 1, 1] (4), then v [9, 9] untouched. eps 0.
  // Own sums (counts = widths 2, 4): q / sqrt(25 / 2) = [0.8485, 1.1314] x w; k / sqrt(4 / 4) = k x w.
  // As a TP rank whose sums the other rank doubled (50, 8) over counts 4 and 8: q / sqrt(12.5) and
  // k / 1 again: the same values, as they must be when the other rank holds a copy.
  std::vector<float> x = {3, 4, 1, 1, 1, 1, 9, 9};
  std::vector<float> sums(2);
  qk_sum_squares(x, 1, 8, 2, 4, sums);
  CHECK(sums == std::vector<float>{25, 4});
  const std::vector<float> wq = {1, 2}, wk = {1, 1, 1, 0.5f};
  std::vector<float> own = x, tp = x;
  qk_layer_norm(own, 1, 8, 2, 4, sums, 2, 4, wq, wk, 0.0f);
  CHECK(own[0] == Approx(3 / std::sqrt(12.5)).epsilon(1e-6));
  CHECK(own[1] == Approx(2 * 4 / std::sqrt(12.5)).epsilon(1e-6));
  CHECK(std::vector<float>(own.begin() + 2, own.end()) == std::vector<float>{1, 1, 1, 0.5f, 9, 9});
  qk_layer_norm(tp, 1, 8, 2, 4, std::vector<float>{50, 8}, 4, 8, wq, wk, 0.0f);
  CHECK(tp == own);
  CHECK_THROWS_AS(qk_sum_squares(x, 1, 8, 6, 4, sums), InputError);                       // q and k exceed the row
  CHECK_THROWS_AS(qk_layer_norm(tp, 1, 8, 2, 4, sums, 1, 4, wq, wk, 0.0f), InputError);   // a count below its width
  CHECK_THROWS_AS(qk_layer_norm(tp, 1, 8, 2, 4, sums, 2, 4, std::vector<float>{1, 2, 3}, wk, 0.0f), InputError);  // a weight wider than q
}

TEST_CASE("embedding gathers table rows; argmax_token picks the lowest id among equal maxima", "[exec][cpu_ops]") {
  const std::vector<float> table = {0, 1, 10, 11, 20, 21};  // 3 rows of width 2
  std::vector<float> y(4);
  embedding(table, 2, std::vector<std::int32_t>{2, 0}, y);
  CHECK(y == std::vector<float>{20, 21, 0, 1});
  CHECK_THROWS_AS(embedding(table, 2, std::vector<std::int32_t>{3}, y), InputError);
  CHECK(argmax_token(std::vector<float>{1, 5, 3, 5}) == 1);  // ids 1 and 3 tie: 1
  CHECK(argmax_token(std::vector<float>{-1, -3, -0.5f}) == 2);
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(argmax_token(std::vector<float>{-inf, -inf}) == 0);
  CHECK_THROWS_AS(argmax_token(std::vector<float>{}), InputError);
}

TEST_CASE("attention_one_query: one key returns its V; two keys weigh V by softmax; GQA maps heads to KV heads", "[exec][cpu_ops]") {
  // head_dim 1 (scale 1 / sqrt(1) = 1). One key: weight exp(0) / exp(0) = 1, so out = v exactly.
  std::vector<float> out(1);
  attention_one_query(std::vector<float>{0.3f}, std::vector<float>{5}, std::vector<float>{4}, 1, 1, 1, 1, out);
  CHECK(out[0] == 4.0f);
  // q = 1, keys 0 and ln 3: scores 0 and ln 3, weights 1/4 and 3/4; v = 4 and 8 -> 1 + 6 = 7.
  attention_one_query(std::vector<float>{1}, std::vector<float>{0, std::log(3.0f)}, std::vector<float>{4, 8}, 2, 1, 1, 1, out);
  CHECK(out[0] == Approx(7.0).epsilon(1e-6));
  // 4 query heads over 2 KV heads: heads 0, 1 read KV head 0 (v 10), heads 2, 3 KV head 1 (v 20).
  std::vector<float> out4(4);
  attention_one_query(std::vector<float>{1, 2, 3, 4}, std::vector<float>{1, 1}, std::vector<float>{10, 20}, 1, 4, 2, 1, out4);
  CHECK(out4 == std::vector<float>{10, 10, 20, 20});
  // head_dim 4: scale 1/2; q . k = 2 for key 0 and 0 for key 1 -> scores 1 and 0, weights
  // e / (e + 1) and 1 / (e + 1) on v = [1, 0, 0, 0] and [0, 1, 0, 0].
  std::vector<float> o(4);
  attention_one_query(std::vector<float>{1, 1, 0, 0}, std::vector<float>{1, 1, 0, 0, 0, 0, 0, 0},
                      std::vector<float>{1, 0, 0, 0, 0, 1, 0, 0}, 2, 1, 1, 4, o);
  const double e = std::exp(1.0);
  CHECK(o[0] == Approx(e / (e + 1)).epsilon(1e-6));
  CHECK(o[1] == Approx(1 / (e + 1)).epsilon(1e-6));
  CHECK(o[2] == 0.0f);
  CHECK_THROWS_AS(attention_one_query(std::vector<float>{1}, std::vector<float>{1}, std::vector<float>{1}, 0, 1, 1, 1, out), InputError);
}

TEST_CASE("moe_top_k: the k largest router logits, ties to the lower expert, softmaxed over those k", "[exec][cpu_ops]") {
  // Logits [1, 3, 3, 0], k 2: experts 1 and 2 (equal: id order), weights 1/2 each.
  const auto a = moe_top_k(std::vector<float>{1, 3, 3, 0}, 2);
  REQUIRE(a.size() == 2);
  CHECK(a[0].expert == 1);
  CHECK(a[1].expert == 2);
  CHECK(a[0].weight == 0.5f);
  // Logits [0, ln 3], k 2: expert 1 first with e^0 / (e^0 + e^-ln3) = 3/4, expert 0 with 1/4.
  const auto b = moe_top_k(std::vector<float>{0, std::log(3.0f)}, 2);
  CHECK(b[0].expert == 1);
  CHECK(b[0].weight == Approx(0.75).epsilon(1e-6));
  CHECK(b[1].weight == Approx(0.25).epsilon(1e-6));
  CHECK_THROWS_AS(moe_top_k(std::vector<float>{1, 2}, 3), InputError);
  // NaN ranks below every number (the device kernel's rule): [NaN, 1, 2] -> 2, 1; [NaN, -inf, NaN]
  // -> 1 (-inf is a number), then the lower NaN id 0.
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const auto c = moe_top_k(std::vector<float>{nan, 1, 2}, 2);
  CHECK(c[0].expert == 2);
  CHECK(c[1].expert == 1);
  const auto d = moe_top_k(std::vector<float>{nan, -inf, nan}, 2);
  CHECK(d[0].expert == 1);
  CHECK(d[1].expert == 0);
}

TEST_CASE("moe_top_k_sigmoid: the k largest sigmoid(logit) + bias, weighted by sigmoid(logit) over their sum", "[exec][cpu_ops]") {
  // Logits [0, 2, 1, -1] (sigmoid 0.5, 0.8808, 0.7311, 0.2689), bias [0.5, 0, 0, 0.7]: keys 1.0,
  // 0.8808, 0.7311, 0.9689. Top 2: experts 0 and 3, though expert 1 has the largest logit, each
  // weighted by its sigmoid alone: 0.5 / 0.7689 = 0.6503, 0.2689 / 0.7689 = 0.3497.
  const std::vector<float> lg = {0, 2, 1, -1}, bias = {0.5f, 0, 0, 0.7f};
  const auto w = moe_top_k_sigmoid(lg, bias, 2);
  REQUIRE(w.size() == 2);
  CHECK(w[0].expert == 0);
  CHECK(w[1].expert == 3);
  const double s3 = 1 / (1 + std::exp(1.0));
  CHECK(w[0].weight == Approx(0.5 / (0.5 + s3)).epsilon(1e-6));
  CHECK(w[1].weight == Approx(s3 / (0.5 + s3)).epsilon(1e-6));
  // Without bias the sigmoid is monotone: the largest logits (1 and 2), ties to the lower id.
  const auto plain = moe_top_k_sigmoid(std::vector<float>{1, 3, 3, 0}, std::vector<float>(4, 0.0f), 2);
  CHECK(plain[0].expert == 1);
  CHECK(plain[1].expert == 2);
  CHECK(plain[0].weight == 0.5f);
  CHECK_THROWS_AS(moe_top_k_sigmoid(lg, std::vector<float>{0, 0}, 2), InputError);  // a bias per expert
  CHECK_THROWS_AS(moe_top_k_sigmoid(lg, std::vector<float>(5, 0.0f), 2), InputError);  // exactly
  CHECK_THROWS_AS(moe_top_k_sigmoid(lg, bias, 5), InputError);
}

TEST_CASE("moe_expert_order: a stable counting sort of the assignments by expert", "[exec][cpu_ops]") {
  // 3 tokens, top-2 of 4 experts, token-major: token 0 -> (2, 0), token 1 -> (0, 3), token 2 -> (2, 0).
  // Expert 0 gets assignments 1, 2, 5 (in that order), expert 1 none, expert 2 gets 0, 4, expert 3
  // gets 3: rows 0-2, -, 3-4, 5. Offsets [0, 3, 3, 5, 6].
  const std::vector<std::int32_t> ids{2, 0, 0, 3, 2, 0};
  const MoeOrder o = moe_expert_order(ids, 4, 2);
  CHECK(o.offsets == std::vector<std::int32_t>{0, 3, 3, 5, 6});
  CHECK(o.order == std::vector<std::int32_t>{1, 2, 5, 0, 4, 3});
  CHECK(o.position == std::vector<std::int32_t>{3, 0, 1, 5, 4, 2});
  // The token of each row: assignment / 2.
  CHECK(o.source_rows == std::vector<std::int32_t>{0, 1, 2, 0, 2, 1});
  // The experts with rows: 0, 2 and 3 of min(4 experts, 6 assignments) = 4 slots; the last unused.
  CHECK(o.active == std::vector<std::int32_t>{0, 2, 3, -1});
  // One token, top-2 of 8: 2 slots, both used, in id order whatever the rank order.
  CHECK(moe_expert_order(std::vector<std::int32_t>{6, 1}, 8, 2).active == std::vector<std::int32_t>{1, 6});
  // Both picks of one expert (the sort allows it): one used slot of 2.
  CHECK(moe_expert_order(std::vector<std::int32_t>{5, 5}, 8, 2).active == std::vector<std::int32_t>{5, -1});
  // No assignments: every expert empty, no slot.
  CHECK(moe_expert_order(std::vector<std::int32_t>{}, 3, 2).offsets == std::vector<std::int32_t>{0, 0, 0, 0});
  CHECK(moe_expert_order(std::vector<std::int32_t>{}, 3, 2).active.empty());
  CHECK_THROWS_AS(moe_expert_order(std::vector<std::int32_t>{0, 4}, 4, 2), InputError);  // id past the experts
  CHECK_THROWS_AS(moe_expert_order(std::vector<std::int32_t>{0, 1, 2}, 4, 2), InputError);  // not whole tokens
  CHECK_THROWS_AS(moe_expert_order(std::vector<std::int32_t>{-1, 1}, 4, 2), InputError);
}

TEST_CASE("BF16 rounds to nearest even; E4M3 round-trips all finite codes and saturates at 448", "[exec][cpu_ops]") {
  // BF16 keeps 7 fraction bits: ulp(1) = 2^-7. 1 + 2^-8 is a tie -> 1 (even); 1 + 3 x 2^-8 is a
  // tie between 1 + 2^-7 (odd) and 1 + 2^-6 (even) -> 1 + 2^-6.
  CHECK(act::bf16_bits(1.0f) == 0x3F80);
  CHECK(act::round_bf16(1.0f + std::ldexp(1.0f, -8)) == 1.0f);
  CHECK(act::round_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 1.0f + std::ldexp(1.0f, -6));
  CHECK(act::bf16_value(0xC040) == -3.0f);
  // E4M3 (OCP FP8: bias 7, 3 mantissa bits, max 448 = 0x7E, 0x7F NaN, subnormals m x 2^-9).
  CHECK(act::e4m3_code(1.0f) == 0x38);
  CHECK(act::e4m3_code(-2.0f) == 0xC0);
  CHECK(act::e4m3_code(448.0f) == 0x7E);
  CHECK(act::e4m3_code(1000.0f) == 0x7E);  // satfinite
  CHECK(act::e4m3_code(-std::numeric_limits<float>::infinity()) == 0xFE);
  CHECK(act::e4m3_code(std::ldexp(1.0f, -9)) == 0x01);
  CHECK(act::e4m3_code(std::nanf("")) == 0x7F);
  CHECK(act::e4m3_value(0x01) == std::ldexp(1.0f, -9));
  CHECK(act::e4m3_code(0.6f) == act::e4m3_code(0.625f));  // 0.6 lies nearer 0.625 than 0.5625 (ulp 2^-4 in [0.5, 1))
  for (unsigned c = 0; c < 256; ++c) {
    if ((c & 0x7F) == 0x7F) continue;  // NaN
    INFO("code " << c);
    CHECK(act::e4m3_code(act::e4m3_value(static_cast<std::uint8_t>(c))) == c);
  }
}
