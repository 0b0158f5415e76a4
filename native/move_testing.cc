// Test helpers for the MOVE error matrix: a forked child that keeps this process's private
// anonymous pages shared (copy-on-write) for a while, which is what makes UFFDIO_MOVE fail with
// EBUSY. Node cannot fork itself, and a child_process is a new program that shares nothing.
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
#include "move.h"

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
  uint64_t ms = ArgLength(info, 0, "ms");
  if (ms > 600000) ThrowRangeError(env, "ms must be at most 600000");
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

}  // namespace

void InitMoveTesting(Napi::Env env, Napi::Object exports) {
  Napi::Value existing = exports.Get("testing");
  Napi::Object testing = existing.IsObject() ? existing.As<Napi::Object>() : Napi::Object::New(env);
  testing.Set("forkHold", Napi::Function::New(env, ForkHold, "forkHold"));
  testing.Set("reapChild", Napi::Function::New(env, ReapChild, "reapChild"));
  exports.Set("testing", testing);
}
