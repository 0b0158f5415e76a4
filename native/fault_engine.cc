#include "fault_engine.h"

#include "args.h"
#include "errors.h"
#include "fill.h"

namespace {
constexpr size_t kMaxHeld = 1 << 16;  // messages held for JS while it is paused
}  // namespace

FaultEngine::FaultEngine(Napi::Env env, int uffd, Napi::Function callback, long guard_tid)
    : ring_(kMaxHeld + EventThread::RingSlack()),
      handshake_(ring_),
      policies_(uffd, guard_tid),
      thread_(uffd, ring_, policies_, handshake_),
      delivery_(env, callback),
      main_loop_(env, uffd, handshake_, delivery_, thread_) {
  if (!ring_.ok()) ThrowSysError(env, {ENOMEM, "mmap"});
  // Computed here, once: the event thread must not open files (stdio allocates).
  DefaultHugePageSize();
  PageSize();
  if (int err = thread_.Init()) ThrowSysError(env, {err, "eventfd"});
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    ThrowRangeError(env, "no event loop to deliver events to");
  }
  async_ = new uv_async_t;
  int err = uv_async_init(loop, async_, OnAsync);
  if (err != 0) {
    delete async_;
    async_ = nullptr;
    ThrowSysError(env, {-err, "uv_async_init"});
  }
  async_->data = this;
  UpdateMainLoop();
  thread_.Start(async_);
}

FaultEngine::~FaultEngine() { Stop(); }

void FaultEngine::Stop(std::vector<FaultReport>* undelivered) {
  if (stopped_) return;
  stopped_ = true;
  UpdateMainLoop();  // closes the main-loop reader before the descriptor can be closed
  thread_.Stop();
  // uv_close stops it at once (no OnAsync after this); the handle is freed by the loop.
  async_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(async_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
  async_ = nullptr;
  delivery_.Reset();
  size_t count = 0;
  const RingSlot* left = ring_.Peek(&count);
  CloseForkFds(left, count);
  // Reports JS never took (a deadlock-guard notice, a failed resolution) are errors someone must
  // hear of: the caller gets them.
  for (size_t i = 0; undelivered != nullptr && i < count; i++) {
    if (left[i].kind == SlotKind::kReport) undelivered->push_back(left[i].report);
  }
  ring_.Take(count);
}

void FaultEngine::SetPaused(bool paused) {
  if (stopped_) return;
  paused_ = paused;
  UpdateMainLoop();
  // Resumed: what waited in the ring goes first, from the loop (not from inside this call).
  if (!paused) uv_async_send(async_);
}

// While unref'd and without policies the callback is a weak reference: nothing then keeps the
// Userfaultfd (which the callback closes over) alive, so one the program dropped is collected,
// and its finalizer stops this engine and closes the descriptor. Faults with nobody left to
// serve them would wait forever; after the close the kernel lets them fault normally. A policy
// keeps the reference strong: it serves faults that would otherwise be filled that way.
void FaultEngine::UpdateCallbackStrength() { delivery_.SetStrong(refed_ || !policies_.Empty()); }

void FaultEngine::Ref() {
  refed_ = true;
  UpdateCallbackStrength();
  if (async_) uv_ref(reinterpret_cast<uv_handle_t*>(async_));
  main_loop_.SetRef(true);
}

void FaultEngine::Unref() {
  refed_ = false;
  UpdateCallbackStrength();
  if (async_) uv_unref(reinterpret_cast<uv_handle_t*>(async_));
  main_loop_.SetRef(false);
}

bool FaultEngine::AddPolicy(std::shared_ptr<Policy> policy) {
  if (!policies_.Add(std::move(policy))) return false;
  // Policies never wait for JS: from now on only the event thread reads.
  UpdateMainLoop();
  UpdateCallbackStrength();
  return true;
}

bool FaultEngine::RemovePolicy(uint32_t id) {
  if (!policies_.Remove(id)) return false;
  UpdateMainLoop();
  UpdateCallbackStrength();
  return true;
}

void FaultEngine::UpdateMainLoop() {
  const bool want = !stopped_ && !paused_ && policies_.Empty();
  if (want) {
    main_loop_.Start(refed_);
  } else {
    main_loop_.Stop();
  }
}

void FaultEngine::OnAsync(uv_async_t* handle) {
  if (handle->data != nullptr) static_cast<FaultEngine*>(handle->data)->Drain();
}

void FaultEngine::Drain() {
  if (stopped_) return;
  std::vector<uffd_msg> msgs;
  std::vector<FaultReport> reports;
  if (delivery_.Take(ring_, paused_, &msgs, &reports)) {
    thread_.RoomMade();
    main_loop_.Resume();
  }
  delivery_.Send(msgs, reports);  // last: the callback may close the uffd, destroying this engine
}
