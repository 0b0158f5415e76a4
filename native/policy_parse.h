// Policies as JS describes them: one descriptor object per kind (lib/core/binding.ts names its
// type), checked here and turned into a Policy for the table. Next to the resolvers, so that a
// kind's inputs and its resolution are read together.
#pragma once

#include <napi.h>

#include <memory>

#include "policy.h"
#include "range_set.h"

// The JS names of the kinds, for the binding's load-time check (index = PolicyKind).
Napi::Array PolicyKindNames(Napi::Env env);

struct ParsedPolicy {
  std::shared_ptr<Policy> policy;
  // What the policy reads from (a buffer, the claims) and what the caller asked to retain (the
  // Mapping a move table points into, say): referenced while the policy exists.
  Napi::Array held;
};

// Throws a TypeError / RangeError / system error naming what is wrong. `faulting`: the ranges
// registered for MISSING or MINOR faults, which a copy source must not lie in (the event thread
// would fault on it, and only it could resolve that fault).
ParsedPolicy ParsePolicy(Napi::Env env, const Napi::Value& spec, const RangeSet& faulting);
