#include "racksim/exec/fp4_gemm_path.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/exec/activation_formats.hpp"
#include "racksim/exec/cpu_ops.hpp"
#include "racksim/exec/env_knob.hpp"
#include "racksim/exec/fp4.hpp"

namespace racksim::exec {

std::string_view to_string(Fp4GemmMode m) noexcept {
  switch (m) {
    case Fp4GemmMode::automatic: return "auto";
    case Fp4GemmMode::native: return "native";
    case Fp4GemmMode::hopper: return "hopper";
  }
  return "?";
}

std::optional<Fp4GemmMode> parse_fp4_gemm_mode(std::string_view s) noexcept {
  for (Fp4GemmMode m : {Fp4GemmMode::automatic, Fp4GemmMode::native, Fp4GemmMode::hopper})
    if (to_string(m) == s) return m;
  return std::nullopt;
}

namespace {

std::string version_text(std::size_t v) { return fmt::format("{}.{}.{}", v / 10000, v / 100 % 100, v % 100); }

/// What the Hopper kernels do, by M.
std::string hopper_kernels(bool large_m_fp8) {
  return large_m_fp8 ? "fused FP4-weight tensor-core kernel (M <= 128), above it RACKSIM_FP4_LARGE_M=fp8: W dequantized to E4M3 and x "
                       "quantized to E4M3 (per-tensor power-of-two scale) + cuBLASLt FP8"
                     : "fused FP4-weight tensor-core kernel (M <= 128), dequantize + cuBLASLt BF16 above";
}

}  // namespace

Fp4GemmChoice choose_fp4_gemm(Fp4GemmMode mode, int sm_major, int sm_minor, std::size_t cublaslt_version, bool large_m_fp8) {
  const std::string device = fmt::format("sm_{}{}", sm_major, sm_minor);
  if (mode == Fp4GemmMode::hopper)
    return {false, fmt::format("--fp4-gemm hopper on {}: {}", device, hopper_kernels(large_m_fp8))};
  std::string missing;
  if (sm_major != 10 || (sm_minor != 0 && sm_minor != 3))
    missing = fmt::format("{} is not sm_100 or sm_103 (the builds' Blackwell targets with block-scaled FP4 tensor cores)", device);
  else if (cublaslt_version < kCublasLtBlockScaledFp4Version)
    missing = fmt::format("cuBLASLt {} predates block-scaled FP4 (12.8)", version_text(cublaslt_version));
  if (missing.empty())
    return {true, fmt::format("native NVFP4 on {}: activations quantized on the device (encode scale {:g}), cuBLASLt {} FP4 x FP4 "
                              "with VEC16_UE4M3 scales",
                              device, kActivationNvfp4EncodeScale, version_text(cublaslt_version))};
  if (mode == Fp4GemmMode::native) throw Error(ExitCode::infeasible, fmt::format("--fp4-gemm native: {}", missing));
  return {false, fmt::format("Hopper FP4 kernels: {}; {}", missing, hopper_kernels(large_m_fp8))};
}

Fp4GemmChoice after_probe(Fp4GemmMode mode, Fp4GemmChoice choice, const std::string& probe_error, bool large_m_fp8) {
  if (!choice.native || probe_error.empty()) return choice;
  if (mode == Fp4GemmMode::native) throw Error(ExitCode::infeasible, fmt::format("--fp4-gemm native: {}", probe_error));
  return {false, fmt::format("Hopper FP4 kernels: {}; {}", probe_error, hopper_kernels(large_m_fp8))};
}

std::int64_t native_activation_bytes(std::int64_t rows, std::int64_t cols) noexcept {
  return rows * ((cols + 1) / 2) + fp4::cublaslt_scale_bytes(rows, (cols + fp4::kNvfp4Block - 1) / fp4::kNvfp4Block);
}

std::vector<std::int64_t> native_padded_row_candidates(std::int64_t m, std::int64_t max_rows) {
  std::vector<std::int64_t> c;
  const auto add = [&](std::int64_t rows) {
    if (rows > m && rows <= max_rows) c.push_back(rows);
  };
  for (const std::int64_t a : {16, 32, 64, 128}) add((m / a + 1) * a);  // the next multiple strictly above m
  std::int64_t p = 1;
  while (p <= m) p *= 2;
  for (; p < max_rows; p *= 2) add(p);
  add(max_rows);
  std::sort(c.begin(), c.end());
  c.erase(std::unique(c.begin(), c.end()), c.end());
  return c;
}

std::optional<std::int64_t> native_gemm_rows(std::int64_t m, std::int64_t max_rows, const std::function<bool(std::int64_t)>& has_plan) {
  if (m < 1 || m > max_rows) throw InputError(fmt::format("native FP4 GEMM rows: m = {} is outside 1..max_rows {}", m, max_rows));
  if (has_plan(m)) return m;
  for (const std::int64_t rows : native_padded_row_candidates(m, max_rows))
    if (has_plan(rows)) return rows;
  return std::nullopt;
}

void NativeGemmRows::record_padding(std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t rows) {
  if (rows == m) return;
  for (const PaddedNativeGemm& p : padded_)
    if (p.m == m && p.n == n && p.k == k) return;
  padded_.push_back({m, n, k, rows});
}

std::int64_t NativeGemmRows::rows(std::int64_t m, std::int64_t n, std::int64_t k, const PlanProbe& probe, bool record) {
  if (const auto it = rows_.find({m, n, k}); it != rows_.end()) {
    if (record) record_padding(m, n, k, it->second);
    return it->second;
  }
  // Each (rows, n, k) asked once: a row count without a plan is not asked again for the next M.
  const auto answer = [&](std::int64_t rows) -> const std::string& {
    auto it = probed_.find({rows, n, k});
    if (it == probed_.end()) it = probed_.emplace(std::make_tuple(rows, n, k), probe(rows, n, k)).first;
    return it->second;
  };
  const std::optional<std::int64_t> rows = native_gemm_rows(m, max_rows_, [&](std::int64_t r) { return answer(r).empty(); });
  if (!rows) {
    std::string tried;
    for (const std::int64_t r : native_padded_row_candidates(m, max_rows_)) tried += fmt::format("{}{}", tried.empty() ? "" : ", ", r);
    throw Error(ExitCode::internal,
                fmt::format("native NVFP4 GEMM m={} n={} k={}: cuBLASLt has no plan at {} rows{} (max_rows {} had one when the "
                            "executor was made): {}",
                            m, n, k, m, tried.empty() ? "" : fmt::format(" nor padded to {} rows", tried), max_rows_, answer(m)));
  }
  rows_.emplace(std::make_tuple(m, n, k), *rows);
  if (record) record_padding(m, n, k, *rows);
  return *rows;
}

std::string padded_native_gemm_note(const std::vector<PaddedNativeGemm>& padded) {
  if (padded.empty()) return "";
  std::string shapes;
  for (const PaddedNativeGemm& p : padded)
    shapes += fmt::format("{}m={} n={} k={} at {} rows", shapes.empty() ? "" : ", ", p.m, p.n, p.k, p.rows);
  return fmt::format("native NVFP4 GEMMs run padded where cuBLASLt had no plan at their M: {}; those GEMMs' measured times include "
                     "the padding rows",
                     shapes);
}

void fp4_mma_tile(const std::vector<std::uint8_t>& packed, const std::vector<std::uint8_t>& scales, std::int64_t n, std::int64_t k,
                  std::vector<std::uint8_t>& codes, std::vector<std::uint8_t>& tiled_scales) {
  if (n < 1 || k < 32 || k % 32 != 0 || packed.size() != static_cast<std::size_t>(n * k / 2) || scales.size() != static_cast<std::size_t>(n * k / 16))
    throw InputError(fmt::format("fp4_mma_tile: {} x {} needs k a positive multiple of 32 and {} code and {} scale bytes (got {} and {})", n,
                                 k, n * k / 2, n * k / 16, packed.size(), scales.size()));
  const Fp4MmaTiling t = fp4_mma_tiling(n, k);
  codes.assign(static_cast<std::size_t>(t.code_bytes), 0);
  tiled_scales.assign(static_cast<std::size_t>(t.scale_bytes), 0);
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t k0 = 0; k0 < k; k0 += 32) {
      // 16 bytes = 4 little-endian words of 8 codes, each stored in the kernel's bit order.
      const auto src = static_cast<std::size_t>(r * (k / 2) + k0 / 2);
      const auto dst = static_cast<std::size_t>(fp4_mma_code_offset(r, k0, t.spans));
      for (std::size_t w = 0; w < 4; ++w) {
        std::uint32_t q = 0;
        for (std::size_t b = 0; b < 4; ++b) q |= static_cast<std::uint32_t>(packed[src + 4 * w + b]) << (8 * b);
        const std::uint32_t p = fp4::e2m1x8_to_mma_order(q);
        for (std::size_t b = 0; b < 4; ++b) codes[dst + 4 * w + b] = static_cast<std::uint8_t>(p >> (8 * b));
      }
    }
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t kb = 0; kb < k / 16; ++kb)
      tiled_scales[static_cast<std::size_t>(fp4_mma_scale_offset(r, kb, t.spans))] = scales[static_cast<std::size_t>(r * (k / 16) + kb)];
}

