#include "layout.h"

#include <cstddef>

#include "policy_parse.h"
#include "uapi.h"

Napi::Object UapiLayout(Napi::Env env) {
  auto number = [&](size_t v) { return Napi::Number::New(env, static_cast<double>(v)); };
  Napi::Object msg = Napi::Object::New(env);
  msg.Set("size", number(sizeof(uffd_msg)));
  msg.Set("event", number(offsetof(uffd_msg, event)));
  msg.Set("pagefaultFlags", number(offsetof(uffd_msg, arg.pagefault.flags)));
  msg.Set("pagefaultAddress", number(offsetof(uffd_msg, arg.pagefault.address)));
  msg.Set("pagefaultThreadId", number(offsetof(uffd_msg, arg.pagefault.feat.ptid)));
  msg.Set("forkUfd", number(offsetof(uffd_msg, arg.fork.ufd)));
  msg.Set("remapFrom", number(offsetof(uffd_msg, arg.remap.from)));
  msg.Set("remapTo", number(offsetof(uffd_msg, arg.remap.to)));
  msg.Set("remapLength", number(offsetof(uffd_msg, arg.remap.len)));
  msg.Set("removeStart", number(offsetof(uffd_msg, arg.remove.start)));
  msg.Set("removeEnd", number(offsetof(uffd_msg, arg.remove.end)));
  Napi::Object events = Napi::Object::New(env);
  events.Set("pagefault", number(UFFD_EVENT_PAGEFAULT));
  events.Set("fork", number(UFFD_EVENT_FORK));
  events.Set("remap", number(UFFD_EVENT_REMAP));
  events.Set("remove", number(UFFD_EVENT_REMOVE));
  events.Set("unmap", number(UFFD_EVENT_UNMAP));
  Napi::Object layout = Napi::Object::New(env);
  layout.Set("msg", msg);
  layout.Set("events", events);
  layout.Set("policyKinds", PolicyKindNames(env));
  return layout;
}
