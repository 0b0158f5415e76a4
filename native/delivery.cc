#include "delivery.h"

#include <unistd.h>

#include <cstring>

Napi::Array ReportsToJs(Napi::Env env, const std::vector<FaultReport>& reports) {
  Napi::Array arr = Napi::Array::New(env, reports.size());
  for (size_t i = 0; i < reports.size(); i++) {
    const FaultReport& r = reports[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("address", Napi::BigInt::New(env, r.address));
    o.Set("flags", Napi::Number::New(env, static_cast<double>(r.flags)));
    o.Set("tid", Napi::Number::New(env, r.tid));
    o.Set("errno", Napi::Number::New(env, -r.err));
    o.Set("ioctl", Napi::String::New(env, r.ioctl));
    o.Set("policy", Napi::Number::New(env, r.policy));
    o.Set("guard", Napi::Boolean::New(env, r.guard));
    arr.Set(i, o);
  }
  return arr;
}

void CloseForkFds(const RingSlot* slots, size_t count) {
  for (size_t i = 0; i < count; i++) {
    if (slots[i].kind == SlotKind::kMessage && slots[i].msg.event == UFFD_EVENT_FORK) {
      close(static_cast<int>(slots[i].msg.arg.fork.ufd));
    }
  }
}

namespace {

void DropForkFds(const std::vector<uffd_msg>& msgs) {
  for (const uffd_msg& m : msgs) {
    if (m.event == UFFD_EVENT_FORK) close(static_cast<int>(m.arg.fork.ufd));
  }
}

void Deliver(Napi::Env env, Napi::Function callback, const std::vector<uffd_msg>& msgs,
             const std::vector<FaultReport>& reports) {
  // The callback is held weakly while the handle is unref'd with no policy: once its Userfaultfd
  // was collected there is nobody to deliver to.
  if (callback.IsEmpty()) return DropForkFds(msgs);
  Napi::Value raw;
  Napi::Value list = env.Undefined();
  try {
    // In a Worker being terminated every napi call fails (and throws: binding.gyp defines
    // NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS, without which building the exception itself would
    // abort the process). Then the batch is dropped; teardown closes the uffd, which wakes the
    // faulting threads.
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, msgs.size() * sizeof(uffd_msg));
    if (!msgs.empty()) std::memcpy(buffer.Data(), msgs.data(), msgs.size() * sizeof(uffd_msg));
    raw = buffer;
    if (!reports.empty()) list = ReportsToJs(env, reports);
  } catch (const Napi::Error&) {
    return DropForkFds(msgs);
  }
  try {
    // MakeCallback: the promise jobs a handler queues run when it returns, as after any I/O.
    // (Its receiver must be an object; the callback is an arrow function and ignores it.)
    callback.MakeCallback(env.Global(), {raw, list});
  } catch (const Napi::Error& e) {
    // The TS layer catches handler exceptions itself; reaching here is a bug of ours, and it
    // surfaces as an uncaught exception rather than being lost. (In a stopping environment the
    // call fails without running JS, and so does this: there is nothing left to report to.)
    if (!e.Value().IsEmpty()) napi_fatal_exception(env, e.Value());
  }
}

}  // namespace

JsDelivery::JsDelivery(Napi::Env env, Napi::Function callback)
    : env_(env), callback_(Napi::Persistent(callback)) {}

bool JsDelivery::Take(EventRing& ring, bool paused, std::vector<uffd_msg>* msgs,
                      std::vector<FaultReport>* reports) {
  size_t count = 0;
  RingSlot* slots = ring.Peek(&count);
  // Copied out before JS runs: the callback may close the uffd, which frees the ring.
  for (size_t i = paused ? reports_scanned_ : 0; i < count; i++) {
    if (slots[i].kind == SlotKind::kReport) {
      reports->push_back(slots[i].report);
      if (paused) slots[i].kind = SlotKind::kDelivered;
    } else if (slots[i].kind == SlotKind::kMessage && !paused) {
      msgs->push_back(slots[i].msg);
    }
  }
  if (paused) {
    reports_scanned_ = count;
    return false;
  }
  ring.Take(count);
  reports_scanned_ = 0;
  return true;
}

void JsDelivery::Send(const std::vector<uffd_msg>& msgs, const std::vector<FaultReport>& reports) {
  if (msgs.empty() && reports.empty()) return;
  Napi::Env env = env_;
  Napi::HandleScope scope(env);
  Deliver(env, callback_.Value(), msgs, reports);
}

void JsDelivery::SetStrong(bool strong) {
  if (strong == strong_ || callback_.IsEmpty()) return;
  if (strong) {
    callback_.Ref();
  } else {
    callback_.Unref();
  }
  strong_ = strong;
}
