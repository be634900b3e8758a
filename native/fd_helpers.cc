#include "fd_helpers.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "errors.h"

namespace virtio_mmio {

// eventfdCreate(initval = 0, semaphore = false) -> fd (non-blocking, cloexec)
static Napi::Value EventfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  unsigned init = info[0].IsUndefined() ? 0 : static_cast<unsigned>(ArgIndex(info, 0, "initval", 0xffffffffULL));
  int flags = EFD_NONBLOCK | EFD_CLOEXEC | (ArgBool(info, 1, false) ? EFD_SEMAPHORE : 0);
  int fd = eventfd(init, flags);
  if (fd < 0) throw SyscallError(env, errno, "eventfd", "");
  return Napi::Number::New(env, fd);
}

// eventfdWrite(fd, value = 1)
static Napi::Value EventfdWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  uint64_t value = info[1].IsUndefined() ? 1 : ArgU64(info, 1, "value");
  ssize_t n;
  do {
    n = write(fd, &value, sizeof value);
  } while (n < 0 && errno == EINTR);
  if (n < 0) throw SyscallError(env, errno, "write", "eventfd " + std::to_string(fd));
  return env.Undefined();
}

// eventfdRead(fd) -> bigint counter, or null if it is zero (EAGAIN)
static Napi::Value EventfdRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  uint64_t value = 0;
  ssize_t n;
  do {
    n = read(fd, &value, sizeof value);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return env.Null();
  if (n != static_cast<ssize_t>(sizeof value)) {
    throw SyscallError(env, n < 0 ? errno : EIO, "read", "eventfd " + std::to_string(fd));
  }
  return Napi::BigInt::New(env, value);
}

static Napi::Value PairToArray(Napi::Env env, const int fds[2]) {
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, Napi::Number::New(env, fds[0]));
  result.Set(1u, Napi::Number::New(env, fds[1]));
  return result;
}

// pipe() -> [readFd, writeFd], both non-blocking and cloexec
static Napi::Value Pipe(const Napi::CallbackInfo& info) {
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) throw SyscallError(info.Env(), errno, "pipe2", "");
  return PairToArray(info.Env(), fds);
}

// socketpair() -> [a, b]: a connected AF_UNIX SOCK_SEQPACKET pair (message
// boundaries kept, like a UIO fd's 4-byte reads), non-blocking and cloexec
static Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
    throw SyscallError(info.Env(), errno, "socketpair", "");
  }
  return PairToArray(info.Env(), fds);
}

static Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  if (close(fd) < 0) throw SyscallError(info.Env(), errno, "close", "fd " + std::to_string(fd));
  return info.Env().Undefined();
}

void DefineFdHelpers(Napi::Env env, Napi::Object exports) {
  exports.Set("eventfdCreate", Napi::Function::New<EventfdCreate>(env, "eventfdCreate"));
  exports.Set("eventfdWrite", Napi::Function::New<EventfdWrite>(env, "eventfdWrite"));
  exports.Set("eventfdRead", Napi::Function::New<EventfdRead>(env, "eventfdRead"));
  exports.Set("pipe", Napi::Function::New<Pipe>(env, "pipe"));
  exports.Set("socketpair", Napi::Function::New<SocketPair>(env, "socketpair"));
  exports.Set("closeFd", Napi::Function::New<CloseFd>(env, "closeFd"));
  Napi::Object constants = Napi::Object::New(env);
  constants.Set("EPOLLIN", Napi::Number::New(env, EPOLLIN));
  constants.Set("EPOLLPRI", Napi::Number::New(env, EPOLLPRI));
  constants.Set("EPOLLOUT", Napi::Number::New(env, EPOLLOUT));
  constants.Set("EPOLLERR", Napi::Number::New(env, EPOLLERR));
  constants.Set("EPOLLHUP", Napi::Number::New(env, EPOLLHUP));
  constants.Set("EPOLLRDHUP", Napi::Number::New(env, EPOLLRDHUP));
  constants.Set("EPOLLET", Napi::Number::New(env, static_cast<double>(static_cast<uint32_t>(EPOLLET))));
  exports.Set("constants", constants);
}

}  // namespace virtio_mmio
