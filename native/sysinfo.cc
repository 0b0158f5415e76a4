// Small system calls Node itself does not offer: page size, memfd_create, dup, gettid.
#include <fcntl.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

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
  uint64_t flags = ArgBits(info, 1, "flags");
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

static Napi::Value GetTid(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(syscall(SYS_gettid)));
}

void InitSysinfo(Napi::Env env, Napi::Object exports) {
  exports.Set("pageSize", Napi::Function::New(env, GetPageSize, "pageSize"));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("dupFd", Napi::Function::New(env, DupFd, "dupFd"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("gettid", Napi::Function::New(env, GetTid, "gettid"));
}