bool fp4_large_m_fp8(const char* value) { return env_choice("RACKSIM_FP4_LARGE_M", value, {"bf16", "fp8"}).value_or(0) == 1; }

Fp8LargeMOperands fp4_large_m_fp8_operands(std::span<const float> x, std::int64_t m, const Fp4Matrix& w) {
  if (w.format != DType::nvfp4 || m < 1 || static_cast<std::int64_t>(x.size()) != m * w.cols)
    throw InputError(fmt::format("fp4_large_m_fp8_operands: needs NVFP4 weights and {} x {} activations (got {} values)", m, w.cols, x.size()));
  Fp8LargeMOperands o;
  o.w.resize(static_cast<std::size_t>(w.rows * w.cols));
  for (std::int64_t r = 0; r < w.rows; ++r)
    for (std::int64_t c = 0; c < w.cols; ++c)
      o.w[static_cast<std::size_t>(r * w.cols + c)] = act::nvfp4_e4m3_weight_code(w.code(r, c), w.scales[static_cast<std::size_t>(r * w.blocks_per_row() + c / 16)]);
  float amax = 0.0f;
  for (const float v : x) amax = std::max(amax, std::fabs(v));
  o.x_scale = act::e4m3_pow2_scale(amax);
  const float inv = 1.0f / o.x_scale;  // a power of two: x x inv is x / x_scale exactly
  o.x.resize(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) o.x[i] = act::e4m3_code(x[i] * inv);
  o.alpha = static_cast<double>(w.tensor_scale) * act::kNvfp4E4m3WeightDivisor * o.x_scale;
  return o;
}

