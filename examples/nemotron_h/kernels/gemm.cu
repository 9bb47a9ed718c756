// cuBLASLt GEMM engine (see gemm.cuh): bf16 weights, and FP8 e4m3 weights on e4m3 inputs.
#include "kernels/gemm.cuh"

#include "kernels/quantize_fp8.cuh"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "kernels/activations.cuh"
#include "kernels/gemv.cuh"
#include "kernels/nvfp4.cuh"

namespace nemotron_h {

namespace {

void expects(bool cond, const std::string& msg) {
  if (!cond) throw piecewise::config_error(msg);
}

bool misaligned(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15) != 0; }

void lt_check(cublasStatus_t st, const char* what, int M, int K, int N) {
  if (st != CUBLAS_STATUS_SUCCESS) {
    throw piecewise::error(strf("gemm_engine: %s failed (status %d) for M=%d K=%d N=%d",
                                       what, static_cast<int>(st), M, K, N));
  }
}

}  // namespace

struct gemm_engine::plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr;  // W as column-major [K, N], ld K, transposed
  cublasLtMatrixLayout_t b = nullptr;  // x as column-major [K, M], ld ldx
  cublasLtMatrixLayout_t c = nullptr;  // y as column-major [N, M], ld ldy
  cublasLtMatmulAlgo_t algo{};
  ~plan() {
    if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (op != nullptr) cublasLtMatmulDescDestroy(op);
  }
};

gemm_engine::gemm_engine(std::size_t workspace_bytes) : workspace_bytes_(workspace_bytes) {
  if (workspace_bytes_ > 0) workspace_ = piecewise::device_buffer(workspace_bytes_, "gemm_engine workspace");
  lt_check(cublasLtCreate(&handle_), "cublasLtCreate", 0, 0, 0);
}

