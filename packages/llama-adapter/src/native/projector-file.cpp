#include "projector-file.h"

#include <cmath>
#include <cstring>
#include <memory>

#include "napi-common.h"

namespace leanvision {

namespace {

enum Tp {
    Q_W, K0_W, K0_B, K2_W, K2_B, V0_W, V0_B, V2_W, V2_B, LNQ_W, LNQ_B, LNK_W, LNK_B, LNV_W, LNV_B,
    IN_W, IN_B, OUT_W, OUT_B, M0_W, M0_B, M2_W, M2_B, TP_COUNT
};

const std::vector<const char *> & TokenPackerTensorNames() {
    static const std::vector<const char *> names = {
        "q_proj_1.weight", "k_proj_1.0.weight", "k_proj_1.0.bias", "k_proj_1.2.weight", "k_proj_1.2.bias",
        "v_proj_1.0.weight", "v_proj_1.0.bias", "v_proj_1.2.weight", "v_proj_1.2.bias",
        "ln_q_1.weight", "ln_q_1.bias", "ln_k_1.weight", "ln_k_1.bias", "ln_v_1.weight", "ln_v_1.bias",
        "clip_attn.in_proj_weight", "clip_attn.in_proj_bias", "clip_attn.out_proj.weight", "clip_attn.out_proj.bias",
        "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"};
    return names;
}

// Expected ggml shape [ne0, ne1] of each tensor (ne1 = 1 for vectors), from the layout.
void ExpectedShape(const ProjectorFileLayout & l, int i, int64_t & ne0, int64_t & ne1) {
    const int64_t c = l.inputDim, m = l.multiLevelDim, e = l.embedDim, k = l.kvHidden, h = l.mlpHidden, o = l.outputDim;
    switch (i) {
        case Q_W: ne0 = c, ne1 = e; return;
        case K0_W: case V0_W: ne0 = m, ne1 = k; return;
        case K0_B: case V0_B: ne0 = k, ne1 = 1; return;
        case K2_W: case V2_W: ne0 = k, ne1 = e; return;
        case IN_W: ne0 = e, ne1 = 3 * e; return;
        case IN_B: ne0 = 3 * e, ne1 = 1; return;
        case OUT_W: ne0 = e, ne1 = e; return;
        case M0_W: ne0 = e, ne1 = h; return;
        case M0_B: ne0 = h, ne1 = 1; return;
        case M2_W: ne0 = h, ne1 = o; return;
        case M2_B: ne0 = o, ne1 = 1; return;
        default: ne0 = e, ne1 = 1; return;  // the other biases and the LayerNorms
    }
}

bool IsMatrixType(ggml_type t) { return t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16; }

void CheckTokenPackerTensors(const GgufFile & f, const ProjectorFileLayout & l) {
    if (l.inputDim < 1 || l.outputDim < 1 || l.scale < 1 || l.heads < 1 || l.multiLevelDim < 1 || l.embedDim < 1 || l.kvHidden < 1 ||
        l.mlpHidden < 1 || l.embedDim % l.heads != 0 || !(l.eps > 0)) {
        throw CodedError("INVALID_MODEL", f.path + ": inconsistent TokenPacker layout");
    }
    const auto & names = TokenPackerTensorNames();
    for (int i = 0; i < TP_COUNT; i++) {
        const ggml_tensor * t = f.Tensor(names[i]);
        if (!t) throw CodedError("INVALID_MODEL", f.path + " lacks the TokenPacker tensor " + names[i]);
        int64_t ne0, ne1;
        ExpectedShape(l, i, ne0, ne1);
        if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1) {
            throw CodedError("INVALID_MODEL", f.path + ": " + names[i] + " is [" + std::to_string(t->ne[0]) + ", " + std::to_string(t->ne[1]) +
                                                  ", " + std::to_string(t->ne[2]) + ", " + std::to_string(t->ne[3]) + "], expected [" +
                                                  std::to_string(ne0) + ", " + std::to_string(ne1) + ", 1, 1]");
        }
        const bool vector = ne1 == 1;
        if (vector ? t->type != GGML_TYPE_F32 : !IsMatrixType(t->type)) {
            throw CodedError("INVALID_MODEL", f.path + ": " + names[i] + " has the type " + ggml_type_name(t->type) +
                                                  (vector ? " (vectors are f32)" : " (matrices are f32, f16 or bf16)"));
        }
        if (f.DataOffset(names[i]) + ggml_nbytes(t) > f.fileSize) {
            throw CodedError("INVALID_MODEL", f.path + " is truncated (the data of " + names[i] + " lies past the end of the file)");
        }
    }
}

// LayerNorm over ne0 with an affine weight and bias (PyTorch nn.LayerNorm).
ggml_tensor * LayerNorm(ggml_context * ctx, ggml_tensor * x, ggml_tensor * w, ggml_tensor * b, float eps) {
    return ggml_add(ctx, ggml_mul(ctx, ggml_norm(ctx, x, eps), w), b);
}

ggml_tensor * Linear(ggml_context * ctx, ggml_tensor * x, ggml_tensor * w, ggml_tensor * b) {
    ggml_tensor * y = ggml_mul_mat(ctx, w, x);
    return b ? ggml_add(ctx, y, b) : y;
}

// TokenPacker's forward on [rowDim, Q] rows (ggml order: a row is contiguous):
//   query = LN_q(q_proj_1(point))                                  [E, Q]
//   key   = LN_k(k_proj_1.2(GELU(k_proj_1.0(multi))))  (value alike) [E, s2*Q]
//   each query attends over its own region's s2 keys with nn.MultiheadAttention (in_proj, heads, out_proj),
//   computed with the key and value projections moved to the query side (below: same result, fewer FLOPs)
//   out   = mlp.2(GELU(mlp.0(attended)))                           [O, Q]
// GELU is the exact (erf) one, as nn.GELU(); LayerNorm eps from the file (official 1e-6).
ggml_tensor * BuildTokenPacker(ggml_context * ctx, const TokenPackerModel & m, const ProjectorFileLayout & l, ggml_tensor * x, int64_t q) {
    const auto & t = m.t;
    const int64_t c = l.inputDim, mdim = l.multiLevelDim, e = l.embedDim, s2 = (int64_t)l.scale * l.scale;
    const int64_t heads = l.heads, d = e / heads;

    ggml_tensor * point = ggml_cont(ctx, ggml_view_2d(ctx, x, c, q, x->nb[1], 0));
    ggml_tensor * multi = ggml_cont(ctx, ggml_view_3d(ctx, x, mdim, s2, q, mdim * sizeof(float), x->nb[1], c * sizeof(float)));
    multi = ggml_reshape_2d(ctx, multi, mdim, s2 * q);

    ggml_tensor * query = LayerNorm(ctx, Linear(ctx, point, t[Q_W], nullptr), t[LNQ_W], t[LNQ_B], l.eps);
    auto branch = [&](int w0, int b0, int w2, int b2, int lnw, int lnb) {
        ggml_tensor * h = ggml_gelu_erf(ctx, Linear(ctx, multi, t[w0], t[b0]));
        return LayerNorm(ctx, Linear(ctx, h, t[w2], t[b2]), t[lnw], t[lnb], l.eps);
    };
    ggml_tensor * key = branch(K0_W, K0_B, K2_W, K2_B, LNK_W, LNK_B);
    ggml_tensor * value = branch(V0_W, V0_B, V2_W, V2_B, LNV_W, LNV_B);

    // nn.MultiheadAttention: in_proj_weight stacks the q, k and v projections (rows [0,E), [E,2E), [2E,3E)).
    auto inWeight = [&](int i) { return ggml_view_2d(ctx, t[IN_W], e, e, t[IN_W]->nb[1], i * e * t[IN_W]->nb[1]); };
    auto inBias = [&](int i) { return ggml_view_1d(ctx, t[IN_B], e, i * e * ggml_element_size(t[IN_B])); };

    // Per head h and query: score_n = (Wk_h key_n + bk_h) . q_h / sqrt(d). The bias term is the same for
    // every key of the query's region, so softmax drops it, and (Wk_h key_n) . q_h = key_n . (Wk_h^T q_h):
    // project the 1 query per region instead of its s2 keys.
    ggml_tensor * qp = Linear(ctx, query, inWeight(0), inBias(0));                                          // [E, Q]
    ggml_tensor * qh = ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_3d(ctx, qp, d, heads, q), 0, 2, 1, 3));  // [d, Q, H]
    ggml_tensor * u = ggml_mul_mat(ctx, m.keyT, qh);                                                         // [E, Q, H]
    u = ggml_cont(ctx, ggml_permute(ctx, u, 0, 2, 1, 3));                                                    // [E, H, Q]
    ggml_tensor * scores = ggml_mul_mat(ctx, ggml_reshape_3d(ctx, key, e, s2, q), u);                       // [s2, H, Q]
    scores = ggml_soft_max_ext(ctx, scores, nullptr, 1.0f / std::sqrt((float)d), 0.0f);

    // Likewise sum_n p_n (Wv_h value_n + bv_h) = Wv_h (sum_n p_n value_n) + bv_h: weight the values first.
    ggml_tensor * vt = ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_3d(ctx, value, e, s2, q), 1, 0, 2, 3));  // [s2, E, Q]
    ggml_tensor * z = ggml_mul_mat(ctx, vt, scores);                                                         // [E, H, Q]
    z = ggml_cont(ctx, ggml_permute(ctx, z, 0, 2, 1, 3));                                                    // [E, Q, H]
    ggml_tensor * attended = ggml_mul_mat(ctx, ggml_reshape_3d(ctx, inWeight(2), e, d, heads), z);          // [d, Q, H]
    attended = ggml_cont(ctx, ggml_permute(ctx, attended, 0, 2, 1, 3));                                      // [d, H, Q]
    attended = ggml_add(ctx, ggml_reshape_2d(ctx, attended, e, q), inBias(2));                               // heads concatenated
    attended = Linear(ctx, attended, t[OUT_W], t[OUT_B]);

    ggml_tensor * hidden = ggml_gelu_erf(ctx, Linear(ctx, attended, t[M0_W], t[M0_B]));
    return Linear(ctx, hidden, t[M2_W], t[M2_B]);
}

