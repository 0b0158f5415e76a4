// Shared by the PAGEMAP_SCAN C references: the project's own uAPI definitions (native/uapi.h,
// which fills in what Debian 12's 6.1 headers lack) and small timing helpers.
#pragma once
#include <sys/ioctl.h>

#include "../../native/uapi.h"

#include <stdint.h>
#include <time.h>

static inline double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static inline uint64_t xorshift64(uint64_t* s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static inline double median_of(double* v, int n) {
  qsort(v, n, sizeof(double), cmp_double);
  return v[n / 2];
}
