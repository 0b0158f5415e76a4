#include "reader.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "args.h"
#include "errors.h"
#include "resolve.h"

namespace {

constexpr int kBatch = 64;            // messages per read(2)
constexpr size_t kMaxHeld = 1 << 16;  // messages held for JS while it is paused
// Faults waiting to be retried after EAGAIN. Each is a thread asleep in a fault, so this is
// more than any process has; if it ever fills, reading pauses until retries succeed.
constexpr size_t kMaxDeferred = 1 << 14;
// How long the event thread leaves a readable uffd to the JS thread's loop before reading it
// itself. Short enough that a JS thread asleep in its own fault is rescued quickly (the deadlock
// guard), long enough that the thread wakes at most a few hundred times a second while the JS
// thread keeps up.
constexpr int kMainGraceMs = 2;
constexpr uint64_t kWpOff = 0;
// EBUSY results in a row that a move policy retries (one poll period of 1 ms or more apart)
// before it reports one: enough for a concurrent huge-page split to end, few enough that a
// page shared after fork is reported within a fraction of a second.
constexpr uint32_t kMaxBusyRetries = 100;

// A read-only mapping of zeros, the source for "zero page" resolutions where UFFDIO_ZEROPAGE is
// not offered (hugetlbfs). Reading it maps the shared zero page; it is never written.
const uint8_t* ZeroSource(size_t len) {
  static std::mutex mutex;
  static void* area = nullptr;
  static size_t area_len = 0;
  std::lock_guard<std::mutex> lock(mutex);
  if (len > area_len) {
    void* fresh = mmap(nullptr, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (fresh == MAP_FAILED) return nullptr;
    area = fresh;  // the smaller one stays mapped: a resolution may be reading it right now
    area_len = len;
  }
  return static_cast<const uint8_t*>(area);
}

size_t DefaultHugePageSize() {
  static const size_t size = [] {
    size_t kb = 2048;
    if (FILE* f = fopen("/proc/meminfo", "r")) {
      char line[128];
      while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "Hugepagesize: %zu kB", &kb) == 1) break;
      }
      fclose(f);
    }
    return kb * 1024;
  }();
  return size;
}

// Fills [start, start+len) with zeros: ZEROPAGE, or COPY from zeros where ZEROPAGE is EINVAL.
IoctlResult FillZero(int fd, uint64_t start, uint64_t len) {
  IoctlResult r = UffdZeropage(fd, start, len, 0);
  if (r.err != EINVAL) return r;
  const uint8_t* zeros = ZeroSource(len);
  if (zeros == nullptr) return {0, ENOMEM};
  return UffdCopy(fd, start, reinterpret_cast<uintptr_t>(zeros), len, 0);
}

// Runs a fill that may make partial progress, continuing from where the kernel stopped.
template <typename Fill>
IoctlResult FillAll(uint64_t len, Fill fill) {
  uint64_t done = 0;
  while (done < len) {
    IoctlResult r = fill(done);
    if (r.err == 0) return {static_cast<int64_t>(len), 0};
    done += static_cast<uint64_t>(r.bytes);
    if (r.err != EAGAIN || r.bytes == 0) return {static_cast<int64_t>(done), r.err};
  }
  return {static_cast<int64_t>(len), 0};
}

}  // namespace

Reader::Reader(Napi::Env env, int uffd, Napi::Function callback, long guard_tid)
    : uffd_(uffd),
      guard_tid_(guard_tid),
      env_(env),
      ring_(kMaxHeld + kMaxDeferred + kBatch + 1),
      pending_(new uffd_msg[kMaxDeferred + kBatch]),
      seen_(new uint64_t[kMaxDeferred + kBatch]) {
  if (!ring_.ok()) ThrowSysError(env, {ENOMEM, "mmap"});
  // Computed here, once: the event thread must not open files (stdio allocates).
  DefaultHugePageSize();
  PageSize();
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) ThrowSysError(env, {errno, "eventfd"});
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    close(wake_fd_);
    ThrowRangeError(env, "no event loop to deliver events to");
  }
  async_ = new uv_async_t;
  int err = uv_async_init(loop, async_, OnAsync);
  if (err != 0) {
    delete async_;
    close(wake_fd_);
    ThrowSysError(env, {-err, "uv_async_init"});
  }
  async_->data = this;
  callback_ = Napi::Persistent(callback);
  UpdateMainLoop();
  thread_ = std::thread(&Reader::Run, this);
}

