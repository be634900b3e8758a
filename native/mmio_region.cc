#include "mmio_region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "addon_data.h"
#include "errors.h"
#include "io_access.h"

namespace virtio_mmio {

// The mmap offset is a physical address for /dev/mem, above 4 GiB on LPAE
// (armhf); a 32-bit off_t would cut it and map another device. node-gyp
// builds with _FILE_OFFSET_BITS=64 (glibc then calls mmap64; musl's off_t is
// always 64-bit); this keeps a build without it from compiling.
static_assert(sizeof(off_t) == 8, "off_t must be 64-bit: build with -D_FILE_OFFSET_BITS=64");

void UnmapWindow(RegionWindow* w) {
  if (!w->open) return;
  munmap(w->map_base, w->map_len);
  w->open = false;
}

void ReleaseWindow(RegionWindow* w) {
  if (--w->holders > 0) return;
  UnmapWindow(w);
  delete w;
}

static std::string AccessDescription(const RegionWindow* w, double offset, unsigned width) {
  char shown[32];
  std::snprintf(shown, sizeof shown, "%.17g", offset);
  return std::to_string(width * 8) + "-bit access at offset " +
         (offset >= 0 && offset == std::floor(offset) && offset < 1.8e19 ? Hex(static_cast<uint64_t>(offset))
                                                                          : std::string(shown)) +
         " of " + w->label + " (window of " + Hex(w->size) + " bytes)";
}

// Cold paths of the raw accessors: build the right error and throw it.
static napi_value ThrowOffsetError(napi_env raw_env, const RegionWindow* w, napi_value arg, double offset,
                                   bool offset_is_number, unsigned width) {
  Napi::Env env(raw_env);
  try {
    if (!w->open) throw TypedError(env, "closed", w->label + " is closed");
    if (!offset_is_number) {
      throw TypeErr(env, "offset must be a number, got " +
                             (arg == nullptr ? std::string("nothing") : Napi::Value(env, arg).ToString().Utf8Value()));
    }
    if (!(offset >= 0) || offset != std::floor(offset)) {
      throw RangeErr(env, AccessDescription(w, offset, width) + ": offset is not a non-negative integer");
    }
    if (offset + width > static_cast<double>(w->size)) {
      throw RangeErr(env, AccessDescription(w, offset, width) + ": outside the window");
    }
    throw RangeErr(env, AccessDescription(w, offset, width) + ": not naturally aligned");
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
  }
  return nullptr;
}

static napi_value ThrowValueError(napi_env raw_env, napi_value value, unsigned width) {
  Napi::Env env(raw_env);
  try {
    if (value == nullptr || !Napi::Value(env, value).IsNumber()) throw TypeErr(env, "value must be a number");
    throw RangeErr(env, "value " + Napi::Value(env, value).ToString().Utf8Value() + " does not fit in " +
                            std::to_string(8 * width) + " bits");
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
  }
  return nullptr;
}

static inline bool AccessOk(const RegionWindow* w, double offset, unsigned width) {
  return w->open && offset >= 0 && offset + width <= static_cast<double>(w->size) &&
         offset == static_cast<double>(static_cast<uint64_t>(offset)) &&
         (static_cast<uint64_t>(offset) & (width - 1)) == 0;
}

template <typename T>
static napi_value RawRead(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 1;
  napi_value arg = nullptr;
  void* data = nullptr;
  napi_get_cb_info(env, cbinfo, &argc, &arg, nullptr, &data);
  auto* w = static_cast<RegionWindow*>(data);
  double offset = -1;
  bool is_number = argc >= 1 && napi_get_value_double(env, arg, &offset) == napi_ok;
  if (!is_number || !AccessOk(w, offset, sizeof(T))) {
    return ThrowOffsetError(env, w, argc >= 1 ? arg : nullptr, offset, is_number, sizeof(T));
  }
  T value = io_read<T>(w->base + static_cast<size_t>(offset));
  napi_value result;
  napi_create_uint32(env, value, &result);
  return result;
}

template <typename T>
static napi_value RawWrite(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 2;
  napi_value args[2] = {nullptr, nullptr};
  void* data = nullptr;
  napi_get_cb_info(env, cbinfo, &argc, args, nullptr, &data);
  auto* w = static_cast<RegionWindow*>(data);
  double offset = -1;
  double value = 0;
  bool is_number = argc >= 1 && napi_get_value_double(env, args[0], &offset) == napi_ok;
  if (!is_number || !AccessOk(w, offset, sizeof(T))) {
    return ThrowOffsetError(env, w, argc >= 1 ? args[0] : nullptr, offset, is_number, sizeof(T));
  }
  // Accept [-2^(bits-1), 2^bits - 1] so both ~0 and 0xffffffff mean all ones.
  constexpr double kMax = static_cast<double>((uint64_t{1} << (8 * sizeof(T))) - 1);
  constexpr double kMin = -static_cast<double>(uint64_t{1} << (8 * sizeof(T) - 1));
  if (argc < 2 || napi_get_value_double(env, args[1], &value) != napi_ok || !(value >= kMin && value <= kMax) ||
      value != std::floor(value)) {
    return ThrowValueError(env, argc >= 2 ? args[1] : nullptr, sizeof(T));
  }
  io_write<T>(w->base + static_cast<size_t>(offset), static_cast<T>(static_cast<int64_t>(value)));
  return nullptr;
}

static void FinalizeAccessor(napi_env, void* data, void*) { ReleaseWindow(static_cast<RegionWindow*>(data)); }

Napi::Function MmioRegion::Define(Napi::Env env) {
  return DefineClass(env, "MmioRegion",
                     {
                         InstanceMethod<&MmioRegion::Close>("close"),
                         // Symbol.dispose is Symbol.for('nodejs.dispose') in Node (and in lib/disposable.ts): `using` works on a window.
                         InstanceMethod<&MmioRegion::Close>(Napi::Symbol::For(env, "nodejs.dispose")),
                         InstanceMethod<&MmioRegion::CopyOut>("copyOut"),
                         InstanceMethod<&MmioRegion::CopyIn>("copyIn"),
                         InstanceMethod<&MmioRegion::PollUntil>("pollUntil"),
                         InstanceMethod<&MmioRegion::ReadlViaWrapper>("readlViaWrapper"),
                         InstanceMethod<&MmioRegion::WritelViaWrapper>("writelViaWrapper"),
                         InstanceMethod<&MmioRegion::Arm>("armExitWrite"),
                         InstanceMethod<&MmioRegion::Disarm>("disarmExitWrite"),
                         InstanceAccessor<&MmioRegion::GetArmed>("exitWriteArmed"),
                         InstanceAccessor<&MmioRegion::GetSize>("size"),
                         InstanceAccessor<&MmioRegion::GetClosed>("closed"),
                         InstanceAccessor<&MmioRegion::GetLabel>("label"),
                     });
}

// new MmioRegion(path, mmapOffset, windowOffset, size, sync)
//   mmapOffset: page-aligned file offset to map (UIO: mapIndex * pagesize;
//   /dev/mem: the physical base rounded down); windowOffset: where the
//   window begins inside the mapping; sync: open with O_SYNC (/dev/mem).
MmioRegion::MmioRegion(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MmioRegion>(info) {
  Napi::Env env = info.Env();
  Value().TypeTag(&kMmioRegionTypeTag);  // first: nothing to undo if it fails
  if (!info[0].IsString()) throw TypeErr(env, "path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  uint64_t mmap_offset = ArgU64(info, 1, "mmapOffset");
  uint64_t window_offset = ArgIndex(info, 2, "windowOffset", uint64_t{1} << 32);
  uint64_t size = ArgIndex(info, 3, "size", uint64_t{1} << 32);
  bool sync = ArgBool(info, 4, false);
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (size == 0) throw RangeErr(env, "size must be at least 1 byte");
  if (mmap_offset % page != 0) {
    throw RangeErr(env, "mmapOffset " + Hex(mmap_offset) + " is not a multiple of the page size " + Hex(page));
  }
  // Up to 2^33 bytes: exact in 64 bits, checked before it becomes a size_t.
  const size_t map_len = MapLength(env, (window_offset + size + page - 1) / page * page, "window mapping");

  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | (sync ? O_SYNC : 0));
  if (fd < 0) throw SyscallError(env, errno, "open", path);
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
      static_cast<uint64_t>(st.st_size) < mmap_offset + window_offset + size) {
    close(fd);
    // Mapping past the end of a file would turn accesses into SIGBUS.
    throw RangeErr(env, "window " + Hex(mmap_offset + window_offset) + "+" + Hex(size) + " lies beyond the end of '" +
                            path + "' (" + Hex(static_cast<uint64_t>(st.st_size)) + " bytes)");
  }
  // Exact up to 2^63 - 1. A bigint offset of 2^63 or more turns negative
  // here and mmap fails (a SyscallError, never a wrapped offset); on a 32-bit
  // build glibc's mmap64 also fails any offset of 2^44 or more (EINVAL), as
  // mmap2 takes the offset in 4 KiB units: LPAE's 40-bit addresses fit.
  void* base = mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(mmap_offset));
  int map_errno = errno;
  close(fd);
  if (base == MAP_FAILED) throw SyscallError(env, map_errno, "mmap", path, "offset " + Hex(mmap_offset) + ", length " + Hex(map_len));