// keyT = clip_attn's key projection (in_proj_weight rows [E, 2E)) transposed per head: element
// (j, i, h) = Wk[h*d + j, i], ggml shape [d, E, heads], same type (an element-wise copy).
void DeriveKeyTranspose(TokenPackerModel & m, const ProjectorFileLayout & l) {
    ggml_tensor * in = m.t[IN_W];
    const int64_t e = l.embedDim, heads = l.heads, d = e / heads;
    const size_t es = ggml_element_size(in);
    std::vector<uint8_t> wk((size_t)e * e * es), wkT(wk.size());
    ggml_backend_tensor_get(in, wk.data(), (size_t)e * in->nb[1], wk.size());
    for (int64_t h = 0; h < heads; h++)
        for (int64_t j = 0; j < d; j++)
            for (int64_t i = 0; i < e; i++) std::memcpy(&wkT[(((size_t)h * e + i) * d + j) * es], &wk[((size_t)(h * d + j) * e + i) * es], es);
    ggml_init_params params = {ggml_tensor_overhead() * 2, nullptr, true};
    m.derived.reset(ggml_init(params));
    m.keyT = ggml_new_tensor_3d(m.derived.get(), in->type, d, e, heads);
    ggml_set_name(m.keyT, "clip_attn.key_proj_t");
    m.derivedBuffer.reset(ggml_backend_alloc_ctx_tensors(m.derived.get(), m.backend.get()));
    if (!m.derivedBuffer) throw CodedError("INVALID_MODEL", "cannot allocate TokenPacker's derived weights");
    ggml_backend_tensor_set(m.keyT, wkT.data(), 0, wkT.size());
}

}  // namespace

