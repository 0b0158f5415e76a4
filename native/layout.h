// The uAPI layout facts the TS layer decodes by: the uffd_msg offsets and event codes, and the
// policy kinds' names. TS keeps its own copies as constants (they are read per event), and checks
// them against these once at load, so a mismatch fails loudly instead of misreading events.
#pragma once

#include <napi.h>

Napi::Object UapiLayout(Napi::Env env);
