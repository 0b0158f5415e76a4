#include "uffd.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <string>

#include "addon.h"
#include "args.h"
#include "errors.h"
#include "layout.h"
#include "policy_parse.h"
#include "read_raw.h"
#include "resolve.h"
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

UffdHandle* UffdHandle::Of(const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kUffdTag)) return nullptr;
  return Unwrap(v.As<Napi::Object>());
}

// A handle adopts only a real userfaultfd, made non-blocking. On any other file the event thread
// would read the file's bytes as uffd_msg: fake FORK events that adopt and close random
// descriptor numbers, in a loop. And a blocking uffd polls as POLLERR at once: readEvents()
// would then sleep in read(2) past its timeout (forever if no fault comes), and the event thread
// takes POLLERR for the end of the uffd. (libuv's uv_poll_init happens to set O_NONBLOCK, but
// only when the JS loop's reader starts.) Throws (touching nothing) otherwise.
static void AdoptUserfaultfd(Napi::Env env, int fd) {
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  char target[64] = {};
  ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
  if (n < 0 && fcntl(fd, F_GETFD) < 0) ThrowSysError(env, {errno, "fcntl"});  // EBADF
  static const char kUffd[] = "anon_inode:[userfaultfd]";
  if (n != static_cast<ssize_t>(sizeof kUffd - 1) || std::memcmp(target, kUffd, n) != 0) {
    Napi::TypeError error = Napi::TypeError::New(
        env,
        "fd " + std::to_string(fd) + " is not a userfaultfd (" +
            (n < 0 ? std::string("readlink ") + link + " failed" : "it is " + std::string(target)) +
            ")");
    error.Set("code", Napi::String::New(env, "ERR_UFFD_NOT_USERFAULTFD"));
    error.Set("fd", Napi::Number::New(env, fd));
    throw error;
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) ThrowSysError(env, {errno, "fcntl"});
  if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    ThrowSysError(env, {errno, "fcntl"});
  }
}

UffdHandle::UffdHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UffdHandle>(info) {
  int fd = ArgFd(info, 0, "fd");
  AdoptUserfaultfd(info.Env(), fd);
  fd_ = fd;
  owns_fd_ = info.Length() < 2 || info[1].ToBoolean().Value();
  info.This().As<Napi::Object>().TypeTag(&kUffdTag);
}

UffdHandle::~UffdHandle() {
  // Reached only when the JS object was collected without close(): do not leak the thread or
  // the descriptor.
  Shutdown();
  if (fd_ >= 0 && owns_fd_) ::close(fd_);
}

void UffdHandle::Shutdown(std::vector<FaultReport>* undelivered) {
  // Joins: the thread never waits on JS, so this cannot deadlock.
  if (engine_) engine_->Stop(undelivered);
  engine_.reset();
  policy_sources_.clear();
  if (cleanup_hook_) {
    napi_remove_env_cleanup_hook(env_, OnEnvTeardown, this);
    cleanup_hook_ = false;
  }
}

// A Worker's environment is going away with the event thread still running: stop and join it
// before the environment it delivers to is gone.
void UffdHandle::OnEnvTeardown(void* self) {
  auto* handle = static_cast<UffdHandle*>(self);
  handle->cleanup_hook_ = false;  // hooks are removed by the runtime as they run
  handle->Shutdown();
}

int UffdHandle::LiveFd(Napi::Env env) const {
  if (fd_ < 0) ThrowCodedError(env, "ERR_UFFD_CLOSED", "this userfaultfd is closed");
  return fd_;
}

Napi::Value UffdHandle::GetFd(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  return Napi::Number::New(info.Env(), fd_);
}