Fp4MmaKnobs fp4_mma_knobs(const char* splits, const char* tiles, const char* depth, const char* mma, const char* pipe, const char* x,
                          const char* reduce, const char* ctas) {
  Fp4MmaKnobs k;
  if (const auto i = env_choice("RACKSIM_FP4_MMA_SPLITS", splits, {"auto", "fill8", "wave", "balance"}))
    k.splits = *i == 0   ? Fp4MmaKnobs::Splits::automatic
               : *i == 1 ? Fp4MmaKnobs::Splits::fill8
               : *i == 2 ? Fp4MmaKnobs::Splits::wave
                         : Fp4MmaKnobs::Splits::balance;
  if (const auto i = env_choice("RACKSIM_FP4_MMA_TILES", tiles, {"4", "8"})) k.eight_tiles = *i == 1;
  if (const auto i = env_choice("RACKSIM_FP4_MMA_DEPTH", depth, {"auto", "1", "2"})) k.depth = static_cast<int>(*i);  // auto = 0
  if (const auto i = env_choice("RACKSIM_FP4_MMA_MMA", mma, {"sync", "wgmma"})) k.wgmma = *i == 1;
  if (const auto i = env_choice("RACKSIM_FP4_MMA_PIPE", pipe, {"regs", "cpasync"})) k.ring = *i == 1;
  if (const auto i = env_choice("RACKSIM_FP4_MMA_X", x, {"span", "split"})) k.x_split = *i == 1;
  if (const auto i = env_choice("RACKSIM_FP4_MMA_REDUCE", reduce, {"launch", "serial"})) k.serial = *i == 1;
  if (const auto i = env_choice("RACKSIM_FP4_MMA_CTAS", ctas, {"auto", "4", "5", "6"})) k.ctas = *i == 0 ? 0 : static_cast<int>(*i) + 3;
  if (k.ring && k.depth != 0)
    throw InputError("environment RACKSIM_FP4_MMA_PIPE=cpasync replaces the register prefetch that RACKSIM_FP4_MMA_DEPTH sets; unset one");
  if (k.ring && k.wgmma)
    throw InputError("environment RACKSIM_FP4_MMA_PIPE=cpasync and RACKSIM_FP4_MMA_MMA=wgmma are two variants of the 2-tile kernel; set one");
  if (k.ctas != 0 && (k.ring || k.wgmma || k.x_split))
    throw InputError(fmt::format("environment RACKSIM_FP4_MMA_CTAS={} pads the register-staged mma.sync kernel only, not {}; unset one", k.ctas,
                                 k.ring ? "RACKSIM_FP4_MMA_PIPE=cpasync" : k.wgmma ? "RACKSIM_FP4_MMA_MMA=wgmma" : "RACKSIM_FP4_MMA_X=split"));
  return k;
}