void ProjectorFile::Release() {
    mlp.Release();
    tokenPacker.derivedBuffer.reset();
    tokenPacker.derived.reset();
    tokenPacker.keyT = nullptr;
    tokenPacker.buffer.reset();
    tokenPacker.weights.reset();
    tokenPacker.backend.reset();
    tokenPacker.t.clear();
    freed = true;
}

void LoadProjectorFile(const std::string & path, const ProjectorFileLayout & layout, bool useGpu, int nThreads, ProjectorFile & pf) {
    GgufFile file;
    OpenGguf(path, file);
    pf.layout = layout;
    if (layout.type == "mlp") {
        VisionLayout v;
        v.hiddenDim = layout.inputDim;
        v.projectionDim = layout.outputDim;
        CheckProjectorTensors(file, v);
        LoadProjector(file, useGpu, nThreads, pf.mlp);
        pf.mlp.source = "the projector file's mlp projector";
    } else if (layout.type == "tokenpacker") {
        CheckTokenPackerTensors(file, layout);
        TokenPackerModel & m = pf.tokenPacker;
        m.backend.reset(InitProjectorBackend(useGpu));
        m.nThreads = nThreads;
        LoadTensors(file, TokenPackerTensorNames(), m.backend.get(), m.weights, m.buffer, m.t);
        DeriveKeyTranspose(m, layout);
    } else {
        throw CodedError("UNSUPPORTED_MODEL", path + ": projector type \"" + layout.type + "\" is not one LeanVision runs (mlp, tokenpacker)");
    }
}

