// C reference for bench/cases/move.ts: moving SIZE bytes between two areas in UNIT-sized steps,
// by UFFDIO_MOVE, by UFFDIO_COPY + MADV_DONTNEED, and by plain memcpy. Each figure is the best
// of ROUNDS passes over the whole size, in milliseconds (the JS side takes its best too); areas
// ping-pong (A->B, B->A) so every pass starts from the same state.
//
// usage: move WHAT SIZE_MIB ROUNDS IDLE_THREADS, WHAT one of move4k move2m copy4k copy2m memcpy.
// One figure per process, so that the caller can interleave C and JS samples: on a shared
// machine the load drifts, and interleaving keeps the drift out of the ratio.
// IDLE_THREADS threads are started and left blocked, because the Node process we compare with
// has that many: every UFFDIO_MOVE clears a page table entry and flushes the TLB, and in a
// multi-threaded process that flush costs more (measured here: ~1.05 us per 4 KiB move alone,
// ~1.1-1.3 us with 6 blocked threads). Without them the ratio would measure thread count.
//
// Prints {"ms":..} (and "huge": PMDs the destination holds after one pass, for move2m).
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// MOVE (6.8) and PAGEMAP_SCAN (6.7) come from the project's own uAPI header: Debian 12's are 6.1.
#include "../../native/uapi.h"

#define PMD (2ul << 20)

static int uffd;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char* what) {
  perror(what);
  exit(1);
}

static void* idle(void* arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static double best(double* v, int n) {
  qsort(v, n, sizeof *v, cmp);
  return v[0];
}

// Two PMD-aligned areas of `size` bytes each, registered MISSING; A filled, B empty.
static void areas(size_t size, int huge, char** a, char** b) {
  char* raw = mmap(NULL, 2 * size + PMD, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) die("mmap");
  *a = (char*)(((unsigned long)raw + PMD - 1) & ~(PMD - 1));
  *b = *a + size;
  if (madvise(*a, 2 * size, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE)) die("madvise");
  memset(*a, 0x5a, size);
  struct uffdio_register reg = {.range = {(unsigned long)*a, 2 * size},
                                .mode = UFFDIO_REGISTER_MODE_MISSING};
  if (ioctl(uffd, UFFDIO_REGISTER, &reg)) die("UFFDIO_REGISTER");
}

static double move_pass(char* s, char* d, size_t size, size_t unit) {
  double t = now_ms();
  for (size_t o = 0; o < size; o += unit) {
    struct uffdio_move m = {.dst = (unsigned long)(d + o), .src = (unsigned long)(s + o), .len = unit};
    if (ioctl(uffd, UFFDIO_MOVE, &m)) die("UFFDIO_MOVE");
  }
  return now_ms() - t;
}

static double copy_pass(char* s, char* d, size_t size, size_t unit) {
  double t = now_ms();
  for (size_t o = 0; o < size; o += unit) {
    struct uffdio_copy c = {.dst = (unsigned long)(d + o), .src = (unsigned long)(s + o), .len = unit};
    if (ioctl(uffd, UFFDIO_COPY, &c)) die("UFFDIO_COPY");
    if (madvise(s + o, unit, MADV_DONTNEED)) die("madvise");
  }
  return now_ms() - t;
}

static double run(size_t size, size_t unit, int huge, int copy, int rounds) {
  char *a, *b;
  areas(size, huge, &a, &b);
  double v[64];
  for (int r = 0; r < rounds; r++) {
    char* s = (r & 1) ? b : a;
    char* d = (r & 1) ? a : b;
    v[r] = copy ? copy_pass(s, d, size, unit) : move_pass(s, d, size, unit);
  }
  munmap(a, 2 * size);
  return best(v, rounds);
}

// Huge pages the destination holds after a 2 MiB move pass: proves the PMD path was taken.
static long huge_after_move(size_t size, int rounds) {
  char *a, *b;
  areas(size, 1, &a, &b);
  move_pass(a, b, size, PMD);
  int pm = open("/proc/self/pagemap", O_RDONLY);
  struct page_region v[64];
  struct pm_scan_arg arg = {.size = sizeof arg, .start = (unsigned long)b,
                            .end = (unsigned long)b + size, .vec = (unsigned long)v, .vec_len = 64,
                            .category_mask = PAGE_IS_HUGE, .return_mask = PAGE_IS_HUGE};
  long n = ioctl(pm, PAGEMAP_SCAN, &arg), huge = 0;
  for (long i = 0; i < n; i++) huge += (v[i].end - v[i].start) / PMD;
  close(pm);
  munmap(a, 2 * size);
  (void)rounds;
  return huge;
}

static double memcpy_run(size_t size, int rounds) {
  char* a = mmap(NULL, 2 * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char* b = a + size;
  memset(a, 0x5a, 2 * size);  // both populated: memcpy's best case, no faults in the pass
  double v[64];
  for (int r = 0; r < rounds; r++) {
    double t = now_ms();
    memcpy((r & 1) ? a : b, (r & 1) ? b : a, size);
    v[r] = now_ms() - t;
  }
  munmap(a, 2 * size);
  return best(v, rounds);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: move WHAT [SIZE_MIB [ROUNDS [IDLE_THREADS]]]\n");
    return 2;
  }
  const char* what = argv[1];
  size_t size = (size_t)(argc > 2 ? atol(argv[2]) : 64) << 20;
  int rounds = argc > 3 ? atoi(argv[3]) : 5;
  int threads = argc > 4 ? atoi(argv[4]) : 0;
  if (rounds < 1 || rounds > 64) rounds = 5;
  for (int i = 0; i < threads; i++) {
    pthread_t t;
    pthread_create(&t, NULL, idle, NULL);
  }
  uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /* UFFD_USER_MODE_ONLY */);
  if (uffd < 0) die("userfaultfd");
  struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_MOVE};
  if (ioctl(uffd, UFFDIO_API, &api)) die("UFFDIO_API");
  if (!strcmp(what, "move4k")) {
    printf("{\"ms\":%.4f}\n", run(size, 4096, 0, 0, rounds));
  } else if (!strcmp(what, "move2m")) {
    double ms = run(size, PMD, 1, 0, rounds);
    printf("{\"ms\":%.4f,\"huge\":%ld}\n", ms, huge_after_move(size, rounds));
  } else if (!strcmp(what, "copy4k")) {
    printf("{\"ms\":%.4f}\n", run(size, 4096, 0, 1, rounds));
  } else if (!strcmp(what, "copy2m")) {
    printf("{\"ms\":%.4f}\n", run(size, PMD, 0, 1, rounds));
  } else if (!strcmp(what, "memcpy")) {
    printf("{\"ms\":%.4f}\n", memcpy_run(size, rounds));
  } else {
    fprintf(stderr, "unknown measurement %s\n", what);
    return 2;
  }
  return 0;
}
