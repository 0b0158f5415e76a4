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
// How long the event thread leaves a readable uffd to the JS thread's loop before reading it
// itself. Short enough that a JS thread asleep in its own fault is rescued quickly (the deadlock
// guard), long enough that the thread wakes at most a few hundred times a second while the JS
// thread keeps up.
constexpr int kMainGraceMs = 2;
constexpr uint64_t kWpOff = 0;

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
    : uffd_(uffd), stop_fd_(-1), guard_tid_(guard_tid), env_(env) {
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) ThrowSysError(env, {errno, "eventfd"});
  // Unlimited queue: the event thread never blocks on JS, so a JS thread that is itself joining
  // the event thread (close(), a finalizer) can never deadlock with it. The queue is bounded in
  // practice: each faulting thread has one fault outstanding until it is resolved.
  tsfn_ = BatchTsfn::New(env, callback, "userfaultfd.events", 0, 1, this);
  callback_ = Napi::Persistent(callback);
  UpdateMainLoop();
  thread_ = std::thread(&Reader::Run, this);
}

Reader::~Reader() { Stop(); }

void Reader::Stop() {
  if (stopped_.exchange(true)) return;
  UpdateMainLoop();  // closes the main-loop reader before the descriptor can be closed
  uint64_t one = 1;
  ssize_t ignored = write(stop_fd_, &one, sizeof one);
  (void)ignored;
  if (thread_.joinable()) thread_.join();
  tsfn_.Release();
  callback_.Reset();
  close(stop_fd_);
  stop_fd_ = -1;
}

void Reader::SetPaused(bool paused) {
  paused_ = paused;
  UpdateMainLoop();
  uint64_t one = 1;
  ssize_t ignored = write(stop_fd_, &one, sizeof one);  // wake poll to look at the flag
  (void)ignored;
}

void Reader::Ref(Napi::Env env) {
  tsfn_.Ref(env);
  refed_ = true;
  if (main_->poll) uv_ref(reinterpret_cast<uv_handle_t*>(main_->poll));
}

void Reader::Unref(Napi::Env env) {
  tsfn_.Unref(env);
  refed_ = false;
  if (main_->poll) uv_unref(reinterpret_cast<uv_handle_t*>(main_->poll));
}

bool Reader::AddPolicy(std::shared_ptr<Policy> policy) {
  {
    std::lock_guard<std::mutex> lock(policies_mutex_);
    auto at = std::lower_bound(
        policies_.begin(), policies_.end(), policy->start,
        [](const std::shared_ptr<Policy>& p, uint64_t start) { return p->start < start; });
    if (at != policies_.end() && (*at)->start < policy->end) return false;
    if (at != policies_.begin() && (*(at - 1))->end > policy->start) return false;
    policies_.insert(at, std::move(policy));
  }
  // Policies never wait for JS: from now on only the event thread reads.
  UpdateMainLoop();
  return true;
}

bool Reader::RemovePolicy(uint32_t id) {
  {
    std::lock_guard<std::mutex> lock(policies_mutex_);
    auto it = std::find_if(policies_.begin(), policies_.end(),
                           [id](const std::shared_ptr<Policy>& p) { return p->id == id; });
    if (it == policies_.end()) return false;
    policies_.erase(it);
  }
  UpdateMainLoop();
  return true;
}

void Reader::UpdateMainLoop() {
  bool want = !stopped_ && !paused_;
  if (want) {
    std::lock_guard<std::mutex> lock(policies_mutex_);
    want = policies_.empty();
  }
  if (want == (main_->poll != nullptr)) return;
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
    main_->poll = poll_handle;
    main_->stalled = false;
    main_mode_ = true;
  } else {
    main_mode_ = false;
    // uv_close stops the watch at once; the handle is freed when the loop runs its callback.
    uv_close(reinterpret_cast<uv_handle_t*>(main_->poll),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    main_->poll = nullptr;
    // The event thread may be in its grace period, leaving the uffd to the JS thread: wake it.
    uint64_t one = 1;
    ssize_t ignored = write(stop_fd_, &one, sizeof one);
    (void)ignored;
  }
}

