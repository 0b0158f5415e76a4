// The deadlock guard. A fault the JS thread raises itself in a registered range that no policy
// covers can only be served by a JS handler, and the JS thread that would run it is the one asleep
// in the fault: the process would hang. The event thread recognises the JS thread by its tid
// (THREAD_ID), fills the page as a policy would, and reports it so JS hears why.
#include <cerrno>

#include "args.h"
#include "fill.h"
#include "resolvers.h"

namespace {

// The guard knows no unit: it tries the base page, then the default huge page, since every
// ioctl on a hugetlbfs range (un-protect and CONTINUE included) refuses a base page with EINVAL.
template <typename Resolve>
Resolution BasePageThenHugePage(uint64_t address, Resolve resolve) {
  uint64_t size = PageSize();
  Resolution res = resolve(FaultUnit{address & ~(size - 1), size});
  if (res.result.err == EINVAL) {
    size = DefaultHugePageSize();
    res = resolve(FaultUnit{address & ~(size - 1), size});
  }
  return res;
}

}  // namespace

Resolution ResolveForJsThread(int uffd, const uffd_msg& msg) {
  const uint64_t flags = msg.arg.pagefault.flags;
  return BasePageThenHugePage(msg.arg.pagefault.address, [&](FaultUnit u) {
    if (flags & UFFD_PAGEFAULT_FLAG_WP) return ResolveWriteProtect(uffd, u);
    if (flags & UFFD_PAGEFAULT_FLAG_MINOR) return ResolveMinor(uffd, u);
    return ResolveZero(uffd, u);
  });
}
