// NemotronH host weights: checkpoint loading with strict name/shape checks, synthetic init,
// all driven by the layer-kind table (model/layer_kinds.hpp).
#include "model/weights.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "model/messages.hpp"
#include "model/quant_formats.hpp"
#include "model/safetensors.hpp"
#include "model/synthetic_draw.hpp"
#include "piecewise/element_type.hpp"
#include "piecewise/error.hpp"

namespace nemotron_h {

// Host tensors hold their elements in the host's byte order; safetensors files are
// little-endian, and save_weights copies the bytes as they are.
static_assert(std::endian::native == std::endian::little, "the weights code assumes a little-endian host");

namespace {

/// The prefixes of the model's tensors in the checkpoints a loader meets: the original
/// `backbone.`, transformers v5 re-saves' `model.`, VL wrappers' `language_model.backbone.`.
constexpr const char* kPrefixes[] = {"backbone.", "model.", "language_model.backbone.", "language_model.model."};

/// The canonical name of a checkpoint tensor name, or "" when its prefix is not recognised.
std::string canonical_name(const std::string& n) {
  if (n == "lm_head.weight" || n == "language_model.lm_head.weight") return "lm_head.weight";
  for (const char* p : kPrefixes) {
    if (n.rfind(p, 0) == 0) {
      std::string rest = n.substr(std::string_view(p).size());
      if (rest == "embedding.weight") rest = "embeddings.weight";
      return "backbone." + rest;
    }
  }
  return {};
}

/// Whether `n` is a multi-token-prediction tensor (`mtp.*`, also under a model prefix): in
/// the checkpoint, not used by the main model.
bool is_mtp_tensor(const std::string& n) {
  if (n.rfind("mtp.", 0) == 0) return true;
  for (const char* p : kPrefixes) {
    if (n.rfind(p, 0) == 0 && n.compare(std::string_view(p).size(), 4, "mtp.") == 0) return true;
  }
  return false;
}

/// ModelOpt's scale tensors, named after the weight's module: "X.weight_scale" etc.
constexpr const char* kScaleSuffixes[] = {"weight_scale_2", "weight_scale", "input_scale", "k_scale", "v_scale"};

/// "backbone.layers.3.mixer.in_proj.weight_scale" -> weight "backbone.layers.3.mixer.in_proj.weight",
/// suffix "weight_scale"; false for a name that is no scale tensor.
bool split_scale_name(const std::string& n, std::string& weight, std::string& suffix) {
  for (const char* sfx : kScaleSuffixes) {
    const std::string tail = std::string(".") + sfx;
    if (n.size() > tail.size() && n.compare(n.size() - tail.size(), tail.size(), tail) == 0) {
      weight = n.substr(0, n.size() - tail.size()) + ".weight";
      suffix = sfx;
      return true;
    }
  }
  return false;
}

/// The shape a checkpoint stores a tensor of logical shape `shape` in: NVFP4 (U8) packs two
/// elements of a row into a byte.
std::vector<std::int64_t> stored_shape(std::vector<std::int64_t> shape, bool packed_fp4) {
  if (packed_fp4 && !shape.empty()) shape.back() = (shape.back() + 1) / 2;
  return shape;
}

/// The name save_checkpoint / save_weights write a canonical tensor name under.
std::string saved_name(const std::string& canonical, const std::string& prefix) {
  return canonical.rfind("backbone.", 0) == 0 ? prefix + canonical.substr(9) : canonical;
}

/// The checkpoint dtype a quantization algorithm stores a weight in (bf16 for none: any float).
st_dtype stored_as(quant_algo a) {
  return a == quant_algo::fp8 ? st_dtype::f8_e4m3 : a == quant_algo::none ? st_dtype::bf16 : st_dtype::u8;
}

bool is_quantized_storage(st_dtype t) { return t == st_dtype::f8_e4m3 || t == st_dtype::u8; }

/// A canonical per-expert tensor name, "backbone.layers.{layer}.mixer.experts.{expert}.{proj}.weight":
/// its layer, expert and the canonical name of the fused tensor it is a slice of.
struct expert_piece {
  int layer = -1;
  int expert = -1;
  std::string fused;  ///< "backbone.layers.{layer}.mixer.experts.up_proj" (or down_proj)
};

/// Parses a non-negative decimal number of at most 9 digits at s[pos..), advancing pos.
bool parse_index(const std::string& s, std::size_t& pos, int& out) {
  std::size_t start = pos;
  long v = 0;
  while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9' && pos - start < 9) v = v * 10 + (s[pos++] - '0');
  if (pos == start || (pos - start > 1 && s[start] == '0')) return false;
  out = static_cast<int>(v);
  return true;
}

bool parse_expert_piece(const std::string& cn, expert_piece& out) {
  static constexpr std::string_view kHead = "backbone.layers.";
  static constexpr std::string_view kMid = ".mixer.experts.";
  if (cn.rfind(kHead, 0) != 0) return false;
  std::size_t pos = kHead.size();
  int layer = 0, expert = 0;
  if (!parse_index(cn, pos, layer) || cn.compare(pos, kMid.size(), kMid) != 0) return false;
  pos += kMid.size();
  if (!parse_index(cn, pos, expert)) return false;
  const std::string tail = cn.substr(pos);
  if (tail != ".up_proj.weight" && tail != ".down_proj.weight") return false;
  out.layer = layer;
  out.expert = expert;
  out.fused = fmt::format("backbone.layers.{}.mixer.experts.{}", layer, tail == ".up_proj.weight" ? "up_proj" : "down_proj");
  return true;
}

/// " (layer 3, a moe layer)" for a layer tensor, "" for the globals.
std::string layer_note(const tensor_entry& e, const model_config& c) {
  if (e.layer < 0) return {};
  return fmt::format(" (layer {}, a {} layer)", e.layer, kind_info(c.layers[static_cast<std::size_t>(e.layer)]).name);
}

/// Weights with every tensor slot of `c` (empty tensors), laid out as model_tensors(c) says.
model_weights empty_layout(const model_config& c) {
  model_weights w;
  w.globals.resize(global_tensor_specs().size());
  w.layers.resize(static_cast<std::size_t>(c.num_layers()));
  for (int i = 0; i < c.num_layers(); ++i) {
    layer_weights& l = w.layers[static_cast<std::size_t>(i)];
    l.kind = c.layers[static_cast<std::size_t>(i)];
    l.tensors.resize(layer_tensor_specs(l.kind).size());
  }
  return w;
}

/// A tied lm_head: the embeddings under lm_head's name.
host_tensor tied_copy(const model_weights& w, const tensor_entry& e) {
  host_tensor t = w.embeddings();
  t.rename(e.name);
  return t;
}

// ---- synthetic values -----------------------------------------------------------------------

/// Fills n bf16 values: normal(0, scale) or uniform(-scale, scale), from the stream of tensor
/// `name`, element by element as model/synthetic_draw.hpp defines them (the GPU fill,
/// kernels/synthetic_fill.cu, computes the same values). Threads split the blocks of 2^16
/// values; the result does not depend on their number.
void fill_bf16(std::uint64_t seed, const std::string& name, std::uint16_t* out, std::size_t n, bool normal,
               double scale, int threads) {
  const std::uint64_t base = tensor_seed(seed, name);
  constexpr std::size_t kBlock = synth::kBlock;
  const std::size_t nblocks = (n + kBlock - 1) / kBlock;
  auto work = [&](std::size_t b0, std::size_t b1) {
    for (std::size_t i = b0 * kBlock, hi = std::min(n, b1 * kBlock); i < hi;) {
      if (normal) {
        float v0 = 0, v1 = 0;
        synth::normal_pair(base, i / 2, scale, v0, v1);
        out[i++] = synth::bf16_bits(v0);
        if (i < hi) out[i++] = synth::bf16_bits(v1);
      } else {
        out[i] = synth::bf16_bits(synth::uniform_at(base, i, scale));
        ++i;
      }
    }
  };
  int nt = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  nt = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(nt), nblocks));
  if (nt <= 1) {
    work(0, nblocks);
  } else {
    std::vector<std::thread> pool;
    for (int t = 0; t < nt; ++t) {
      pool.emplace_back(work, nblocks * t / nt, nblocks * (t + 1) / nt);
    }
    for (auto& th : pool) th.join();
  }
}