bool fp4_mma_supported(std::int64_t m, std::int64_t n, std::int64_t k) noexcept {
  return m >= 1 && m <= kFp4MmaMaxM && n >= 1 && n <= (std::int64_t{1} << 30) && k >= 32 && k % 32 == 0 && k <= (std::int64_t{1} << 30);
}

bool fp4_mma_grouped_supported(std::int64_t max_m, std::int64_t n, std::int64_t k) noexcept {
  return fp4_mma_supported(max_m, n, k) && max_m <= kFp4MmaLaunchM;
}

namespace {

/// The most splits whose partials (written and read: 8 bytes per output per split) stay within
/// half the weights' bytes (0.5625 per value): 0.5 x 0.5625 x k / (8 m), at least 1.
std::int64_t partials_traffic_cap(std::int64_t m, std::int64_t k) {
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(0.5 * 0.5625 * static_cast<double>(k) / (8.0 * static_cast<double>(m))));
}

/// RACKSIM_FP4_MMA_SPLITS=balance's most splits for a default plan `p` of <= 2 tiles: the
/// default's own, or more up to twice it where the partials' traffic cap, the spans and splits of
/// kFp4MmaBalanceMinSpans spans allow.
std::int64_t balance_max_splits(const Fp4MmaPlan& p, std::int64_t traffic_cap) {
  return std::max(p.splits, std::min({p.spans, traffic_cap, 2 * p.splits, (p.spans + kFp4MmaBalanceMinSpans - 1) / kFp4MmaBalanceMinSpans}));
}

}  // namespace

Fp4MmaPlan fp4_mma_plan(std::int64_t m, std::int64_t n, std::int64_t k, int sms, int resident_per_sm) {
  if (!fp4_mma_supported(m, n, k) || sms < 1 || resident_per_sm < 0 || resident_per_sm > 8)
    throw InputError(fmt::format("fp4_mma_plan: needs 1 <= m <= {}, n >= 1, k a positive multiple of 32, sms >= 1 and 0 <= resident_per_sm "
                                 "<= 8 (got m={} n={} k={} sms={} resident_per_sm={})",
                                 kFp4MmaMaxM, m, n, k, sms, resident_per_sm));
  if (m > kFp4MmaLaunchM) {
    // Launches of 64 rows, the last of the rest; one after another, so one workspace serves all.
    Fp4MmaPlan p = fp4_mma_plan(kFp4MmaLaunchM, n, k, sms, resident_per_sm);
    const std::int64_t rest = m - (m - 1) / kFp4MmaLaunchM * kFp4MmaLaunchM;
    p.passes = static_cast<int>((m + kFp4MmaLaunchM - 1) / kFp4MmaLaunchM);
    p.workspace_bytes = std::max(p.workspace_bytes, fp4_mma_plan(rest, n, k, sms, resident_per_sm).workspace_bytes);
    return p;
  }
  if (m > kFp4MmaPassM) {
    // One pass of 8 tiles with half the 32-row pass's splits; the workspace also fits two passes
    // of <= 32 rows (RACKSIM_FP4_MMA_TILES=4, exec/cuda/fp4_gemm_mma.cu).
    const Fp4MmaPlan first = fp4_mma_plan(kFp4MmaPassM, n, k, sms, resident_per_sm);
    Fp4MmaPlan p = first;
    p.passes = 1;
    p.n_tiles = 8;
    const std::int64_t want = std::max<std::int64_t>(1, first.splits / 2);
    p.spans_per_split = (p.spans + want - 1) / want;
    p.splits = (p.spans + p.spans_per_split - 1) / p.spans_per_split;
    p.workspace_bytes = std::max({p.splits > 1 ? p.splits * m * n * 4 : 0, first.workspace_bytes,
                                  fp4_mma_plan(m - kFp4MmaPassM, n, k, sms, resident_per_sm).workspace_bytes});
    return p;
  }
  Fp4MmaPlan p;
  p.passes = 1;
  const std::int64_t tiles = (m + 7) / 8;
  p.n_tiles = tiles <= 1 ? 1 : tiles <= 2 ? 2 : 4;
  p.row_blocks = (n + kFp4MmaRowsPerCta - 1) / kFp4MmaRowsPerCta;
  p.spans = (k + kFp4MmaSpan - 1) / kFp4MmaSpan;
  const std::int64_t want = resident_per_sm > 0 ? std::max<std::int64_t>(1, resident_per_sm * static_cast<std::int64_t>(sms) / p.row_blocks)
                                                : (8 * static_cast<std::int64_t>(sms) + p.row_blocks - 1) / p.row_blocks;
  // Partials: splits x m x n x 8 bytes <= 0.5 x n x k x 0.5625 bytes.
  const std::int64_t traffic_cap = partials_traffic_cap(m, k);
  const std::int64_t splits = std::clamp<std::int64_t>(want, 1, std::min(p.spans, traffic_cap));
  p.spans_per_split = (p.spans + splits - 1) / splits;
  p.splits = (p.spans + p.spans_per_split - 1) / p.spans_per_split;  // no empty split
  p.workspace_bytes = p.splits > 1 ? p.splits * m * n * 4 : 0;
  if (resident_per_sm == 0 && p.n_tiles <= 2) {
    // The default's workspace also holds RACKSIM_FP4_MMA_SPLITS=balance's partials, at any occupancy.
    const std::int64_t most = balance_max_splits(p, traffic_cap);
    if (most > 1) p.workspace_bytes = std::max(p.workspace_bytes, most * m * n * 4);
  }
  return p;
}