Reader::~Reader() { Stop(); }

// FORK descriptors are ours to close when their message never reaches JS.
static void CloseForkFds(const RingSlot* slots, size_t count) {
  for (size_t i = 0; i < count; i++) {
    if (slots[i].kind == SlotKind::kMessage && slots[i].msg.event == UFFD_EVENT_FORK) {
      close(static_cast<int>(slots[i].msg.arg.fork.ufd));
    }
  }
}

void Reader::Stop(std::vector<FaultReport>* undelivered) {
  if (stopped_.exchange(true)) return;
  UpdateMainLoop();  // closes the main-loop reader before the descriptor can be closed
  WakeThread();
  if (thread_.joinable()) thread_.join();
  // uv_close stops it at once (no OnAsync after this); the handle is freed by the loop.
  async_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(async_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
  async_ = nullptr;
  callback_.Reset();
  size_t count = 0;
  const RingSlot* left = ring_.Peek(&count);
  CloseForkFds(left, count);
  // Reports JS never took (a deadlock-guard notice, a failed resolution) are errors someone must
  // hear of: the caller gets them.
  for (size_t i = 0; undelivered != nullptr && i < count; i++) {
    if (left[i].kind == SlotKind::kReport) undelivered->push_back(left[i].report);
  }
  ring_.Take(count);
  close(wake_fd_);
  wake_fd_ = -1;
}

// The wake-up protocol of the event thread. Every reason to wake it (stop, a policy added or
// removed, room made in the ring, a pause lifted) is a flag or a count that the JS thread changes
// first and then signals by writing to wake_fd_. The thread, whenever a poll that watched wake_fd_
// returns, first drains wake_fd_ (ConsumeWakeups) and only then reads the flags. So a signal is
// never lost: if its write came before the drain, its flag change came earlier still and is seen
// by the reads after the drain; if it came after, the eventfd stays readable and the next poll
// returns at once. Reading the flags before the drain loses exactly the signals that land between
// the two: that is how a close() once hung forever, joining a thread asleep in poll(-1).
void Reader::WakeThread() {
  uint64_t one = 1;
  ssize_t ignored = write(wake_fd_, &one, sizeof one);
  (void)ignored;
}

void Reader::ConsumeWakeups() {
  uint64_t value;
  ssize_t ignored = read(wake_fd_, &value, sizeof value);  // non-blocking: nothing to take is fine
  (void)ignored;
}

void Reader::SetPaused(bool paused) {
  if (stopped_) return;
  paused_ = paused;
  UpdateMainLoop();
  // Resumed: what waited in the ring goes first, from the loop (not from inside this call).
  if (!paused) uv_async_send(async_);
}

// While unref'd and without policies the callback is a weak reference: nothing then keeps the
// Userfaultfd (which the callback closes over) alive, so one the program dropped is collected,
// and its finalizer stops this thread and closes the descriptor. Faults with nobody left to
// serve them would wait forever; after the close the kernel lets them fault normally. A policy
// keeps the reference strong: it serves faults that would otherwise be filled that way.
void Reader::UpdateCallbackStrength() {
  const bool strong = refed_ || !policies_.empty();
  if (strong == callback_strong_ || callback_.IsEmpty()) return;
  if (strong) {
    callback_.Ref();
  } else {
    callback_.Unref();
  }
  callback_strong_ = strong;
}

void Reader::Ref() {
  refed_ = true;
  UpdateCallbackStrength();
  if (async_) uv_ref(reinterpret_cast<uv_handle_t*>(async_));
  if (main_poll_) uv_ref(reinterpret_cast<uv_handle_t*>(main_poll_));
}

void Reader::Unref() {
  refed_ = false;
  UpdateCallbackStrength();
  if (async_) uv_unref(reinterpret_cast<uv_handle_t*>(async_));
  if (main_poll_) uv_unref(reinterpret_cast<uv_handle_t*>(main_poll_));
}

// Only the JS thread changes the list, so it reads it here without the lock. The new list is
// built, and the old one freed, outside the lock: the event thread takes that lock for every
// resolution, and must never wait on a thread that waits for malloc (event_ring.h).
void Reader::SwapPolicies(std::vector<std::shared_ptr<Policy>>* next) {
  std::lock_guard<std::mutex> lock(policies_mutex_);
  policies_.swap(*next);
}

bool Reader::AddPolicy(std::shared_ptr<Policy> policy) {
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
  SwapPolicies(&next);
  // Policies never wait for JS: from now on only the event thread reads.
  UpdateMainLoop();
  UpdateCallbackStrength();
  return true;
}

bool Reader::RemovePolicy(uint32_t id) {
  std::vector<std::shared_ptr<Policy>> next;
  for (const auto& p : policies_) {
    if (p->id != id) next.push_back(p);
  }
  if (next.size() == policies_.size()) return false;
  SwapPolicies(&next);  // `next` now holds the old list: the policy is freed with it, unlocked
  UpdateMainLoop();
  UpdateCallbackStrength();
  return true;
}

void Reader::UpdateMainLoop() {
  // policies_ is changed on this thread only, so it is read here without the lock.
  const bool want = !stopped_ && !paused_ && policies_.empty();
  if (want == (main_poll_ != nullptr)) return;
  if (want) {
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env_, &loop) != napi_ok || loop == nullptr) return;
    auto* poll_handle = new uv_poll_t;
    if (uv_poll_init(loop, poll_handle, uffd_) != 0) {
      delete poll_handle;
      return;  // the event thread alone reads, as it always can
    }
    poll_handle->data = this;
    uv_poll_start(poll_handle, UV_READABLE, OnMainPoll);
    if (!refed_) uv_unref(reinterpret_cast<uv_handle_t*>(poll_handle));
    main_poll_ = poll_handle;
    main_stalled_ = false;
    main_mode_ = true;
  } else {
    main_mode_ = false;
    // uv_close stops the watch at once; the handle is freed when the loop runs its callback.
    uv_close(reinterpret_cast<uv_handle_t*>(main_poll_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    main_poll_ = nullptr;
    // The event thread may be in its grace period, leaving the uffd to the JS thread: wake it.
    WakeThread();
  }
}

void Reader::ResumeMainLoop() {
  if (!main_stalled_ || main_poll_ == nullptr) return;
  if (reads_in_flight_.load() > 0 || !ring_.Empty()) return;  // the next Drain will look again
  main_stalled_ = false;
  uv_poll_start(main_poll_, UV_READABLE, OnMainPoll);
}

void Reader::OnMainPoll(uv_poll_t* handle, int status, int) {
  if (status == 0) static_cast<Reader*>(handle->data)->OnMainReadable();
}

Napi::Array ReportsToJs(Napi::Env env, const std::vector<FaultReport>& reports) {
  Napi::Array arr = Napi::Array::New(env, reports.size());
  for (size_t i = 0; i < reports.size(); i++) {
    const FaultReport& r = reports[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("address", Napi::BigInt::New(env, r.address));
    o.Set("flags", Napi::Number::New(env, static_cast<double>(r.flags)));
    o.Set("tid", Napi::Number::New(env, r.tid));
    o.Set("errno", Napi::Number::New(env, -r.err));
    o.Set("ioctl", Napi::String::New(env, r.ioctl));
    o.Set("policy", Napi::Number::New(env, r.policy));
    o.Set("guard", Napi::Boolean::New(env, r.guard));
    arr.Set(i, o);
  }
  return arr;
}

// Hands one batch to JS. Called last by its callers: the callback may close the uffd, which
// destroys the Reader.
static void Deliver(Napi::Env env, Napi::Function callback, const std::vector<uffd_msg>& msgs,
                    const std::vector<FaultReport>& reports) {
  Napi::Value raw;
  Napi::Value list = env.Undefined();
  auto drop = [&] {
    for (const uffd_msg& m : msgs) {
      if (m.event == UFFD_EVENT_FORK) close(static_cast<int>(m.arg.fork.ufd));
    }
  };
  // The callback is held weakly while the handle is unref'd with no policy (Reader::Unref): once
  // its Userfaultfd was collected there is nobody to deliver to.
  if (callback.IsEmpty()) return drop();
  try {
    // In a Worker being terminated every napi call fails (and throws: binding.gyp defines
    // NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS, without which building the exception itself would
    // abort the process). Then the batch is dropped; teardown closes the uffd, which wakes the
    // faulting threads.
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, msgs.size() * sizeof(uffd_msg));
    if (!msgs.empty()) std::memcpy(buffer.Data(), msgs.data(), msgs.size() * sizeof(uffd_msg));
    raw = buffer;
    if (!reports.empty()) list = ReportsToJs(env, reports);
  } catch (const Napi::Error&) {
    return drop();
  }
  try {
    // MakeCallback: the promise jobs a handler queues run when it returns, as after any I/O.
    // (Its receiver must be an object; the callback is an arrow function and ignores it.)
    callback.MakeCallback(env.Global(), {raw, list});
  } catch (const Napi::Error& e) {
    // The TS layer catches handler exceptions itself; reaching here is a bug of ours, and it
    // surfaces as an uncaught exception rather than being lost. (In a stopping environment the
    // call fails without running JS, and so does this: there is nothing left to report to.)
    if (!e.Value().IsEmpty()) napi_fatal_exception(env, e.Value());
  }
}

void Reader::OnMainReadable() {
  if (!main_mode_) return;
  uffd_msg msgs[kBatch];
  ssize_t got;
  {
    std::lock_guard<std::mutex> lock(read_mutex_);
    main_stalled_ = true;
    if (reads_in_flight_.load() > 0 || !ring_.Empty()) {
      // Those go first. The poll is level-triggered: rather than spin on it until they arrive,
      // stop it; the Drain that delivers them starts it again.
      uv_poll_stop(main_poll_);
      return;
    }
    main_stalled_ = false;
    got = read(uffd_, msgs, sizeof msgs);
  }
  if (got <= 0) return;  // the event thread took them (EAGAIN), or an error it will report
  main_reads_++;
  // What the event thread would hand to JS: every message, one fault per page (no policy can
  // exist in main-loop mode, and the JS thread cannot be the faulting thread of what it reads).
  std::vector<uffd_msg> out;
  std::vector<uint64_t> seen;
  const int count = static_cast<int>(got / sizeof(uffd_msg));
  for (int i = 0; i < count; i++) {
    if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
      uint64_t page = msgs[i].arg.pagefault.address & ~(PageSize() - 1);
      if (std::find(seen.begin(), seen.end(), page) != seen.end()) continue;
      seen.push_back(page);
    }
    out.push_back(msgs[i]);
  }
  Napi::Env env = env_;
  Napi::HandleScope scope(env);
  Deliver(env, callback_.Value(), out, {});
}