gemm_engine::~gemm_engine() {
  for (auto& [k, p] : plans_) delete p;
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

void gemm_engine::require_supported(const weight& W) {
  if (supports(W)) return;
  if (W.type == dtype::nvfp4) {
    throw piecewise::config_error(strf(
        "gemm_engine: weight '%s' has dtype nvfp4 %s", W.name,
        W.block_scales == nullptr ? "but no block scales"
                                  : strf("with K = %d input features: NVFP4 needs a positive multiple of 16", W.cols).c_str()));
  }
  if (W.type == dtype::fp8_e4m3) {
    throw piecewise::config_error(strf(
        "gemm_engine: weight '%s' has dtype fp8_e4m3 %s", W.name,
        W.scale == nullptr         ? "but no weight scale"
        : W.input_scale == nullptr ? "but no input scale (weight-only FP8 is not supported: the GEMM runs W8A8)"
                                   : strf("with K = %d input features: FP8 GEMMs need a multiple of 16", W.cols).c_str()));
  }
  throw piecewise::config_error(strf("gemm_engine: weight '%s' has dtype %s: not supported yet (only bf16, fp8_e4m3 and nvfp4)",
                                     W.name, dtype_name(W.type)));
}

void gemm_engine::reserve_nvfp4_scratch(std::size_t elems) {
  const std::size_t bytes = elems * sizeof(bf16);
  if (bytes <= nvfp4_scratch_bytes_) return;
  nvfp4_scratch_ = piecewise::device_buffer();  // the old scratch first: at most one held
  nvfp4_scratch_bytes_ = 0;
  nvfp4_scratch_ = piecewise::device_buffer(bytes, "gemm_engine NVFP4 dequantized weight");
  nvfp4_scratch_bytes_ = bytes;
}

void gemm_engine::reserve_fp8_input(int rows, int cols) {
  expects(rows >= 0 && cols >= 0, strf("gemm_engine: reserve_fp8_input(%d, %d): negative size", rows, cols));
  const std::size_t bytes = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
  if (bytes <= fp8_input_bytes_) return;
  fp8_input_ = piecewise::device_buffer();  // the old scratch first: at most one held
  fp8_input_bytes_ = 0;
  fp8_input_ = piecewise::device_buffer(bytes, "gemm_engine FP8 input");
  fp8_input_bytes_ = bytes;
}

const gemm_engine::plan& gemm_engine::make_plan(int M, int K, int N, int ldx, int ldy, variant v) {
  const bool f32_out = v == variant::f32_out, fp8 = v == variant::fp8;
  expects(M > 0 && K > 0 && N > 0, strf("gemm_engine: bad shape M=%d K=%d N=%d", M, K, N));
  expects(K % 8 == 0 && N % 8 == 0 && ldx % 8 == 0 && ldy % 8 == 0 && ldx >= K &&
                        ldy >= N, strf("gemm_engine: K, N and row strides must be multiples of 8 (M=%d K=%d N=%d "
                    "ldx=%d ldy=%d)",
                    M, K, N, ldx, ldy));
  expects(!fp8 || (K % 16 == 0 && ldx % 16 == 0),
          strf("gemm_engine: FP8 GEMMs need K and the input row stride to be multiples of 16 (M=%d K=%d N=%d ldx=%d)",
               M, K, N, ldx));
  auto p = new plan();
  try {
    lt_check(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate",
             M, K, N);
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    lt_check(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)),
             "set TRANSA", M, K, N);
    lt_check(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)),
             "set TRANSB", M, K, N);
    // FP8: both operands e4m3 in the "TN" layout Hopper's FP8 GEMMs require (W transposed,
    // x not), per-tensor scales as device pointers (set per call: they belong to the weight).
    const cudaDataType_t in = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
    lt_check(cublasLtMatrixLayoutCreate(&p->a, in, K, N, K), "layout W", M, K, N);
    lt_check(cublasLtMatrixLayoutCreate(&p->b, in, K, M, ldx), "layout x", M, K, N);
    lt_check(cublasLtMatrixLayoutCreate(&p->c, f32_out ? CUDA_R_32F : CUDA_R_16BF, N, M, ldy), "layout y", M, K, N);

    cublasLtMatmulPreference_t pref = nullptr;
    lt_check(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate", M, K, N);
    std::uint64_t ws = workspace_bytes_;
    std::uint32_t align = 16;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                         sizeof(ws));
    for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
      cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof(align));
    }
    if (fp8) {
      // The per-tensor scales are set per call (linear_fp8), but the algorithm must be chosen
      // with scale pointers present: without them the heuristic offered algorithms that
      // cublasLtMatmul then refused with the scales set (CUBLAS_STATUS_NOT_SUPPORTED at M=24
      // and M=128, K=256, on the H200). Any device pointer serves here.
      const void* sp = workspace_.data();
      lt_check(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sp, sizeof(sp)),
               "set A_SCALE_POINTER", M, K, N);
      lt_check(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sp, sizeof(sp)),
               "set B_SCALE_POINTER", M, K, N);
      // NH_FP8_FAST_ACCUM=1 (read once, for A/B measurements only): Hopper's fast FP8
      // accumulation, which keeps the partial sums in the tensor cores' reduced-precision
      // accumulator instead of promoting them to fp32; it changes the results, so it is off.
      static const std::int8_t fast = [] {
        const char* e = std::getenv("NH_FP8_FAST_ACCUM");
        return static_cast<std::int8_t>(e != nullptr && e[0] == '1');
      }();
      if (fast != 0)
        lt_check(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof(fast)),
                 "set FAST_ACCUM", M, K, N);
    }
    constexpr int kCandidates = 8;
    cublasLtMatmulHeuristicResult_t res[kCandidates]{};
    int found = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle_, p->op, p->a, p->b, p->c, p->c, pref,
                                                       fp8 ? kCandidates : 1, res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    lt_check(st, "cublasLtMatmulAlgoGetHeuristic", M, K, N);
    expects(found > 0, strf("gemm_engine: no cuBLASLt algorithm for M=%d K=%d N=%d", M, K, N));
    int pick = 0;
    if (fp8) {  // the heuristic's first choice that cuBLASLt accepts for these descriptors
      pick = -1;
      for (int i = 0; i < found && pick < 0; ++i) {
        cublasLtMatmulHeuristicResult_t check{};
        if (cublasLtMatmulAlgoCheck(handle_, p->op, p->a, p->b, p->c, p->c, &res[i].algo, &check) ==
                CUBLAS_STATUS_SUCCESS &&
            check.workspaceSize <= workspace_bytes_)
          pick = i;
      }
      expects(pick >= 0, strf("gemm_engine: no cuBLASLt FP8 algorithm accepts M=%d K=%d N=%d (%d candidates)", M,
                              K, N, found));
    }
    p->algo = res[pick].algo;
  } catch (...) {
    delete p;
    throw;
  }
  plans_[key{M, K, N, ldx, ldy, static_cast<int>(v)}] = p;
  return *p;
}

