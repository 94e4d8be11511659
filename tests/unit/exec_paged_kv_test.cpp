// exec/: the paged KV cache the CUDA attention reads (paged_kv.hpp): its index arithmetic, cache
// slots, the host copy's BF16 / FP8 stores, the split-K plan of decode attention; and the
// argument checks of cuda_ops.hpp, which run in every build before anything touches a device.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "racksim/common/error.hpp"
#include "racksim/exec/backend.hpp"
#include "racksim/exec/cuda_ops.hpp"
#include "racksim/exec/fp4_matrix.hpp"
#include "racksim/exec/paged_kv.hpp"

using namespace racksim;
using namespace racksim::exec;

TEST_CASE("paged KV layout: [block][kv head][row][dim] indices and cache slots", "[exec][paged_kv]") {
  // 4 blocks of 32 tokens, 2 KV heads of 16: element (block 1, head 1, row 3, dim 5) is at
  // ((1 x 2 + 1) x 32 + 3) x 16 + 5 = 99 x 16 + 5 = 1589; K holds 4 x 2 x 32 x 16 = 4096.
  const PagedKvLayout l{4, 32, 2, 16, DType::bf16};
  CHECK(l.index(1, 1, 3, 5) == 1589);
  CHECK(l.elements() == 4096);
  CHECK(l.bytes() == 8192);
  CHECK(PagedKvLayout{4, 32, 2, 16, DType::fp8}.bytes() == 4096);
  CHECK_THROWS_AS((PagedKvLayout{4, 32, 2, 12, DType::bf16}.check()), InputError);  // head_dim not a multiple of 8
  CHECK_THROWS_AS((PagedKvLayout{4, 32, 2, 16, DType::nvfp4}.check()), InputError);
  // Table [7, 2]: positions 0..31 in block 7 (slots 224..255), 32..63 in block 2 (64..95).
  const std::vector<std::int32_t> table = {7, 2};
  CHECK(kv_slot(table, 32, 0) == 224);
  CHECK(kv_slot(table, 32, 31) == 255);
  CHECK(kv_slot(table, 32, 32) == 64);
  CHECK(kv_slot(table, 32, 63) == 95);
  CHECK_THROWS_AS(kv_slot(table, 32, 64), InputError);  // past the table
}

TEST_CASE("host paged KV: BF16 stores round to nearest even, FP8 stores e4m3(x / scale)", "[exec][paged_kv]") {
  // One block of 2 tokens, 1 KV head of 8. BF16: 1 + 3 x 2^-8 is a tie -> 1 + 2^-6 (even).
  HostPagedKv bf({1, 2, 1, 8, DType::bf16});
  std::vector<float> k(8, 0.0f), v(8, 0.0f);
  k[0] = 1.0f + 3 * std::ldexp(1.0f, -8);
  v[7] = -2.5f;
  bf.store(1, k, v);
  CHECK(bf.k_value(0, 0, 1, 0) == 1.0f + std::ldexp(1.0f, -6));
  CHECK(bf.v_value(0, 0, 1, 7) == -2.5f);
  CHECK(bf.k_value(0, 0, 0, 0) == 0.0f);  // row 0 untouched
  // FP8 with scale 0.5: 3 -> 6 (exact) -> 3; 1000 -> 2000 saturates at 448 -> 224;
  // -0.3 -> -0.6 -> -0.625 (E4M3 steps of 2^-4 in [0.5, 1)) -> -0.3125.
  HostPagedKv f8({1, 2, 1, 8, DType::fp8}, 0.5f, 0.5f);
  k = {3, 1000, -0.3f, 0, 0, 0, 0, 0};
  f8.store(0, k, k);
  CHECK(f8.k_value(0, 0, 0, 0) == 3.0f);
  CHECK(f8.k_value(0, 0, 0, 1) == 224.0f);
  CHECK(f8.v_value(0, 0, 0, 2) == -0.3125f);
  // gather: a sequence on block table [0] reads its 2 tokens back densely, scales applied.
  std::vector<float> kd, vd;
  f8.gather(std::vector<std::int32_t>{0}, 2, kd, vd);
  REQUIRE(kd.size() == 16);
  CHECK(kd[1] == 224.0f);
  CHECK(vd[2] == -0.3125f);
  CHECK_THROWS_AS(f8.store(2, k, k), InputError);  // slot 2 of a 2-slot cache
}

TEST_CASE("decode split-K plan: >= ~4 CTAs per SM, partitions of whole 64-key tiles, >= 128 keys", "[exec][paged_kv]") {
  // 132 SMs (H100 / H200 SXM): 4 x 132 = 528 CTAs wanted (kDecodeCtasPerSm). Batch 1 x 8 KV heads
  // = 8 CTAs -> 66 partitions of ceil(4096 / 66) = 63 keys, one tile of 64, raised to the 128-key
  // minimum: 32 partitions, 256 CTAs.
  CHECK(kDecodeCtasPerSm == 4);
  CHECK(kDecodeMinPartition == 128);
  CHECK(decode_partition_tokens(1, 8, 4096, 132) == 128);
  CHECK(decode_partitions(4096, 128) == 32);
  // Batch 64 x 8 = 512 CTAs -> ceil(528 / 512) = 2 partitions of 2,048 keys; 4,000 keys: 2,000 ->
  // 2,048 (32 tiles).
  CHECK(decode_partition_tokens(64, 8, 4096, 132) == 2048);
  CHECK(decode_partition_tokens(64, 8, 4000, 132) == 2048);
  CHECK(decode_partitions(4000, 2048) == 2);
  // Batch 66 x 8 = 528 CTAs reach it: one partition of the whole context (whole tiles).
  CHECK(decode_partition_tokens(66, 8, 4096, 132) == 4096);
  CHECK(decode_partition_tokens(66, 8, 4000, 132) == 4032);
  // A short context is never split below one tile, nor a partition made longer than the context.
  CHECK(decode_partition_tokens(1, 8, 10, 132) == 64);
  CHECK(decode_partition_tokens(1, 8, 100, 132) == 128);
  // Workspace: batch 2 x 8 heads x 5 partitions (300 keys / 64) x (16 + 2) floats = 5,760
  // bytes; none for one partition.
  CHECK(decode_workspace_bytes(2, 8, 16, 300, 64) == 5760);
  CHECK(decode_workspace_bytes(2, 8, 16, 64, 64) == 0);
  CHECK_THROWS_AS(decode_partition_tokens(0, 8, 10, 132), InputError);
}