void Reader::OnMainPoll(uv_poll_t* handle, int status, int) {
  if (status == 0) static_cast<Reader*>(handle->data)->OnMainReadable();
}

void Reader::OnMainReadable() {
  if (!main_mode_) return;
  uffd_msg msgs[kBatch];
  ssize_t got;
  {
    std::lock_guard<std::mutex> lock(read_mutex_);
    if (main_->in_flight.load() > 0 || held_count_.load() > 0) {
      // Those batches go first. The poll is level-triggered: rather than spin on it until they
      // arrive, stop it; delivering the last of them starts it again.
      uv_poll_stop(main_->poll);
      main_->stalled = true;
      return;
    }
    got = read(uffd_, msgs, sizeof msgs);
  }
  if (got <= 0) return;  // the event thread took them (EAGAIN), or an error it will report
  main_reads_++;
  // What the event thread would hand to JS: every message, one fault per page (no policy can
  // exist in main-loop mode, and the JS thread cannot be the faulting thread of what it reads).
  std::vector<uffd_msg> out;
  std::vector<uint64_t> seen;
  for (int i = 0; i < static_cast<int>(got / sizeof(uffd_msg)); i++) {
    if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
      uint64_t page = msgs[i].arg.pagefault.address & ~(PageSize() - 1);
      if (std::find(seen.begin(), seen.end(), page) != seen.end()) continue;
      seen.push_back(page);
    }
    out.push_back(msgs[i]);
  }
  Napi::Env env = env_;
  Napi::HandleScope scope(env);
  try {
    // In a Worker being terminated every napi call fails (and throws, see DeliverBatch): then
    // the batch is dropped, as the event thread drops one; teardown closes the uffd, which
    // wakes the faulting threads.
    Napi::ArrayBuffer raw = Napi::ArrayBuffer::New(env, out.size() * sizeof(uffd_msg));
    std::memcpy(raw.Data(), out.data(), out.size() * sizeof(uffd_msg));
    // MakeCallback: the promise jobs a handler queues run when it returns, as after any I/O.
    // (Its receiver must be an object; the callback is an arrow function and ignores it.)
    callback_.MakeCallback(env.Global(), {raw, env.Undefined()});
  } catch (const Napi::Error& e) {
    if (!e.Value().IsEmpty()) napi_fatal_exception(env, e.Value());
  }
}

std::shared_ptr<Policy> Reader::FindPolicy(uint32_t id) {
  std::lock_guard<std::mutex> lock(policies_mutex_);
  for (auto& p : policies_) {
    if (p->id == id) return p;
  }
  return nullptr;
}

// Resolves a fault on the event thread. Faults in a policy range are resolved by the policy; a
// fault raised by the JS thread itself (the deadlock guard) by the fallback; the rest go to JS.
bool Reader::Resolve(const uffd_msg& msg, Batch* batch, bool* retried) {
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
    batch->msgs.push_back(msg);
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
    // One bounce buffer per event thread, grown to the largest unit seen.
    thread_local std::vector<uint8_t> bounce;
    if (bounce.size() < unit) bounce.resize(unit);
    uint64_t offset = policy->fd_offset + (start - policy->start);
    size_t got = 0;
    while (got < unit) {
      ssize_t n = pread(policy->fd, bounce.data() + got, unit - got, offset + got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    std::memset(bounce.data() + got, 0, unit - got);  // past the end of the file: zeros
    r = FillAll(unit, [&](uint64_t d) {
      return UffdCopy(uffd_, start + d, reinterpret_cast<uintptr_t>(bounce.data() + d), unit - d,
                      0);
    });
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
        IoctlResult z = FillAll(unit - done, [&](uint64_t d) {
          return FillZero(uffd_, start + done + d, unit - done - d);
        });
        r = {static_cast<int64_t>(done) + z.bytes, z.err};
      }
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
    if (policy) policy->stats.retries++;
    *retried = true;
    return false;
  }
  if (policy) {
    policy->stats.faults++;
    policy->stats.bytes += static_cast<uint64_t>(r.bytes);
  }
  if (r.err != 0 || guard) {
    if (policy && r.err) policy->stats.errors++;
    batch->reports.push_back(
        {address, flags, tid, r.err, ioctl_name, policy ? policy->id : 0, guard});
  }
  return true;
}

