// Conventions every N-API function of the addon follows (vision.cpp, inject.cpp):
// - Every error that reaches JavaScript is an Error with a string `code`, one of LeanVisionError's
//   codes; src/native-binding.ts turns it into a LeanVisionError. Native code throws CodedError;
//   Entry<> (synchronous functions) and PromiseWorker (asynchronous ones) convert it at the boundary.
// - Arguments are checked with Args before anything runs: a bad argument throws INVALID_INPUT
//   synchronously and changes nothing.
// - Work that takes time runs in a PromiseWorker off the JS thread and settles a Promise.
// - Names: types and functions PascalCase, variables and members camelCase, private members with a
//   trailing underscore.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace leanvision {

// An error with a LeanVisionError code.
struct CodedError : std::runtime_error {
    std::string code;
    CodedError(std::string code, const std::string & message) : std::runtime_error(message), code(std::move(code)) {}
};

inline Napi::Error ToJsError(Napi::Env env, const std::string & code, const std::string & message) {
    Napi::Error err = Napi::Error::New(env, message);
    err.Set("code", Napi::String::New(env, code));
    return err;
}

// Wraps a synchronous N-API function: a CodedError (or any other C++ exception, as INTERNAL) becomes
// a JS exception with its code instead of escaping into node.
template <Napi::Value (*Body)(const Napi::CallbackInfo &)>
Napi::Value Entry(const Napi::CallbackInfo & info) {
    try {
        return Body(info);
    } catch (const CodedError & e) {
        throw ToJsError(info.Env(), e.code, e.what());
    } catch (const Napi::Error &) {
        throw;
    } catch (const std::exception & e) {
        throw ToJsError(info.Env(), "INTERNAL", e.what());
    }
}

// Checks the arguments of one N-API call; every failure is INVALID_INPUT prefixed with the function name.
class Args {
   public:
    Args(const Napi::CallbackInfo & info, const char * function) : info_(info), function_(function) {}

    [[noreturn]] void Fail(const std::string & message, const char * code = "INVALID_INPUT") const {
        throw CodedError(code, function_ + ": " + message);
    }

    void Count(size_t min, size_t max, const char * signature) const {
        if (info_.Length() < min || info_.Length() > max) Fail("expected " + std::string(signature));
    }

    Napi::Object Object(size_t i, const char * what) const {
        if (!info_[i].IsObject()) Fail(std::string(what) + " must be an object");
        return info_[i].As<Napi::Object>();
    }

    std::string String(size_t i, const char * what) const {
        if (!info_[i].IsString()) Fail(std::string(what) + " must be a string");
        return info_[i].As<Napi::String>().Utf8Value();
    }

    // An integer in [min, max]; `what` names it in the message.
    int64_t Int(const Napi::Value & value, const char * what, int64_t min, int64_t max) const {
        if (!value.IsNumber()) Fail(std::string(what) + " must be a number");
        const double v = value.As<Napi::Number>().DoubleValue();
        if (!std::isfinite(v) || std::floor(v) != v || v < (double)min || v > (double)max) {
            Fail(std::string(what) + " must be an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " +
                 Describe(v));
        }
        return (int64_t)v;
    }
    int64_t Int(size_t i, const char * what, int64_t min, int64_t max) const { return Int(info_[i], what, min, max); }

    // An optional boolean field of an options object.
    bool Flag(const Napi::Object & opts, const char * key, bool fallback) const {
        Napi::Value v = opts.Get(key);
        if (v.IsUndefined()) return fallback;
        if (!v.IsBoolean()) Fail(std::string(key) + " must be a boolean");
        return v.As<Napi::Boolean>().Value();
    }