/// normal(mean, stddev), one value per pair of uniforms (vectors: no blocks, no threads).
std::vector<float> fill_f32_normal(std::uint64_t seed, const std::string& name, std::size_t n, double mean,
                                   double stddev) {
  std::vector<float> out(n);
  splitmix64 s{tensor_seed(seed, name)};
  for (std::size_t i = 0; i < n; ++i) {
    const double u1 = s.uniform01(), u2 = s.uniform01();
    out[i] = static_cast<float>(mean + stddev * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  return out;
}

/// Stores float values in `t`'s dtype; fp32 tensors get bf16-representable values.
void store(host_tensor& t, const std::vector<float>& v) {
  switch (t.type()) {
    case dtype::bf16: {
      std::uint16_t* p = t.bf16();
      for (std::size_t i = 0; i < v.size(); ++i) p[i] = piecewise::float_to_bf16_bits(v[i]);
      break;
    }
    case dtype::f32: {
      float* p = t.f32();
      for (std::size_t i = 0; i < v.size(); ++i) p[i] = piecewise::bf16_bits_to_float(piecewise::float_to_bf16_bits(v[i]));
      break;
    }
    default:
      throw piecewise::config_error(
          fmt::format("synthetic_weights: tensor '{}': dtype {} not supported yet", t.name(), dtype_name(t.type())));
  }
}

/// One tensor drawn as its table entry says.
host_tensor draw(const model_config& c, const tensor_entry& e, std::uint64_t seed, const synthetic_options& opt) {
  host_tensor t(e.name, e.spec->type, e.shape);
  if (!e.in_checkpoint) return t;  // held as zeros
  const init_rule& r = e.spec->init;
  const auto n = static_cast<std::size_t>(t.numel());
  switch (r.how) {
    case init_rule::kind::normal:
    case init_rule::kind::uniform: {
      const bool normal = r.how == init_rule::kind::normal;
      if (t.type() == dtype::bf16) {
        fill_bf16(seed, e.name, t.bf16(), n, normal, r.scale(c), opt.threads);
      } else {
        std::vector<std::uint16_t> bits(n);
        fill_bf16(seed, e.name, bits.data(), n, normal, r.scale(c), opt.threads);
        std::vector<float> v(n);
        for (std::size_t i = 0; i < n; ++i) v[i] = piecewise::bf16_bits_to_float(bits[i]);
        store(t, v);
      }
      break;
    }
    case init_rule::kind::constant:
      store(t, opt.randomize_vectors && r.spread > 0 ? fill_f32_normal(seed, e.name, n, r.value, r.spread)
                                                     : std::vector<float>(n, static_cast<float>(r.value)));
      break;
    case init_rule::kind::special: {
      std::vector<float> v(n);
      splitmix64 s{tensor_seed(seed, e.name)};
      r.fill(c, s, opt.randomize_vectors, v.data(), n);
      store(t, v);
      break;
    }
  }
  return t;
}

}  // namespace

// ---- access -----------------------------------------------------------------------------------

const host_tensor& layer_weights::get(std::string_view suffix) const {
  const int i = layer_tensor_index(kind, suffix);
  if (i < 0 || static_cast<std::size_t>(i) >= tensors.size()) {
    throw piecewise::config_error(
        fmt::format("a {} layer has no tensor '{}' (or its weights are incomplete)", kind_info(kind).name, suffix));
  }
  return tensors[static_cast<std::size_t>(i)];
}

host_tensor& layer_weights::get(std::string_view suffix) {
  return const_cast<host_tensor&>(static_cast<const layer_weights&>(*this).get(suffix));
}

const host_tensor& model_weights::at(const tensor_entry& e) const {
  return e.layer < 0 ? globals.at(static_cast<std::size_t>(e.index))
                     : layers.at(static_cast<std::size_t>(e.layer)).tensors.at(static_cast<std::size_t>(e.index));
}

host_tensor& model_weights::at(const tensor_entry& e) {
  return const_cast<host_tensor&>(static_cast<const model_weights&>(*this).at(e));
}

std::vector<expected_tensor> expected_tensors(const model_config& c) {
  std::vector<expected_tensor> t;
  for (tensor_entry& e : model_tensors(c)) {
    if (e.in_checkpoint) t.push_back({std::move(e.name), std::move(e.shape), e.spec->type});
  }
  return t;
}

void model_weights::check_shapes(const model_config& c) const {
  if (static_cast<int>(layers.size()) != c.num_layers()) {
    throw piecewise::config_error(
        fmt::format("{}: weights have {} layers, the config has {}", c.name, layers.size(), c.num_layers()));
  }
  if (globals.size() != global_tensor_specs().size()) {
    throw piecewise::config_error(fmt::format("{}: weights have {} tensors outside the layers, the model has {}",
                                              c.name, globals.size(), global_tensor_specs().size()));
  }
  for (int i = 0; i < c.num_layers(); ++i) {
    const layer_weights& l = layers[static_cast<std::size_t>(i)];
    const layer_kind want = c.layers[static_cast<std::size_t>(i)];
    if (l.kind != want) {
      throw piecewise::config_error(fmt::format("{}: weights layer {} is {}, the config says {}", c.name, i,
                                                kind_info(l.kind).name, kind_info(want).name));
    }
    if (l.tensors.size() != layer_tensor_specs(want).size()) {
      throw piecewise::config_error(fmt::format("{}: weights layer {} has {} tensors, a {} layer has {}", c.name, i,
                                                l.tensors.size(), kind_info(want).name,
                                                layer_tensor_specs(want).size()));
    }
  }
  for (const tensor_entry& e : model_tensors(c)) {
    const host_tensor& t = at(e);
    if (t.name() != e.name) {
      throw piecewise::config_error(
          fmt::format("{}: weights hold '{}' where the model has '{}'", c.name, t.name(), e.name));
    }
    if (t.shape() != e.shape) {
      throw piecewise::config_error(fmt::format("{}: tensor '{}' has shape {}, the config needs {}", c.name, e.name,
                                                shape_str(t.shape()), shape_str(e.shape)));
    }
    const bool quantized_linear = e.spec->linear && dtype_is_quantized(t.type());
    if (t.type() != e.spec->type && !quantized_linear) {
      throw piecewise::config_error(fmt::format("{}: tensor '{}' has dtype {}, the model needs {}{}", c.name, e.name,
                                                dtype_name(t.type()), dtype_name(e.spec->type),
                                                e.spec->linear ? " (or a quantized format)" : ""));
    }
    if (dtype_is_quantized(t.type()) && !t.scales) {
      throw piecewise::config_error(
          fmt::format("{}: tensor '{}' is {} but has no scales", c.name, e.name, dtype_name(t.type())));
    }
  }
}

std::size_t model_weights::bytes() const noexcept {
  std::size_t b = 0;
  for (const auto& t : globals) b += t.bytes();
  for (const auto& l : layers) {
    for (const auto& t : l.tensors) b += t.bytes();
  }
  return b;
}

// ---- loading ----------------------------------------------------------------------------------

namespace {

/// plan_checkpoint's checks of a quantized checkpoint (see weights.hpp): fills plan.quant and
/// plan.quantization. `canon`: canonical -> original names of the weights; `sidecars`: the
/// scale tensors by the canonical weight they belong to.
void check_quantization(checkpoint_plan& plan, const model_config& c, const std::map<std::string, std::string>& canon,
                        const std::map<std::string, std::map<std::string, std::string>>& sidecars,
                        const std::filesystem::path& dir) {
  const checkpoint& ck = *plan.ck;
  std::error_code ec;
  plan.quantization = read_quant_config(std::filesystem::is_directory(dir, ec) ? dir : dir.parent_path());
  plan.quant.resize(plan.entries.size());
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < plan.entries.size(); ++i) index[plan.entries[i].name] = i;
  for (const auto& [weight, parts] : sidecars) {
    const auto it = index.find(weight);
    const std::string& one = parts.begin()->second;
    if (it == index.end()) {
      throw piecewise::config_error(fmt::format(
          "{}: scale tensor '{}' belongs to no weight of the model{}", plan.source, one,
          weight.find("mixer.experts.") != std::string::npos ? " (quantized routed experts are not supported yet)" : ""));
    }
    if (!canon.count(weight)) {
      throw piecewise::config_error(fmt::format("{}: scale tensor '{}' without its weight '{}'", plan.source, one, weight));
    }
  }
  std::size_t kv_scales = 0;
  for (std::size_t i = 0; i < plan.entries.size(); ++i) {
    const tensor_entry& e = plan.entries[i];
    checkpoint_plan::quantized_entry& q = plan.quant[i];
    q.type = e.spec->type;
    const auto [file, info] = plan.items[i];
    if (info == nullptr || !e.spec->linear) continue;
    const std::string& orig = canon.at(e.name);
    const std::string module = module_of(orig);
    const std::string where = file->path().string();
    const std::string note = layer_note(e, c);
    const bool quantized = is_quantized_storage(info->dtype);
    const quant_algo algo = plan.quantization ? plan.quantization->algo_of(module) : quant_algo::none;
    if (quantized && !plan.quantization) {
      throw piecewise::config_error(fmt::format(
          "{}: tensor '{}' is {} but the checkpoint declares no quantization (no hf_quant_config.json, no "
          "quantization_config in config.json){}",
          where, orig, st_dtype_name(info->dtype), note));
    }
    if (quantized != (algo != quant_algo::none) || (quantized && info->dtype != stored_as(algo))) {
      throw piecewise::config_error(fmt::format("{}: tensor '{}' is {} but {} declares {} for module '{}'{}", where, orig,
                                                st_dtype_name(info->dtype), plan.quantization->source, to_string(algo),
                                                module, note));
    }
    if (quantized) q.type = info->dtype == st_dtype::f8_e4m3 ? dtype::fp8_e4m3 : dtype::nvfp4;
    const auto sc = sidecars.find(e.name);
    const std::map<std::string, std::string> none;
    const auto& parts = sc == sidecars.end() ? none : sc->second;
    // Which scales this weight needs and may have.
    std::vector<std::string> need, allowed;
    if (q.type == dtype::fp8_e4m3) need = {"weight_scale", "input_scale"};
    if (q.type == dtype::nvfp4) {
      need = {"weight_scale", "weight_scale_2"};
      allowed = {"input_scale"};
    }
    const std::string proj = e.spec->suffix;
    if (proj == "mixer.k_proj.weight") allowed.push_back("k_scale");
    if (proj == "mixer.v_proj.weight") allowed.push_back("v_scale");
    for (const std::string& n : need) {
      if (!parts.count(n)) {
        throw piecewise::config_error(fmt::format("{}: tensor '{}' is {} ({}) but '{}.{}' is missing{}", where, orig,
                                                  st_dtype_name(info->dtype), to_string(algo), module, n, note));
      }
    }
    for (const auto& [suffix, name] : parts) {
      const bool ok = std::find(need.begin(), need.end(), suffix) != need.end() ||
                      std::find(allowed.begin(), allowed.end(), suffix) != allowed.end();
      if (!ok) {
        throw piecewise::config_error(fmt::format("{}: scale tensor '{}' does not belong with a {} weight{}", plan.source,
                                                  name, dtype_name(q.type), note));
      }
      auto [sf, si] = ck.find(name);
      const bool block = q.type == dtype::nvfp4 && suffix == "weight_scale";
      if (block) {
        constexpr int B = quant::kNvfp4Block;
        const std::vector<std::int64_t> want{e.shape[0], e.shape[1] / B};
        if (e.shape[1] % B != 0 || si->dtype != st_dtype::f8_e4m3 || si->shape != want) {
          throw piecewise::config_error(fmt::format(
              "{}: tensor '{}' is {} {}, NVFP4 block scales of a [{}, {}] weight must be F8_E4M3 [{}, {}]{}{}",
              sf->path().string(), name, st_dtype_name(si->dtype), shape_str(si->shape), e.shape[0], e.shape[1],
              e.shape[0], e.shape[1] / B, e.shape[1] % B ? " (and its rows a multiple of 16 long)" : "", note));
        }
      } else if (si->numel() != 1 || si->dtype == st_dtype::u8) {
        throw piecewise::config_error(fmt::format("{}: tensor '{}' is {} {}, a scale must be one number{}",
                                                  sf->path().string(), name, st_dtype_name(si->dtype),
                                                  shape_str(si->shape), note));
      }
      if (suffix == "k_scale" || suffix == "v_scale") ++kv_scales;
      q.scales[suffix] = {sf, si};
    }
  }
  if (kv_scales > 0) {
    plan.notes.push_back(fmt::format("{}: {} FP8 KV-cache scale{} (k_scale / v_scale): not used yet, the KV cache stays bf16",
                                     plan.source, kv_scales, kv_scales == 1 ? "" : "s"));
  }
}

}  // namespace

