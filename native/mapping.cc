#include "mapping.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <string>

#include "addon.h"
#include "args.h"
#include "errors.h"

static const napi_type_tag kMappingTag = {0x75666664a11ce002ULL, 0x6d617070696e6721ULL};

static void CheckReceiver(const Napi::CallbackInfo& info) {
  Napi::Value self = info.This();
  if (!self.IsObject() || !self.As<Napi::Object>().CheckTypeTag(&kMappingTag)) {
    ThrowTypeError(info.Env(), "receiver is not a Mapping handle");
  }
}

// The largest ArrayBuffer the runtime can make (buffer.constants.MAX_LENGTH, which the TS layer
// passes in at load). It must be checked before asking: on Node 20, napi_create_external_
// arraybuffer past it runs our finalizer itself and then fails, and node-addon-api frees the
// finalizer's data a second time (free(): double free, an abort). The default is Node 20's 4 GiB,
// the smallest of the supported versions. Process-wide: every environment runs the same Node.
static std::atomic<uint64_t> g_buffer_limit{uint64_t{1} << 32};

void Region::Unmap(Napi::Env env) {
  if (!mapped) return;
  mapped = false;
  Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(length));
  {
    std::lock_guard<std::mutex> lock(jobs_mutex);
    if (jobs > 0) {
      unmap_pending = true;
      return;
    }
  }
  munmap(addr, length);
}

bool Region::Busy() {
  std::lock_guard<std::mutex> lock(jobs_mutex);
  return jobs > 0;
}

Region::~Region() {
  if (mapped || unmap_pending) munmap(addr, length);
}

RegionUse::RegionUse(std::shared_ptr<Region> region) : region_(std::move(region)) {
  std::lock_guard<std::mutex> lock(region_->jobs_mutex);
  region_->jobs++;
}

RegionUse::~RegionUse() {
  if (!region_) return;
  End();
  region_.reset();  // the last owner's ~Region unmaps a region still mapped
}

void RegionUse::Drop(Napi::Env env) {
  End();
  DropRegion(env, region_);
}

void RegionUse::End() {
  std::lock_guard<std::mutex> lock(region_->jobs_mutex);
  if (--region_->jobs == 0 && region_->unmap_pending) {
    munmap(region_->addr, region_->length);
    region_->unmap_pending = false;
  }
}

void DropRegion(Napi::Env env, std::shared_ptr<Region>& region) {
  if (region && region.use_count() == 1) region->Unmap(env);
  region.reset();
}

// new MappingHandle(length, prot, flags, fd, offset): mmap at an address of the kernel's choice.
MappingHandle::MappingHandle(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<MappingHandle>(info) {
  Napi::Env env = info.Env();
  uint64_t length = ArgLength(info, 0, "length");
  uint64_t prot = ArgU64(info, 1, "prot");
  uint64_t flags = ArgU64(info, 2, "flags");
  int fd = info[3].IsNumber() && info[3].As<Napi::Number>().Int32Value() == -1
               ? -1
               : ArgFd(info, 3, "fd");
  uint64_t offset = ArgLength(info, 4, "offset");
  if (length == 0) ThrowRangeError(env, "mapping length must be greater than 0");
  if (offset % PageSize() != 0) {
    ThrowRangeError(env, "mapping offset must be a multiple of the page size");
  }
  CheckBits(env, prot, PROT_READ | PROT_WRITE | PROT_EXEC, "mmap prot");
  // MAP_FIXED and friends are refused: a mapping placed over live memory would corrupt the
  // process. Only the flags a user of this library has reason to pass are accepted.
  CheckBits(env, flags,
            MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_POPULATE | MAP_HUGETLB |
                (0x3fULL << MAP_HUGE_SHIFT),
            "mmap flags");
  void* addr = mmap(nullptr, length, static_cast<int>(prot), static_cast<int>(flags), fd,
                    static_cast<off_t>(offset));
  if (addr == MAP_FAILED) ThrowSysError(env, {errno, "mmap"});
  region_ = std::make_shared<Region>();
  region_->addr = static_cast<uint8_t*>(addr);
  region_->length = length;
  region_->mapped = true;
  region_->fixed_object = (flags & MAP_SHARED) && (flags & MAP_ANONYMOUS);
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(length));
  info.This().As<Napi::Object>().TypeTag(&kMappingTag);
}

void MappingHandle::Finalize(Napi::Env env) { DropRegion(env, region_); }

std::shared_ptr<Region> MappingHandle::RegionOf(const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kMappingTag)) return nullptr;
  return Unwrap(v.As<Napi::Object>())->region_;
}

