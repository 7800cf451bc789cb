// One fused CPU kernel for the row-wise part of a VectorQuantizer training
// step (hard EM §2.2, Monte-Carlo soft EM §3.2), after the distance GEMM.
//
// For each row i of x [N, d], given xe = x e^T [N, K] and h_j = ||e_j||^2 / 2:
//   score_ij = xe_ij - h_j           (-||x_i - e_j||^2 / 2 up to a row constant)
//   hard EM (S = 0 uniforms):  z_i = argmax_j score_ij          (Eq. 1 / Eq. 7)
//   soft EM (S uniforms u_il): z_i^l = F_i^{-1}(u_il), F_i the CDF of
//        Multinomial(softmax(scale * score_i)), scale = 2 / temperature
//   q_i  = (1 / S) sum_l e_{z_i^l}                              (Eq. 11)
//   distortion_i = ||x_i - q_i||^2, computed directly           (Eq. 2)
//   counts_j = sum_{i kept} #{l : z_i^l = j} / S                (Eq. 3, 8)
//   sums_j   = sum_{i kept} #{l : z_i^l = j} / S * x_i          (Eq. 4, 8)
//
// One pass over each row instead of TF's separate passes (bias, argmax or
// categorical with a double exp per logit, gather or sparse product, loss,
// sparse product for the sums). Eq. 11 and the statistics visit each
// distinct code of a row once, weighted by its multiplicity. With a small
// K x d the statistics are accumulated per shard of rows into private
// [K, d] buffers, added in shard order; otherwise the rows are processed in
// parallel, then the statistics in parallel over ranges of codes, each
// code's rows added in row order. Either way the order of every sum depends
// on the shape only, so the sums are bit-identical from run to run whatever
// the threads. Rows not kept (padding, which may hold
// non-finite values) get valid indices and their q, but distortion 0 and no
// part in counts and sums.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#ifdef __AVX__
#include <immintrin.h>
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/threadpool.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace t2t_vqem {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Status;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

REGISTER_OP("VqemQuantizeRows")
    .Input("xe: float")          // [N, K]  x e^T
    .Input("half_norms: float")  // [K]     ||e_j||^2 / 2
    .Input("x: float")           // [N, d]
    .Input("codebook: float")    // [K, d]
    .Input("keep: bool")         // [N]
    .Input("uniforms: float")    // [N, S]  S = 0: hard EM
    .Attr("scale: float = 2.0")
    .Output("indices: int32")    // [N, max(S, 1)]
    .Output("quantized: float")  // [N, d]
    .Output("distortion: float") // [N]
    .Output("counts: float")     // [K]
    .Output("sums: float")       // [K, d]
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle xe, x, codebook, uniforms;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &xe));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &x));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(3), 2, &codebook));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(5), 2, &uniforms));
      DimensionHandle n = c->Dim(xe, 0), k = c->Dim(xe, 1), d = c->Dim(x, 1);
      DimensionHandle s = c->Dim(uniforms, 1);
      if (c->ValueKnown(s) && c->Value(s) == 0) s = c->MakeDim(1);
      c->set_output(0, c->Matrix(n, s));
      c->set_output(1, c->Matrix(n, d));
      c->set_output(2, c->Vector(n));
      c->set_output(3, c->Vector(k));
      c->set_output(4, c->Matrix(k, d));
      return Status();
    });

