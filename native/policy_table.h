// The policies of one userfaultfd, and the one entry point the event thread calls for every
// fault: find whose fault it is (a policy's, the JS thread's own, or JS's to handle), resolve it
// with that one's resolver (resolvers.h), count it, and say what JS must hear.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "event_ring.h"
#include "policy.h"
#include "resolvers.h"
#include "uapi.h"

class PolicyTable {
 public:
  // `guard_tid`: the JS thread's tid when the deadlock guard is on (THREAD_ID negotiated), else 0.
  PolicyTable(int uffd, long guard_tid) : uffd_(uffd), guard_tid_(guard_tid) {}

  // JS thread. Policies are added and removed while the event thread may be resolving; the mutex
  // is held across each resolution, so once Remove returns no resolution uses the policy.
  // False if the range overlaps another policy's.
  bool Add(std::shared_ptr<Policy> policy);
  bool Remove(uint32_t id);
  // JS thread; never waits for a resolution (a pread on a hung file system, say).
  std::shared_ptr<Policy> Find(uint32_t id) const;
  bool Empty() const { return policies_.empty(); }  // JS thread

  // Event thread. Resolves one fault: true if done (or failed and reported), false to retry it
  // later (EAGAIN: an unread event is changing the address space). Writes at most one slot at
  // out[*used]: the message, for a fault JS must handle, or a report.
  bool Resolve(const uffd_msg& msg, RingSlot* out, size_t* used);

 private:
  Policy* Covering(uint64_t address) const;  // under mutex_
  Resolution Dispatch(Policy& policy, const uffd_msg& msg, FaultUnit unit, bool js_thread);
  // The shared ending of every resolution: EEXIST is success, EAGAIN a retry, an error a report.
  bool Settle(Policy* policy, const uffd_msg& msg, Resolution res, RingSlot* out, size_t* used);
  // Swaps in a new list; the old one is freed by the caller, after the lock is dropped.
  void Swap(std::vector<std::shared_ptr<Policy>>* next);

  const int uffd_;
  const long guard_tid_;
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<Policy>> policies_;  // sorted by start, non-overlapping
};
