/**
 * The uAPI facts the TS layer decodes and describes native work by: the uffd_msg offsets and
 * event codes, and the policy kinds. Constants here, because events are decoded per message; the
 * binding checks them once at load against the addon's own `offsetof`s (native/layout.cc), so a
 * mismatch fails loudly at load instead of misreading events. Not part of the public API.
 * @module
 */

/** Byte offsets in one uffd_msg record (little-endian fields). */
export const MSG = {
  size: 32,
  event: 0,
  pagefaultFlags: 8,
  pagefaultAddress: 16,
  pagefaultThreadId: 24,
  forkUfd: 8,
  remapFrom: 8,
  remapTo: 16,
  remapLength: 24,
  removeStart: 8,
  removeEnd: 16,
} as const;

/** uffd_msg.event values. */
export const EVENT = { pagefault: 0x12, fork: 0x13, remap: 0x14, remove: 0x15, unmap: 0x16 } as const;

/** The native policy kinds (native/policy.h), in their native order. */
export const POLICY_KINDS = ['zero', 'copyBuffer', 'copyFd', 'continue', 'unprotect', 'moveTable'] as const;
export type PolicyKindName = (typeof POLICY_KINDS)[number];

/** What the addon reports of the same facts. */
export interface NativeLayout {
  msg: Record<keyof typeof MSG, number>;
  events: Record<keyof typeof EVENT, number>;
  policyKinds: string[];
}

/** The facts on which this file and the addon disagree, as `name: ours != native`; empty if none. */
export function layoutMismatches(native: NativeLayout): string[] {
  const out: string[] = [];
  const compare = (group: string, ours: Record<string, number>, theirs: Record<string, number>) => {
    for (const [name, value] of Object.entries(ours)) {
      if (theirs?.[name] !== value) out.push(`${group}.${name}: ${value} != ${theirs?.[name]}`);
    }
  };
  compare('msg', MSG, native.msg);
  compare('events', EVENT, native.events);
  if (native.policyKinds?.join() !== POLICY_KINDS.join()) out.push(`policyKinds: ${POLICY_KINDS.join()} != ${native.policyKinds?.join()}`);
  return out;
}