Region& MappingHandle::LiveRegion(Napi::Env env) {
  if (!region_ || !region_->mapped) {
    ThrowCodedError(env, "ERR_UFFD_UNMAPPED", "this mapping has been unmapped");
  }
  return *region_;
}

Napi::Value MappingHandle::GetAddress(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Region& r = LiveRegion(info.Env());
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(r.addr)));
}

Napi::Value MappingHandle::GetLength(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  return Napi::Number::New(info.Env(),
                           region_ && region_->mapped ? static_cast<double>(region_->length) : 0);
}

Napi::Value MappingHandle::GetMapped(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  return Napi::Boolean::New(info.Env(), region_ && region_->mapped);
}

Napi::ArrayBuffer MappingHandle::External(Napi::Env env, uint8_t* addr, size_t len) {
  uint64_t limit = g_buffer_limit.load(std::memory_order_relaxed);
  if (len > limit) {
    Napi::RangeError error = Napi::RangeError::New(
        env,
        "cannot make an ArrayBuffer of " + std::to_string(len) +
            " bytes: this Node.js allows at most " + std::to_string(limit) +
            " (buffer.constants.MAX_LENGTH); take views of ranges with bytes({ offset, length })");
    error.Set("code", Napi::String::New(env, "ERR_BUFFER_TOO_LARGE"));
    throw error;
  }
  // The buffer co-owns the region: its finalizer drops that share.
  auto* share = new std::shared_ptr<Region>(region_);
  return Napi::ArrayBuffer::New(
      env, addr, len,
      [](Napi::Env env, void*, std::shared_ptr<Region>* hint) {
        DropRegion(env, *hint);
        delete hint;
      },
      share);
}

// The ArrayBuffer over the whole mapping; the same object until unmap() or mremap() replace it.
Napi::Value MappingHandle::Buffer(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  Region& r = LiveRegion(env);
  if (!buffer_.IsEmpty()) {
    Napi::ArrayBuffer existing = buffer_.Value();
    if (!existing.IsEmpty() && !existing.IsDetached()) return existing;
  }
  Napi::ArrayBuffer ab = External(env, r.addr, r.length);
  buffer_ = Napi::Weak(ab);
  return ab;
}

// view(offset, length): a new ArrayBuffer over just that byte range, for mappings too large for
// one buffer. Detached by unmap() and mremap() like the whole-mapping buffer.
Napi::Value MappingHandle::View(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  Region& r = LiveRegion(env);
  uint64_t offset = ArgLength(info, 0, "offset");
  uint64_t length = ArgLength(info, 1, "length");
  if (offset > r.length || length > r.length - offset) {
    ThrowRangeError(env, "range [" + std::to_string(offset) + ", +" + std::to_string(length) +
                             ") lies outside the mapping of " + std::to_string(r.length) +
                             " bytes");
  }
  if (length == 0) return Napi::ArrayBuffer::New(env, 0);  // nothing to keep safe
  Napi::ArrayBuffer ab = External(env, r.addr + offset, length);
  if (views_.size() >= prune_at_) {
    std::vector<Napi::Reference<Napi::ArrayBuffer>> live;
    for (auto& ref : views_) {
      Napi::ArrayBuffer v = ref.Value();
      if (!v.IsEmpty() && !v.IsDetached()) live.push_back(std::move(ref));
    }
    views_ = std::move(live);
    prune_at_ = std::max<size_t>(16, views_.size() * 2);
  }
  views_.push_back(Napi::Weak(ab));
  return ab;
}

void MappingHandle::DetachBuffer(Napi::Env env) {
  for (auto& ref : views_) {
    Napi::ArrayBuffer v = ref.Value();
    if (!v.IsEmpty() && !v.IsDetached()) v.Detach();
  }
  views_.clear();
  prune_at_ = 16;
  if (buffer_.IsEmpty()) return;
  Napi::ArrayBuffer ab = buffer_.Value();
  if (!ab.IsEmpty() && !ab.IsDetached()) ab.Detach();
  buffer_.Reset();
}

Napi::Value MappingHandle::Unmap(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  if (!region_ || !region_->mapped) return env.Undefined();  // double unmap is a no-op
  DetachBuffer(env);
  region_->Unmap(env);
  return env.Undefined();
}

void MappingHandle::SubRange(const Napi::CallbackInfo& info, size_t i, uint8_t** start,
                             size_t* len) {
  Napi::Env env = info.Env();
  Region& r = LiveRegion(env);
  uint64_t offset = ArgLength(info, i, "offset");
  uint64_t length = ArgLength(info, i + 1, "length");
  CheckRange(env, offset, length, PageSize(), "range");
  if (offset > r.length || length > r.length - offset) {
    ThrowRangeError(env, "range [" + std::to_string(offset) + ", +" + std::to_string(length) +
                             ") lies outside the mapping of " + std::to_string(r.length) +
                             " bytes");
  }
  *start = r.addr + offset;
  *len = length;
}

