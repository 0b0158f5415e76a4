// userfaultfd and PAGEMAP_SCAN definitions.
//
// The system headers are used where they exist; what they lack (Debian 12 ships 6.1 headers:
// no MOVE, POISON, WP_ASYNC, WP_UNPOPULATED, PAGEMAP_SCAN) is defined here from the kernel's
// uAPI. Nothing is switched on the header version at compile time: which features the running
// kernel has is found out at run time (UFFDIO_API, REGISTER's ioctl mask, PAGEMAP_SCAN's EINVAL).
// The static_asserts at the end pin every struct we pass to the kernel to its uAPI layout, so a
// header of ours that drifted from the kernel's fails the build instead of corrupting an ioctl.
#pragma once

#include <linux/fs.h>
#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>

// Valid C as well as C++: the benchmarks' C references (bench/c) include it too.
#include <stddef.h>
#include <stdint.h>
#ifndef __cplusplus
#include <assert.h>  // static_assert, in C11
#endif

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

#ifndef USERFAULTFD_IOC
#define USERFAULTFD_IOC 0xAA
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

// ---- Features (bit numbers are uAPI; 17 are known) ----
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif

#ifndef UFFD_PAGEFAULT_FLAG_MINOR
#define UFFD_PAGEFAULT_FLAG_MINOR (1 << 2)
#endif

#ifndef UFFDIO_REGISTER_MODE_MINOR
#define UFFDIO_REGISTER_MODE_MINOR ((__u64)1 << 2)
#endif

// ---- Ioctl numbers (the bit index in the ioctls masks the kernel reports) ----
#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
#endif
#ifndef _UFFDIO_CONTINUE
#define _UFFDIO_CONTINUE (0x07)
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
#endif

// ---- CONTINUE (5.13; the WP mode came in 6.6) ----
#ifndef UFFDIO_CONTINUE
struct uffdio_continue {
  struct uffdio_range range;
  __u64 mode;
  __s64 mapped;
};
#define UFFDIO_CONTINUE _IOWR(UFFDIO, _UFFDIO_CONTINUE, struct uffdio_continue)
#endif
#ifndef UFFDIO_CONTINUE_MODE_DONTWAKE
#define UFFDIO_CONTINUE_MODE_DONTWAKE ((__u64)1 << 0)
#endif
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif

// ---- POISON (6.6) ----
#ifndef UFFDIO_POISON
struct uffdio_poison {
  struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
  __u64 mode;
  __s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

// ---- MOVE (6.8) ----
#ifndef UFFDIO_MOVE
struct uffdio_move {
  __u64 dst;
  __u64 src;
  __u64 len;
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
  __u64 mode;
  __s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

#ifndef UFFDIO_COPY_MODE_WP
#define UFFDIO_COPY_MODE_WP ((__u64)1 << 1)
#endif

// ---- PAGEMAP_SCAN (6.7), an ioctl on /proc/PID/pagemap ----
#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)

struct page_region {
  __u64 start;
  __u64 end;
  __u64 categories;
};

#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)

struct pm_scan_arg {
  __u64 size;
  __u64 flags;
  __u64 start;
  __u64 end;
  __u64 walk_end;
  __u64 vec;
  __u64 vec_len;
  __u64 max_pages;
  __u64 category_inverted;
  __u64 category_mask;
  __u64 category_anyof_mask;
  __u64 return_mask;
};

#define PAGEMAP_IOCTL_MAGIC 'f'
#define PAGEMAP_SCAN _IOWR(PAGEMAP_IOCTL_MAGIC, 16, struct pm_scan_arg)
#endif
#ifndef PAGE_IS_GUARD
#define PAGE_IS_GUARD (1 << 8)
#endif

// ---- Layout checks against the kernel's uAPI ----
static_assert(sizeof(struct uffd_msg) == 32, "uffd_msg is 32 bytes");
static_assert(offsetof(struct uffd_msg, arg) == 8, "uffd_msg.arg at 8");
static_assert(offsetof(struct uffd_msg, arg.pagefault.flags) == 8, "pagefault.flags at 8");
static_assert(offsetof(struct uffd_msg, arg.pagefault.address) == 16, "pagefault.address at 16");
static_assert(offsetof(struct uffd_msg, arg.pagefault.feat.ptid) == 24, "pagefault.ptid at 24");
static_assert(offsetof(struct uffd_msg, arg.remap.from) == 8, "remap.from at 8");
static_assert(offsetof(struct uffd_msg, arg.remap.len) == 24, "remap.len at 24");
static_assert(offsetof(struct uffd_msg, arg.remove.end) == 16, "remove.end at 16");
static_assert(sizeof(struct uffdio_api) == 24, "uffdio_api");
static_assert(sizeof(struct uffdio_range) == 16, "uffdio_range");
static_assert(sizeof(struct uffdio_register) == 32, "uffdio_register");
static_assert(offsetof(struct uffdio_register, ioctls) == 24, "uffdio_register.ioctls");
static_assert(sizeof(struct uffdio_copy) == 40, "uffdio_copy");
static_assert(offsetof(struct uffdio_copy, copy) == 32, "uffdio_copy.copy");
static_assert(sizeof(struct uffdio_zeropage) == 32, "uffdio_zeropage");
static_assert(offsetof(struct uffdio_zeropage, zeropage) == 24, "uffdio_zeropage.zeropage");
static_assert(sizeof(struct uffdio_writeprotect) == 24, "uffdio_writeprotect");
static_assert(sizeof(struct uffdio_continue) == 32, "uffdio_continue");
static_assert(offsetof(struct uffdio_continue, mapped) == 24, "uffdio_continue.mapped");
static_assert(sizeof(struct uffdio_poison) == 32, "uffdio_poison");
static_assert(offsetof(struct uffdio_poison, updated) == 24, "uffdio_poison.updated");
static_assert(sizeof(struct uffdio_move) == 40, "uffdio_move");
static_assert(offsetof(struct uffdio_move, move) == 32, "uffdio_move.move");
static_assert(sizeof(struct page_region) == 24, "page_region");
static_assert(sizeof(struct pm_scan_arg) == 96, "pm_scan_arg");
static_assert(offsetof(struct pm_scan_arg, walk_end) == 32, "pm_scan_arg.walk_end");
static_assert(offsetof(struct pm_scan_arg, return_mask) == 88, "pm_scan_arg.return_mask");
// The ioctl request numbers encode the struct size; pin the ones we defined ourselves.
static_assert(UFFDIO_MOVE == _IOWR(0xAA, 0x05, char[40]), "UFFDIO_MOVE number");
static_assert(UFFDIO_POISON == _IOWR(0xAA, 0x08, char[32]), "UFFDIO_POISON number");
static_assert(PAGEMAP_SCAN == _IOWR('f', 16, char[96]), "PAGEMAP_SCAN number");
