// The resolving ioctls as plain functions, shared by the JS-facing handle (uffd.cc) and the
// event thread's resolvers (resolve_fill.cc, resolve_move.cc). Each s64 result field is preset to 0
// (kernels before the 2025 stable fix left it unset on the mmap_changing EAGAIN) and read as
// signed.
#pragma once

#include <sys/ioctl.h>

#include <cerrno>
#include <cstdint>

#include "uapi.h"

struct IoctlResult {
  int64_t bytes;  // progress: the whole length on success, the bytes done before a failure
  int err;        // 0 on success, else the errno
};

template <typename Arg>
inline IoctlResult RunResolving(int fd, unsigned long request, Arg* arg, __s64* field) {
  *field = 0;
  if (ioctl(fd, request, arg) == 0) return {*field, 0};
  int err = errno;
  return {*field > 0 ? *field : 0, err};
}

inline IoctlResult UffdCopy(int fd, uint64_t dst, uint64_t src, uint64_t len, uint64_t mode) {
  struct uffdio_copy a = {};
  a.dst = dst;
  a.src = src;
  a.len = len;
  a.mode = mode;
  return RunResolving(fd, UFFDIO_COPY, &a, &a.copy);
}

inline IoctlResult UffdZeropage(int fd, uint64_t start, uint64_t len, uint64_t mode) {
  struct uffdio_zeropage a = {};
  a.range = {start, len};
  a.mode = mode;
  return RunResolving(fd, UFFDIO_ZEROPAGE, &a, &a.zeropage);
}

inline IoctlResult UffdContinue(int fd, uint64_t start, uint64_t len, uint64_t mode) {
  struct uffdio_continue a = {};
  a.range = {start, len};
  a.mode = mode;
  return RunResolving(fd, UFFDIO_CONTINUE, &a, &a.mapped);
}

inline IoctlResult UffdPoison(int fd, uint64_t start, uint64_t len, uint64_t mode) {
  struct uffdio_poison a = {};
  a.range = {start, len};
  a.mode = mode;
  return RunResolving(fd, UFFDIO_POISON, &a, &a.updated);
}

inline IoctlResult UffdMove(int fd, uint64_t dst, uint64_t src, uint64_t len, uint64_t mode) {
  struct uffdio_move a = {};
  a.dst = dst;
  a.src = src;
  a.len = len;
  a.mode = mode;
  return RunResolving(fd, UFFDIO_MOVE, &a, &a.move);
}

// 0 or an errno.
inline int UffdWriteProtect(int fd, uint64_t start, uint64_t len, uint64_t mode) {
  struct uffdio_writeprotect a = {};
  a.range = {start, len};
  a.mode = mode;
  return ioctl(fd, UFFDIO_WRITEPROTECT, &a) == 0 ? 0 : errno;
}

inline int UffdWake(int fd, uint64_t start, uint64_t len) {
  struct uffdio_range r = {start, len};
  return ioctl(fd, UFFDIO_WAKE, &r) == 0 ? 0 : errno;
}