namespace {

using ArrayF = Eigen::Array<float, Eigen::Dynamic, 1>;
using MapF = Eigen::Map<ArrayF>;
using ConstMapF = Eigen::Map<const ArrayF>;

// Number of statistics shards: each has private [K, d] sums of at most
// 2 MB (so they stay in cache and adding them up is cheap), and there are
// at most 16. It depends on the shape only, so the order of the
// floating-point sums is fixed. With one shard, the rows are processed in
// parallel first and the statistics after (see the file's head).
int64_t NumShards(int64_t n, int64_t k, int64_t d) {
  const int64_t budget = (int64_t{2} << 20) / (4 * std::max<int64_t>(k * d, 1));
  return std::max<int64_t>(1, std::min<int64_t>({16, budget, n}));
}

// The first j with a_j - b_j >= top (Eq. 1's argmax, ties to the lowest
// index, given top = max_j a_j - b_j); 0 if there is none (a row of
// non-finite scores, i.e. padding: any valid code will do).
int64_t FirstAtLeast(const float* a, const float* b, int64_t k, float top) {
  int64_t j = 0;
#ifdef __AVX__
  const __m256 limit = _mm256_set1_ps(top);
  for (; j + 8 <= k; j += 8) {
    const __m256 v = _mm256_sub_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j));
    const int hits = _mm256_movemask_ps(_mm256_cmp_ps(v, limit, _CMP_GE_OQ));
    if (hits) return j + __builtin_ctz(hits);
  }
#endif
  for (; j < k; ++j) {
    if (a[j] - b[j] >= top) return j;
  }
  return 0;
}

// Copies a row of q to the output with non-temporal stores where possible:
// the [N, d] output is written once and not read here, so it need not be
// read into the cache first.
void StreamOut(const float* from, float* to, int64_t d) {
#ifdef __AVX__
  if (reinterpret_cast<uintptr_t>(to) % 32 == 0 && d % 8 == 0) {
    for (int64_t t = 0; t < d; t += 8) {
      _mm256_stream_ps(to + t, _mm256_loadu_ps(from + t));
    }
    return;
  }
#endif
  std::copy(from, from + d, to);
}

void StreamFence() {
#ifdef __AVX__
  _mm_sfence();
#endif
}

class QuantizeRowsOp : public OpKernel {
 public:
  explicit QuantizeRowsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scale", &scale_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& xe = ctx->input(0);
    const Tensor& half_norms = ctx->input(1);
    const Tensor& x = ctx->input(2);
    const Tensor& codebook = ctx->input(3);
    const Tensor& keep = ctx->input(4);
    const Tensor& uniforms = ctx->input(5);
    OP_REQUIRES(ctx, xe.dims() == 2 && x.dims() == 2 && codebook.dims() == 2 &&
                         uniforms.dims() == 2 && half_norms.dims() == 1 &&
                         keep.dims() == 1,
                ::tensorflow::errors::InvalidArgument(
                    "VqemQuantizeRows expects xe [N, K], half_norms [K], "
                    "x [N, d], codebook [K, d], keep [N], uniforms [N, S]"));
    const int64_t n = xe.dim_size(0), k = xe.dim_size(1), d = x.dim_size(1);
    const int64_t s = uniforms.dim_size(1);
    OP_REQUIRES(
        ctx,
        x.dim_size(0) == n && codebook.dim_size(0) == k &&
            codebook.dim_size(1) == d && half_norms.dim_size(0) == k &&
            keep.dim_size(0) == n && uniforms.dim_size(0) == n && k >= 1,
        ::tensorflow::errors::InvalidArgument(
            "VqemQuantizeRows: inconsistent shapes xe ",
            xe.shape().DebugString(), ", half_norms ",
            half_norms.shape().DebugString(), ", x ", x.shape().DebugString(),
            ", codebook ", codebook.shape().DebugString(), ", keep ",
            keep.shape().DebugString(), ", uniforms ",
            uniforms.shape().DebugString()));
    const int64_t draws = std::max<int64_t>(s, 1);

