// The weights on the GPU (see device_weights.hpp).
#include "runner/device_weights.hpp"

#include <fmt/format.h>

#include <climits>
#include <cstdint>

#include "model/layer_kinds.hpp"
#include "piecewise/cuda_error.hpp"
#include "runner/buffer_plan.hpp"

namespace nemotron_h {

namespace {

const void* typed_data(const weight& w, dtype want) {
  if (w.type != want) {
    throw piecewise::config_error(
        fmt::format("tensor '{}' has dtype {}, the kernel reading it needs {}", w.name, dtype_name(w.type),
                    dtype_name(want)));
  }
  return w.data;
}

/// The host tensors one device tensor is made of (several for a fused group).
struct upload_group {
  int layer;  // -1: a global
  std::size_t index;
  std::vector<const host_tensor*> parts;
  bool linear;
};

}  // namespace

const bf16* bf16_data(const weight& w) { return static_cast<const bf16*>(typed_data(w, dtype::bf16)); }
const float* f32_data(const weight& w) { return static_cast<const float*>(typed_data(w, dtype::f32)); }

const weight& device_weights::layer::get(std::string_view suffix) const {
  for (const device_tensor& t : tensors) {
    if (t.suffix == suffix) return t.view;
  }
  throw piecewise::config_error(
      fmt::format("device weights: a {} layer has no tensor '{}'", kind_info(kind).name, suffix));
}

device_weights::device_weights(const model_config& c, const model_weights& w) {
  w.check_shapes(c);

  // Which host tensors make each device tensor: one each, except the table's fused groups.
  std::vector<upload_group> groups;
  const auto& global_specs = global_tensor_specs();
  for (std::size_t j = 0; j < global_specs.size(); ++j) {
    globals_.push_back({w.globals[j].name(), global_specs[j].suffix, {}});
    groups.push_back({-1, j, {&w.globals[j]}, global_specs[j].linear});
  }
  layers_.resize(w.layers.size());
  for (std::size_t l = 0; l < w.layers.size(); ++l) {
    const layer_weights& src = w.layers[l];
    layer& dst = layers_[l];
    dst.kind = src.kind;
    const auto& specs = layer_tensor_specs(src.kind);
    const char* open_group = nullptr;  // fused_as of the group being filled
    for (std::size_t j = 0; j < specs.size(); ++j) {
      const tensor_spec& s = *specs[j];
      if (s.fused_as != nullptr && open_group != nullptr && std::string_view(open_group) == s.fused_as) {
        groups.back().parts.push_back(&src.tensors[j]);
        continue;
      }
      open_group = s.fused_as;
      const std::string suffix = s.fused_as != nullptr ? s.fused_as : s.suffix;
      dst.tensors.push_back({layer_prefix(static_cast<int>(l)) + suffix, suffix, {}});
      groups.push_back({static_cast<int>(l), dst.tensors.size() - 1, {&src.tensors[j]}, s.linear});
    }
  }
  auto target = [&](const upload_group& g) -> device_tensor& {
    return g.layer < 0 ? globals_[g.index] : layers_[static_cast<std::size_t>(g.layer)].tensors[g.index];
  };

  // Views and checks, before any device memory is taken.
  buffer_plan plan;
  for (const upload_group& g : groups) {
    device_tensor& t = target(g);
    const host_tensor& first = *g.parts.front();
    std::int64_t rows = 0;
    std::size_t bytes = 0;
    for (const host_tensor* p : g.parts) {
      PIECEWISE_EXPECTS(p->type() == first.type() && p->cols() == first.cols(),
                        "device weights: '{}' fuses '{}' ({} x {} {}) with '{}' ({} x {} {}): not supported", t.name,
                        first.name(), first.rows(), first.cols(), dtype_name(first.type()), p->name(), p->rows(),
                        p->cols(), dtype_name(p->type()));
      PIECEWISE_EXPECTS(!p->scales || g.parts.size() == 1, "device weights: '{}': fusing quantized tensors ({}) is "
                        "not supported yet", t.name, p->name());
      rows += p->rows();
      bytes += p->data_bytes();
    }
    PIECEWISE_EXPECTS(rows <= INT_MAX && first.cols() <= INT_MAX, "device weights: '{}' is too large ({} x {})", t.name,
                      rows, first.cols());
    t.view.type = first.type();
    t.view.rows = static_cast<int>(rows);
    t.view.cols = static_cast<int>(first.cols());
    t.view.name = t.name.c_str();  // the strings no longer move: every list is complete
    if (g.linear) gemm_engine::require_supported(t.view);
    PIECEWISE_EXPECTS(first.type() == dtype::bf16 || first.type() == dtype::f32,
                      "device weights: tensor '{}' has dtype {}: not supported yet", t.name, dtype_name(first.type()));
    plan.add_bytes(t.name, bytes, [&t](void* p) { t.view.data = p; });
  }

  arena_ = plan.allocate();
  for (const upload_group& g : groups) {
    auto* dst = static_cast<std::uint8_t*>(const_cast<void*>(target(g).view.data));
    for (const host_tensor* p : g.parts) {
      PIECEWISE_CUDA_TRY_CTX(cudaMemcpy(dst, p->data(), p->data_bytes(), cudaMemcpyHostToDevice),
                             fmt::format("uploading {}", p->name()));
      dst += p->data_bytes();
    }
  }
  // A pageable cudaMemcpy may return before its DMA lands, and the model runs on
  // non-blocking streams, which do not wait for it.
  PIECEWISE_CUDA_TRY_CTX(cudaDeviceSynchronize(), "uploading the weights");
}

}  // namespace nemotron_h