    Napi::Float32Array Float32Array(size_t i, const char * what) const {
        if (!info_[i].IsTypedArray() || info_[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
            Fail(std::string(what) + " must be a Float32Array");
        }
        return info_[i].As<Napi::Float32Array>();
    }

    // Float32Array argument i holding numRows rows of rowDim floats, all finite (NON_FINITE otherwise), copied.
    std::vector<float> Rows(size_t i, const char * what, int64_t numRows, size_t rowDim) const {
        Napi::Float32Array rows = Float32Array(i, what);
        if (rows.ElementLength() != (size_t)numRows * rowDim) {
            Fail(std::string(what) + " must hold " + std::to_string(numRows) + " rows of " + std::to_string(rowDim) + " floats; got " +
                 std::to_string(rows.ElementLength()) + " floats");
        }
        for (size_t k = 0; k < rows.ElementLength(); k++) {
            if (!std::isfinite(rows[k])) Fail(std::string(what) + " contains a non-finite value at index " + std::to_string(k), "NON_FINITE");
        }
        return std::vector<float>(rows.Data(), rows.Data() + rows.ElementLength());
    }

    // A Uint8Array (or Uint8ClampedArray) as bytes.
    Napi::TypedArray Bytes(size_t i, const char * what) const {
        if (!info_[i].IsTypedArray()) Fail(std::string(what) + " must be a Uint8Array");
        Napi::TypedArray arr = info_[i].As<Napi::TypedArray>();
        if (arr.TypedArrayType() != napi_uint8_array && arr.TypedArrayType() != napi_uint8_clamped_array) {
            Fail(std::string(what) + " must be a Uint8Array");
        }
        return arr;
    }

    static std::string Describe(double v) {
        if (std::isnan(v)) return "NaN";
        if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
        if (std::floor(v) == v && std::fabs(v) < 1e15) return std::to_string((long long)v);
        return std::to_string(v);
    }

   private:
    const Napi::CallbackInfo & info_;
    std::string function_;
};

// An AsyncWorker that settles a Promise. Run() executes off the JS thread and reports failure by
// throwing CodedError (any other std::exception is reported with the worker's fallback code);
// Result() builds the resolved value on the JS thread. `owner` is kept alive until the worker is done.
class PromiseWorker : public Napi::AsyncWorker {
   public:
    // Queues the worker; node-addon-api deletes it once it has settled the promise.
    Napi::Promise Start() {
        Napi::Promise promise = deferred_.Promise();
        Queue();
        return promise;
    }

   protected:
    PromiseWorker(Napi::Env env, const char * resourceName, Napi::Object owner, std::string fallbackCode)
        : Napi::AsyncWorker(env, resourceName), deferred_(Napi::Promise::Deferred::New(env)), code_(std::move(fallbackCode)) {
        owner_ = Napi::Persistent(owner);
    }

    virtual void Run() = 0;
    virtual Napi::Value Result(Napi::Env env) = 0;

   private:
    void Execute() final {
        try {
            Run();
        } catch (const CodedError & e) {
            code_ = e.code;
            SetError(e.what());
        } catch (const std::exception & e) {
            SetError(e.what());
        }
    }
    void OnOK() final { deferred_.Resolve(Result(Env())); }
    void OnError(const Napi::Error & e) final { deferred_.Reject(ToJsError(Env(), code_, e.Message()).Value()); }

    Napi::Promise::Deferred deferred_;
    Napi::ObjectReference owner_;
    std::string code_;
};

inline Napi::Float32Array ToFloat32Array(Napi::Env env, const std::vector<float> & v) {
    Napi::Float32Array arr = Napi::Float32Array::New(env, v.size());
    if (!v.empty()) std::memcpy(arr.Data(), v.data(), v.size() * sizeof(float));
    return arr;
}

// A PromiseWorker whose work returns floats; it resolves to them as a Float32Array.
class FloatsWorker : public PromiseWorker {
   public:
    FloatsWorker(Napi::Env env, const char * resourceName, Napi::Object owner, std::function<std::vector<float>()> work)
        : PromiseWorker(env, resourceName, owner, "ENCODE_FAILED"), work_(std::move(work)) {}

   protected:
    void Run() override { output_ = work_(); }
    Napi::Value Result(Napi::Env env) override { return ToFloat32Array(env, output_); }

   private:
    std::function<std::vector<float>()> work_;
    std::vector<float> output_;
};

}  // namespace leanvision
