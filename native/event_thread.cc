#include "event_thread.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "args.h"

namespace {

// Faults waiting to be retried after EAGAIN. Each is a thread asleep in a fault, so this is
// more than any process has; if it ever fills, reading pauses until retries succeed.
constexpr size_t kMaxDeferred = 1 << 14;
// How long the thread leaves a readable uffd to the JS thread's loop before reading it itself.
// Short enough that a JS thread asleep in its own fault is rescued quickly (the deadlock guard),
// long enough that the thread wakes at most a few hundred times a second while the JS thread
// keeps up.
constexpr int kMainGraceMs = 2;

}  // namespace

// What one round of the loop decided and found.
struct EventThread::Round {
  bool retrying = false;  // deferred faults are due for another try
  bool reading = false;   // there is room for a batch: the uffd was polled
  bool readable = false;
  bool hangup = false;    // the uffd has no more events to give (its mm is gone, or it was closed)
  bool counted = false;   // a batch was read and counted in flight (read_handshake.h)
  bool finished = false;  // the last round: a read error, or a hang-up
  int count = 0;          // messages read
  uffd_msg msgs[kBatch];
};

size_t EventThread::RingSlack() { return kMaxDeferred + kBatch + 1; }

EventThread::EventThread(int uffd, EventRing& ring, PolicyTable& policies, ReadHandshake& handshake)
    : uffd_(uffd),
      ring_(ring),
      policies_(policies),
      handshake_(handshake),
      pending_(new uffd_msg[kMaxDeferred + kBatch]),
      seen_(new uint64_t[kMaxDeferred + kBatch]) {}

EventThread::~EventThread() { Stop(); }

int EventThread::Init() {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return wake_fd_ < 0 ? errno : 0;
}

void EventThread::Start(uv_async_t* notify) {
  notify_ = notify;
  thread_ = std::thread(&EventThread::Run, this);
}

void EventThread::Stop() {
  if (stopped_.exchange(true)) return;
  if (wake_fd_ < 0) return;
  Wake();
  if (thread_.joinable()) thread_.join();
  close(wake_fd_);
  wake_fd_ = -1;
}

// The wake-up protocol. Every reason to wake the thread (stop, a policy added or removed, room
// made in the ring, a pause lifted, the main-loop reader stopped) is a flag or a count that
// another thread changes first and then signals by writing to wake_fd_. The thread, whenever a
// poll that watched wake_fd_ returns, first drains wake_fd_ (ConsumeWakeups) and only then reads
// the flags. So a signal is never lost: if its write came before the drain, its flag change came
// earlier still and is seen by the reads after the drain; if it came after, the eventfd stays
// readable and the next poll returns at once. Reading the flags before the drain loses exactly
// the signals that land between the two: that is how a close() once hung forever, joining a
// thread asleep in poll(-1).
void EventThread::Wake() {
  uint64_t one = 1;
  ssize_t ignored = write(wake_fd_, &one, sizeof one);
  (void)ignored;
}

void EventThread::ConsumeWakeups() {
  uint64_t value;
  ssize_t ignored = read(wake_fd_, &value, sizeof value);  // non-blocking: nothing to take is fine
  (void)ignored;
}

void EventThread::RoomMade() {
  if (space_wanted_.exchange(false)) Wake();
}

void EventThread::Run() {
  pthread_setname_np(pthread_self(), "uffd-events");
  // Nothing in this loop allocates or frees, nor takes a lock that a thread waiting for malloc
  // could hold (event_ring.h): a fork() anywhere in the process waits for it.
  for (;;) {
    Round round;
    if (!Wait(&round)) break;
    RingSlot* out = ring_.WriteAt();
    size_t used = 0;
    Read(&round, out, &used);
    ResolvePending(&round, out, &used);
    ring_.Publish(used);
    const bool stalled = round.counted && handshake_.Published();
    // Wake the JS thread for what it has to take, or to restart a main-loop reader that stalled
    // behind this read; not for faults the policies resolved.
    if (used > 0 || stalled) uv_async_send(notify_);
    if (round.finished) break;
  }
}

