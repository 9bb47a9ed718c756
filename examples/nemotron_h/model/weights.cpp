// NemotronH host weights: checkpoint loading with strict name/shape checks, synthetic init,
// all driven by the layer-kind table (model/layer_kinds.hpp).
#include "model/weights.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <thread>

#include "model/messages.hpp"
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
  auto lookup = [&](const std::string& cn) { return check(canon.at(cn), *want.at(cn), want.at(cn)->shape); };
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
    for (const std::string& orig : p->second) plan.pieces[i].push_back(check(orig, e, one));
  }
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
  return s;
}

model_weights load_weights(const std::filesystem::path& dir, const model_config& c) {
  const checkpoint_plan plan = plan_checkpoint(dir, c);

  model_weights w = empty_layout(c);
  for (std::size_t i = 0; i < plan.entries.size(); ++i) {
    const tensor_entry& e = plan.entries[i];
    host_tensor& t = w.at(e);
    const auto [file, info] = plan.items[i];
    if (file != nullptr) {
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
    const std::string name = e.name.rfind("backbone.", 0) == 0 ? prefix + e.name.substr(9) : e.name;
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

void save_weights(const std::filesystem::path& dir, const model_config& c, const model_weights& w,
                  const std::string& prefix, bool omit_tied_lm_head) {
  w.check_shapes(c);
  for (const tensor_entry& e : model_tensors(c)) {
    const host_tensor& t = w.at(e);
    if (t.type() != dtype::bf16 && t.type() != dtype::f32) {
      throw piecewise::config_error(
          fmt::format("save_weights: tensor '{}': dtype {} not supported yet", e.name, dtype_name(t.type())));
    }
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