void gemm_engine::prepare(int M, int K, int N) {
  if (!prepared(M, K, N)) make_plan(M, K, N, K, N, variant::bf16);
}

void gemm_engine::prepare_f32_out(int M, int K, int N, int ldy) {
  if (plans_.count(key{M, K, N, K, ldy, static_cast<int>(variant::f32_out)}) == 0)
    make_plan(M, K, N, K, ldy, variant::f32_out);
}

void gemm_engine::prepare_fp8(int M, int K, int N, int ldx, int ldy) {
  if (plans_.count(key{M, K, N, ldx, ldy, static_cast<int>(variant::fp8)}) == 0)
    make_plan(M, K, N, ldx, ldy, variant::fp8);
}

void gemm_engine::prepare(const weight& W, int M) {
  require_supported(W);
  if (W.type == dtype::fp8_e4m3) prepare_fp8(M, W.cols, W.rows, W.cols, W.rows);
  else if (W.type == dtype::bf16 || M > kNvfp4GemvMaxRows) prepare(M, W.cols, W.rows);
}

bool gemm_engine::prepared(int M, int K, int N) const {
  return plans_.count(key{M, K, N, K, N, static_cast<int>(variant::bf16)}) != 0;
}

const gemm_engine::plan& gemm_engine::get_plan(int M, int K, int N, int ldx, int ldy, variant v, cudaStream_t s) {
  const bool f32_out = v == variant::f32_out;
  auto it = plans_.find(key{M, K, N, ldx, ldy, static_cast<int>(v)});
  if (it != plans_.end()) return *it->second;
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  PIECEWISE_CUDA_TRY(cudaStreamIsCapturing(s, &cs));
  if (cs != cudaStreamCaptureStatusNone) {
    throw piecewise::config_error(strf(
        "gemm_engine: shape M=%d K=%d N=%d (ldx=%d ldy=%d%s) was not prepared before stream "
        "capture; call prepare() for every captured shape first",
        M, K, N, ldx, ldy, f32_out ? ", fp32 out" : v == variant::fp8 ? ", FP8" : ""));
  }
  return make_plan(M, K, N, ldx, ldy, v);
}

void gemm_engine::linear(const bf16* x, const weight& W, bf16* y, int M, cudaStream_t s, bool accumulate) {
  linear_strided(x, W.cols, W, y, W.rows, M, s, accumulate);
}

bool gemm_engine::uses_gemv(int M) const noexcept {
  static const bool env_on = [] {
    const char* e = std::getenv("NH_GEMV");
    return e == nullptr || e[0] != '0';
  }();
  // M = 1 only: at 2 and 4 rows the GEMV lost to cuBLASLt on the H200 (Nano-9B-v2 decode at
  // batch 4: 7.18 vs 5.44 ms; docs/benchmarks.md), at 1 row it wins (4.98 vs 5.08 ms).
  return gemv_ && env_on && M == kGemmGemvRows;
}

void gemm_engine::observe(const bf16* x, int ldx, const weight& W, int M, cudaStream_t s) const {
  if (observe_ == nullptr || M == 0) return;
  const auto it = observe_->find(W.data);
  if (it != observe_->end()) amax_abs_rows(x, ldx, M, W.cols, it->second, s);
}

void gemm_engine::linear_relu2(const bf16* x, const weight& Wv, bf16* y, int M, cudaStream_t s) {
  require_supported(Wv);
  if (M == 0) return;
  if (Wv.type == dtype::nvfp4 && M <= kNvfp4GemvMaxRows) {
    gemv_nvfp4(x, Wv.cols, Wv, y, Wv.rows, M, gemv_out::store_relu2, s);
    return;
  }
  if (Wv.type == dtype::bf16 && uses_gemv(M)) {
    observe(x, Wv.cols, Wv, M, s);
    const int K = Wv.cols, N = Wv.rows;
    expects(!misaligned(x) && !misaligned(Wv.data) && !misaligned(y),
            strf("gemm_engine: pointers must be 16-byte aligned (M=%d K=%d N=%d)", M, K, N));
    gemv_bf16(x, K, static_cast<const bf16*>(Wv.data), N, K, y, N, M, gemv_out::store_relu2, s);
    return;
  }
  linear(x, Wv, y, M, s);
  relu2_inplace(y, static_cast<std::size_t>(M) * Wv.rows, s);
}

