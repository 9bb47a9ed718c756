// The weights on the GPU (see device_weights.hpp).
#include "runner/device_weights.hpp"

#include <fmt/format.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <climits>
#include <cstdint>
#include <cstring>
#include <map>

#include "kernels/nvfp4.cuh"
#include "kernels/quantize_fp8.cuh"
#include "kernels/synthetic_fill.cuh"
#include "model/layer_kinds.hpp"
#include "model/quantize.hpp"
#include "model/splitmix.hpp"
#include "piecewise/cuda_error.hpp"
#include "runner/buffer_plan.hpp"
#include "runner/weight_support.hpp"

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

/// One tensor of the model (an entry of model_tensors) as the device stores it.
struct part {
  std::size_t entry;
  dtype type;
  std::int64_t rows, cols;
  std::size_t bytes;
  const tensor_scales* scales;  // quantized tensors: their scales (host tensor or read from the checkpoint)
  const host_tensor* host;      // kind::host only
};

/// The device bytes after an FP8 weight's rows (and zero padding rows): its weight scale and
/// its input scale, two fp32 (the rows end 16-byte aligned: K is a multiple of 16).

/// The tensors one device tensor is made of (several for a fused group).
struct upload_group {
  int layer;  // -1: a global
  std::size_t index;
  std::vector<part> parts;
  bool linear;
};

/// `type` and `scales`: the checkpoint's (plan.quant) for a checkpoint, the table's otherwise.
part part_of(const tensor_entry& e, std::size_t i, const model_weights* host, dtype type, const tensor_scales* scales) {
  if (host != nullptr) {
    const host_tensor& t = host->at(e);
    return {i, t.type(), t.rows(), t.cols(), t.data_bytes(), t.scales ? &*t.scales : nullptr, &t};
  }
  std::int64_t numel = 1;
  for (std::int64_t d : e.shape) numel *= d;
  const std::int64_t rows = e.shape.empty() ? 1 : e.shape[0];
  return {i, type, rows, rows ? numel / rows : 0, dtype_storage_bytes(type, static_cast<std::size_t>(numel)), scales,
          nullptr};
}

/// The file descriptors of a checkpoint's shards, closed on exit.
struct open_files {
  std::map<const safetensors_file*, int> fds;
  int fd(const safetensors_file* f) {
    auto it = fds.find(f);
    if (it != fds.end()) return it->second;
    const int d = ::open(f->path().c_str(), O_RDONLY | O_CLOEXEC);
    if (d < 0) {
      throw piecewise::config_error(fmt::format("{}: cannot open for reading: {}", f->path().string(), std::strerror(errno)));
    }
    fds.emplace(f, d);
    return d;
  }
  ~open_files() {
    for (auto& [f, d] : fds) ::close(d);
  }
};