std::vector<float> RunProjectorFile(const ProjectorFile & pf, const float * rows, int numRows) {
    const ProjectorFileLayout & l = pf.layout;
    if (l.type == "mlp") return RunProjector(pf.mlp, rows, numRows);
    const TokenPackerModel & m = pf.tokenPacker;
    ggml_init_params params = {ggml_tensor_overhead() * 96 + ggml_graph_overhead(), nullptr, true};
    ggml_context_ptr ctx(ggml_init(params));
    ggml_tensor * x = ggml_new_tensor_2d(ctx.get(), GGML_TYPE_F32, l.RowDim(), numRows);
    ggml_tensor * out = BuildTokenPacker(ctx.get(), m, l, x, numRows);
    return ComputeProjection(m.backend.get(), m.nThreads, ctx.get(), x, rows, out, "the TokenPacker projector");
}

namespace {

ProjectorFile * Unwrap(const Args & args, const Napi::Value & handle, bool live) {
    if (!handle.IsObject() || !handle.As<Napi::Object>().Get("native").IsExternal()) {
        args.Fail("expected a projector handle from loadProjectorFile()");
    }
    ProjectorFile * pf = handle.As<Napi::Object>().Get("native").As<Napi::External<ProjectorFile>>().Data();
    if (live && pf->freed) throw CodedError("DISPOSED", "the projector file was freed (the vision model is disposed)");
    return pf;
}

ProjectorFileLayout ReadLayout(const Args & args, const Napi::Object & info) {
    ProjectorFileLayout l;
    Napi::Value type = info.Get("type");
    if (!type.IsString()) args.Fail("layout.type must be a string");
    l.type = type.As<Napi::String>().Utf8Value();
    l.inputDim = (int)args.Int(info.Get("inputDim"), "layout.inputDim", 1, INT32_MAX);
    l.outputDim = (int)args.Int(info.Get("outputDim"), "layout.outputDim", 1, INT32_MAX);
    if (l.type == "tokenpacker") {
        l.scale = (int)args.Int(info.Get("scaleFactor"), "layout.scaleFactor", 1, 64);
        l.heads = (int)args.Int(info.Get("heads"), "layout.heads", 1, 65536);
        l.multiLevelDim = (int)args.Int(info.Get("multiLevelDim"), "layout.multiLevelDim", 1, INT32_MAX);
        l.embedDim = (int)args.Int(info.Get("embedDim"), "layout.embedDim", 1, INT32_MAX);
        l.kvHidden = (int)args.Int(info.Get("kvHidden"), "layout.kvHidden", 1, INT32_MAX);
        l.mlpHidden = (int)args.Int(info.Get("mlpHidden"), "layout.mlpHidden", 1, INT32_MAX);
        Napi::Value eps = info.Get("eps");
        if (!eps.IsNumber() || !(eps.As<Napi::Number>().DoubleValue() > 0)) args.Fail("layout.eps must be a positive number");
        l.eps = eps.As<Napi::Number>().FloatValue();
        if ((int64_t)l.RowDim() != (int64_t)l.inputDim + (int64_t)l.scale * l.scale * l.multiLevelDim) args.Fail("layout: rows too wide");
    }
    return l;
}

// loadProjectorFile(path, layout, { nThreads, useGpu }) -> { native }
Napi::Value LoadProjectorFileJs(const Napi::CallbackInfo & info) {
    Args args(info, "loadProjectorFile");
    args.Count(2, 3, "(path, layout, { nThreads, useGpu })");
    const std::string path = args.String(0, "path");
    ProjectorFileLayout layout = ReadLayout(args, args.Object(1, "layout"));
    int nThreads = 4;
    bool useGpu = false;
    if (info.Length() > 2 && !info[2].IsUndefined()) {
        Napi::Object opts = args.Object(2, "opts");
        if (!opts.Get("nThreads").IsUndefined()) nThreads = (int)args.Int(opts.Get("nThreads"), "nThreads", 1, 1024);
        useGpu = args.Flag(opts, "useGpu", false);
    }
    auto pf = std::make_unique<ProjectorFile>();
    LoadProjectorFile(path, layout, useGpu, nThreads, *pf);
    Napi::Object handle = Napi::Object::New(info.Env());
    handle.Set("native", Napi::External<ProjectorFile>::New(info.Env(), pf.release(), [](Napi::Env, ProjectorFile * p) { delete p; }));
    return handle;
}

// runProjectorFile(handle, rows: Float32Array, numRows) -> Promise<Float32Array>
Napi::Value RunProjectorFileJs(const Napi::CallbackInfo & info) {
    Args args(info, "runProjectorFile");
    args.Count(3, 3, "(handle, rows: Float32Array, numRows)");
    ProjectorFile * pf = Unwrap(args, info[0], true);
    const int n = (int)args.Int(2, "numRows", 1, INT32_MAX);
    auto input = std::make_shared<std::vector<float>>(args.Rows(1, "rows", n, (size_t)pf->layout.RowDim()));
    return (new FloatsWorker(info.Env(), "LeanVisionProjectorFile", info[0].As<Napi::Object>(), [pf, input, n] {
               std::lock_guard<std::mutex> lock(pf->mutex);
               if (pf->freed) throw CodedError("DISPOSED", "the projector file was freed (the vision model is disposed)");
               return RunProjectorFile(*pf, input->data(), n);
           }))->Start();
}

Napi::Value FreeProjectorFileJs(const Napi::CallbackInfo & info) {
    Args args(info, "freeProjectorFile");
    ProjectorFile * pf = Unwrap(args, info[0], false);
    std::lock_guard<std::mutex> lock(pf->mutex);  // waits for a running projection
    pf->Release();
    return info.Env().Undefined();
}

}  // namespace
}  // namespace leanvision

void RegisterProjectorFile(Napi::Env env, Napi::Object exports) {
    using namespace leanvision;
    exports.Set("loadProjectorFile", Napi::Function::New(env, Entry<LoadProjectorFileJs>, "loadProjectorFile"));
    exports.Set("runProjectorFile", Napi::Function::New(env, Entry<RunProjectorFileJs>, "runProjectorFile"));
    exports.Set("freeProjectorFile", Napi::Function::New(env, Entry<FreeProjectorFileJs>, "freeProjectorFile"));
}
