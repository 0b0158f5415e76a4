// Small system calls Node itself does not offer: page size, memfd_create, dup, gettid; and the
// process-wide table of descriptors shared with Workers (shareFd / takeSharedFd).
#include <fcntl.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <string>
#include <unordered_map>

#include "addon.h"
#include "args.h"
#include "errors.h"

static Napi::Value GetPageSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(PageSize()));
}

// memfdCreate(name, flags) -> fd. MFD_CLOEXEC is always added.
static Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(info, 0, "name");
  uint64_t flags = ArgU64(info, 1, "flags");
  CheckBits(env, flags, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | (0x3fULL << MFD_HUGE_SHIFT),
            "memfd flags");
  int fd = memfd_create(name.c_str(), static_cast<unsigned>(flags) | MFD_CLOEXEC);
  if (fd < 0) ThrowSysError(env, {errno, "memfd_create"});
  return Napi::Number::New(env, fd);
}

// dupFd(fd) -> a new close-on-exec descriptor for the same open file.
static Napi::Value DupFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) ThrowSysError(env, {errno, "fcntl"});
  return Napi::Number::New(env, copy);
}

static Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  if (close(fd) != 0) ThrowSysError(env, {errno, "close"});
  return env.Undefined();
}

// ---- descriptors shared with Workers ----
// shareUffd() duplicates a uffd for a Worker, which adopts it (openShared) or gives it back
// (closeShared). A descriptor number is only a number: after one close it can name any file the
// process opens next, so a second closeShared, or an openShared after another, used to close
// (or adopt) whatever had that number then, and closeShared({ fd: N }) closed any N at all. So
// every shared duplicate is recorded here, with a token and the file's identity, and is given
// out exactly once. The table is process-wide, not per environment: Workers share the process's
// descriptor table, and the duplicate is made on one thread and taken on another.
namespace {
struct SharedEntry {
  double token;
  dev_t dev;
  ino_t ino;
};
std::mutex g_shared_mutex;
std::unordered_map<int, SharedEntry> g_shared;  // under g_shared_mutex
double g_next_token = 1;                        // under g_shared_mutex

[[noreturn]] void ThrowNotShared(Napi::Env env, int fd, const char* why) {
  ThrowCodedError(env, "ERR_UFFD_NOT_SHARED",
                  "descriptor " + std::to_string(fd) +
                      " is not a shared userfaultfd of this "
                      "process: " +
                      why);
}
}  // namespace

// shareFd(fd) -> { fd, token }: a close-on-exec duplicate, recorded as shared.
static Napi::Value ShareFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) ThrowSysError(env, {errno, "fcntl"});
  struct stat st = {};
  if (fstat(copy, &st) != 0) {
    int err = errno;
    close(copy);
    ThrowSysError(env, {err, "fstat"});
  }
  double token;
  {
    std::lock_guard<std::mutex> lock(g_shared_mutex);
    token = g_next_token++;
    g_shared[copy] = {token, st.st_dev, st.st_ino};
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, copy));
  out.Set("token", Napi::Number::New(env, token));
  return out;
}

// takeSharedFd(fd, token, close): removes a shareFd descriptor from the table, so that it is
// taken once; closes it too if `close`. Throws ERR_UFFD_NOT_SHARED, touching no descriptor,
// unless `fd` is the very duplicate that `token` was given for, still open on the same file.
static Napi::Value TakeSharedFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  if (!info[1].IsNumber()) ThrowTypeError(env, "token must be a number");
  double token = info[1].As<Napi::Number>().DoubleValue();
  bool close_it = info[2].ToBoolean().Value();
  std::lock_guard<std::mutex> lock(g_shared_mutex);
  auto it = g_shared.find(fd);
  if (it == g_shared.end() || it->second.token != token) {
    ThrowNotShared(env, fd, "already adopted or closed, or never made by shareUffd()");
  }
  struct stat st = {};
  if (fstat(fd, &st) != 0 || st.st_dev != it->second.dev || st.st_ino != it->second.ino) {
    // Closed behind our back (the number may name another file now): forget it, close nothing.
    g_shared.erase(it);
    ThrowNotShared(env, fd, "it was closed by other means");
  }
  g_shared.erase(it);
  if (close_it && close(fd) != 0) ThrowSysError(env, {errno, "close"});
  return env.Undefined();
}

static Napi::Value GetTid(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(syscall(SYS_gettid)));
}

void InitSysinfo(Napi::Env env, Napi::Object exports) {
  exports.Set("pageSize", Napi::Function::New(env, GetPageSize, "pageSize"));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("dupFd", Napi::Function::New(env, DupFd, "dupFd"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("gettid", Napi::Function::New(env, GetTid, "gettid"));
  exports.Set("shareFd", Napi::Function::New(env, ShareFd, "shareFd"));
  exports.Set("takeSharedFd", Napi::Function::New(env, TakeSharedFd, "takeSharedFd"));
}
