// kselftest-style helpers: touch memory from native threads, so that faults on registered
// ranges are raised by threads other than the JS thread (which must stay free to serve them).
//
// touch(address, length, options) -> Promise<ThreadResult[]>. A coordinator std::thread starts
// the touching threads, joins them, and settles the promise through a thread-safe function; the
// libuv thread pool is not used, so a JS handler that itself needs the pool cannot starve it.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "addon.h"
#include "args.h"
#include "errors.h"
#include "mapping.h"

namespace {

// Runs `work` on a new thread, then settles a promise on the JS thread with `settle`. The
// thread-safe function keeps the loop alive until then.
//
// The environment can go away first (a Worker terminated mid-touch). Its teardown deletes the
// thread-safe function whatever its thread count (Node before 24.14), so the thread must not call
// it then: a cleanup hook, which runs before the function's own (hooks run last-in first-out),
// abandons the job, and the thread frees it when done. `keep` holds the touched Mapping's region
// mapped until then, since teardown finalizes the Mapping under the running thread. (And the
// addon is linked -z nodelete: a Worker that alone loaded it would unload its code otherwise.)
class OffThreadJob {
 public:
  using Work = std::function<void()>;
  using Settle = std::function<void(Napi::Env, Napi::Promise::Deferred&)>;

  static Napi::Promise Start(Napi::Env env, const char* name, std::unique_ptr<RegionUse> keep,
                             Work work, Settle settle) {
    auto* job = new OffThreadJob(env, std::move(keep), std::move(work), std::move(settle));
    Napi::Promise promise = job->deferred_.Promise();
    job->tsfn_ = Tsfn::New(env, name, 0, 1, job);
    napi_add_env_cleanup_hook(env, OnTeardown, job);
    job->thread_ = std::thread([job] {
      job->work_();
      std::unique_lock<std::mutex> lock(job->mutex_);
      if (job->abandoned_) {
        lock.unlock();
        delete job;  // detached by OnTeardown: nobody is left to tell
        return;
      }
      job->tsfn_.BlockingCall();
      job->called_ = true;
    });
    return promise;
  }

 private:
  static void Finish(Napi::Env env, Napi::Function, OffThreadJob* job, void*) {
    if (job->thread_.joinable()) job->thread_.join();  // it has called BlockingCall: it is done
    if (env != nullptr) {
      // (With env null, teardown has already run and removed the hook.)
      napi_remove_env_cleanup_hook(env, OnTeardown, job);
      if (job->keep_) job->keep_->Drop(env);
      try {
        job->settle_(env, job->deferred_);
      } catch (const Napi::Error&) {
        // A Worker being terminated can no longer run JS: nobody is waiting for the promise.
      }
    }
    job->tsfn_.Release();
    delete job;
  }
  using Tsfn = Napi::TypedThreadSafeFunction<OffThreadJob, void, Finish>;

  static void OnTeardown(void* arg) {
    auto* job = static_cast<OffThreadJob*>(arg);
    std::lock_guard<std::mutex> lock(job->mutex_);
    if (job->called_) return;  // queued: the function's teardown runs Finish with env null
    job->abandoned_ = true;
    job->thread_.detach();
  }

  OffThreadJob(Napi::Env env, std::unique_ptr<RegionUse> keep, Work work, Settle settle)
      : keep_(std::move(keep)),
        work_(std::move(work)),
        settle_(std::move(settle)),
        deferred_(Napi::Promise::Deferred::New(env)) {}

  std::unique_ptr<RegionUse> keep_;  // null for a raw address: its memory is the caller's care
  Work work_;
  Settle settle_;
  Napi::Promise::Deferred deferred_;
  Tsfn tsfn_;
  std::thread thread_;
  std::mutex mutex_;
  bool called_ = false;     // the thread has queued its call (under mutex_)
  bool abandoned_ = false;  // the environment went away first (under mutex_)
};

// The Mapping a job was given, pinned (RegionUse) before anything else is read: an option getter
// can run JS that unmaps the Mapping, and the pin turns that munmap into one deferred to the end
// of the pin, so what Check() finds is still true when the threads start. Dropped on the JS
// thread if the call throws before the job takes it over.
class Pin {
 public:
  Pin(Napi::Env env, const Napi::Value& mapping) : env_(env) {
    std::shared_ptr<Region> region = MappingHandle::RegionOf(mapping);
    if (region) use_ = std::make_unique<RegionUse>(region);
    region_ = std::move(region);
  }
  ~Pin() {
    if (use_) use_->Drop(env_);
  }
  Pin(const Pin&) = delete;
  Pin& operator=(const Pin&) = delete;