void Reader::OnAsync(uv_async_t* handle) {
  if (handle->data != nullptr) static_cast<Reader*>(handle->data)->Drain();
}

void Reader::Drain() {
  if (stopped_) return;
  size_t count = 0;
  RingSlot* slots = ring_.Peek(&count);
  // Copied out before JS runs: the callback may close the uffd, which destroys this Reader.
  std::vector<uffd_msg> msgs;
  std::vector<FaultReport> reports;
  // While paused the messages wait, but reports (errors, and the deadlock guard's notices) go
  // now: they are marked delivered in place and skipped when the messages follow.
  for (size_t i = paused_ ? reports_scanned_ : 0; i < count; i++) {
    if (slots[i].kind == SlotKind::kReport) {
      reports.push_back(slots[i].report);
      if (paused_) slots[i].kind = SlotKind::kDelivered;
    } else if (slots[i].kind == SlotKind::kMessage && !paused_) {
      msgs.push_back(slots[i].msg);
    }
  }
  if (paused_) {
    reports_scanned_ = count;
  } else {
    ring_.Take(count);
    reports_scanned_ = 0;
    if (space_wanted_.exchange(false)) WakeThread();
    ResumeMainLoop();
  }
  if (msgs.empty() && reports.empty()) return;
  Napi::Env env = env_;
  Napi::HandleScope scope(env);
  Deliver(env, callback_.Value(), msgs, reports);
}

