// PAGEMAP_SCAN: one ioctl on /proc/PID/pagemap that walks a range and reports runs of pages by
// category, optionally write-protecting what matched in the same walk.
//
// The JS side passes the pm_scan_arg fields in a BigUint64Array laid out exactly like the struct
// and a reusable BigUint64Array for the output regions (3 words each), so a scan allocates
// nothing per region here; walk_end is written back into the args array.
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include "addon.h"
#include "args.h"
#include "errors.h"
#include "uapi.h"

static constexpr size_t kArgWords = sizeof(struct pm_scan_arg) / sizeof(__u64);
static constexpr size_t kWalkEndWord = offsetof(struct pm_scan_arg, walk_end) / sizeof(__u64);
static constexpr size_t kRegionWords = sizeof(struct page_region) / sizeof(__u64);

static uint64_t* BigWords(Napi::Env env, const Napi::Value& v, const char* name, size_t* count) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array) {
    ThrowTypeError(env, std::string(name) + " must be a BigUint64Array");
  }
  Napi::BigUint64Array a = v.As<Napi::BigUint64Array>();
  *count = a.ElementLength();
  return a.Data();
}

// pagemapScan(fd, args: BigUint64Array(12), vec: BigUint64Array | null) -> regions filled.
// With vec null, the vec field is 0 and vec_len is taken from args as given (so the kernel's
// own EINVAL for "vec NULL with vec_len > 0" stays reachable); with vec, vec_len must fit it.
static Napi::Value PagemapScan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0, "fd");
  size_t nargs = 0;
  uint64_t* words = BigWords(env, info[1], "args", &nargs);
  if (nargs != kArgWords) ThrowRangeError(env, "args must hold 12 words (struct pm_scan_arg)");
  struct pm_scan_arg arg;
  std::memcpy(&arg, words, sizeof(arg));
  if (info[2].IsNull() || info[2].IsUndefined()) {
    arg.vec = 0;
  } else {
    size_t nvec = 0;
    uint64_t* vec = BigWords(env, info[2], "vec", &nvec);
    if (arg.vec_len > nvec / kRegionWords) {
      ThrowRangeError(env, "vec_len exceeds the regions the output array can hold");
    }
    arg.vec = reinterpret_cast<uintptr_t>(vec);
  }
  int rc = ioctl(fd, PAGEMAP_SCAN, &arg);
  if (rc < 0) ThrowSysError(env, {errno, "ioctl", "PAGEMAP_SCAN"});
  words[kWalkEndWord] = arg.walk_end;
  return Napi::Number::New(env, rc);
}

void InitPagemap(Napi::Env env, Napi::Object exports) {
  exports.Set("pagemapScan", Napi::Function::New(env, PagemapScan, "pagemapScan"));
}
