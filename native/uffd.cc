#include "uffd.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "addon.h"
#include "args.h"
#include "errors.h"
#include "uapi.h"

// Distinguishes our handles from any other wrapped object, so a method borrowed onto the wrong
// receiver throws instead of reinterpreting someone else's memory.
static const napi_type_tag kUffdTag = {0x75666664a11ce001ULL, 0x6e6f64652d756664ULL};

static void CheckReceiver(const Napi::CallbackInfo& info) {
  Napi::Value self = info.This();
  if (!self.IsObject() || !self.As<Napi::Object>().CheckTypeTag(&kUffdTag)) {
    ThrowTypeError(info.Env(), "receiver is not a Userfaultfd handle");
  }
}

UffdHandle::UffdHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UffdHandle>(info) {
  fd_ = ArgFd(info, 0, "fd");
  owns_fd_ = info.Length() < 2 || info[1].ToBoolean().Value();
  info.This().As<Napi::Object>().TypeTag(&kUffdTag);
}

UffdHandle::~UffdHandle() {
  // Reached only when the JS object was collected without close(): do not leak the descriptor.
  if (fd_ >= 0 && owns_fd_) ::close(fd_);
}

int UffdHandle::LiveFd(Napi::Env env) const {
  if (fd_ < 0) {
    Napi::Error error = Napi::Error::New(env, "this userfaultfd is closed");
    error.Set("code", Napi::String::New(env, "ERR_UFFD_CLOSED"));
    throw error;
  }
  return fd_;
}

Napi::Value UffdHandle::GetFd(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  return Napi::Number::New(info.Env(), fd_);
}

Napi::Value UffdHandle::Close(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  // Closing releases the uffd context once no other reference remains; the kernel then wakes
  // every thread still waiting on a fault of this uffd (they retry and fault normally).
  if (fd_ >= 0 && owns_fd_) ::close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}

// ---- ranges ----

struct Range {
  uint64_t start;
  uint64_t len;
};

static Range ArgRange(const Napi::CallbackInfo& info, size_t i, const char* what) {
  Range r{ArgAddress(info, i, "address"), ArgLength(info, i + 1, "length")};
  CheckRange(info.Env(), r.start, r.len, PageSize(), what);
  return r;
}

// Runs a resolving ioctl whose s64 result field says how many bytes were done. The field is
// preset to 0 (older kernels left it unset on the mmap_changing EAGAIN) and read as signed:
// >= 0 is progress, < 0 is -errno. Success returns the bytes; any failure throws UffdError
// carrying the bytes done, so partial progress (EAGAIN with bytes > 0) is never lost.
template <typename Arg>
static Napi::Value Resolve(Napi::Env env, int fd, unsigned long request, const char* name, Arg* arg,
                           __s64* result) {
  *result = 0;
  int rc = ioctl(fd, request, arg);
  int err = errno;
  if (rc == 0) return Napi::Number::New(env, static_cast<double>(*result));
  int64_t done = *result > 0 ? *result : 0;
  ThrowSysError(env, {err, "ioctl", name, true, done});
}

Napi::Value UffdHandle::Register(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  int fd = LiveFd(info.Env());
  Range r = ArgRange(info, 0, "register");
  uint64_t mode = ArgBits(info, 2, "mode");
  CheckBits(info.Env(), mode,
            UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP | UFFDIO_REGISTER_MODE_MINOR,
            "register");
  struct uffdio_register reg = {};
  reg.range.start = r.start;
  reg.range.len = r.len;
  reg.mode = mode;
  if (ioctl(fd, UFFDIO_REGISTER, &reg) != 0) {
    ThrowSysError(info.Env(), {errno, "ioctl", "UFFDIO_REGISTER"});
  }
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reg.ioctls));
}

Napi::Value UffdHandle::Unregister(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  int fd = LiveFd(info.Env());
  Range r = ArgRange(info, 0, "unregister");
  struct uffdio_range range = {r.start, r.len};
  if (ioctl(fd, UFFDIO_UNREGISTER, &range) != 0) {
    ThrowSysError(info.Env(), {errno, "ioctl", "UFFDIO_UNREGISTER"});
  }
  return info.Env().Undefined();
}

Napi::Value UffdHandle::Wake(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  int fd = LiveFd(info.Env());
  Range r = ArgRange(info, 0, "wake");
  struct uffdio_range range = {r.start, r.len};
  if (ioctl(fd, UFFDIO_WAKE, &range) != 0) {
    ThrowSysError(info.Env(), {errno, "ioctl", "UFFDIO_WAKE"});
  }
  return info.Env().Undefined();
}

