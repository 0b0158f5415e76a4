// The resolvers that fill a unit in place: zeros, a copy from a buffer or a file, un-protect and
// CONTINUE. All run on the event thread: none may allocate (event_ring.h says why).
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fill.h"
#include "resolvers.h"

namespace {

constexpr uint64_t kWpOff = 0;

// A unit whose bytes could not be read (pread failed: EIO, say) must not become zeros. As in a
// file mapping whose read fails, the faulting thread gets SIGBUS: UFFDIO_POISON the unit. Where
// the kernel has no POISON (before 6.6) the fault stays unresolved, and the report tells JS the
// address to resolve (its thread waits until then, or until close); only the JS thread itself,
// which cannot wait for its own handler, gets zeros, with the report. Never a success.
IoctlResult Unreadable(int uffd, FaultUnit u, bool js_thread, int err) {
  IoctlResult poisoned =
      FillAll(u.len, [&](uint64_t d) { return UffdPoison(uffd, u.start + d, u.len - d, 0); });
  if (poisoned.err != 0 && js_thread) {
    FillAll(u.len, [&](uint64_t d) { return FillZero(uffd, u.start + d, u.len - d); });
  }
  return {0, err};
}

// UFFDIO_COPY of a whole unit from `src`, continuing after partial progress.
IoctlResult CopyUnit(int uffd, FaultUnit u, const uint8_t* src) {
  return FillAll(u.len, [&](uint64_t d) {
    return UffdCopy(uffd, u.start + d, reinterpret_cast<uintptr_t>(src + d), u.len - d, 0);
  });
}

}  // namespace

Resolution ResolveWriteProtect(int uffd, FaultUnit u) {
  return {{0, UffdWriteProtect(uffd, u.start, u.len, kWpOff)}, "UFFDIO_WRITEPROTECT", u};
}

Resolution ResolveMinor(int uffd, FaultUnit u) {
  IoctlResult r =
      FillAll(u.len, [&](uint64_t d) { return UffdContinue(uffd, u.start + d, u.len - d, 0); });
  return {r, "UFFDIO_CONTINUE", u};
}

Resolution ResolveZero(int uffd, FaultUnit u) {
  IoctlResult r =
      FillAll(u.len, [&](uint64_t d) { return FillZero(uffd, u.start + d, u.len - d); });
  return {r, "UFFDIO_ZEROPAGE", u};
}

Resolution ResolveCopyBuffer(int uffd, const Policy& policy, FaultUnit u) {
  return {CopyUnit(uffd, u, policy.data + (u.start - policy.start)), "UFFDIO_COPY", u};
}

Resolution ResolveCopyFd(int uffd, Policy& policy, FaultUnit u, bool js_thread) {
  uint8_t* bounce = policy.bounce.data();  // sized to the unit when the policy was added
  const uint64_t offset = policy.fd_offset + (u.start - policy.start);
  size_t got = 0;
  int read_err = 0;
  while (got < u.len) {
    ssize_t n = pread(policy.fd, bounce + got, u.len - got, offset + got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) read_err = errno;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (read_err != 0) return {Unreadable(uffd, u, js_thread, read_err), "pread", u};
  // Only the end of the file means zeros, as in a file mapping.
  std::memset(bounce + got, 0, u.len - got);
  return {CopyUnit(uffd, u, bounce), "UFFDIO_COPY", u};
}
