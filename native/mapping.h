// Mappings made by mmap and handed to JS as external ArrayBuffers (no copy).
//
// The memory is shared by two owners: the MappingHandle and every ArrayBuffer created over it.
// Whoever is last to go (explicit unmap() aside) unmaps, so a Uint8Array that outlives its
// Mapping object never points at freed memory. An explicit unmap() detaches the current
// ArrayBuffer first, so later access through it throws instead of touching unmapped memory.
// The same holds for every range view (view()) handed out: unmap and mremap detach them all.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

struct Region {
  uint8_t* addr = nullptr;
  size_t length = 0;
  bool mapped = false;  // as JS sees it (JS thread only)
  // MAP_SHARED | MAP_ANONYMOUS: the shmem object behind it has the size the mapping was made
  // with, and nothing can resize it, so growing the mapping would hand out pages that SIGBUS.
  bool fixed_object = false;

  // Native jobs using the memory (testing.touch, forkTouch, madvise). While any runs, an explicit
  // unmap() hides the memory from JS at once but leaves the munmap to the last job to end, so a
  // thread is never left touching unmapped memory (or memory a new mapping reused).
  std::mutex jobs_mutex;
  int jobs = 0;
  bool unmap_pending = false;

  // Unmap as JS sees it (munmap now, or when the last job ends), and give the size back to the
  // GC's external-memory account.
  void Unmap(Napi::Env env);
  bool Busy();
  // Reached still mapped only when the last owner is a native thread that outlived its
  // environment (a Worker terminated during testing.touch): unmap then, with no account left.
  ~Region();
};

// One native job's use of a Region (see Region::jobs). Made on the JS thread; ended by Drop on
// the JS thread, or by the destructor on the job's thread if the environment is gone.
class RegionUse {
 public:
  explicit RegionUse(std::shared_ptr<Region> region);
  ~RegionUse();
  RegionUse(const RegionUse&) = delete;
  RegionUse& operator=(const RegionUse&) = delete;
  void Drop(Napi::Env env);

 private:
  void End();
  std::shared_ptr<Region> region_;
};

class MappingHandle : public Napi::ObjectWrap<MappingHandle> {
 public:
  static Napi::Function DefineClass(Napi::Env env);
  explicit MappingHandle(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env env) override;
  // The region of the MappingHandle `v`, or null if `v` is not one: a native thread that uses the
  // memory holds it, so that the memory stays mapped until the thread is done, even when the
  // handle is collected or its environment torn down (RegionUse: even through unmap()).
  static std::shared_ptr<Region> RegionOf(const Napi::Value& v);

 private:
  Region& LiveRegion(Napi::Env env);  // throws ERR_UFFD_UNMAPPED once unmapped
  // An external ArrayBuffer over [addr, addr + len) of the region, co-owning it.
  Napi::ArrayBuffer External(Napi::Env env, uint8_t* addr, size_t len);
  // Detaches the whole-mapping buffer and every view: before munmap and mremap.
  void DetachBuffer(Napi::Env env);
  // Resolves (offset, length) arguments at i, i+1 to an absolute page-aligned subrange.
  void SubRange(const Napi::CallbackInfo& info, size_t i, uint8_t** start, size_t* len);

  Napi::Value GetAddress(const Napi::CallbackInfo& info);
  Napi::Value GetLength(const Napi::CallbackInfo& info);
  Napi::Value GetMapped(const Napi::CallbackInfo& info);
  Napi::Value Buffer(const Napi::CallbackInfo& info);
  Napi::Value View(const Napi::CallbackInfo& info);
  Napi::Value Unmap(const Napi::CallbackInfo& info);
  Napi::Value Madvise(const Napi::CallbackInfo& info);
  Napi::Value Mprotect(const Napi::CallbackInfo& info);
  Napi::Value Mremap(const Napi::CallbackInfo& info);

  std::shared_ptr<Region> region_;
  Napi::Reference<Napi::ArrayBuffer> buffer_;  // weak: the GC decides the buffer's life
  // Weak references to the range views handed out, so that unmap can detach each one. Entries
  // whose buffer was collected are pruned as the list grows (prune_at_).
  std::vector<Napi::Reference<Napi::ArrayBuffer>> views_;
  size_t prune_at_ = 16;
};

// Drops one owner's reference on the JS thread; the last owner of a still-mapped region unmaps it.
void DropRegion(Napi::Env env, std::shared_ptr<Region>& region);