void Reader::Send(Batch* batch, bool counted) {
  if (batch->msgs.empty() && batch->reports.empty()) {
    if (counted) main_->in_flight.fetch_sub(1);
    return;
  }
  Batch* out = new Batch(std::move(*batch));
  *batch = Batch();
  if (counted) out->main = main_;  // delivery counts it down
  if (tsfn_.NonBlockingCall(out) != napi_ok) {
    if (counted) main_->in_flight.fetch_sub(1);
    // The environment is going away: nobody will read these. FORK descriptors are ours to close.
    for (const uffd_msg& m : out->msgs) {
      if (m.event == UFFD_EVENT_FORK) close(static_cast<int>(m.arg.fork.ufd));
    }
    delete out;
  }
}

void Reader::Run() {
  pthread_setname_np(pthread_self(), "uffd-events");
  uffd_msg msgs[kBatch];
  std::vector<uffd_msg> deferred;
  // What JS is not taking while paused. Reading goes on meanwhile, so that native policies and
  // the deadlock guard never wait for JS: a JS thread that faults on itself while its events()
  // queue is full would otherwise sleep forever, since only it can drain the queue. This stays
  // small (each waiting fault holds its thread); past kMaxHeld, reading stops until JS resumes.
  std::vector<uffd_msg> held;
  Batch batch;
  for (;;) {
    // stop_fd_ wakes the thread to stop, pause or resume.
    struct pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {uffd_, POLLIN, 0}};
    const bool reading = !paused_ || held.size() < kMaxHeld;
    // With faults waiting for an address-space change to settle, come back soon to retry them.
    int n = poll(fds, reading ? 2 : 1, deferred.empty() ? -1 : 1);
    if (n < 0) {
      if (errno == EINTR) continue;
      batch.reports.push_back({0, 0, 0, errno, "poll", 0, false});
      break;
    }
    if (stopped_) break;
    if (fds[0].revents) {
      uint64_t value;
      ssize_t ignored = read(stop_fd_, &value, sizeof value);
      (void)ignored;
    }
    if (!paused_ && !held.empty()) {
      // Resumed: what was held goes to JS first, counted in flight so that the JS loop (which
      // stalls while anything is held) cannot overtake it.
      {
        std::lock_guard<std::mutex> lock(read_mutex_);
        batch.msgs.insert(batch.msgs.begin(), held.begin(), held.end());
        held.clear();
        held_count_ = 0;
        main_->in_flight.fetch_add(1);
      }
      Send(&batch, true);
    }
    if (reading && (fds[1].revents & POLLIN) && main_mode_) {
      // The JS thread's loop reads first. Step in only if it has read nothing for the grace
      // period: it is busy, or asleep in a fault of its own (the deadlock guard's case).
      uint64_t reads = main_reads_;
      struct pollfd stop = {stop_fd_, POLLIN, 0};
      if (poll(&stop, 1, kMainGraceMs) > 0) {
        uint64_t value;
        ssize_t ignored = read(stop_fd_, &value, sizeof value);
        (void)ignored;
      }
      if (stopped_) break;
      if (paused_ || main_reads_ != reads) continue;
    }
    int count = 0;
    bool counted = false;
    if (reading && (fds[1].revents & POLLIN)) {
      ssize_t got;
      {
        // Counted in flight under the lock: the JS thread reads only when nothing read before
        // is still on its way to JS, so JS sees the events in the kernel's order.
        std::lock_guard<std::mutex> lock(read_mutex_);
        got = read(uffd_, msgs, sizeof msgs);
        counted = got > 0;
        if (counted) main_->in_flight.fetch_add(1);
      }
      if (got < 0 && errno != EAGAIN && errno != EINTR) {
        batch.reports.push_back({0, 0, 0, errno, "read", 0, false});
        break;
      }
      count = got > 0 ? static_cast<int>(got / sizeof(uffd_msg)) : 0;
    } else if (reading && (fds[1].revents & (POLLERR | POLLHUP | POLLNVAL))) {
      // The uffd has no more events to give (its address space is gone, or it was closed).
      break;
    }

    // Faults deferred by EAGAIN first: the events just read are what they were waiting for.
    std::vector<uffd_msg> retry;
    retry.swap(deferred);
    for (int i = 0; i < count; i++) {
      if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
        retry.push_back(msgs[i]);
      } else {
        batch.msgs.push_back(msgs[i]);
      }
    }
    // The same page may be reported by several threads; one resolution wakes them all (and a
    // deferred one will, when it is retried).
    std::vector<uint64_t> seen;
    for (const uffd_msg& m : retry) {
      uint64_t page = m.arg.pagefault.address & ~(PageSize() - 1);
      if (std::find(seen.begin(), seen.end(), page) != seen.end()) continue;
      seen.push_back(page);
      bool retried = false;
      if (!Resolve(m, &batch, &retried)) deferred.push_back(m);
    }
    // Events for JS keep their order across a pause; reports (errors) are sent regardless.
    if (paused_ && !batch.msgs.empty()) {
      std::lock_guard<std::mutex> lock(read_mutex_);
      held.insert(held.end(), batch.msgs.begin(), batch.msgs.end());
      held_count_ = held.size();
      batch.msgs.clear();
    }
    Send(&batch, counted);
  }
  batch.msgs.insert(batch.msgs.begin(), held.begin(), held.end());
  Send(&batch, false);
}

