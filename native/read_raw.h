#pragma once

#include <napi.h>

// readRaw(timeoutMs, max) on `uffd` (read_raw.cc).
Napi::Value ReadRaw(Napi::Env env, int uffd, const Napi::CallbackInfo& info);
