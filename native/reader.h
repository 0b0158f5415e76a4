// The event thread of one userfaultfd.
//
// A thread that touches a registered, unresolved page sleeps in the kernel until someone resolves
// it; if that someone is the JS thread, and the JS thread is the one asleep, the process hangs.
// So faults are read by a native thread: it polls the uffd and a wake-up eventfd, reads up to 64
// messages at a time, resolves the faults that fall in a native policy's range itself (no JS
// hop), and hands everything else to JS through an EventRing and a uv_async_t: the JS thread
// takes all that is waiting in one batch. The event thread never allocates (event_ring.h says
// why: a fork() elsewhere in the process would otherwise hang it).
//
// While no policy is installed (only JS consumes the faults), the JS thread's own event loop
// reads the uffd first (a uv_poll_t): that saves one thread wake-up per fault, which on a small
// machine costs about as much as the whole C round trip. The event thread then stays as the
// backstop: if the JS thread has not read for kMainGraceMs (busy in JS, or asleep in a fault of
// its own: the deadlock guard) the event thread reads, exactly as without the main-loop path.
#pragma once

#include <napi.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "event_ring.h"
#include "mapping.h"
#include "resolve.h"
#include "uapi.h"

// How a policy resolves the MISSING faults in its range. WP faults in any policy range are
// resolved by un-protecting, MINOR faults by UFFDIO_CONTINUE, whatever the kind.
enum class PolicyKind : int {
  kZero = 0,        // UFFDIO_ZEROPAGE (hugetlbfs: COPY from zeros)
  kCopyBuffer = 1,  // UFFDIO_COPY from a buffer, at the fault's offset in the range
  kCopyFd = 2,      // pread from a file at offset + the fault's offset, then UFFDIO_COPY
  kContinue = 3,    // UFFDIO_CONTINUE (minor faults)
  kUnprotect = 4,   // UFFDIO_WRITEPROTECT off (WP faults)
  kMoveTable = 5,   // UFFDIO_MOVE from table[unit index]; 0 = zero page
};

struct PolicyStats {
  std::atomic<uint64_t> faults{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> eexist{0};
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> errors{0};
};

struct Policy {
  uint32_t id = 0;
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t unit = 0;  // resolution granularity, a power of two
  PolicyKind kind = PolicyKind::kZero;
  const uint8_t* data = nullptr;  // kCopyBuffer: kept alive by the handle's reference
  size_t data_len = 0;
  // kCopyBuffer over a Mapping's memory: an explicit unmap() of that Mapping leaves the munmap to
  // this use's end (the policy's removal), so the event thread never copies from freed memory or
  // from a new mapping at the same address.
  std::unique_ptr<RegionUse> source_use;
  int fd = -1;  // kCopyFd: the policy's own duplicate of the caller's descriptor
  uint64_t fd_offset = 0;
  std::vector<uint8_t> bounce;  // kCopyFd: one unit, read into before the copy (event thread)
  // kMoveTable: a copy taken when the policy is added. The event thread reads it, and JS could
  // detach, transfer or shrink the BigUint64Array's buffer under a pointer into it.
  std::vector<uint64_t> table;
  // kMoveTable, optional: one byte per unit, set to 1 before the unit's move is tried, so that a
  // concurrent mover that finds the destination mapped can tell "moved on demand" from a conflict.
  // It lies in a SharedArrayBuffer (kept alive by the handle's reference), which cannot be
  // detached.
  uint8_t* claims = nullptr;
  size_t claims_len = 0;
  // kMoveTable: EBUSY results in a row, each retried like EAGAIN (event thread only; see Resolve).
  uint32_t busy_streak = 0;
  PolicyStats stats;

  Policy() = default;
  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;
  // Freed after the event thread can no longer reach it (Reader::SwapPolicies).
  ~Policy() {
    if (fd >= 0) close(fd);
  }
};

class Reader {
 public:
  // Starts the thread. `callback(msgs: ArrayBuffer, reports: object[] | undefined)` runs on the
  // JS thread once per batch. `guard_tid`: the JS thread's tid when the deadlock guard is on
  // (THREAD_ID negotiated), else 0. Throws if the ring or the async handle cannot be made.
  Reader(Napi::Env env, int uffd, Napi::Function callback, long guard_tid);
  ~Reader();

  // JS thread. Sets the stop flag, wakes the thread, joins it, closes the async handle and drops
  // what JS never took (closing FORK descriptors), handing the reports among it to `undelivered`
  // if given. Idempotent.
  void Stop(std::vector<FaultReport>* undelivered = nullptr);
  // JS thread. Backpressure without loss: while paused nothing is handed to JS; the events wait
  // in the ring, in order. The thread keeps reading meanwhile, so native policies and the
  // deadlock guard go on working without JS, until the ring is full.
  void SetPaused(bool paused);
  void Ref();
  void Unref();  // also lets the Userfaultfd be collected, while no policy is installed

