// A native policy: a range of registered memory whose faults the event thread resolves itself,
// with no JS hop. What each kind does with a fault is in the resolver named beside it; how a
// fault finds its policy is in policy_table.h.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "mapping.h"

// How a policy resolves the MISSING faults in its range. WP faults in any policy range are
// resolved by un-protecting, MINOR faults by UFFDIO_CONTINUE, whatever the kind; MISSING faults
// in a continue or unprotect range (memory never populated) get zeros, as anonymous memory
// would. The JS names of the kinds are in policy_parse.cc.
enum class PolicyKind : int {
  kZero,        // resolve_fill.cc: UFFDIO_ZEROPAGE (hugetlbfs: COPY from zeros)
  kCopyBuffer,  // resolve_fill.cc: UFFDIO_COPY from a buffer, at the fault's offset in the range
  kCopyFd,      // resolve_fill.cc: pread at offset + the fault's offset, then UFFDIO_COPY
  kContinue,    // resolve_fill.cc: UFFDIO_CONTINUE (minor faults)
  kUnprotect,   // resolve_fill.cc: UFFDIO_WRITEPROTECT off (WP faults)
  kMoveTable,   // resolve_move.cc: UFFDIO_MOVE from table[unit index]; 0 = zero page
};

struct PolicyStats {
  std::atomic<uint64_t> faults{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> eexist{0};
  std::atomic<uint64_t> retries{0};
  std::atomic<uint64_t> errors{0};
};

struct Policy {
  uint32_t id = 0;
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t unit = 0;  // resolution granularity, a power of two
  PolicyKind kind = PolicyKind::kZero;
  const uint8_t* data = nullptr;  // kCopyBuffer: kept alive by the handle's reference
  size_t data_len = 0;
  // kCopyBuffer over a Mapping's memory: an explicit unmap() of that Mapping leaves the munmap to
  // this use's end (the policy's removal), so the event thread never copies from freed memory or
  // from a new mapping at the same address.
  std::unique_ptr<RegionUse> source_use;
  int fd = -1;  // kCopyFd: the policy's own duplicate of the caller's descriptor
  uint64_t fd_offset = 0;
  std::vector<uint8_t> bounce;  // kCopyFd: one unit, read into before the copy (event thread)
  // kMoveTable: a copy taken when the policy is added. The event thread reads it, and JS could
  // detach, transfer or shrink the BigUint64Array's buffer under a pointer into it.
  std::vector<uint64_t> table;
  // kMoveTable, optional: one byte per unit, set to 1 before the unit's move is tried, so that a
  // concurrent mover that finds the destination mapped can tell "moved on demand" from a conflict.
  // It lies in a SharedArrayBuffer (kept alive by the handle's reference), which cannot be
  // detached.
  uint8_t* claims = nullptr;
  size_t claims_len = 0;
  // kMoveTable: EBUSY results in a row, each retried like EAGAIN (event thread only).
  uint32_t busy_streak = 0;
  PolicyStats stats;

  Policy() = default;
  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;
  // Freed after the event thread can no longer reach it (PolicyTable::Swap).
  ~Policy() {
    if (fd >= 0) close(fd);
  }
};