/// The GPU side of staged_read: one stream per reader thread, one event per slot.
class cuda_sink final : public staging_sink {
 public:
  cuda_sink(std::uint8_t* base, int threads, int slots) : base_(base), streams_(threads), events_(slots) {
    for (auto& s : streams_) PIECEWISE_CUDA_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    for (auto& e : events_) PIECEWISE_CUDA_TRY(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  ~cuda_sink() override {
    for (auto& s : streams_) {
      if (s) cudaStreamDestroy(s);
    }
    for (auto& e : events_) {
      if (e) cudaEventDestroy(e);
    }
  }
  cuda_sink(const cuda_sink&) = delete;
  cuda_sink& operator=(const cuda_sink&) = delete;
  void wait(int slot) override { PIECEWISE_CUDA_TRY(cudaEventSynchronize(events_[static_cast<std::size_t>(slot)])); }
  void submit(int thread, int slot, const void* src, std::uint64_t dst, std::uint64_t bytes) override {
    cudaStream_t s = streams_[static_cast<std::size_t>(thread)];
    PIECEWISE_CUDA_TRY_CTX(cudaMemcpyAsync(base_ + dst, src, bytes, cudaMemcpyHostToDevice, s), "checkpoint upload");
    PIECEWISE_CUDA_TRY(cudaEventRecord(events_[static_cast<std::size_t>(slot)], s));
  }
  void finish() {
    for (auto& s : streams_) PIECEWISE_CUDA_TRY_CTX(cudaStreamSynchronize(s), "checkpoint upload");
  }

 private:
  std::uint8_t* base_;
  std::vector<cudaStream_t> streams_;
  std::vector<cudaEvent_t> events_;
};

/// Pinned host memory, freed on exit.
struct pinned_buffer {
  void* p = nullptr;
  explicit pinned_buffer(std::size_t bytes) {
    PIECEWISE_CUDA_TRY_CTX(cudaHostAlloc(&p, bytes, cudaHostAllocDefault),
                           fmt::format("pinned staging buffers ({} MiB)", bytes >> 20));
  }
  ~pinned_buffer() {
    if (p) cudaFreeHost(p);
  }
  pinned_buffer(const pinned_buffer&) = delete;
  pinned_buffer& operator=(const pinned_buffer&) = delete;
};

/// Whether a file dtype is stored as it is by the model dtype (no conversion).
bool same_storage(st_dtype file, dtype model) {
  return (file == st_dtype::bf16 && model == dtype::bf16) || (file == st_dtype::f32 && model == dtype::f32) ||
         (file == st_dtype::f8_e4m3 && model == dtype::fp8_e4m3);
}

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

int device_weights::widest_fp8_input() const noexcept {
  int k = 0;
  auto see = [&k](const device_tensor& t) {
    if (t.view.type == dtype::fp8_e4m3) k = std::max(k, t.view.cols);
  };
  for (const device_tensor& t : globals_) see(t);
  for (const layer& l : layers_)
    for (const device_tensor& t : l.tensors) see(t);
  return k;
}

std::size_t device_weights::largest_nvfp4_weight() const noexcept {
  std::size_t n = 0;
  auto see = [&n](const device_tensor& t) {
    if (t.view.type == dtype::nvfp4)
      n = std::max(n, static_cast<std::size_t>(t.view.rows) * static_cast<std::size_t>(t.view.cols));
  };
  for (const device_tensor& t : globals_) see(t);
  for (const layer& l : layers_)
    for (const device_tensor& t : l.tensors) see(t);
  return n;
}

device_weights::device_weights(const model_config& c, const model_weights& w)
    : device_weights(c, weight_source::from_host(w)) {}

device_weights::device_weights(const model_config& c, const weight_source& src) {
  const model_weights* host = src.how == weight_source::kind::host ? src.host : nullptr;
  PIECEWISE_EXPECTS(src.how != weight_source::kind::host || host != nullptr, "device weights: no host weights given");
  c.validate();
  if (host != nullptr) host->check_shapes(c);
  // A checkpoint is opened and every name, shape and dtype checked here, before any memory is
  // taken or any weight byte read.
  checkpoint_plan plan;
  // A checkpoint's quantized weights: their scales, read and checked (small scalar tensors)
  // before any device memory is taken or any weight byte read.
  std::vector<std::optional<tensor_scales>> ck_scales;
  if (src.how == weight_source::kind::checkpoint) {
    plan = plan_checkpoint(src.path, c);
    ck_scales = read_checkpoint_scales(plan, c);
  }
  const std::vector<tensor_entry> entries = src.how == weight_source::kind::checkpoint ? plan.entries : model_tensors(c);
  // Synthetic FP8: which entries are drawn in bf16 and quantized on the GPU, with their input
  // scales (the weight scale is computed on the GPU from the drawn tensor), checked by name.
  const bool synthetic = src.how == weight_source::kind::synthetic;
  // A weight named for synthetic quantization (`what`: "FP8" or "NVFP4"): its entry index, after
  // checking that it is a linear weight of its own that is not part of a fused group.
  std::map<std::string_view, std::size_t> index;
  auto synthetic_quantized = [&](const std::string& name, const char* what, const char* fused_note) {
    if (index.empty())
      for (std::size_t i = 0; i < entries.size(); ++i) index.emplace(entries[i].name, i);
    const auto it = index.find(name);
    PIECEWISE_EXPECTS(it != index.end(), "device weights: synthetic {}: '{}' is not a tensor of {}", what, name, c.name);
    const tensor_entry& e = entries[it->second];
    PIECEWISE_EXPECTS(e.spec->linear && e.in_checkpoint && e.shape.size() == 2 &&
                          !(e.spec->tied_to_embeddings && c.tie_word_embeddings),
                      "device weights: synthetic {}: '{}' is not a linear weight of its own", what, name);
    PIECEWISE_EXPECTS(e.spec->fused_as == nullptr,
                      "device weights: synthetic {}: '{}' is part of the fused '{}', which runs as one GEMM{}: not "
                      "supported (keep it bf16)",
                      what, name, e.spec->fused_as, fused_note);
    return it->second;
  };
  std::vector<std::optional<tensor_scales>> syn_scales;
  std::size_t fp8_scratch_elems = 0;  // the largest synthetic FP8 weight, drawn in bf16 first
  if (!src.fp8_input_amax.empty()) {
    PIECEWISE_EXPECTS(synthetic, "device weights: FP8 input amax given for {} weights; only synthetic weights are "
                      "quantized on the GPU", src.how == weight_source::kind::host ? "host" : "checkpoint");
    syn_scales.resize(entries.size());
    for (const auto& [name, amax] : src.fp8_input_amax) {
      const std::size_t i = synthetic_quantized(name, "FP8", " with one pair of scales");
      PIECEWISE_EXPECTS(std::isfinite(amax) && amax >= 0, "device weights: synthetic FP8: '{}' has input amax {}",
                        name, amax);
      syn_scales[i] = tensor_scales{0.0f, {}, {}, input_scale_from_amax(amax)};
      fp8_scratch_elems = std::max(fp8_scratch_elems, static_cast<std::size_t>(entries[i].shape[0] * entries[i].shape[1]));
    }
  }
  auto syn_fp8 = [&](std::size_t i) { return i < syn_scales.size() && syn_scales[i].has_value(); };
  // Synthetic NVFP4 (weight-only): drawn in bf16 and quantized on the GPU, checked by name.
  std::vector<bool> syn_nvfp4;
  if (!src.nvfp4_weights.empty()) {
    PIECEWISE_EXPECTS(synthetic, "device weights: NVFP4 weights named for {} weights; only synthetic weights are "
                      "quantized on the GPU", src.how == weight_source::kind::host ? "host" : "checkpoint");
    syn_nvfp4.resize(entries.size());
    for (const std::string& name : src.nvfp4_weights) {
      const std::size_t i = synthetic_quantized(name, "NVFP4", "");
      PIECEWISE_EXPECTS(!syn_fp8(i) && !syn_nvfp4[i], "device weights: synthetic NVFP4: '{}' is named twice (or as FP8 too)",
                        name);
      syn_nvfp4[i] = true;
    }
  }
  auto is_syn_nvfp4 = [&](std::size_t i) { return i < syn_nvfp4.size() && syn_nvfp4[i]; };
  // The dtype each entry has on the device: the checkpoint's for a quantized weight.
  auto device_type = [&](std::size_t i) {
    if (syn_fp8(i)) return dtype::fp8_e4m3;
    if (is_syn_nvfp4(i)) return dtype::nvfp4;
    return src.how == weight_source::kind::checkpoint ? plan.quant[i].type : entries[i].spec->type;
  };
  const std::string source = src.how == weight_source::kind::checkpoint ? plan.source + ": " : std::string();

  // Which tensors make each device tensor: one each, except the table's fused groups.
  std::vector<upload_group> groups;
  globals_.resize(global_tensor_specs().size());
  layers_.resize(static_cast<std::size_t>(c.num_layers()));
  std::vector<std::size_t> group_of(entries.size());
  const char* open_group = nullptr;  // fused_as of the group being filled
  int open_layer = -2;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const tensor_entry& e = entries[i];
    const tensor_spec& s = *e.spec;
    const part p = part_of(e, i, host, device_type(i),
                           i < ck_scales.size() && ck_scales[i] ? &*ck_scales[i]
                           : syn_fp8(i)                        ? &*syn_scales[i]
                                                               : nullptr);
    if (e.layer < 0) {
      open_group = nullptr;
      globals_[static_cast<std::size_t>(e.index)] = {e.name, s.suffix, {}};
      groups.push_back({-1, static_cast<std::size_t>(e.index), {p}, s.linear});
    } else {
      layer& dst = layers_[static_cast<std::size_t>(e.layer)];
      if (e.layer != open_layer) {
        dst.kind = c.layers[static_cast<std::size_t>(e.layer)];
        open_group = nullptr;
        open_layer = e.layer;
      }
      if (s.fused_as != nullptr && open_group != nullptr && std::string_view(open_group) == s.fused_as) {
        groups.back().parts.push_back(p);
        group_of[i] = groups.size() - 1;
        continue;
      }
      open_group = s.fused_as;
      const std::string suffix = s.fused_as != nullptr ? s.fused_as : s.suffix;
      dst.tensors.push_back({layer_prefix(e.layer) + suffix, suffix, {}});
      groups.push_back({e.layer, dst.tensors.size() - 1, {p}, s.linear});
    }
    group_of[i] = groups.size() - 1;
  }
  auto target = [&](const upload_group& g) -> device_tensor& {
    return g.layer < 0 ? globals_[g.index] : layers_[static_cast<std::size_t>(g.layer)].tensors[g.index];
  };

  // Views and checks, before any device memory is taken.
  buffer_plan bplan;
  struct padding {
    const device_tensor* t;
    std::size_t offset, bytes;  // the zero rows after the tensor's data
  };
  std::vector<padding> paddings;
  struct fp8_scales {
    device_tensor* t;
    std::size_t offset;  // after the rows and the padding rows
    float weight, input;
  };
  std::vector<fp8_scales> scale_slots;
  struct nvfp4_weight {
    device_tensor* t;
    const part* p;  // the one tensor (fused NVFP4 groups are refused)
    nvfp4_layout layout;
  };
  std::vector<nvfp4_weight> nvfp4s;
  for (const upload_group& g : groups) {
    device_tensor& t = target(g);
    const part& first = g.parts.front();
    std::int64_t rows = 0;
    std::size_t bytes = 0;
    for (const part& p : g.parts) {
      PIECEWISE_EXPECTS(p.cols == first.cols && (g.linear || p.type == first.type),
                        "device weights: '{}' fuses '{}' ({} x {} {}) with '{}' ({} x {} {}): not supported", t.name,
                        entries[first.entry].name, first.rows, first.cols, dtype_name(first.type),
                        entries[p.entry].name, p.rows, p.cols, dtype_name(p.type));
      rows += p.rows;
      bytes += p.bytes;
    }
    PIECEWISE_EXPECTS(rows <= INT_MAX && first.cols <= INT_MAX, "device weights: '{}' is too large ({} x {})", t.name,
                      rows, first.cols);
    if (g.linear) {
      // What gemm_engine runs (bf16, FP8 with both scales; one dtype and one pair of scales
      // per fused group), named by tensor: runner/weight_support.hpp.
      std::vector<gpu_weight_part> wp;
      for (const part& p : g.parts) {
        gpu_weight_part q{entries[p.entry].name, p.type, p.rows, p.cols, {}, {}};
        if (p.type == dtype::fp8_e4m3) {
          if (!syn_fp8(p.entry)) q.weight_scale = p.scales ? p.scales->global : 0.0f;  // synthetic: made on the GPU
          q.input_scale = p.scales ? p.scales->input : 0.0f;
        }
        wp.push_back(std::move(q));
      }
      const std::string problem = gpu_linear_problem(t.name, wp);
      PIECEWISE_EXPECTS(problem.empty(), "device weights: {}{}", source, problem);
    } else {
      PIECEWISE_EXPECTS(first.type == dtype::bf16 || first.type == dtype::f32,
                        "device weights: {}tensor '{}' has dtype {}: not supported yet", source, t.name,
                        dtype_name(first.type));
    }
    // A linear weight whose output width is not a multiple of 8 (a vocabulary of 321, an
    // in_proj of 4 Mamba heads) gets zero rows up to the next multiple: the GEMM's output rows
    // stay 16-byte aligned, and the model reads the real columns only.
    // The MoE router (not `linear`: it stays bf16 in quantized checkpoints and runs with fp32
    // output) is padded the same way, for an expert count that is not a multiple of 8.
    const bool router = g.layer >= 0 && t.suffix == "mixer.gate.weight";
    const std::int64_t padded = g.linear || router ? device_rows(rows) : rows;
    const std::size_t pad_bytes = static_cast<std::size_t>(padded - rows) * static_cast<std::size_t>(first.cols) *
                                  dtype_storage_bytes(first.type, 1);
    t.view.type = first.type;
    t.view.rows = static_cast<int>(padded);
    t.view.cols = static_cast<int>(first.cols);
    t.view.name = t.name.c_str();  // the strings no longer move: every list is complete
    if (first.type == dtype::nvfp4) {
      // The device layout (kernels/nvfp4.cuh), then the global scale in a 16-byte slot;
      // padding rows are zeros of the layout.
      PIECEWISE_EXPECTS(g.linear && g.parts.size() == 1, "device weights: '{}': NVFP4 in a fused group", t.name);
      const nvfp4_layout L{static_cast<int>(padded), static_cast<int>(first.cols)};
      nvfp4s.push_back({&t, &first, L});
      bplan.add_bytes(t.name, nvfp4_device_bytes(rows, first.cols), [&t](void* p) { t.view.data = p; });
      continue;
    }
    const bool fp8 = first.type == dtype::fp8_e4m3;
    if (fp8) scale_slots.push_back({&t, bytes + pad_bytes, first.scales->global, first.scales->input});
    bplan.add_bytes(t.name, bytes + pad_bytes + (fp8 ? kFp8ScaleBytes : 0), [&t](void* p) { t.view.data = p; });
    if (pad_bytes > 0) paddings.push_back({&t, bytes, pad_bytes});
  }

  arena_ = bplan.allocate();
  for (const padding& p : paddings)
    PIECEWISE_CUDA_TRY(cudaMemset(static_cast<std::uint8_t*>(const_cast<void*>(p.t->view.data)) + p.offset, 0, p.bytes));
  // FP8 weights: their two scales after the rows, and the view's pointers to them.
  for (const fp8_scales& f : scale_slots) {
    auto* at = reinterpret_cast<float*>(static_cast<std::uint8_t*>(const_cast<void*>(f.t->view.data)) + f.offset);
    float v[kFp8ScaleBytes / sizeof(float)] = {};
    v[0] = f.weight;
    v[kFp8ScaleSlotBytes / sizeof(float)] = f.input;
    PIECEWISE_CUDA_TRY_CTX(cudaMemcpy(at, v, sizeof(v), cudaMemcpyHostToDevice),
                           fmt::format("uploading the scales of {}", f.t->name));
    f.t->view.scale = at;
    f.t->view.input_scale = at + kFp8ScaleSlotBytes / sizeof(float);
    gemm_engine::require_supported(f.t->view);
  }
  auto* const arena_base = static_cast<std::uint8_t*>(arena_->data());
  piecewise::device_buffer fp8_scratch, fp8_amax;  // synthetic FP8 only; freed after the final sync
  entries_.resize(entries.size());
  for (const upload_group& g : groups) {
    auto* dst = static_cast<std::uint8_t*>(const_cast<void*>(target(g).view.data));
    for (const part& p : g.parts) {
      entries_[p.entry] = {dst, p.bytes};
      dst += p.bytes;
    }
  }
  // NVFP4: the views' block scales and global scale slots; the span covers the whole layout.
  for (const nvfp4_weight& n : nvfp4s) {
    auto* base = static_cast<std::uint8_t*>(const_cast<void*>(n.t->view.data));
    n.t->view.block_scales = base + n.layout.packed_bytes();
    n.t->view.scale = reinterpret_cast<const float*>(base + n.layout.packed_bytes() + n.layout.scale_bytes());
    entries_[n.p->entry] = {base, nvfp4_device_bytes(n.p->rows, n.p->cols)};
  }
  auto data = [&](std::size_t i) { return static_cast<std::uint8_t*>(const_cast<void*>(entries_[i].data)); };
  auto tied = [&](const tensor_entry& e) { return e.spec->tied_to_embeddings && c.tie_word_embeddings; };
  const std::size_t emb = 0;  // model_tensors lists the embeddings first
  // A synthetic weight to quantize (`what`: "FP8", "NVFP4") drawn in bf16 into `draw` (the same
  // bits as the bf16 model's), its largest |value| into *amax: what the GPU quantizers start from.
  auto draw_for_quantization = [&](const tensor_entry& e, const char* what, bf16* draw, float* amax) {
    const init_rule& r = e.spec->init;
    PIECEWISE_EXPECTS(r.how == init_rule::kind::normal || r.how == init_rule::kind::uniform,
                      "device weights: synthetic {}: '{}' is not drawn by the GPU", what, e.name);
    const int rows = static_cast<int>(e.shape[0]), cols = static_cast<int>(e.shape[1]);
    synthetic_fill(draw, dtype::bf16, static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols),
                   tensor_seed(src.seed, e.name), r.how == init_rule::kind::normal, r.scale(c), nullptr);
    PIECEWISE_CUDA_TRY(cudaMemsetAsync(amax, 0, sizeof(float), nullptr));
    amax_abs_rows(draw, cols, rows, cols, amax, nullptr);
  };
  PIECEWISE_EXPECTS(entries.front().layer < 0 && entries.front().index == kEmbeddings,
                    "device weights: the embeddings are not the first tensor");

