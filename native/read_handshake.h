// The handshake of the two readers of one uffd: the JS thread's own event loop (main_loop_reader.h)
// and the event thread (event_thread.h). JS must see events in the kernel's order, so the JS
// thread may read only when everything the event thread read before has been delivered; and
// while the JS thread keeps reading, the event thread stays out of its way.
//
// All the state that keeps the two in order is here, and every rule is one method:
// - A read of either thread happens under `mutex_`, together with its check or its count: the
//   event thread counts its read in flight before the lock is released; the JS thread reads only
//   after it has seen none in flight and an empty ring. So when the JS thread reads, everything
//   read before has reached the ring and been taken from it.
// - A JS thread that finds reads in flight marks itself stalled (before it looks) and stops its
//   poll; the event thread, after it publishes, looks at the mark (after it lowers the count) and
//   wakes the JS thread: one of the two always sees the other, so a stall never outlives the
//   reads it waited for.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>

#include "event_ring.h"
#include "uapi.h"

class ReadHandshake {
 public:
  explicit ReadHandshake(EventRing& ring) : ring_(ring) {}

  // JS thread: the main-loop reader starts or stops. While it runs, the event thread leaves a
  // readable uffd to it for a grace period.
  void SetMainMode(bool on) {
    stalled_ = false;
    main_mode_ = on;
  }
  bool MainMode() const { return main_mode_; }

  // JS thread: reads a batch if nothing read earlier is still on its way to JS. Returns the
  // read(2) result, or -1 with *stalled set when it must wait (stop polling until Resume).
  ssize_t MainRead(int uffd, uffd_msg* msgs, size_t size, bool* stalled) {
    std::lock_guard<std::mutex> lock(mutex_);
    stalled_ = true;
    *stalled = reads_in_flight_.load() > 0 || !ring_.Empty();
    if (*stalled) return -1;
    stalled_ = false;
    ssize_t got = read(uffd, msgs, size);
    if (got > 0) main_reads_++;
    return got;
  }

  // JS thread, after a batch was taken from the ring: whether a stalled main-loop reader may poll
  // again (it then counts as not stalled).
  bool Resume() {
    if (!stalled_) return false;
    if (reads_in_flight_.load() > 0 || !ring_.Empty()) return false;  // the next take looks again
    stalled_ = false;
    return true;
  }

  // Event thread: how many batches the JS thread has read so far (to tell whether it is keeping
  // up).
  uint64_t MainReads() const { return main_reads_; }

  // Event thread: reads a batch, counted in flight until Published.
  ssize_t ThreadRead(int uffd, uffd_msg* msgs, size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    ssize_t got = read(uffd, msgs, size);
    if (got > 0) reads_in_flight_++;
    return got;
  }

  // Event thread: a ThreadRead batch is in the ring. True if the JS thread stalled behind it and
  // must be woken to poll again.
  bool Published() {
    reads_in_flight_--;
    return stalled_;
  }

 private:
  EventRing& ring_;
  std::mutex mutex_;
  std::atomic<int> reads_in_flight_{0};  // event-thread reads not yet published to the ring
  std::atomic<bool> stalled_{false};
  std::atomic<bool> main_mode_{false};
  std::atomic<uint64_t> main_reads_{0};
};
