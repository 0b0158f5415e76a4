// Argument checks for every native entry point. The TS layer validates first with friendlier
// messages; these are the cheap second line, so that calling the binding directly with anything
// at all throws a TypeError / RangeError and never reaches the kernel with garbage.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

// A user-space address: a bigint, or a non-negative safe-integer number.
uint64_t ArgAddress(const Napi::CallbackInfo& info, size_t i, const char* name);
// A byte count: a non-negative safe-integer number (bigint accepted too, if it fits).
uint64_t ArgLength(const Napi::CallbackInfo& info, size_t i, const char* name);
// A raw 64-bit word (flags, modes, a tid): number or bigint.
uint64_t ArgU64(const Napi::CallbackInfo& info, size_t i, const char* name);
// An integer number within [min, max]: ids, timeouts, counts. Never truncated: an id of 2^32 + 1
// must not name policy 1.
int64_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t min,
               int64_t max);
int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name);
// The same checks for a value taken from an object's property (named by `name`).
uint64_t ValueU64(Napi::Env env, const Napi::Value& v, const char* name);
int ValueFd(Napi::Env env, const Napi::Value& v, const char* name);
std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name);

// Throws RangeError unless len > 0, addr and len are multiples of `align`, and addr + len does
// not wrap around the address space.
void CheckRange(Napi::Env env, uint64_t addr, uint64_t len, uint64_t align, const char* what);
// Rejects bits outside `known`, naming the call.
void CheckBits(Napi::Env env, uint64_t bits, uint64_t known, const char* what);

// Data pointer and size of a Buffer / TypedArray / DataView / ArrayBuffer. A detached buffer has
// size 0. Returns false if `v` is none of these.
bool BufferView(const Napi::Value& v, uint8_t** data, size_t* size);

size_t PageSize();