std::shared_ptr<Policy> Reader::FindPolicy(uint32_t id) {
  // Only the JS thread changes the list, so it reads it without the lock: the lock is held across
  // every resolution, and reading a policy's counters must never wait for one.
  for (auto& p : policies_) {
    if (p->id == id) return p;
  }
  return nullptr;
}

// Resolves a fault on the event thread. Faults in a policy range are resolved by the policy; a
// fault raised by the JS thread itself (the deadlock guard) by the fallback; the rest go to JS.
bool Reader::Resolve(const uffd_msg& msg, RingSlot* out, size_t* used) {
  const uint64_t address = msg.arg.pagefault.address;
  const uint64_t flags = msg.arg.pagefault.flags;
  const uint32_t tid = msg.arg.pagefault.feat.ptid;

  std::lock_guard<std::mutex> lock(policies_mutex_);
  auto it =
      std::upper_bound(policies_.begin(), policies_.end(), address,
                       [](uint64_t a, const std::shared_ptr<Policy>& p) { return a < p->start; });
  Policy* policy = nullptr;
  if (it != policies_.begin() && address < (*(it - 1))->end) policy = (it - 1)->get();

  const bool guard = policy == nullptr && guard_tid_ != 0 && tid == guard_tid_;
  if (policy == nullptr && !guard) {
    out[(*used)++] = RingSlot::Message(msg);
    return true;
  }

  // The unit to resolve: the policy's, or for the guard the base page (see guarded below).
  uint64_t unit = policy ? policy->unit : PageSize();
  uint64_t start = address & ~(unit - 1);
  if (policy) {
    start = std::max(start, policy->start);
    unit = std::min(unit, policy->end - start);
  }

  // The guard knows no unit: it tries the base page, then the huge page, since every ioctl on
  // a hugetlbfs range (un-protect and CONTINUE included) refuses a base page with EINVAL.
  auto guarded = [&](auto resolve) {
    IoctlResult res = resolve();
    if (guard && res.err == EINVAL) {
      unit = DefaultHugePageSize();
      start = address & ~(unit - 1);
      res = resolve();
    }
    return res;
  };

  // Counted before the resolution wakes the faulting thread, so that whoever that thread tells
  // (the JS thread, reading stats() after a touch) sees it; corrected below once the result is
  // known. stats() reads the counters without the lock held across resolutions, so it never
  // waits for one (a pread on a hung file system, say).
  const uint64_t counted = unit;
  if (policy) {
    policy->stats.faults++;
    policy->stats.bytes += counted;
  }
  const char* ioctl_name = "UFFDIO_COPY";
  IoctlResult r = {0, 0};
  if (flags & UFFD_PAGEFAULT_FLAG_WP) {
    ioctl_name = "UFFDIO_WRITEPROTECT";
    r = guarded([&] { return IoctlResult{0, UffdWriteProtect(uffd_, start, unit, kWpOff)}; });
  } else if (flags & UFFD_PAGEFAULT_FLAG_MINOR) {
    ioctl_name = "UFFDIO_CONTINUE";
    r = guarded([&] {
      return FillAll(unit, [&](uint64_t d) { return UffdContinue(uffd_, start + d, unit - d, 0); });
    });
  } else if (guard || policy->kind == PolicyKind::kZero || policy->kind == PolicyKind::kContinue ||
             policy->kind == PolicyKind::kUnprotect) {
    ioctl_name = "UFFDIO_ZEROPAGE";
    r = guarded([&] {
      return FillAll(unit, [&](uint64_t d) { return FillZero(uffd_, start + d, unit - d); });
    });
  } else if (policy->kind == PolicyKind::kCopyBuffer) {
    const uint8_t* src = policy->data + (start - policy->start);
    r = FillAll(unit, [&](uint64_t d) {
      return UffdCopy(uffd_, start + d, reinterpret_cast<uintptr_t>(src + d), unit - d, 0);
    });
  } else if (policy->kind == PolicyKind::kCopyFd) {
    std::vector<uint8_t>& bounce = policy->bounce;  // sized to the unit when it was added
    uint64_t offset = policy->fd_offset + (start - policy->start);
    size_t got = 0;
    int read_err = 0;
    while (got < unit) {
      ssize_t n = pread(policy->fd, bounce.data() + got, unit - got, offset + got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) read_err = errno;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    if (read_err != 0) {
      ioctl_name = "pread";
      r = Unreadable(start, unit, tid, read_err);
    } else {
      // Only the end of the file means zeros, as in a file mapping.
      std::memset(bounce.data() + got, 0, unit - got);
      r = FillAll(unit, [&](uint64_t d) {
        return UffdCopy(uffd_, start + d, reinterpret_cast<uintptr_t>(bounce.data() + d), unit - d,
                        0);
      });
    }
  } else {  // kMoveTable
    ioctl_name = "UFFDIO_MOVE";
    size_t index = (start - policy->start) / policy->unit;
    uint64_t src = index < policy->table.size() ? policy->table[index] : 0;
    if (policy->claims && index < policy->claims_len) {
      // Published before the move, so whoever sees the destination mapped by it also sees this.
      __atomic_store_n(&policy->claims[index], 1, __ATOMIC_SEQ_CST);
    }
    if (src == 0) {
      r = FillAll(unit, [&](uint64_t d) { return FillZero(uffd_, start + d, unit - d); });
    } else {
      r = FillAll(unit,
                  [&](uint64_t d) { return UffdMove(uffd_, start + d, src + d, unit - d, 0); });
      // A hole in the source: with ALLOW_SRC_HOLES the kernel would count it as moved and map
      // nothing, so the thread would fault again forever. Fill the rest with zeros instead.
      if (r.err == ENOENT) {
        uint64_t done = static_cast<uint64_t>(r.bytes);
        // ENOENT also means no source mapping at all (unmapped since the table was made): that
        // is data lost, not a hole, and it is reported once the thread has its zeros.
        // msync(MS_ASYNC) does nothing to a mapped page and fails with ENOMEM on an unmapped one.
        const bool gone = msync(reinterpret_cast<void*>(src + done), PageSize(), MS_ASYNC) != 0 &&
                          errno == ENOMEM;
        IoctlResult z = FillAll(unit - done, [&](uint64_t d) {
          return FillZero(uffd_, start + done + d, unit - done - d);
        });
        r = {static_cast<int64_t>(done) + z.bytes, z.err};
        if (r.err == 0 && gone) r.err = ENOENT;
      }
    }
  }

  if (policy && policy->kind == PolicyKind::kMoveTable) {
    // An EBUSY that passes: the source huge page is being split by another mover (the
    // compactor's background pass) at this moment. Retried like EAGAIN, but only so many times
    // in a row: a page shared with a child process (fork) stays EBUSY, and that is reported.
    // Only with nothing moved: a retry starts at the unit's start, which would then be EEXIST.
    if (r.err == EBUSY && r.bytes == 0 && policy->busy_streak < kMaxBusyRetries) {
      policy->busy_streak++;
      r.err = EAGAIN;
    } else {
      policy->busy_streak = 0;
    }
  }
  if (r.err == EEXIST) {
    // Already resolved (another thread faulted on the same page, or a racing resolution):
    // waking is all that is left to do.
    if (policy) policy->stats.eexist++;
    UffdWake(uffd_, start, unit);
    r.err = 0;
  }
  if (r.err == EAGAIN) {
    // An unread FORK/REMAP/REMOVE/UNMAP event is changing the address space: retry after the
    // next read has taken it.
    if (policy) {
      policy->stats.retries++;
      policy->stats.faults--;
      policy->stats.bytes -= counted;
    }
    return false;
  }
  // Only a short fill corrects the count: a whole one (the common case) costs no second atomic.
  if (policy && static_cast<uint64_t>(r.bytes) != counted) {
    policy->stats.bytes -= counted - static_cast<uint64_t>(r.bytes);
  }
  if (r.err != 0 || guard) {
    if (policy && r.err) policy->stats.errors++;
    out[(*used)++] =
        RingSlot::Report({address, flags, tid, r.err, ioctl_name, policy ? policy->id : 0, guard});
  }
  return true;
}

// A unit whose bytes could not be read (pread failed: EIO, say) must not become zeros. As in a
// file mapping whose read fails, the faulting thread gets SIGBUS: UFFDIO_POISON the unit. Where
// the kernel has no POISON (before 6.6) the fault stays unresolved, and the report tells JS the
// address to resolve (its thread waits until then, or until close); only the JS thread itself,
// which cannot wait for its own handler, gets zeros, with the report. Returns {0, err} for the
// report, never success.
IoctlResult Reader::Unreadable(uint64_t start, uint64_t unit, uint32_t tid, int err) {
  IoctlResult poisoned =
      FillAll(unit, [&](uint64_t d) { return UffdPoison(uffd_, start + d, unit - d, 0); });
  if (poisoned.err != 0 && guard_tid_ != 0 && tid == guard_tid_) {
    FillAll(unit, [&](uint64_t d) { return FillZero(uffd_, start + d, unit - d); });
  }
  return {0, err};
}

void Reader::Run() {
  pthread_setname_np(pthread_self(), "uffd-events");
  // Nothing in this loop allocates or frees, nor takes a lock that a thread waiting for malloc
  // could hold (event_ring.h): a fork() anywhere in the process waits for it.
  uffd_msg msgs[kBatch];
  size_t deferred = 0;  // faults at the front of pending_ to retry after EAGAIN
  for (;;) {
    // Each round writes at most one slot per fault retried and per message read, plus one for
    // an error. Short of that, ask JS to wake us when it has taken what is waiting; the room is
    // looked at again after asking, so a Drain in between is not missed.
    auto enough = [&](size_t room) { return room >= deferred + kBatch + 1; };
    size_t room = ring_.Room();
    if (!enough(room)) {
      space_wanted_ = true;
      room = ring_.Room();
    }
    const bool retrying = deferred > 0 && room >= deferred + 1;
    const bool reading = enough(room) && deferred + kBatch <= kMaxDeferred;
    struct pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {uffd_, POLLIN, 0}};
    // With faults waiting for an address-space change to settle, come back soon to retry them.
    int n = poll(fds, reading ? 2 : 1, retrying ? 1 : -1);
    const int poll_errno = errno;
    // Drain before any flag is read (see WakeThread): a stop that lands after this drain leaves
    // the eventfd readable, one that landed before it has already set stopped_.
    if (n > 0 && fds[0].revents) ConsumeWakeups();
    if (stopped_) break;
    RingSlot* out = ring_.WriteAt();
    if (n < 0) {
      if (poll_errno == EINTR) continue;
      out[0] = RingSlot::Report({0, 0, 0, poll_errno, "poll", 0, false});
      ring_.Publish(1);
      uv_async_send(async_);
      break;
    }
    if (reading && (fds[1].revents & POLLIN) && main_mode_) {
      // The JS thread's loop reads first. Step in only if it has read nothing for the grace
      // period: it is busy, or asleep in a fault of its own (the deadlock guard's case).
      uint64_t reads = main_reads_;
      struct pollfd stop = {wake_fd_, POLLIN, 0};
      if (poll(&stop, 1, kMainGraceMs) > 0) ConsumeWakeups();  // drained first, as above
      if (stopped_) break;
      if (main_mode_ && main_reads_ != reads) continue;
    }
    size_t used = 0;
    int count = 0;
    bool counted = false;
    bool finished = false;  // the last round: a read error, or the uffd has nothing more to give
    if (reading && (fds[1].revents & POLLIN)) {
      ssize_t got;
      {
        // Counted in flight under the lock: the JS thread reads only when nothing read before
        // is still on its way to JS, so JS sees the events in the kernel's order.
        std::lock_guard<std::mutex> lock(read_mutex_);
        got = read(uffd_, msgs, sizeof msgs);
        counted = got > 0;
        if (counted) reads_in_flight_++;
      }
      if (got < 0 && errno != EAGAIN && errno != EINTR) {
        out[used++] = RingSlot::Report({0, 0, 0, errno, "read", 0, false});
        finished = true;
      }
      count = got > 0 ? static_cast<int>(got / sizeof(uffd_msg)) : 0;
    } else if (reading && (fds[1].revents & (POLLERR | POLLHUP | POLLNVAL))) {
      // The uffd has no more events to give (its address space is gone, or it was closed).
      finished = true;
    }

    // Faults deferred by EAGAIN go first (they are already at the front of pending_): the events
    // just read are what they were waiting for. Those that meet EAGAIN again move to the front,
    // in place (the write index never passes the read index).
    size_t pending = 0;
    if (retrying || count > 0) {
      pending = deferred;
      deferred = 0;
    }
    for (int i = 0; i < count; i++) {
      if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
        pending_[pending++] = msgs[i];
      } else {
        out[used++] = RingSlot::Message(msgs[i]);
      }
    }
    // The same page may be reported by several threads; one resolution wakes them all (and a
    // deferred one will, when it is retried).
    size_t seen = 0;
    for (size_t i = 0; i < pending; i++) {
      const uffd_msg m = pending_[i];
      uint64_t page = m.arg.pagefault.address & ~(PageSize() - 1);
      if (std::find(seen_.get(), seen_.get() + seen, page) != seen_.get() + seen) continue;
      seen_[seen++] = page;
      if (!Resolve(m, out, &used)) pending_[deferred++] = m;
    }
    ring_.Publish(used);
    if (counted) reads_in_flight_--;
    // Wake the JS thread for what it has to take, or to restart a main-loop reader that stalled
    // behind this read; not for faults the policies resolved.
    if (used > 0 || (counted && main_stalled_)) uv_async_send(async_);
    if (finished) break;
  }
}