  // Policies are added and removed on the JS thread while the event thread may be resolving;
  // the mutex is held across each resolution, so once Remove returns no resolution uses it.
  // False if the policy's range overlaps another's.
  bool AddPolicy(std::shared_ptr<Policy> policy);
  bool RemovePolicy(uint32_t id);
  std::shared_ptr<Policy> FindPolicy(uint32_t id);  // JS thread; never waits for a resolution

 private:
  void Run();
  // Resolves one fault: true if done (or failed and reported), false to retry later (EAGAIN).
  // Writes at most one slot (a message for JS, or a report) at out[*used].
  bool Resolve(const uffd_msg& msg, RingSlot* out, size_t* used);
  // A unit whose source could not be read: poisoned, never zero-filled (see the definition).
  IoctlResult Unreadable(uint64_t start, uint64_t unit, uint32_t tid, int err);
  // Swaps in a new policy list. The old list is freed by the caller, after the lock is dropped.
  void SwapPolicies(std::vector<std::shared_ptr<Policy>>* next);
  // JS thread: takes everything in the ring and hands it to JS (unless paused).
  void Drain();
  static void OnAsync(uv_async_t* handle);
  // JS thread: start or stop the main-loop reader to match the state (no policies, not paused,
  // not stopped).
  void UpdateMainLoop();
  // JS thread: restart a stalled main-loop reader once nothing read earlier is still on its way.
  void ResumeMainLoop();
  // JS thread: the uffd is readable. Reads and delivers one batch, unless messages the event
  // thread read earlier are still undelivered (they go first, to keep the kernel's order).
  void OnMainReadable();
  static void OnMainPoll(uv_poll_t* handle, int status, int events);
  // Any thread: wake the event thread after changing what it should look at (the protocol is
  // written down at the definition).
  void WakeThread();
  // JS thread: the callback reference is weak exactly while unref'd with no policy.
  void UpdateCallbackStrength();
  // Event thread: take the pending wake-ups. Always before reading the flags they announce.
  void ConsumeWakeups();

  int uffd_;
  int wake_fd_ = -1;  // eventfd: every reason to wake the event thread, stop included
  long guard_tid_;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
  bool paused_ = false;         // JS thread only
  size_t reports_scanned_ = 0;  // JS thread: ring slots past the head already scanned for reports
  Napi::Env env_;
  Napi::FunctionReference callback_;
  bool callback_strong_ = true;  // its reference count is 1 (else 0: weak)
  bool refed_ = true;

  // Event thread to JS thread. Room for kMaxHeld messages held for a paused JS, plus a round's
  // worth; when it is full the thread stops reading until JS takes some.
  EventRing ring_;
  uv_async_t* async_ = nullptr;  // wakes the JS thread to Drain; freed by its close callback
  std::atomic<bool> space_wanted_{false};  // the thread waits for JS to make room in the ring

  // The faults of one round: first those whose resolution met EAGAIN last time (an unread event
  // was changing the address space), then the new ones; and the pages already resolved this
  // round. Allocated up front, like the ring.
  std::unique_ptr<uffd_msg[]> pending_;
  std::unique_ptr<uint64_t[]> seen_;

  std::mutex policies_mutex_;
  std::vector<std::shared_ptr<Policy>> policies_;  // sorted by start, non-overlapping

  // The main-loop reader (JS thread only, but for the atomics).
  uv_poll_t* main_poll_ = nullptr;  // the open poll handle, or null
  // The poll is stopped until earlier reads are delivered. Set before the JS thread looks at
  // reads_in_flight_, read by the event thread after it lowers it: one of them sees the other.
  std::atomic<bool> main_stalled_{false};
  std::atomic<bool> main_mode_{false};
  std::atomic<uint64_t> main_reads_{0};
  // Held across "check nothing is pending, read" (JS thread) and "read, count it in flight"
  // (event thread): whenever the JS thread reads, everything read before has been delivered.
  std::mutex read_mutex_;
  std::atomic<int> reads_in_flight_{0};  // event-thread reads not yet published to the ring
};

// The JS objects of fault reports, as the batch callback and close() hand them to JS.
Napi::Array ReportsToJs(Napi::Env env, const std::vector<FaultReport>& reports);

// The blocking read behind UffdHandle.readRaw (for a Worker that owns the fault loop).
Napi::Value ReadRaw(Napi::Env env, int uffd, const Napi::CallbackInfo& info);
