#include "racksim/calibrate/aic_import.hpp"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "racksim/common/error.hpp"

namespace racksim::calibrate {
namespace {

// aic_kernels/README.md: snapshot of ai-dynamo/aiconfigurator at this commit and date.
constexpr const char* kAicCommit = "095f58a51c4ca8e61b66ec108d86f223f8d559ce";
constexpr const char* kAicDate = "2026-08-21";

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> out;
  std::string cell;
  std::istringstream ss(line);
  while (std::getline(ss, cell, ',')) {
    if (!cell.empty() && cell.back() == '\r') cell.pop_back();
    out.push_back(cell);
  }
  return out;
}

struct Csv {
  std::string path;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  [[nodiscard]] std::size_t column(const std::string& name) const {
    auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end()) throw InputError(fmt::format("{}: no column '{}' in the header", path, name));
    return static_cast<std::size_t>(it - header.begin());
  }
};

Csv read_csv(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{}: cannot read", path));
  Csv c{path, {}, {}};
  std::string line;
  if (!std::getline(in, line)) throw InputError(fmt::format("{}: empty file", path));
  c.header = split(line);
  std::size_t no = 1;
  while (std::getline(in, line)) {
    ++no;
    if (line.empty()) continue;
    auto cells = split(line);
    if (cells.size() != c.header.size())
      throw InputError(fmt::format("{}:{}: {} cells, header has {}", path, no, cells.size(), c.header.size()));
    c.rows.push_back(std::move(cells));
  }
  return c;
}

double to_number(const Csv& c, std::size_t row, std::size_t col) {
  const std::string& s = c.rows[row][col];
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size())
    throw InputError(fmt::format("{}:{}: {}: '{}' is not a number", c.path, row + 2, c.header[col], s));
  return v;
}

/// One measurement file per system and kernel source: a file's run says which software measured
/// all its records (fp8_block is DeepGEMM's on Blackwell, torch_flow's elsewhere).
MeasurementFile& file_for(ImportResult& r, const Csv& c, const std::string& system, const std::string& device, const std::string& software) {
  for (auto& f : r.files)
    if (f.run.system == system && f.run.software == software) return f;
  const std::string gpu = aic_system_gpu(system);
  if (gpu.empty())
    throw InputError(fmt::format("{}: system: '{}' is not one of h100_sxm, h200_sxm, b200_sxm, b300_sxm, gb200, gb300", c.path, system));
  MeasurementFile f;
  f.path = c.path;
  f.run.device = device;
  f.run.gpu = gpu;
  f.run.system = system;
  f.run.date = kAicDate;
  f.run.commit = std::string("ai-dynamo/aiconfigurator@") + kAicCommit;
  f.run.source = c.path;
  f.run.software = software;
  r.files.push_back(std::move(f));
  return r.files.back();
}

}  // namespace

std::string aic_system_gpu(const std::string& system) {
  static const std::pair<const char*, const char*> kMap[] = {{"h100_sxm", "h100-sxm"}, {"h200_sxm", "h200-sxm"}, {"b200_sxm", "b200"},
                                                             {"b300_sxm", "b300"},     {"gb200", "gb200"},       {"gb300", "gb300"}};
  for (const auto& [a, g] : kMap)
    if (system == a) return g;
  return "";
}

ImportResult import_aic_gemm_csv(const std::string& path) {
  const Csv c = read_csv(path);
  const std::size_t sys = c.column("system"), dev = c.column("device"), dt = c.column("gemm_dtype"), ks = c.column("kernel_source"),
                    cm = c.column("m"), cn = c.column("n"), ck = c.column("k"), lat = c.column("latency_ms");
  ImportResult r;
  for (std::size_t i = 0; i < c.rows.size(); ++i) {
    const auto& row = c.rows[i];
    ++r.rows;
    std::string dtype;
    if (row[dt] == "bfloat16") dtype = "bf16";
    else if (row[dt] == "fp8") dtype = "fp8";
    else if (row[dt] == "nvfp4") dtype = "nvfp4";
    // Block-scaled FP8 (1 x 128 activation groups, 128 x 128 weight blocks): its own format, its
    // own kernels; the measured call includes the activation's 1 x 128 quantize.
    else if (row[dt] == "fp8_block") dtype = "fp8_block";
    else
      throw InputError(fmt::format("{}:{}: gemm_dtype: '{}' is not one of bfloat16, fp8, fp8_block, nvfp4", path, i + 2, row[dt]));
    MeasurementFile& f = file_for(r, c, row[sys], row[dev], "TensorRT-LLM 1.3.0rc20 GEMM (aiconfigurator gemm_perf, kernel_source " + row[ks] + ")");
    MeasurementRecord rec;
    rec.op.kind = "gemm";
    rec.op.m = static_cast<std::int64_t>(to_number(c, i, cm));
    rec.op.n = static_cast<std::int64_t>(to_number(c, i, cn));
    rec.op.k = static_cast<std::int64_t>(to_number(c, i, ck));
    rec.op.a_dtype = rec.op.w_dtype = dtype;
    rec.op.c_dtype = "bf16";  // TRT-LLM's GEMMs write BF16 here
    rec.time_median_s = to_number(c, i, lat) * 1e-3;
    rec.flops = 2.0 * static_cast<double>(rec.op.m) * static_cast<double>(rec.op.n) * static_cast<double>(rec.op.k);
    f.records.push_back(std::move(rec));
    ++r.records;
  }
  return r;
}

