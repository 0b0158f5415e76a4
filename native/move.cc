// UFFDIO_MOVE in batches: the loop behind lib/memory/move.ts (movePages, movePageList) and the
// compactor.
//
// One call into the addon costs a few hundred nanoseconds, about a third of what the kernel
// needs to move one 4 KiB page, so a compactor that crossed into C++ once per page would spend
// a quarter of its time in the binding. moveBatch runs a whole list of moves in one call and
// continues after partial progress itself; it returns to JS only when the list is done, on the
// mmap_changing EAGAIN (nothing moved: JS backs off and retries, since only reading the pending
// event clears it) and on a real error, saying exactly where it stopped.
#include "move.h"

#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cerrno>
#include <string>

#include "addon.h"
#include "args.h"
#include "errors.h"
#include "resolve.h"
#include "uffd.h"

namespace {

constexpr size_t kOpWords = 3;  // dst, src, len
// state words (a Float64Array of 4): in [0] op index to start at, [1] bytes of it already done;
// out [0] op index where the batch stopped (== count when done), [1] bytes of that op done,
// [2] errno that stopped it (0 when done), [3] ioctls issued.
constexpr size_t kStateWords = 4;
// Lengths are summed as JS numbers: keep each one exact there.
constexpr uint64_t kMaxSafeLength = (1ULL << 53) - 1;

// The descriptor of a live UffdHandle. Taking the handle rather than its fd number costs one
// type-tag check here instead of a second call from JS (the fd getter; napi_instanceof would
// cost more than both), and a closed or foreign object can never lend us a number the process
// has since reused for another file.
int HandleFd(const Napi::CallbackInfo& info, size_t i) {
  Napi::Env env = info.Env();
  UffdHandle* handle = UffdHandle::Of(info[i]);
  if (handle == nullptr) ThrowTypeError(env, "uffd must be a Userfaultfd handle");
  return handle->LiveFd(env);
}

// Issues the moves of `op` from entry `index`, `done` bytes into it, until all are done or one
// stops for a reason JS must see; writes where it stopped into `state` (see kStateWords).
void RunMoves(int fd, const uint64_t* op, uint64_t count, uint64_t mode, uint64_t index,
              uint64_t done, double* state) {
  int err = 0;
  uint64_t ioctls = 0;
  while (index < count) {
    const uint64_t* o = op + index * kOpWords;
    ioctls++;
    IoctlResult r = UffdMove(fd, o[0] + done, o[1] + done, o[2] - done, mode);
    done += static_cast<uint64_t>(r.bytes);
    if (r.err == 0 || done >= o[2]) {
      index++;
      done = 0;
      continue;
    }
    err = r.err;
    if (err == EAGAIN && r.bytes > 0) {
      // Partial progress: the kernel stopped for a reason it reports on the next call.
      err = 0;
      continue;
    }
    break;
  }
  state[0] = static_cast<double>(index);
  state[1] = static_cast<double>(done);
  state[2] = err;
  state[3] = static_cast<double>(ioctls);
}

// Validates every move before any is issued, so a bad entry never leaves a batch half done. For
// a BigUint64Array of moves this is the only per-entry check.
void CheckOps(Napi::Env env, const uint64_t* op, uint64_t count) {
  const uint64_t page = PageSize();
  for (uint64_t i = 0; i < count; i++) {
    uint64_t dst = op[i * kOpWords], src = op[i * kOpWords + 1], len = op[i * kOpWords + 2];
    const char* problem = nullptr;
    if (len == 0 || len > kMaxSafeLength) {
      problem = "length must be greater than 0 and a safe integer";
    } else if (dst % page != 0 || src % page != 0 || len % page != 0) {
      problem = "dst, src and length must be multiples of the page size";
    } else if (dst + len < dst || src + len < src) {
      problem = "address + length overflows";
    }
    if (problem != nullptr) {
      ThrowRangeError(env, "move " + std::to_string(i) + ": " + problem);
    }
  }
}

// Where a batch resumes: state[0] the op index, state[1] the bytes of it already done.
void ResumePoint(Napi::Env env, const double* state, const uint64_t* op, uint64_t count,
                 uint64_t* index, uint64_t* done) {
  double start_index = state[0];
  double start_done = state[1];
  if (!(start_index >= 0 && start_index <= static_cast<double>(count)) ||
      static_cast<uint64_t>(start_index) != start_index) {
    ThrowRangeError(env, "state[0] must be an op index within the batch");
  }
  *index = static_cast<uint64_t>(start_index);
  *done = 0;
  if (*index < count) {
    if (!(start_done >= 0 && start_done < static_cast<double>(op[*index * kOpWords + 2])) ||
        static_cast<uint64_t>(start_done) % PageSize() != 0) {
      ThrowRangeError(env, "state[1] must be a page multiple below the op's length");
    }
    *done = static_cast<uint64_t>(start_done);
  }
}

// moveBatch(uffd: UffdHandle, ops: BigUint64Array, count, mode: bigint, state: Float64Array)
Napi::Value MoveBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = HandleFd(info, 0);
  if (!info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array) {
    ThrowTypeError(env, "ops must be a BigUint64Array of [dst, src, length] triples");
  }
  Napi::BigUint64Array ops = info[1].As<Napi::BigUint64Array>();
  uint64_t count = ArgLength(info, 2, "count");
  if (count > ops.ElementLength() / kOpWords) {
    ThrowRangeError(env, "count exceeds the moves the ops array holds");
  }
  uint64_t mode = ArgU64(info, 3, "mode");
  CheckBits(env, mode, UFFDIO_MOVE_MODE_DONTWAKE | UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES, "move");
  if (!info[4].IsTypedArray() ||
      info[4].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array ||
      info[4].As<Napi::Float64Array>().ElementLength() < kStateWords) {
    ThrowTypeError(env, "state must be a Float64Array of 4");
  }
  double* state = info[4].As<Napi::Float64Array>().Data();
  const uint64_t* op = ops.Data();
  CheckOps(env, op, count);
  uint64_t index = 0;
  uint64_t done = 0;
  ResumePoint(env, state, op, count, &index, &done);
  RunMoves(fd, op, count, mode, index, done, state);
  return env.Undefined();
}

