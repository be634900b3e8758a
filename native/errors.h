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

// A mapping length computed in 64 bits (sizes reach 16 GiB, windows 2^32 +
// an offset) as the size_t that mmap takes. On a 32-bit build (armhf) size_t
// is 32 bits and a cast would silently map less than asked for, so a length
// beyond PTRDIFF_MAX (no mapping can be that large) is a RangeError naming
// `what`. Never throws on a 64-bit build for the sizes the addon accepts.
size_t MapLength(Napi::Env env, uint64_t bytes, const std::string& what);

}  // namespace virtio_mmio
