// Module entry: creates the per-environment AddonData and lets each concern register its exports.
#include "addon.h"

#include "errors.h"
#include "move.h"

AddonData& GetAddonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

static Napi::Value SetErrorFactory(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) {
    throw Napi::TypeError::New(info.Env(), "setErrorFactory expects a function");
  }
  GetAddonData(info.Env()).error_factory = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  // The environment owns the data: the default finalizer deletes it on environment teardown.
  env.SetInstanceData<AddonData>(data);
  exports.Set("setErrorFactory", Napi::Function::New(env, SetErrorFactory, "setErrorFactory"));
  InitUffd(env, exports);
  InitMapping(env, exports);
  InitPagemap(env, exports);
  InitSysinfo(env, exports);
  InitWpCheck(env, exports);
  InitTesting(env, exports);
  InitMove(env, exports);
#ifdef UFFD_TEST_HOOKS
  InitTestHooks(env, exports);  // test/native/hooks.cc: a checkout's build only
#endif
  return exports;
}

NODE_API_MODULE(userfaultfd, Init)
