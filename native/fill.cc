#include "fill.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdio>
#include <mutex>

namespace {

// A read-only mapping of zeros, the source for "zero page" resolutions where UFFDIO_ZEROPAGE is
// not offered (hugetlbfs). Reading it maps the shared zero page; it is never written.
const uint8_t* ZeroSource(size_t len) {
  static std::mutex mutex;
  static void* area = nullptr;
  static size_t area_len = 0;
  std::lock_guard<std::mutex> lock(mutex);
  if (len > area_len) {
    void* fresh = mmap(nullptr, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (fresh == MAP_FAILED) return nullptr;
    area = fresh;  // the smaller one stays mapped: a resolution may be reading it right now
    area_len = len;
  }
  return static_cast<const uint8_t*>(area);
}

}  // namespace

size_t DefaultHugePageSize() {
  static const size_t size = [] {
    size_t kb = 2048;
    if (FILE* f = fopen("/proc/meminfo", "r")) {
      char line[128];
      while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "Hugepagesize: %zu kB", &kb) == 1) break;
      }
      fclose(f);
    }
    return kb * 1024;
  }();
  return size;
}

IoctlResult FillZero(int uffd, uint64_t start, uint64_t len) {
  IoctlResult r = UffdZeropage(uffd, start, len, 0);
  if (r.err != EINVAL) return r;
  const uint8_t* zeros = ZeroSource(len);
  if (zeros == nullptr) return {0, ENOMEM};
  return UffdCopy(uffd, start, reinterpret_cast<uintptr_t>(zeros), len, 0);
}
