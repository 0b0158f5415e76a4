// C reference for finding present pages (bench/cases/pagemap.ts, case b): SIZE_MB of anonymous
// memory with PERCENT% of its pages touched, either at random (LAYOUT "random": every page
// table is populated, the worst case for a scan) or as 2 MiB runs at random places ("runs": a
// mostly empty address space); then, REPS times each, (1) PAGEMAP_SCAN
// for PRESENT, and (2) pread of /proc/self/pagemap and a decode of bit 63 into runs. Both must
// find the same pages. Prints {"scan_us", "read_us", "regions", "pages"} (medians per scan).
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pagemap_uapi.h"

#define VEC_LEN 8192

int main(int argc, char** argv) {
  long size_mb = argc > 1 ? atol(argv[1]) : 1024;
  double percent = argc > 2 ? atof(argv[2]) : 1.0;
  int reps = argc > 3 ? atoi(argv[3]) : 21;
  int runs_layout = argc > 4 && strcmp(argv[4], "runs") == 0;
  long page = sysconf(_SC_PAGESIZE);
  size_t len = (size_t)size_mb << 20;
  long pages = len / page;
  long k = (long)(pages * percent / 100.0);
  char* area = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) { perror("mmap"); return 1; }
  madvise(area, len, MADV_NOHUGEPAGE);
  uint64_t seed = 0x2545f4914f6cdd1dull;
  long per_run = (2 << 20) / page;
  if (runs_layout) {
    for (long i = 0; i < k / per_run; i++) {
      size_t at = (size_t)(xorshift64(&seed) % (uint64_t)(pages / per_run)) * per_run * page;
      memset(area + at, 1, per_run * page);
    }
  } else {
    for (long i = 0; i < k; i++) area[(size_t)(xorshift64(&seed) % (uint64_t)pages) * page] = 1;
  }
  int pm = open("/proc/self/pagemap", O_RDONLY);
  if (pm < 0) { perror("pagemap"); return 1; }
  struct page_region* vec = malloc(VEC_LEN * sizeof(*vec));
  uint64_t* entries = malloc(pages * sizeof(uint64_t));
  uint64_t* runs = malloc(pages * sizeof(uint64_t));
  double* scan_t = malloc(reps * sizeof(double));
  double* read_t = malloc(reps * sizeof(double));
  long scan_regions = 0, scan_pages = 0, read_regions = 0, read_pages = 0;
  for (int r = 0; r < reps; r++) {
    double t0 = now_us();
    unsigned long at = (unsigned long)area, end = (unsigned long)area + len;
    scan_regions = scan_pages = 0;
    for (;;) {
      struct pm_scan_arg arg = {.size = sizeof(arg), .start = at, .end = end, .vec = (unsigned long)vec,
                                .vec_len = VEC_LEN, .category_mask = PAGE_IS_PRESENT, .return_mask = PAGE_IS_PRESENT};
      int n = ioctl(pm, PAGEMAP_SCAN, &arg);
      if (n < 0) { perror("PAGEMAP_SCAN"); return 1; }
      scan_regions += n;
      for (int i = 0; i < n; i++) scan_pages += (vec[i].end - vec[i].start) / page;
      // The kernel leaves walk_end stale (at its last 512-region bounce-buffer refill) when a
      // walk that refilled completes; a walk_end before the last region's end means "done".
      if (n > 0 && arg.walk_end < vec[n - 1].end) break;
      if (arg.walk_end >= end) break;
      at = arg.walk_end;
    }
    scan_t[r] = now_us() - t0;

    t0 = now_us();
    off_t off = (off_t)((unsigned long)area / page) * 8;
    ssize_t got = pread(pm, entries, pages * 8, off);
    if (got != pages * 8) { perror("pread"); return 1; }
    read_regions = read_pages = 0;
    long run_start = -1;
    for (long i = 0; i <= pages; i++) {
      int present = i < pages && (entries[i] >> 63);
      if (present && run_start < 0) run_start = i;
      if (!present && run_start >= 0) {
        runs[read_regions * 2 % pages] = run_start;
        read_regions++;
        read_pages += i - run_start;
        run_start = -1;
      }
    }
    read_t[r] = now_us() - t0;
  }
  if (scan_regions != read_regions || scan_pages != read_pages) {
    fprintf(stderr, "scan found %ld/%ld, read %ld/%ld\n", scan_regions, scan_pages, read_regions, read_pages);
    return 1;
  }
  printf("{\"scan_us\":%.3f,\"read_us\":%.3f,\"regions\":%ld,\"pages\":%ld}\n", median_of(scan_t, reps),
         median_of(read_t, reps), scan_regions, scan_pages);
  return 0;
}
