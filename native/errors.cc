#include "errors.h"

#include <cstring>
#include <string>

#include "addon.h"

Napi::Error MakeSysError(Napi::Env env, const SysErrorInfo& info) {
  Napi::Object details = Napi::Object::New(env);
  details.Set("errno", Napi::Number::New(env, -info.err));  // negative, as Node reports it
  details.Set("syscall", Napi::String::New(env, info.syscall));
  if (info.ioctl) details.Set("ioctl", Napi::String::New(env, info.ioctl));
  if (info.has_bytes) details.Set("bytes", Napi::Number::New(env, static_cast<double>(info.bytes)));
  if (info.path) details.Set("path", Napi::String::New(env, info.path));

  AddonData& data = GetAddonData(env);
  if (!data.error_factory.IsEmpty()) {
    Napi::Value err = data.error_factory.Call({details});
    if (err.IsObject()) return Napi::Error(env, err);
  }
  // The TS layer always installs the factory; this is for someone loading the .node file alone.
  std::string message =
      std::string(info.ioctl ? info.ioctl : info.syscall) + ": " + std::strerror(info.err);
  Napi::Error error = Napi::Error::New(env, message);
  Napi::Object obj = error.Value();
  for (const auto& key : details.GetPropertyNames().As<Napi::Array>()) {
    Napi::Value k = static_cast<Napi::Value>(key.second);
    obj.Set(k, details.Get(k));
  }
  return error;
}

void ThrowSysError(Napi::Env env, const SysErrorInfo& info) { throw MakeSysError(env, info); }

void ThrowTypeError(Napi::Env env, const std::string& message) {
  Napi::TypeError error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  throw error;
}

void ThrowRangeError(Napi::Env env, const std::string& message) {
  Napi::RangeError error = Napi::RangeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  throw error;
}

void ThrowCodedError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  throw error;
}