  // Throws unless [address, address + length) is memory of the pinned Mapping as JS sees it now
  // (not unmapped, moved or shrunk meanwhile, e.g. by an option getter). No-op without a Mapping.
  void Check(uint64_t address, uint64_t length, const char* what) const {
    if (!region_) return;
    if (!region_->mapped) {
      ThrowCodedError(env_, "ERR_UFFD_UNMAPPED",
                      std::string(what) + ": the mapping was unmapped before the job started");
    }
    auto start = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(region_->addr));
    if (address < start || address - start > region_->length ||
        length > region_->length - (address - start)) {
      ThrowRangeError(env_, std::string(what) +
                                ": the range lies outside the mapping (was it moved or shrunk?)");
    }
  }
  std::unique_ptr<RegionUse> Take() { return std::move(use_); }

 private:
  Napi::Env env_;
  std::shared_ptr<Region> region_;
  std::unique_ptr<RegionUse> use_;
};

// Whether every byte of [start, start + len) lies in a mapping of this process that allows the
// access (read, or write too), by /proc/self/maps. Touching anything else raises SIGSEGV or
// SIGBUS in a touching thread, which ends the whole process. (A raw range can still be unmapped
// after this check: keeping it mapped is the caller's care, as the README says.)
bool Accessible(uint64_t start, uint64_t len, bool write) {
  FILE* maps = std::fopen("/proc/self/maps", "re");
  if (maps == nullptr) return true;  // no /proc: nothing to check against; the caller's care
  uint64_t at = start;
  const uint64_t end = start + len;
  char line[8192];
  while (at < end && std::fgets(line, sizeof line, maps) != nullptr) {
    unsigned long lo = 0, hi = 0;  // NOLINT(runtime/int): the format's type
    char perms[8] = {};
    if (std::sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3) continue;
    // Lines come sorted by address: a gap before `at` is covered means an unmapped hole.
    if (hi <= at) continue;
    if (lo > at) break;
    if (perms[0] != 'r' || (write && perms[1] != 'w')) break;
    at = hi;
  }
  std::fclose(maps);
  return at >= end;
}

enum class TouchMode { kRead, kWrite, kIncrement };

// Refuses a range that is not all mapped with the access `mode` needs: a touch there would die
// of SIGSEGV (`victim`: the process, or forkTouch's child), which is not an outcome a test of
// page faults asks for. Guard regions (MADV_GUARD_INSTALL) do not show in /proc/self/maps; a
// touch there still faults, as the kernel intends.
void RequireAccessible(Napi::Env env, uint64_t address, uint64_t length, TouchMode mode,
                       const char* what, const char* victim) {
  if (Accessible(address, length, mode != TouchMode::kRead)) return;
  ThrowCodedError(env, "ERR_UFFD_UNMAPPED",
                  std::string(what) + ": part of the range is not mapped " +
                      (mode == TouchMode::kRead ? "readable" : "writable") +
                      " memory, and a touch there would crash " + victim);
}

struct TouchSpec {
  uint8_t* base = nullptr;
  uint64_t length = 0;
  uint64_t stride = 0;
  uint64_t offset = 0;  // byte offset of the touched word inside each stride
  TouchMode mode = TouchMode::kRead;
  bool random = false;
  bool partition = true;  // thread i takes units i, i+N, ...; else every thread takes all
  uint32_t threads = 1;
  uint32_t passes = 1;
  uint64_t duration_ns = 0;  // if set: keep making passes until this much time has passed
  uint64_t seed = 1;
  bool record_latency = false;
};

struct ThreadResult {
  long tid = 0;
  uint64_t touched = 0;
  uint64_t sum = 0;  // of the words read (read mode), a checksum of what the thread saw
  std::vector<double> latencies_ns;
};

