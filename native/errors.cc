#include "errors.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "addon_data.h"

namespace virtio_mmio {

std::string Hex(uint64_t value) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(value));
  return buf;
}

const char* ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  return name != nullptr ? name : "EUNKNOWN";
}

// Errors are made by the JS factory so that they belong to the library's own
// realm (a vm context such as jest's has its own RangeError).
static Napi::Error FromFactory(Napi::Env env, const char* kind, const std::string& message,
                               Napi::Object props) {
  AddonData& data = GetAddonData(env);
  if (!data.error_factory.IsEmpty()) {
    Napi::Value made = data.error_factory.Call({Napi::String::New(env, kind), Napi::String::New(env, message), props});
    if (made.IsObject()) return Napi::Error(env, made);
  }
  // No factory installed (addon loaded directly): built-in errors with the same fields.
  std::string k = kind;
  Napi::Error error = k == "range"  ? Napi::RangeError::New(env, message)
                      : k == "type" ? Napi::TypeError::New(env, message)
                                    : Napi::Error::New(env, message);
  Napi::Object obj = error.Value();
  Napi::Array keys = props.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); i++) {
    Napi::Value key = keys.Get(i);
    obj.Set(key, props.Get(key));
  }
  if (k != "range" && k != "type") obj.Set("kind", Napi::String::New(env, kind));
  return error;
}

Napi::Error SyscallError(Napi::Env env, int err, const char* syscall, const std::string& path,
                         const std::string& detail) {
  std::string message = std::string(ErrnoName(err)) + ": " + std::strerror(err) + ", " + syscall;
  if (!path.empty()) message += " '" + path + "'";
  if (!detail.empty()) message += " (" + detail + ")";
  Napi::Object props = Napi::Object::New(env);
  props.Set("errno", Napi::Number::New(env, -err));
  props.Set("code", Napi::String::New(env, ErrnoName(err)));
  props.Set("syscall", Napi::String::New(env, syscall));
  if (!path.empty()) props.Set("path", Napi::String::New(env, path));
  return FromFactory(env, "syscall", message, props);
}

Napi::Error TypedError(Napi::Env env, const char* kind, const std::string& message) {
  return FromFactory(env, kind, message, Napi::Object::New(env));
}

Napi::Error RangeErr(Napi::Env env, const std::string& message) {
  return FromFactory(env, "range", message, Napi::Object::New(env));
}

Napi::Error TypeErr(Napi::Env env, const std::string& message) {
  return FromFactory(env, "type", message, Napi::Object::New(env));
}

uint64_t ArgIndex(const Napi::CallbackInfo& info, size_t i, const char* name, uint64_t max) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) throw TypeErr(info.Env(), std::string(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != std::floor(d) || d > 9007199254740991.0 || static_cast<uint64_t>(d) > max) {
    throw RangeErr(info.Env(), std::string(name) + " must be an integer in [0, " + std::to_string(max) +
                                   "], got " + v.ToString().Utf8Value());
  }
  return static_cast<uint64_t>(d);
}

uint64_t ArgU64(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (v.IsBigInt()) {
    bool lossless = false;
    uint64_t value = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw RangeErr(info.Env(), std::string(name) + " must be a bigint in [0, 2^64)");
    return value;
  }
  return ArgIndex(info, i, name, 9007199254740991ULL);
}

size_t MapLength(Napi::Env env, uint64_t bytes, const std::string& what) {
  if (bytes > static_cast<uint64_t>(PTRDIFF_MAX)) {
    throw RangeErr(env, what + " of " + Hex(bytes) + " bytes does not fit a " + std::to_string(8 * sizeof(void*)) +
                            "-bit address space");
  }
  return static_cast<size_t>(bytes);
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, bool fallback) {
  Napi::Value v = info[i];
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) throw TypeErr(info.Env(), "expected a boolean");
  return v.As<Napi::Boolean>().Value();
}

int ArgFd(const Napi::CallbackInfo& info, size_t i) {
  return static_cast<int>(ArgIndex(info, i, "fd", 0x7fffffff));
}

}  // namespace virtio_mmio
