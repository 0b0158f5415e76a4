// The fault engine of one userfaultfd: the parts that together serve its faults, and the rules
// for when each runs. Its pieces, one file each:
// - event_thread.h: the native thread that polls and reads the uffd (what runs on it);
// - policy_table.h: the native policies, and the resolvers it dispatches each fault to;
// - main_loop_reader.h: the JS thread's own reader, while only JS consumes faults;
// - read_handshake.h: how those two readers keep the kernel's order;
// - delivery.h: handing batches to the JS callback.
// Everything here runs on the JS thread.
#pragma once

#include <napi.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "delivery.h"
#include "event_ring.h"
#include "event_thread.h"
#include "main_loop_reader.h"
#include "policy_table.h"
#include "read_handshake.h"

class FaultEngine {
 public:
  // Starts the event thread. `callback(msgs: ArrayBuffer, reports: object[] | undefined)` runs on
  // the JS thread once per batch. `guard_tid`: the JS thread's tid when the deadlock guard is on
  // (THREAD_ID negotiated), else 0. Throws if the ring, the eventfd or the async handle cannot be
  // made.
  FaultEngine(Napi::Env env, int uffd, Napi::Function callback, long guard_tid);
  ~FaultEngine();
  FaultEngine(const FaultEngine&) = delete;
  FaultEngine& operator=(const FaultEngine&) = delete;

  // Stops the readers, joins the event thread, closes the async handle and drops what JS never
  // took (closing FORK descriptors), handing the reports among it to `undelivered` if given.
  // Idempotent.
  void Stop(std::vector<FaultReport>* undelivered = nullptr);
  // Backpressure without loss: while paused nothing but reports is handed to JS; the events wait
  // in the ring, in order. The event thread keeps reading meanwhile, so native policies and the
  // deadlock guard go on working without JS, until the ring is full.
  void SetPaused(bool paused);
  void Ref();
  void Unref();  // also lets the Userfaultfd be collected, while no policy is installed

  // False if the policy's range overlaps another's. Once RemovePolicy returns, no resolution uses
  // the policy.
  bool AddPolicy(std::shared_ptr<Policy> policy);
  bool RemovePolicy(uint32_t id);
  std::shared_ptr<Policy> FindPolicy(uint32_t id) { return policies_.Find(id); }

 private:
  static void OnAsync(uv_async_t* handle);
  // Takes everything in the ring and hands it to JS (only the reports while paused).
  void Drain();
  // Starts or stops the main-loop reader to match the state: it runs while there is no policy,
  // JS is not paused and the engine is not stopped.
  void UpdateMainLoop();
  // The callback reference is weak exactly while unref'd with no policy.
  void UpdateCallbackStrength();

  EventRing ring_;  // event thread to JS thread
  ReadHandshake handshake_;
  PolicyTable policies_;
  EventThread thread_;
  JsDelivery delivery_;
  MainLoopReader main_loop_;
  uv_async_t* async_ = nullptr;  // wakes the JS thread to Drain; freed by its close callback
  bool stopped_ = false;
  bool paused_ = false;
  bool refed_ = true;
};