checkpoint_plan plan_checkpoint(const std::filesystem::path& dir, const model_config& c) {
  c.validate();
  checkpoint_plan plan;
  plan.ck = std::make_unique<checkpoint>(dir);
  const checkpoint& ck = *plan.ck;
  plan.source = ck.source().string();
  const std::string& src = plan.source;

  // canonical name -> original name
  std::map<std::string, std::string> canon;
  std::vector<std::string> unexpected;
  std::size_t mtp = 0;
  for (const std::string& n : ck.names()) {
    if (is_mtp_tensor(n)) {
      ++mtp;  // multi-token prediction: accepted, not used
      continue;
    }
    const std::string cn = canonical_name(n);
    if (cn.empty()) {
      unexpected.push_back(n);
      continue;
    }
    auto [it, inserted] = canon.emplace(cn, n);
    if (!inserted) {
      throw piecewise::config_error(
          fmt::format("{}: tensor '{}' is given twice (as '{}' and '{}')", src, cn, it->second, n));
    }
  }

  // ModelOpt's scale tensors, by the canonical weight they belong to (checked below, once the
  // weights themselves are known to be right).
  std::map<std::string, std::map<std::string, std::string>> sidecars;  // weight -> suffix -> original
  for (auto it = canon.begin(); it != canon.end();) {
    std::string weight, suffix;
    if (split_scale_name(it->first, weight, suffix)) {
      sidecars[weight][suffix] = it->second;
      it = canon.erase(it);
    } else {
      ++it;
    }
  }

  if (mtp > 0) {
    plan.notes.push_back(fmt::format("{}: {} multi-token-prediction tensor{} (mtp.*) in the checkpoint, not used",
                                     src, mtp, mtp == 1 ? "" : "s"));
  }

  plan.entries = model_tensors(c);
  const std::vector<tensor_entry>& entries = plan.entries;
  std::map<std::string, const tensor_entry*> want;
  for (const auto& e : entries) {
    if (e.in_checkpoint) want[e.name] = &e;
  }
  // Routed experts stored one tensor per expert: fused canonical name -> expert -> original
  // name. A piece of a tensor the config does not have (no such MoE layer, expert index out of
  // range) stays in `canon` and is reported as unexpected below.
  std::map<std::string, std::vector<std::string>> pieces;
  for (auto it = canon.begin(); it != canon.end();) {
    expert_piece ep;
    if (parse_expert_piece(it->first, ep)) {
      auto w = want.find(ep.fused);
      if (w != want.end() && ep.expert < w->second->shape[0]) {
        auto& v = pieces[ep.fused];
        v.resize(static_cast<std::size_t>(w->second->shape[0]));
        v[static_cast<std::size_t>(ep.expert)] = it->second;
        it = canon.erase(it);
        continue;
      }
    }
    ++it;
  }
  for (const auto& [fused, parts] : pieces) {
    if (canon.count(fused)) {
      std::string one;
      for (const auto& p : parts) {
        if (!p.empty()) {
          one = p;
          break;
        }
      }
      throw piecewise::config_error(
          fmt::format("{}: tensor '{}' is given twice (as the fused '{}' and one tensor per expert, e.g. '{}'){}", src,
                      fused, canon.at(fused), one, layer_note(*want.at(fused), c)));
    }
  }
  for (const auto& [cn, orig] : canon) {
    if (!want.count(cn)) unexpected.push_back(orig);
  }
  if (!unexpected.empty()) {
    std::sort(unexpected.begin(), unexpected.end());
    std::string list;
    for (std::size_t i = 0; i < std::min<std::size_t>(5, unexpected.size()); ++i) {
      list += (i ? ", '" : "'") + unexpected[i] + "'";
    }
    if (unexpected.size() > 5) list += fmt::format(" and {} more", unexpected.size() - 5);
    throw piecewise::config_error(fmt::format("{}: {} unexpected tensor{} for config {} (pattern \"{}\"): {}", src,
                                              unexpected.size(), unexpected.size() == 1 ? "" : "s", c.name,
                                              c.pattern, list));
  }
  std::vector<std::string> missing;
  for (const auto& e : entries) {
    if (!e.in_checkpoint || canon.count(e.name)) continue;
    if (e.spec->tied_to_embeddings && c.tie_word_embeddings) continue;
    auto p = pieces.find(e.name);
    if (p == pieces.end()) {
      missing.push_back(fmt::format("'{}' {}{}", e.name, shape_str(e.shape), layer_note(e, c)));
      continue;
    }
    // One tensor per expert: every expert must be there.
    const std::vector<std::int64_t> one(e.shape.begin() + 1, e.shape.end());
    const std::string proj = e.name.substr(e.name.rfind('.') + 1);  // up_proj / down_proj
    for (std::size_t x = 0; x < p->second.size(); ++x) {
      if (!p->second[x].empty()) continue;
      missing.push_back(fmt::format("'{}mixer.experts.{}.{}.weight' {} (layer {}, expert {} of {})",
                                    layer_prefix(e.layer), x, proj, shape_str(one), e.layer, x, p->second.size()));
    }
  }
  if (!missing.empty()) {
    std::string list;
    for (std::size_t i = 0; i < std::min<std::size_t>(5, missing.size()); ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 5) list += fmt::format(" and {} more", missing.size() - 5);
    throw piecewise::config_error(fmt::format("{}: {} missing tensor{} for config {}: {}", src, missing.size(),
                                              missing.size() == 1 ? "" : "s", c.name, list));
  }

  // Look up one checkpoint tensor `orig` standing for (part of) entry `e`, check its shape
  // (`shape`); returns the file and entry.
  auto check = [&](const std::string& orig, const tensor_entry& e, const std::vector<std::int64_t>& shape) {
    auto [file, info] = ck.find(orig);
    if (info->shape != shape) {
      throw piecewise::config_error(fmt::format("{}: tensor '{}' has shape {} but the config expects {}{}",
                                                file->path().string(), orig, shape_str(info->shape),
                                                shape_str(shape), layer_note(e, c)));
    }
    return std::pair{file, info};
  };
  // A quantized tensor must be a linear weight; NVFP4 (U8) stores two elements a byte.
  auto lookup = [&](const std::string& cn) {
    const tensor_entry& e = *want.at(cn);
    const std::string& orig = canon.at(cn);
    auto [file, info] = ck.find(orig);
    if (is_quantized_storage(info->dtype)) {
      if (e.name.find("mixer.experts.") != std::string::npos) {
        throw piecewise::config_error(fmt::format("{}: tensor '{}' is {}: quantized routed experts are not supported yet{}",
                                                  file->path().string(), orig, st_dtype_name(info->dtype), layer_note(e, c)));
      }
      if (!e.spec->linear) {
        throw piecewise::config_error(fmt::format("{}: tensor '{}' is {}, but only linear weights can be quantized{}",
                                                  file->path().string(), orig, st_dtype_name(info->dtype), layer_note(e, c)));
      }
    }
    return check(orig, e, stored_shape(e.shape, info->dtype == st_dtype::u8));
  };
  // Check every shape before reading any data (fail fast on a wrong config), and the dtypes
  // the model can store.
  for (const auto& [cn, orig] : canon) (void)lookup(cn);
  plan.items.resize(entries.size());
  plan.pieces.resize(entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const tensor_entry& e = entries[i];
    if (!e.in_checkpoint) continue;
    const auto p = pieces.find(e.name);
    if (!canon.count(e.name) && p == pieces.end()) continue;
    PIECEWISE_EXPECTS(e.spec->type == dtype::bf16 || e.spec->type == dtype::f32,
                      "{}: tensor '{}': dtype {} not supported yet", src, e.name, dtype_name(e.spec->type));
    if (p == pieces.end()) {
      plan.items[i] = lookup(e.name);
      continue;
    }
    const std::vector<std::int64_t> one(e.shape.begin() + 1, e.shape.end());
    for (const std::string& orig : p->second) {
      plan.pieces[i].push_back(check(orig, e, one));
      if (is_quantized_storage(plan.pieces[i].back().second->dtype)) {
        throw piecewise::config_error(fmt::format("{}: tensor '{}' is {}: quantized routed experts are not supported yet{}",
                                                  plan.pieces[i].back().first->path().string(), orig,
                                                  st_dtype_name(plan.pieces[i].back().second->dtype), layer_note(e, c)));
      }
    }
  }
  check_quantization(plan, c, canon, sidecars, dir);
  return plan;
}