    Tensor *indices, *quantized, *distortion, *counts, *sums;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({n, draws}), &indices));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({n, d}), &quantized));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({n}), &distortion));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({k}), &counts));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({k, d}), &sums));

    const int64_t shards = NumShards(n, k, d);
    // Shard 0 accumulates into the outputs, the others into private buffers.
    Tensor extra_counts, extra_sums;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DT_FLOAT,
                                           TensorShape({shards - 1, k}),
                                           &extra_counts));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(::tensorflow::DT_FLOAT,
                                           TensorShape({shards - 1, k * d}),
                                           &extra_sums));
    float* count_out = counts->flat<float>().data();
    float* sum_out = sums->flat<float>().data();
    float* extra_count_p = extra_counts.flat<float>().data();
    float* extra_sum_p = extra_sums.flat<float>().data();

    const float* xe_p = xe.flat<float>().data();
    const float* h_p = half_norms.flat<float>().data();
    const float* x_p = x.flat<float>().data();
    const float* e_p = codebook.flat<float>().data();
    const bool* keep_p = keep.flat<bool>().data();
    const float* u_p = uniforms.flat<float>().data();
    int32_t* idx_p = indices->flat<int32_t>().data();
    float* q_p = quantized->flat<float>().data();
    float* dist_p = distortion->flat<float>().data();
    const float scale = scale_;

    // The row's distinct codes, ascending, with weights #draws / S.
    auto distinct = [&](int64_t i, std::vector<int32_t>* codes,
                        std::vector<float>* weights) {
      codes->assign(idx_p + i * draws, idx_p + (i + 1) * draws);
      std::sort(codes->begin(), codes->end());
      weights->clear();
      int64_t out = 0;
      for (int64_t l = 0; l < draws;) {
        int64_t run = l + 1;
        while (run < draws && (*codes)[run] == (*codes)[l]) ++run;
        (*codes)[out++] = (*codes)[l];
        weights->push_back(static_cast<float>(run - l) / static_cast<float>(draws));
        l = run;
      }
      codes->resize(out);
    };
    // Eq. 3-4 / 8 batch terms of row i, for its codes in [lo, hi).
    auto accumulate = [&](int64_t i, const std::vector<int32_t>& codes,
                          const std::vector<float>& weights, float* counts_to,
                          float* sums_to, int64_t lo, int64_t hi) {
      ConstMapF x_i(x_p + i * d, d);
      for (size_t c = 0; c < codes.size(); ++c) {
        if (codes[c] < lo || codes[c] >= hi) continue;
        counts_to[codes[c]] += weights[c];
        MapF sum(sums_to + codes[c] * d, d);
        if (weights[c] == 1.0f) {
          sum += x_i;
        } else {
          sum += weights[c] * x_i;
        }
      }
    };
    // E step, Eq. 11 and distortion of rows [begin, end); with counts_to,
    // also their statistics.
    auto run_rows = [&](int64_t begin, int64_t end, float* counts_to,
                        float* sums_to) {
      ConstMapF half(h_p, k);
      ArrayF prob(s == 0 ? 0 : k), q_row(d);
      std::vector<double> cdf(s == 0 ? 0 : k);
      std::vector<int32_t> codes;
      std::vector<float> weights;
      for (int64_t i = begin; i < end; ++i) {
        ConstMapF xe_i(xe_p + i * k, k);
        const float top = (xe_i - half).maxCoeff();
        int32_t* drawn = idx_p + i * draws;
        if (s == 0) {  // Eq. 1: the first index of the largest score
          const int64_t best = FirstAtLeast(xe_p + i * k, h_p, k, top);
          drawn[0] = static_cast<int32_t>(best);
          const float* e = e_p + best * d;  // q_i = e_best
          StreamOut(e, q_p + i * d, d);
          if (!keep_p[i]) {
            dist_p[i] = 0.0f;
            continue;
          }
          ConstMapF x_i(x_p + i * d, d);
          dist_p[i] = (x_i - ConstMapF(e, d)).square().sum();
          if (counts_to != nullptr) {
            counts_to[best] += 1.0f;
            MapF(sums_to + best * d, d) += x_i;
          }
          continue;
        } else {  // §3.2: inverse-CDF draws from softmax(scale * score)
          prob = (scale * ((xe_i - half) - top)).exp();
          double total = 0.0;
          for (int64_t j = 0; j < k; ++j) cdf[j] = total += prob[j];
          for (int64_t l = 0; l < s; ++l) {
            const double target = static_cast<double>(u_p[i * s + l]) * total;
            const int64_t j =
                std::upper_bound(cdf.begin(), cdf.end(), target) - cdf.begin();
            drawn[l] = static_cast<int32_t>(std::min<int64_t>(j, k - 1));
          }
        }
        distinct(i, &codes, &weights);
        ArrayF& q = q_row;  // Eq. 11, formed in cache, then streamed out
        for (size_t c = 0; c < codes.size(); ++c) {
          ConstMapF e(e_p + codes[c] * d, d);
          if (c == 0 && weights[c] == 1.0f) {
            q = e;
          } else if (c == 0) {
            q = weights[c] * e;
          } else {
            q += weights[c] * e;
          }
        }
        const bool kept = keep_p[i];
        dist_p[i] = kept ? (ConstMapF(x_p + i * d, d) - q).square().sum() : 0.0f;
        StreamOut(q.data(), q_p + i * d, d);
        if (kept && counts_to != nullptr) {
          accumulate(i, codes, weights, counts_to, sums_to, 0, k);
        }
      }
      StreamFence();
    };

    auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    if (shards == 1) {
      const int64_t cost = k * (s == 0 ? 2 : 12) + d * draws * 4;
      pool->ParallelFor(
          n, ::tsl::thread::ThreadPool::SchedulingParams::Adaptive(cost),
          [&](int64_t begin, int64_t end) {
            run_rows(begin, end, nullptr, nullptr);
          });
      // The statistics by ranges of codes, one per thread: each code's rows
      // are added in row order whatever the split, so the sums do not
      // depend on the number of threads.
      const int64_t parts = std::max(1, pool->NumThreads());
      pool->ParallelFor(parts, [&](int64_t first, int64_t last) {
        std::vector<int32_t> codes;
        std::vector<float> weights;
        for (int64_t part = first; part < last; ++part) {
          const int64_t lo = k * part / parts, hi = k * (part + 1) / parts;
          std::fill(count_out + lo, count_out + hi, 0.0f);
          std::fill(sum_out + lo * d, sum_out + hi * d, 0.0f);
          for (int64_t i = 0; i < n; ++i) {
            const int32_t* row = idx_p + i * draws;
            bool mine = false;
            for (int64_t l = 0; l < draws; ++l) {
              mine |= row[l] >= lo && row[l] < hi;
            }
            if (!mine || !keep_p[i]) continue;
            distinct(i, &codes, &weights);
            accumulate(i, codes, weights, count_out, sum_out, lo, hi);
          }
        }
      });
      return;
    }
    pool->ParallelFor(shards, [&](int64_t first, int64_t last) {
      for (int64_t shard = first; shard < last; ++shard) {
        float* my_counts =
            shard == 0 ? count_out : extra_count_p + (shard - 1) * k;
        float* my_sums =
            shard == 0 ? sum_out : extra_sum_p + (shard - 1) * k * d;
        std::fill(my_counts, my_counts + k, 0.0f);
        std::fill(my_sums, my_sums + k * d, 0.0f);
        run_rows(n * shard / shards, n * (shard + 1) / shards, my_counts,
                 my_sums);
      }
    });
    // Add the shards' statistics in shard order (deterministic).
    for (int64_t shard = 1; shard < shards; ++shard) {
      MapF(count_out, k) += ConstMapF(extra_count_p + (shard - 1) * k, k);
    }
    const int64_t width = k * d, block = 16384;
    pool->ParallelFor(
        (width + block - 1) / block, [&](int64_t first, int64_t last) {
          const int64_t lo = first * block;
          const int64_t len = std::min(last * block, width) - lo;
          MapF dst(sum_out + lo, len);
          for (int64_t shard = 1; shard < shards; ++shard) {
            dst += ConstMapF(extra_sum_p + (shard - 1) * width + lo, len);
          }
        });
  }

 private:
  float scale_;
};

REGISTER_KERNEL_BUILDER(Name("VqemQuantizeRows").Device(DEVICE_CPU),
                        QuantizeRowsOp);

}  // namespace
}  // namespace t2t_vqem
