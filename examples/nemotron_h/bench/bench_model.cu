// End-to-end NemotronH benchmarks through piecewise (see docs/benchmarks.md):
//  - the card's copy bandwidth and bf16 GEMM rate, measured in the same run;
//  - capture time and graph memory of every default prefill and decode bucket, per mode;
//  - prefill latency for 16..8192 tokens in eager, piecewise and full modes, with the
//    achieved fraction of the GEMM rate over the model's FLOPs;
//  - full-graph decode step time for several batch sizes against the weight-streaming floor.
//  - start-up: synthetic weights drawn on the GPU and the model built, until ready to capture;
//  - with --checkpoint DIR: the synthetic weights written there as a safetensors checkpoint
//    (tensor by tensor from the GPU), then loaded back to the GPU from the page cache through
//    the pinned staging ring for each --load-sweep setting (threads:MiB per slot), with GB/s
//    and a bit-for-bit comparison against the drawn weights; the file is removed afterwards.
//  - --dtype fp8: the synthetic model with its Mamba and MLP projections FP8 W8A8
//    (runner/synthetic_fp8.hpp: calibrated by one eager bf16 prefill, quantized on the GPU);
//    the decode floor counts the device weight bytes (FP8 one byte a weight), the prefill's
//    %gemm stays a fraction of the bf16 GEMM rate.
//  - --graph-execs N: the graph modes' buckets share at most N executables per segment
//    position and topology (runner_options::executables_per_segment); the capture table then
//    shows their graph memory, and the end of the run how many executables the runs re-pointed
//    and the host time that took.
//  - --after-update 1: then every graph executable is updated in place (update(), the same
//    graphs) and the prefill and decode runs are timed again, for full and piecewise.
// Usage: nh_model_bench [--model nano-9b-v2] [--dtype bf16|fp8] [--json FILE] [--prefill 16,64,...]
//                       [--decode 1,8,32,128] [--reps 5] [--startup-only 1]
//                       [--checkpoint DIR] [--load-sweep 4:64,8:64,...] [--graph-execs N]
//                       [--after-update 1]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "bench/roofline.cuh"
#include "model/config.hpp"
#include "model/layer_kinds.hpp"
#include "model/random_tokens.hpp"
#include "model/weights.hpp"
#include "runner/engine.hpp"
#include "runner/synthetic_fp8.hpp"

using namespace nemotron_h;
using piecewise::mode;

