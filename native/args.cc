#include "args.h"

#include <unistd.h>

#include <cmath>
#include <string>

#include "errors.h"

static constexpr double kMaxSafeInteger = 9007199254740991.0;  // 2^53 - 1

static std::string Describe(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined:
      return "undefined";
    case napi_null:
      return "null";
    case napi_boolean:
      return "a boolean";
    case napi_number:
      return "a number";
    case napi_string:
      return "a string";
    case napi_bigint:
      return "a bigint";
    case napi_function:
      return "a function";
    default:
      return "an object";
  }
}

uint64_t ValueU64(Napi::Env env, const Napi::Value& v, const char* name) {
  if (v.IsBigInt()) {
    bool lossless = false;
    uint64_t value = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) ThrowRangeError(env, std::string(name) + " does not fit in 64 unsigned bits");
    return value;
  }
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || std::trunc(d) != d || d < 0 || d > kMaxSafeInteger) {
      ThrowRangeError(env, std::string(name) +
                               " must be a non-negative safe integer (or a bigint), got " +
                               std::to_string(d));
    }
    return static_cast<uint64_t>(d);
  }
  ThrowTypeError(env, std::string(name) + " must be a bigint or a number, got " + Describe(v));
}

uint64_t ArgAddress(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return ValueU64(info.Env(), info[i], name);
}

uint64_t ArgLength(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return ValueU64(info.Env(), info[i], name);
}

uint64_t ArgU64(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return ValueU64(info.Env(), info[i], name);
}

int64_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t min,
               int64_t max) {
  Napi::Env env = info.Env();
  Napi::Value v = info[i];
  if (!v.IsNumber()) {
    ThrowTypeError(env, std::string(name) + " must be a number, got " + Describe(v));
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d || d < static_cast<double>(min) ||
      d > static_cast<double>(max)) {
    ThrowRangeError(env, std::string(name) + " must be an integer within " + std::to_string(min) +
                             " .. " + std::to_string(max));
  }
  return static_cast<int64_t>(d);
}

int ArgFd(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return ValueFd(info.Env(), info[i], name);
}

int ValueFd(Napi::Env env, const Napi::Value& v, const char* name) {
  if (!v.IsNumber())
    ThrowTypeError(env, std::string(name) + " must be a number, got " + Describe(v));
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::trunc(d) != d || d < 0 || d > 2147483647.0) {
    ThrowRangeError(env, std::string(name) + " must be a file descriptor (a non-negative int32)");
  }
  return static_cast<int>(d);
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsString()) {
    ThrowTypeError(info.Env(), std::string(name) + " must be a string, got " + Describe(info[i]));
  }
  return info[i].As<Napi::String>().Utf8Value();
}

void CheckRange(Napi::Env env, uint64_t addr, uint64_t len, uint64_t align, const char* what) {
  if (len == 0) ThrowRangeError(env, std::string(what) + ": length must be greater than 0");
  if (addr % align != 0 || len % align != 0) {
    ThrowRangeError(env, std::string(what) + ": address and length must be multiples of " +
                             std::to_string(align));
  }
  if (addr + len < addr) ThrowRangeError(env, std::string(what) + ": address + length overflows");
}

void CheckBits(Napi::Env env, uint64_t bits, uint64_t known, const char* what) {
  if (bits & ~known) {
    ThrowRangeError(env,
                    std::string(what) + ": unknown mode bits " + std::to_string(bits & ~known));
  }
}

bool BufferView(const Napi::Value& v, uint8_t** data, size_t* size) {
  if (v.IsArrayBuffer()) {
    Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
    *data = static_cast<uint8_t*>(ab.Data());
    *size = ab.ByteLength();
    return true;
  }
  if (v.IsTypedArray()) {
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    Napi::ArrayBuffer ab = ta.ArrayBuffer();
    *data = static_cast<uint8_t*>(ab.Data()) + ta.ByteOffset();
    *size = ta.ByteLength();
    return true;
  }
  if (v.IsDataView()) {
    Napi::DataView dv = v.As<Napi::DataView>();
    *data = static_cast<uint8_t*>(dv.ArrayBuffer().Data()) + dv.ByteOffset();
    *size = dv.ByteLength();
    return true;
  }
  return false;
}

size_t PageSize() {
  static const size_t size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return size;
}
