// The hand-off from the event thread to the JS thread, made so that the event thread never
// allocates.
//
// Why it must not: glibc's fork() takes every malloc arena lock before the fork syscall and drops
// them after it, and with EVENT_FORK the kernel keeps the forking thread inside that syscall
// until the FORK event has been read. If the event thread then waits for an arena lock (any
// malloc or free, or a mutex held by a thread that is itself waiting for one), nobody reads the
// event: the forking thread, the event thread and soon every thread that allocates sleep forever.
// So between two reads the event thread makes only system calls and writes into this ring, whose
// memory is mapped once, up front; and the JS thread never allocates while it holds the ring's
// lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>

#include "uapi.h"

// A fault or event the event thread could not resolve, or resolved by the deadlock guard.
// (No member initializers: it shares a union with uffd_msg.)
struct FaultReport {
  uint64_t address;
  uint64_t flags;
  uint32_t tid;
  int err;            // positive errno, or 0 for a guard report
  const char* ioctl;  // the ioctl (UFFDIO_*) or syscall (pread) that failed: a string literal
  uint32_t policy;    // policy id, 0 for none
  bool guard;         // the JS thread itself faulted: resolved with the fallback
};

// One entry for JS: a message read from the uffd, or a report. A report the JS thread delivered
// ahead of the messages before it (while paused) stays in place, marked kDelivered.
enum class SlotKind : uint8_t { kMessage, kReport, kDelivered };
struct RingSlot {
  SlotKind kind;
  union {
    uffd_msg msg;
    FaultReport report;
  };
  static RingSlot Message(const uffd_msg& m) {
    RingSlot s;
    s.kind = SlotKind::kMessage;
    s.msg = m;
    return s;
  }
  static RingSlot Report(const FaultReport& r) {
    RingSlot s;
    s.kind = SlotKind::kReport;
    s.report = r;
    return s;
  }
};

// One producer (the event thread), one consumer (the JS thread). The producer fills slots past
// the published end and publishes them in one step; the consumer takes a prefix of what is
// published. The slots are a flat array that starts over at slot 0 whenever the consumer has
// taken everything, so only as much memory is ever touched as was waiting at once.
class EventRing {
 public:
  // Maps `capacity` slots (reserved lazily by the kernel). ok() is false if the mapping failed.
  explicit EventRing(size_t capacity);
  ~EventRing();
  EventRing(const EventRing&) = delete;
  EventRing& operator=(const EventRing&) = delete;
  bool ok() const { return slots_ != nullptr; }

  // Producer: how many slots it may fill from WriteAt() on before publishing.
  size_t Room();
  RingSlot* WriteAt() { return slots_ + tail_; }
  void Publish(size_t count);

  // Consumer: the published slots it has not taken. They stay in place until Take, and the
  // consumer may change their kind meanwhile.
  RingSlot* Peek(size_t* count);
  void Take(size_t count);
  bool Empty();

 private:
  RingSlot* slots_ = nullptr;
  size_t capacity_ = 0;
  std::mutex mutex_;  // guards head_ and tail_; held only to read or move them
  size_t head_ = 0;   // first slot the consumer has not taken
  size_t tail_ = 0;   // end of the published slots (written by the producer only)
};
