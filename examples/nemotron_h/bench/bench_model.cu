// End-to-end NemotronH benchmarks through piecewise (see docs/benchmarks.md):
//  - the card's copy bandwidth and bf16 GEMM rate, measured in the same run;
//  - capture time and graph memory of every default prefill and decode bucket, per mode;
//  - prefill latency for 16..8192 tokens in eager, piecewise and full modes, with the
//    achieved fraction of the GEMM rate over the model's FLOPs;
//  - full-graph decode step time for several batch sizes against the weight-streaming floor.
// Usage: nh_model_bench [--model nano-9b-v2] [--json FILE] [--prefill 16,64,...]
//                       [--decode 1,8,32,128] [--reps 5]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "bench/roofline.cuh"
#include "model/config.hpp"
#include "model/layer_kinds.hpp"
#include "model/random_tokens.hpp"
#include "model/weights.hpp"
#include "runner/engine.hpp"

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
  const double attn = c.count(layer_kind::attention) * 2.0 * 2.0 * c.q_dim() * T * (T + 1) / 2;  // QK^T, PV
  return per_token * T + attn + 2.0 * c.hidden_size * c.vocab_size;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) try {
  std::string model = "nano-9b-v2", json_path;
  std::vector<int> prefill = {16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192};
  std::vector<int> decode = {1, 8, 32, 128};
  int reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--model") model = argv[i + 1];
    else if (k == "--json") json_path = argv[i + 1];
    else if (k == "--prefill") prefill = ints(argv[i + 1]);
    else if (k == "--decode") decode = ints(argv[i + 1]);
    else if (k == "--reps") reps = std::stoi(argv[i + 1]);
    else throw piecewise::config_error("unknown option " + k);
  }
  cudaDeviceProp prop{};
  PIECEWISE_CUDA_TRY(cudaGetDeviceProperties(&prop, 0));
  const model_config cfg = resolve_model(model);
  fmt::print("device {}\nmodel  {}\n", prop.name, cfg.summary());

  double bw = 0, tflops = 0;
  {
    gemm_engine g;
    bw = measure_copy_bandwidth_gbs();
    tflops = measure_bf16_gemm_tflops(g);
  }
  fmt::print("roofline: copy {:.0f} GB/s (read+write), bf16 GEMM {:.0f} TFLOP/s\n", bw, tflops);

  auto t0 = std::chrono::steady_clock::now();
  const model_weights w = synthetic_weights(cfg, 0);
  fmt::print("synthetic weights {:.2f} GB in {:.1f} s\n", w.bytes() / 1e9,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
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
  engine eng(cfg, w, lim);
  const double weight_gb = eng.model().weight_bytes() / 1e9;
  fmt::print("on device: weights {:.2f} GB, buffers + state {:.2f} GB\n", weight_gb, eng.model().buffer_bytes() / 1e9);

  std::string json = fmt::format("{{\n  \"device\": \"{}\",\n  \"model\": \"{}\",\n  \"copy_gbs\": {:.1f},\n  \"gemm_tflops\": {:.1f},\n",
                                 prop.name, cfg.name, bw, tflops);
  // ---- capture ----
  fmt::print("\n{:<10} {:>10} {:>10} {:>12} {:>14} {:>10} {:>10} {:>10}\n", "mode", "buckets", "capture_s", "graphs",
             "graph_mem_MiB", "warmup_s", "stream_s", "instant_s");
  json += "  \"capture\": [\n";
  for (mode m : {mode::full, mode::piecewise, mode::eager}) {
    std::size_t f0 = 0, f1 = 0;
    PIECEWISE_CUDA_TRY(cudaMemGetInfo(&f0, &total));
    t0 = std::chrono::steady_clock::now();
    mode_runners& r = eng.add_mode(m, {}, {});
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

  // ---- prefill latency ----
  fmt::print("\n{:>6} {:>11} {:>11} {:>11} {:>9} {:>9} {:>12}\n", "tokens", "eager_ms", "piecew_ms", "full_ms",
             "pw/eager", "full/eag", "full_%gemm");
  json += "  \"prefill\": [\n";
  for (std::size_t i = 0; i < prefill.size(); ++i) {
    const int T = prefill[i];
    const auto p = prompts(1, T, cfg.vocab_size, static_cast<std::uint64_t>(T));
    double ms[3];
    int k = 0;
    for (mode m : {mode::eager, mode::piecewise, mode::full}) {
      std::vector<double> v;
      (void)eng.run(m, p, 1);  // warm
      for (int r = 0; r < reps; ++r) v.push_back(eng.run(m, p, 1).prefill_ms);
      ms[k++] = median(v);
    }
    const double frac = prefill_flops(cfg, T) / (ms[2] * 1e-3) / (tflops * 1e12);
    fmt::print("{:>6} {:>11.3f} {:>11.3f} {:>11.3f} {:>9.2f} {:>9.2f} {:>11.1f}%\n", T, ms[0], ms[1], ms[2], ms[0] / ms[1],
               ms[0] / ms[2], 100 * frac);
    json += fmt::format("    {{\"tokens\": {}, \"eager_ms\": {:.4f}, \"piecewise_ms\": {:.4f}, \"full_ms\": {:.4f}, "
                        "\"full_gemm_fraction\": {:.4f}}}{}\n",
                        T, ms[0], ms[1], ms[2], frac, i + 1 == prefill.size() ? "" : ",");
  }
  json += "  ],\n";

  // ---- decode ----
  const double floor_ms = eng.model().weight_bytes() / (bw * 1e9) * 1e3;
  fmt::print("\nweight-streaming floor {:.3f} ms/step ({:.2f} GB at {:.0f} GB/s)\n", floor_ms, weight_gb, bw);
  fmt::print("{:>6} {:>12} {:>12} {:>12} {:>10}\n", "batch", "full_ms", "piecew_ms", "eager_ms", "full/floor");
  json += fmt::format("  \"decode_floor_ms\": {:.4f},\n  \"decode\": [\n", floor_ms);
  for (std::size_t i = 0; i < decode.size(); ++i) {
    const int B = decode[i];
    const auto p = prompts(B, 32, cfg.vocab_size, 99 + static_cast<std::uint64_t>(B));
    double ms[3];
    int k = 0;
    for (mode m : {mode::full, mode::piecewise, mode::eager}) {
      std::vector<double> v;
      for (int r = 0; r < std::max(1, reps / 2); ++r) v.push_back(eng.run(m, p, 33).decode_ms_per_step);
      ms[k++] = median(v);
    }
    fmt::print("{:>6} {:>12.3f} {:>12.3f} {:>12.3f} {:>10.2f}\n", B, ms[0], ms[1], ms[2], ms[0] / floor_ms);
    json += fmt::format("    {{\"batch\": {}, \"full_ms\": {:.4f}, \"piecewise_ms\": {:.4f}, \"eager_ms\": {:.4f}}}{}\n", B,
                        ms[0], ms[1], ms[2], i + 1 == decode.size() ? "" : ",");
  }
  json += "  ]\n}\n";
  if (!json_path.empty()) std::ofstream(json_path) << json;
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
