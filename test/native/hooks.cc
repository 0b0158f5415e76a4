// Test hooks: natives the test suite needs and users must not get. They are compiled into the
// addon only in a checkout of the repository (binding.gyp looks for this file, which the package
// does not ship) and never into the prebuilds (test/pack/prebuilds.sh sets UFFD_TEST_HOOKS=0).
// They appear as `testHooks` on the addon's exports (lib/core/binding.ts).
//
// - forkHold/reapChild, for the MOVE error matrix: a forked child that keeps this process's
//   private anonymous pages shared (copy-on-write) for a while, which is what makes UFFDIO_MOVE
//   fail with EBUSY. Node cannot fork itself, and a child_process is a new program that shares
//   nothing.
// - nonblocking: read or set O_NONBLOCK (JS has no fcntl), for tests of adopted descriptors.
// - waitReadable: whether a uffd has a message waiting, without reading it, for tests that need
//   an event to stay unread (mmap-changing).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <set>

#include "args.h"
#include "errors.h"
#include "uffd.h"

namespace {

// The children forkHold made. reapChild kills only these: a pid from anywhere else (our own, a
// sibling's) is refused rather than sent SIGKILL. Process-wide, like the children themselves.
std::mutex children_mutex;
std::set<pid_t> children;

// forkHold(ms) -> pid. The child sleeps `ms` and _exits; it runs only async-signal-safe calls,
// since it is a copy of a multi-threaded process with only the forking thread in it. It dies
// with us if we die first (PR_SET_PDEATHSIG), so a crashed test leaves no orphan behind.
Napi::Value ForkHold(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto ms = static_cast<uint64_t>(ArgInt(info, 0, "ms", 0, 600000));
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) ThrowSysError(env, {errno, "fork"});
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    struct timespec ts = {static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    _exit(0);
  }
  {
    std::lock_guard<std::mutex> lock(children_mutex);
    children.insert(pid);
  }
  return Napi::Number::New(env, pid);
}

// reapChild(pid) -> the wait status. Kills the child (SIGKILL) and waits for it, so that its
// copy-on-write references are gone when this returns.
Napi::Value ReapChild(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int pid = ArgFd(info, 0, "pid");
  if (pid <= 0) ThrowRangeError(env, "pid must be positive");
  {
    std::lock_guard<std::mutex> lock(children_mutex);
    if (children.erase(pid) == 0) ThrowSysError(env, {ECHILD, "waitpid"});
  }
  kill(pid, SIGKILL);
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) ThrowSysError(env, {errno, "waitpid"});
  return Napi::Number::New(env, status);
}

// nonblocking(fd, on?) -> whether O_NONBLOCK is set, after setting or clearing it if `on` is a
// boolean. For tests of adopted descriptors: JS has no fcntl to make a blocking uffd with.
Napi::Value Nonblocking(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) ThrowSysError(env, {errno, "fcntl"});
  if (info[1].IsBoolean()) {
    flags = info[1].As<Napi::Boolean>().Value() ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
    if (fcntl(fd, F_SETFL, flags) != 0) ThrowSysError(env, {errno, "fcntl"});
  }
  return Napi::Boolean::New(env, (flags & O_NONBLOCK) != 0);
}

// waitReadable(handle, timeoutMs) -> boolean.
Napi::Value WaitReadable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UffdHandle* handle = UffdHandle::Of(info[0]);
  if (handle == nullptr) ThrowTypeError(env, "handle must be a Userfaultfd handle");
  const int fd = handle->LiveFd(env);
  const int timeout = static_cast<int>(ArgInt(info, 1, "timeoutMs", 0, INT32_MAX));
  struct pollfd pfd = {fd, POLLIN, 0};
  int n;
  do {
    n = poll(&pfd, 1, timeout);
  } while (n < 0 && errno == EINTR);
  if (n < 0) ThrowSysError(env, {errno, "poll"});
  return Napi::Boolean::New(env, n > 0 && (pfd.revents & POLLIN));
}

}  // namespace

void InitTestHooks(Napi::Env env, Napi::Object exports) {
  Napi::Object hooks = Napi::Object::New(env);
  hooks.Set("forkHold", Napi::Function::New(env, ForkHold, "forkHold"));
  hooks.Set("reapChild", Napi::Function::New(env, ReapChild, "reapChild"));
  hooks.Set("nonblocking", Napi::Function::New(env, Nonblocking, "nonblocking"));
  hooks.Set("waitReadable", Napi::Function::New(env, WaitReadable, "waitReadable"));
  exports.Set("testHooks", hooks);
}
