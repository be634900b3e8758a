// Building errors for JS. Every native failure becomes a JS exception; the
// error objects come from the factory that lib/platform installs, so they
// are instances of the library's typed error classes.
#pragma once

#include <napi.h>

#include <string>

namespace virtio_mmio {

// A failed system call, shaped like Node's fs errors (errno, code, syscall,
// path). `err` is a positive errno value.
Napi::Error SyscallError(Napi::Env env, int err, const char* syscall, const std::string& path,
                         const std::string& detail = "");
// A typed library error of the given kind ("closed", "dma", ...).
Napi::Error TypedError(Napi::Env env, const char* kind, const std::string& message);
Napi::Error RangeErr(Napi::Env env, const std::string& message);
Napi::Error TypeErr(Napi::Env env, const std::string& message);

std::string Hex(uint64_t value);
const char* ErrnoName(int err);

// Argument readers for the public edge: TypeError for a wrong type, RangeError
// for a value that is not a non-negative safe integer (or out of `max`).
uint64_t ArgIndex(const Napi::CallbackInfo& info, size_t i, const char* name, uint64_t max);
uint64_t ArgU64(const Napi::CallbackInfo& info, size_t i, const char* name);  // number or bigint
bool ArgBool(const Napi::CallbackInfo& info, size_t i, bool fallback);
int ArgFd(const Napi::CallbackInfo& info, size_t i);

}  // namespace virtio_mmio