  window_ = new RegionWindow();
  window_->map_base = static_cast<uint8_t*>(base);
  window_->map_len = map_len;
  window_->base = window_->map_base + window_offset;
  window_->size = static_cast<size_t>(size);
  window_->open = true;
  window_->holders = 1;
  window_->label = path + "@" + Hex(mmap_offset + window_offset);
  InstallAccessors(env);
}

MmioRegion::~MmioRegion() {
  if (window_ != nullptr) ReleaseWindow(window_);
}

// The hot accessors are own properties created per instance: raw Node-API
// functions whose callback data is the window (no unwrap on each call).
void MmioRegion::InstallAccessors(Napi::Env env) {
  struct Entry {
    const char* name;
    napi_callback cb;
  };
  static constexpr Entry kEntries[] = {
      {"readb", RawRead<uint8_t>},   {"readw", RawRead<uint16_t>},   {"readl", RawRead<uint32_t>},
      {"writeb", RawWrite<uint8_t>}, {"writew", RawWrite<uint16_t>}, {"writel", RawWrite<uint32_t>},
  };
  Napi::Object self = Value();
  for (const Entry& e : kEntries) {
    napi_value fn;
    NAPI_THROW_IF_FAILED_VOID(env, napi_create_function(env, e.name, NAPI_AUTO_LENGTH, e.cb, window_, &fn));
    window_->holders++;
    NAPI_THROW_IF_FAILED_VOID(env, napi_add_finalizer(env, fn, window_, FinalizeAccessor, nullptr, nullptr));
    self.DefineProperty(Napi::PropertyDescriptor::Value(e.name, Napi::Value(env, fn), napi_default));
  }
}