// moveOne(uffd: UffdHandle, dst, src, length, mode: bigint, done, state: Float64Array): one
// move, `done` bytes into it, with scalar arguments: the batch's typed-array bookkeeping costs
// a third of a microsecond, which a caller moving page by page (a fault handler) pays per page.
Napi::Value MoveOne(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = HandleFd(info, 0);
  uint64_t o[kOpWords] = {ArgAddress(info, 1, "dst"), ArgAddress(info, 2, "src"),
                          ArgLength(info, 3, "length")};
  CheckRange(env, o[0], o[2], PageSize(), "move dst");
  CheckRange(env, o[1], o[2], PageSize(), "move src");
  if (o[2] > kMaxSafeLength) ThrowRangeError(env, "move: length must be a safe integer");
  uint64_t mode = ArgU64(info, 4, "mode");
  CheckBits(env, mode, UFFDIO_MOVE_MODE_DONTWAKE | UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES, "move");
  uint64_t done = ArgLength(info, 5, "done");
  if (done >= o[2] || done % PageSize() != 0) {
    ThrowRangeError(env, "done must be a page multiple below the length");
  }
  if (!info[6].IsTypedArray() ||
      info[6].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    ThrowTypeError(env, "state must be a Float64Array of 4");
  }
  Napi::Float64Array state = info[6].As<Napi::Float64Array>();
  if (state.ElementLength() < kStateWords) ThrowTypeError(env, "state must be a Float64Array of 4");
  RunMoves(fd, o, 1, mode, 0, done, state.Data());
  return env.Undefined();
}

// madviseRange(address, length, advice): MADV_DONTNEED or MADV_REMOVE on any page-aligned range,
// for the copy fallback (the source is given by address, not as a Mapping). Other advice is
// refused: this is the one madvise the library needs on memory it does not own.
Napi::Value MadviseRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t address = ArgAddress(info, 0, "address");
  uint64_t length = ArgLength(info, 1, "length");
  CheckRange(env, address, length, PageSize(), "madvise");
  uint64_t advice = ArgU64(info, 2, "advice");
  if (advice != MADV_DONTNEED && advice != MADV_REMOVE) {
    ThrowRangeError(env, "advice must be MADV_DONTNEED or MADV_REMOVE");
  }
  void* p = reinterpret_cast<void*>(static_cast<uintptr_t>(address));
  if (madvise(p, length, static_cast<int>(advice)) != 0) ThrowSysError(env, {errno, "madvise"});
  return env.Undefined();
}

}  // namespace

void InitMove(Napi::Env env, Napi::Object exports) {
  exports.Set("moveBatch", Napi::Function::New(env, MoveBatch, "moveBatch"));
  exports.Set("moveOne", Napi::Function::New(env, MoveOne, "moveOne"));
  exports.Set("madviseRange", Napi::Function::New(env, MadviseRange, "madviseRange"));
}
