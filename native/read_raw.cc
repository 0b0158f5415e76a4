// The blocking read behind UffdHandle.readRaw, for a Worker that owns its fault loop (lib's
// serveFaults): it reads on its own thread, so it may block; the main thread never calls it.
#include "read_raw.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "args.h"
#include "errors.h"
#include "uapi.h"

// readRaw(timeoutMs, max) -> ArrayBuffer of up to `max` messages, or null if none came in time.
// Blocking: meant for a Worker that owns the fault loop, never for the main thread.
Napi::Value ReadRaw(Napi::Env env, int uffd, const Napi::CallbackInfo& info) {
  double timeout = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  const auto max = static_cast<size_t>(ArgInt(info, 1, "max", 1, 4096));
  int timeout_ms = timeout < 0 ? -1 : static_cast<int>(std::min(timeout, 2147483647.0));
  struct pollfd pfd = {uffd, POLLIN, 0};
  int n;
  do {
    n = poll(&pfd, 1, timeout_ms);
  } while (n < 0 && errno == EINTR);
  if (n < 0) ThrowSysError(env, {errno, "poll"});
  if (n == 0) return env.Null();
  std::vector<uffd_msg> msgs(max);
  ssize_t got = read(uffd, msgs.data(), max * sizeof(uffd_msg));
  if (got < 0) {
    if (errno == EAGAIN) return env.Null();  // another reader took them
    ThrowSysError(env, {errno, "read"});
  }
  Napi::ArrayBuffer raw = Napi::ArrayBuffer::New(env, static_cast<size_t>(got));
  std::memcpy(raw.Data(), msgs.data(), static_cast<size_t>(got));
  return raw;
}