Fp4MmaPlan fp4_mma_plan_balanced(std::int64_t m, std::int64_t n, std::int64_t k, int sms, int resident_per_sm) {
  if (resident_per_sm < 1 || resident_per_sm > 8)
    throw InputError(fmt::format("fp4_mma_plan_balanced: resident_per_sm = {} (the kernel's CTAs per SM, 1..8)", resident_per_sm));
  Fp4MmaPlan p = fp4_mma_plan(m, n, k, sms);  // InputError as fp4_mma_plan; the workspace covers the rule
  if (p.n_tiles > 2) return p;
  const std::int64_t most = balance_max_splits(p, partials_traffic_cap(m, k)), slots = static_cast<std::int64_t>(resident_per_sm) * sms;
  // The split auto would launch (fp4_mma_launch_plan): the whole wave's where it splits K, else the default's.
  const Fp4MmaPlan wave = fp4_mma_plan(m, n, k, sms, resident_per_sm);
  const std::int64_t auto_splits = wave.splits >= 2 ? wave.splits : p.splits;
  // Every split count the no-empty rule gives (ceil(spans / q) for q spans per split) up to most,
  // and each one's modelled time: waves x the longest CTA's spans.
  struct Option {
    std::int64_t splits, per_split, time;
  };
  std::vector<Option> options;
  for (std::int64_t q = p.spans; q >= 1; --q) {
    const std::int64_t splits = (p.spans + q - 1) / q;
    if (splits > most) break;
    if (!options.empty() && options.back().splits == splits) continue;
    const std::int64_t per_split = (p.spans + splits - 1) / splits, ctas = p.row_blocks * splits;
    options.push_back({splits, per_split, (ctas + slots - 1) / slots * per_split});
  }
  std::int64_t best = options.front().time;
  for (const Option& o : options) best = std::min(best, o.time);
  // Within kFp4MmaBalanceSlack of the best: auto's split if it is there, else the count nearest
  // the default's (the model is coarse; fewer splits on a tie).
  const Option* pick = nullptr;
  for (const Option& o : options) {
    if (static_cast<double>(o.time) > static_cast<double>(best) * (1.0 + kFp4MmaBalanceSlack)) continue;
    if (o.splits == auto_splits) {
      pick = &o;
      break;
    }
    if (!pick || std::llabs(o.splits - p.splits) < std::llabs(pick->splits - p.splits)) pick = &o;
  }
  p.splits = pick->splits;
  p.spans_per_split = pick->per_split;
  return p;
}

