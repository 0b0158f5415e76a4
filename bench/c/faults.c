// C reference for the fault round trip: the work bench/cases/faults.ts measures through the
// binding, done by hand. A handler thread polls the uffd, reads up to 64 messages and resolves
// each fault with UFFDIO_COPY from a source buffer at the fault's offset; toucher threads read one
// word of every page of a registered anonymous area (thread i takes pages i, i+N, ...), each
// touch waiting for its fault to be resolved.
//
//   faults PAGES RUNS THREADS
//
// Prints {"us_per_fault": median over RUNS of wall time / PAGES, "handler_cpu_us": the handler
// thread's CPU time / faults over all runs, "runs": [...]} where the wall time runs from starting
// the touchers to the last one done (the area is dropped with MADV_DONTNEED between runs, so every
// run faults every page again). CPU time barely moves with other load on the machine, which wall
// time on a small shared VM does a lot.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_THREADS 64

static long page;
static long pages;
static int uffd;
static int stop_fd;
static char* area;
static char* src;
static int nthreads;
static double handler_cpu_us;  // set by the handler thread as it stops

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void die(const char* what) {
  perror(what);
  exit(1);
}

// The handler thread: what our event thread does for a copyFrom-buffer policy.
static void* handler(void* arg) {
  (void)arg;
  struct uffd_msg msgs[BATCH];
  for (;;) {
    struct pollfd fds[2] = {{stop_fd, POLLIN, 0}, {uffd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (fds[0].revents) {
      struct timespec ts;
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
      handler_cpu_us = ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
      return NULL;
    }
    ssize_t got = read(uffd, msgs, sizeof msgs);
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      die("read");
    }
    for (long i = 0; i < got / (long)sizeof(struct uffd_msg); i++) {
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
      unsigned long dst = msgs[i].arg.pagefault.address & ~(page - 1);
      struct uffdio_copy c = {.dst = dst, .src = (unsigned long)(src + (dst - (unsigned long)area)), .len = page};
      if (ioctl(uffd, UFFDIO_COPY, &c) && errno != EEXIST) die("UFFDIO_COPY");
      if (c.copy < 0 && c.copy != -EEXIST) die("UFFDIO_COPY progress");
    }
  }
}

static void* toucher(void* arg) {
  long index = (long)arg;
  uint64_t sum = 0;
  for (long p = index; p < pages; p += nthreads) sum += *(volatile uint64_t*)(area + p * page);
  return (void*)(uintptr_t)sum;
}

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  pages = argc > 1 ? atol(argv[1]) : 16384;
  int runs = argc > 2 ? atoi(argv[2]) : 5;
  nthreads = argc > 3 ? atoi(argv[3]) : 1;
  if (pages < 1 || runs < 1 || runs > 100 || nthreads < 1 || nthreads > MAX_THREADS) {
    fprintf(stderr, "usage: faults PAGES RUNS THREADS\n");
    return 2;
  }
  page = sysconf(_SC_PAGESIZE);
  uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /* UFFD_USER_MODE_ONLY */);
  if (uffd < 0) die("userfaultfd");
  // THREAD_ID, as our library negotiates by default (its deadlock guard reads it).
  struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_THREAD_ID};
  if (ioctl(uffd, UFFDIO_API, &api)) die("UFFDIO_API");
  stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  area = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  src = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (area == MAP_FAILED || src == MAP_FAILED) die("mmap");
  for (long p = 0; p < pages; p++) memset(src + p * page, (int)(p & 0xff), page);
  struct uffdio_register reg = {.range = {(unsigned long)area, pages * page}, .mode = UFFDIO_REGISTER_MODE_MISSING};
  if (ioctl(uffd, UFFDIO_REGISTER, &reg)) die("UFFDIO_REGISTER");

  pthread_t h;
  pthread_create(&h, NULL, handler, NULL);
  double results[100];
  for (int r = 0; r < runs; r++) {
    pthread_t t[MAX_THREADS];
    double t0 = now_us();
    for (long i = 0; i < nthreads; i++) pthread_create(&t[i], NULL, toucher, (void*)i);
    for (int i = 0; i < nthreads; i++) pthread_join(t[i], NULL);
    results[r] = (now_us() - t0) / pages;
    // Every page must now hold the source's bytes.
    for (long p = 0; p < pages; p += 97) {
      if (area[p * page] != src[p * page]) {
        fprintf(stderr, "page %ld not restored\n", p);
        return 1;
      }
    }
    if (madvise(area, pages * page, MADV_DONTNEED)) die("madvise");
  }
  uint64_t one = 1;
  if (write(stop_fd, &one, sizeof one) != sizeof one) die("write");
  pthread_join(h, NULL);

  double sorted[100];
  memcpy(sorted, results, runs * sizeof(double));
  qsort(sorted, runs, sizeof(double), cmp);
  printf("{\"us_per_fault\":%.4f,\"handler_cpu_us\":%.4f,\"runs\":[", sorted[runs / 2],
         handler_cpu_us / ((double)pages * runs));
  for (int r = 0; r < runs; r++) printf("%s%.4f", r ? "," : "", results[r]);
  printf("]}\n");
  return 0;
}