checkpoint_summary check_checkpoint(const std::filesystem::path& dir, const model_config& c) {
  const checkpoint_plan plan = plan_checkpoint(dir, c);
  checkpoint_summary s;
  s.source = plan.ck->source();
  s.shards = plan.ck->num_shards();
  for (const auto& [file, info] : plan.items) {
    if (file == nullptr) continue;
    ++s.tensors;
    s.file_bytes += info->nbytes();
  }
  for (const auto& parts : plan.pieces) {
    for (const auto& [file, info] : parts) {
      ++s.tensors;
      s.file_bytes += info->nbytes();
    }
  }
  s.notes = plan.notes;
  for (const auto& q : plan.quant) s.types.push_back(q.type);
  s.quantization = plan.quantization;
  return s;
}

std::vector<std::optional<tensor_scales>> read_checkpoint_scales(const checkpoint_plan& plan, const model_config& c) {
  std::vector<std::optional<tensor_scales>> out(plan.entries.size());
  for (std::size_t i = 0; i < plan.entries.size(); ++i) {
    const checkpoint_plan::quantized_entry& q = plan.quant[i];
    if (!dtype_is_quantized(q.type)) continue;
    const tensor_entry& e = plan.entries[i];
    tensor_scales s;
    auto scalar = [&](const char* suffix) {
      const auto [file, info] = q.scales.at(suffix);
      const float v = file->read_f32(*info)[0];
      if (!std::isfinite(v) || !(v > 0)) {
        throw piecewise::config_error(fmt::format("{}: tensor '{}' = {}: a scale must be finite and positive{}",
                                                  file->path().string(), info->name, v, layer_note(e, c)));
      }
      return v;
    };
    if (q.type == dtype::fp8_e4m3) {
      s.global = scalar("weight_scale");
      s.input = scalar("input_scale");
    } else {
      s.global = scalar("weight_scale_2");
      if (q.scales.count("input_scale")) s.input = scalar("input_scale");
      const auto [file, info] = q.scales.at("weight_scale");
      s.block_shape = info->shape;
      s.block = file->read_raw(*info);
      for (std::size_t k = 0; k < s.block.size(); ++k) {
        const float b = quant::e4m3_to_float(s.block[k]);  // -0 is a zero block
        if (std::isnan(b) || b < 0) {
          throw piecewise::config_error(fmt::format(
              "{}: tensor '{}': block scale {} (row {}, block {}) is {}: block scales must be finite and not negative{}",
              file->path().string(), info->name, k, k / static_cast<std::size_t>(info->shape[1]),
              k % static_cast<std::size_t>(info->shape[1]), std::isnan(b) ? "NaN" : "negative", layer_note(e, c)));
        }
      }
    }
    out[i] = std::move(s);
  }
  return out;
}

