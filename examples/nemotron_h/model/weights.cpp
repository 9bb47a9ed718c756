// NemotronH host weights: checkpoint loading with strict name/shape checks, synthetic init.
#include "model/weights.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <thread>

#include "model/messages.hpp"
#include "model/safetensors.hpp"
#include "piecewise/element_type.hpp"
#include "piecewise/error.hpp"

namespace nemotron_h {

namespace {

std::string layer_prefix(int i) { return fmt::format("backbone.layers.{}.", i); }

/// The canonical name of a checkpoint tensor name, or "" when its prefix is not recognised.
std::string canonical_name(const std::string& n) {
  if (n == "lm_head.weight") return n;
  std::string rest;
  if (n.rfind("backbone.", 0) == 0) rest = n.substr(9);
  else if (n.rfind("model.", 0) == 0) rest = n.substr(6);
  else return {};
  if (rest == "embedding.weight") rest = "embeddings.weight";
  return "backbone." + rest;
}

// ---- deterministic RNG ----------------------------------------------------------------------

std::uint64_t splitmix64(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  std::uint64_t s = a ^ (b * 0xd6e8feb86659fd93ull);
  splitmix64(s);
  return splitmix64(s);
}

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

/// Uniform in (0, 1].
double uniform01(std::uint64_t& s) { return (static_cast<double>(splitmix64(s) >> 11) + 1.0) * 0x1.0p-53; }

enum class fill_kind { normal, uniform };

/// Fills n values: normal(0, scale) or uniform(-scale, scale), from a stream named `name`.
/// Blocks of 2^16 values have their own sub-stream, so the result is independent of threads.
std::vector<bf16_bits> fill_bf16(std::uint64_t seed, const std::string& name, std::size_t n, fill_kind kind,
                                 double scale, int threads) {
  std::vector<bf16_bits> out(n);
  const std::uint64_t base = mix(seed, fnv1a(name));
  constexpr std::size_t kBlock = std::size_t(1) << 16;
  const std::size_t nblocks = (n + kBlock - 1) / kBlock;
  auto work = [&](std::size_t b0, std::size_t b1) {
    for (std::size_t b = b0; b < b1; ++b) {
      std::uint64_t s = mix(base, b);
      const std::size_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
      for (std::size_t i = lo; i < hi;) {
        if (kind == fill_kind::normal) {
          const double u1 = uniform01(s), u2 = uniform01(s);
          const double r = std::sqrt(-2.0 * std::log(u1));
          const double t = 6.283185307179586 * u2;
          out[i++] = piecewise::float_to_bf16_bits(static_cast<float>(scale * r * std::cos(t)));
          if (i < hi) out[i++] = piecewise::float_to_bf16_bits(static_cast<float>(scale * r * std::sin(t)));
        } else {
          out[i++] = piecewise::float_to_bf16_bits(static_cast<float>(scale * (2.0 * uniform01(s) - 1.0)));
        }
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
  return out;
}

std::vector<float> fill_f32_normal(std::uint64_t seed, const std::string& name, std::size_t n, double mean,
                                   double stddev) {
  std::vector<float> out(n);
  std::uint64_t s = mix(seed, fnv1a(name));
  for (std::size_t i = 0; i < n; ++i) {
    const double u1 = uniform01(s), u2 = uniform01(s);
    out[i] = static_cast<float>(mean + stddev * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }
  return out;
}

std::vector<bf16_bits> constant_bf16(std::size_t n, float v) { return std::vector<bf16_bits>(n, piecewise::float_to_bf16_bits(v)); }

std::vector<bf16_bits> to_bf16(const std::vector<float>& v) {
  std::vector<bf16_bits> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = piecewise::float_to_bf16_bits(v[i]);
  return out;
}

}  // namespace

std::vector<expected_tensor> expected_tensors(const model_config& c) {
  using S = std::vector<std::int64_t>;
  const std::int64_t D = c.hidden_size, V = c.vocab_size;
  std::vector<expected_tensor> t;
  t.push_back({"backbone.embeddings.weight", S{V, D}});
  for (int i = 0; i < c.num_layers(); ++i) {
    const std::string p = layer_prefix(i);
    t.push_back({p + "norm.weight", S{D}});
    switch (c.layers[i]) {
      case layer_kind::mamba: {
        const std::string m = p + "mixer.";
        t.push_back({m + "in_proj.weight", S{c.in_proj_dim(), D}});
        t.push_back({m + "conv1d.weight", S{c.conv_dim(), 1, c.conv_kernel}});
        if (c.use_conv_bias) t.push_back({m + "conv1d.bias", S{c.conv_dim()}});
        t.push_back({m + "A_log", S{c.mamba_num_heads}});
        t.push_back({m + "D", S{c.mamba_num_heads}});
        t.push_back({m + "dt_bias", S{c.mamba_num_heads}});
        t.push_back({m + "norm.weight", S{c.d_inner()}});
        t.push_back({m + "out_proj.weight", S{D, c.d_inner()}});
        break;
      }
      case layer_kind::attention: {
        const std::string m = p + "mixer.";
        t.push_back({m + "q_proj.weight", S{c.q_dim(), D}});
        t.push_back({m + "k_proj.weight", S{c.kv_dim(), D}});
        t.push_back({m + "v_proj.weight", S{c.kv_dim(), D}});
        t.push_back({m + "o_proj.weight", S{D, c.q_dim()}});
        break;
      }
      case layer_kind::mlp: {
        const std::string m = p + "mixer.";
        t.push_back({m + "up_proj.weight", S{c.intermediate_size, D}});
        t.push_back({m + "down_proj.weight", S{D, c.intermediate_size}});
        break;
      }
    }
  }
  t.push_back({"backbone.norm_f.weight", S{D}});
  t.push_back({"lm_head.weight", S{V, D}});
  return t;
}

void model_weights::check_shapes(const model_config& c) const {
  auto need = [&](std::size_t got, std::int64_t want, int layer, const char* what) {
    if (static_cast<std::int64_t>(got) != want) {
      throw piecewise::config_error(fmt::format("{}: weights {}{} hold {} values, the config needs {}", c.name,
                                                layer >= 0 ? fmt::format("layer {} ", layer) : std::string(), what,
                                                got, want));
    }
  };
  const std::int64_t D = c.hidden_size, V = c.vocab_size;
  need(embeddings.size(), V * D, -1, "embeddings");
  need(norm_f.size(), D, -1, "norm_f");
  need(lm_head.size(), V * D, -1, "lm_head");
  if (static_cast<int>(layers.size()) != c.num_layers()) {
    throw piecewise::config_error(
        fmt::format("{}: weights have {} layers, the config has {}", c.name, layers.size(), c.num_layers()));
  }
  for (int i = 0; i < c.num_layers(); ++i) {
    const layer_weights& l = layers[i];
    if (l.kind != c.layers[i]) {
      throw piecewise::config_error(fmt::format("{}: weights layer {} is {}, the config says {}", c.name, i,
                                                layer_kind_name(l.kind), layer_kind_name(c.layers[i])));
    }
    need(l.norm.size(), D, i, "norm");
    switch (l.kind) {
      case layer_kind::mamba:
        need(l.mamba.in_proj.size(), std::int64_t(c.in_proj_dim()) * D, i, "in_proj");
        need(l.mamba.conv_w.size(), std::int64_t(c.conv_dim()) * c.conv_kernel, i, "conv1d.weight");
        need(l.mamba.conv_b.size(), c.conv_dim(), i, "conv1d.bias");
        need(l.mamba.A_log.size(), c.mamba_num_heads, i, "A_log");
        need(l.mamba.D.size(), c.mamba_num_heads, i, "D");
        need(l.mamba.dt_bias.size(), c.mamba_num_heads, i, "dt_bias");
        need(l.mamba.norm.size(), c.d_inner(), i, "mixer.norm");
        need(l.mamba.out_proj.size(), D * c.d_inner(), i, "out_proj");
        break;
      case layer_kind::attention:
        need(l.attn.q_proj.size(), std::int64_t(c.q_dim()) * D, i, "q_proj");
        need(l.attn.k_proj.size(), std::int64_t(c.kv_dim()) * D, i, "k_proj");
        need(l.attn.v_proj.size(), std::int64_t(c.kv_dim()) * D, i, "v_proj");
        need(l.attn.o_proj.size(), D * c.q_dim(), i, "o_proj");
        break;
      case layer_kind::mlp:
        need(l.mlp.up_proj.size(), std::int64_t(c.intermediate_size) * D, i, "up_proj");
        need(l.mlp.down_proj.size(), D * c.intermediate_size, i, "down_proj");
        break;
    }
  }
}

std::size_t model_weights::bytes() const noexcept {
  std::size_t b = 2 * (embeddings.size() + norm_f.size() + lm_head.size());
  for (const auto& l : layers) {
    b += 2 * (l.norm.size() + l.mamba.in_proj.size() + l.mamba.conv_w.size() + l.mamba.conv_b.size() +
              l.mamba.norm.size() + l.mamba.out_proj.size() + l.attn.q_proj.size() + l.attn.k_proj.size() +
              l.attn.v_proj.size() + l.attn.o_proj.size() + l.mlp.up_proj.size() + l.mlp.down_proj.size());
    b += 4 * (l.mamba.A_log.size() + l.mamba.D.size() + l.mamba.dt_bias.size());
  }
  return b;
}

model_weights load_weights(const std::filesystem::path& dir, const model_config& c) {
  c.validate();
  const checkpoint ck(dir);
  const std::string src = ck.source().string();

  // canonical name -> original name
  std::map<std::string, std::string> canon;
  std::vector<std::string> unexpected;
  for (const std::string& n : ck.names()) {
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

  const std::vector<expected_tensor> expected = expected_tensors(c);
  std::map<std::string, const expected_tensor*> want;
  for (const auto& e : expected) want[e.name] = &e;
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
  for (const auto& e : expected) {
    if (canon.count(e.name)) continue;
    if (e.name == "lm_head.weight" && c.tie_word_embeddings) continue;
    missing.push_back(fmt::format("'{}' {}", e.name, shape_str(e.shape)));
  }
  if (!missing.empty()) {
    std::string list;
    for (std::size_t i = 0; i < std::min<std::size_t>(5, missing.size()); ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 5) list += fmt::format(" and {} more", missing.size() - 5);
    throw piecewise::config_error(fmt::format("{}: {} missing tensor{} for config {}: {}", src, missing.size(),
                                              missing.size() == 1 ? "" : "s", c.name, list));
  }

  // Look up one tensor, check its shape; returns the file and entry.
  auto lookup = [&](const std::string& cn) {
    const std::string& orig = canon.at(cn);
    auto [file, info] = ck.find(orig);
    const auto& shape = want.at(cn)->shape;
    if (info->shape != shape) {
      throw piecewise::config_error(fmt::format("{}: tensor '{}' has shape {} but the config expects {}",
                                                file->path().string(), orig, shape_str(info->shape),
                                                shape_str(shape)));
    }
    return std::pair{file, info};
  };
  // Check every shape before reading any data (fail fast on a wrong config).
  for (const auto& [cn, orig] : canon) (void)lookup(cn);

  auto bf16 = [&](const std::string& cn) {
    auto [file, info] = lookup(cn);
    return file->read_bf16(*info);
  };
  auto f32 = [&](const std::string& cn) {
    auto [file, info] = lookup(cn);
    return file->read_f32(*info);
  };

  model_weights w;
  w.embeddings = bf16("backbone.embeddings.weight");
  w.norm_f = bf16("backbone.norm_f.weight");
  w.lm_head = canon.count("lm_head.weight") ? bf16("lm_head.weight") : w.embeddings;
  w.layers.resize(c.num_layers());
  for (int i = 0; i < c.num_layers(); ++i) {
    layer_weights& l = w.layers[i];
    l.kind = c.layers[i];
    const std::string p = layer_prefix(i);
    const std::string m = p + "mixer.";
    l.norm = bf16(p + "norm.weight");
    switch (l.kind) {
      case layer_kind::mamba:
        l.mamba.in_proj = bf16(m + "in_proj.weight");
        l.mamba.conv_w = bf16(m + "conv1d.weight");
        l.mamba.conv_b = c.use_conv_bias ? bf16(m + "conv1d.bias") : std::vector<bf16_bits>(c.conv_dim(), 0);
        l.mamba.A_log = f32(m + "A_log");
        l.mamba.D = f32(m + "D");
        l.mamba.dt_bias = f32(m + "dt_bias");
        l.mamba.norm = bf16(m + "norm.weight");
        l.mamba.out_proj = bf16(m + "out_proj.weight");
        break;
      case layer_kind::attention:
        l.attn.q_proj = bf16(m + "q_proj.weight");
        l.attn.k_proj = bf16(m + "k_proj.weight");
        l.attn.v_proj = bf16(m + "v_proj.weight");
        l.attn.o_proj = bf16(m + "o_proj.weight");
        break;
      case layer_kind::mlp:
        l.mlp.up_proj = bf16(m + "up_proj.weight");
        l.mlp.down_proj = bf16(m + "down_proj.weight");
        break;
    }
  }
  w.check_shapes(c);
  return w;
}

model_weights synthetic_weights(const model_config& c, std::uint64_t seed, const synthetic_options& opt) {
  c.validate();
  const std::size_t D = static_cast<std::size_t>(c.hidden_size), V = static_cast<std::size_t>(c.vocab_size);
  const double std0 = c.initializer_range;
  const int th = opt.threads;
  const bool rv = opt.randomize_vectors;
  auto normal = [&](const std::string& name, std::size_t n, double s) {
    return fill_bf16(seed, name, n, fill_kind::normal, s, th);
  };
  auto uniform = [&](const std::string& name, std::size_t n, double bound) {
    return fill_bf16(seed, name, n, fill_kind::uniform, bound, th);
  };
  auto norm_weight = [&](const std::string& name, std::size_t n) {
    return rv ? to_bf16(fill_f32_normal(seed, name, n, 1.0, 0.2)) : constant_bf16(n, 1.0f);
  };

  model_weights w;
  w.embeddings = normal("backbone.embeddings.weight", V * D, std0);
  w.norm_f = norm_weight("backbone.norm_f.weight", D);
  w.lm_head = c.tie_word_embeddings ? w.embeddings : normal("lm_head.weight", V * D, std0);
  w.layers.resize(c.num_layers());
  const std::size_t H = static_cast<std::size_t>(c.mamba_num_heads);
  for (int i = 0; i < c.num_layers(); ++i) {
    layer_weights& l = w.layers[i];
    l.kind = c.layers[i];
    const std::string p = layer_prefix(i), m = p + "mixer.";
    l.norm = norm_weight(p + "norm.weight", D);
    switch (l.kind) {
      case layer_kind::mamba: {
        auto& mw = l.mamba;
        const std::size_t conv = static_cast<std::size_t>(c.conv_dim());
        mw.in_proj = normal(m + "in_proj.weight", static_cast<std::size_t>(c.in_proj_dim()) * D, std0);
        const double conv_bound = 1.0 / std::sqrt(static_cast<double>(c.conv_kernel));
        mw.conv_w = uniform(m + "conv1d.weight", conv * static_cast<std::size_t>(c.conv_kernel), conv_bound);
        mw.conv_b = c.use_conv_bias ? uniform(m + "conv1d.bias", conv, conv_bound) : std::vector<bf16_bits>(conv, 0);
        mw.A_log.resize(H);
        mw.D.assign(H, 1.0f);
        mw.dt_bias.resize(H);
        std::uint64_t s = mix(seed, fnv1a(m + "dt_bias"));
        std::uint64_t sa = mix(seed, fnv1a(m + "A_log"));
        const double lmin = std::log(c.time_step_min), lmax = std::log(c.time_step_max);
        for (std::size_t h = 0; h < H; ++h) {
          const double u = uniform01(s) - 0x1.0p-53;  // [0, 1)
          const double dt = std::max(std::exp(u * (lmax - lmin) + lmin), c.time_step_floor);
          mw.dt_bias[h] = static_cast<float>(dt + std::log(-std::expm1(-dt)));
          mw.A_log[h] = rv ? static_cast<float>(std::log(1.0 + 15.0 * (uniform01(sa) - 0x1.0p-53)))
                           : static_cast<float>(std::log(static_cast<double>(h + 1)));
        }
        if (rv) mw.D = fill_f32_normal(seed, m + "D", H, 1.0, 0.5);
        // A_log, D, dt_bias are stored fp32 but are what a bf16 checkpoint would hold.
        for (auto* v : {&mw.A_log, &mw.D, &mw.dt_bias}) {
          for (float& x : *v) x = piecewise::bf16_bits_to_float(piecewise::float_to_bf16_bits(x));
        }
        mw.norm = norm_weight(m + "norm.weight", static_cast<std::size_t>(c.d_inner()));
        const double out_bound =
            1.0 / std::sqrt(static_cast<double>(c.d_inner())) / std::sqrt(static_cast<double>(c.num_layers()));
        mw.out_proj = uniform(m + "out_proj.weight", D * static_cast<std::size_t>(c.d_inner()), out_bound);
        break;
      }
      case layer_kind::attention: {
        const std::size_t q = static_cast<std::size_t>(c.q_dim()), kv = static_cast<std::size_t>(c.kv_dim());
        l.attn.q_proj = normal(m + "q_proj.weight", q * D, std0);
        l.attn.k_proj = normal(m + "k_proj.weight", kv * D, std0);
        l.attn.v_proj = normal(m + "v_proj.weight", kv * D, std0);
        l.attn.o_proj = normal(m + "o_proj.weight", D * q, std0);
        break;
      }
      case layer_kind::mlp: {
        const std::size_t F = static_cast<std::size_t>(c.intermediate_size);
        l.mlp.up_proj = normal(m + "up_proj.weight", F * D, std0);
        l.mlp.down_proj = normal(m + "down_proj.weight", D * F, std0);
        break;
      }
    }
  }
  return w;
}

void save_weights(const std::filesystem::path& dir, const model_config& c, const model_weights& w,
                  const std::string& prefix, bool omit_tied_lm_head) {
  w.check_shapes(c);
  std::vector<st_write_tensor> out;
  auto name = [&](const std::string& canonical) {
    if (canonical.rfind("backbone.", 0) == 0) return prefix + canonical.substr(9);
    return canonical;
  };
  for (const expected_tensor& e : expected_tensors(c)) {
    const std::string& n = e.name;
    if (n == "lm_head.weight") {
      if (c.tie_word_embeddings && omit_tied_lm_head) continue;
      out.push_back(make_tensor_from_bf16(n, e.shape, w.lm_head));
      continue;
    }
    if (n == "backbone.embeddings.weight") {
      out.push_back(make_tensor_from_bf16(name(n), e.shape, w.embeddings));
      continue;
    }
    if (n == "backbone.norm_f.weight") {
      out.push_back(make_tensor_from_bf16(name(n), e.shape, w.norm_f));
      continue;
    }
    // backbone.layers.{i}.<rest>
    const std::size_t a = std::string("backbone.layers.").size();
    const std::size_t dot = n.find('.', a);
    const int i = std::stoi(n.substr(a, dot - a));
    const std::string rest = n.substr(dot + 1);
    const layer_weights& l = w.layers[i];
    const std::vector<bf16_bits>* v = nullptr;
    const std::vector<float>* f = nullptr;
    if (rest == "norm.weight") v = &l.norm;
    else if (rest == "mixer.in_proj.weight") v = &l.mamba.in_proj;
    else if (rest == "mixer.conv1d.weight") v = &l.mamba.conv_w;
    else if (rest == "mixer.conv1d.bias") v = &l.mamba.conv_b;
    else if (rest == "mixer.A_log") f = &l.mamba.A_log;
    else if (rest == "mixer.D") f = &l.mamba.D;
    else if (rest == "mixer.dt_bias") f = &l.mamba.dt_bias;
    else if (rest == "mixer.norm.weight") v = &l.mamba.norm;
    else if (rest == "mixer.out_proj.weight") v = &l.mamba.out_proj;
    else if (rest == "mixer.q_proj.weight") v = &l.attn.q_proj;
    else if (rest == "mixer.k_proj.weight") v = &l.attn.k_proj;
    else if (rest == "mixer.v_proj.weight") v = &l.attn.v_proj;
    else if (rest == "mixer.o_proj.weight") v = &l.attn.o_proj;
    else if (rest == "mixer.up_proj.weight") v = &l.mlp.up_proj;
    else if (rest == "mixer.down_proj.weight") v = &l.mlp.down_proj;
    if (v) out.push_back(make_tensor_from_bf16(name(n), e.shape, *v));
    else if (f) out.push_back(make_tensor_from_floats(name(n), e.shape, *f, st_dtype::f32));
    else throw piecewise::config_error(fmt::format("save_weights: no storage for tensor '{}'", n));
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  write_safetensors(dir / "model.safetensors", out, {{"format", "pt"}});
}

}  // namespace nemotron_h
