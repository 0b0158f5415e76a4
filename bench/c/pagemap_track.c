// C reference for dirty tracking (bench/cases/pagemap.ts, case a): a WP_ASYNC userfaultfd over
// SIZE_MB of anonymous memory; each round writes PERCENT% of the pages at random (untimed), then
// one timed get-and-reset: PAGEMAP_SCAN with WP_MATCHING | CHECK_WPASYNC on WRITTEN, continued
// from walk_end if the vec fills; then the same rounds with the no-vec fast reset. Prints
// {"track_us": median get-and-reset, "reset_us": median fast reset, "pages": last count}.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pagemap_uapi.h"

#define VEC_LEN 4096

int main(int argc, char** argv) {
  long size_mb = argc > 1 ? atol(argv[1]) : 1024;
  int rounds = argc > 2 ? atoi(argv[2]) : 40;
  double percent = argc > 3 ? atof(argv[3]) : 1.0;
  int warmup = argc > 4 ? atoi(argv[4]) : 5;
  long page = sysconf(_SC_PAGESIZE);
  size_t len = (size_t)size_mb << 20;
  long pages = len / page;
  long k = (long)(pages * percent / 100.0);
  char* area = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) { perror("mmap"); return 1; }
  madvise(area, len, MADV_NOHUGEPAGE);
  memset(area, 1, len);

  int uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /* UFFD_USER_MODE_ONLY */);
  if (uffd < 0) { perror("userfaultfd"); return 1; }
  struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED};
  if (ioctl(uffd, UFFDIO_API, &api)) { perror("UFFDIO_API"); return 1; }
  struct uffdio_register reg = {.range = {(unsigned long)area, len}, .mode = UFFDIO_REGISTER_MODE_WP};
  if (ioctl(uffd, UFFDIO_REGISTER, &reg)) { perror("UFFDIO_REGISTER"); return 1; }
  struct uffdio_writeprotect wp = {.range = {(unsigned long)area, len}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
  if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp)) { perror("UFFDIO_WRITEPROTECT"); return 1; }
  int pm = open("/proc/self/pagemap", O_RDONLY);
  if (pm < 0) { perror("pagemap"); return 1; }

  struct page_region* vec = malloc(VEC_LEN * sizeof(*vec));
  uint32_t* order = malloc(pages * sizeof(*order));
  for (long i = 0; i < pages; i++) order[i] = i;
  double* times = malloc(rounds * sizeof(double));
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  long found = 0;
  for (int r = -warmup; r < rounds; r++) {
    // k distinct pages: a partial Fisher-Yates shuffle.
    for (long i = 0; i < k; i++) {
      long j = i + (long)(xorshift64(&seed) % (uint64_t)(pages - i));
      uint32_t t = order[i];
      order[i] = order[j];
      order[j] = t;
      area[(size_t)order[i] * page] = (char)r;
    }
    double t0 = now_us();
    found = 0;
    unsigned long at = (unsigned long)area, end = (unsigned long)area + len;
    long n_regions = 0;
    for (;;) {
      struct pm_scan_arg arg = {.size = sizeof(arg), .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
                                .start = at, .end = end, .vec = (unsigned long)vec, .vec_len = VEC_LEN,
                                .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN};
      int n = ioctl(pm, PAGEMAP_SCAN, &arg);
      if (n < 0) { perror("PAGEMAP_SCAN"); return 1; }
      n_regions += n;
      for (int i = 0; i < n; i++) found += (vec[i].end - vec[i].start) / page;
      // The kernel leaves walk_end stale (at its last 512-region bounce-buffer refill) when a
      // walk that refilled completes; a walk_end before the last region's end means "done".
      if (n > 0 && arg.walk_end < vec[n - 1].end) break;
      if (arg.walk_end >= end) break;
      at = arg.walk_end;
    }
    double dt = now_us() - t0;
    if (r >= 0) times[r] = dt;
    if (found != k) { fprintf(stderr, "round %d: found %ld pages, wrote %ld\n", r, found, k); return 1; }
    (void)n_regions;
  }
  double track_us = median_of(times, rounds);
  // The fast path: the same writes, then a reset with no output vector at all.
  for (int r = -warmup; r < rounds; r++) {
    for (long i = 0; i < k; i++) {
      long j = i + (long)(xorshift64(&seed) % (uint64_t)(pages - i));
      uint32_t t = order[i];
      order[i] = order[j];
      order[j] = t;
      area[(size_t)order[i] * page] = (char)r;
    }
    double t0 = now_us();
    struct pm_scan_arg arg = {.size = sizeof(arg), .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
                              .start = (unsigned long)area, .end = (unsigned long)area + len,
                              .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN};
    if (ioctl(pm, PAGEMAP_SCAN, &arg) < 0) { perror("PAGEMAP_SCAN reset"); return 1; }
    double dt = now_us() - t0;
    if (r >= 0) times[r] = dt;
  }
  printf("{\"track_us\":%.3f,\"reset_us\":%.3f,\"pages\":%ld}\n", track_us, median_of(times, rounds), found);
  return 0;
}