model_weights load_weights(const std::filesystem::path& dir, const model_config& c) {
  const checkpoint_plan plan = plan_checkpoint(dir, c);
  // Every scale is read and checked before any weight.
  std::vector<std::optional<tensor_scales>> scales = read_checkpoint_scales(plan, c);

  model_weights w = empty_layout(c);
  for (std::size_t i = 0; i < plan.entries.size(); ++i) {
    const tensor_entry& e = plan.entries[i];
    host_tensor& t = w.at(e);
    const auto [file, info] = plan.items[i];
    if (scales[i]) {
      t = host_tensor(e.name, plan.quant[i].type, e.shape);
      const std::vector<std::uint8_t> raw = file->read_raw(*info);
      PIECEWISE_EXPECTS(raw.size() == t.data_bytes(), "{}: tensor '{}' holds {} bytes, {} {} needs {}",
                        file->path().string(), info->name, raw.size(), dtype_name(t.type()), shape_str(e.shape),
                        t.data_bytes());
      std::memcpy(t.data(), raw.data(), raw.size());
      t.scales = std::move(scales[i]);
    } else if (file != nullptr) {
      t = host_tensor(e.name, e.spec->type, e.shape);
      if (t.type() == dtype::bf16) file->read_bf16(*info, t.bf16());
      else file->read_f32(*info, t.f32());
    } else if (!plan.pieces[i].empty()) {
      // One checkpoint tensor per expert, stacked along the first axis.
      t = host_tensor(e.name, e.spec->type, e.shape);
      const auto per = static_cast<std::size_t>(t.numel()) / plan.pieces[i].size();
      for (std::size_t x = 0; x < plan.pieces[i].size(); ++x) {
        const auto [pf, pinfo] = plan.pieces[i][x];
        if (t.type() == dtype::bf16) pf->read_bf16(*pinfo, t.bf16() + x * per);
        else pf->read_f32(*pinfo, t.f32() + x * per);
      }
    } else if (e.spec->tied_to_embeddings && c.tie_word_embeddings) {
      t = tied_copy(w, e);
    } else {
      t = host_tensor(e.name, e.spec->type, e.shape);  // not in this config's checkpoint: zeros
    }
  }
  w.check_shapes(c);
  for (const std::string& n : plan.notes) fmt::print(stderr, "info: {}\n", n);
  return w;
}

