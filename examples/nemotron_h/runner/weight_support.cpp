// Which linear weights the GPU model runs (see weight_support.hpp).
#include "runner/weight_support.hpp"

#include <fmt/format.h>

#include "piecewise/error.hpp"

namespace nemotron_h {

namespace {

std::string scales_text(const gpu_weight_part& p) {
  return fmt::format("'{}' weight_scale {}, input_scale {}", p.name, *p.weight_scale, *p.input_scale);
}

}  // namespace

std::string gpu_linear_problem(std::string_view group, const std::vector<gpu_weight_part>& parts) {
  if (parts.empty()) return fmt::format("'{}' has no tensors", group);
  const gpu_weight_part& first = parts.front();
  for (const gpu_weight_part& p : parts) {
    if (p.type != first.type) {
      return fmt::format("'{}' fuses '{}' ({}) with '{}' ({}): the GPU runs a fused group as one GEMM, so its parts "
                         "must share one dtype (quantize all of them or none)",
                         group, first.name, dtype_name(first.type), p.name, dtype_name(p.type));
    }
  }
  if (first.type == dtype::bf16) return {};
  if (first.type == dtype::nvfp4) {
    if (parts.size() > 1) {
      return fmt::format("'{}' fuses NVFP4 tensors ('{}', ...): fused NVFP4 groups are not supported on the GPU yet "
                         "(keep these modules in bf16 with the quantization's exclude_modules)",
                         group, first.name);
    }
    if (first.cols % 16 != 0 || first.cols == 0) {
      return fmt::format("tensor '{}' is nvfp4 [{}, {}]: NVFP4 needs the input width ({}) to be a positive multiple of "
                         "16 (the block size)",
                         first.name, first.rows, first.cols, first.cols);
    }
    return {};
  }
  if (first.type != dtype::fp8_e4m3) {
    return fmt::format("tensor '{}' has dtype {}: not supported yet (linear weights run bf16, fp8_e4m3 or nvfp4)", first.name,
                       dtype_name(first.type));
  }
  for (const gpu_weight_part& p : parts) {
    if (p.cols % 16 != 0) {
      return fmt::format("tensor '{}' is fp8_e4m3 [{}, {}]: FP8 GEMMs on the GPU need the input width ({}) to be a "
                         "multiple of 16",
                         p.name, p.rows, p.cols, p.cols);
    }
    if (p.input_scale && !(*p.input_scale > 0)) {
      return fmt::format("tensor '{}' is fp8_e4m3 without an input scale: weight-only FP8 is not supported on the GPU "
                         "(it runs W8A8 with the static input_scale)",
                         p.name);
    }
    if (p.weight_scale && !(*p.weight_scale > 0)) {
      return fmt::format("tensor '{}' is fp8_e4m3 with weight scale {}: it must be positive", p.name, *p.weight_scale);
    }
  }
  for (const gpu_weight_part& p : parts) {
    if (!p.weight_scale || !p.input_scale || !first.weight_scale || !first.input_scale) continue;
    if (*p.weight_scale != *first.weight_scale || *p.input_scale != *first.input_scale) {
      return fmt::format("'{}' fuses FP8 tensors with different scales ({}; {}): the GPU runs the group as one GEMM "
                         "with one weight scale and one input scale, so this is not supported yet (keep these modules "
                         "in bf16 with the quantization's exclude_modules)",
                         group, scales_text(first), scales_text(p));
    }
  }
  return {};
}

std::vector<gpu_tensor_group> gpu_tensor_groups(const std::vector<tensor_entry>& entries) {
  std::vector<gpu_tensor_group> out;
  const char* open = nullptr;  // fused_as of the group being filled
  int open_layer = -2;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const tensor_entry& e = entries[i];
    const tensor_spec& s = *e.spec;
    if (s.fused_as != nullptr && open != nullptr && e.layer == open_layer && std::string_view(open) == s.fused_as) {
      out.back().entries.push_back(i);
      continue;
    }
    open = e.layer >= 0 ? s.fused_as : nullptr;
    open_layer = e.layer;
    out.push_back({open != nullptr ? layer_prefix(e.layer) + open : e.name, {i}, s.linear});
  }
  return out;
}