void gemm_engine::linear_strided(const bf16* x, int ldx, const weight& Wv, bf16* y, int ldy, int M, cudaStream_t s,
                                 bool accumulate) {
  require_supported(Wv);
  if (M == 0) return;
  observe(x, ldx, Wv, M, s);
  const int K = Wv.cols, N = Wv.rows;
  if (Wv.type == dtype::fp8_e4m3) {
    // The input quantized with the weight's static scale into the scratch (rows of K bytes),
    // then the FP8 GEMM with both scales.
    std::uint8_t* xq = fp8_input(Wv, M);
    quantize_fp8_rows(x, ldx, Wv.input_scale, xq, K, M, K, s);
    linear_fp8(xq, K, Wv.input_scale, Wv, y, ldy, M, s, accumulate);
    return;
  }
  if (Wv.type == dtype::nvfp4) {
    if (M <= kNvfp4GemvMaxRows) {
      gemv_nvfp4(x, ldx, Wv, y, ldy, M, accumulate ? gemv_out::accumulate : gemv_out::store, s);
      return;
    }
    // Above the GEMV's rows: the weight dequantized (e2m1 x block scale x 2^-8, exact in bf16)
    // into the scratch, then one bf16 GEMM with the global scale x 2^8 as alpha.
    const std::size_t need = static_cast<std::size_t>(N) * static_cast<std::size_t>(K) * sizeof(bf16);
    expects(need <= nvfp4_scratch_bytes_,
            strf("gemm_engine: NVFP4 weight '%s' [%d, %d] at M=%d rows needs %zu bytes of dequantization scratch, %zu "
                 "reserved (call reserve_nvfp4_scratch before the first NVFP4 linear)",
                 Wv.name, N, K, M, need, nvfp4_scratch_bytes_));
    auto* Wd = static_cast<bf16*>(nvfp4_scratch_.data());
    expects(!misaligned(x) && !misaligned(y), strf("gemm_engine: pointers must be 16-byte aligned (M=%d K=%d N=%d)", M, K, N));
    const plan& p = get_plan(M, K, N, ldx, ldy, variant::bf16, s);
    dequantize_nvfp4(Wv, Wd, s);
    const float alpha = nvfp4_alpha(Wv);
    const float beta = accumulate ? 1.0f : 0.0f;
    lt_check(cublasLtMatmul(handle_, p.op, &alpha, Wd, p.a, x, p.b, &beta, y, p.c, y, p.c, &p.algo, workspace_.data(),
                            workspace_bytes_, s),
             "cublasLtMatmul (NVFP4 dequantized)", M, K, N);
    return;
  }
  const auto* W = static_cast<const bf16*>(Wv.data);
  expects(!misaligned(x) && !misaligned(W) && !misaligned(y), strf("gemm_engine: pointers must be 16-byte aligned (M=%d K=%d N=%d)", M, K, N));
  if (uses_gemv(M)) {
    gemv_bf16(x, ldx, W, N, K, y, ldy, M, accumulate ? gemv_out::accumulate : gemv_out::store, s);
    return;
  }
  const plan& p = get_plan(M, K, N, ldx, ldy, variant::bf16, s);
  const float alpha = 1.0f;
  const float beta = accumulate ? 1.0f : 0.0f;
  cublasStatus_t st = cublasLtMatmul(handle_, p.op, &alpha, W, p.a, x, p.b, &beta, y, p.c, y, p.c,
                                     &p.algo, workspace_.data(), workspace_bytes_, s);
  lt_check(st, "cublasLtMatmul", M, K, N);
}