uint64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void TouchThread(const TouchSpec& spec, uint32_t index, ThreadResult* out) {
  out->tid = syscall(SYS_gettid);
  uint64_t units = spec.length / spec.stride;
  std::vector<uint64_t> order;
  for (uint64_t u = spec.partition ? index : 0; u < units; u += spec.partition ? spec.threads : 1) {
    order.push_back(u);
  }
  std::mt19937_64 rng(spec.seed * 1000003 + index);
  uint64_t deadline = spec.duration_ns ? NowNs() + spec.duration_ns : 0;
  for (uint32_t pass = 0; deadline ? NowNs() < deadline : pass < spec.passes; pass++) {
    if (spec.random) std::shuffle(order.begin(), order.end(), rng);
    for (uint64_t u : order) {
      uint64_t* word = reinterpret_cast<uint64_t*>(spec.base + u * spec.stride + spec.offset);
      uint64_t t0 = spec.record_latency ? NowNs() : 0;
      switch (spec.mode) {
        case TouchMode::kRead:
          out->sum += __atomic_load_n(word, __ATOMIC_RELAXED);
          break;
        case TouchMode::kWrite:
          __atomic_store_n(word, u + 1, __ATOMIC_RELAXED);
          break;
        case TouchMode::kIncrement:
          __atomic_fetch_add(word, 1, __ATOMIC_RELAXED);
          break;
      }
      if (spec.record_latency) out->latencies_ns.push_back(static_cast<double>(NowNs() - t0));
      out->touched++;
    }
  }
}

Napi::Array ThreadResults(Napi::Env env, const std::vector<ThreadResult>& results, bool latency) {
  Napi::Array arr = Napi::Array::New(env, results.size());
  for (size_t i = 0; i < results.size(); i++) {
    const ThreadResult& r = results[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("tid", Napi::Number::New(env, static_cast<double>(r.tid)));
    o.Set("touched", Napi::Number::New(env, static_cast<double>(r.touched)));
    o.Set("sum", Napi::BigInt::New(env, r.sum));
    if (latency) {
      Napi::Float64Array lat = Napi::Float64Array::New(env, r.latencies_ns.size());
      if (!r.latencies_ns.empty()) {
        std::memcpy(lat.Data(), r.latencies_ns.data(), r.latencies_ns.size() * sizeof(double));
      }
      o.Set("latenciesNs", lat);
    }
    arr.Set(i, o);
  }
  return arr;
}

uint32_t OptU32(Napi::Object opts, const char* key, uint32_t dflt, uint32_t max) {
  Napi::Value v = opts.Get(key);
  if (v.IsUndefined()) return dflt;
  if (!v.IsNumber()) ThrowTypeError(opts.Env(), std::string("option ") + key + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= max) || static_cast<uint32_t>(d) != d) {
    ThrowRangeError(opts.Env(), std::string("option ") + key + " is out of range");
  }
  return static_cast<uint32_t>(d);
}

TouchMode OptMode(Napi::Object opts) {
  Napi::Value mode = opts.Get("mode");
  std::string m = mode.IsUndefined() ? "read" : mode.ToString().Utf8Value();
  if (m == "read") return TouchMode::kRead;
  if (m == "write") return TouchMode::kWrite;
  if (m == "increment") return TouchMode::kIncrement;
  ThrowRangeError(opts.Env(), "option mode must be 'read', 'write' or 'increment'");
}

