// decodeEmbeddings: decodes embedding rows (instead of token ids) into a node-llama-cpp context, at
// given positions of one of its sequences. node-llama-cpp has no embedding input, so this reaches its
// llama_context through its own AddonContext class (same header, same node-addon-api, same libllama).
//
// Everything is validated before llama_decode is called: a bad argument throws (napi-common.h's
// conventions: an Error with a `code`) and leaves the context untouched. The decode itself runs on a
// worker thread (like node-llama-cpp's own decodeBatch) and the call returns a Promise. The caller
// must hold node-llama-cpp's context lock.
#include "inject.h"

#include <algorithm>
#include <string>
#include <vector>

#include "AddonContext.h"
#include "llama.h"
#include "napi-common.h"

namespace leanvision {
namespace {

struct InjectRequest {
    AddonContext * addonContext = nullptr;
    llama_seq_id sequenceId = 0;
    llama_pos startPos = 0;
    int32_t nTokens = 0;
    int32_t nEmbd = 0;
    int32_t batchSize = 0;
    std::vector<float> embd;  // copied, so JS may reuse its array while the worker runs
};

class DecodeEmbeddingsWorker : public PromiseWorker {
   public:
    // Keeps node-llama-cpp's context object (and so its llama_context) alive until done.
    DecodeEmbeddingsWorker(Napi::Env env, Napi::Object contextObject, InjectRequest request)
        : PromiseWorker(env, "LeanVisionDecodeEmbeddings", contextObject, "DECODE_FAILED"), request_(std::move(request)) {}

   protected:
    void Run() override {
        llama_context * ctx = request_.addonContext->ctx;
        // Same bookkeeping as node-llama-cpp's decode worker: the logits of the last text batch are gone.
        request_.addonContext->sharedSamplerData.gotLogit = false;
        request_.addonContext->sharedSamplerData.hasLogits = false;

        const int32_t batchSize = request_.batchSize;
        std::vector<llama_pos> pos(batchSize);
        std::vector<int32_t> nSeqId(batchSize, 1);
        std::vector<llama_seq_id> seqIdValue(batchSize, request_.sequenceId);
        std::vector<llama_seq_id *> seqId(batchSize);
        std::vector<int8_t> logits(batchSize, 0);
        for (int32_t i = 0; i < batchSize; i++) seqId[i] = &seqIdValue[i];

        for (int32_t done = 0; done < request_.nTokens;) {
            const int32_t n = std::min(batchSize, request_.nTokens - done);
            for (int32_t i = 0; i < n; i++) pos[i] = request_.startPos + done + i;
            llama_batch batch{};
            batch.n_tokens = n;
            batch.embd = request_.embd.data() + static_cast<size_t>(done) * request_.nEmbd;
            batch.pos = pos.data();
            batch.n_seq_id = nSeqId.data();
            batch.seq_id = seqId.data();
            batch.logits = logits.data();

            int32_t result = -1;
            try {
                result = llama_decode(ctx, batch);
            } catch (const std::exception & e) {
                RollBack(ctx);
                throw CodedError("DECODE_FAILED", std::string("llama_decode threw while decoding embeddings: ") + e.what());
            }
            if (result != 0) {
                RollBack(ctx);
                throw CodedError(result == 1 ? "CONTEXT_OVERFLOW" : "DECODE_FAILED",
                                 "llama_decode failed (code " + std::to_string(result) + ") after " + std::to_string(done) + " of " +
                                     std::to_string(request_.nTokens) + " embeddings" +
                                     (result == 1 ? ": no KV cache slot; use a larger context" : "") +
                                     "; the sequence was rolled back to position " + std::to_string(request_.startPos));
            }
            done += n;
        }
        llama_synchronize(ctx);
    }

    Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, request_.nTokens); }

   private:
    // A failed injection must not leave half an image in the KV cache.
    void RollBack(llama_context * ctx) { llama_memory_seq_rm(llama_get_memory(ctx), request_.sequenceId, request_.startPos, -1); }

    InjectRequest request_;
};

// node-llama-cpp's AddonContext behind `contextObject`, or INVALID_INPUT.
AddonContext * UnwrapAddonContext(const Args & args, Napi::Env env, Napi::Object contextObject) {
    // napi_unwrap accepts any wrapped object; only an AddonContext may be cast to one.
    Napi::Value constructor = contextObject.Get("constructor");
    if (!constructor.IsFunction() || constructor.As<Napi::Object>().Get("name").ToString().Utf8Value() != "AddonContext") {
        args.Fail("the first argument is not a node-llama-cpp context (LlamaContext._ctx)");
    }
    void * unwrapped = nullptr;
    if (napi_unwrap(env, contextObject, &unwrapped) != napi_ok || unwrapped == nullptr) {
        // napi_unwrap sets a pending exception on failure; this message is the useful one.
        if (env.IsExceptionPending()) env.GetAndClearPendingException();
        args.Fail("the first argument is not a node-llama-cpp context (LlamaContext._ctx)");
    }
    return Napi::ObjectWrap<AddonContext>::Unwrap(contextObject);
}

