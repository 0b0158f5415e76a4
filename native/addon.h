// Per-environment state. Everything the addon keeps lives here, in the environment's instance
// data, so the addon loads in any number of worker_threads at once and each one tears down alone.
#pragma once

#include <napi.h>

struct AddonData {
  // Builds the JS UffdError (lib/core/errors.ts); installed by the TS layer at load time.
  Napi::FunctionReference error_factory;
};

AddonData& GetAddonData(Napi::Env env);

// Registration hooks of each file, called from addon.cc's Init.
void InitUffd(Napi::Env env, Napi::Object exports);
void InitMapping(Napi::Env env, Napi::Object exports);
void InitPagemap(Napi::Env env, Napi::Object exports);
void InitSysinfo(Napi::Env env, Napi::Object exports);
void InitWpCheck(Napi::Env env, Napi::Object exports);
void InitTesting(Napi::Env env, Napi::Object exports);
#ifdef UFFD_TEST_HOOKS
void InitTestHooks(Napi::Env env, Napi::Object exports);
#endif
