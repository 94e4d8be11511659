#include "racksim/workloads/lengths.hpp"

#include <charconv>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "racksim/common/error.hpp"
#include "racksim/workloads/embedded_data.hpp"

namespace racksim {

double LengthTable::mean_input() const {
  return std::accumulate(input.begin(), input.end(), 0.0) / static_cast<double>(input.size());
}
double LengthTable::mean_output() const {
  return std::accumulate(output.begin(), output.end(), 0.0) / static_cast<double>(output.size());
}

namespace {

struct Shipped {
  std::string_view name;
  std::string_view file;
  std::uint32_t max_output;  ///< mlperf.md: Llama-2-70B outputs are capped below 1,024 tokens
};
constexpr Shipped kShipped[] = {{"mlperf-llama2-70b", "lengths/mlperf-llama2-70b.csv", 1024}};

LengthTable parse(const Shipped& s, std::string_view text) {
  LengthTable t;
  t.name = std::string(s.name);
  t.max_output = s.max_output;
  std::size_t line_no = 0;
  bool header = true;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (line.empty() || line.front() == '#') continue;
    if (header) {  // input_length,output_length
      header = false;
      continue;
    }
    auto comma = line.find(',');
    std::uint32_t in = 0, out = 0;
    auto r1 = std::from_chars(line.data(), line.data() + comma, in);
    auto r2 = std::from_chars(line.data() + comma + 1, line.data() + line.size(), out);
    RACKSIM_ASSERT(comma != std::string_view::npos && r1.ec == std::errc{} && r2.ec == std::errc{} && in > 0,
                   fmt::format("{}:{}: malformed length row", s.file, line_no));
    t.input.push_back(in);
    t.output.push_back(out);
  }
  return t;
}

}  // namespace

std::vector<std::string> dataset_names() {
  std::vector<std::string> out;
  for (const auto& s : kShipped) out.emplace_back(s.name);
  return out;
}

const LengthTable& dataset_lengths(std::string_view name) {
  static const std::map<std::string, LengthTable, std::less<>> tables = [] {
    std::map<std::string, LengthTable, std::less<>> m;
    for (const auto& s : kShipped)
      for (const auto& f : embedded::workloads_data())
        if (f.path == s.file) m.emplace(std::string(s.name), parse(s, f.contents));
    return m;
  }();
  auto it = tables.find(name);
  if (it == tables.end()) {
    auto names = dataset_names();
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    throw InputError(fmt::format("unknown data set '{}'; allowed: {}", name, list));
  }
  return it->second;
}

}  // namespace racksim
