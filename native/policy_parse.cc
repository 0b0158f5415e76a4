#include "policy_parse.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>
#include <string>

#include "args.h"
#include "errors.h"
#include "mapping.h"

namespace {

// Indexed by PolicyKind.
const char* const kKindNames[] = {"zero",     "copyBuffer", "copyFd",
                                  "continue", "unprotect",  "moveTable"};
constexpr size_t kKinds = sizeof kKindNames / sizeof kKindNames[0];

PolicyKind KindOf(Napi::Env env, const Napi::Value& v) {
  if (v.IsString()) {
    const std::string name = v.As<Napi::String>().Utf8Value();
    for (size_t i = 0; i < kKinds; i++) {
      if (name == kKindNames[i]) return static_cast<PolicyKind>(i);
    }
  }
  ThrowTypeError(env,
                 "policy kind must be one of zero, copyBuffer, copyFd, continue, unprotect, "
                 "moveTable");
}

// A typed array of the given type with at least `min_length` elements, or a JS TypeError /
// RangeError naming it.
template <typename Array>
Array TypedArrayOf(Napi::Env env, const Napi::Value& v, napi_typedarray_type type,
                   size_t min_length, const char* name, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
    ThrowTypeError(env, std::string(name) + " must be " + what);
  }
  Array array = v.As<Array>();
  if (array.ElementLength() < min_length) {
    ThrowRangeError(env, std::string(name) + " has fewer entries than the range has units");
  }
  return array;
}

// The policy's own duplicate of a copy-from-file descriptor, after checking that pread can read
// it. Owned, not borrowed: had the caller closed theirs, the number could name another file by
// the time a fault is served, and its bytes would be served without a word.
int OwnReadableFd(Napi::Env env, int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) ThrowSysError(env, {errno, "fstat"});
  if (S_ISDIR(st.st_mode)) ThrowSysError(env, {EISDIR, "pread"});
  if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) ThrowSysError(env, {ESPIPE, "pread"});
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) ThrowSysError(env, {errno, "fcntl"});
  if ((flags & O_ACCMODE) == O_WRONLY) ThrowSysError(env, {EBADF, "pread"});
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) ThrowSysError(env, {errno, "fcntl"});
  return own;
}

// The range and unit every kind has.
void ParseRange(Napi::Env env, const Napi::Object& spec, Policy* p) {
  const uint64_t address = ValueU64(env, spec.Get("address"), "policy address");
  const uint64_t length = ValueU64(env, spec.Get("length"), "policy length");
  CheckRange(env, address, length, PageSize(), "policy");
  const uint64_t unit = ValueU64(env, spec.Get("unit"), "unit");
  if (unit < PageSize() || (unit & (unit - 1)) != 0) {
    ThrowRangeError(env, "unit must be a power of two no smaller than the page size");
  }
  // A unit is resolved at once (and, for a file, read into a buffer of its size first): one
  // larger than the range would only ask for memory the range can never use.
  if (unit > length) ThrowRangeError(env, "unit must not be larger than the policy's range");
  p->start = address;
  p->end = address + length;
  p->unit = unit;
}

// copyBuffer: { buffer, pin? }. pin: the Mapping the buffer lies in, if any.
void ParseCopyBuffer(Napi::Env env, const Napi::Object& spec, const RangeSet& faulting, Policy* p,
                     Napi::Array held) {
  Napi::Value buffer = spec.Get("buffer");
  uint8_t* data = nullptr;
  size_t size = 0;
  if (!BufferView(buffer, &data, &size)) ThrowTypeError(env, "copy source must be a buffer");
  const uint64_t len = p->end - p->start;
  if (size < len) ThrowRangeError(env, "copy source is shorter than the range");
  const uint64_t src = reinterpret_cast<uintptr_t>(data);
  if (faulting.Overlaps(src, src + len)) {
    ThrowRangeError(env,
                    "copy source lies in a range registered with this userfaultfd: the event "
                    "thread would fault on it, and only it could resolve that fault");
  }
  p->data = data;
  p->data_len = size;
  // Over a Mapping's memory: an explicit unmap() then leaves the munmap to the policy's removal.
  std::shared_ptr<Region> region = MappingHandle::RegionOf(spec.Get("pin"));
  if (region && data >= region->addr && size <= region->length &&
      static_cast<size_t>(data - region->addr) <= region->length - size) {
    p->source_use = std::make_unique<RegionUse>(std::move(region));
  }
  held.Set(held.Length(), buffer);
}