// readRaw(timeoutMs, max) -> ArrayBuffer of up to `max` messages, or null if none came in time.
// Blocking: meant for a Worker that owns the fault loop, never for the main thread.
Napi::Value ReadRaw(Napi::Env env, int uffd, const Napi::CallbackInfo& info) {
  double timeout = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  uint64_t max = ArgLength(info, 1, "max");
  if (max == 0 || max > 4096) ThrowRangeError(env, "max must be within 1 .. 4096");
  int timeout_ms = timeout < 0 ? -1 : static_cast<int>(std::min(timeout, 2147483647.0));
  struct pollfd pfd = {uffd, POLLIN, 0};
  int n;
  do {
    n = poll(&pfd, 1, timeout_ms);
  } while (n < 0 && errno == EINTR);
  if (n < 0) ThrowSysError(env, {errno, "poll"});
  if (n == 0) return env.Null();
  std::vector<uffd_msg> msgs(max);
  ssize_t got = read(uffd, msgs.data(), max * sizeof(uffd_msg));
  if (got < 0) {
    if (errno == EAGAIN) return env.Null();  // another reader took them
    ThrowSysError(env, {errno, "read"});
  }
  Napi::ArrayBuffer raw = Napi::ArrayBuffer::New(env, static_cast<size_t>(got));
  std::memcpy(raw.Data(), msgs.data(), static_cast<size_t>(got));
  return raw;
}