Fp4MmaLaunch fp4_mma_launch_plan(std::int64_t m, std::int64_t n, std::int64_t k, int sms, const Fp4MmaKnobs& knobs,
                                 const std::function<int(int, int)>& resident) {
  if (m > kFp4MmaLaunchM)
    throw InputError(fmt::format("fp4_mma_launch_plan: one launch takes at most {} rows (got {}); larger M runs as launches of {}", kFp4MmaLaunchM,
                                 m, kFp4MmaLaunchM));
  Fp4MmaLaunch l;
  l.plan = fp4_mma_plan(m, n, k, sms);
  const int tiles = l.plan.n_tiles;
  // 4 and 8 tiles: two spans ahead only when asked (never under wgmma, whose 4- and 8-tile kernels
  // have no depth 2), one otherwise.
  const int deep_wide = knobs.depth == 2 && !knobs.wgmma ? 2 : 1;
  l.ctas = knobs.ring || knobs.x_split || (knobs.wgmma && tiles >= 2) ? 0 : knobs.ctas;  // the register-staged kernel's cap
  if (tiles == 8) {
    l.two_passes = !knobs.eight_tiles;
    if (!l.two_passes) l.depth = deep_wide;
    l.serial = !l.two_passes && knobs.serial && l.plan.splits > 1;  // two passes: each pass's own launch plan says
    return l;
  }
  if (tiles == 4) l.depth = deep_wide;
  if (tiles <= 2) l.depth = knobs.ring ? 1 : knobs.depth == 0 ? (tiles == 2 ? 2 : 1) : knobs.depth;
  l.ring = knobs.ring && tiles <= 2;
  const bool wave = knobs.splits == Fp4MmaKnobs::Splits::wave;
  if (knobs.splits == Fp4MmaKnobs::Splits::balance && tiles <= 2) {
    l.plan = fp4_mma_plan_balanced(m, n, k, sms, resident(tiles, l.depth));
  } else if (wave || (knobs.splits == Fp4MmaKnobs::Splits::automatic && tiles <= 2)) {
    // Never more splits than the default (fp4_mma_plan), so the default's workspace fits.
    const Fp4MmaPlan w = fp4_mma_plan(m, n, k, sms, resident(tiles, l.depth));
    if (wave || w.splits >= 2) {
      l.plan = w;
      l.wave = true;
    }
  }
  l.x_split = knobs.x_split && tiles == 1 && l.depth == 1 &&
              fp4_mma_x_split_bytes(m, l.plan.spans_per_split) <= fp4_mma_x_split_max_bytes(l.ring);
  l.serial = knobs.serial && l.plan.splits > 1;
  return l;
}

Fp4MmaKnobs fp4_mma_knobs_from_env() {
  return fp4_mma_knobs(std::getenv("RACKSIM_FP4_MMA_SPLITS"), std::getenv("RACKSIM_FP4_MMA_TILES"), std::getenv("RACKSIM_FP4_MMA_DEPTH"),
                       std::getenv("RACKSIM_FP4_MMA_MMA"), std::getenv("RACKSIM_FP4_MMA_PIPE"), std::getenv("RACKSIM_FP4_MMA_X"),
                       std::getenv("RACKSIM_FP4_MMA_REDUCE"), std::getenv("RACKSIM_FP4_MMA_CTAS"));
}

bool fp4_mma_tune_knob(const char* value) { return env_choice("RACKSIM_FP4_MMA_TUNE", value, {"off", "on"}).value_or(0) == 1; }

namespace {

// The classes' rows (fp4_mma_tune_class): M = 1; one tile split at the x split's reach (2..4, 5..8);
// two, four and eight tiles (M > 64 as launches of 64).
constexpr std::int64_t kTuneLo[kFp4MmaTuneClasses] = {1, 2, 5, 9, 17, 33};
constexpr std::int64_t kTuneHi[kFp4MmaTuneClasses] = {1, 4, 8, 16, kFp4MmaPassM, kFp4MmaMaxM};

}  // namespace

int fp4_mma_tune_class(std::int64_t m) {
  if (m < 1 || m > kFp4MmaMaxM) throw InputError(fmt::format("fp4_mma_tune_class: m = {} is not 1..{}", m, kFp4MmaMaxM));
  int c = 0;
  while (m > kTuneHi[c]) ++c;
  return c;
}

std::pair<std::int64_t, std::int64_t> fp4_mma_tune_class_rows(int c) {
  if (c < 0 || c >= kFp4MmaTuneClasses) throw InputError(fmt::format("fp4_mma_tune_class_rows: class {} is not 0..{}", c, kFp4MmaTuneClasses - 1));
  return {kTuneLo[c], kTuneHi[c]};
}

std::int64_t fp4_mma_tune_rows(int c, std::int64_t max_rows) {
  const auto [lo, hi] = fp4_mma_tune_class_rows(c);
  return max_rows < lo ? 0 : std::min({hi, kFp4MmaLaunchM, max_rows});
}

