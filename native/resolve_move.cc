// The MOVE resolver: a fault in a move-table policy's range moves the unit's pages from where
// the table says (UFFDIO_MOVE), the compactor's on-demand path. Runs on the event thread.
#include <sys/mman.h>

#include <cerrno>

#include "args.h"
#include "fill.h"
#include "resolvers.h"

namespace {

// EBUSY results in a row that a move policy retries (one poll period of 1 ms or more apart)
// before it reports one: enough for a concurrent huge-page split to end, few enough that a
// page shared after fork is reported within a fraction of a second.
constexpr uint32_t kMaxBusyRetries = 100;

// The rest of a unit whose source has a hole: with ALLOW_SRC_HOLES the kernel would count the
// hole as moved and map nothing, so the thread would fault again forever. Zeros instead; but
// ENOENT also means no source mapping at all (unmapped since the table was made): that is data
// lost, not a hole, and it is reported once the thread has its zeros.
IoctlResult FillSourceHole(int uffd, FaultUnit u, uint64_t src, uint64_t done) {
  // msync(MS_ASYNC) does nothing to a mapped page and fails with ENOMEM on an unmapped one.
  const bool gone =
      msync(reinterpret_cast<void*>(src + done), PageSize(), MS_ASYNC) != 0 && errno == ENOMEM;
  IoctlResult z = FillAll(u.len - done, [&](uint64_t d) {
    return FillZero(uffd, u.start + done + d, u.len - done - d);
  });
  IoctlResult r = {static_cast<int64_t>(done) + z.bytes, z.err};
  if (r.err == 0 && gone) r.err = ENOENT;
  return r;
}

IoctlResult MoveUnit(int uffd, Policy& policy, FaultUnit u) {
  const size_t index = (u.start - policy.start) / policy.unit;
  const uint64_t src = index < policy.table.size() ? policy.table[index] : 0;
  if (policy.claims && index < policy.claims_len) {
    // Published before the move, so whoever sees the destination mapped by it also sees this.
    __atomic_store_n(&policy.claims[index], 1, __ATOMIC_SEQ_CST);
  }
  if (src == 0) {
    return FillAll(u.len, [&](uint64_t d) { return FillZero(uffd, u.start + d, u.len - d); });
  }
  IoctlResult r = FillAll(
      u.len, [&](uint64_t d) { return UffdMove(uffd, u.start + d, src + d, u.len - d, 0); });
  if (r.err == ENOENT) r = FillSourceHole(uffd, u, src, static_cast<uint64_t>(r.bytes));
  return r;
}

}  // namespace

Resolution ResolveMoveTable(int uffd, Policy& policy, FaultUnit u) {
  IoctlResult r = MoveUnit(uffd, policy, u);
  // An EBUSY that passes: the source huge page is being split by another mover (the compactor's
  // background pass) at this moment. Retried like EAGAIN, but only so many times in a row: a page
  // shared with a child process (fork) stays EBUSY, and that is reported. Only with nothing
  // moved: a retry starts at the unit's start, which would then be EEXIST.
  if (r.err == EBUSY && r.bytes == 0 && policy.busy_streak < kMaxBusyRetries) {
    policy.busy_streak++;
    r.err = EAGAIN;
  } else {
    policy.busy_streak = 0;
  }
  return {r, "UFFDIO_MOVE", u};
}