// touch(address, length, { threads, stride, mode, order, partition, passes, durationMs, seed,
//                          recordLatency }, mapping?: MappingHandle to keep mapped meanwhile)
Napi::Value Touch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pin pin(env, info[3]);
  uint64_t address = ArgAddress(info, 0, "address");
  uint64_t length = ArgLength(info, 1, "length");
  Napi::Object opts = info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
  TouchSpec spec;
  spec.base = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(address));
  spec.length = length;
  spec.stride = OptU32(opts, "stride", static_cast<uint32_t>(PageSize()), 1u << 30);
  spec.offset = OptU32(opts, "offset", 0, 1u << 30);
  spec.threads = OptU32(opts, "threads", 1, 256);
  spec.passes = OptU32(opts, "passes", 1, 1u << 30);
  spec.duration_ns = static_cast<uint64_t>(OptU32(opts, "durationMs", 0, 3600000)) * 1000000;
  spec.seed = OptU32(opts, "seed", 1, 0xffffffffu);
  spec.record_latency = opts.Get("recordLatency").ToBoolean().Value();
  spec.partition = !opts.Has("partition") || opts.Get("partition").ToBoolean().Value();
  spec.mode = OptMode(opts);
  Napi::Value order = opts.Get("order");
  spec.random = !order.IsUndefined() && order.ToString().Utf8Value() == "random";
  if (spec.threads == 0) ThrowRangeError(env, "option threads must be at least 1");
  if (spec.stride < 8 || spec.stride % 8 != 0) {
    ThrowRangeError(env, "option stride must be a multiple of 8");
  }
  CheckRange(env, address, length, spec.stride, "touch");
  if (spec.offset % 8 != 0 || spec.offset + 8 > spec.stride) {
    ThrowRangeError(env, "option offset must be a multiple of 8 inside the stride");
  }
  // Last, after every option getter has run.
  pin.Check(address, length, "touch");
  RequireAccessible(env, address, length, spec.mode, "touch", "the process");

  auto results = std::make_shared<std::vector<ThreadResult>>(spec.threads);
  return OffThreadJob::Start(
      env, "userfaultfd.touch", pin.Take(),
      [spec, results] {
        std::vector<std::thread> threads;
        for (uint32_t i = 0; i < spec.threads; i++) {
          threads.emplace_back(TouchThread, std::cref(spec), i, &(*results)[i]);
        }
        for (auto& t : threads) t.join();
      },
      [spec, results](Napi::Env env, Napi::Promise::Deferred& deferred) {
        deferred.Resolve(ThreadResults(env, *results, spec.record_latency));
      });
}

// ---- forkTouch: a child process that touches memory, for the FORK / REMAP / REMOVE events ----

struct ForkSpec {
  uint8_t* base = nullptr;
  uint64_t length = 0;
  uint64_t stride = 0;
  bool dontneed = false;  // madvise(MADV_DONTNEED) the range first (a REMOVE event)
  bool mremap = false;    // then move it elsewhere (a REMAP event) and use the new place
  TouchMode mode = TouchMode::kRead;
  int expect = 0;  // 0: nothing; 1: word at unit i == i + 1; 2: all zero
};

// Runs in the forked child of a multi-threaded process: only memory accesses and raw system
// calls here, then _exit. Exit codes: 0 all as expected, 1 a word differed, 2 mremap failed.
[[noreturn]] void ChildMain(const ForkSpec& spec) {
  uint8_t* base = spec.base;
  if (spec.dontneed) madvise(base, spec.length, MADV_DONTNEED);
  if (spec.mremap) {
    // A same-size mremap stays put; move onto a reserved place to make it a real move.
    void* place = mmap(nullptr, spec.length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (place == MAP_FAILED) _exit(2);
    void* moved = mremap(base, spec.length, spec.length, MREMAP_MAYMOVE | MREMAP_FIXED, place);
    if (moved == MAP_FAILED) _exit(2);
    base = static_cast<uint8_t*>(moved);
  }
  int bad = 0;
  for (uint64_t u = 0; u < spec.length / spec.stride; u++) {
    volatile uint64_t* word = reinterpret_cast<volatile uint64_t*>(base + u * spec.stride);
    if (spec.mode == TouchMode::kWrite) {
      *word = u + 1;
    } else if (spec.mode == TouchMode::kIncrement) {
      *word = *word + 1;
    } else {
      uint64_t v = *word;
      if (spec.expect == 1 && v != u + 1) bad = 1;
      if (spec.expect == 2 && v != 0) bad = 1;
    }
  }
  _exit(bad);
}

struct ForkOutcome {
  int status = 0;  // exit status, or -1
  int signal = 0;
  int err = 0;  // errno of a failed fork / waitpid
};

// On the helper thread: fork, let the child touch, wait for it.
void RunForkChild(const ForkSpec& spec, ForkOutcome* out) {
  pid_t pid = fork();
  if (pid == 0) ChildMain(spec);
  if (pid < 0) {
    out->err = errno;
    return;
  }
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) {
      out->err = errno;
      return;
    }
  }
  if (WIFSIGNALED(wstatus)) out->signal = WTERMSIG(wstatus);
  out->status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
}

