// The event thread of one userfaultfd: everything that runs on it is in event_thread.cc, plus the
// resolvers it calls through the policy table (policy_table.cc, resolve_*.cc, deadlock_guard.cc).
//
// A thread that touches a registered, unresolved page sleeps in the kernel until someone resolves
// it; if that someone is the JS thread, and the JS thread is the one asleep, the process hangs.
// So faults are read by a native thread: it polls the uffd and a wake-up eventfd, reads up to 64
// messages at a time, lets the policy table resolve what it can (no JS hop), and publishes
// everything else to an EventRing, waking the JS thread (a uv_async_t) to take it. It knows
// polling, reading and the ring; nothing of policies. It never allocates (event_ring.h says why:
// a fork() elsewhere in the process would otherwise hang it).
#pragma once

#include <uv.h>

#include <atomic>
#include <cstddef>
#include <memory>
#include <thread>

#include "event_ring.h"
#include "policy_table.h"
#include "read_handshake.h"
#include "uapi.h"

class EventThread {
 public:
  // Messages per read(2), for both readers of the uffd (the main-loop reader reads as much).
  static constexpr int kBatch = 64;
  // Room the ring needs besides what a paused JS holds: the deferred faults and one round.
  static size_t RingSlack();

  EventThread(int uffd, EventRing& ring, PolicyTable& policies, ReadHandshake& handshake);
  ~EventThread();
  // 0, or the errno of the wake-up eventfd that could not be made.
  int Init();
  // Starts the thread; it wakes `notify` whenever JS has something to take.
  void Start(uv_async_t* notify);
  // Any thread but this one: sets the stop flag, wakes the thread and joins it. Idempotent.
  void Stop();
  // Any thread: wake the thread after changing what it should look at (a policy added or
  // removed, the main-loop reader stopped). The protocol is written down at the definition.
  void Wake();
  // JS thread, after taking slots from the ring: wakes the thread if it waits for room.
  void RoomMade();

 private:
  struct Round;
  void Run();
  // Poll for work. False when the thread must end (stopped).
  bool Wait(Round* round);
  // Read a batch (if the uffd is readable), putting faults in pending_ and other events straight
  // in the ring.
  void Read(Round* round, RingSlot* out, size_t* used);
  // Resolve the faults of the round; those that meet EAGAIN stay at the front of pending_.
  void ResolvePending(Round* round, RingSlot* out, size_t* used);
  // Event thread: take the pending wake-ups. Always before reading the flags they announce.
  void ConsumeWakeups();

  const int uffd_;
  EventRing& ring_;
  PolicyTable& policies_;
  ReadHandshake& handshake_;
  int wake_fd_ = -1;  // eventfd: every reason to wake the thread, stop included
  uv_async_t* notify_ = nullptr;
  std::atomic<bool> stopped_{false};
  std::atomic<bool> space_wanted_{false};  // the thread waits for JS to make room in the ring
  std::thread thread_;
  // The faults of one round: first those whose resolution met EAGAIN last time (an unread event
  // was changing the address space), then the new ones; and the pages already resolved this
  // round. Allocated up front, like the ring.
  std::unique_ptr<uffd_msg[]> pending_;
  std::unique_ptr<uint64_t[]> seen_;
  size_t deferred_ = 0;  // faults at the front of pending_ to retry after EAGAIN
};