  switch (src.how) {
    case weight_source::kind::host:
      for (std::size_t i = 0; i < entries.size(); ++i) {
        const host_tensor& t = host->at(entries[i]);
        if (t.type() == dtype::nvfp4) continue;  // below
        PIECEWISE_CUDA_TRY_CTX(cudaMemcpy(data(i), t.data(), t.data_bytes(), cudaMemcpyHostToDevice),
                               fmt::format("uploading {}", t.name()));
      }
      break;
    case weight_source::kind::synthetic:
      if (fp8_scratch_elems > 0) {
        fp8_scratch = piecewise::device_buffer(fp8_scratch_elems * sizeof(bf16), "synthetic FP8: the bf16 draw");
        fp8_amax = piecewise::device_buffer(16, "synthetic FP8: amax");
      }
      for (std::size_t i = 0; i < entries.size(); ++i) {
        const tensor_entry& e = entries[i];
        const init_rule& r = e.spec->init;
        if (is_syn_nvfp4(i)) continue;  // below
        const std::size_t n = entries_[i].bytes / dtype_storage_bytes(device_type(i), 1);
        if (syn_fp8(i)) {
          // Drawn in bf16, then quantize_fp8 on the GPU: scale amax / 448 into the weight's scale
          // slot, the e4m3 rows into the arena.
          const weight& v = target(groups[group_of[i]]).view;
          auto* draw = static_cast<bf16*>(fp8_scratch.data());
          auto* amax = static_cast<float*>(fp8_amax.data());
          draw_for_quantization(e, "FP8", draw, amax);
          fp8_scale_from_amax(amax, const_cast<float*>(v.scale), nullptr);
          quantize_fp8_weight(draw, n, v.scale, data(i), nullptr);
        } else if (!e.in_checkpoint) {
          PIECEWISE_CUDA_TRY(cudaMemsetAsync(data(i), 0, entries_[i].bytes, nullptr));
        } else if (tied(e)) {
          PIECEWISE_CUDA_TRY(cudaMemcpyAsync(data(i), data(emb), entries_[i].bytes, cudaMemcpyDeviceToDevice, nullptr));
        } else if (r.how == init_rule::kind::normal || r.how == init_rule::kind::uniform) {
          synthetic_fill(data(i), e.spec->type, n, tensor_seed(src.seed, e.name), r.how == init_rule::kind::normal,
                         r.scale(c), nullptr);
        } else {  // the small vectors: drawn on the host as synthetic_weights draws them
          const host_tensor t = synthetic_tensor(c, e, src.seed, src.synthetic);
          PIECEWISE_CUDA_TRY_CTX(cudaMemcpy(data(i), t.data(), t.data_bytes(), cudaMemcpyHostToDevice),
                                 fmt::format("uploading {}", t.name()));
        }
      }
      break;
    case weight_source::kind::checkpoint: {
      open_files files;
      std::vector<read_job> jobs;
      auto add_job = [&](const safetensors_file* file, const st_tensor_info* info, std::uint8_t* dst) {
        jobs.push_back({files.fd(file), file->header().data_offset + info->begin, info->nbytes(),
                        static_cast<std::uint64_t>(dst - arena_base),
                        fmt::format("{}: tensor '{}'", file->path().string(), info->name)});
      };
      for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto [file, info] = plan.items[i];
        if (file != nullptr) {
          if (same_storage(info->dtype, device_type(i))) add_job(file, info, data(i));
          continue;
        }
        // Routed experts stored one tensor per expert: each lands at its expert's offset.
        const auto& pieces = plan.pieces[i];
        for (std::size_t x = 0; x < pieces.size(); ++x) {
          const auto [pf, pinfo] = pieces[x];
          if (same_storage(pinfo->dtype, entries[i].spec->type))
            add_job(pf, pinfo, data(i) + x * (entries_[i].bytes / pieces.size()));
        }
      }
      staged_read_options o = src.staging;
      PIECEWISE_EXPECTS(o.threads >= 1 && o.slots_per_thread >= 1 && o.chunk_bytes > 0,
                        "checkpoint upload: threads {}, slots per thread {} and chunk bytes {} must be positive",
                        o.threads, o.slots_per_thread, o.chunk_bytes);
      // No slot larger than the largest tensor (a small model takes a small ring).
      std::uint64_t largest = 1;
      for (const read_job& j : jobs) largest = std::max(largest, j.bytes);
      o.chunk_bytes = std::min(o.chunk_bytes, largest);
      const std::size_t nslots = static_cast<std::size_t>(o.threads) * static_cast<std::size_t>(o.slots_per_thread);
      const pinned_buffer ring(nslots * o.chunk_bytes);
      std::vector<void*> slots;
      for (std::size_t k = 0; k < nslots; ++k) slots.push_back(static_cast<std::uint8_t*>(ring.p) + k * o.chunk_bytes);
      cuda_sink sink(arena_base, o.threads, static_cast<int>(nslots));
      staged_read(jobs, slots, sink, o);
      sink.finish();
      // The rest: tensors that need a dtype conversion (one at a time on the host), a tied
      // lm_head, zeros.
      for (std::size_t i = 0; i < entries.size(); ++i) {
        const tensor_entry& e = entries[i];
        const auto [file, info] = plan.items[i];
        if (file != nullptr) {
          if (same_storage(info->dtype, device_type(i)) || device_type(i) == dtype::nvfp4) continue;
          PIECEWISE_EXPECTS(!dtype_is_quantized(device_type(i)), "device weights: {}: tensor '{}' is {} stored as {}",
                            plan.source, e.name, dtype_name(device_type(i)), st_dtype_name(info->dtype));
          host_tensor t(e.name, e.spec->type, e.shape);
          if (t.type() == dtype::bf16) file->read_bf16(*info, t.bf16());
          else file->read_f32(*info, t.f32());
          PIECEWISE_CUDA_TRY_CTX(cudaMemcpy(data(i), t.data(), t.data_bytes(), cudaMemcpyHostToDevice),
                                 fmt::format("uploading {}", e.name));
        } else if (!plan.pieces[i].empty()) {
          // Per-expert pieces in another dtype (F32, F16...): converted one expert at a time.
          const auto& pieces = plan.pieces[i];
          const std::size_t piece_bytes = entries_[i].bytes / pieces.size();
          for (std::size_t x = 0; x < pieces.size(); ++x) {
            const auto [pf, pinfo] = pieces[x];
            if (same_storage(pinfo->dtype, e.spec->type)) continue;
            std::vector<std::int64_t> shape(e.shape.begin() + 1, e.shape.end());
            host_tensor t(pinfo->name, e.spec->type, shape);
            if (t.type() == dtype::bf16) pf->read_bf16(*pinfo, t.bf16());
            else pf->read_f32(*pinfo, t.f32());
            PIECEWISE_EXPECTS(t.data_bytes() == piece_bytes, "device weights: expert tensor '{}' has {} bytes, {} expected",
                              pinfo->name, t.data_bytes(), piece_bytes);
            PIECEWISE_CUDA_TRY_CTX(cudaMemcpy(data(i) + x * piece_bytes, t.data(), t.data_bytes(), cudaMemcpyHostToDevice),
                                   fmt::format("uploading {}", pinfo->name));
          }
        } else if (tied(e)) {
          PIECEWISE_CUDA_TRY(cudaMemcpy(data(i), data(emb), entries_[i].bytes, cudaMemcpyDeviceToDevice));
        } else {
          PIECEWISE_CUDA_TRY(cudaMemset(data(i), 0, entries_[i].bytes));
        }
      }
      break;
    }
  }
  // NVFP4 weights: the checkpoint layout (elements, block scales) in a device scratch, from the
  // host tensor, the checkpoint file, or drawn in bf16 and quantized on the GPU; then repacked
  // into the arena (kernels/nvfp4.cuh), the global scale into its slot.
  if (!nvfp4s.empty()) {
    std::size_t raw_bytes = 0, block_bytes = 0, elems = 0;
    for (const nvfp4_weight& n : nvfp4s) {
      const std::size_t e = static_cast<std::size_t>(n.p->rows) * static_cast<std::size_t>(n.p->cols);
      raw_bytes = std::max(raw_bytes, e / 2);
      block_bytes = std::max(block_bytes, e / 16);
      elems = std::max(elems, e);
    }
    piecewise::device_buffer raw(raw_bytes, "NVFP4 upload: elements"), blocks(block_bytes, "NVFP4 upload: block scales");
    piecewise::device_buffer draw, amax;  // synthetic only
    if (synthetic) {
      draw = piecewise::device_buffer(elems * sizeof(bf16), "synthetic NVFP4: the bf16 draw");
      amax = piecewise::device_buffer(16, "synthetic NVFP4: amax");
    }
    auto* rp = static_cast<std::uint8_t*>(raw.data());
    auto* rs = static_cast<std::uint8_t*>(blocks.data());
    for (const nvfp4_weight& n : nvfp4s) {
      const part& p = *n.p;
      const tensor_entry& e = entries[p.entry];
      const int rows = static_cast<int>(p.rows), cols = static_cast<int>(p.cols);
      const std::size_t nel = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
      auto* global = const_cast<float*>(n.t->view.scale);
      float g = 1.0f;
      if (synthetic) {
        auto* d = static_cast<bf16*>(draw.data());
        draw_for_quantization(e, "NVFP4", d, static_cast<float*>(amax.data()));
        quantize_nvfp4_weight(d, rows, cols, static_cast<const float*>(amax.data()), global, rp, rs, nullptr);
        PIECEWISE_CUDA_TRY_CTX(cudaMemcpy(&g, global, sizeof(float), cudaMemcpyDeviceToHost),
                               fmt::format("quantizing {}", e.name));
      } else {
        PIECEWISE_EXPECTS(p.scales != nullptr && p.scales->block.size() == nel / 16,
                          "device weights: {}NVFP4 tensor '{}' has {} block scales, {} expected", source, e.name,
                          p.scales ? p.scales->block.size() : 0, nel / 16);
        g = p.scales->global;
        if (host != nullptr) {
          PIECEWISE_CUDA_TRY_CTX(cudaMemcpy(rp, p.host->data(), nel / 2, cudaMemcpyHostToDevice),
                                 fmt::format("uploading {}", e.name));
        } else {
          const auto [file, info] = plan.items[p.entry];
          const std::vector<std::uint8_t> bytes = file->read_raw(*info);
          PIECEWISE_EXPECTS(bytes.size() == nel / 2, "{}: tensor '{}' holds {} bytes, nvfp4 [{}, {}] needs {}",
                            file->path().string(), info->name, bytes.size(), rows, cols, nel / 2);
          PIECEWISE_CUDA_TRY_CTX(cudaMemcpy(rp, bytes.data(), bytes.size(), cudaMemcpyHostToDevice),
                                 fmt::format("uploading {}", e.name));
        }
        PIECEWISE_CUDA_TRY_CTX(cudaMemcpy(rs, p.scales->block.data(), nel / 16, cudaMemcpyHostToDevice),
                               fmt::format("uploading the block scales of {}", e.name));
        float slot[kFp8ScaleSlotBytes / sizeof(float)] = {g};
        PIECEWISE_CUDA_TRY_CTX(cudaMemcpy(global, slot, sizeof(slot), cudaMemcpyHostToDevice),
                               fmt::format("uploading the global scale of {}", e.name));
      }
      repack_nvfp4(rp, rs, rows, cols, n.t->view.rows, static_cast<std::uint8_t*>(const_cast<void*>(n.t->view.data)),
                   static_cast<std::uint8_t*>(const_cast<void*>(n.t->view.block_scales)), nullptr);
      n.t->view.global_scale = g;
      gemm_engine::require_supported(n.t->view);
    }
    PIECEWISE_CUDA_TRY_CTX(cudaDeviceSynchronize(), "repacking the NVFP4 weights");
  }
  // Every source ends here: the fills and legacy-stream copies are done, and a pageable
  // cudaMemcpy (which may return before its DMA lands) has landed before the model's
  // non-blocking streams read the weights.
  PIECEWISE_CUDA_TRY_CTX(cudaDeviceSynchronize(), "uploading the weights");
}

}  // namespace nemotron_h
