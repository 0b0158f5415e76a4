/**
 * Waiting in the test process for what arrives asynchronously (an event the event thread hands to
 * JS), instead of for a fixed time that a slow machine can exceed. Child scripts have their own
 * waitFor (helpers/child.ts).
 */
import { scaled } from './speed';

/** Resolves once `cond()` holds; rejects after `ms`. */
export async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + scaled(ms);
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out waiting for an event');
    await new Promise((r) => setTimeout(r, 1));
  }
}
