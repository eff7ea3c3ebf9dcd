// decodeEmbeddings: decodes embedding rows (instead of token ids) into a node-llama-cpp context, at
// given positions of one of its sequences. node-llama-cpp has no embedding input, so this reaches its
// llama_context through its own AddonContext class (same header, same node-addon-api, same libllama).
//
// Everything is validated before llama_decode is called: a bad argument throws a JS error and leaves
// the context untouched. The decode itself runs on a worker thread (like node-llama-cpp's own
// decodeBatch) and the call returns a Promise. The caller must hold node-llama-cpp's context lock.
#include <napi.h>

#include <cmath>
#include <string>
#include <vector>

#include "llama.h"
#include "AddonContext.h"

namespace {

struct InjectRequest {
    AddonContext* addonContext;
    llama_seq_id sequenceId;
    llama_pos startPos;
    int32_t nTokens;
    int32_t nEmbd;
    int32_t batchSize;
    std::vector<float> embd;  // copied, so JS may reuse its array while the worker runs
};

class DecodeEmbeddingsWorker : public Napi::AsyncWorker {
  public:
    DecodeEmbeddingsWorker(Napi::Env env, Napi::Object contextObject, InjectRequest request)
        : Napi::AsyncWorker(env, "LeanVisionDecodeEmbeddings"),
          request(std::move(request)),
          deferred(Napi::Promise::Deferred::New(env)) {
        // Keeps node-llama-cpp's context object (and so its llama_context) alive until we are done.
        contextRef = Napi::Persistent(contextObject);
    }

    Napi::Promise Promise() { return deferred.Promise(); }

  protected:
    void Execute() override {
        llama_context* ctx = request.addonContext->ctx;
        // Same bookkeeping as node-llama-cpp's decode worker: the logits of the last text batch are gone.
        request.addonContext->sharedSamplerData.gotLogit = false;
        request.addonContext->sharedSamplerData.hasLogits = false;

        std::vector<llama_pos> pos(request.batchSize);
        std::vector<int32_t> nSeqId(request.batchSize, 1);
        std::vector<llama_seq_id> seqIdValue(request.batchSize, request.sequenceId);
        std::vector<llama_seq_id*> seqId(request.batchSize);
        std::vector<int8_t> logits(request.batchSize, 0);
        for (int32_t i = 0; i < request.batchSize; i++) seqId[i] = &seqIdValue[i];

        for (int32_t done = 0; done < request.nTokens;) {
            const int32_t n = std::min(request.batchSize, request.nTokens - done);
            for (int32_t i = 0; i < n; i++) pos[i] = request.startPos + done + i;
            llama_batch batch{};
            batch.n_tokens = n;
            batch.embd = request.embd.data() + static_cast<size_t>(done) * request.nEmbd;
            batch.pos = pos.data();
            batch.n_seq_id = nSeqId.data();
            batch.seq_id = seqId.data();
            batch.logits = logits.data();

            int32_t result = -1;
            try {
                result = llama_decode(ctx, batch);
            } catch (const std::exception& e) {
                rollBack(ctx);
                SetError(std::string("llama_decode threw while decoding embeddings: ") + e.what());
                return;
            }
            if (result != 0) {
                rollBack(ctx);
                SetError("llama_decode failed (code " + std::to_string(result) + ") after " + std::to_string(done) +
                         " of " + std::to_string(request.nTokens) + " embeddings" +
                         (result == 1 ? ": no KV cache slot; use a larger context" : "") +
                         "; the sequence was rolled back to position " + std::to_string(request.startPos));
                return;
            }
            done += n;
        }
        llama_synchronize(ctx);
    }

    void OnOK() override { deferred.Resolve(Napi::Number::New(Env(), request.nTokens)); }
    void OnError(const Napi::Error& error) override { deferred.Reject(error.Value()); }

  private:
    // A failed injection must not leave half an image in the KV cache.
    void rollBack(llama_context* ctx) {
        llama_memory_seq_rm(llama_get_memory(ctx), request.sequenceId, request.startPos, -1);
    }

    InjectRequest request;
    Napi::ObjectReference contextRef;
    Napi::Promise::Deferred deferred;
};

[[noreturn]] void fail(Napi::Env env, const std::string& message) {
    throw Napi::TypeError::New(env, "decodeEmbeddings: " + message);
}

int32_t intArgument(const Napi::CallbackInfo& info, size_t index, const char* name) {
    if (!info[index].IsNumber()) fail(info.Env(), std::string(name) + " must be a number");
    const double value = info[index].As<Napi::Number>().DoubleValue();
    if (!std::isfinite(value) || std::floor(value) != value || value < 0 || value > 2147483647.0) {
        fail(info.Env(), std::string(name) + " must be a non-negative integer, got " + std::to_string(value));
    }
    return static_cast<int32_t>(value);
}

// decodeEmbeddings(contextAddonObject, sequenceId, startPos, embd: Float32Array, nTokens, nEmbd, batchSize)
//   → Promise<number> (the number of embeddings decoded)
Napi::Value DecodeEmbeddings(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 7) fail(env, "expected 7 arguments (context, sequenceId, startPos, embd, nTokens, nEmbd, batchSize)");
    if (!info[0].IsObject()) fail(env, "the first argument must be node-llama-cpp's context object (LlamaContext._ctx)");
    Napi::Object contextObject = info[0].As<Napi::Object>();

