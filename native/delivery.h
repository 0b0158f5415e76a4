// Delivery to JS, on the JS thread: what the event thread left in the ring (taken in one batch),
// and what the main-loop reader read itself, handed to the JS callback. Nothing here runs on the
// event thread.
#pragma once

#include <napi.h>

#include <cstddef>
#include <vector>

#include "event_ring.h"
#include "uapi.h"

// The JS objects of fault reports, as the batch callback and close() hand them to JS.
Napi::Array ReportsToJs(Napi::Env env, const std::vector<FaultReport>& reports);

// FORK descriptors are ours to close when their message never reaches JS.
void CloseForkFds(const RingSlot* slots, size_t count);

class JsDelivery {
 public:
  // `callback(msgs: ArrayBuffer, reports: object[] | undefined)` runs once per batch.
  JsDelivery(Napi::Env env, Napi::Function callback);

  // Takes what waits in the ring into `msgs` and `reports`. While paused the messages wait, in
  // order; reports (errors, and the deadlock guard's notices) go now, marked delivered in place.
  // True if slots were taken off the ring (room was made).
  bool Take(EventRing& ring, bool paused, std::vector<uffd_msg>* msgs,
            std::vector<FaultReport>* reports);
  // Hands one batch to JS, if there is anything in it. Callers call it last: the callback may
  // close the uffd, which destroys what owns this object.
  void Send(const std::vector<uffd_msg>& msgs, const std::vector<FaultReport>& reports);
  // The callback reference is weak while nothing should keep the Userfaultfd alive (the caller
  // decides when: fault_engine.cc).
  void SetStrong(bool strong);
  void Reset() { callback_.Reset(); }

 private:
  Napi::Env env_;
  Napi::FunctionReference callback_;
  bool strong_ = true;          // its reference count is 1 (else 0: weak)
  size_t reports_scanned_ = 0;  // ring slots past the head already scanned for reports (paused)
};
