#include "main_loop_reader.h"

#include <algorithm>
#include <vector>

#include "args.h"

void MainLoopReader::Start(bool refed) {
  if (poll_ != nullptr) return;
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env_, &loop) != napi_ok || loop == nullptr) return;
  auto* handle = new uv_poll_t;
  if (uv_poll_init(loop, handle, uffd_) != 0) {
    delete handle;
    return;
  }
  handle->data = this;
  uv_poll_start(handle, UV_READABLE, OnPoll);
  if (!refed) uv_unref(reinterpret_cast<uv_handle_t*>(handle));
  poll_ = handle;
  handshake_.SetMainMode(true);
}

void MainLoopReader::Stop() {
  if (poll_ == nullptr) return;
  handshake_.SetMainMode(false);
  // uv_close stops the watch at once; the handle is freed when the loop runs its callback.
  uv_close(reinterpret_cast<uv_handle_t*>(poll_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  poll_ = nullptr;
  thread_.Wake();
}

void MainLoopReader::SetRef(bool refed) {
  if (poll_ == nullptr) return;
  if (refed) {
    uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
  } else {
    uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
  }
}

void MainLoopReader::Resume() {
  if (poll_ != nullptr && handshake_.Resume()) uv_poll_start(poll_, UV_READABLE, OnPoll);
}

void MainLoopReader::OnPoll(uv_poll_t* handle, int status, int) {
  if (status == 0) static_cast<MainLoopReader*>(handle->data)->OnReadable();
}

void MainLoopReader::OnReadable() {
  if (!handshake_.MainMode()) return;
  uffd_msg msgs[EventThread::kBatch];
  bool stalled = false;
  ssize_t got = handshake_.MainRead(uffd_, msgs, sizeof msgs, &stalled);
  if (stalled) {
    // The poll is level-triggered: rather than spin on it until the earlier reads arrive, stop
    // it; the take that delivers them starts it again (Resume).
    uv_poll_stop(poll_);
    return;
  }
  if (got <= 0) return;  // the event thread took them (EAGAIN), or an error it will report
  // What the event thread would hand to JS: every message, one fault per page (no policy exists
  // while this reader runs, and the JS thread cannot be the faulting thread of what it reads).
  std::vector<uffd_msg> out;
  std::vector<uint64_t> seen;
  const int count = static_cast<int>(got / sizeof(uffd_msg));
  for (int i = 0; i < count; i++) {
    if (msgs[i].event == UFFD_EVENT_PAGEFAULT) {
      uint64_t page = msgs[i].arg.pagefault.address & ~(PageSize() - 1);
      if (std::find(seen.begin(), seen.end(), page) != seen.end()) continue;
      seen.push_back(page);
    }
    out.push_back(msgs[i]);
  }
  delivery_.Send(out, {});  // last: the callback may close the uffd
}