void MmioRegion::CheckOpen(Napi::Env env) const {
  if (!window_->open) throw TypedError(env, "closed", window_->label + " is closed");
}

size_t MmioRegion::CheckRange(Napi::Env env, uint64_t offset, uint64_t length, unsigned width) const {
  CheckOpen(env);
  auto what = [&]() {
    return std::to_string(width * 8) + "-bit copy of " + Hex(length) + " bytes at offset " + Hex(offset) + " of " +
           window_->label + " (window of " + Hex(window_->size) + " bytes)";
  };
  if (width != 1 && width != 2 && width != 4) throw RangeErr(env, "width must be 1, 2 or 4, got " + std::to_string(width));
  if (offset + length > window_->size) throw RangeErr(env, what() + ": outside the window");
  if (offset % width != 0 || length % width != 0) throw RangeErr(env, what() + ": not naturally aligned");
  return static_cast<size_t>(offset);
}

static Napi::Uint8Array ArgBytes(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw TypeErr(info.Env(), "expected a Uint8Array or Buffer");
  }
  return info[i].As<Napi::Uint8Array>();
}

// One readX/writeX per T-sized unit; the bytes go through memcpy because the
// caller's array need not be aligned.
template <typename T>
static void ReadUnits(const uint8_t* regs, uint8_t* bytes, size_t length) {
  for (size_t i = 0; i < length; i += sizeof(T)) {
    T v = io_read<T>(regs + i);
    std::memcpy(bytes + i, &v, sizeof(T));
  }
}

template <typename T>
static void WriteUnits(uint8_t* regs, const uint8_t* bytes, size_t length) {
  for (size_t i = 0; i < length; i += sizeof(T)) {
    T v;
    std::memcpy(&v, bytes + i, sizeof(T));
    io_write<T>(regs + i, v);
  }
}

// copyOut(offset, target: Uint8Array, width = 4) / copyIn(offset, source,
// width = 4): a range at a fixed access width (config space, virtio 1.2 §4.2.2.2).
Napi::Value MmioRegion::CopyOut(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t offset = ArgIndex(info, 0, "offset", uint64_t{1} << 32);
  Napi::Uint8Array target = ArgBytes(info, 1);
  unsigned width = info[2].IsUndefined() ? 4 : static_cast<unsigned>(ArgIndex(info, 2, "width", 8));
  const uint8_t* regs = window_->base + CheckRange(env, offset, target.ByteLength(), width);
  if (width == 1) ReadUnits<uint8_t>(regs, target.Data(), target.ByteLength());
  if (width == 2) ReadUnits<uint16_t>(regs, target.Data(), target.ByteLength());
  if (width == 4) ReadUnits<uint32_t>(regs, target.Data(), target.ByteLength());
  return target;
}

Napi::Value MmioRegion::CopyIn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t offset = ArgIndex(info, 0, "offset", uint64_t{1} << 32);
  Napi::Uint8Array source = ArgBytes(info, 1);
  unsigned width = info[2].IsUndefined() ? 4 : static_cast<unsigned>(ArgIndex(info, 2, "width", 8));
  uint8_t* regs = window_->base + CheckRange(env, offset, source.ByteLength(), width);
  if (width == 1) WriteUnits<uint8_t>(regs, source.Data(), source.ByteLength());
  if (width == 2) WriteUnits<uint16_t>(regs, source.Data(), source.ByteLength());
  if (width == 4) WriteUnits<uint32_t>(regs, source.Data(), source.ByteLength());
  return env.Undefined();
}