// decodeEmbeddings(contextAddonObject, sequenceId, startPos, embd: Float32Array, nTokens, nEmbd, batchSize)
//   → Promise<number> (the number of embeddings decoded)
Napi::Value DecodeEmbeddings(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    Args args(info, "decodeEmbeddings");
    args.Count(7, 7, "7 arguments (context, sequenceId, startPos, embd, nTokens, nEmbd, batchSize)");
    if (!info[0].IsObject()) args.Fail("the first argument must be node-llama-cpp's context object (LlamaContext._ctx)");
    Napi::Object contextObject = info[0].As<Napi::Object>();
    AddonContext * addonContext = UnwrapAddonContext(args, env, contextObject);
    if (addonContext->disposed || !addonContext->contextLoaded || addonContext->ctx == nullptr) {
        args.Fail("the node-llama-cpp context is disposed or not loaded", "DISPOSED");
    }
    llama_context * ctx = addonContext->ctx;
    const llama_model * model = llama_get_model(ctx);

    InjectRequest request;
    request.addonContext = addonContext;
    request.sequenceId = (llama_seq_id)args.Int(1, "sequenceId", 0, INT32_MAX);
    request.startPos = (llama_pos)args.Int(2, "startPos", 0, INT32_MAX);
    Napi::Float32Array embd = args.Float32Array(3, "embd");
    request.nTokens = (int32_t)args.Int(4, "nTokens", 0, INT32_MAX);
    request.nEmbd = (int32_t)args.Int(5, "nEmbd", 0, INT32_MAX);
    request.batchSize = (int32_t)args.Int(6, "batchSize", 0, INT32_MAX);

    const uint32_t nSeqMax = llama_n_seq_max(ctx);
    if (static_cast<uint32_t>(request.sequenceId) >= nSeqMax) {
        args.Fail("sequenceId " + std::to_string(request.sequenceId) + " is out of range (the context has " + std::to_string(nSeqMax) +
                  " sequences)");
    }
    const int32_t modelEmbd = llama_model_n_embd_inp(model);
    if (request.nEmbd != modelEmbd) {
        args.Fail("the embeddings have " + std::to_string(request.nEmbd) + " dimensions but the model's input embedding size is " +
                      std::to_string(modelEmbd) + "; the mmproj does not belong to this model",
                  "MMPROJ_MISMATCH");
    }
    if (request.nTokens == 0) args.Fail("nTokens must be at least 1");
    if (embd.ElementLength() != static_cast<size_t>(request.nTokens) * static_cast<size_t>(request.nEmbd)) {
        args.Fail("embd has " + std::to_string(embd.ElementLength()) + " values, expected nTokens * nEmbd = " +
                  std::to_string(static_cast<size_t>(request.nTokens) * request.nEmbd));
    }
    const uint32_t nBatch = llama_n_batch(ctx);
    if (request.batchSize == 0 || static_cast<uint32_t>(request.batchSize) > nBatch) {
        args.Fail("batchSize must be between 1 and the context's batch size " + std::to_string(nBatch) + ", got " +
                  std::to_string(request.batchSize));
    }
    const uint32_t nCtx = llama_n_ctx_seq(ctx);  // per sequence
    if (static_cast<uint64_t>(request.startPos) + request.nTokens > nCtx) {
        args.Fail(std::to_string(request.nTokens) + " embeddings at position " + std::to_string(request.startPos) +
                      " do not fit in the context of " + std::to_string(nCtx) + " tokens",
                  "CONTEXT_OVERFLOW");
    }
    // llama.cpp requires each sequence's positions to continue exactly where its KV cache ends.
    const llama_pos lastPos = llama_memory_seq_pos_max(llama_get_memory(ctx), request.sequenceId);
    if (request.startPos != lastPos + 1) {
        args.Fail("startPos " + std::to_string(request.startPos) + " is not the sequence's next position " + std::to_string(lastPos + 1));
    }
    const float * data = embd.Data();
    const size_t count = embd.ElementLength();
    for (size_t i = 0; i < count; i++) {
        if (!std::isfinite(data[i])) {
            args.Fail("embd has a non-finite value at row " + std::to_string(i / request.nEmbd) + ", column " +
                          std::to_string(i % request.nEmbd),
                      "NON_FINITE");
        }
    }
    request.embd.assign(data, data + count);
    return (new DecodeEmbeddingsWorker(env, contextObject, std::move(request)))->Start();
}

}  // namespace
}  // namespace leanvision

void RegisterInject(Napi::Env env, Napi::Object exports) {
    exports.Set("decodeEmbeddings", Napi::Function::New(env, leanvision::Entry<leanvision::DecodeEmbeddings>, "decodeEmbeddings"));
}