ForkSpec ForkSpecOf(Napi::Env env, uint64_t address, uint64_t length, const Napi::Value& options) {
  Napi::Object opts = options.IsObject() ? options.As<Napi::Object>() : Napi::Object::New(env);
  ForkSpec spec;
  spec.base = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(address));
  spec.length = length;
  spec.stride = OptU32(opts, "stride", static_cast<uint32_t>(PageSize()), 1u << 30);
  spec.dontneed = opts.Get("dontneed").ToBoolean().Value();
  spec.mremap = opts.Get("mremap").ToBoolean().Value();
  spec.expect = static_cast<int>(OptU32(opts, "expect", 0, 2));
  spec.mode = OptMode(opts);
  if (spec.stride < 8 || spec.stride % 8 != 0) {
    ThrowRangeError(env, "option stride must be a multiple of 8");
  }
  return spec;
}

// forkTouch(address, length, { mode, stride, dontneed, mremap, expect }, mapping?) ->
// Promise<{status, signal}>. The fork happens on a helper thread: with EVENT_FORK the forking
// thread waits until the event is read, and that must never be the JS thread.
Napi::Value ForkTouch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pin pin(env, info[3]);
  uint64_t address = ArgAddress(info, 0, "address");
  uint64_t length = ArgLength(info, 1, "length");
  const ForkSpec spec = ForkSpecOf(env, address, length, info[2]);
  CheckRange(env, address, length, PageSize(), "forkTouch");
  // Last, after every option getter has run (a getter may unmap the range).
  pin.Check(address, length, "forkTouch");
  RequireAccessible(env, address, length, spec.mode, "forkTouch", "the child");
  auto out = std::make_shared<ForkOutcome>();
  return OffThreadJob::Start(
      env, "userfaultfd.forkTouch", pin.Take(), [spec, out] { RunForkChild(spec, out.get()); },
      [out](Napi::Env env, Napi::Promise::Deferred& deferred) {
        if (out->err != 0) {
          deferred.Reject(MakeSysError(env, {out->err, "fork"}).Value());
          return;
        }
        Napi::Object o = Napi::Object::New(env);
        o.Set("status", out->signal ? env.Null() : Napi::Number::New(env, out->status));
        o.Set("signal", out->signal ? Napi::Number::New(env, out->signal) : env.Null());
        deferred.Resolve(o);
      });
}

// ---- madvise from a helper thread ----
// With EVENT_REMOVE negotiated, madvise(DONTNEED) waits until the REMOVE event is read: from the
// JS thread, with nobody else reading, that would never return.

// madvise(address, length, advice, mapping?) -> Promise<void>
Napi::Value MadviseOffThread(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Pin pin(env, info[3]);
  uint64_t address = ArgAddress(info, 0, "address");
  uint64_t length = ArgLength(info, 1, "length");
  uint64_t advice = ArgU64(info, 2, "advice");
  CheckRange(env, address, length, PageSize(), "madvise");
  if (advice > 0xffff) ThrowRangeError(env, "advice is out of range");
  // madvise(DONTNEED) of memory a new mapping reused would drop someone else's pages.
  pin.Check(address, length, "madvise");
  auto* addr = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(address));
  auto err = std::make_shared<int>(0);
  return OffThreadJob::Start(
      env, "userfaultfd.madvise", pin.Take(),
      [addr, length, advice, err] {
        if (madvise(addr, length, static_cast<int>(advice)) != 0) *err = errno;
      },
      [err](Napi::Env env, Napi::Promise::Deferred& deferred) {
        if (*err != 0) {
          deferred.Reject(MakeSysError(env, {*err, "madvise"}).Value());
        } else {
          deferred.Resolve(env.Undefined());
        }
      });
}

}  // namespace

void InitTesting(Napi::Env env, Napi::Object exports) {
  Napi::Object testing = Napi::Object::New(env);
  testing.Set("touch", Napi::Function::New(env, Touch, "touch"));
  testing.Set("forkTouch", Napi::Function::New(env, ForkTouch, "forkTouch"));
  testing.Set("madvise", Napi::Function::New(env, MadviseOffThread, "madvise"));
  exports.Set("testing", testing);
}