std::string fp4_mma_tune_classes_words() {
  std::string out;
  for (int c = 0; c < kFp4MmaTuneClasses; ++c) {
    const auto [lo, hi] = fp4_mma_tune_class_rows(c);
    out += fmt::format("{}{}", c == 0 ? "" : ", ", lo == hi ? fmt::format("{}", lo) : fmt::format("{}-{}", lo, hi));
  }
  return out;
}

namespace {

bool same_knobs(const Fp4MmaKnobs& a, const Fp4MmaKnobs& b) {
  return a.splits == b.splits && a.eight_tiles == b.eight_tiles && a.depth == b.depth && a.wgmma == b.wgmma && a.ring == b.ring &&
         a.x_split == b.x_split && a.serial == b.serial && a.ctas == b.ctas;
}

bool same_plan(const Fp4MmaPlan& a, const Fp4MmaPlan& b) {
  return a.passes == b.passes && a.n_tiles == b.n_tiles && a.row_blocks == b.row_blocks && a.spans == b.spans && a.splits == b.splits &&
         a.spans_per_split == b.spans_per_split;
}

}  // namespace

std::vector<Fp4MmaKnobs> fp4_mma_tune_candidates(const Fp4MmaKnobs& base, std::int64_t m, bool wgmma_ok) {
  const int c = fp4_mma_tune_class(m);
  std::vector<Fp4MmaKnobs> out{base};
  auto add = [&](Fp4MmaKnobs k) {
    if (k.ring) {  // fp4_mma_knobs' rules: the ring replaces the register prefetch and is not wgmma
      k.depth = 0;
      k.wgmma = false;
    }
    if (k.ring || k.wgmma || k.x_split) k.ctas = 0;  // the cap pads the register-staged mma.sync kernel only
    if (k.wgmma && !wgmma_ok) return;
    for (const Fp4MmaKnobs& o : out)
      if (same_knobs(o, k)) return;
    out.push_back(k);
  };
  auto with = [&](auto change) {
    Fp4MmaKnobs k = base;
    change(k);
    add(k);
  };
  using Splits = Fp4MmaKnobs::Splits;
  if (c <= 2) {  // one tile
    with([](Fp4MmaKnobs& k) { k.ring = false; });
    with([](Fp4MmaKnobs& k) { k.ring = false, k.depth = 2; });
    with([](Fp4MmaKnobs& k) { k.ring = true; });
    with([](Fp4MmaKnobs& k) { k.x_split = true, k.depth = k.depth == 2 ? 0 : k.depth; });  // x split runs at depth 1
    with([](Fp4MmaKnobs& k) { k.ring = true, k.x_split = true; });
    with([](Fp4MmaKnobs& k) { k.splits = Splits::fill8; });
    with([](Fp4MmaKnobs& k) { k.splits = Splits::wave; });
    with([](Fp4MmaKnobs& k) { k.splits = Splits::balance; });
  } else if (c == 3) {  // two tiles
    with([](Fp4MmaKnobs& k) { k.ring = false, k.depth = 1; });
    with([](Fp4MmaKnobs& k) { k.ring = false, k.depth = 2; });
    with([](Fp4MmaKnobs& k) { k.ring = true; });
    with([](Fp4MmaKnobs& k) { k.ring = false, k.wgmma = true; });
    with([](Fp4MmaKnobs& k) { k.splits = Splits::fill8; });
    with([](Fp4MmaKnobs& k) { k.splits = Splits::balance; });
  } else {  // four or eight tiles
    if (c == 5) with([](Fp4MmaKnobs& k) { k.eight_tiles = !k.eight_tiles; });
    with([](Fp4MmaKnobs& k) { k.ring = false, k.wgmma = false, k.depth = 2; });
    with([](Fp4MmaKnobs& k) { k.ring = false, k.wgmma = true, k.depth = k.depth == 2 ? 0 : k.depth; });
    // The whole-wave split applies to launches of 4 tiles or fewer (fp4_mma_launch_plan): at 8
    // tiles only with the two passes of <= 32 rows.
    with([c](Fp4MmaKnobs& k) { k.splits = Splits::wave, k.eight_tiles = k.eight_tiles && c != 5; });
  }
  with([](Fp4MmaKnobs& k) { k.serial = !k.serial; });
  return out;
}

