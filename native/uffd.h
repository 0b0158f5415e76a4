// The Userfaultfd handle: owns one uffd file descriptor and issues its ioctls.
//
// Every method refuses to run once the handle is closed, so a stale descriptor number (which
// the process may already have reused for another file) is never passed to the kernel.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "fault_engine.h"
#include "range_set.h"
#include "resolve.h"

class UffdHandle : public Napi::ObjectWrap<UffdHandle> {
 public:
  static Napi::Function DefineClass(Napi::Env env);
  explicit UffdHandle(const Napi::CallbackInfo& info);
  ~UffdHandle() override;

  int fd() const { return fd_; }
  // The handle `v` wraps, or nullptr if it is not one (checked by type tag, as the methods check
  // their receiver). For the addon's free functions that take a handle (native/move.cc).
  static UffdHandle* Of(const Napi::Value& v);
  int LiveFd(Napi::Env env) const;  // throws ERR_UFFD_CLOSED once closed

 private:
  Napi::Value FillRange(const Napi::CallbackInfo& info, const char* what, const char* ioctl_name,
                        uint64_t known_modes,
                        IoctlResult (*fill)(int, uint64_t, uint64_t, uint64_t));

  Napi::Value GetFd(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Register(const Napi::CallbackInfo& info);
  Napi::Value Unregister(const Napi::CallbackInfo& info);
  Napi::Value Wake(const Napi::CallbackInfo& info);
  Napi::Value Copy(const Napi::CallbackInfo& info);
  Napi::Value Zeropage(const Napi::CallbackInfo& info);
  Napi::Value WriteProtect(const Napi::CallbackInfo& info);
  Napi::Value Continue(const Napi::CallbackInfo& info);
  Napi::Value Poison(const Napi::CallbackInfo& info);
  Napi::Value Move(const Napi::CallbackInfo& info);
  // The fault engine and native policies (native/fault_engine.h).
  Napi::Value StartEngine(const Napi::CallbackInfo& info);
  Napi::Value StopEngine(const Napi::CallbackInfo& info);
  Napi::Value PauseDelivery(const Napi::CallbackInfo& info);
  Napi::Value RefEngine(const Napi::CallbackInfo& info);
  Napi::Value UnrefEngine(const Napi::CallbackInfo& info);
  Napi::Value AddPolicy(const Napi::CallbackInfo& info);
  Napi::Value RemovePolicy(const Napi::CallbackInfo& info);
  Napi::Value PolicyStats(const Napi::CallbackInfo& info);
  Napi::Value ReadRawEvents(const Napi::CallbackInfo& info);

  // Stops and joins the event thread, and drops what its policies kept alive. Idempotent.
  // The reports JS never took go to `undelivered`, if given.
  void Shutdown(std::vector<FaultReport>* undelivered = nullptr);
  static void OnEnvTeardown(void* self);

  int fd_ = -1;
  bool owns_fd_ = true;
  napi_env env_ = nullptr;
  std::unique_ptr<FaultEngine> engine_;
  bool cleanup_hook_ = false;
  uint32_t next_policy_id_ = 1;
  // What this handle registered for MISSING or MINOR faults (native/range_set.h says why).
  RangeSet faulting_;
  // Copy sources and claims arrays that policies use, kept alive until the policy is removed.
  std::unordered_map<uint32_t, Napi::Reference<Napi::Value>> policy_sources_;
};