// copy(dst, src, length, mode): src is an address, or a Buffer / TypedArray / ArrayBuffer whose
// first `length` bytes are copied. The JS value stays referenced by this call's arguments for
// the whole (synchronous) ioctl, so the memory cannot be collected underneath the kernel.
Napi::Value UffdHandle::Copy(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  int fd = LiveFd(env);
  uint64_t dst = ArgAddress(info, 0, "dst");
  uint64_t len = ArgLength(info, 2, "length");
  CheckRange(env, dst, len, PageSize(), "copy");
  uint64_t src = 0;
  uint8_t* data = nullptr;
  size_t size = 0;
  if (BufferView(info[1], &data, &size)) {
    if (size < len) {
      ThrowRangeError(env, "copy: source holds " + std::to_string(size) + " bytes, fewer than " +
                               std::to_string(len));
    }
    src = reinterpret_cast<uintptr_t>(data);
  } else {
    src = ArgAddress(info, 1, "src");
    if (src + len < src) ThrowRangeError(env, "copy: src + length overflows");
  }
  uint64_t mode = ArgBits(info, 3, "mode");
  CheckBits(env, mode, UFFDIO_COPY_MODE_DONTWAKE | UFFDIO_COPY_MODE_WP, "copy");
  struct uffdio_copy arg = {};
  arg.dst = dst;
  arg.src = src;
  arg.len = len;
  arg.mode = mode;
  return Resolve(env, fd, UFFDIO_COPY, "UFFDIO_COPY", &arg, &arg.copy);
}

Napi::Value UffdHandle::Zeropage(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  int fd = LiveFd(env);
  Range r = ArgRange(info, 0, "zeropage");
  uint64_t mode = ArgBits(info, 2, "mode");
  CheckBits(env, mode, UFFDIO_ZEROPAGE_MODE_DONTWAKE, "zeropage");
  struct uffdio_zeropage arg = {};
  arg.range = {r.start, r.len};
  arg.mode = mode;
  return Resolve(env, fd, UFFDIO_ZEROPAGE, "UFFDIO_ZEROPAGE", &arg, &arg.zeropage);
}

Napi::Value UffdHandle::Continue(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  int fd = LiveFd(env);
  Range r = ArgRange(info, 0, "continue");
  uint64_t mode = ArgBits(info, 2, "mode");
  CheckBits(env, mode, UFFDIO_CONTINUE_MODE_DONTWAKE | UFFDIO_CONTINUE_MODE_WP, "continue");
  struct uffdio_continue arg = {};
  arg.range = {r.start, r.len};
  arg.mode = mode;
  return Resolve(env, fd, UFFDIO_CONTINUE, "UFFDIO_CONTINUE", &arg, &arg.mapped);
}

Napi::Value UffdHandle::Poison(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  int fd = LiveFd(env);
  Range r = ArgRange(info, 0, "poison");
  uint64_t mode = ArgBits(info, 2, "mode");
  CheckBits(env, mode, UFFDIO_POISON_MODE_DONTWAKE, "poison");
  struct uffdio_poison arg = {};
  arg.range = {r.start, r.len};
  arg.mode = mode;
  return Resolve(env, fd, UFFDIO_POISON, "UFFDIO_POISON", &arg, &arg.updated);
}

Napi::Value UffdHandle::Move(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  int fd = LiveFd(env);
  uint64_t dst = ArgAddress(info, 0, "dst");
  uint64_t src = ArgAddress(info, 1, "src");
  uint64_t len = ArgLength(info, 2, "length");
  CheckRange(env, dst, len, PageSize(), "move");
  CheckRange(env, src, len, PageSize(), "move");
  uint64_t mode = ArgBits(info, 3, "mode");
  CheckBits(env, mode, UFFDIO_MOVE_MODE_DONTWAKE | UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES, "move");
  struct uffdio_move arg = {};
  arg.dst = dst;
  arg.src = src;
  arg.len = len;
  arg.mode = mode;
  return Resolve(env, fd, UFFDIO_MOVE, "UFFDIO_MOVE", &arg, &arg.move);
}

// writeProtect(address, length, mode): mode WP sets protection, no WP removes it (and wakes the
// waiters unless DONTWAKE). WP together with DONTWAKE is rejected by the kernel with EINVAL.
Napi::Value UffdHandle::WriteProtect(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  int fd = LiveFd(env);
  Range r = ArgRange(info, 0, "writeProtect");
  uint64_t mode = ArgBits(info, 2, "mode");
  CheckBits(env, mode, UFFDIO_WRITEPROTECT_MODE_WP | UFFDIO_WRITEPROTECT_MODE_DONTWAKE,
            "writeProtect");
  struct uffdio_writeprotect arg = {};
  arg.range = {r.start, r.len};
  arg.mode = mode;
  if (ioctl(fd, UFFDIO_WRITEPROTECT, &arg) != 0) {
    ThrowSysError(env, {errno, "ioctl", "UFFDIO_WRITEPROTECT"});
  }
  return env.Undefined();
}