// FORK descriptors are ours to close when their batch never reaches JS.
static void CloseForkFds(const Batch& batch) {
  for (const uffd_msg& m : batch.msgs) {
    if (m.event == UFFD_EVENT_FORK) close(static_cast<int>(m.arg.fork.ufd));
  }
}

// Runs on the JS thread once per batch (or with env null at teardown: then only frees).
//
// A Worker being terminated still runs its loop for a while, but can no longer run JS: every
// napi call that needs to then fails. node-addon-api turns such a failure into a C++ exception
// only with NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS (binding.gyp); without it, building the
// exception itself aborts the whole process ("Error::Error napi_define_properties").
void DeliverBatch(Napi::Env env, Napi::Function callback, Reader*, Batch* batch) {
  std::unique_ptr<Batch> owned(batch);
  if (batch->main && batch->main->in_flight.fetch_sub(1) == 1 && env != nullptr) {
    MainLoopState& main = *batch->main;
    if (main.stalled && main.poll != nullptr) {
      main.stalled = false;
      uv_poll_start(main.poll, UV_READABLE, Reader::OnMainPoll);
    }
  }
  if (env == nullptr || callback.IsEmpty()) {
    CloseForkFds(*batch);
    return;
  }
  Napi::Value raw;
  Napi::Value reports = env.Undefined();
  try {
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, batch->msgs.size() * sizeof(uffd_msg));
    if (!batch->msgs.empty()) {
      std::memcpy(buffer.Data(), batch->msgs.data(), batch->msgs.size() * sizeof(uffd_msg));
    }
    raw = buffer;
    if (!batch->reports.empty()) {
      Napi::Array arr = Napi::Array::New(env, batch->reports.size());
      for (size_t i = 0; i < batch->reports.size(); i++) {
        const FaultReport& r = batch->reports[i];
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
      reports = arr;
    }
  } catch (const Napi::Error&) {
    // The environment is stopping: nobody will read this batch.
    CloseForkFds(*batch);
    return;
  }
  try {
    callback.Call({raw, reports});
  } catch (const Napi::Error& e) {
    // The TS layer catches handler exceptions itself; reaching here is a bug of ours, and it
    // surfaces as an uncaught exception rather than being lost. (In a stopping environment the
    // call fails without running JS, and so does this: there is nothing left to report to.)
    napi_fatal_exception(env, e.Value());
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