namespace {

std::vector<int> ints(const char* s) {
  std::vector<int> v;
  std::string cur;
  for (const char* p = s;; ++p) {
    if (*p == ',' || *p == 0) {
      if (!cur.empty()) v.push_back(std::stoi(cur));
      cur.clear();
      if (*p == 0) break;
    } else {
      cur += *p;
    }
  }
  return v;
}

std::vector<std::vector<int>> prompts(int count, int len, int vocab, std::uint64_t seed) {
  std::vector<std::vector<int>> out;
  for (int i = 0; i < count; ++i) out.push_back(random_token_ids(len, vocab, seed));
  return out;
}

// Matmul FLOPs of a prefill of T tokens (one sequence): every linear weight of the layers
// (the layer-kind table's), plus causal attention, plus lm_head for the last row.
double prefill_flops(const model_config& c, double T) {
  double per_token = 0;
  for (const tensor_entry& e : model_tensors(c)) {
    if (e.layer < 0 || !e.spec->linear) continue;
    double n = 1;
    for (std::int64_t d : e.shape) n *= static_cast<double>(d);
    per_token += 2.0 * n;
  }
  // MoE layers: the router, and the k routed experts a token runs (up and down); the shared
  // expert and the latent projections are linear weights, counted above.
  per_token += c.count(layer_kind::moe) * 2.0 *
               (static_cast<double>(c.n_routed_experts) * c.hidden_size +
                2.0 * c.num_experts_per_tok * static_cast<double>(c.moe_intermediate_size) * c.moe_width());
  const double attn = c.count(layer_kind::attention) * 2.0 * 2.0 * c.q_dim() * T * (T + 1) / 2;  // QK^T, PV
  return per_token * T + attn + 2.0 * c.hidden_size * c.vocab_size;
}

/// Device bytes of one routed expert (up and down, bf16).
double expert_bytes(const model_config& c) {
  return 2.0 * 2.0 * static_cast<double>(c.moe_intermediate_size) * c.moe_width();
}

/// "min / median / max tokens per expert, experts with none" of an expert-load vector.
std::string load_summary(std::vector<int> counts) {
  if (counts.empty()) return "-";
  const long zeros = std::count(counts.begin(), counts.end(), 0);
  std::sort(counts.begin(), counts.end());
  return fmt::format("min {} / median {} / max {} tokens per expert, {} of {} experts without a token", counts.front(),
                     counts[counts.size() / 2], counts.back(), zeros, counts.size());
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Adds the number of 16-bit words where a and b differ to *out (integer atomics: exact).
__global__ void count_diff(const std::uint16_t* a, const std::uint16_t* b, std::size_t n, unsigned long long* out) {
  unsigned long long c = 0;
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
    c += a[i] != b[i];
  if (c) atomicAdd(out, c);
}

/// 16-bit words that differ between two device weights of the same config.
unsigned long long differing_words(const model_config& cfg, const device_weights& a, const device_weights& b) {
  unsigned long long* d = nullptr;
  PIECEWISE_CUDA_TRY(cudaMalloc(&d, sizeof(unsigned long long)));
  PIECEWISE_CUDA_TRY(cudaMemset(d, 0, sizeof(unsigned long long)));
  const std::size_t n = model_tensors(cfg).size();
  for (std::size_t i = 0; i < n; ++i) {
    const auto x = a.tensor(i), y = b.tensor(i);
    if (x.bytes != y.bytes) throw piecewise::config_error("differing_words: tensor sizes differ");
    count_diff<<<1024, 256>>>(static_cast<const std::uint16_t*>(x.data), static_cast<const std::uint16_t*>(y.data),
                              x.bytes / 2, d);
  }
  unsigned long long h = 0;
  PIECEWISE_CUDA_TRY(cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost));
  PIECEWISE_CUDA_TRY(cudaFree(d));
  return h;
}

/// Writes the device weights as a checkpoint in `dir`, then loads it back for each setting.
std::string checkpoint_bench(const model_config& cfg, const device_weights& drawn, const std::filesystem::path& dir,
                             const std::string& sweep) {
  std::map<std::string, std::size_t> index;
  const std::vector<tensor_entry> entries = model_tensors(cfg);
  for (std::size_t i = 0; i < entries.size(); ++i) index[entries[i].name] = i;
  auto t0 = std::chrono::steady_clock::now();
  save_checkpoint(dir, cfg, [&](const tensor_entry& e, std::uint8_t* out, std::size_t bytes) {
    const auto s = drawn.tensor(index.at(e.name));
    if (s.bytes != bytes) throw piecewise::config_error("checkpoint_bench: size mismatch at " + e.name);
    PIECEWISE_CUDA_TRY(cudaMemcpy(out, s.data, bytes, cudaMemcpyDeviceToHost));
  });
  const double file_gb = static_cast<double>(std::filesystem::file_size(dir / "model.safetensors")) / 1e9;
  const double write_s = seconds_since(t0);
  fmt::print("\ncheckpoint written: {} ({:.2f} GB) in {:.1f} s ({:.2f} GB/s, from the GPU, tensor by tensor)\n",
             (dir / "model.safetensors").string(), file_gb, write_s, file_gb / write_s);
  std::string json = fmt::format("  \"checkpoint\": {{\"gb\": {:.3f}, \"write_s\": {:.2f}, \"loads\": [", file_gb, write_s);
  fmt::print("{:>8} {:>10} {:>6} {:>10} {:>10} {:>12}\n", "threads", "slot_MiB", "slots", "load_s", "GB/s", "identical");
  std::stringstream ss(sweep);
  std::string one;
  bool first = true;
  while (std::getline(ss, one, ',')) {
    const auto colon = one.find(':');
    if (colon == std::string::npos) throw piecewise::config_error("--load-sweep: use threads:MiB,...");
    staged_read_options o;
    o.threads = std::stoi(one.substr(0, colon));
    o.chunk_bytes = static_cast<std::uint64_t>(std::stoi(one.substr(colon + 1))) << 20;
    o.slots_per_thread = 2;
    t0 = std::chrono::steady_clock::now();
    const device_weights loaded(cfg, weight_source::from_checkpoint(dir, o));
    const double s = seconds_since(t0);
    const unsigned long long diff = differing_words(cfg, loaded, drawn);
    fmt::print("{:>8} {:>10} {:>6} {:>10.3f} {:>10.2f} {:>12}\n", o.threads, o.chunk_bytes >> 20,
               o.threads * o.slots_per_thread, s, file_gb / s, diff == 0 ? "yes" : fmt::format("NO ({} words)", diff));
    json += fmt::format("{}{{\"threads\": {}, \"slot_mib\": {}, \"load_s\": {:.3f}, \"gbs\": {:.2f}, \"identical\": {}}}",
                        first ? "" : ", ", o.threads, o.chunk_bytes >> 20, s, file_gb / s, diff == 0);
    first = false;
    if (diff != 0) throw piecewise::config_error("the loaded checkpoint differs from the drawn weights");
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return json + "]},\n";
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) try {
  std::string model = "nano-9b-v2", json_path, dtype = "bf16";
  std::vector<int> prefill = {16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192};
  std::vector<int> decode = {1, 8, 32, 128};
  int reps = 5;
  int graph_execs = 0;  // runner_options::executables_per_segment for the graph modes
  bool after_update = false;  // --after-update 1: time the graph modes again after update()
  bool startup_only = false;
  std::string checkpoint_dir, load_sweep = "4:64,8:64,8:16,16:32";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--model") model = argv[i + 1];
    else if (k == "--json") json_path = argv[i + 1];
    else if (k == "--prefill") prefill = ints(argv[i + 1]);
    else if (k == "--decode") decode = ints(argv[i + 1]);
    else if (k == "--reps") reps = std::stoi(argv[i + 1]);
    else if (k == "--startup-only") startup_only = std::stoi(argv[i + 1]) != 0;
    else if (k == "--checkpoint") checkpoint_dir = argv[i + 1];
    else if (k == "--load-sweep") load_sweep = argv[i + 1];
    else if (k == "--dtype") dtype = argv[i + 1];
    else if (k == "--graph-execs") graph_execs = std::stoi(argv[i + 1]);
    else if (k == "--after-update") after_update = std::stoi(argv[i + 1]) != 0;
    else throw piecewise::config_error("unknown option " + k);
  }
  if (graph_execs < 0) throw piecewise::config_error("--graph-execs " + std::to_string(graph_execs) + ": must be >= 0");
  cudaDeviceProp prop{};
  PIECEWISE_CUDA_TRY(cudaGetDeviceProperties(&prop, 0));
  if (dtype != "bf16" && dtype != "fp8" && dtype != "nvfp4")
    throw piecewise::config_error("--dtype " + dtype + ": use bf16, fp8 or nvfp4");
  const bool fp8 = dtype == "fp8", nvfp4 = dtype == "nvfp4";
  if (dtype != "bf16" && !checkpoint_dir.empty())
    throw piecewise::config_error("--checkpoint writes bf16 synthetic weights: not with --dtype " + dtype);
  const model_config cfg = resolve_model(model);
  fmt::print("device {}\nmodel  {}\ndtype  {}\n", prop.name, cfg.summary(),
             fp8 ? fmt::format("fp8: {} Mamba / MLP projections FP8 W8A8 (per-tensor scales, input scales from one "
                               "eager bf16 prefill of {} tokens), the rest bf16",
                               synthetic_fp8_weights(cfg).size(), kCalibrationTokens)
             : nvfp4 ? fmt::format("nvfp4: {} Mamba / MLP projections NVFP4 weight-only (e2m1, e4m3 block scales of 16, "
                                   "global scale), the rest bf16",
                                   synthetic_fp8_weights(cfg).size())
                     : std::string("bf16"));

  double bw = 0, tflops = 0;
  if (!startup_only) {
    gemm_engine g;
    bw = measure_copy_bandwidth_gbs();
    tflops = measure_bf16_gemm_tflops(g);
  }
  fmt::print("roofline: copy {:.0f} GB/s (read+write), bf16 GEMM {:.0f} TFLOP/s\n", bw, tflops);

  const int max_prefill = *std::max_element(prefill.begin(), prefill.end());
  const int max_batch = *std::max_element(decode.begin(), decode.end());
  gpu_model_limits lim;
  lim.max_prefill_tokens = std::max(8192, max_prefill);
  lim.max_decode_batch = std::max(256, max_batch);
  lim.num_slots = max_batch;
  lim.max_context = std::max(max_prefill + 16, 256);
  lim.max_decode_steps = 64;
  std::size_t free0 = 0, total = 0;
  PIECEWISE_CUDA_TRY(cudaMemGetInfo(&free0, &total));
  // Start-up: synthetic weights drawn on the GPU straight into the weight arena (no host copy),
  // every buffer allocated: ready to capture.
  // --dtype fp8: the calibration (its own bf16 model, freed after) first, timed apart.
  auto t0 = std::chrono::steady_clock::now();
  const weight_source src = fp8     ? synthetic_fp8_source(cfg, 0)
                            : nvfp4 ? weight_source::drawn_nvfp4(0, synthetic_fp8_weights(cfg))
                                    : weight_source::drawn(0);
  const double calibration_s = fp8 ? seconds_since(t0) : 0.0;
  if (fp8) fmt::print("calibration: bf16 model drawn, one eager prefill observed, freed in {:.3f} s\n", calibration_s);
  t0 = std::chrono::steady_clock::now();
  engine eng(cfg, src, lim);
  PIECEWISE_CUDA_TRY(cudaDeviceSynchronize());
  const double startup_s = seconds_since(t0);
  const double weight_gb = eng.model().weight_bytes() / 1e9;
  fmt::print("start-up: synthetic weights ({:.2f} GB{}) drawn on the GPU and the model built in {:.3f} s\n", weight_gb,
             fp8 ? ", FP8 projections quantized on the GPU" : "", startup_s);
  fmt::print("on device: weights {:.2f} GB, buffers + state {:.2f} GB\n", weight_gb, eng.model().buffer_bytes() / 1e9);

  std::string json = fmt::format("{{\n  \"device\": \"{}\",\n  \"model\": \"{}\",\n  \"dtype\": \"{}\",\n  \"copy_gbs\": {:.1f},\n  \"gemm_tflops\": {:.1f},\n",
                                 prop.name, cfg.name, dtype, bw, tflops);
  json += fmt::format("  \"startup_s\": {:.3f},\n  \"calibration_s\": {:.3f},\n  \"weight_bytes\": {},\n", startup_s,
                      calibration_s, eng.model().weight_bytes());
  if (!checkpoint_dir.empty()) json += checkpoint_bench(cfg, eng.model().weights(), checkpoint_dir, load_sweep);
  if (startup_only) {
    if (!json_path.empty()) std::ofstream(json_path) << json << "  \"startup_only\": true\n}\n";
    return 0;
  }
  // ---- capture ----
  fmt::print("\n{:<10} {:>10} {:>10} {:>12} {:>14} {:>10} {:>10} {:>10}\n", "mode", "buckets", "capture_s", "graphs",
             "graph_mem_MiB", "warmup_s", "stream_s", "instant_s");
  json += "  \"capture\": [\n";
  for (mode m : {mode::full, mode::piecewise, mode::eager}) {
    std::size_t f0 = 0, f1 = 0;
    PIECEWISE_CUDA_TRY(cudaMemGetInfo(&f0, &total));
    t0 = std::chrono::steady_clock::now();
    mode_runners& r = eng.add_mode(m, {}, {}, m == mode::eager ? 0 : graph_execs);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    PIECEWISE_CUDA_TRY(cudaMemGetInfo(&f1, &total));
    int graphs = 0;
    std::size_t buckets = 0;
    double warm_ms = 0, cap_ms = 0, inst_ms = 0;  // where the capture time goes (bucket_stats)
    if (m != mode::eager) {
      for (const auto* rn : {r.prefill.get(), r.decode.get()})
        for (const auto& st : rn->all_bucket_stats()) {
          graphs += st.segments;
          warm_ms += st.warmup_ms;
          cap_ms += st.capture_ms;
          inst_ms += st.instantiate_ms;
        }
      buckets = r.prefill->buckets().count() + r.decode->buckets().count();
    }
    const double mib = (static_cast<double>(f0) - static_cast<double>(f1)) / 1048576.0;
    fmt::print("{:<10} {:>10} {:>10.2f} {:>12} {:>14.1f} {:>10.3f} {:>10.3f} {:>10.3f}\n", piecewise::to_string(m), buckets,
               s, graphs, mib, warm_ms / 1e3, cap_ms / 1e3, inst_ms / 1e3);
    json += fmt::format("    {{\"mode\": \"{}\", \"buckets\": {}, \"capture_s\": {:.3f}, \"graphs\": {}, \"graph_mem_mib\": {:.1f}, "
                        "\"warmup_s\": {:.3f}, \"stream_capture_s\": {:.3f}, \"instantiate_s\": {:.3f}}}{}\n",
                        piecewise::to_string(m), buckets, s, graphs, mib, warm_ms / 1e3, cap_ms / 1e3, inst_ms / 1e3,
                        m == mode::eager ? "" : ",");
  }
  json += "  ],\n";
  auto executables = [&](mode m) {
    int n = 0;
    for (const auto* rn : {eng.runners(m).prefill.get(), eng.runners(m).decode.get()})
      for (const auto& st : rn->all_bucket_stats()) n += st.executables;
    return n;
  };
  fmt::print("executables ({}): full {}, piecewise {}\n",
             graph_execs > 0 ? fmt::format("at most {} per segment position and topology", graph_execs)
                             : std::string("one per segment"),
             executables(mode::full), executables(mode::piecewise));
  json += fmt::format("  \"executables_per_segment\": {}, \"executables\": {{\"full\": {}, \"piecewise\": {}}},\n",
                      graph_execs, executables(mode::full), executables(mode::piecewise));

  // Median prefill time of one T-token prompt (after one warm run), and median decode step of B
  // sequences (32 steps after a 32-token prompt each), in mode m.
  auto prefill_ms = [&](mode m, int T) {
    const auto p = prompts(1, T, cfg.vocab_size, static_cast<std::uint64_t>(T));
    std::vector<double> v;
    (void)eng.run(m, p, 1);  // warm
    for (int r = 0; r < reps; ++r) v.push_back(eng.run(m, p, 1).prefill_ms);
    return median(v);
  };
  auto decode_ms = [&](mode m, int B) {
    const auto p = prompts(B, 32, cfg.vocab_size, 99 + static_cast<std::uint64_t>(B));
    std::vector<double> v;
    for (int r = 0; r < std::max(1, reps / 2); ++r) v.push_back(eng.run(m, p, 33).decode_ms_per_step);
    return median(v);
  };

  // ---- prefill latency ----
  fmt::print("\n{:>6} {:>11} {:>11} {:>11} {:>9} {:>9} {:>12}\n", "tokens", "eager_ms", "piecew_ms", "full_ms",
             "pw/eager", "full/eag", "full_%gemm");
  json += "  \"prefill\": [\n";
  for (std::size_t i = 0; i < prefill.size(); ++i) {
    const int T = prefill[i];
    double ms[3];
    int k = 0;
    for (mode m : {mode::eager, mode::piecewise, mode::full}) ms[k++] = prefill_ms(m, T);
    const double frac = prefill_flops(cfg, T) / (ms[2] * 1e-3) / (tflops * 1e12);
    fmt::print("{:>6} {:>11.3f} {:>11.3f} {:>11.3f} {:>9.2f} {:>9.2f} {:>11.1f}%\n", T, ms[0], ms[1], ms[2], ms[0] / ms[1],
               ms[0] / ms[2], 100 * frac);
    std::string load;
    if (cfg.count(layer_kind::moe) > 0) {
      // The synthetic router's expert load (the last MoE layer of this prefill).
      const std::vector<int> counts = eng.model().read_expert_counts(nullptr);
      fmt::print("       expert load: {}\n", load_summary(counts));
      load = fmt::format(", \"expert_load_last_layer\": [{}]", fmt::join(counts, ", "));
    }
    json += fmt::format("    {{\"tokens\": {}, \"eager_ms\": {:.4f}, \"piecewise_ms\": {:.4f}, \"full_ms\": {:.4f}, "
                        "\"full_gemm_fraction\": {:.4f}{}}}{}\n",
                        T, ms[0], ms[1], ms[2], frac, load, i + 1 == prefill.size() ? "" : ",");
  }
  json += "  ],\n";

  // ---- decode ----
  const double floor_ms = eng.model().weight_bytes() / (bw * 1e9) * 1e3;
  fmt::print("\nweight-streaming floor {:.3f} ms/step ({:.2f} GB at {:.0f} GB/s)\n", floor_ms, weight_gb, bw);
  fmt::print("{:>6} {:>12} {:>12} {:>12} {:>10}\n", "batch", "full_ms", "piecew_ms", "eager_ms", "full/floor");
  json += fmt::format("  \"decode_floor_ms\": {:.4f},\n  \"decode\": [\n", floor_ms);
  for (std::size_t i = 0; i < decode.size(); ++i) {
    const int B = decode[i];
    double ms[3];
    int k = 0;
    for (mode m : {mode::full, mode::piecewise, mode::eager}) ms[k++] = decode_ms(m, B);
    if (cfg.count(layer_kind::moe) == 0) {
      fmt::print("{:>6} {:>12.3f} {:>12.3f} {:>12.3f} {:>10.2f}\n", B, ms[0], ms[1], ms[2], ms[0] / floor_ms);
      json += fmt::format("    {{\"batch\": {}, \"full_ms\": {:.4f}, \"piecewise_ms\": {:.4f}, \"eager_ms\": {:.4f}}}{}\n",
                          B, ms[0], ms[1], ms[2], i + 1 == decode.size() ? "" : ",");
      continue;
    }
    // MoE: a step reads only the experts its tokens chose. The floor counts, in every MoE
    // layer, as many experts as the last MoE layer of the last step used (k at batch 1).
    const std::vector<int> counts = eng.model().read_expert_counts(nullptr);
    const long used = static_cast<long>(counts.size()) - std::count(counts.begin(), counts.end(), 0);
    const double unread = cfg.count(layer_kind::moe) * static_cast<double>(cfg.n_routed_experts - used) * expert_bytes(cfg);
    const double moe_floor = (static_cast<double>(eng.model().weight_bytes()) - unread) / (bw * 1e9) * 1e3;
    fmt::print("{:>6} {:>12.3f} {:>12.3f} {:>12.3f} {:>10.2f}   (experts used {} of {}: floor {:.3f} ms, full/floor {:.2f})\n",
               B, ms[0], ms[1], ms[2], ms[0] / floor_ms, used, cfg.n_routed_experts, moe_floor, ms[0] / moe_floor);
    json += fmt::format("    {{\"batch\": {}, \"full_ms\": {:.4f}, \"piecewise_ms\": {:.4f}, \"eager_ms\": {:.4f}, "
                        "\"experts_used\": {}, \"read_floor_ms\": {:.4f}}}{}\n",
                        B, ms[0], ms[1], ms[2], used, moe_floor, i + 1 == decode.size() ? "" : ",");
  }
  json += "  ],\n  \"executable_switches\": [";
  // Shared executables re-pointed by the runs above (each prefill size and batch is a bucket
  // switch the first time it runs after another): how many, and their host time.
  bool first_sw = true;
  for (mode m : {mode::full, mode::piecewise})
    for (const auto* rn : {eng.runners(m).prefill.get(), eng.runners(m).decode.get()}) {
      const auto& st = rn->stats();
      if (graph_execs > 0)
        fmt::print("{}: {} replays, {} executables re-pointed, {:.2f} ms host ({:.1f} us each)\n", rn->name(),
                   st.graph_replays, st.executable_switches, st.executable_switch_ms,
                   st.executable_switches ? 1e3 * st.executable_switch_ms / st.executable_switches : 0.0);
      json += fmt::format("{}{{\"runner\": \"{}\", \"replays\": {}, \"switches\": {}, \"switch_ms\": {:.3f}}}",
                          first_sw ? "" : ", ", rn->name(), st.graph_replays, st.executable_switches,
                          st.executable_switch_ms);
      first_sw = false;
    }
  json += "]";

  // ---- after update() ----
  // Every executable of the graph modes goes through cudaGraphExecUpdate with the graph it
  // already holds; the same prefill and decode runs again. Tells "an updated executable runs
  // slower" apart from "an executable re-pointed to other kernels runs slower".
  if (after_update) {
    piecewise::stream us;
    eng.model().clear_batch(us);  // as before a capture: no live sequence
    us.synchronize();
    for (mode m : {mode::full, mode::piecewise})
      for (auto* rn : {eng.runners(m).prefill.get(), eng.runners(m).decode.get()})
        fmt::print("{}: {}\n", rn->name(), rn->update().to_string());
    fmt::print("\nafter update()\n{:>6} {:>6} {:>11} {:>11}\n", "tokens", "batch", "piecew_ms", "full_ms");
    json += ",\n  \"after_update\": [";
    bool first_au = true;
    auto row = [&](int T, int B) {  // a prefill of T tokens (B = 0) or a decode step of B sequences
      double ms[2];
      int k = 0;
      for (mode m : {mode::piecewise, mode::full}) ms[k++] = B == 0 ? prefill_ms(m, T) : decode_ms(m, B);
      fmt::print("{:>6} {:>6} {:>11.3f} {:>11.3f}\n", T, B, ms[0], ms[1]);
      json += fmt::format("{}{{\"tokens\": {}, \"batch\": {}, \"piecewise_ms\": {:.4f}, \"full_ms\": {:.4f}}}",
                          first_au ? "" : ", ", T, B, ms[0], ms[1]);
      first_au = false;
    };
    for (int T : prefill) row(T, 0);
    for (int B : decode) row(0, B);
    json += "]";
  }
  json += "\n}\n";
  if (!json_path.empty()) std::ofstream(json_path) << json;
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
