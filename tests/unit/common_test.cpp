// common/: number formats, units, strict YAML, atomic output, registry.

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "racksim/common/dtype.hpp"
#include "racksim/common/error.hpp"
#include "racksim/common/output.hpp"
#include "racksim/common/percentile.hpp"
#include "racksim/common/registry.hpp"
#include "racksim/common/units.hpp"
#include "racksim/common/yaml_reader.hpp"
#include "test_support.hpp"

using namespace racksim;

TEST_CASE("block-scaled formats cost their scales", "[common][dtype]") {
  // executor.md: NVFP4 = 16 E2M1 values (8 bytes) + one UE4M3 scale = 9 bytes per 16 = 4.5 bits;
  // MXFP4 = 32 values (16 bytes) + one UE8M0 scale = 17 bytes per 32 = 4.25 bits.
  CHECK(storage_bytes(DType::nvfp4, 16) == 9.0);
  CHECK(storage_bytes(DType::mxfp4, 32) == 17.0);
  CHECK(bytes_per_value(DType::nvfp4) == 0.5625);
  CHECK(bytes_per_value(DType::mxfp4) == 0.53125);
  CHECK(bytes_per_value(DType::fp8) == 1.0);
  CHECK(bytes_per_value(DType::bf16) == 2.0);
  CHECK(parse_dtype("nvfp4") == DType::nvfp4);
  CHECK_FALSE(parse_dtype("fp3").has_value());
  // fp8_block (DeepSeek-V3, arXiv 2412.19437, 3.3.2): one FP32 scale per 1 x 128 activation group,
  // 128 + 4 = 132 bytes per 128 values (8.25 bits); one per 128 x 128 weight block, 16,388 bytes
  // per 16,384 values. The other formats' weights cost what their activations do.
  CHECK(storage_bytes(DType::fp8_block, 128) == 132.0);
  CHECK(weight_storage_bytes(DType::fp8_block, 128.0 * 128) == 16388.0);
  CHECK(weight_storage_bytes(DType::nvfp4, 16) == 9.0);
  CHECK(weight_storage_bytes(DType::fp8, 100) == 100.0);
  CHECK(parse_dtype("fp8_block") == DType::fp8_block);
  CHECK(tensor_core_path(DType::fp8_block) == DType::fp8);
  CHECK(element_bits(DType::fp8_block) == 8);
}

TEST_CASE("quantities parse at the edge into SI units", "[common][units]") {
  CHECK(parse_quantity("3.35TB/s", Dimension::bytes_per_s) == Approx(3.35e12));
  CHECK(parse_quantity("400 Gb/s", Dimension::bytes_per_s) == Approx(50e9));  // bits: /8
  CHECK(parse_quantity("80GiB", Dimension::bytes) == 85899345920.0);
  CHECK(parse_quantity("80GB", Dimension::bytes) == 80e9);
  CHECK(parse_quantity("2us", Dimension::seconds) == Approx(2e-6));
  CHECK(parse_quantity("1.4kW", Dimension::watts) == Approx(1400));
  CHECK(parse_quantity("95%", Dimension::fraction) == Approx(0.95));
  CHECK(parse_quantity("12", Dimension::count) == 12);
  CHECK_FALSE(parse_quantity("3.35TB/s", Dimension::bytes).has_value());  // wrong dimension
  CHECK_FALSE(parse_quantity("80", Dimension::bytes).has_value());        // a size needs a unit
  CHECK(parse_quantity("80", Dimension::bytes, "GiB") == 85899345920.0);
  CHECK_FALSE(parse_quantity("fast", Dimension::seconds).has_value());
  // The spec's message reads "needs 128.5 GiB ...; h100-sxm has 80 GiB".
  CHECK(format_gib(137953296384.0) == "128.5 GiB");
  CHECK(format_gib(85899345920.0) == "80 GiB");
  CHECK(format_count(68976648192) == "68,976,648,192");
  CHECK(format_count(-1000) == "-1,000");
}