bool fp4_mma_same_launch(const Fp4MmaKnobs& a, const Fp4MmaKnobs& b, std::int64_t m, std::int64_t n, std::int64_t k, int sms,
                         const std::function<int(int, int)>& resident_a, const std::function<int(int, int)>& resident_b) {
  // Every launch row count m runs as: 64 and the rest above 64 rows, else m.
  std::vector<std::int64_t> rows{std::min(m, kFp4MmaLaunchM)};
  if (m > kFp4MmaLaunchM) rows.push_back(m - (m - 1) / kFp4MmaLaunchM * kFp4MmaLaunchM);
  for (const std::int64_t r : rows) {
    const Fp4MmaLaunch la = fp4_mma_launch_plan(r, n, k, sms, a, resident_a);
    const Fp4MmaLaunch lb = fp4_mma_launch_plan(r, n, k, sms, b, resident_b);
    if (la.two_passes != lb.two_passes || la.depth != lb.depth || la.ring != lb.ring || la.x_split != lb.x_split || la.serial != lb.serial ||
        la.ctas != lb.ctas || !same_plan(la.plan, lb.plan))
      return false;
    if (la.two_passes) {  // passes of <= 32 rows under each knob set
      if (!fp4_mma_same_launch(a, b, kFp4MmaPassM, n, k, sms, resident_a, resident_b)) return false;
      if (r > kFp4MmaPassM && !fp4_mma_same_launch(a, b, r - kFp4MmaPassM, n, k, sms, resident_a, resident_b)) return false;
      continue;
    }
    if (r > 8 && a.wgmma != b.wgmma) return false;  // M <= 8 always runs mma.sync
  }
  return true;
}

std::size_t fp4_mma_tune_pick(const std::vector<double>& medians, double margin, double floor_s) {
  if (medians.empty()) throw InputError("fp4_mma_tune_pick: no medians");
  for (std::size_t i = 0; i < medians.size(); ++i)
    if (!std::isfinite(medians[i]) || medians[i] <= 0)
      throw InputError(fmt::format("fp4_mma_tune_pick: median {} is {} (must be finite and > 0)", i, medians[i]));
  std::size_t best = 0;
  for (std::size_t i = 1; i < medians.size(); ++i)
    if (medians[i] < medians[best]) best = i;
  return medians[0] - medians[best] > std::max(margin * medians[0], floor_s) ? best : 0;
}

std::string fp4_mma_knobs_words(const Fp4MmaKnobs& k) {
  std::string out;
  auto word = [&](std::string_view name, std::string_view value) { out += fmt::format("{}{}={}", out.empty() ? "" : " ", name, value); };
  using Splits = Fp4MmaKnobs::Splits;
  if (k.splits != Splits::automatic)
    word("RACKSIM_FP4_MMA_SPLITS", k.splits == Splits::fill8 ? "fill8" : k.splits == Splits::wave ? "wave" : "balance");
  if (!k.eight_tiles) word("RACKSIM_FP4_MMA_TILES", "4");
  if (k.depth != 0) word("RACKSIM_FP4_MMA_DEPTH", k.depth == 1 ? "1" : "2");
  if (k.wgmma) word("RACKSIM_FP4_MMA_MMA", "wgmma");
  if (k.ring) word("RACKSIM_FP4_MMA_PIPE", "cpasync");
  if (k.x_split) word("RACKSIM_FP4_MMA_X", "split");
  if (k.serial) word("RACKSIM_FP4_MMA_REDUCE", "serial");
  if (k.ctas != 0) word("RACKSIM_FP4_MMA_CTAS", fmt::format("{}", k.ctas));
  return out.empty() ? "default" : out;
}

int fp4_mma_grouped_sms(std::int64_t experts, std::int64_t total_rows, int sms) {
  const std::int64_t slots = moe_active_slots(experts, total_rows);
  return slots < 1 ? sms : static_cast<int>(std::max<std::int64_t>(1, sms / slots));
}

std::int64_t fp4_mma_grouped_workspace_bytes(std::int64_t max_m, std::int64_t total_rows, std::int64_t experts, std::int64_t n, std::int64_t k,
                                             int sms) {
  const Fp4MmaPlan p = fp4_mma_plan(max_m, n, k, fp4_mma_grouped_sms(experts, total_rows, sms));
  return p.splits > 1 ? p.splits * total_rows * n * 4 : 0;
}

std::int64_t fp4_mma_workspace_bound(std::int64_t n, std::int64_t k, std::int64_t max_rows, int sms) {
  std::int64_t most = 0;
  for (std::int64_t m = 1; m <= std::min(max_rows, kFp4MmaMaxM); ++m)
    if (fp4_mma_supported(m, n, k)) most = std::max(most, fp4_mma_plan(m, n, k, sms).workspace_bytes);
  return most;
}

}  // namespace racksim::exec