// madvise(offset, length, advice): advice is the raw MADV_* number (lib/core/constants.ts names
// them).
Napi::Value MappingHandle::Madvise(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  uint8_t* start;
  size_t len;
  SubRange(info, 0, &start, &len);
  uint64_t advice = ArgU64(info, 2, "advice");
  if (advice > 0xffff) ThrowRangeError(env, "advice is out of range");
  if (madvise(start, len, static_cast<int>(advice)) != 0) ThrowSysError(env, {errno, "madvise"});
  return env.Undefined();
}

Napi::Value MappingHandle::Mprotect(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  uint8_t* start;
  size_t len;
  SubRange(info, 0, &start, &len);
  uint64_t prot = ArgU64(info, 2, "prot");
  CheckBits(env, prot, PROT_READ | PROT_WRITE | PROT_EXEC, "mprotect prot");
  if (mprotect(start, len, static_cast<int>(prot)) != 0) ThrowSysError(env, {errno, "mprotect"});
  return env.Undefined();
}

// mremap(newLength, mayMove): grows or shrinks the mapping. The old ArrayBuffer is detached
// whether or not the address changes, since its length is no longer the mapping's.
Napi::Value MappingHandle::Mremap(const Napi::CallbackInfo& info) {
  CheckReceiver(info);
  Napi::Env env = info.Env();
  Region& r = LiveRegion(env);
  // A native job's thread holds the current address: moving or shrinking the memory under it
  // would fault it (a process-wide SIGSEGV).
  if (r.Busy()) {
    ThrowCodedError(env, "ERR_UFFD_MAPPING_BUSY",
                    "a native job (testing.touch, forkTouch or madvise) is using this mapping: "
                    "mremap after it ends");
  }
  uint64_t new_length = ArgLength(info, 0, "newLength");
  bool may_move = info[1].ToBoolean().Value();
  if (new_length == 0 || new_length % PageSize() != 0) {
    ThrowRangeError(env, "newLength must be a positive multiple of the page size");
  }
  if (r.fixed_object && new_length > r.length) {
    ThrowCodedError(env, "ERR_UFFD_CANNOT_GROW",
                    "a shared anonymous mapping cannot grow: its shmem object keeps its size of " +
                        std::to_string(r.length) +
                        " bytes, and pages past it would raise SIGBUS (use Mapping.memfd, whose "
                        "file mremap grows)");
  }
  void* addr = mremap(r.addr, r.length, new_length, may_move ? MREMAP_MAYMOVE : 0);
  if (addr == MAP_FAILED) ThrowSysError(env, {errno, "mremap"});
  DetachBuffer(env);
  // Buffers over the old range are detached above, but a share may still be held by one that
  // the GC has not finalized yet; the region object itself is what they share, so update it.
  Napi::MemoryManagement::AdjustExternalMemory(
      env, static_cast<int64_t>(new_length) - static_cast<int64_t>(r.length));
  r.addr = static_cast<uint8_t*>(addr);
  r.length = new_length;
  return GetAddress(info);
}

Napi::Function MappingHandle::DefineClass(Napi::Env env) {
  return ObjectWrap<MappingHandle>::DefineClass(
      env, "MappingHandle",
      {
          InstanceAccessor<&MappingHandle::GetAddress>("address"),
          InstanceAccessor<&MappingHandle::GetLength>("length"),
          InstanceAccessor<&MappingHandle::GetMapped>("mapped"),
          InstanceMethod<&MappingHandle::Buffer>("buffer"),
          InstanceMethod<&MappingHandle::View>("view"),
          InstanceMethod<&MappingHandle::Unmap>("unmap"),
          InstanceMethod<&MappingHandle::Madvise>("madvise"),
          InstanceMethod<&MappingHandle::Mprotect>("mprotect"),
          InstanceMethod<&MappingHandle::Mremap>("mremap"),
      });
}

void InitMapping(Napi::Env env, Napi::Object exports) {
  exports.Set("MappingHandle", MappingHandle::DefineClass(env));
  exports.Set("setBufferLimit", Napi::Function::New(
                                    env,
                                    [](const Napi::CallbackInfo& info) {
                                      g_buffer_limit.store(ArgLength(info, 0, "limit"),
                                                           std::memory_order_relaxed);
                                    },
                                    "setBufferLimit"));
}
