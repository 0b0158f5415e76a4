#include "event_ring.h"

#include <sys/mman.h>

EventRing::EventRing(size_t capacity) : capacity_(capacity) {
  void* area = mmap(nullptr, capacity * sizeof(RingSlot), PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (area != MAP_FAILED) slots_ = static_cast<RingSlot*>(area);
}

EventRing::~EventRing() {
  if (slots_ != nullptr) munmap(slots_, capacity_ * sizeof(RingSlot));
}

size_t EventRing::Room() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (head_ == tail_) head_ = tail_ = 0;  // all taken: start over (the consumer holds no slot)
  return capacity_ - tail_;
}

void EventRing::Publish(size_t count) {
  if (count == 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  tail_ += count;
}

RingSlot* EventRing::Peek(size_t* count) {
  std::lock_guard<std::mutex> lock(mutex_);
  *count = tail_ - head_;
  return slots_ + head_;
}

void EventRing::Take(size_t count) {
  std::lock_guard<std::mutex> lock(mutex_);
  head_ += count;
}

bool EventRing::Empty() {
  std::lock_guard<std::mutex> lock(mutex_);
  return head_ == tail_;
}