std::uint8_t* gemm_engine::fp8_input(const weight& Wv, int M) {
  expects(Wv.type == dtype::fp8_e4m3, strf("gemm_engine: weight '%s' has dtype %s: only FP8 weights take an e4m3 input",
                                           Wv.name, dtype_name(Wv.type)));
  require_supported(Wv);
  expects(M >= 0, strf("gemm_engine: FP8 input of weight '%s' for M=%d rows", Wv.name, M));
  const std::size_t need = static_cast<std::size_t>(M) * static_cast<std::size_t>(Wv.cols);
  expects(need <= fp8_input_bytes_,
          strf("gemm_engine: FP8 weight '%s' with M=%d rows of K=%d needs %zu bytes of FP8 input scratch, %zu "
               "reserved (call reserve_fp8_input before the first FP8 linear)",
               Wv.name, M, Wv.cols, need, fp8_input_bytes_));
  return static_cast<std::uint8_t*>(fp8_input_.data());
}

void gemm_engine::linear_fp8_input(const weight& Wv, bf16* y, int M, cudaStream_t s, bool accumulate) {
  std::uint8_t* xq = fp8_input(Wv, M);
  linear_fp8(xq, Wv.cols, Wv.input_scale, Wv, y, Wv.rows, M, s, accumulate);
}

void gemm_engine::linear_f32_out(const bf16* x, const weight& Wv, float* y, int ldy, int M, cudaStream_t s) {
  expects(Wv.type == dtype::bf16, strf("gemm_engine: weight '%s' has dtype %s: the fp32-output GEMM reads bf16 only",
                                       Wv.name, dtype_name(Wv.type)));
  if (M == 0) return;
  const int K = Wv.cols, N = Wv.rows;
  const auto* W = static_cast<const bf16*>(Wv.data);
  expects(!misaligned(x) && !misaligned(W) && !misaligned(y),
          strf("gemm_engine: pointers must be 16-byte aligned (M=%d K=%d N=%d, fp32 out)", M, K, N));
  if (uses_gemv(M)) {
    gemv_bf16(x, K, W, N, K, y, ldy, M, gemv_out::f32, s);
    return;
  }
  const plan& p = get_plan(M, K, N, K, ldy, variant::f32_out, s);
  const float alpha = 1.0f, beta = 0.0f;
  cublasStatus_t st = cublasLtMatmul(handle_, p.op, &alpha, W, p.a, x, p.b, &beta, y, p.c, y, p.c, &p.algo,
                                     workspace_.data(), workspace_bytes_, s);
  lt_check(st, "cublasLtMatmul (fp32 out)", M, K, N);
}

void gemm_engine::linear_fp8(const std::uint8_t* xq, int ldx, const float* x_scale, const weight& Wv, bf16* y, int ldy,
                             int M, cudaStream_t s, bool accumulate) {
  expects(Wv.type == dtype::fp8_e4m3 && Wv.scale != nullptr,
          strf("gemm_engine: weight '%s' has dtype %s%s: the FP8 GEMM reads fp8_e4m3 weights with their scale", Wv.name,
               dtype_name(Wv.type), Wv.type == dtype::fp8_e4m3 ? " but no scale" : ""));
  expects(x_scale != nullptr, strf("gemm_engine: FP8 GEMM of weight '%s' without an input scale", Wv.name));
  if (M == 0) return;
  const int K = Wv.cols, N = Wv.rows;
  expects(!misaligned(xq) && !misaligned(Wv.data) && !misaligned(y),
          strf("gemm_engine: pointers must be 16-byte aligned (M=%d K=%d N=%d, FP8)", M, K, N));
  const plan& p = get_plan(M, K, N, ldx, ldy, variant::fp8, s);
  // A is W, B is x (see make_plan): their scales, as device pointers of this call.
  const void* sa = Wv.scale;
  const void* sb = x_scale;
  lt_check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sa, sizeof(sa)),
           "set A_SCALE_POINTER", M, K, N);
  lt_check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sb, sizeof(sb)),
           "set B_SCALE_POINTER", M, K, N);
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  cublasStatus_t st = cublasLtMatmul(handle_, p.op, &alpha, Wv.data, p.a, xq, p.b, &beta, y, p.c, y, p.c, &p.algo,
                                     workspace_.data(), workspace_bytes_, s);
  lt_check(st, "cublasLtMatmul (FP8)", M, K, N);
}

}  // namespace nemotron_h
