#include "policy_table.h"

#include <algorithm>
#include <cerrno>

// Only the JS thread changes the list, so it reads it without the lock. The new list is built,
// and the old one freed, outside the lock: the event thread takes that lock for every
// resolution, and must never wait on a thread that waits for malloc (event_ring.h).
void PolicyTable::Swap(std::vector<std::shared_ptr<Policy>>* next) {
  std::lock_guard<std::mutex> lock(mutex_);
  policies_.swap(*next);
}

bool PolicyTable::Add(std::shared_ptr<Policy> policy) {
  auto at = std::lower_bound(
      policies_.begin(), policies_.end(), policy->start,
      [](const std::shared_ptr<Policy>& p, uint64_t start) { return p->start < start; });
  if (at != policies_.end() && (*at)->start < policy->end) return false;
  if (at != policies_.begin() && (*(at - 1))->end > policy->start) return false;
  std::vector<std::shared_ptr<Policy>> next;
  next.reserve(policies_.size() + 1);
  next.insert(next.end(), policies_.begin(), at);
  next.push_back(std::move(policy));
  next.insert(next.end(), at, policies_.end());
  Swap(&next);
  return true;
}

bool PolicyTable::Remove(uint32_t id) {
  std::vector<std::shared_ptr<Policy>> next;
  for (const auto& p : policies_) {
    if (p->id != id) next.push_back(p);
  }
  if (next.size() == policies_.size()) return false;
  Swap(&next);  // `next` now holds the old list: the policy is freed with it, unlocked
  return true;
}

std::shared_ptr<Policy> PolicyTable::Find(uint32_t id) const {
  for (auto& p : policies_) {
    if (p->id == id) return p;
  }
  return nullptr;
}

Policy* PolicyTable::Covering(uint64_t address) const {
  auto it =
      std::upper_bound(policies_.begin(), policies_.end(), address,
                       [](uint64_t a, const std::shared_ptr<Policy>& p) { return a < p->start; });
  if (it != policies_.begin() && address < (*(it - 1))->end) return (it - 1)->get();
  return nullptr;
}

Resolution PolicyTable::Dispatch(Policy& policy, const uffd_msg& msg, FaultUnit unit,
                                 bool js_thread) {
  const uint64_t flags = msg.arg.pagefault.flags;
  if (flags & UFFD_PAGEFAULT_FLAG_WP) return ResolveWriteProtect(uffd_, unit);
  if (flags & UFFD_PAGEFAULT_FLAG_MINOR) return ResolveMinor(uffd_, unit);
  switch (policy.kind) {
    case PolicyKind::kCopyBuffer:
      return ResolveCopyBuffer(uffd_, policy, unit);
    case PolicyKind::kCopyFd:
      return ResolveCopyFd(uffd_, policy, unit, js_thread);
    case PolicyKind::kMoveTable:
      return ResolveMoveTable(uffd_, policy, unit);
    case PolicyKind::kZero:
    case PolicyKind::kContinue:   // a MISSING fault: never populated, so zeros
    case PolicyKind::kUnprotect:  // likewise
      break;
  }
  return ResolveZero(uffd_, unit);
}

bool PolicyTable::Resolve(const uffd_msg& msg, RingSlot* out, size_t* used) {
  const uint64_t address = msg.arg.pagefault.address;
  const bool js_thread = guard_tid_ != 0 && msg.arg.pagefault.feat.ptid == guard_tid_;
  std::lock_guard<std::mutex> lock(mutex_);
  Policy* policy = Covering(address);
  if (policy == nullptr) {
    if (!js_thread) {
      out[(*used)++] = RingSlot::Message(msg);
      return true;
    }
    return Settle(nullptr, msg, ResolveForJsThread(uffd_, msg), out, used);
  }
  FaultUnit unit;
  unit.start = std::max(address & ~(policy->unit - 1), policy->start);
  unit.len = std::min(policy->unit, policy->end - unit.start);
  // Counted before the resolution wakes the faulting thread, so that whoever that thread tells
  // (the JS thread, reading stats() after a touch) sees it; Settle corrects it once the result
  // is known. stats() reads the counters without the lock held across resolutions, so it never
  // waits for one.
  policy->stats.faults++;
  policy->stats.bytes += unit.len;
  return Settle(policy, msg, Dispatch(*policy, msg, unit, js_thread), out, used);
}

bool PolicyTable::Settle(Policy* policy, const uffd_msg& msg, Resolution res, RingSlot* out,
                         size_t* used) {
  IoctlResult& r = res.result;
  if (r.err == EEXIST) {
    // Already resolved (another thread faulted on the same page, or a racing resolution):
    // waking is all that is left to do.
    if (policy) policy->stats.eexist++;
    UffdWake(uffd_, res.unit.start, res.unit.len);
    r.err = 0;
  }
  if (r.err == EAGAIN) {
    // An unread FORK/REMAP/REMOVE/UNMAP event is changing the address space: retry after the
    // next read has taken it.
    if (policy) {
      policy->stats.retries++;
      policy->stats.faults--;
      policy->stats.bytes -= res.unit.len;
    }
    return false;
  }
  // Only a short fill corrects the count: a whole one (the common case) costs no second atomic.
  if (policy && static_cast<uint64_t>(r.bytes) != res.unit.len) {
    policy->stats.bytes -= res.unit.len - static_cast<uint64_t>(r.bytes);
  }
  if (policy && r.err) policy->stats.errors++;
  // Every deadlock-guard resolution is reported, failed or not: JS must hear why it was bypassed.
  if (r.err != 0 || policy == nullptr) {
    const auto& pf = msg.arg.pagefault;
    out[(*used)++] = RingSlot::Report({pf.address, pf.flags, pf.feat.ptid, r.err, res.ioctl,
                                       policy ? policy->id : 0u, policy == nullptr});
  }
  return true;
}
