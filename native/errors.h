// Errors shaped like Node's own system errors.
//
// A failed syscall becomes the TS layer's UffdError (code 'EEXIST', errno -17, syscall 'ioctl',
// ioctl 'UFFDIO_COPY', bytes done before the failure). Bad arguments become TypeError / RangeError
// with Node's codes (ERR_INVALID_ARG_TYPE / ERR_OUT_OF_RANGE).
#pragma once

#include <napi.h>

#include <cstdint>

struct SysErrorInfo {
  int err;                      // positive errno
  const char* syscall;          // 'ioctl', 'userfaultfd', 'mmap', ...
  const char* ioctl = nullptr;  // 'UFFDIO_COPY', ... when syscall is ioctl
  bool has_bytes = false;       // resolving ioctls report progress; others do not
  int64_t bytes = 0;            // bytes done before the failure
  const char* path = nullptr;   // file the call was about, if any
};

// Builds (does not throw) the JS error object.
Napi::Error MakeSysError(Napi::Env env, const SysErrorInfo& info);
[[noreturn]] void ThrowSysError(Napi::Env env, const SysErrorInfo& info);
[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowRangeError(Napi::Env env, const std::string& message);
// A plain Error with one of our own codes (ERR_UFFD_CLOSED, ERR_UFFD_UNMAPPED, ...).
[[noreturn]] void ThrowCodedError(Napi::Env env, const char* code, const std::string& message);
