// The main-loop reader: while no policy is installed (only JS consumes the faults) and JS is not
// paused, the JS thread's own event loop reads the uffd (a uv_poll_t) and delivers what it read
// at once. That saves one thread wake-up per fault. The event thread stays as the backstop: if
// the JS thread has not read for a grace period (busy in JS, or asleep in a fault of its own:
// the deadlock guard) the event thread reads, exactly as without this path. How the two keep
// the kernel's order is read_handshake.h. JS thread only.
#pragma once

#include <napi.h>
#include <uv.h>

#include "delivery.h"
#include "event_thread.h"
#include "read_handshake.h"

class MainLoopReader {
 public:
  MainLoopReader(Napi::Env env, int uffd, ReadHandshake& handshake, JsDelivery& delivery,
                 EventThread& thread)
      : env_(env), uffd_(uffd), handshake_(handshake), delivery_(delivery), thread_(thread) {}
  ~MainLoopReader() { Stop(); }

  bool Running() const { return poll_ != nullptr; }
  // Opens the poll handle; if libuv cannot watch the uffd, the event thread alone reads, as it
  // always can.
  void Start(bool refed);
  // Closes the poll handle (at once: no callback after this) and wakes the event thread, which
  // may be in its grace period, leaving the uffd to this reader.
  void Stop();
  void SetRef(bool refed);
  // After a batch was taken from the ring: poll again if this reader stalled behind it.
  void Resume();

 private:
  static void OnPoll(uv_poll_t* handle, int status, int events);
  // Reads and delivers one batch, unless messages the event thread read earlier are still
  // undelivered (they go first, to keep the kernel's order).
  void OnReadable();

  Napi::Env env_;
  const int uffd_;
  ReadHandshake& handshake_;
  JsDelivery& delivery_;
  EventThread& thread_;
  uv_poll_t* poll_ = nullptr;  // the open poll handle, or null
};
