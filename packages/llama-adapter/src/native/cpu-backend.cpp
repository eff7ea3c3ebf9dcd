#include "cpu-backend.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include "ggml-backend-impl.h"
#include "ggml-cpu.h"

namespace leanvision {

void SetBackendThreads(ggml_backend_t backend, int nThreads) {
    ggml_backend_dev_t dev = ggml_backend_get_device(backend);
    ggml_backend_reg_t reg = dev ? ggml_backend_dev_backend_reg(dev) : nullptr;
    if (!reg) return;
    auto fn = (ggml_backend_set_n_threads_t)ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads");
    if (fn) fn(backend, nThreads);
}

namespace {

#ifdef LEANVISION_OWN_CPU

// Our CPU device with init_backend replaced: mtmd only sets the thread count of its default CPU
// backend, so a backend created on this device gets `threads` here. Every other call goes to the
// real device (same context and registry).
struct ThreadedDevice {
    ggml_backend_device dev;  // first: a ggml_backend_dev_t points here
    ggml_backend_dev_t real;
    int threads;
};

ggml_backend_t InitThreaded(ggml_backend_dev_t dev, const char * params) {
    const ThreadedDevice * td = reinterpret_cast<const ThreadedDevice *>(dev);
    ggml_backend_t backend = td->real->iface.init_backend(td->real, params);
    if (backend) ggml_backend_cpu_set_n_threads(backend, td->threads);
    return backend;
}

// The instruction set build-native.mjs compiled ggml's CPU backend for, checked on this CPU.
bool CpuSupportsBuild(std::string & missing) {
    __builtin_cpu_init();
#define X(feature) \
    if (!__builtin_cpu_supports(feature)) missing += std::string(missing.empty() ? "" : ", ") + feature;
    LEANVISION_CPU_CHECK
#undef X
    return missing.empty();
}

#endif

}  // namespace

ggml_backend_dev_t VisionCpuDevice(int nThreads, std::string & why) {
    const char * choice = std::getenv("LEANVISION_VISION_CPU");
    if (choice != nullptr && std::strcmp(choice, "node-llama-cpp") == 0) {
        why = "LEANVISION_VISION_CPU=node-llama-cpp";
        return nullptr;
    }
#ifdef LEANVISION_OWN_CPU
    static std::mutex mutex;
    static std::map<int, std::unique_ptr<ThreadedDevice>> devices;
    static std::string unsupported;
    static const bool supported = CpuSupportsBuild(unsupported);
    if (!supported) {
        why = std::string("this CPU lacks ") + unsupported + " (the addon's CPU backend was built for " LEANVISION_CPU_TIER ")";
        return nullptr;
    }
    std::lock_guard<std::mutex> lock(mutex);
    std::unique_ptr<ThreadedDevice> & slot = devices[nThreads];
    if (!slot) {
        ggml_backend_dev_t real = ggml_backend_reg_dev_get(ggml_backend_cpu_reg(), 0);
        slot.reset(new ThreadedDevice{*real, real, nThreads});
        slot->dev.iface.init_backend = InitThreaded;
    }
    return &slot->dev;
#else
    why = "the addon was built without its own CPU backend";
    return nullptr;
#endif
}

ggml_backend_t InitVisionCpuBackend(int nThreads) {
    std::string why;
    ggml_backend_dev_t dev = VisionCpuDevice(nThreads, why);
    ggml_backend_t backend = dev ? ggml_backend_dev_init(dev, nullptr) : nullptr;
    if (!backend) {
        backend = ggml_backend_init_by_type(GGML_BACKEND_DEVICE_TYPE_CPU, nullptr);
        if (backend) SetBackendThreads(backend, nThreads);
    }
    return backend;
}

std::string VisionCpuDescription(int nThreads) {
    std::string why;
    if (VisionCpuDevice(nThreads, why) != nullptr) {
#ifdef LEANVISION_OWN_CPU
        return "leanvision-cpu (" LEANVISION_CPU_TIER ")";
#endif
    }
    return "node-llama-cpp (" + why + ")";
}

}  // namespace leanvision
