// wpFaultsDelivered(): whether a write to a write-protected page really raises a WP fault here.
//
// UFFDIO_API's PAGEFAULT_FLAG_WP bit does not prove it. Before the kernel learnt to hide the bit
// where the architecture has no uffd-wp page-table bit, it offered it everywhere: Linux 5.10 on
// arm64 takes WP registrations and UFFDIO_WRITEPROTECT, which only make the pages read-only, and
// the next write is then an ordinary copy-on-write fault that no handler hears of. A dirty
// tracker or a snapshot would miss every write without a word. So the library asks once, on a
// throwaway descriptor: write-protect one populated page, let a thread write to it, and see
// which comes first, a WP fault on the uffd or the end of the write. Each outcome is certain, so
// no timer decides; a bound stays only as a guard against a kernel that does neither.
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <thread>

#include "addon.h"
#include "args.h"
#include "uapi.h"

namespace {

// Every resource of one check, released in the destructor whatever path returns.
struct WpProbe {
  int uffd = -1;
  int done = -1;  // eventfd: the writer's write completed
  char* page = nullptr;
  size_t size = 0;
  std::thread writer;

  ~WpProbe() {
    // Closing the uffd wakes a writer still asleep in the fault (the kernel releases every
    // waiter), so the join below cannot wait forever.
    if (uffd >= 0) close(uffd);
    if (writer.joinable()) writer.join();
    if (done >= 0) close(done);
    if (page != nullptr) munmap(page, size);
  }

  bool Open() {
    uffd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY));
    // Linux < 5.11 knows no UFFD_USER_MODE_ONLY (EINVAL): a plain descriptor does here.
    if (uffd < 0 && errno == EINVAL)
      uffd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
    if (uffd < 0) return false;
    struct uffdio_api api = {};
    api.api = UFFD_API;
    api.features = UFFD_FEATURE_PAGEFAULT_FLAG_WP;
    return ioctl(uffd, UFFDIO_API, &api) == 0;
  }

  // One populated page, registered for WP and write-protected. False where the kernel refuses.
  bool Protect() {
    size = PageSize();
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    page = static_cast<char*>(p);
    page[0] = 1;  // present before it is protected: the write below can only raise a WP fault
    struct uffdio_register reg = {};
    reg.range.start = reinterpret_cast<uintptr_t>(page);
    reg.range.len = size;
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) return false;
    struct uffdio_writeprotect wp = {};
    wp.range = reg.range;
    wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
    return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) == 0;
  }

  void StartWriter() {
    done = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (done < 0) return;
    char* target = page;
    int signal_fd = done;
    writer = std::thread([target, signal_fd] {
      *static_cast<volatile char*>(target) = 2;
      uint64_t one = 1;
      ssize_t ignored = write(signal_fd, &one, sizeof one);
      (void)ignored;
    });
  }

  // True if the uffd reports the write as a WP fault before the write completes.
  bool FaultCameFirst() {
    if (done < 0 || !writer.joinable()) return false;
    struct pollfd fds[2] = {{uffd, POLLIN, 0}, {done, POLLIN, 0}};
    int n;
    do n = poll(fds, 2, 10000);
    while (n < 0 && errno == EINTR);
    if (n <= 0 || !(fds[0].revents & POLLIN)) return false;
    struct uffd_msg msg = {};
    bool wp_fault = read(uffd, &msg, sizeof msg) == static_cast<ssize_t>(sizeof msg) &&
                    msg.event == UFFD_EVENT_PAGEFAULT &&
                    (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP);
    // Un-protect (which wakes the writer) so that the join does not depend on the close.
    struct uffdio_writeprotect wp = {};
    wp.range.start = reinterpret_cast<uintptr_t>(page);
    wp.range.len = size;
    wp.mode = 0;
    ioctl(uffd, UFFDIO_WRITEPROTECT, &wp);
    return wp_fault;
  }
};

Napi::Value WpFaultsDelivered(const Napi::CallbackInfo& info) {
  bool delivered = false;
  try {
    WpProbe probe;
    if (probe.Open() && probe.Protect()) {
      probe.StartWriter();
      delivered = probe.FaultCameFirst();
    }
  } catch (const std::exception&) {
    // std::thread could not start: the question stays unanswered, so WP is not claimed.
    delivered = false;
  }
  return Napi::Boolean::New(info.Env(), delivered);
}

}  // namespace

void InitWpCheck(Napi::Env env, Napi::Object exports) {
  exports.Set("wpFaultsDelivered",
              Napi::Function::New(env, WpFaultsDelivered, "wpFaultsDelivered"));
}