Napi::Function UffdHandle::DefineClass(Napi::Env env) {
  return ObjectWrap<UffdHandle>::DefineClass(
      env, "UffdHandle",
      {
          InstanceAccessor<&UffdHandle::GetFd>("fd"),
          InstanceMethod<&UffdHandle::Close>("close"),
          InstanceMethod<&UffdHandle::Register>("register"),
          InstanceMethod<&UffdHandle::Unregister>("unregister"),
          InstanceMethod<&UffdHandle::Wake>("wake"),
          InstanceMethod<&UffdHandle::Copy>("copy"),
          InstanceMethod<&UffdHandle::Zeropage>("zeropage"),
          InstanceMethod<&UffdHandle::WriteProtect>("writeProtect"),
          InstanceMethod<&UffdHandle::Continue>("continue"),
          InstanceMethod<&UffdHandle::Poison>("poison"),
          InstanceMethod<&UffdHandle::Move>("move"),
      });
}

// ---- opening and the API handshake (free functions: they run before a handle exists) ----

static constexpr int kViaSyscall = 0;
static constexpr int kViaDevice = 1;

// openUffd(via, userModeOnly) -> fd. O_CLOEXEC | O_NONBLOCK always: the fd must not leak into
// exec'd children, and reads must never block the calling thread (poll decides when to read).
static Napi::Value OpenUffd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int via = ArgFd(info, 0, "via");
  bool user_mode_only = info[1].ToBoolean().Value();
  int flags = O_CLOEXEC | O_NONBLOCK | (user_mode_only ? UFFD_USER_MODE_ONLY : 0);
  if (via == kViaSyscall) {
    long fd = syscall(SYS_userfaultfd, flags);
    if (fd < 0) ThrowSysError(env, {errno, "userfaultfd"});
    return Napi::Number::New(env, static_cast<double>(fd));
  }
  if (via == kViaDevice) {
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev < 0) ThrowSysError(env, {errno, "open", nullptr, false, 0, "/dev/userfaultfd"});
    int fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
    int err = errno;
    ::close(dev);
    if (fd < 0) ThrowSysError(env, {err, "ioctl", "USERFAULTFD_IOC_NEW"});
    return Napi::Number::New(env, fd);
  }
  ThrowRangeError(env, "via must be 0 (syscall) or 1 (device)");
}

// apiHandshake(fd, features: bigint) -> { features: bigint, ioctls: bigint }. The kernel allows
// one UFFDIO_API per fd, so callers probe on a throwaway fd and hand a fresh one to the user.
static Napi::Value ApiHandshake(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  struct uffdio_api api = {};
  api.api = UFFD_API;
  api.features = ArgBits(info, 1, "features");
  if (ioctl(fd, UFFDIO_API, &api) != 0) ThrowSysError(env, {errno, "ioctl", "UFFDIO_API"});
  Napi::Object out = Napi::Object::New(env);
  out.Set("features", Napi::BigInt::New(env, static_cast<uint64_t>(api.features)));
  out.Set("ioctls", Napi::BigInt::New(env, static_cast<uint64_t>(api.ioctls)));
  return out;
}

// rawApi(fd, api, features) -> errno (0 on success). For the handshake rule tests (a bad api
// number, bit 63): they need the kernel's raw answer, not an exception.
static Napi::Value RawApi(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0, "fd");
  struct uffdio_api api = {};
  api.api = ArgBits(info, 1, "api");
  api.features = ArgBits(info, 2, "features");
  int rc = ioctl(fd, UFFDIO_API, &api);
  return Napi::Number::New(info.Env(), rc == 0 ? 0 : errno);
}

void InitUffd(Napi::Env env, Napi::Object exports, AddonData& data) {
  Napi::Function ctor = UffdHandle::DefineClass(env);
  data.uffd_ctor = Napi::Persistent(ctor);
  exports.Set("UffdHandle", ctor);
  exports.Set("openUffd", Napi::Function::New(env, OpenUffd, "openUffd"));
  exports.Set("apiHandshake", Napi::Function::New(env, ApiHandshake, "apiHandshake"));
  exports.Set("rawApi", Napi::Function::New(env, RawApi, "rawApi"));
}
