// The event thread of one userfaultfd.
//
// A thread that touches a registered, unresolved page sleeps in the kernel until someone resolves
// it; if that someone is the JS thread, and the JS thread is the one asleep, the process hangs.
// So faults are read by a native thread: it polls the uffd and a stop eventfd, reads up to 64
// messages at a time, resolves the faults that fall in a native policy's range itself (no JS
// hop), and hands everything else to JS as one batch per read through a thread-safe function.
#pragma once

#include <napi.h>

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
  const uint64_t* table = nullptr;  // kMoveTable
  size_t table_len = 0;
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

struct Batch {
  std::vector<uffd_msg> msgs;  // for JS: faults outside every policy, and all other events
  std::vector<FaultReport> reports;
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
  void Ref(Napi::Env env) { tsfn_.Ref(env); }
  void Unref(Napi::Env env) { tsfn_.Unref(env); }

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
  void Send(Batch* batch);

  int uffd_;
  int stop_fd_;
  long guard_tid_;
  BatchTsfn tsfn_;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
  std::atomic<bool> paused_{false};
  std::mutex policies_mutex_;
  std::vector<std::shared_ptr<Policy>> policies_;  // sorted by start, non-overlapping
  Napi::Env env_;
};

// The blocking read behind UffdHandle.readRaw (for a Worker that owns the fault loop).
Napi::Value ReadRaw(Napi::Env env, int uffd, const Napi::CallbackInfo& info);