Napi::Value UffdHandle::Close(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  // Closing releases the uffd context once no other reference remains; the kernel then wakes
  // every thread still waiting on a fault of this uffd (they retry and fault normally). The
  // event thread goes first, so it never polls a descriptor number that may be reused.
  // Returns the fault reports JS had not yet taken (or undefined), for the caller to make heard.
  std::vector<FaultReport> undelivered;
  Shutdown(&undelivered);
  if (fd_ >= 0 && owns_fd_) ::close(fd_);
  fd_ = -1;
  if (undelivered.empty()) return info.Env().Undefined();
  return ReportsToJs(info.Env(), undelivered);
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

// Success returns the bytes; any failure throws UffdError carrying the bytes done, so partial
// progress (EAGAIN with bytes > 0) is never lost.
static Napi::Value Resolved(Napi::Env env, IoctlResult r, const char* name) {
  if (r.err == 0) return Napi::Number::New(env, static_cast<double>(r.bytes));
  ThrowSysError(env, {r.err, "ioctl", name, true, r.bytes});
}

Napi::Value UffdHandle::Register(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  int fd = LiveFd(info.Env());
  Range r = ArgRange(info, 0, "register");
  uint64_t mode = ArgU64(info, 2, "mode");
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
  if (mode & (UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR)) {
    faulting_.Add(r.start, r.start + r.len);
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
  faulting_.Remove(r.start, r.start + r.len);
  return info.Env().Undefined();
}

Napi::Value UffdHandle::Wake(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  int fd = LiveFd(info.Env());
  Range r = ArgRange(info, 0, "wake");
  if (int err = UffdWake(fd, r.start, r.len))
    ThrowSysError(info.Env(), {err, "ioctl", "UFFDIO_WAKE"});
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
  // The kernel would fault on the source while filling it in as the destination.
  if (src < dst + len && dst < src + len) {
    ThrowRangeError(env, "copy: the source overlaps the destination");
  }
  uint64_t mode = ArgU64(info, 3, "mode");
  CheckBits(env, mode, UFFDIO_COPY_MODE_DONTWAKE | UFFDIO_COPY_MODE_WP, "copy");
  return Resolved(env, UffdCopy(fd, dst, src, len, mode), "UFFDIO_COPY");
}

// zeropage / continue / poison(address, length, mode): one range, one mode word.
Napi::Value UffdHandle::FillRange(const Napi::CallbackInfo& info, const char* what,
                                  const char* ioctl_name, uint64_t known_modes,
                                  IoctlResult (*fill)(int, uint64_t, uint64_t, uint64_t)) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  int fd = LiveFd(env);
  Range r = ArgRange(info, 0, what);
  uint64_t mode = ArgU64(info, 2, "mode");
  CheckBits(env, mode, known_modes, what);
  return Resolved(env, fill(fd, r.start, r.len, mode), ioctl_name);
}

Napi::Value UffdHandle::Zeropage(const Napi::CallbackInfo& info) {
  return FillRange(info, "zeropage", "UFFDIO_ZEROPAGE", UFFDIO_ZEROPAGE_MODE_DONTWAKE,
                   UffdZeropage);
}

Napi::Value UffdHandle::Continue(const Napi::CallbackInfo& info) {
  return FillRange(info, "continue", "UFFDIO_CONTINUE",
                   UFFDIO_CONTINUE_MODE_DONTWAKE | UFFDIO_CONTINUE_MODE_WP, UffdContinue);
}

Napi::Value UffdHandle::Poison(const Napi::CallbackInfo& info) {
  return FillRange(info, "poison", "UFFDIO_POISON", UFFDIO_POISON_MODE_DONTWAKE, UffdPoison);
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
  uint64_t mode = ArgU64(info, 3, "mode");
  CheckBits(env, mode, UFFDIO_MOVE_MODE_DONTWAKE | UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES, "move");
  return Resolved(env, UffdMove(fd, dst, src, len, mode), "UFFDIO_MOVE");
}

// writeProtect(address, length, mode): mode WP sets protection, no WP removes it (and wakes the
// waiters unless DONTWAKE). WP together with DONTWAKE is rejected by the kernel with EINVAL.
Napi::Value UffdHandle::WriteProtect(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  int fd = LiveFd(env);
  Range r = ArgRange(info, 0, "writeProtect");
  uint64_t mode = ArgU64(info, 2, "mode");
  CheckBits(env, mode, UFFDIO_WRITEPROTECT_MODE_WP | UFFDIO_WRITEPROTECT_MODE_DONTWAKE,
            "writeProtect");
  if (int err = UffdWriteProtect(fd, r.start, r.len, mode)) {
    ThrowSysError(env, {err, "ioctl", "UFFDIO_WRITEPROTECT"});
  }
  return env.Undefined();
}

// ---- the event thread and native policies ----

// startEngine(callback, guardTid): guardTid is the JS thread's tid when THREAD_ID was negotiated
// (the deadlock guard), else 0.
Napi::Value UffdHandle::StartEngine(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  int fd = LiveFd(env);
  if (!info[0].IsFunction()) ThrowTypeError(env, "callback must be a function");
  uint64_t guard_tid = ArgU64(info, 1, "guardTid");
  if (engine_) ThrowRangeError(env, "the event thread is already running");
  engine_ = std::make_unique<FaultEngine>(env, fd, info[0].As<Napi::Function>(),
                                          static_cast<long>(guard_tid));
  env_ = env;
  if (!cleanup_hook_) {
    napi_add_env_cleanup_hook(env, OnEnvTeardown, this);
    cleanup_hook_ = true;
  }
  return env.Undefined();
}

Napi::Value UffdHandle::StopEngine(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Shutdown();
  return info.Env().Undefined();
}

// pauseDelivery(paused: boolean)
Napi::Value UffdHandle::PauseDelivery(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  if (engine_) engine_->SetPaused(info[0].ToBoolean().Value());
  return info.Env().Undefined();
}

Napi::Value UffdHandle::RefEngine(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  if (engine_) engine_->Ref();
  return info.Env().Undefined();
}

Napi::Value UffdHandle::UnrefEngine(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  if (engine_) engine_->Unref();
  return info.Env().Undefined();
}

// addPolicy(spec) -> id. spec: one descriptor object per kind (policy_parse.h).
Napi::Value UffdHandle::AddPolicy(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  LiveFd(env);
  if (!engine_) ThrowRangeError(env, "start the event thread before adding policies");
  ParsedPolicy parsed = ParsePolicy(env, info[0], faulting_);
  const uint32_t id = next_policy_id_++;
  parsed.policy->id = id;
  if (!engine_->AddPolicy(std::move(parsed.policy))) {
    ThrowRangeError(env, "the range overlaps another policy's");
  }
  if (parsed.held.Length() > 0)
    policy_sources_.emplace(id, Napi::Persistent(Napi::Value(parsed.held)));
  return Napi::Number::New(env, id);
}

Napi::Value UffdHandle::RemovePolicy(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  const auto id = static_cast<uint32_t>(ArgInt(info, 0, "id", 0, UINT32_MAX));
  bool removed = engine_ && engine_->RemovePolicy(id);
  // Removal waited for any resolution in progress, so the source may go now.
  policy_sources_.erase(id);
  return Napi::Boolean::New(info.Env(), removed);
}

Napi::Value UffdHandle::PolicyStats(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  const auto id = static_cast<uint32_t>(ArgInt(info, 0, "id", 0, UINT32_MAX));
  std::shared_ptr<Policy> p = engine_ ? engine_->FindPolicy(id) : nullptr;
  if (!p) return env.Undefined();
  Napi::Object o = Napi::Object::New(env);
  o.Set("faults", Napi::Number::New(env, static_cast<double>(p->stats.faults.load())));
  o.Set("bytes", Napi::Number::New(env, static_cast<double>(p->stats.bytes.load())));
  o.Set("eexist", Napi::Number::New(env, static_cast<double>(p->stats.eexist.load())));
  o.Set("retries", Napi::Number::New(env, static_cast<double>(p->stats.retries.load())));
  o.Set("errors", Napi::Number::New(env, static_cast<double>(p->stats.errors.load())));
  return o;
}

Napi::Value UffdHandle::ReadRawEvents(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  int fd = LiveFd(env);
  if (engine_) ThrowRangeError(env, "the event thread is reading this userfaultfd");
  return ReadRaw(env, fd, info);
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
          InstanceMethod<&UffdHandle::StartEngine>("startEngine"),
          InstanceMethod<&UffdHandle::StopEngine>("stopEngine"),
          InstanceMethod<&UffdHandle::PauseDelivery>("pauseDelivery"),
          InstanceMethod<&UffdHandle::RefEngine>("refEngine"),
          InstanceMethod<&UffdHandle::UnrefEngine>("unrefEngine"),
          InstanceMethod<&UffdHandle::AddPolicy>("addPolicy"),
          InstanceMethod<&UffdHandle::RemovePolicy>("removePolicy"),
          InstanceMethod<&UffdHandle::PolicyStats>("policyStats"),
          InstanceMethod<&UffdHandle::ReadRawEvents>("readRaw"),
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
  api.features = ArgU64(info, 1, "features");
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
  api.api = ArgU64(info, 1, "api");
  api.features = ArgU64(info, 2, "features");
  int rc = ioctl(fd, UFFDIO_API, &api);
  return Napi::Number::New(info.Env(), rc == 0 ? 0 : errno);
}

void InitUffd(Napi::Env env, Napi::Object exports) {
  exports.Set("UffdHandle", UffdHandle::DefineClass(env));
  exports.Set("layout", UapiLayout(env));
  exports.Set("openUffd", Napi::Function::New(env, OpenUffd, "openUffd"));
  exports.Set("apiHandshake", Napi::Function::New(env, ApiHandshake, "apiHandshake"));
  exports.Set("rawApi", Napi::Function::New(env, RawApi, "rawApi"));
}