// copyFd: { fd, offset }.
void ParseCopyFd(Napi::Env env, const Napi::Object& spec, Policy* p) {
  p->fd = OwnReadableFd(env, ValueFd(env, spec.Get("fd"), "fd"));
  p->fd_offset = ValueU64(env, spec.Get("offset"), "offset");
  try {
    p->bounce.resize(p->unit);  // the event thread never allocates (event_ring.h)
  } catch (const std::bad_alloc&) {
    ThrowSysError(env, {ENOMEM, "malloc"});
  }
}

// The Mapping every source address lies in, if given (the compactor's from-space): an explicit
// unmap() of it then leaves the munmap to the policy's removal. Unpinned, a new mapping could
// take that address range, and the event thread would move its pages into the destination:
// someone else's memory, taken without a word.
void PinMoveSources(const Napi::Value& pin, Policy* p) {
  std::shared_ptr<Region> region = MappingHandle::RegionOf(pin);
  if (!region) return;
  const auto lo = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(region->addr));
  const uint64_t hi = lo + region->length;
  for (uint64_t src : p->table) {
    if (src != 0 && (src < lo || src > hi || hi - src < p->unit)) return;
  }
  p->source_use = std::make_unique<RegionUse>(std::move(region));
}

// moveTable: { table, claims?, pin? }.
void ParseMoveTable(Napi::Env env, const Napi::Object& spec, Policy* p, Napi::Array held) {
  const size_t units = (p->end - p->start) / p->unit;
  auto table = TypedArrayOf<Napi::BigUint64Array>(env, spec.Get("table"), napi_biguint64_array,
                                                  units, "move table", "a BigUint64Array");
  // Copied: the event thread must never read through a pointer into a buffer that JS can detach
  // (postMessage, structuredClone or transfer()) or shrink (a resizable ArrayBuffer).
  p->table.assign(table.Data(), table.Data() + table.ElementLength());
  PinMoveSources(spec.Get("pin"), p);
  Napi::Value claims = spec.Get("claims");
  if (claims.IsUndefined()) return;
  auto bytes = TypedArrayOf<Napi::Uint8Array>(env, claims, napi_uint8_array, units, "move claims",
                                              "a Uint8Array");
  // The event thread writes the claims while JS reads them, so they cannot be copied; only a
  // SharedArrayBuffer can be neither detached nor shrunk under it (IsArrayBuffer is false).
  if (bytes.ArrayBuffer().IsArrayBuffer()) {
    ThrowTypeError(env, "move claims must be a Uint8Array over a SharedArrayBuffer");
  }
  p->claims = bytes.Data();
  p->claims_len = bytes.ElementLength();
  held.Set(held.Length(), claims);
}

}  // namespace

Napi::Array PolicyKindNames(Napi::Env env) {
  Napi::Array names = Napi::Array::New(env, kKinds);
  for (size_t i = 0; i < kKinds; i++) names.Set(i, Napi::String::New(env, kKindNames[i]));
  return names;
}

ParsedPolicy ParsePolicy(Napi::Env env, const Napi::Value& value, const RangeSet& faulting) {
  if (!value.IsObject()) ThrowTypeError(env, "policy must be an object");
  Napi::Object spec = value.As<Napi::Object>();
  ParsedPolicy out{std::make_shared<Policy>(), Napi::Array::New(env)};
  Policy* p = out.policy.get();
  p->kind = KindOf(env, spec.Get("kind"));
  ParseRange(env, spec, p);
  switch (p->kind) {
    case PolicyKind::kCopyBuffer:
      ParseCopyBuffer(env, spec, faulting, p, out.held);
      break;
    case PolicyKind::kCopyFd:
      ParseCopyFd(env, spec, p);
      break;
    case PolicyKind::kMoveTable:
      ParseMoveTable(env, spec, p, out.held);
      break;
    case PolicyKind::kZero:
    case PolicyKind::kContinue:
    case PolicyKind::kUnprotect:
      break;
  }
  Napi::Value retain = spec.Get("retain");
  if (!retain.IsUndefined()) out.held.Set(out.held.Length(), retain);
  return out;
}
