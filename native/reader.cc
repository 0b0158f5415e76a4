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
  thread_ = std::thread(&Reader::Run, this);
}

Reader::~Reader() { Stop(); }

void Reader::Stop() {
  if (stopped_.exchange(true)) return;
  uint64_t one = 1;
  ssize_t ignored = write(stop_fd_, &one, sizeof one);
  (void)ignored;
  if (thread_.joinable()) thread_.join();
  tsfn_.Release();
  close(stop_fd_);
  stop_fd_ = -1;
}

void Reader::SetPaused(bool paused) {
  paused_ = paused;
  uint64_t one = 1;
  ssize_t ignored = write(stop_fd_, &one, sizeof one);  // wake poll to look at the flag
  (void)ignored;
}

bool Reader::AddPolicy(std::shared_ptr<Policy> policy) {
  std::lock_guard<std::mutex> lock(policies_mutex_);
  auto at = std::lower_bound(
      policies_.begin(), policies_.end(), policy->start,
      [](const std::shared_ptr<Policy>& p, uint64_t start) { return p->start < start; });
  if (at != policies_.end() && (*at)->start < policy->end) return false;
  if (at != policies_.begin() && (*(at - 1))->end > policy->start) return false;
  policies_.insert(at, std::move(policy));
  return true;
}

bool Reader::RemovePolicy(uint32_t id) {
  std::lock_guard<std::mutex> lock(policies_mutex_);
  auto it = std::find_if(policies_.begin(), policies_.end(),
                         [id](const std::shared_ptr<Policy>& p) { return p->id == id; });
  if (it == policies_.end()) return false;
  policies_.erase(it);
  return true;
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
    uint64_t src = index < policy->table_len ? policy->table[index] : 0;
    if (src == 0) {
      r = FillAll(unit, [&](uint64_t d) { return FillZero(uffd_, start + d, unit - d); });
    } else {
      r = FillAll(unit, [&](uint64_t d) {
        return UffdMove(uffd_, start + d, src + d, unit - d, UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES);
      });
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

void Reader::Send(Batch* batch) {
  if (batch->msgs.empty() && batch->reports.empty()) return;
  Batch* out = new Batch(std::move(*batch));
  *batch = Batch();
  if (tsfn_.NonBlockingCall(out) != napi_ok) {
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
    int count = 0;
    if (reading && (fds[1].revents & POLLIN)) {
      ssize_t got = read(uffd_, msgs, sizeof msgs);
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
    if (paused_) {
      held.insert(held.end(), batch.msgs.begin(), batch.msgs.end());
      batch.msgs.clear();
    } else if (!held.empty()) {
      batch.msgs.insert(batch.msgs.begin(), held.begin(), held.end());
      held.clear();
    }
    Send(&batch);
  }
  batch.msgs.insert(batch.msgs.begin(), held.begin(), held.end());
  Send(&batch);
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
