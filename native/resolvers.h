// The resolvers: what the event thread does with one fault, one function per way of resolving
// it. The policy table (policy_table.cc) picks the resolver, counts the result and reports
// failures; a resolver only fills memory and says how it went.
#pragma once

#include <cstdint>

#include "policy.h"
#include "resolve.h"
#include "uapi.h"

// The unit of memory one fault resolves: the fault's page rounded to the policy's unit, clipped
// to the policy's range (or, for the deadlock guard, the page or huge page it faulted on).
struct FaultUnit {
  uint64_t start;
  uint64_t len;
};

struct Resolution {
  IoctlResult result;
  const char* ioctl;  // what failed, for the report: a string literal
  FaultUnit unit;     // what was resolved (the guard may widen it to a huge page)
};

// resolve_fill.cc: WP faults in any policy range, MINOR faults in any policy range, and the
// MISSING faults of the zero, copy-buffer, copy-fd, continue and unprotect kinds.
Resolution ResolveWriteProtect(int uffd, FaultUnit unit);
Resolution ResolveMinor(int uffd, FaultUnit unit);
Resolution ResolveZero(int uffd, FaultUnit unit);
Resolution ResolveCopyBuffer(int uffd, const Policy& policy, FaultUnit unit);
// `js_thread`: the faulting thread is the JS thread, which cannot wait for a JS handler.
Resolution ResolveCopyFd(int uffd, Policy& policy, FaultUnit unit, bool js_thread);

// resolve_move.cc: the MISSING faults of a move-table policy.
Resolution ResolveMoveTable(int uffd, Policy& policy, FaultUnit unit);

// deadlock_guard.cc: a fault the JS thread itself raised outside every policy. Nobody else could
// resolve it (the JS thread is asleep in it), so it is filled as a policy would (zeros,
// un-protect, CONTINUE) and reported.
Resolution ResolveForJsThread(int uffd, const uffd_msg& msg);