// ---- synthetic --------------------------------------------------------------------------------

model_weights synthetic_weights(const model_config& c, std::uint64_t seed, const synthetic_options& opt) {
  c.validate();
  model_weights w = empty_layout(c);
  for (const tensor_entry& e : model_tensors(c)) {
    w.at(e) = e.spec->tied_to_embeddings && c.tie_word_embeddings ? tied_copy(w, e) : draw(c, e, seed, opt);
  }
  return w;
}

host_tensor synthetic_tensor(const model_config& c, const tensor_entry& e, std::uint64_t seed,
                             const synthetic_options& opt) {
  return draw(c, e, seed, opt);
}

// ---- saving -----------------------------------------------------------------------------------

void save_checkpoint(const std::filesystem::path& dir, const model_config& c, const tensor_bytes_fn& fetch,
                     const std::string& prefix, bool omit_tied_lm_head) {
  c.validate();
  std::vector<const tensor_entry*> kept;
  std::vector<st_tensor_info> infos;
  const std::vector<tensor_entry> entries = model_tensors(c);
  for (const tensor_entry& e : entries) {
    if (!e.in_checkpoint) continue;
    if (e.spec->tied_to_embeddings && c.tie_word_embeddings && omit_tied_lm_head) continue;
    st_dtype st = st_dtype::bf16;
    switch (e.spec->type) {
      case dtype::bf16: st = st_dtype::bf16; break;
      case dtype::f32: st = st_dtype::f32; break;
      default:
        throw piecewise::config_error(
            fmt::format("save_weights: tensor '{}': dtype {} not supported yet", e.name, dtype_name(e.spec->type)));
    }
    const std::string name = saved_name(e.name, prefix);
    kept.push_back(&e);
    infos.push_back({name, st, e.shape, 0, 0});
  }
  const std::vector<std::uint8_t> header = safetensors_header(infos, {{"format", "pt"}});
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::filesystem::path path = dir / "model.safetensors";
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw piecewise::config_error(fmt::format("{}: cannot open for writing", path.string()));
  f.write(reinterpret_cast<const char*>(header.data()), static_cast<std::streamsize>(header.size()));
  std::vector<std::uint8_t> buf;
  for (std::size_t i = 0; i < kept.size(); ++i) {
    buf.resize(static_cast<std::size_t>(infos[i].nbytes()));
    fetch(*kept[i], buf.data(), buf.size());
    f.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
    if (!f) throw piecewise::config_error(fmt::format("{}: write failed at tensor '{}'", path.string(), infos[i].name));
  }
  f.close();
  if (!f) throw piecewise::config_error(fmt::format("{}: write failed", path.string()));
}

