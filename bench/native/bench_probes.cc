#include "bench_probes.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "errors.h"
#include "io_access.h"
#include "mmio_region.h"

namespace virtio_mmio {

static napi_value RawNoop(napi_env, napi_callback_info) { return nullptr; }

static Napi::Value WrappedNoop(const Napi::CallbackInfo& info) { return info.Env().Undefined(); }

static uint64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

// The 32-bit register of a live region that the C loops hammer. The region
// comes from the library's addon: its type tag is what makes the unwrap safe
// (anything else, a freed DmaMemory or an object given MmioRegion.prototype,
// is a TypeError). Both addons are built from the same mmio_region.h by one
// node-gyp run, so the object layout read here is the one that made it.
static volatile uint8_t* ProbeTarget(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject() || !info[0].As<Napi::Object>().CheckTypeTag(&kMmioRegionTypeTag)) {
    throw TypeErr(env, "region must be an MmioRegion");
  }
  RegionWindow* window = Napi::ObjectWrap<MmioRegion>::Unwrap(info[0].As<Napi::Object>())->window();
  if (!window->open) throw TypedError(env, "closed", window->label + " is closed");
  uint64_t offset = ArgIndex(info, 1, "offset", uint64_t{1} << 32);
  if (offset % 4 != 0 || offset + 4 > window->size) {
    throw RangeErr(env, "offset must be 4-byte aligned and inside the window");
  }
  return window->base + offset;
}

// cReadLoop(region, offset, iterations) -> nanoseconds for `iterations`
// readl-equivalent loads (load + read barrier) done in C: the floor.
static Napi::Value CReadLoop(const Napi::CallbackInfo& info) {
  const volatile uint8_t* p = ProbeTarget(info);
  uint64_t iterations = ArgIndex(info, 2, "iterations", uint64_t{1} << 40);
  uint32_t sink = 0;
  uint64_t start = NowNs();
  for (uint64_t i = 0; i < iterations; i++) sink += io_read<uint32_t>(p);
  uint64_t elapsed = NowNs() - start;
  compiler_barrier();
  (void)sink;
  return Napi::Number::New(info.Env(), static_cast<double>(elapsed));
}

// cWriteLoop(region, offset, iterations) -> nanoseconds, writel-equivalent.
static Napi::Value CWriteLoop(const Napi::CallbackInfo& info) {
  volatile uint8_t* p = ProbeTarget(info);
  uint64_t iterations = ArgIndex(info, 2, "iterations", uint64_t{1} << 40);
  uint64_t start = NowNs();
  for (uint64_t i = 0; i < iterations; i++) io_write<uint32_t>(p, static_cast<uint32_t>(i));
  return Napi::Number::New(info.Env(), static_cast<double>(NowNs() - start));
}

// Called once V8 frees the backing store (after transfer(), the last buffer holding it).
static void UnmapView(napi_env, void* data, void* hint) { munmap(data, reinterpret_cast<size_t>(hint)); }

// mapFileView(path, size) -> ArrayBuffer over a shared mapping of the file's
// first `size` bytes (a second mapping of the same pages as a region).
static Napi::Value MapFileView(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw TypeErr(env, "path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  size_t size = static_cast<size_t>(ArgIndex(info, 1, "size", uint64_t{1} << 30));
  if (size == 0) throw RangeErr(env, "size must be at least 1 byte");
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) throw SyscallError(env, errno, "open", path);
  off_t end = lseek(fd, 0, SEEK_END);
  if (end < static_cast<off_t>(size)) {
    close(fd);
    throw RangeErr(env, "file '" + path + "' is smaller than " + std::to_string(size) + " bytes");
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int map_errno = errno;
  close(fd);
  if (p == MAP_FAILED) throw SyscallError(env, map_errno, "mmap", path);
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, size, UnmapView, reinterpret_cast<void*>(size), &ab) != napi_ok) {
    munmap(p, size);
    throw Napi::Error::New(env, "cannot create an external ArrayBuffer");
  }
  return Napi::Value(env, ab);
}

Napi::Object DefineBenchProbes(Napi::Env env) {
  Napi::Object probes = Napi::Object::New(env);
  napi_value raw;
  NAPI_THROW_IF_FAILED(env, napi_create_function(env, "rawNoop", NAPI_AUTO_LENGTH, RawNoop, nullptr, &raw),
                       Napi::Object());
  probes.Set("rawNoop", Napi::Value(env, raw));
  probes.Set("wrappedNoop", Napi::Function::New<WrappedNoop>(env, "wrappedNoop"));
  probes.Set("cReadLoop", Napi::Function::New<CReadLoop>(env, "cReadLoop"));
  probes.Set("cWriteLoop", Napi::Function::New<CWriteLoop>(env, "cWriteLoop"));
  probes.Set("mapFileView", Napi::Function::New<MapFileView>(env, "mapFileView"));
  return probes;
}

}  // namespace virtio_mmio