    // napi_unwrap accepts any wrapped object; only an AddonContext may be cast to one.
    Napi::Value constructor = contextObject.Get("constructor");
    if (!constructor.IsFunction() ||
        constructor.As<Napi::Object>().Get("name").ToString().Utf8Value() != "AddonContext") {
        fail(env, "the first argument is not a node-llama-cpp context (LlamaContext._ctx)");
    }
    AddonContext* addonContext = nullptr;
    {
        void* unwrapped = nullptr;
        if (napi_unwrap(env, contextObject, &unwrapped) != napi_ok || unwrapped == nullptr) {
            // napi_unwrap sets a pending exception on failure; this message is the useful one.
            if (env.IsExceptionPending()) env.GetAndClearPendingException();
            fail(env, "the first argument is not a node-llama-cpp context (LlamaContext._ctx)");
        }
        addonContext = Napi::ObjectWrap<AddonContext>::Unwrap(contextObject);
    }
    if (addonContext->disposed || !addonContext->contextLoaded || addonContext->ctx == nullptr) {
        fail(env, "the node-llama-cpp context is disposed or not loaded");
    }
    llama_context* ctx = addonContext->ctx;
    const llama_model* model = llama_get_model(ctx);

    InjectRequest request;
    request.addonContext = addonContext;
    request.sequenceId = intArgument(info, 1, "sequenceId");
    request.startPos = intArgument(info, 2, "startPos");
    if (!info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        fail(env, "embd must be a Float32Array");
    }
    Napi::Float32Array embd = info[3].As<Napi::Float32Array>();
    request.nTokens = intArgument(info, 4, "nTokens");
    request.nEmbd = intArgument(info, 5, "nEmbd");
    request.batchSize = intArgument(info, 6, "batchSize");

    const uint32_t nSeqMax = llama_n_seq_max(ctx);
    if (static_cast<uint32_t>(request.sequenceId) >= nSeqMax) {
        fail(env, "sequenceId " + std::to_string(request.sequenceId) + " is out of range (the context has " +
                      std::to_string(nSeqMax) + " sequences)");
    }
    const int32_t modelEmbd = llama_model_n_embd_inp(model);
    if (request.nEmbd != modelEmbd) {
        fail(env, "the embeddings have " + std::to_string(request.nEmbd) + " dimensions but the model's input embedding size is " +
                      std::to_string(modelEmbd) + "; the mmproj does not belong to this model");
    }
    if (request.nTokens == 0) fail(env, "nTokens must be at least 1");
    if (embd.ElementLength() != static_cast<size_t>(request.nTokens) * static_cast<size_t>(request.nEmbd)) {
        fail(env, "embd has " + std::to_string(embd.ElementLength()) + " values, expected nTokens * nEmbd = " +
                      std::to_string(static_cast<size_t>(request.nTokens) * request.nEmbd));
    }
    const uint32_t nBatch = llama_n_batch(ctx);
    if (request.batchSize == 0 || static_cast<uint32_t>(request.batchSize) > nBatch) {
        fail(env, "batchSize must be between 1 and the context's batch size " + std::to_string(nBatch) + ", got " +
                      std::to_string(request.batchSize));
    }
    const uint32_t nCtx = llama_n_ctx_seq(ctx);  // per sequence
    if (static_cast<uint64_t>(request.startPos) + request.nTokens > nCtx) {
        fail(env, std::to_string(request.nTokens) + " embeddings at position " + std::to_string(request.startPos) +
                      " do not fit in the context of " + std::to_string(nCtx) + " tokens");
    }
    // llama.cpp requires each sequence's positions to continue exactly where its KV cache ends.
    const llama_pos lastPos = llama_memory_seq_pos_max(llama_get_memory(ctx), request.sequenceId);
    if (request.startPos != lastPos + 1) {
        fail(env, "startPos " + std::to_string(request.startPos) + " is not the sequence's next position " +
                      std::to_string(lastPos + 1));
    }
    const float* data = embd.Data();
    const size_t count = embd.ElementLength();
    for (size_t i = 0; i < count; i++) {
        if (!std::isfinite(data[i])) {
            fail(env, "embd has a non-finite value at row " + std::to_string(i / request.nEmbd) + ", column " +
                          std::to_string(i % request.nEmbd));
        }
    }
    request.embd.assign(data, data + count);

    auto* worker = new DecodeEmbeddingsWorker(env, contextObject, std::move(request));
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
}

}  // namespace

void RegisterInject(Napi::Env env, Napi::Object exports) {
    exports.Set("decodeEmbeddings", Napi::Function::New(env, DecodeEmbeddings, "decodeEmbeddings"));
}