TEST_CASE("cuda_ops: launch arguments are checked in every build, before any device work", "[exec][paged_kv]") {
  // Wrong shapes are InputError (exit 2) with or without CUDA; right shapes reach the device
  // and fail there (no device here: an Error, "built without CUDA" or a CUDA error) unless a
  // device is present, in which case they run.
  const std::vector<float> x(6, 1.0f), w(3, 1.0f);
  CHECK_THROWS_AS(cuda_rmsnorm(x, 3, w, 1e-5f), InputError);  // 3 rows of 3 need 9 values
  CHECK_THROWS_AS(cuda_swiglu(x, 2, 2), InputError);          // 2 rows x 2 x 2 = 8 values
  CHECK_THROWS_AS(cuda_embedding(x, 3, std::vector<std::int32_t>{2}), InputError);  // id 2 of a 2-row table
  CHECK_THROWS_AS(cuda_rope_rotate_half(x, 1, 6, 1, 3, std::vector<std::int32_t>{0}, 1e4), InputError);  // odd head_dim
  // MoE and QK-norm (2026-12-01): shapes and ranges refused before the device.
  CHECK_THROWS_AS(cuda_moe_topk(std::vector<float>(8, 0.0f), 2, 4, 5), InputError);          // top-5 of 4 experts
  CHECK_THROWS_AS(cuda_moe_permute(std::vector<std::int32_t>{0, 1, 2}, 4, 2), InputError);    // 3 ids: not whole tokens of 2
  CHECK_THROWS_AS(cuda_moe_permute(std::vector<std::int32_t>{0, 9}, 4, 2), InputError);       // id 9 of 4 experts
  CHECK_THROWS_AS(cuda_moe_finalize(x, std::vector<std::int32_t>{0, 5}, std::vector<float>{1, 1}, 1, 2, 3), InputError);  // row 5 of 2
  CHECK_THROWS_AS(cuda_head_rmsnorm(x, 1, 6, 2, 1, w, w, 1e-6f), InputError);                // 3 heads of 3 exceed a row of 6
  {
    const std::vector<Fp4Matrix> two(2, quantize_fp4(DType::nvfp4, std::vector<float>(64 * 96, 0.5f), 64, 96));
    // An expert with 3 rows where the tiles hold 2; offsets not starting at 0; a K the kernel does not take.
    CHECK_THROWS_AS(cuda_fp4_gemm_mma_grouped(std::vector<float>(3 * 96, 1.0f), std::vector<std::int32_t>{0, 3, 3}, 2, two), InputError);
    CHECK_THROWS_AS(cuda_fp4_gemm_mma_grouped(std::vector<float>(3 * 96, 1.0f), std::vector<std::int32_t>{1, 3, 4}, 4, two), InputError);
    const std::vector<Fp4Matrix> odd(1, quantize_fp4(DType::nvfp4, std::vector<float>(64 * 48, 0.5f), 64, 48));
    CHECK_THROWS_AS(cuda_fp4_gemm_mma_grouped(std::vector<float>(48, 1.0f), std::vector<std::int32_t>{0, 1}, 1, odd), InputError);
  }
  // Decode: partition_tokens must be whole 64-key tiles; checked before the pointers are used.
  std::uint16_t dummy[8] = {};
  alignas(16) static std::uint16_t cache[4096];
  DevicePagedKv kv{{4, 32, 2, 16, DType::bf16}, cache, cache, 1.0f, 1.0f};
  AttentionDecodeArgs a;
  a.q = dummy;
  a.q_stride = 64;
  a.batch = 1;
  a.heads = 4;
  a.block_tables = reinterpret_cast<const std::int32_t*>(dummy);
  a.block_table_stride = 4;
  a.context_lens = reinterpret_cast<const std::int32_t*>(dummy);
  a.max_context = 100;
  a.partition_tokens = 100;
  a.out = dummy;
  a.out_stride = 64;
  CHECK_THROWS_AS(cuda_attention_decode_launch(kv, a, nullptr), InputError);
  a.partition_tokens = 64;  // 2 partitions need a workspace of 1 x 4 x 2 x 18 x 4 = 576 bytes
  CHECK_THROWS_AS(cuda_attention_decode_launch(kv, a, nullptr), InputError);
  a.partition_tokens = 128;
  a.heads = 40;  // 20 query heads per KV head: above the decode kernel's 16
  CHECK_THROWS_AS(cuda_attention_decode_launch(kv, a, nullptr), InputError);
  // Valid shapes: the device decides.
  if (cuda_device_count() == 0) {
    CHECK_THROWS_AS(cuda_rmsnorm(x, 2, w, 1e-5f), Error);
    CHECK_THROWS_AS(DeviceMemory(16), Error);
  } else {
    CHECK(cuda_rmsnorm(x, 2, w, 1e-5f).size() == 6);
  }
  CHECK(DeviceMemory(0).get() == nullptr);  // nothing to allocate: no device needed
}