void check_gpu_weights(const model_config& c, const model_weights& w) {
  const std::vector<tensor_entry> entries = model_tensors(c);
  for (const gpu_tensor_group& g : gpu_tensor_groups(entries)) {
    if (!g.linear) continue;
    std::vector<gpu_weight_part> parts;
    for (std::size_t i : g.entries) {
      const host_tensor& t = w.at(entries[i]);
      gpu_weight_part p{t.name(), t.type(), t.rows(), t.cols(), {}, {}};
      if (t.type() == dtype::fp8_e4m3) {
        p.weight_scale = t.scales ? t.scales->global : 0.0f;
        p.input_scale = t.scales ? t.scales->input : 0.0f;
      }
      parts.push_back(std::move(p));
    }
    const std::string problem = gpu_linear_problem(g.name, parts);
    if (!problem.empty()) throw piecewise::config_error(fmt::format("device weights: {}", problem));
  }
}

void check_gpu_weight_types(const model_config& c, const std::vector<dtype>& types, const std::string& source) {
  const std::vector<tensor_entry> entries = model_tensors(c);
  PIECEWISE_EXPECTS(types.size() == entries.size(), "{}: {} tensor dtypes for the {} tensors of {}", source,
                    types.size(), entries.size(), c.name);
  for (const gpu_tensor_group& g : gpu_tensor_groups(entries)) {
    if (!g.linear) continue;
    std::vector<gpu_weight_part> parts;
    for (std::size_t i : g.entries) {
      const tensor_entry& e = entries[i];
      const std::int64_t rows = e.shape.empty() ? 1 : e.shape[0];
      std::int64_t numel = 1;
      for (std::int64_t d : e.shape) numel *= d;
      parts.push_back({e.name, types[i], rows, rows ? numel / rows : 0, {}, {}});
    }
    const std::string problem = gpu_linear_problem(g.name, parts);
    if (!problem.empty()) throw piecewise::config_error(fmt::format("{}: {}", source, problem));
  }
}

namespace {

bool synthetic_fp8(const model_config& c, const tensor_entry& e) {
  if (e.layer < 0 || !e.spec->linear || !e.in_checkpoint) return false;
  const layer_kind k = c.layers[static_cast<std::size_t>(e.layer)];
  const std::string_view suffix = e.spec->suffix;
  if (k == layer_kind::mamba) return suffix == "mixer.in_proj.weight" || suffix == "mixer.out_proj.weight";
  if (k == layer_kind::mlp) return suffix == "mixer.up_proj.weight" || suffix == "mixer.down_proj.weight";
  return false;
}

}  // namespace

std::vector<std::string> synthetic_fp8_weights(const model_config& c) {
  std::vector<std::string> names;
  for (const tensor_entry& e : model_tensors(c))
    if (synthetic_fp8(c, e)) names.push_back(e.name);
  return names;
}

quant_config synthetic_fp8_quant_config(const model_config& c) {
  quant_config q;
  q.source = "--dtype fp8 (synthetic weights)";
  q.algo = quant_algo::none;
  q.mixed = true;
  for (const std::string& n : synthetic_fp8_weights(c)) q.layers[module_of(n)] = quant_algo::fp8;
  return q;
}

quant_config synthetic_nvfp4_quant_config(const model_config& c) {
  quant_config q;
  q.source = "--dtype nvfp4 (synthetic weights)";
  q.algo = quant_algo::none;
  q.mixed = true;
  q.group_size = 16;
  for (const std::string& n : synthetic_fp8_weights(c)) q.layers[module_of(n)] = quant_algo::w4a16_nvfp4;
  return q;
}

std::vector<dtype> synthetic_weight_types(const model_config& c, dtype quantized) {
  std::vector<dtype> t;
  for (const tensor_entry& e : model_tensors(c))
    t.push_back(quantized != dtype::bf16 && synthetic_fp8(c, e) ? quantized : e.spec->type);
  return t;
}

std::vector<dtype> synthetic_weight_types(const model_config& c, bool fp8) {
  return synthetic_weight_types(c, fp8 ? dtype::fp8_e4m3 : dtype::bf16);
}

}  // namespace nemotron_h