namespace {

/// The algorithm a quantized host tensor was made with.
quant_algo algo_of_tensor(const host_tensor& t) {
  if (t.type() == dtype::fp8_e4m3) return quant_algo::fp8;
  if (t.type() == dtype::nvfp4) return t.scales && t.scales->input > 0 ? quant_algo::nvfp4 : quant_algo::w4a16_nvfp4;
  return quant_algo::none;
}

/// A little-endian fp32 scalar tensor.
st_write_tensor scalar_tensor(std::string name, float v) {
  return make_tensor_from_floats(std::move(name), {}, {v}, st_dtype::f32);
}

/// save_weights for weights with quantized linear tensors: ModelOpt's layout and an
/// hf_quant_config.json declaring it.
void save_quantized(const std::filesystem::path& dir, const model_config& c, const model_weights& w,
                    const std::string& prefix, bool omit_tied_lm_head) {
  std::vector<st_write_tensor> out;
  std::map<std::string, quant_algo> quantized;  // module -> algorithm
  std::vector<std::string> kept_bf16;           // linear modules left unquantized
  for (const tensor_entry& e : model_tensors(c)) {
    if (!e.in_checkpoint) continue;
    if (e.spec->tied_to_embeddings && c.tie_word_embeddings && omit_tied_lm_head) continue;
    const host_tensor& t = w.at(e);
    const std::string name = saved_name(e.name, prefix);
    const std::string module = module_of(name);
    const quant_algo a = algo_of_tensor(t);
    if (a == quant_algo::none) {
      st_write_tensor x{name, t.type() == dtype::f32 ? st_dtype::f32 : st_dtype::bf16, t.shape(),
                        std::vector<std::uint8_t>(t.data(), t.data() + t.data_bytes())};
      out.push_back(std::move(x));
      if (e.spec->linear) kept_bf16.push_back(module);
      continue;
    }
    quantized[module] = a;
    out.push_back({name, t.type() == dtype::fp8_e4m3 ? st_dtype::f8_e4m3 : st_dtype::u8,
                   stored_shape(t.shape(), t.type() == dtype::nvfp4),
                   std::vector<std::uint8_t>(t.data(), t.data() + t.data_bytes())});
    if (t.type() == dtype::fp8_e4m3) {
      out.push_back(scalar_tensor(module + ".weight_scale", t.scales->global));
    } else {
      out.push_back({module + ".weight_scale", st_dtype::f8_e4m3, t.scales->block_shape, t.scales->block});
      out.push_back(scalar_tensor(module + ".weight_scale_2", t.scales->global));
    }
    if (t.scales->input > 0) out.push_back(scalar_tensor(module + ".input_scale", t.scales->input));
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  write_safetensors(dir / "model.safetensors", out, {{"format", "pt"}});

  nlohmann::json q;
  std::set<quant_algo> algos;
  for (const auto& [m, a] : quantized) algos.insert(a);
  if (algos.size() == 1) {
    q["quant_algo"] = std::string(to_string(*algos.begin()));
    q["exclude_modules"] = kept_bf16;
  } else {
    q["quant_algo"] = "MIXED_PRECISION";
    nlohmann::json layers = nlohmann::json::object();
    for (const auto& [m, a] : quantized) layers[m] = {{"quant_algo", std::string(to_string(a))}};
    q["quantized_layers"] = layers;
  }
  if (algos.count(quant_algo::nvfp4) || algos.count(quant_algo::w4a16_nvfp4)) q["group_size"] = 16;
  const nlohmann::json root = {{"producer", {{"name", "piecewise nemotron_h save_weights"}}}, {"quantization", q}};
  const std::filesystem::path path = dir / "hf_quant_config.json";
  std::ofstream f(path, std::ios::trunc);
  f << root.dump(2) << "\n";
  f.close();
  if (!f) throw piecewise::config_error(fmt::format("{}: write failed", path.string()));
}

}  // namespace

void save_weights(const std::filesystem::path& dir, const model_config& c, const model_weights& w,
                  const std::string& prefix, bool omit_tied_lm_head) {
  w.check_shapes(c);
  bool any_quantized = false;
  for (const tensor_entry& e : model_tensors(c)) any_quantized |= dtype_is_quantized(w.at(e).type());
  if (any_quantized) {
    save_quantized(dir, c, w, prefix, omit_tied_lm_head);
    return;
  }
  save_checkpoint(
      dir, c,
      [&](const tensor_entry& e, std::uint8_t* out, std::size_t bytes) {
        const host_tensor& t = w.at(e);
        PIECEWISE_EXPECTS(t.data_bytes() == bytes, "save_weights: tensor '{}' holds {} bytes, the file needs {}",
                          e.name, t.data_bytes(), bytes);
        if (bytes) std::memcpy(out, t.data(), bytes);
      },
      prefix, omit_tied_lm_head);
}

}  // namespace nemotron_h
