// Filling a unit of registered memory, as every resolver does it: with zeros (ZEROPAGE, or COPY
// from zeros where the kernel offers no ZEROPAGE), continuing after partial progress.
#pragma once

#include <cstddef>
#include <cstdint>

#include "resolve.h"

// The system's default huge page size (hugetlbfs), read from /proc/meminfo once. Call it first on
// the JS thread: the event thread must not open files (stdio allocates).
size_t DefaultHugePageSize();

// Fills [start, start+len) with zeros: ZEROPAGE, or COPY from zeros where ZEROPAGE is EINVAL.
IoctlResult FillZero(int uffd, uint64_t start, uint64_t len);

// Runs a fill that may make partial progress, continuing from where the kernel stopped.
// `fill(done)` resolves [start + done, end); the result is the progress over the whole length.
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