bool EventThread::Wait(Round* round) {
  for (;;) {
    // Each round writes at most one slot per fault retried and per message read, plus one for
    // an error. Short of that, ask JS to wake us when it has taken what is waiting; the room is
    // looked at again after asking, so a take in between is not missed.
    auto enough = [&](size_t room) { return room >= deferred_ + kBatch + 1; };
    size_t room = ring_.Room();
    if (!enough(room)) {
      space_wanted_ = true;
      room = ring_.Room();
    }
    round->retrying = deferred_ > 0 && room >= deferred_ + 1;
    round->reading = enough(room) && deferred_ + kBatch <= kMaxDeferred;
    struct pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {uffd_, POLLIN, 0}};
    // With faults waiting for an address-space change to settle, come back soon to retry them.
    int n = poll(fds, round->reading ? 2 : 1, round->retrying ? 1 : -1);
    const int poll_errno = errno;
    // Drain before any flag is read (see Wake): a stop that lands after this drain leaves the
    // eventfd readable, one that landed before it has already set stopped_.
    if (n > 0 && fds[0].revents) ConsumeWakeups();
    if (stopped_) return false;
    if (n < 0 && poll_errno == EINTR) continue;
    if (n < 0) {
      ring_.WriteAt()[0] = RingSlot::Report({0, 0, 0, poll_errno, "poll", 0, false});
      ring_.Publish(1);
      uv_async_send(notify_);
      return false;
    }
    const short uffd_events = round->reading ? fds[1].revents : 0;
    round->readable = uffd_events & POLLIN;
    round->hangup = !round->readable && (uffd_events & (POLLERR | POLLHUP | POLLNVAL));
    if (!round->readable || !handshake_.MainMode()) return true;
    // The JS thread's loop reads first. Step in only if it has read nothing for the grace
    // period: it is busy, or asleep in a fault of its own (the deadlock guard's case).
    const uint64_t reads = handshake_.MainReads();
    struct pollfd stop = {wake_fd_, POLLIN, 0};
    if (poll(&stop, 1, kMainGraceMs) > 0) ConsumeWakeups();  // drained first, as above
    if (stopped_) return false;
    if (!handshake_.MainMode() || handshake_.MainReads() == reads) return true;
  }
}

void EventThread::Read(Round* round, RingSlot* out, size_t* used) {
  if (round->hangup) round->finished = true;
  if (!round->readable) return;
  ssize_t got = handshake_.ThreadRead(uffd_, round->msgs, sizeof round->msgs);
  round->counted = got > 0;
  if (got < 0 && errno != EAGAIN && errno != EINTR) {
    out[(*used)++] = RingSlot::Report({0, 0, 0, errno, "read", 0, false});
    round->finished = true;
  }
  round->count = got > 0 ? static_cast<int>(got / sizeof(uffd_msg)) : 0;
}

void EventThread::ResolvePending(Round* round, RingSlot* out, size_t* used) {
  // Faults deferred by EAGAIN go first (they are already at the front of pending_): the events
  // just read are what they were waiting for. Those that meet EAGAIN again move to the front,
  // in place (the write index never passes the read index).
  size_t pending = 0;
  if (round->retrying || round->count > 0) {
    pending = deferred_;
    deferred_ = 0;
  }
  for (int i = 0; i < round->count; i++) {
    if (round->msgs[i].event == UFFD_EVENT_PAGEFAULT) {
      pending_[pending++] = round->msgs[i];
    } else {
      out[(*used)++] = RingSlot::Message(round->msgs[i]);
    }
  }
  // The same page may be reported by several threads; one resolution wakes them all (and a
  // deferred one will, when it is retried).
  size_t seen = 0;
  for (size_t i = 0; i < pending; i++) {
    const uffd_msg m = pending_[i];
    const uint64_t page = m.arg.pagefault.address & ~(PageSize() - 1);
    if (std::find(seen_.get(), seen_.get() + seen, page) != seen_.get() + seen) continue;
    seen_[seen++] = page;
    if (!policies_.Resolve(m, out, used)) pending_[deferred_++] = m;
  }
}
