// The Userfaultfd handle: owns one uffd file descriptor and issues its ioctls.
//
// Every method refuses to run once the handle is closed, so a stale descriptor number (which
// the process may already have reused for another file) is never passed to the kernel.
#pragma once

#include <napi.h>

#include <cstdint>

class UffdHandle : public Napi::ObjectWrap<UffdHandle> {
 public:
  static Napi::Function DefineClass(Napi::Env env);
  explicit UffdHandle(const Napi::CallbackInfo& info);
  ~UffdHandle() override;

  int fd() const { return fd_; }

 private:
  int LiveFd(Napi::Env env) const;  // throws ERR_UFFD_CLOSED once closed

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

  int fd_ = -1;
  bool owns_fd_ = true;
};
