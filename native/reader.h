// The event thread of one userfaultfd.
//
// A thread that touches a registered, unresolved page sleeps in the kernel until someone resolves
// it; if that someone is the JS thread, and the JS thread is the one asleep, the process hangs.
// So faults are read by a native thread: it polls the uffd and a stop eventfd, reads up to 64
// messages at a time, resolves the faults that fall in a native policy's range itself (no JS
// hop), and hands everything else to JS as one batch per read through a thread-safe function.
//
// While no policy is installed (only JS consumes the faults), the JS thread's own event loop
// reads the uffd first (a uv_poll_t): that saves one thread wake-up per fault, which on a small
// machine costs about as much as the whole C round trip. The event thread then stays as the
// backstop: if the JS thread has not read for kMainGraceMs (busy in JS, or asleep in a fault of
// its own: the deadlock guard) the event thread reads, exactly as without the main-loop path.
#pragma once

#include <napi.h>
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

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
  int fd = -1;  // kCopyFd: borrowed; the caller keeps it open while the policy exists
  uint64_t fd_offset = 0;
  // kMoveTable: a copy taken when the policy is added. The event thread reads it, and JS could
  // detach, transfer or shrink the BigUint64Array's buffer under a pointer into it.
  std::vector<uint64_t> table;
  // kMoveTable, optional: one byte per unit, set to 1 before the unit's move is tried, so that a
  // concurrent mover that finds the destination mapped can tell "moved on demand" from a conflict.
  // It lies in a SharedArrayBuffer (kept alive by the handle's reference), which cannot be
  // detached.
  uint8_t* claims = nullptr;
  size_t claims_len = 0;
  PolicyStats stats;
};

// A fault or event the event thread could not resolve, or resolved by the deadlock guard.
struct FaultReport {
  uint64_t address = 0;
  uint64_t flags = 0;
  uint32_t tid = 0;
  int err = 0;             // positive errno, or 0 for a guard report
  const char* ioctl = "";  // the ioctl that failed
  uint32_t policy = 0;     // policy id, 0 for none
  bool guard = false;      // the JS thread itself faulted: resolved with the fallback
};

// What the JS thread's main-loop reader shares with the batches on their way to JS, which can
// outlive the Reader.
struct MainLoopState {
  std::atomic<int> in_flight{0};  // batches the event thread read and has not delivered yet
  uv_poll_t* poll = nullptr;      // JS thread only: the open poll handle, or null
  bool stalled = false;           // JS thread only: the poll is stopped until in_flight drains
};

struct Batch {
  std::vector<uffd_msg> msgs;  // for JS: faults outside every policy, and all other events
  std::vector<FaultReport> reports;
  // Set if the batch counts in the main-loop state's in_flight (delivery counts it down).
  std::shared_ptr<MainLoopState> main;
};

class Reader;
void DeliverBatch(Napi::Env env, Napi::Function callback, Reader* reader, Batch* batch);
using BatchTsfn = Napi::TypedThreadSafeFunction<Reader, Batch, DeliverBatch>;

class Reader {
 public:
  // Starts the thread. `callback(msgs: ArrayBuffer, reports: object[] | undefined)` runs on the
  // JS thread once per batch. `guard_tid`: the JS thread's tid when the deadlock guard is on
  // (THREAD_ID negotiated), else 0.
  Reader(Napi::Env env, int uffd, Napi::Function callback, long guard_tid);
  ~Reader();

  // Sets the stop flag, wakes the thread, joins it, releases the TSFN. Idempotent.
  void Stop();
  // Backpressure without loss: while paused the thread hands nothing to JS; the events wait,
  // in order, and their faulting threads with them. It keeps reading meanwhile, so native
  // policies and the deadlock guard go on working without JS.
  void SetPaused(bool paused);
  void Ref(Napi::Env env);
  void Unref(Napi::Env env);

  // Policies are added and removed on the JS thread while the event thread may be resolving;
  // the mutex is held across each resolution, so once Remove returns no resolution uses it.
  // False if the policy's range overlaps another's.
  bool AddPolicy(std::shared_ptr<Policy> policy);
  bool RemovePolicy(uint32_t id);
  std::shared_ptr<Policy> FindPolicy(uint32_t id);

 private:
  void Run();
  // Resolves one fault: true if done (or failed and reported), false to retry later (EAGAIN).
  bool Resolve(const uffd_msg& msg, Batch* batch, bool* retried);
  // `counted`: the batch comes from a read counted in main_->in_flight.
  void Send(Batch* batch, bool counted);
  // JS thread: start or stop the main-loop reader to match the state (no policies, not paused,
  // not stopped).
  void UpdateMainLoop();
  // JS thread: the uffd is readable. Reads and delivers one batch, unless batches the event
  // thread read earlier are still undelivered (they go first, to keep the kernel's order).
  void OnMainReadable();

 public:
  // The uv_poll_t callback (data: the Reader), also restarted by DeliverBatch.
  static void OnMainPoll(uv_poll_t* handle, int status, int events);

 private:
  int uffd_;
  int stop_fd_;
  long guard_tid_;
  BatchTsfn tsfn_;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
  std::atomic<bool> paused_{false};
  std::atomic<size_t> held_count_{0};  // events held for JS while paused (the JS loop waits)
  std::mutex policies_mutex_;
  std::vector<std::shared_ptr<Policy>> policies_;  // sorted by start, non-overlapping
  Napi::Env env_;

  // The main-loop reader (JS thread only, but for the atomics).
  Napi::FunctionReference callback_;
  bool refed_ = true;
  std::atomic<bool> main_mode_{false};
  std::atomic<uint64_t> main_reads_{0};
  // Held across "check in_flight, read" (JS thread) and "read, count it in flight" (event
  // thread): whenever the JS thread reads, everything read before has been delivered.
  std::mutex read_mutex_;
  std::shared_ptr<MainLoopState> main_ = std::make_shared<MainLoopState>();
};

// The blocking read behind UffdHandle.readRaw (for a Worker that owns the fault loop).
Napi::Value ReadRaw(Napi::Env env, int uffd, const Napi::CallbackInfo& info);