ImportResult import_aic_nccl_csv(const std::string& path) {
  const Csv c = read_csv(path);
  const std::size_t sys = c.column("system"), dev = c.column("device"), ver = c.column("nccl_version"), op = c.column("op_name"),
                    dt = c.column("nccl_dtype"), ng = c.column("num_gpus"), el = c.column("message_size_elems"),
                    lat = c.column("latency_ms");
  ImportResult r;
  for (std::size_t i = 0; i < c.rows.size(); ++i) {
    const auto& row = c.rows[i];
    ++r.rows;
    std::string kind = row[op] == "alltoall" ? "all_to_all" : row[op];
    if (!is_collective_kind(kind))
      throw InputError(fmt::format("{}:{}: op_name: '{}' is not one of all_reduce, all_gather, reduce_scatter, alltoall", path, i + 2, row[op]));
    // aic_kernels/README.md: message_size_elems = bytes / bytes_per_elem (half = 2, int8 = 1).
    double elem_bytes = 0;
    std::string dtype;
    if (row[dt] == "half") dtype = "fp16", elem_bytes = 2;
    else if (row[dt] == "int8") dtype = "int8", elem_bytes = 1;
    else throw InputError(fmt::format("{}:{}: nccl_dtype: '{}' is not one of half, int8", path, i + 2, row[dt]));
    MeasurementFile& f = file_for(r, c, row[sys], row[dev], "NCCL " + row[ver] + " (nccl-tests, out-of-place; aiconfigurator nccl_perf)");
    f.run.nccl = row[ver];
    MeasurementRecord rec;
    rec.op.kind = kind;
    rec.op.ranks = static_cast<int>(to_number(c, i, ng));
    rec.op.bytes = to_number(c, i, el) * elem_bytes;
    rec.op.dtype = dtype;
    rec.time_median_s = to_number(c, i, lat) * 1e-3;
    f.records.push_back(std::move(rec));
    ++r.records;
  }
  return r;
}

std::vector<MeasurementFile> load_measurement_inputs(const std::vector<std::string>& paths, std::map<std::string, std::size_t>* skipped) {
  std::vector<MeasurementFile> out;
  for (const auto& p : paths) {
    std::ifstream in(p);
    if (!in) throw InputError(fmt::format("--measurements: {}: cannot read", p));
    std::string first;
    std::getline(in, first);
    ImportResult r;
    if (first.starts_with("system,device,gemm_dtype")) r = import_aic_gemm_csv(p);
    else if (first.starts_with("system,device,nccl_version")) r = import_aic_nccl_csv(p);
    else {
      out.push_back(read_measurements(p));
      continue;
    }
    if (skipped)
      for (const auto& [why, n] : r.skipped) (*skipped)[fmt::format("{}: {}", p, why)] += n;
    for (auto& f : r.files) out.push_back(std::move(f));
  }
  return out;
}

std::vector<MeasurementFile> load_step_inputs(const std::vector<std::string>& paths, std::map<std::string, std::size_t>* skipped) {
  std::vector<MeasurementFile> out;
  for (const auto& p : paths) {
    MeasurementFile f = read_measurements(p);
    const auto not_step = [](const MeasurementRecord& r) { return r.op.kind != "step"; };
    const auto others = static_cast<std::size_t>(std::count_if(f.records.begin(), f.records.end(), not_step));
    if (others == f.records.size())
      throw InputError(fmt::format("--steps: {}: holds no step record (racksim exec --out writes one per timed shape since 2026-12-02)", p));
    std::erase_if(f.records, not_step);
    if (skipped && others > 0) (*skipped)[fmt::format("{}: given with --steps (its op records are not fitted; only its steps are checked)", p)] += others;
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace racksim::calibrate