static uint64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

// pollUntil(offset, mask, value, timeoutMs, intervalUs = 0): reads the 32-bit
// register until (reg & mask) === value, like Linux readl_poll_timeout. It
// blocks the calling thread; returns the matching value or null on timeout.
Napi::Value MmioRegion::PollUntil(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t offset = ArgIndex(info, 0, "offset", uint64_t{1} << 32);
  uint32_t mask = static_cast<uint32_t>(ArgIndex(info, 1, "mask", 0xffffffffULL));
  uint32_t value = static_cast<uint32_t>(ArgIndex(info, 2, "value", 0xffffffffULL));
  uint64_t timeout_ms = ArgIndex(info, 3, "timeoutMs", 60000);
  uint64_t interval_us = info[4].IsUndefined() ? 0 : ArgIndex(info, 4, "intervalUs", 1000000);
  size_t at = CheckRange(env, offset, 4, 4);
  const uint64_t deadline = MonotonicNs() + timeout_ms * 1000000ULL;
  for (;;) {
    uint32_t reg = io_read<uint32_t>(window_->base + at);
    if ((reg & mask) == value) return Napi::Number::New(env, reg);
    if (MonotonicNs() >= deadline) return env.Null();
    if (interval_us > 0) usleep(static_cast<useconds_t>(interval_us));
  }
}

// Benchmark probes: readl/writel through node-addon-api's ObjectWrap method
// dispatch, to compare with the raw per-instance accessors.
Napi::Value MmioRegion::ReadlViaWrapper(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t at = CheckRange(env, ArgIndex(info, 0, "offset", uint64_t{1} << 32), 4, 4);
  return Napi::Number::New(env, io_read<uint32_t>(window_->base + at));
}

Napi::Value MmioRegion::WritelViaWrapper(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t at = CheckRange(env, ArgIndex(info, 0, "offset", uint64_t{1} << 32), 4, 4);
  io_write<uint32_t>(window_->base + at, static_cast<uint32_t>(ArgIndex(info, 1, "value", 0xffffffffULL)));
  return env.Undefined();
}

// armExitWrite(offset, value, pollMs = 10): when this env (main thread or
// worker) tears down — even by worker.terminate(), where no JavaScript runs —
// a writel(offset, value) through this window, then up to pollMs (at most
// 1000) of reads until the register reads `value` (exit_write.cc). Offset and
// value are checked as writel checks them. Until disarmExitWrite() or close();
// an armed window stays mapped until then, even once unreachable.
Napi::Value MmioRegion::Arm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double offset = -1;
  double value = 0;
  bool is_number = info.Length() >= 1 && napi_get_value_double(env, info[0], &offset) == napi_ok;
  if (!is_number || !AccessOk(window_, offset, 4)) {
    return Napi::Value(env, ThrowOffsetError(env, window_, info.Length() >= 1 ? static_cast<napi_value>(info[0]) : nullptr,
                                             offset, is_number, 4));
  }
  if (info.Length() < 2 || napi_get_value_double(env, info[1], &value) != napi_ok || !(value >= -2147483648.0 && value <= 4294967295.0) ||
      value != std::floor(value)) {
    return Napi::Value(env, ThrowValueError(env, info.Length() >= 2 ? static_cast<napi_value>(info[1]) : nullptr, 4));
  }
  uint32_t poll_ms = info[2].IsUndefined() ? 10 : static_cast<uint32_t>(ArgIndex(info, 2, "pollMs", 1000));
  if (virtio_mmio::ArmExitWrite(env, window_, static_cast<size_t>(offset), static_cast<uint32_t>(static_cast<int64_t>(value)),
                                poll_ms) != napi_ok) {
    throw Napi::Error::New(env, "cannot add an environment cleanup hook for " + window_->label);
  }
  return env.Undefined();
}

// disarmExitWrite(): no store at teardown. Idempotent, also on a closed window.
Napi::Value MmioRegion::Disarm(const Napi::CallbackInfo& info) {
  virtio_mmio::DisarmExitWrite(info.Env(), window_);
  return info.Env().Undefined();
}

Napi::Value MmioRegion::GetArmed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), window_->exit_write.armed);
}

// Disarms first: a closed window is never touched again.
Napi::Value MmioRegion::Close(const Napi::CallbackInfo& info) {
  virtio_mmio::DisarmExitWrite(info.Env(), window_);
  UnmapWindow(window_);
  return info.Env().Undefined();
}

Napi::Value MmioRegion::GetSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), window_->size); }
Napi::Value MmioRegion::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !window_->open); }
Napi::Value MmioRegion::GetLabel(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), window_->label); }

}  // namespace virtio_mmio