TEST_CASE("strict YAML names file, key, value and what is allowed", "[common][yaml]") {
  auto src = std::make_shared<YamlSource>();
  src->file = "s.yaml";
  YAML::Node root = YAML::Load("serving: {max_batch_sise: 4, kv_block_tokens: x}\nmode: fast\n");
  YamlMap y = YamlMap::root(root, src);
  YamlMap sv = y.map("serving");
  CHECK(sv.has("max_batch_size") == false);
  CHECK_THROWS_WITH(sv.integer("kv_block_tokens", 1, 10), "s.yaml: serving.kv_block_tokens: 'x' is not an integer");
  CHECK_THROWS_WITH(sv.finish(), "s.yaml: serving.max_batch_sise: unknown key (did you mean 'max_batch_size'?); "
                                 "allowed here: max_batch_size, kv_block_tokens");
  static constexpr std::string_view kModes[] = {"slow", "steady"};
  CHECK_THROWS_WITH(y.choice("mode", kModes), "s.yaml: mode: 'fast' is not one of slow, steady");
  CHECK_THROWS_AS(y.string("missing"), InputError);
  CHECK(edit_distance("kitten", "sitting") == 3);
}

TEST_CASE("set overrides edit the tree and are blamed in messages", "[common][yaml]") {
  YamlSource src;
  src.file = "s.yaml";
  YAML::Node root = YAML::Load("serving: {max_batch_size: 4}\n");
  apply_override(root, "serving.max_batch_size=1024", src);
  apply_override(root, "serving.bogus=1", src);
  auto shared = std::make_shared<YamlSource>(src);
  YamlMap sv = YamlMap::root(root, shared).map("serving");
  CHECK(sv.integer("max_batch_size", 1, 1 << 20) == 1024);
  CHECK_THROWS_WITH(sv.finish(), Catch::StartsWith("--set serving.bogus=1: serving.bogus: unknown key"));
  CHECK_THROWS_AS(apply_override(root, "novalue", src), InputError);
  CHECK_THROWS_AS(apply_override(root, "serving.max_batch_size.x=1", src), InputError);
}

TEST_CASE("output replaces a file whole or leaves it alone", "[common][output]") {
  const std::string path = test::write_temp("out.json", "old");
  write_output(path, "new contents\n");
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text == "new contents\n");
  const std::string bad = (std::filesystem::path(path).parent_path() / "no_such_dir" / "x.json").string();
  CHECK_THROWS_AS(write_output(bad, "x"), InputError);
  CHECK_FALSE(std::filesystem::exists(bad));
  // No temporary files are left beside the target.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path()))
    files += e.path().filename().string().find(".tmp.") != std::string::npos;
  CHECK(files == 0);
}

TEST_CASE("registry lists valid names for an unknown one", "[common][registry]") {
  Registry<int> r("widget");
  r.add("a", "first", 1);
  r.add("b", "second", 2);
  CHECK(r.get("b").factory == 2);
  CHECK_THROWS_WITH(r.get("c"), "unknown widget 'c'; valid: a, b");
}

TEST_CASE("percentiles index the sorted samples as loadgen does", "[common][percentile]") {
  // sorted[floor(n p)], clamped to the last: of 10 samples, p50 is the 6th (index 5), p90 and p99
  // the 10th; of 200, p99 is index 198 (the 199th), p50 index 100; one sample is every percentile.
  CHECK(loadgen_percentile_index(10, 0.50) == 5);
  CHECK(loadgen_percentile_index(10, 0.90) == 9);
  CHECK(loadgen_percentile_index(10, 0.99) == 9);
  CHECK(loadgen_percentile_index(200, 0.99) == 198);
  CHECK(loadgen_percentile_index(200, 0.50) == 100);
  CHECK(loadgen_percentile_index(1, 0.99) == 0);
  CHECK(loadgen_percentile_index(4, 1.0) == 3);
}

TEST_CASE("latency summaries take loadgen's percentiles of unsorted samples", "[common][percentile]") {
  // 1..10 shuffled: mean 5.5; sorted[floor(10 p)]: p50 = 6, p90 = p99 = 10. Floats as the
  // simulator keeps them, doubles as the executor does; none: all zero.
  std::vector<float> f = {7, 2, 10, 4, 1, 9, 3, 6, 8, 5};
  const LoadgenSummary s = loadgen_summary(f);
  CHECK(s.count == 10);
  CHECK(s.mean == Approx(5.5));
  CHECK(s.p50 == 6);
  CHECK(s.p90 == 10);
  CHECK(s.p99 == 10);
  std::vector<double> d = {0.3, 0.1, 0.2};
  const LoadgenSummary t = loadgen_summary(d);
  CHECK(t.p50 == 0.2);  // index floor(1.5) = 1
  CHECK(t.p99 == 0.3);
  std::vector<double> none;
  CHECK(loadgen_summary(none).count == 0);
  CHECK(loadgen_summary(none).p99 == 0);
}
