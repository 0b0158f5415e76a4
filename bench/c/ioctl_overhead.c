// C reference for the per-call cost of the ioctl wrappers: the same loops bench/cases/ioctl.ts
// runs through the binding. Prints {"wake_us":..,"copy_us":..} per call.
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(int argc, char** argv) {
  long iterations = argc > 1 ? atol(argv[1]) : 100000;
  long pages = argc > 2 ? atol(argv[2]) : 4096;
  long page = sysconf(_SC_PAGESIZE);
  int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /* UFFD_USER_MODE_ONLY */);
  if (fd < 0) { perror("userfaultfd"); return 1; }
  struct uffdio_api api = {.api = UFFD_API};
  if (ioctl(fd, UFFDIO_API, &api)) { perror("UFFDIO_API"); return 1; }
  char* area = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char* src = aligned_alloc(page, page);
  memset(src, 0x5a, page);
  struct uffdio_register reg = {.range = {(unsigned long)area, pages * page}, .mode = UFFDIO_REGISTER_MODE_MISSING};
  if (ioctl(fd, UFFDIO_REGISTER, &reg)) { perror("UFFDIO_REGISTER"); return 1; }

  struct uffdio_range range = {(unsigned long)area, page};
  double t0 = now_us();
  for (long i = 0; i < iterations; i++) {
    if (ioctl(fd, UFFDIO_WAKE, &range)) { perror("UFFDIO_WAKE"); return 1; }
  }
  double wake = (now_us() - t0) / iterations;

  // COPY one page at a time over the area, then drop it with MADV_DONTNEED; the copy is timed.
  double copy_total = 0;
  long copies = 0;
  for (int round = 0; round < 4; round++) {
    double t1 = now_us();
    for (long p = 0; p < pages; p++) {
      struct uffdio_copy c = {.dst = (unsigned long)(area + p * page), .src = (unsigned long)src, .len = page};
      if (ioctl(fd, UFFDIO_COPY, &c)) { perror("UFFDIO_COPY"); return 1; }
    }
    copy_total += now_us() - t1;
    copies += pages;
    madvise(area, pages * page, MADV_DONTNEED);
  }
  printf("{\"wake_us\":%.4f,\"copy_us\":%.4f}\n", wake, copy_total / copies);
  return 0;
}
