// UFFDIO_MOVE in batches, and the madvise the copy fallback needs (see native/move.cc).
#pragma once

#include <napi.h>

void InitMove(Napi::Env env, Napi::Object exports);
